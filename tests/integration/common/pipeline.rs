//! Pipeline files for tests: a tiny diffusion run (four 40 x 44 x 36 phantoms, 32 x 32
//! slices, an 8-channel UNet with MHSA at 16 x 16, 50 time steps, one epoch) changed with
//! dotted-key overrides, so that a test states only what it is about.

use std::path::{Path, PathBuf};

/// The tiny run every builder starts from.
const TINY: &str = r#"
[pipeline]
name = "tiny"
seed = 1

[input]
format = "phantom"
phantom = { subjects = 4, shape = [40, 44, 36], spacing_mm = 5.0 }

[preprocess]
size = [32, 32]
crop_margin_vox = 1
slices = { axis = "axial", min_foreground = 0.2 }
split = { train = 0.5, val = 0.25, test = 0.25 }

[model]
kind = "diffusion"
task = "missing-modality"
inputs = ["t1"]
target = "t2"
unet = { base_channels = 8, channel_mult = [1, 2], res_blocks = 1, groups = 4 }
attention = { kind = "mhsa", resolutions = [16], heads = 2 }
diffusion = { timesteps = 50 }

[train]
epochs = 1
batch_size = 4
checkpoint_every = 1000
"#;

/// A pipeline file under construction.
#[derive(Debug, Clone)]
pub struct Pipeline(toml::Table);

impl Pipeline {
    /// The tiny run, named `name`.
    pub fn tiny(name: &str) -> Self {
        let table: toml::Table = toml::from_str(TINY).expect("the tiny pipeline parses");
        Pipeline(table).set("pipeline.name", &format!("{name:?}"))
    }

    /// Sets the dotted `key` (`model.attention.kind`; a section or a field, created when
    /// missing) to `value`, written as TOML: `"none"`, `[1, 2]`, `{ kind = "ddim" }`.
    pub fn set(mut self, key: &str, value: &str) -> Self {
        let parsed: toml::Table =
            toml::from_str(&format!("v = {value}")).unwrap_or_else(|e| panic!("{value}: {e}"));
        let (parents, last) = split(key);
        let mut at = &mut self.0;
        for p in parents {
            at = at
                .entry(p.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()))
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key}: {p} is not a table"));
        }
        at.insert(last.to_owned(), parsed["v"].clone());
        self
    }

    /// Removes the dotted `key` (a section or a field).
    pub fn remove(mut self, key: &str) -> Self {
        let (parents, last) = split(key);
        let mut at = &mut self.0;
        for p in parents {
            at = at[p]
                .as_table_mut()
                .unwrap_or_else(|| panic!("{key}: {p} is not a table"));
        }
        at.remove(last);
        self
    }

    /// The file's text.
    pub fn text(&self) -> String {
        toml::to_string(&self.0).expect("a table serializes")
    }

    /// Writes the file as `dir/NAME.toml` (NAME: `pipeline.name`) and returns its path.
    pub fn write(&self, dir: &Path) -> PathBuf {
        let name = self.0["pipeline"]["name"].as_str().unwrap_or("pipeline");
        let path = dir.join(format!("{name}.toml"));
        std::fs::write(&path, self.text()).unwrap();
        path
    }
}

fn split(key: &str) -> (Vec<&str>, &str) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    (parts, last)
}
