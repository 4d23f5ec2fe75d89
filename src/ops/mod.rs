//! Living with a deployed stack: `list`, `status`, `monitor`, `cost`, `logs`.
//!
//! These read the stack's state file (without taking its lock, so they work while a run is in
//! progress) and the live AWS account. A resource that has vanished is reported, never a crash.
//! What to *do* about a failure is policy and lives in recipes: `monitor` runs the rollback
//! recipe, which relaunches through the tier's recipe.

pub mod cost;
pub mod health;
pub mod list;
pub mod logs;
pub mod monitor;
pub mod state;
pub mod status;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::cloud::ec2::Instance;
use crate::cloud::{Aws, AwsSettings, Blocking, CloudError};
use crate::config::Settings;
use crate::engine::session::require_existing;
use crate::engine::RunError;
use crate::state::{Home, ResourceStatus, StackState, StackStore, StateBackend};

/// A stack read from its state.
pub struct Opened {
    /// This machine's directory (caches, logs).
    pub home: Home,
    pub backend: StateBackend,
    pub state: StackState,
}

/// Load stack `name`; unknown names are refused with the list of known ones.
pub fn open(name: &str) -> Result<Opened, RunError> {
    require_existing(name)?;
    let home = Home::from_env()?;
    let backend = StateBackend::current()?;
    let state = StackStore::load(&backend, name)?
        .ok_or_else(|| RunError::usage(format!("stack `{name}` disappeared while reading it")))?;
    Ok(Opened {
        home,
        backend,
        state,
    })
}

/// A tokio runtime and a connection to one region (or why there is none).
pub struct Conn {
    pub blocking: Blocking,
    pub aws: Result<Aws, CloudError>,
}

impl Conn {
    /// Connect for a stack: its own region unless `--region` says otherwise, then the
    /// settings' region, then the AWS chain.
    pub fn for_stack(
        state: &StackState,
        flags: &AwsSettings,
        settings: &Settings,
    ) -> Result<Conn, RunError> {
        let blocking = Blocking::new()
            .map_err(|e| RunError::failed(format!("cannot start the async runtime: {e}")))?;
        if let (Some(flag), Some(home)) = (&flags.region, &state.region) {
            if flag != home {
                return Err(RunError::usage(format!(
                    "stack `{}` lives in {home}, not {flag}: leave out --region (or pass --region {home})",
                    state.stack
                )));
            }
        }
        let settings = AwsSettings {
            region: flags
                .region
                .clone()
                .or_else(|| state.region.clone())
                .or_else(|| settings.region()),
            profile: flags.profile.clone().or_else(|| settings.profile()),
            default_region: None,
            read_only: false,
        };
        let aws = Aws::connect(&settings, &blocking).map_err(CloudError::from);
        Ok(Conn { blocking, aws })
    }

    pub fn aws(&self) -> Option<&Aws> {
        self.aws.as_ref().ok()
    }
}

