//! The stack document (`stacks/<name>.json`): its status, ledger and runs here; the records
//! of healthy deploys and rollbacks in `records.rs`; the locked store that writes it in
//! `store.rs`.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Kind, StateError};

pub use super::migrate::SCHEMA_VERSION;

mod records;
mod store;
pub use records::{HealthySnapshot, RollbackRecord, RollbackTrigger};
pub use store::StackStore;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StackStatus {
    Creating,
    Running,
    Updating,
    RollingBack,
    Destroying,
    Failed,
    Destroyed,
}

impl StackStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StackStatus::Creating => "creating",
            StackStatus::Running => "running",
            StackStatus::Updating => "updating",
            StackStatus::RollingBack => "rolling_back",
            StackStatus::Destroying => "destroying",
            StackStatus::Failed => "failed",
            StackStatus::Destroyed => "destroyed",
        }
    }

    pub const ALL: [StackStatus; 7] = [
        StackStatus::Creating,
        StackStatus::Running,
        StackStatus::Updating,
        StackStatus::RollingBack,
        StackStatus::Destroying,
        StackStatus::Failed,
        StackStatus::Destroyed,
    ];

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Where a ledger entry stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResourceStatus {
    /// Written before the API call: the resource may or may not exist (find it by token or tags).
    Intent,
    /// The API answered with the id.
    Created,
    /// The API refused; nothing was created.
    Failed,
    /// Deleted (or found gone).
    Deleted,
}

/// One ledger entry: a resource this stack created (or meant to create).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Resource {
    /// `service:type`, e.g. `ec2:instance`, `efs:file-system`.
    pub kind: Kind,
    /// The recipe's logical name for it (also its `Name` tag).
    pub name: String,
    pub id: Option<String>,
    /// The idempotency / client token sent with the create call.
    pub token: String,
    pub status: ResourceStatus,
    pub region: String,
    pub run: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attrs: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it was deleted (or found gone): with `created_at`, its lifetime for cost to date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One `geusemaker run` against this stack.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RunRecord {
    pub id: String,
    pub recipe: String,
    pub started_at: DateTime<Utc>,
    #[serde(default)]
    pub finished_at: Option<DateTime<Utc>>,
    #[serde(default)]
    pub outcome: Option<String>,
}

/// The whole stack document.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct StackState {
    pub schema_version: u32,
    pub stack: String,
    pub status: StackStatus,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub recipe: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The params the last run used (`--set` values and defaults).
    #[serde(default)]
    pub params: BTreeMap<String, Value>,
    /// Values recipes keep between runs (`state::set`).
    #[serde(default)]
    pub values: BTreeMap<String, Value>,
    /// What the stack offers its user (URLs, ids), set by recipes.
    #[serde(default)]
    pub outputs: BTreeMap<String, Value>,
    /// The resource ledger, in creation order.
    #[serde(default)]
    pub resources: Vec<Resource>,
    #[serde(default)]
    pub runs: Vec<RunRecord>,
    #[serde(default)]
    pub rollback_history: Vec<RollbackRecord>,
    #[serde(default)]
    pub last_healthy: Option<HealthySnapshot>,
}

impl StackState {
    pub fn new(stack: &str) -> Self {
        let now = Utc::now();
        StackState {
            schema_version: SCHEMA_VERSION,
            stack: stack.to_string(),
            status: StackStatus::Creating,
            region: None,
            recipe: None,
            created_at: now,
            updated_at: now,
            params: BTreeMap::new(),
            values: BTreeMap::new(),
            outputs: BTreeMap::new(),
            resources: Vec::new(),
            runs: Vec::new(),
            rollback_history: Vec::new(),
            last_healthy: None,
        }
    }

