//! A locked stack ([`Session`]) and one execution of a recipe on it ([`Session::exec`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::Dynamic;

use super::load::{chosen_params, is_teardown, Compiled};
use super::{new_run_id, Failure, RunError};
use crate::cloud::plan::Recorder;
use crate::cloud::AwsSettings;
use crate::engine::resolver::Resolver;
use crate::engine::{build_engine, diag, known_functions};
use crate::primitives::{Params, Runtime};
use crate::state::{
    Home, ResourceStatus, RunRecord, StackState, StackStatus, StackStore, StateBackend, StateError,
};
use crate::ui::{fmt_duration, Ui};

/// What one execution of a recipe did.
pub(super) struct Execution {
    pub(super) run_id: String,
    /// The error at its place in the recipe, when it failed.
    pub(super) error: Option<Failure>,
    /// The first line of the failure's message, unrendered: what the run's outcome and a
    /// rollback's record keep.
    pub(super) failure: Option<String>,
    /// The failure's `code` (see [`diag::error_code`]).
    pub(super) code: Option<String>,
    pub(super) interrupted: bool,
    pub(super) api_calls: u64,
    pub(super) attempts: u64,
    /// Creates sent again by geusemaker (their requests are in `api_calls`).
    pub(super) create_retries: u64,
    pub(super) waited: Duration,
    pub(super) took: Duration,
    /// Ledger entries this execution created (not found or adopted ones).
    pub(super) created: usize,
    /// Live ledger entries this execution deleted.
    pub(super) deleted: usize,
    /// What it changed on resources that already existed.
    pub(super) changes: Vec<crate::primitives::Change>,
    /// Diff mode: the run reached the confirmation of its changes (the diff is complete).
    pub(super) diff_finished: bool,
    /// Diff mode: the first write the read-only connection refused.
    pub(super) refused_write: Option<String>,
}

impl Execution {
    pub(super) fn summary(&self) -> String {
        let retried = self.attempts.saturating_sub(self.api_calls) + self.create_retries;
        format!(
            "{} AWS requests, {retried} retried; {} waiting on AWS, {} working ({} in all)",
            self.api_calls,
            fmt_duration(self.waited),
            fmt_duration(self.took.saturating_sub(self.waited)),
            fmt_duration(self.took)
        )
    }
}

/// A locked stack and what is needed to run recipes on it.
pub(super) struct Session {
    pub(super) stack: String,
    pub(super) home: Home,
    pub(super) backend: StateBackend,
    pub(super) ui: Ui,
    pub(super) aws: AwsSettings,
    pub(super) store: Option<StackStore>,
    /// The stack had no state before this session.
    pub(super) new_stack: bool,
    /// Plan mode: the recording backend, a detached store.
    pub(super) plan: Option<Arc<Recorder>>,
    /// Diff mode: real AWS read only, a detached copy of the stack's state.
    pub(super) diff: bool,
}

impl Session {
    pub(super) fn open(
        stack: &str,
        mut aws: AwsSettings,
        assume_yes: bool,
        command: &str,
    ) -> Result<Session, RunError> {
        let home = Home::from_env()?;
        let backend = StateBackend::current()?;
        let ui = Ui::detect(assume_yes);
        let lock_run = new_run_id();
        let store = StackStore::open(&backend, stack, &lock_run, command)?;
        if let Some(previous) = store.taken_over() {
            match previous.lease_until {
                Some(until) => ui.warn(&format!(
                    "the lock on `{stack}` held by {previous} was not renewed: its lease ran out at {}; taking it over (that run stops at its next write)",
                    until.format("%H:%M:%SZ")
                )),
                None => ui.warn(&format!(
                    "the previous run on `{stack}` ({previous}) ended without releasing its lock; taking it over"
                )),
            }
        }
        for notice in backend.notices() {
            ui.warn(&notice);
        }
        let new_stack = store.state().runs.is_empty() && store.state().resources.is_empty();
        // A stack lives in one region: later runs go there unless told otherwise, never elsewhere.
        if let Some(home_region) = store.state().region.clone() {
            match &aws.region {
                None => aws.region = Some(home_region),
                Some(r) if *r != home_region && store.state().live_resources().next().is_some() => {
                    return Err(RunError::usage(format!(
                        "stack `{stack}` lives in {home_region}, not {r}: run it with --region {home_region} (or pick another stack name)"
                    )));
                }
                Some(_) => {}
            }
        }
        Ok(Session {
            stack: stack.to_string(),
            home,
            backend,
            ui,
            aws,
            store: Some(store),
            new_stack,
            plan: None,
            diff: false,
        })
    }

