//! Writing files so that a killed run never leaves a half-written one: write to a temporary
//! name in the same folder, then rename over the final name.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The temporary name used while `path` is being written: a hidden sibling that keeps the
/// final extension (writers such as nifti's pick compression from it).
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (stem, ext) = match name.find('.') {
        Some(dot) if dot > 0 => (&name[..dot], &name[dot..]),
        _ => (name.as_str(), ""),
    };
    // No dot inside the stem: writers that rebuild the extension (nifti's) must keep the name.
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    path.with_file_name(format!(".{stem}-partial-{}-{n}{ext}", std::process::id()))
}

/// A file being written under a temporary name; `commit` renames it into place, dropping
/// without committing removes it.
pub struct AtomicFile {
    temp: PathBuf,
    target: PathBuf,
    committed: bool,
}

impl AtomicFile {
    /// Prepares to write `target`, creating its parent folder.
    pub fn new(target: &Path) -> io::Result<Self> {
        if let Some(parent) = target.parent()
            && !parent.as_os_str().is_empty()
        {
            fs::create_dir_all(parent)?;
        }
        Ok(Self {
            temp: temp_path(target),
            target: target.to_owned(),
            committed: false,
        })
    }

    /// Where to write the content.
    pub fn temp(&self) -> &Path {
        &self.temp
    }

    /// Writes `bytes` to `target` atomically (creating its folder).
    pub fn write(target: &Path, bytes: &[u8]) -> io::Result<()> {
        let file = Self::new(target)?;
        std::fs::write(file.temp(), bytes)?;
        file.commit()
    }

    /// Moves the written temporary file over the target.
    pub fn commit(mut self) -> io::Result<()> {
        fs::rename(&self.temp, &self.target)?;
        self.committed = true;
        Ok(())
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_keeps_double_extension() {
        let t = temp_path(Path::new("/a/b/t1.nii.gz"));
        let name = t.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(".t1-partial-") && name.ends_with(".nii.gz"),
            "{name}"
        );
        assert_eq!(name.matches('.').count(), 3, "{name}");
        assert_eq!(t.parent(), Some(Path::new("/a/b")));
    }
}
