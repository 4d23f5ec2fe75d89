//! [`StackStore`]: a locked stack whose every mutation is persisted before it returns.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::Utc;

use crate::state::backend::{HeldLock, Stored, Version};
use crate::state::{validate_stack_name, Kind, StateBackend, StateError};

use super::*;

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
    pub fn taken_over(&self) -> Option<&crate::state::LockHolder> {
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
