//! The text of every script loaded in a run, by display name, for error rendering.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub struct SourceFile {
    pub text: Arc<str>,
    /// Where it came from on disk (`None` for bundled files).
    pub path: Option<PathBuf>,
}

/// Display name (`recipes/dev.rhai`) → file.
#[derive(Debug, Default)]
pub struct Sources {
    files: Mutex<HashMap<String, SourceFile>>,
}

impl Sources {
    pub fn insert(&self, name: &str, text: &str, path: Option<PathBuf>) {
        self.files.lock().unwrap().insert(
            name.to_string(),
            SourceFile {
                text: Arc::from(text),
                path,
            },
        );
    }

    pub fn get(&self, name: &str) -> Option<SourceFile> {
        self.files.lock().unwrap().get(name).cloned()
    }

    /// Line `line` (1-based) of `name`.
    pub fn line(&self, name: &str, line: usize) -> Option<String> {
        let f = self.get(name)?;
        f.text.lines().nth(line.checked_sub(1)?).map(str::to_string)
    }
}
