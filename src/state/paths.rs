//! `$GEUSEMAKER_HOME` layout: `stacks/`, `cache/`, `logs/`, `keys/`.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::StateError;

/// Environment variable that moves the state directory (tests point it at a temp dir).
pub const HOME_ENV: &str = "GEUSEMAKER_HOME";

/// The state directory and its well-known sub-directories.
#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

impl Home {
    /// `$GEUSEMAKER_HOME`, or `~/.geusemaker`.
    pub fn from_env() -> Result<Self, StateError> {
        if let Some(dir) = std::env::var_os(HOME_ENV).filter(|v| !v.is_empty()) {
            return Ok(Self::at(PathBuf::from(dir)));
        }
        let base = directories::BaseDirs::new().ok_or(StateError::NoHome)?;
        Ok(Self::at(base.home_dir().join(".geusemaker")))
    }

    pub fn at(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn stacks_dir(&self) -> PathBuf {
        self.root.join("stacks")
    }
    pub fn cache_dir(&self) -> PathBuf {
        self.root.join("cache")
    }
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }
    pub fn keys_dir(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn stack_file(&self, stack: &str) -> PathBuf {
        self.stacks_dir().join(format!("{stack}.json"))
    }
    pub fn lock_file(&self, stack: &str) -> PathBuf {
        self.stacks_dir().join(format!("{stack}.lock"))
    }

    /// Names of the stacks that have a state file, sorted.
    pub fn stack_names(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.stacks_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let stem = p.file_stem()?.to_string_lossy().to_string();
                (p.extension()? == "json").then_some(stem)
            })
            .collect();
        names.sort();
        names
    }

    /// Create every directory with mode 0700 (state may name resources; keys are private).
    pub fn ensure(&self) -> Result<(), StateError> {
        for dir in [
            self.root.clone(),
            self.stacks_dir(),
            self.cache_dir(),
            self.logs_dir(),
            self.keys_dir(),
        ] {
            if !dir.is_dir() {
                fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(&dir)
                    .map_err(|e| StateError::io(&dir, e))?;
                fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
                    .map_err(|e| StateError::io(&dir, e))?;
            }
        }
        Ok(())
    }
}