    /// Parse a state file, pointing at the line and column of any damage. A file of an older
    /// format is brought forward (see [`super::migrate`]); the second value is the version it
    /// was written in when that happened.
    pub fn parse_versioned(path: &Path, text: &str) -> Result<(Self, Option<u32>), StateError> {
        let corrupt = |line: usize, column: usize, message: String| StateError::Corrupt {
            path: path.to_path_buf(),
            line,
            column,
            message,
        };
        let positioned = |e: serde_json::Error| corrupt(e.line(), e.column(), e.to_string());
        #[derive(Deserialize)]
        struct Probe {
            schema_version: Option<u32>,
        }
        let probe: Probe = serde_json::from_str(text).map_err(positioned)?;
        let version = probe.schema_version.ok_or_else(|| {
            corrupt(
                1,
                1,
                "no schema_version: this is not a geusemaker state file".into(),
            )
        })?;
        if version > SCHEMA_VERSION {
            return Err(corrupt(
                1,
                1,
                format!(
                    "schema_version {version} is newer than this geusemaker understands ({SCHEMA_VERSION}); upgrade geusemaker (the release that migrated it kept the older file as {}.v{SCHEMA_VERSION})",
                    path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default()
                ),
            ));
        }
        if version == SCHEMA_VERSION {
            return Ok((serde_json::from_str(text).map_err(positioned)?, None));
        }
        let mut doc: Value = serde_json::from_str(text).map_err(positioned)?;
        super::migrate::forward(&mut doc, version).map_err(|m| corrupt(1, 1, m))?;
        let state = serde_json::from_value(doc).map_err(|e| {
            corrupt(
                1,
                1,
                format!("after migrating from schema_version {version}: {e}"),
            )
        })?;
        Ok((state, Some(version)))
    }

    /// [`StackState::parse_versioned`] without the version.
    pub fn parse(path: &Path, text: &str) -> Result<Self, StateError> {
        Self::parse_versioned(path, text).map(|(s, _)| s)
    }

    /// The newest ledger entry for a logical resource.
    pub fn resource(&self, kind: Kind, name: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .rev()
            .find(|r| r.kind == kind && r.name == name)
    }

    /// Entries that may still exist in AWS (intent or created), newest first: destroy's work list.
    pub fn live_resources(&self) -> impl Iterator<Item = &Resource> {
        self.resources
            .iter()
            .rev()
            .filter(|r| matches!(r.status, ResourceStatus::Intent | ResourceStatus::Created))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::StateBackend;

    #[test]
    fn records_a_recipe_wrote_in_its_own_way_still_load_as_they_were() {
        let snap: HealthySnapshot = serde_json::from_value(serde_json::json!({
            "recipe": "dev", "params": { "spot": true }, "image_id": 5, "az": "us-east-1a",
        }))
        .unwrap();
        assert_eq!(snap.recipe.as_deref(), Some("dev"));
        assert_eq!(
            snap.image_id, None,
            "not a string: not the image to relaunch"
        );
        assert_eq!(snap.recorded["image_id"], 5);
        let rb: RollbackRecord = serde_json::from_value(serde_json::json!({
            "trigger": "manual", "error": ["volume missing"], "success": null, "resources_deleted": ["i-1"],
        }))
        .unwrap();
        assert_eq!(rb.trigger.as_deref(), Some("manual"));
        assert_eq!(rb.resources_deleted, Some(vec!["i-1".to_string()]));
        // Written back as it was read: nothing lost, nothing twice.
        let back = serde_json::to_value(&rb).unwrap();
        assert_eq!(back["error"], serde_json::json!(["volume missing"]));
        assert!(back["success"].is_null());
        assert_eq!(
            serde_json::to_string(&back)
                .unwrap()
                .matches("\"error\"")
                .count(),
            1
        );
    }

    #[test]
    fn a_format_1_file_from_0_1_loads_with_its_params_under_params() {
        let text = include_str!("../../../tests/fixtures/state-v1.json");
        let (state, from) = StackState::parse_versioned(Path::new("team-dev.json"), text).unwrap();
        assert_eq!(from, Some(1));
        assert_eq!(state.schema_version, SCHEMA_VERSION);
        assert_eq!(state.params["instance_type"], "t3.large");
        assert_eq!(state.params["allowed_cidr"], "198.51.100.0/24");
        assert_eq!(state.status, StackStatus::Running);
        assert_eq!(state.resources.len(), 10);
        // The current format parses as it is.
        let again = serde_json::to_string(&state).unwrap();
        let (_, from) = StackState::parse_versioned(Path::new("x.json"), &again).unwrap();
        assert_eq!(from, None);
    }

    #[test]
    fn a_file_without_a_schema_version_is_not_a_state_file() {
        let e = StackState::parse(Path::new("x.json"), "{\"stack\": \"a\"}").unwrap_err();
        assert!(e.to_string().contains("no schema_version"), "{e}");
    }

    fn local(dir: &Path) -> StateBackend {
        StateBackend::local(super::super::Home::at(dir))
    }

    fn store(dir: &Path, stack: &str, run: &str) -> StackStore {
        StackStore::open(&local(dir), stack, run, "test").unwrap()
    }

    #[test]
    fn intent_is_on_disk_before_the_id_and_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path(), "demo", "r1");
        let (idx, token) = s
            .begin_create(Kind::Instance, "app", "us-east-1", || "tok-1".into())
            .unwrap();
        assert_eq!(token, "tok-1");
        // Simulate a crash: re-read the file without the store.
        let on_disk = StackStore::load(&local(dir.path()), "demo")
            .unwrap()
            .unwrap();
        assert_eq!(on_disk.resources[idx].status, ResourceStatus::Intent);
        assert_eq!(on_disk.resources[idx].token, "tok-1");
        assert_eq!(on_disk.resources[idx].id, None);
        assert_eq!(
            on_disk.region.as_deref(),
            Some("us-east-1"),
            "the home region is on disk from the first intent (status during a first run)"
        );
        drop(s);

