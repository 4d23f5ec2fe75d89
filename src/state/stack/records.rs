//! What a stack remembers of its deploys: the last healthy one ([`HealthySnapshot`]) and each
//! rollback ([`RollbackRecord`]), both read leniently.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why a stack was rolled back: the `trigger` of its [`RollbackRecord`] (and the rollback
/// recipe's `trigger` param).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackTrigger {
    /// `geusemaker rollback`.
    Manual,
    /// `monitor` saw a critical service fail its checks.
    HealthCheckFailed,
    /// A run's services never became healthy in time: its automatic rollback.
    Timeout,
    /// `monitor` saw AWS's notice that the spot instance is being taken.
    SpotInterruption,
    /// A run failed otherwise: its automatic rollback.
    RunFailed,
    /// A run stopped by Ctrl-C, rolled back on request.
    Interrupted,
}

impl RollbackTrigger {
    pub const ALL: [RollbackTrigger; 6] = [
        RollbackTrigger::Manual,
        RollbackTrigger::HealthCheckFailed,
        RollbackTrigger::Timeout,
        RollbackTrigger::SpotInterruption,
        RollbackTrigger::RunFailed,
        RollbackTrigger::Interrupted,
    ];

    /// As records and the rollback recipe spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            RollbackTrigger::Manual => "manual",
            RollbackTrigger::HealthCheckFailed => "health_check_failed",
            RollbackTrigger::Timeout => "timeout",
            RollbackTrigger::SpotInterruption => "spot_interruption",
            RollbackTrigger::RunFailed => "run_failed",
            RollbackTrigger::Interrupted => "interrupted",
        }
    }

    pub fn parse(text: &str) -> Option<RollbackTrigger> {
        RollbackTrigger::ALL
            .into_iter()
            .find(|t| t.as_str() == text)
    }
}

impl std::fmt::Display for RollbackTrigger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The last deploy that was healthy (`state::mark_healthy`): what `rollback` relaunches.
///
/// Read leniently (see [`Lenient`]): a recipe may have stored any plain data under these
/// names, and a stack document that loaded before must load still.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(from = "serde_json::Map<String, Value>")]
pub struct HealthySnapshot {
    /// When it was marked healthy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// The recipe that deployed it, as `run` takes it (a path, a bundled name, `source/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recipe: Option<String>,
    /// Its params, resolved.
    pub params: BTreeMap<String, Value>,
    /// The run that deployed it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// The image it ran (relaunched as it was, when the recipe still takes `image_id`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_id: Option<String>,
    /// Whatever else the recipe recorded (instance, type, health results, …), and any of the
    /// names above whose value was not of its type.
    #[serde(flatten)]
    pub recorded: serde_json::Map<String, Value>,
}

impl From<serde_json::Map<String, Value>> for HealthySnapshot {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        let mut l = Lenient(map);
        HealthySnapshot {
            at: l.take("at"),
            recipe: l.take("recipe"),
            params: l.take("params").unwrap_or_default(),
            run: l.take("run"),
            image_id: l.take("image_id"),
            recorded: l.0,
        }
    }
}

/// One rollback: the automatic one after a failed run, or `geusemaker rollback` (whose recipe
/// records it with `state::record_rollback`, and geusemaker adds how the relaunch went). Read
/// leniently, like [`HealthySnapshot`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(from = "serde_json::Map<String, Value>")]
pub struct RollbackRecord {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub at: Option<String>,
    /// What caused it: `run_failed`, `timeout`, `interrupted`, `manual`, …
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trigger: Option<String>,
    /// The run whose resources it removed (an automatic rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resources_deleted: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub success: Option<bool>,
    /// Why it (or the run it rolled back) failed: the error's first line.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What made `monitor` roll back (a spot interruption notice, failing checks).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The run that relaunched the last healthy deploy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub relaunch_run: Option<String>,
    /// How long the stack was down, at most, when the relaunch succeeded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub down_seconds: Option<u64>,
    /// Whatever else the recipe recorded, and any of the names above whose value was not of
    /// its type.
    #[serde(flatten)]
    pub recorded: serde_json::Map<String, Value>,
}

impl From<serde_json::Map<String, Value>> for RollbackRecord {
    fn from(map: serde_json::Map<String, Value>) -> Self {
        let mut l = Lenient(map);
        RollbackRecord {
            at: l.take("at"),
            trigger: l.take("trigger"),
            run: l.take("run"),
            resources_deleted: l.take("resources_deleted"),
            success: l.take("success"),
            error: l.take("error"),
            reason: l.take("reason"),
            relaunch_run: l.take("relaunch_run"),
            down_seconds: l.take("down_seconds"),
            recorded: l.0,
        }
    }
}

/// A record's fields taken out of its JSON object one by one: a value of the field's type is
/// taken; any other (a recipe's own use of the name, `null`) stays where it was, as it was.
struct Lenient(serde_json::Map<String, Value>);

impl Lenient {
    fn take<T: serde::de::DeserializeOwned>(&mut self, key: &str) -> Option<T> {
        let typed = serde_json::from_value(self.0.get(key)?.clone()).ok()?;
        self.0.remove(key);
        Some(typed)
    }
}