    /// A session for the plan of a live stack: a copy of its state in memory (no lock:
    /// nothing is written), AWS reached read-only. `None` when the stack has no live resources.
    pub(super) fn diffing(
        stack: &str,
        aws: &AwsSettings,
        ui: Ui,
    ) -> Result<Option<Session>, RunError> {
        let home = Home::from_env()?;
        let backend = StateBackend::current()?;
        let Some(state) = StackStore::load(&backend, stack)? else {
            return Ok(None);
        };
        if state.live_resources().next().is_none() {
            return Ok(None);
        }
        let mut aws = aws.clone();
        if let (Some(home_region), None) = (&state.region, &aws.region) {
            aws.region = Some(home_region.clone());
        }
        aws.read_only = true;
        Ok(Some(Session {
            stack: stack.to_string(),
            home,
            backend,
            ui,
            aws,
            store: Some(StackStore::detached(state, "plan")),
            new_stack: false,
            plan: None,
            diff: true,
        }))
    }

    /// A session for a plan: a fresh in-memory state, no lock, the recording backend.
    pub(super) fn planning(stack: &str, region: &str, ui: Ui) -> Result<Session, RunError> {
        Ok(Session {
            stack: stack.to_string(),
            home: Home::from_env()?,
            backend: StateBackend::current()?,
            ui,
            aws: AwsSettings {
                region: Some(region.to_string()),
                ..AwsSettings::default()
            },
            store: Some(StackStore::detached(StackState::new(stack), "plan")),
            new_stack: true,
            plan: Some(Recorder::new(region)),
            diff: false,
        })
    }

    pub(super) fn state(&self) -> &StackState {
        self.store.as_ref().expect("session has its store").state()
    }

    pub(super) fn store_mut(&mut self) -> &mut StackStore {
        self.store.as_mut().expect("session has its store")
    }

    /// The runtime a run of `c` gives its primitives: this stack, its store, AWS as the session
    /// reaches it (recorded in a plan, read-only in a diff).
    fn runtime(
        &self,
        c: &Compiled,
        run_id: &str,
        params: Params,
        store: StackStore,
        ui: &Ui,
    ) -> Result<Runtime, RunError> {
        Ok(Runtime::new(
            &self.stack,
            run_id,
            &c.recipe.source_id,
            self.home.clone(),
            ui.clone(),
            params,
            self.aws.clone(),
            Some(store),
        )
        .map_err(|e| RunError::failed(format!("cannot start the async runtime: {e}")))?
        .planned(self.plan.clone())
        .diffing(self.diff))
    }