/// An output of the stack as text.
pub fn output(state: &StackState, key: &str) -> Option<String> {
    match state.outputs.get(key)? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// What the stack's tier is: the `tier` output, or the recipe's file name.
pub fn tier(state: &StackState) -> String {
    output(state, "tier").unwrap_or_else(|| {
        state
            .recipe
            .as_deref()
            .and_then(|r| r.rsplit('/').next())
            .map(|r| r.trim_end_matches(".rhai").to_string())
            .unwrap_or_else(|| "-".into())
    })
}

/// The stack's instance as AWS sees it now.
#[derive(Debug, Clone)]
pub enum LiveInstance {
    /// The stack has no instance (none recorded).
    None,
    Present(Box<Instance>),
    /// Recorded, but AWS does not know it any more.
    Gone(String),
    /// Could not ask AWS.
    Unknown(String, String),
}

impl LiveInstance {
    /// The instance recorded in the stack's outputs, described now.
    pub fn of(state: &StackState, aws: Option<&Aws>, why_not: Option<&CloudError>) -> LiveInstance {
        let Some(id) = output(state, "instance_id") else {
            return LiveInstance::None;
        };
        let Some(aws) = aws else {
            let why = why_not.map_or("no AWS connection".into(), |e| e.message.clone());
            return LiveInstance::Unknown(id, why);
        };
        match aws.ec2.instance(&id) {
            Ok(i) => LiveInstance::Present(Box::new(i)),
            Err(e) if e.is_not_found() => LiveInstance::Gone(id),
            Err(e) => LiveInstance::Unknown(id, format!("{}: {}", e.code, e.message)),
        }
    }

    pub fn instance(&self) -> Option<&Instance> {
        match self {
            LiveInstance::Present(i) => Some(i),
            _ => None,
        }
    }

    /// `running`, `stopped`, `gone`, `unknown`, or `-` (none).
    pub fn state(&self) -> String {
        match self {
            LiveInstance::None => "-".into(),
            LiveInstance::Present(i) => i.state.clone(),
            LiveInstance::Gone(_) => "gone".into(),
            LiveInstance::Unknown(..) => "unknown".into(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.instance().is_some_and(|i| i.state == "running")
    }
}

/// A ledger entry that the ledger says exists but AWS does not have.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Missing {
    pub kind: crate::state::Kind,
    pub name: String,
    pub id: String,
}

/// Ledger entries (created, not deleted) that a scan of the stack's tags does not find.
/// IAM is not tag-scanned and is left out.
pub fn missing_resources(aws: &Aws, state: &StackState) -> Result<Vec<Missing>, CloudError> {
    let found = crate::inventory::tagged(aws, &state.stack)?;
    Ok(state
        .resources
        .iter()
        .filter(|r| r.status == ResourceStatus::Created && !r.kind.is_iam())
        .filter(|r| state.region.as_deref().is_none_or(|reg| reg == r.region))
        .filter_map(|r| {
            let id = r.id.clone()?;
            let present = found.iter().any(|f| f.kind == r.kind && f.id == id);
            (!present).then(|| Missing {
                kind: r.kind,
                name: r.name.clone(),
                id,
            })
        })
        .collect())
}

/// `3h 12m`, `2d 4h`, `45s`.
pub fn fmt_age(from: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let s = (now - from).num_seconds().max(0);
    match (s / 86_400, (s % 86_400) / 3600, (s % 3600) / 60) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Parse an RFC 3339 time from AWS or the state.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// The services the stack runs, as its deploy recorded them (`services::check` sets
/// `services`), or — for stacks deployed before services were data — the names of its health
/// checks.
pub fn stack_services(state: &StackState) -> Vec<String> {
    let names = |key: &str| -> Vec<String> {
        state
            .values
            .get(key)
            .and_then(|v| v.as_array())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.get("name")?.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let recorded = names("services");
    if recorded.is_empty() {
        names("health_checks")
    } else {
        recorded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_read_naturally() {
        let t0 = parse_time("2026-01-01T00:00:00Z").unwrap();
        let at = |s: &str| parse_time(s).unwrap();
        assert_eq!(fmt_age(t0, at("2026-01-01T00:00:42Z")), "42s");
        assert_eq!(fmt_age(t0, at("2026-01-01T00:05:00Z")), "5m");
        assert_eq!(fmt_age(t0, at("2026-01-01T03:12:00Z")), "3h 12m");
        assert_eq!(fmt_age(t0, at("2026-01-03T04:00:00Z")), "2d 4h");
    }

    #[test]
    fn tier_falls_back_to_the_recipe_name() {
        let mut s = StackState::new("demo");
        assert_eq!(tier(&s), "-");
        s.recipe = Some("recipes/automation.rhai".into());
        assert_eq!(tier(&s), "automation");
        s.outputs.insert("tier".into(), "gpu".into());
        assert_eq!(tier(&s), "gpu");
    }
}
