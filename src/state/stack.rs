//! The stack document (`stacks/<name>.json`) and the locked store that writes it.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::backend::{HeldLock, Stored, Version};
use super::{validate_stack_name, Kind, StateBackend, StateError};

pub use super::migrate::SCHEMA_VERSION;

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

/// A locked, writable stack: every mutation is persisted before it returns, conditional on
/// the version this store read or last wrote.
#[derive(Debug)]
pub struct StackStore {
    /// `None` for a detached store (plan mode): nothing is locked or written.
    backend: Option<StateBackend>,
    state: StackState,
    run: String,
    /// The stored version the next write is based on (`None`: nothing stored yet).
    version: Version,
    lock: Option<Box<dyn HeldLock>>,
}

impl StackStore {
    /// Validate the name, take the stack's lock and load (or start) its state.
    pub fn open(
        backend: &StateBackend,
        stack: &str,
        run: &str,
        command: &str,
    ) -> Result<Self, StateError> {
        validate_stack_name(stack)?;
        let lock = backend.lock(stack, run, command)?;
        let (state, version) = match Self::read(backend, stack)? {
            Some((state, Some(v), stored)) => {
                // Keep what the older release wrote: it cannot read the new format.
                backend.keep_copy(stack, &format!(".v{v}"), stored.text.as_bytes())?;
                tracing::info!(
                    from = v,
                    to = SCHEMA_VERSION,
                    "state migrated; the older document was kept beside it"
                );
                (state, Some(stored.version))
            }
            Some((state, None, stored)) => (state, Some(stored.version)),
            None => (StackState::new(stack), None),
        };
        Ok(StackStore {
            backend: Some(backend.clone()),
            state,
            run: run.to_string(),
            version,
            lock: Some(lock),
        })
    }

    /// A store that lives in memory only (plan mode): no lock, nothing written, same ledger logic.
    pub fn detached(state: StackState, run: &str) -> Self {
        StackStore {
            backend: None,
            state,
            run: run.to_string(),
            version: None,
            lock: None,
        }
    }

    /// Read a stack without locking it (for listings); `None` when it does not exist.
    pub fn load(backend: &StateBackend, stack: &str) -> Result<Option<StackState>, StateError> {
        validate_stack_name(stack)?;
        Ok(Self::read(backend, stack)?.map(|(state, _, _)| state))
    }

    /// Parse a document read from `backend` (at `location`).
    pub fn parse_stored(location: &str, stored: &Stored) -> Result<StackState, StateError> {
        StackState::parse(Path::new(location), &stored.text)
    }

    /// The state, the format it was migrated from (if it was), and what was stored.
    fn read(
        backend: &StateBackend,
        stack: &str,
    ) -> Result<Option<(StackState, Option<u32>, Stored)>, StateError> {
        let Some(stored) = backend.read(stack)? else {
            return Ok(None);
        };
        let location = backend.location(stack);
        let (state, from) = StackState::parse_versioned(Path::new(&location), &stored.text)?;
        Ok(Some((state, from, stored)))
    }

    pub fn state(&self) -> &StackState {
        &self.state
    }

    /// The holder recorded by a run that died holding this stack's lock (or whose lease ran
    /// out), whose lock this store took over.
    pub fn taken_over(&self) -> Option<&super::LockHolder> {
        self.lock.as_ref().and_then(|l| l.previous_holder())
    }

    pub fn run_id(&self) -> &str {
        &self.run
    }

    /// The run that ledger entries written from now on belong to.
    pub fn set_run(&mut self, run: &str) {
        self.run = run.to_string();
    }