    /// Run one compiled recipe with `params` on the stack.
    pub(super) fn exec(
        &mut self,
        c: &Compiled,
        params: Params,
        ui: &Ui,
    ) -> Result<Execution, RunError> {
        let started = Instant::now();
        let retries_before = crate::cloud::create_retries();
        let run_id = new_run_id();
        let recipe_name = c.recipe.display.clone();
        let mut store = self.store.take().expect("session has its store");
        let first = store.state().resources.is_empty() && store.state().runs.is_empty();
        let before = store.state().clone();
        let teardown = is_teardown(c);
        let live_before: Vec<usize> = live_indices(store.state());
        store.set_run(&run_id);
        record_start(&mut store, &run_id, &recipe_name, first, teardown)?;

        let resolver = Resolver::new(c.recipe.dir.as_deref(), c.sources.clone());
        let mut engine = build_engine(ui.clone(), Some(resolver));
        let runtime = Arc::new(self.runtime(c, &run_id, params, store, ui)?);
        crate::interrupt::listen();
        engine.set_default_tag(Dynamic::from(runtime.clone()));
        ui.info(&format!(
            "stack {} · recipe {recipe_name} · run {run_id}",
            self.stack
        ));
        // (A clean-up's own params are internal; destroy shows what it will do instead.)
        if let Some(line) = chosen_params(c, &runtime.params).filter(|_| !teardown) {
            // A value from elsewhere than the recipe is never silent: a personal config.toml
            // changes a shared recipe's declared choice only in plain sight.
            ui.info(&line);
        }
        tracing::info!(stack = %self.stack, recipe = %recipe_name, run = %run_id, "run started");

        let result = engine.run_ast(&c.ast);
        // The engine holds the runtime in its tag; release it so the store can be taken back.
        engine.set_default_tag(Dynamic::UNIT);

        let interrupted = crate::interrupt::requested();
        let tally = AwsTally::of(&runtime);
        let preflight = runtime.preflight_failed();
        let diff_finished = runtime.diff_finished();
        let waited = runtime.waited();
        let changes = runtime.changes();
        let config = runtime.params.resolved();
        let forget = runtime.forget_requested();
        let (code, failure, error) = match &result {
            Ok(_) => (None, None, None),
            Err(e) => {
                let known = known_functions(&engine, Some(&c.ast));
                let d = diag::from_eval(
                    e,
                    &recipe_name,
                    &c.sources,
                    &known,
                    runtime.last_call().as_ref(),
                );
                let first_line = d.message.lines().next().unwrap_or("").to_string();
                (
                    diag::error_code(e),
                    Some(first_line),
                    Some(Failure::recipe(d, c.sources.clone())),
                )
            }
        };
        drop(engine);
        let runtime = Arc::try_unwrap(runtime)
            .map_err(|_| RunError::failed("internal: runtime still shared after the run"))?;
        let mut store = runtime.take_store().expect("run has a store");
        if let Some(e) = preflight {
            // AWS was never reached as anyone: nothing can have been created, so the run
            // leaves no trace in the stack's state (and a new stack no state at all).
            tracing::info!(run = %run_id, error = %e, "run stopped before reaching AWS");
            if first && self.new_stack {
                store.discard()?;
            } else {
                store.restore(before)?;
                self.store = Some(store);
            }
            return Err(RunError::Preflight(e));
        }
        let outcome = match &failure {
            None => "succeeded".to_string(),
            Some(_) if interrupted => "interrupted".into(),
            Some(f) => format!("failed: {f}"),
        };
        record_end(
            &mut store,
            &run_id,
            config,
            tally.region.clone(),
            outcome,
            error.is_some(),
        )?;
        let (created, deleted) = created_and_deleted(store.state(), &run_id, &live_before);
        let exec = Execution {
            deleted,
            run_id,
            error,
            failure,
            code,
            interrupted,
            api_calls: tally.api_calls,
            attempts: tally.attempts,
            create_retries: crate::cloud::create_retries() - retries_before,
            waited,
            took: started.elapsed(),
            created,
            changes,
            diff_finished,
            refused_write: tally.refused_write,
        };
        match &exec.error {
            None => tracing::info!(run = %exec.run_id, summary = %exec.summary(), "run succeeded"),
            // Info, not error: the user sees the rendered error; this line is for the log file.
            Some(e) => {
                tracing::info!(run = %exec.run_id, summary = %exec.summary(), error = %e.summary().lines().next().unwrap_or(""), "run failed")
            }
        }
        if forget && exec.error.is_none() {
            store.discard()?;
        } else {
            self.store = Some(store);
        }
        Ok(exec)
    }

