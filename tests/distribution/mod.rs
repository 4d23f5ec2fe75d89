//! Distribution (issue 10): what `--version` says, completions and the man page, older state
//! files migrated forward, and the release machinery (workflow, Dockerfile, Homebrew formula,
//! changelog) checked for consistency — no Docker engine or GitHub runner here, so those are
//! checked statically (YAML structure, shellcheck on every `run:` script, COPY sources); the
//! Linux packages and the supply chain (issue 22).

use crate::support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

mod binary;
mod packages;
mod release;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}
