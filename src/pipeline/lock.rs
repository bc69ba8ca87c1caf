//! One writer per run folder. A run holds `RUN_DIR/.medsynth.lock` while it writes: the file
//! is created with `create_new` (O_CREAT | O_EXCL, atomic on local file systems, NFSv3 and
//! later, and Lustre) and names its holder: host, process id and the process's start time.
//! A second run on the folder refuses at once, naming the holder. A lock left by a process
//! that is gone (killed, or its node rebooted) is taken over with a warning when the holder
//! was on this host; a lock from another host cannot be checked from here, so the message says
//! which file to remove once that process is known to be gone.

use std::io::Write;
use std::path::{Path, PathBuf};

/// The lock file's name inside a run folder.
pub const LOCK_FILE: &str = ".medsynth.lock";

/// Who holds a run folder.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// The holder's start time in clock ticks since boot (Linux), so a reused pid is not
    /// taken for the holder.
    pub start_ticks: Option<u64>,
    pub started: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "pid {} on host {} since {}",
            self.pid, self.host, self.started
        )
    }
}

/// Why a run folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "{dir}: another medsynth run is writing here ({holder}); wait for it to finish, or, if that process is gone, remove {lock}",
        dir = dir.display(),
        lock = lock.display()
    )]
    Held {
        dir: PathBuf,
        lock: PathBuf,
        holder: Holder,
    },
    #[error("{path}: cannot lock the run folder: {source}", path = path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The lock on a run folder; dropping it releases the folder.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    holder: Holder,
}

impl RunLock {
    /// Locks `dir` (created if needed) for this process.
    pub fn acquire(dir: &Path) -> Result<RunLock, LockError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| LockError::Io { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let path = dir.join(LOCK_FILE);
        let me = Holder {
            host: hostname(),
            pid: std::process::id(),
            start_ticks: start_ticks(std::process::id()),
            started: crate::provenance::now_rfc3339(),
        };
        // Twice at most: once more after taking over a stale lock.
        for _ in 0..2 {
            match std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
            {
                Ok(mut file) => {
                    let text = serde_json::to_string(&me).expect("a holder serializes");
                    file.write_all(text.as_bytes())
                        .and_then(|()| file.sync_all())
                        .map_err(io(&path))?;
                    return Ok(RunLock { path, holder: me });
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    let holder = read_holder(&path);
                    match holder {
                        Some(h) if is_gone(&h) => {
                            tracing::warn!(
                                lock = %path.display(),
                                "the run folder's lock is stale ({h} is gone): taking it over"
                            );
                            match std::fs::remove_file(&path) {
                                Ok(()) => continue,
                                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                                Err(e) => return Err(io(&path)(e)),
                            }
                        }
                        Some(holder) => {
                            return Err(LockError::Held {
                                dir: dir.to_owned(),
                                lock: path,
                                holder,
                            });
                        }
                        // Being written by a writer that just created it, or damaged: either
                        // way somebody else owns it.
                        None => {
                            return Err(LockError::Held {
                                dir: dir.to_owned(),
                                lock: path,
                                holder: Holder {
                                    host: "unknown".into(),
                                    pid: 0,
                                    start_ticks: None,
                                    started: "unknown (the lock file is unreadable)".into(),
                                },
                            });
                        }
                    }
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        Err(LockError::Io {
            path,
            source: std::io::Error::other("another process took the stale lock over first"),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Only our own lock: a second process may have taken over a lock it judged stale.
        if read_holder(&self.path).as_ref() == Some(&self.holder) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn read_holder(path: &Path) -> Option<Holder> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// Whether the holder's process is known to be gone: it was on this host, and no process
/// with its pid and start time runs. Elsewhere, and off Linux, it cannot be known.
fn is_gone(h: &Holder) -> bool {
    if h.host != hostname() || !Path::new("/proc/self/stat").exists() {
        return false;
    }
    match start_ticks(h.pid) {
        None => true,
        Some(now) => h.start_ticks.is_some_and(|then| then != now),
    }
}

/// A process's start time (field 22 of /proc/PID/stat), or `None` when it does not run.
fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// This machine's name.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .or_else(|| std::env::var("COMPUTERNAME").ok())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_and_a_dropped_one_released() {
        let dir = tempfile::tempdir().unwrap();
        let first = RunLock::acquire(dir.path()).unwrap();
        match RunLock::acquire(dir.path()) {
            Err(LockError::Held { holder, .. }) => {
                assert_eq!(holder.pid, std::process::id());
                assert_eq!(holder.host, hostname());
            }
            other => panic!("{other:?}"),
        }
        drop(first);
        assert!(!dir.path().join(LOCK_FILE).exists());
        RunLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn this_process_has_a_start_time_and_a_dead_pid_has_none() {
        if Path::new("/proc/self/stat").exists() {
            assert!(start_ticks(std::process::id()).is_some());
            assert!(start_ticks(u32::MAX - 1).is_none());
        }
    }
}