    /// Remove the state of a stack that never got a resource (a failed first run). A create
    /// recorded as refused stays: a create made of several calls (a role, then its instance
    /// profile) may have left something behind, and the ledger is what finds it.
    pub(super) fn discard_if_empty(&mut self) -> Result<bool, RunError> {
        let empty = self.new_stack
            && self
                .store
                .as_ref()
                .is_some_and(|s| s.state().resources.is_empty());
        if empty {
            if let Some(store) = self.store.take() {
                store.discard()?;
            }
        }
        Ok(empty)
    }

    /// Where the stack's document lives (a path, or an `s3://` URL).
    pub(super) fn state_location(&self) -> String {
        self.backend.location(&self.stack)
    }
}

/// The run begins in the stack's state: the stack creating or updating, the tier's recipe
/// (a destroy or rollback run does not replace it), the run's record.
fn record_start(
    store: &mut StackStore,
    run_id: &str,
    recipe: &str,
    first: bool,
    teardown: bool,
) -> Result<(), StateError> {
    store.update(|s| {
        s.status = if first {
            StackStatus::Creating
        } else {
            StackStatus::Updating
        };
        if !teardown {
            s.recipe = Some(recipe.to_string());
        }
        s.runs.push(RunRecord {
            id: run_id.to_string(),
            recipe: recipe.to_string(),
            started_at: chrono::Utc::now(),
            finished_at: None,
            outcome: None,
        });
    })
}

/// The run ends in the stack's state: the params it ran with, the region it reached, the
/// run's outcome, and the stack's status (running after a deploy, failed after a failure).
fn record_end(
    store: &mut StackStore,
    run_id: &str,
    params: BTreeMap<String, serde_json::Value>,
    region: Option<String>,
    outcome: String,
    failed: bool,
) -> Result<(), StateError> {
    store.update(|s| {
        s.params = params;
        if region.is_some() {
            s.region = region;
        }
        if let Some(r) = s.runs.iter_mut().rev().find(|r| r.id == run_id) {
            r.finished_at = Some(chrono::Utc::now());
            r.outcome = Some(outcome);
        }
        if failed {
            s.status = StackStatus::Failed;
        } else if matches!(s.status, StackStatus::Creating | StackStatus::Updating) {
            s.status = StackStatus::Running;
        }
    })
}

/// What the run asked of AWS, when it reached it.
struct AwsTally {
    api_calls: u64,
    attempts: u64,
    region: Option<String>,
    refused_write: Option<String>,
}

impl AwsTally {
    fn of(runtime: &Runtime) -> AwsTally {
        match runtime.aws_if_connected() {
            Some(aws) => AwsTally {
                api_calls: aws.stats.operations(),
                attempts: aws.stats.attempts(),
                region: Some(aws.region.clone()),
                refused_write: aws.stats.refused_write(),
            },
            None => AwsTally {
                api_calls: 0,
                attempts: 0,
                region: None,
                refused_write: None,
            },
        }
    }
}

/// The ledger entries run `run_id` created (not found or adopted ones), and the entries live
/// before it (`live_before`) that it deleted.
fn created_and_deleted(state: &StackState, run_id: &str, live_before: &[usize]) -> (usize, usize) {
    let created = state
        .resources
        .iter()
        .filter(|r| r.run == run_id && !r.token.starts_with("adopted:") && r.id.is_some())
        .count();
    let live_after = live_indices(state);
    let deleted = live_before
        .iter()
        .filter(|i| !live_after.contains(i))
        .count();
    (created, deleted)
}

/// Ledger positions of entries that may exist in AWS.
fn live_indices(state: &StackState) -> Vec<usize> {
    state
        .resources
        .iter()
        .enumerate()
        .filter(|(_, r)| matches!(r.status, ResourceStatus::Intent | ResourceStatus::Created))
        .map(|(i, _)| i)
        .collect()
}