        // The next run resumes the same intent with the same token.
        let mut s = store(dir.path(), "demo", "r2");
        let (idx2, token2) = s
            .begin_create(Kind::Instance, "app", "us-east-1", || "tok-2".into())
            .unwrap();
        assert_eq!((idx2, token2.as_str()), (idx, "tok-1"));
        s.finish_create(
            idx2,
            "i-123",
            BTreeMap::from([("az".into(), "us-east-1a".into())]),
        )
        .unwrap();
        let on_disk = StackStore::load(&local(dir.path()), "demo")
            .unwrap()
            .unwrap();
        let r = on_disk.resource(Kind::Instance, "app").unwrap();
        assert_eq!(r.id.as_deref(), Some("i-123"));
        assert_eq!(r.status, ResourceStatus::Created);
        assert_eq!(r.attrs["az"], "us-east-1a");
        assert_eq!(on_disk.live_resources().count(), 1);
    }

    #[test]
    fn failed_and_deleted_entries_are_not_live() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path(), "demo", "r1");
        let (a, _) = s
            .begin_create(Kind::FileSystem, "data", "us-east-1", || "t".into())
            .unwrap();
        s.fail_create(a, "AccessDenied").unwrap();
        let (b, _) = s
            .begin_create(Kind::KeyPair, "k", "us-east-1", || "t2".into())
            .unwrap();
        assert_ne!(a, b, "a failed intent is not resumed");
        s.finish_create(b, "key-1", BTreeMap::new()).unwrap();
        s.mark_deleted(Kind::KeyPair, "key-1").unwrap();
        assert_eq!(s.state().live_resources().count(), 0);
    }

    #[test]
    fn corrupt_file_is_reported_with_position_and_left_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let home = super::super::Home::at(dir.path());
        home.ensure().unwrap();
        let path = home.stack_file("demo");
        std::fs::write(&path, "{\n  \"stack\": \"demo\",\n  oops\n}").unwrap();
        let err = StackStore::open(&local(dir.path()), "demo", "r", "t").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("demo.json:3:"), "{msg}");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "{\n  \"stack\": \"demo\",\n  oops\n}"
        );
    }

    #[test]
    fn adopt_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = store(dir.path(), "demo", "r1");
        s.adopt(
            Kind::SecurityGroup,
            "web",
            "us-east-1",
            "sg-1",
            BTreeMap::new(),
        )
        .unwrap();
        s.adopt(
            Kind::SecurityGroup,
            "web",
            "us-east-1",
            "sg-1",
            BTreeMap::new(),
        )
        .unwrap();
        assert_eq!(s.state().resources.len(), 1);
    }
}
