//! Running recipes against a stack, one file per job:
//! - [`load`]: finding a recipe (a file, a shared source, a bundled one), compiling it and
//!   checking its params, before anything else happens;
//! - [`exec`]: a [`exec::Session`] holds the stack's lock for as long as it lives, so a failed
//!   run and its automatic rollback, or a rollback and its relaunch, happen under one lock;
//!   `Session::exec` runs one compiled recipe on it;
//! - [`commands`]: `run`, `destroy`, `rollback`, `unlock`;
//! - [`plan`]: `run --plan`, on a new stack (the recording backend) or a live one (a diff).

mod commands;
mod exec;
mod load;
mod plan;

use crate::cloud::AwsSettings;
pub use crate::engine::error::{Failure, Note, RunError, UsageError};

pub use commands::{destroy, require_existing, rollback, run, unlock};
pub use load::{header_error, load_recipe, LoadedRecipe};
pub use plan::{make_plan, plan, Plan};

/// What a run was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub recipe: String,
    pub stack: String,
    pub sets: Vec<String>,
    pub aws: AwsSettings,
    pub assume_yes: bool,
    /// Keep what a failed run created (no automatic rollback).
    pub keep_failed: bool,
    /// Param values from config.toml (below `--set`, above the recipe's defaults).
    pub param_settings: std::collections::BTreeMap<String, String>,
}

/// Outcome figures of a successful command.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub api_calls: u64,
    pub attempts: u64,
}

pub(super) fn new_run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>() & 0xff_ffff
    )
}