    /// Change the state and persist it before returning. When the write fails (S3 unreachable,
    /// the lock lost, the document changed by another run) the change is not kept in memory
    /// either, and the caller stops before doing what it recorded.
    pub fn update<T>(&mut self, f: impl FnOnce(&mut StackState) -> T) -> Result<T, StateError> {
        let before = self
            .persists()
            .then(|| (self.state.clone(), self.version.clone()));
        let out = f(&mut self.state);
        self.state.updated_at = Utc::now();
        if let Err(e) = self.save() {
            match before {
                // Nothing was written: the change is undone here too.
                Some((state, version)) if version == self.version => self.state = state,
                // Written, then the lock was found lost: what is stored is kept as it is.
                _ => {}
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Put back a state read earlier, as it was (its `updated_at` included): for a run that
    /// turned out to have done nothing.
    pub fn restore(&mut self, earlier: StackState) -> Result<(), StateError> {
        self.state = earlier;
        self.save()
    }

    fn persists(&self) -> bool {
        self.backend.is_some()
    }

    fn save(&mut self) -> Result<(), StateError> {
        let Some(backend) = &self.backend else {
            return Ok(());
        };
        if let Some(lock) = &self.lock {
            lock.check()?;
        }
        let mut text = serde_json::to_string_pretty(&self.state).expect("state serializes");
        text.push('\n');
        let version = backend.write(&self.state.stack, text.as_bytes(), &self.version)?;
        self.version = Some(version);
        // The write may have taken long enough for the lock to be lost meanwhile: what the
        // caller records next (a create) must not happen then.
        if let Some(lock) = &self.lock {
            lock.check()?;
        }
        Ok(())
    }

    /// Remove the stack's document (for a stack that never got any resource).
    pub fn discard(self) -> Result<(), StateError> {
        match (&self.backend, &self.version) {
            (Some(backend), Some(version)) => backend.remove(&self.state.stack, version),
            _ => Ok(()),
        }
    }

    /// Write-ahead: record that `kind`/`name` is about to be created. Returns the ledger index
    /// and the idempotency token to send. An earlier intent for the same resource that never
    /// got an id (a crash, a lost response) is resumed with its original token, so the retried
    /// call is recognised by AWS as the same request.
    pub fn begin_create(
        &mut self,
        kind: Kind,
        name: &str,
        region: &str,
        new_token: impl FnOnce() -> String,
    ) -> Result<(usize, String), StateError> {
        if let Some(idx) = self.state.resources.iter().rposition(|r| {
            r.kind == kind
                && r.name == name
                && r.region == region
                && r.status == ResourceStatus::Intent
        }) {
            // The create is sent again with this token: only while the lock is this run's.
            if let Some(lock) = &self.lock {
                lock.check()?;
            }
            let token = self.state.resources[idx].token.clone();
            return Ok((idx, token));
        }
        let token = new_token();
        let record = Resource {
            kind,
            name: name.to_string(),
            id: None,
            token: token.clone(),
            status: ResourceStatus::Intent,
            region: region.to_string(),
            run: self.run.clone(),
            created_at: Utc::now(),
            attrs: BTreeMap::new(),
            error: None,
            deleted_at: None,
        };
        let idx = self.update(|s| {
            // The stack's home region is known from its first resource on (`status` during
            // the first run shows it), not only once the run ends.
            if s.region.is_none() && !region.is_empty() {
                s.region = Some(region.to_string());
            }
            s.resources.push(record);
            s.resources.len() - 1
        })?;
        Ok((idx, token))
    }

    /// The create call answered: record the id (and any attributes destroy needs).
    pub fn finish_create(
        &mut self,
        idx: usize,
        id: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        self.update(|s| {
            let r = &mut s.resources[idx];
            r.id = Some(id.to_string());
            r.status = ResourceStatus::Created;
            r.attrs.extend(attrs);
            r.error = None;
        })
    }

    /// The create call was refused: nothing exists.
    pub fn fail_create(&mut self, idx: usize, error: &str) -> Result<(), StateError> {
        self.update(|s| {
            let r = &mut s.resources[idx];
            r.status = ResourceStatus::Failed;
            r.error = Some(error.to_string());
        })
    }

    /// Record an existing resource adopted by this stack (found by tag or name on a re-run).
    pub fn adopt(
        &mut self,
        kind: Kind,
        name: &str,
        region: &str,
        id: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<(), StateError> {
        let already = self.state.resources.iter().any(|r| {
            r.kind == kind && r.id.as_deref() == Some(id) && r.status == ResourceStatus::Created
        });
        if already {
            return Ok(());
        }
        let (idx, _) = self.begin_create(kind, name, region, || format!("adopted:{id}"))?;
        self.finish_create(idx, id, attrs)
    }

    /// Mark every live ledger entry with this id as deleted.
    pub fn mark_deleted(&mut self, kind: Kind, id: &str) -> Result<(), StateError> {
        self.update(|s| {
            for r in s
                .resources
                .iter_mut()
                .filter(|r| r.kind == kind && r.id.as_deref() == Some(id))
            {
                r.status = ResourceStatus::Deleted;
                r.deleted_at.get_or_insert_with(Utc::now);
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let text = include_str!("../../tests/fixtures/state-v1.json");
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
