//! [`Runtime`]: what a primitive reaches during a run (the stack's store, AWS, the UI, the
//! changes and waits it reports), and the call site of the primitive running.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use rhai::{EvalAltResult, NativeCallContext, Position};

use crate::cloud::{Aws, AwsSettings, Blocking, CloudError, Tags};
use crate::state::{Home, Kind, StackStore};
use crate::ui::Ui;

use super::*;

/// Everything a primitive needs during a run; reached from a `NativeCallContext` (the
/// engine's default tag holds it).
pub struct Runtime {
    pub stack: String,
    pub run_id: String,
    /// The recipe being run (display name), for snapshots.
    pub recipe: String,
    pub home: Home,
    pub ui: Ui,
    pub params: Params,
    pub blocking: Blocking,
    settings: AwsSettings,
    aws: OnceLock<Result<Aws, crate::cloud::PreflightError>>,
    /// The region resolved without connecting (see [`Runtime::region`]).
    region: OnceLock<Result<String, crate::cloud::PreflightError>>,
    store: Option<Mutex<StackStore>>,
    waited: Mutex<Duration>,
    last_call: Mutex<Option<CallSite>>,
    /// `(kind, name)` lookups that found nothing during this run (see [`Runtime::note_absent`]).
    absent: Mutex<std::collections::HashSet<(Kind, String)>>,
    forget: std::sync::atomic::AtomicBool,
    /// Plan mode: AWS is the recording backend, health checks are not probed.
    plan: Option<Arc<crate::cloud::plan::Recorder>>,
    /// What this run changed on resources that already existed, in order.
    changes: Mutex<Vec<Change>>,
    /// Diff mode (`run --plan` on a live stack): real AWS, reads only, health not probed; the
    /// run ends at the first confirmation of a change.
    diff: bool,
    diff_done: std::sync::atomic::AtomicBool,
}

/// How a difference between the recipe and AWS is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeAction {
    /// Changed where it stands (rules, tags, settings, the services on the instance).
    InPlace,
    /// Stopped, changed and started again (an on-demand instance's type).
    Restart,
    /// A new one made, the old one removed (an instance's image, a spot instance's type).
    Replace,
}

impl ChangeAction {
    /// The mark a diff shows: `~`, `~!` (a restart), `-/+`.
    pub fn mark(self) -> &'static str {
        match self {
            ChangeAction::InPlace => "~",
            ChangeAction::Restart => "~!",
            ChangeAction::Replace => "-/+",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "in_place" | "in place" => Some(ChangeAction::InPlace),
            "restart" => Some(ChangeAction::Restart),
            "replace" => Some(ChangeAction::Replace),
            _ => None,
        }
    }
}

/// One difference between what the recipe asks and what AWS had, acted on by a run:
/// `~ security group app: +203.0.113.7/32 on 5678`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Change {
    pub action: ChangeAction,
    /// What changes: `security group app`, `instance app`, `services`.
    pub resource: String,
    /// From what to what, e.g. `t3.medium → t3.large`.
    pub detail: String,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.action.mark(),
            self.resource,
            self.detail
        )
    }
}

/// Where the most recent primitive was called from: errors raised by primitives carry no
/// position of their own, so the renderer points here.
#[derive(Debug, Clone, PartialEq)]
pub struct CallSite {
    pub function: String,
    pub source: Option<String>,
    pub position: Position,
}

impl Runtime {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        stack: &str,
        run_id: &str,
        recipe: &str,
        home: Home,
        ui: Ui,
        params: Params,
        settings: AwsSettings,
        store: Option<StackStore>,
    ) -> std::io::Result<Self> {
        Ok(Runtime {
            stack: stack.to_string(),
            run_id: run_id.to_string(),
            recipe: recipe.to_string(),
            home,
            ui,
            params,
            blocking: Blocking::new()?,
            settings,
            aws: OnceLock::new(),
            region: OnceLock::new(),
            store: store.map(Mutex::new),
            waited: Mutex::new(Duration::ZERO),
            last_call: Mutex::new(None),
            absent: Mutex::new(Default::default()),
            forget: std::sync::atomic::AtomicBool::new(false),
            plan: None,
            changes: Mutex::new(Vec::new()),
            diff: false,
            diff_done: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Diff mode: see [`Runtime::is_diff`].
    pub fn diffing(mut self, on: bool) -> Self {
        self.diff = on;
        self
    }

    /// A plan of a live stack: AWS is real but only read, and the run stops where it would
    /// first change something (`ui::approve`).
    pub fn is_diff(&self) -> bool {
        self.diff
    }

    /// The diff is complete: the run was stopped before its changes.
    pub fn finish_diff(&self) {
        self.diff_done
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn diff_finished(&self) -> bool {
        self.diff_done.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Show a change to an existing resource and keep it for the run's summary.
    pub fn record_change(&self, action: ChangeAction, resource: &str, detail: &str) {
        let change = Change {
            action,
            resource: resource.to_string(),
            detail: detail.to_string(),
        };
        let mut changes = self.changes.lock().unwrap_or_else(|p| p.into_inner());
        // Shown in the diff before acting, then made: once.
        if changes.contains(&change) {
            return;
        }
        tracing::info!(%change, "change");
        self.ui.change(&change.to_string());
        changes.push(change);
    }

    /// Did this run create the resource `id` (rather than find it)?
    /// Without a stack (the REPL) nothing is.
    pub fn created_this_run(&self, id: &str) -> Result<bool, Box<EvalAltResult>> {
        if self.store.is_none() {
            return Ok(false);
        }
        Ok(self.store()?.state().resources.iter().any(|r| {
            r.id.as_deref() == Some(id) && r.run == self.run_id && !r.token.starts_with("adopted:")
        }))
    }

    /// The changes this run made so far.
    pub fn changes(&self) -> Vec<Change> {
        self.changes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Run against `recorder` instead of AWS (`run --plan`).
    pub fn planned(mut self, recorder: Option<Arc<crate::cloud::plan::Recorder>>) -> Self {
        self.plan = recorder;
        self
    }

    /// Is this a plan (no AWS calls, nothing written)?
    pub fn is_plan(&self) -> bool {
        self.plan.is_some() || self.diff
    }

    /// Ask for the stack's state file to be removed when the run succeeds (nothing remains).
    pub fn request_forget(&self) {
        self.forget.store(true, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn forget_requested(&self) -> bool {
        self.forget.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The AWS clients, connected on first use (a recipe that never touches AWS needs no
    /// credentials or region).
    pub fn aws(&self) -> Result<&Aws, Box<EvalAltResult>> {
        self.aws
            .get_or_init(|| match &self.plan {
                Some(r) => Ok(r.aws()),
                None => Aws::connect(&self.settings, &self.blocking),
            })
            .as_ref()
            .map_err(|e| cloud_err(e.clone().into()))
    }

    /// Why the connection to AWS could not be made, when that is how the run ended: nothing
    /// was asked of AWS, so nothing can have been created.
    pub fn preflight_failed(&self) -> Option<crate::cloud::PreflightError> {
        self.aws
            .get()
            .and_then(|r| r.as_ref().err().cloned())
            .or_else(|| self.region.get().and_then(|r| r.as_ref().err().cloned()))
    }

    /// The AWS clients if they were ever connected (for the run summary).
    pub fn aws_if_connected(&self) -> Option<&Aws> {
        self.aws.get().and_then(|r| r.as_ref().ok())
    }

    /// The region: the connection's, or — before one is made — resolved without asking AWS
    /// anything (credentials are not needed to know it).
    pub fn region(&self) -> Result<String, Box<EvalAltResult>> {
        if self.plan.is_some() {
            return Ok(self.aws()?.region.clone());
        }
        if let Some(aws) = self.aws_if_connected() {
            return Ok(aws.region.clone());
        }
        self.region
            .get_or_init(|| crate::cloud::resolve_region(&self.settings, &self.blocking))
            .clone()
            .map_err(|e| cloud_err(e.into()))
    }

    /// The locked stack store.
    pub fn store(&self) -> Result<MutexGuard<'_, StackStore>, Box<EvalAltResult>> {
        let store = self
            .store
            .as_ref()
            .ok_or_else(|| match self.recipe.as_str() {
                // `eval` only reads the account: it has no --name to give.
                "<eval>" => usage_err_hint(
                    "this needs a stack, and `eval` runs without one (it only reads the account)",
                    "create or change resources in `geusemaker repl --name <stack>`, or in a recipe run with `geusemaker run <recipe> --name <stack>`",
                ),
                "<repl>" => usage_err_hint(
                    "this needs a stack",
                    "start the REPL on one: `geusemaker repl --name <stack>`",
                ),
                _ => usage_err("this needs a stack: run the recipe with --name"),
            })?;
        Ok(store.lock().unwrap_or_else(|p| p.into_inner()))
    }

    pub fn take_store(self) -> Option<StackStore> {
        self.store
            .map(|m| m.into_inner().unwrap_or_else(|p| p.into_inner()))
    }

    /// AWS-visible name for a logical resource: `<stack>-<name>`.
    pub fn resource_name(&self, logical: &str) -> String {
        format!("{}-{}", self.stack, logical)
    }

    pub fn tags(&self, logical: &str) -> Tags {
        Tags::new(&self.stack, &self.run_id, &self.resource_name(logical))
    }

    /// A fresh idempotency token for a create call.
    pub fn new_token(&self, logical: &str) -> String {
        let r: u32 = rand::random();
        let mut t = format!("gm-{}-{}-{:08x}", self.stack, logical, r);
        t.truncate(64);
        t
    }

    pub fn last_call(&self) -> Option<CallSite> {
        self.last_call.lock().unwrap().clone()
    }

    /// Point error rendering at `site` (the failing step of a `parallel`), also for a
    /// `parallel` this thread runs in.
    pub fn set_last_call(&self, site: CallSite) {
        THREAD_CALL.with(|c| *c.borrow_mut() = Some(site.clone()));
        *self.last_call.lock().unwrap() = Some(site);
    }

    pub fn add_wait(&self, d: Duration) {
        *self.waited.lock().unwrap() += d;
    }

    pub fn waited(&self) -> Duration {
        *self.waited.lock().unwrap()
    }

    /// Remember that the stack's `kind`/`name` was looked up and does not exist. The run holds
    /// the stack's lock, so nothing of ours creates it meanwhile: a create primitive that would
    /// look for it first (to adopt it on a re-run) can skip that lookup. A create of it
    /// forgets the note.
    pub fn note_absent(&self, kind: Kind, name: &str) {
        let mut absent = self.absent.lock().unwrap_or_else(|p| p.into_inner());
        absent.insert((kind, name.to_string()));
    }

    /// Drop a [`Runtime::note_absent`] note (a create of something it covers was sent).
    pub fn forget_absent(&self, kind: Kind, name: &str) {
        let mut absent = self.absent.lock().unwrap_or_else(|p| p.into_inner());
        absent.remove(&(kind, name.to_string()));
    }

    /// Was `kind`/`name` looked up earlier in this run and found missing?
    pub fn known_absent(&self, kind: Kind, name: &str) -> bool {
        let absent = self.absent.lock().unwrap_or_else(|p| p.into_inner());
        absent.contains(&(kind, name.to_string()))
    }

    /// The id of `kind`/`name` if the ledger says this stack has it (created or adopted, not
    /// deleted) in the current region.
    pub fn ledger_id(&self, kind: Kind, name: &str) -> Result<Option<String>, Box<EvalAltResult>> {
        let region = self.region()?;
        Ok(self
            .store()?
            .state()
            .resources
            .iter()
            .rev()
            .find(|r| {
                r.kind == kind
                    && r.name == name
                    && r.region == region
                    && r.status == crate::state::ResourceStatus::Created
            })
            .and_then(|r| r.id.clone()))
    }

    /// Write-ahead create: intent (with a fresh token) → `create(token)` → id recorded (or
    /// failure).
    pub fn create_recorded<T>(
        &self,
        kind: Kind,
        logical: &str,
        create: impl FnOnce(&str) -> Result<T, CloudError>,
        id_of: impl Fn(&T) -> (String, BTreeMap<String, String>),
    ) -> Result<T, Box<EvalAltResult>> {
        self.create_recorded_with(kind, logical, || self.new_token(logical), create, id_of)
    }

    /// [`Runtime::create_recorded`] with the token `new_token` makes (e.g. a deterministic
    /// creation token); an unfinished intent's token is resumed either way.
    pub fn create_recorded_with<T>(
        &self,
        kind: Kind,
        logical: &str,
        new_token: impl FnOnce() -> String,
        create: impl FnOnce(&str) -> Result<T, CloudError>,
        id_of: impl Fn(&T) -> (String, BTreeMap<String, String>),
    ) -> Result<T, Box<EvalAltResult>> {
        let region = self.region()?;
        self.forget_absent(kind, logical);
        let (idx, token) = self
            .store()?
            .begin_create(kind, logical, &region, new_token)
            .map_err(state_err)?;
        match create(&token) {
            Ok(v) => {
                let (id, attrs) = id_of(&v);
                tracing::info!(%kind, name = logical, %id, %token, "created");
                self.store()?
                    .finish_create(idx, &id, attrs)
                    .map_err(state_err)?;
                Ok(v)
            }
            Err(e) => {
                tracing::info!(%kind, name = logical, %token, error = %e, "create failed");
                // Only a refusal proves nothing was created; a timeout or a lost response may
                // have created it, so the intent stays for the next run (or destroy) to resolve.
                if !matches!(
                    e.code.as_str(),
                    "Timeout" | "EndpointUnreachable" | "Unhandled"
                ) {
                    self.store()?
                        .fail_create(idx, &e.to_string())
                        .map_err(state_err)?;
                }
                Err(cloud_err(e))
            }
        }
    }

    /// Record a resource found (not created) on a re-run.
    pub fn adopt(
        &self,
        kind: Kind,
        logical: &str,
        id: &str,
        attrs: BTreeMap<String, String>,
    ) -> Result<(), Box<EvalAltResult>> {
        let region = self.region()?;
        tracing::debug!(%kind, name = logical, id, "found existing");
        self.store()?
            .adopt(kind, logical, &region, id, attrs)
            .map_err(state_err)
    }

    /// Settle a delete call: mark the ledger entry deleted and say whether the resource
    /// existed (`false`: it was already gone, which is not an error).
    pub fn settle_delete(
        &self,
        kind: Kind,
        id: &str,
        result: Result<(), CloudError>,
    ) -> Result<bool, Box<EvalAltResult>> {
        let existed = match result {
            Ok(()) => true,
            Err(e) if e.is_not_found() => false,
            Err(e) => return Err(cloud_err(e)),
        };
        self.mark_deleted(kind, id)?;
        Ok(existed)
    }

    /// Mark a resource deleted in the ledger.
    pub fn mark_deleted(&self, kind: Kind, id: &str) -> Result<(), Box<EvalAltResult>> {
        let mut store = self.store()?;
        store.mark_deleted(kind, id).map_err(state_err)
    }

    /// Show a spinner while `f` waits; account the time as waiting.
    pub fn waiting<T>(
        &self,
        what: &str,
        f: impl FnOnce(&dyn Fn(&str, Duration)) -> Result<T, CloudError>,
        done: impl Fn(&T) -> String,
    ) -> Result<T, Box<EvalAltResult>> {
        let w = self.ui.wait(what);
        let r = f(&|state, left| w.update(state, left));
        match r {
            Ok(v) => {
                let took = w.done(&done(&v));
                self.add_wait(took);
                Ok(v)
            }
            Err(e) => {
                self.add_wait(w.failed());
                Err(cloud_err(e))
            }
        }
    }
}

/// The runtime of the current evaluation.
pub fn rt(ctx: &NativeCallContext) -> Result<Arc<Runtime>, Box<EvalAltResult>> {
    let rt = ctx
        .tag()
        .and_then(|t| t.clone().try_cast::<Arc<Runtime>>())
        .ok_or_else(|| usage_err("primitive called outside a geusemaker run"))?;
    let site = CallSite {
        function: ctx.fn_name().to_string(),
        source: ctx.call_source().map(str::to_string),
        position: ctx.call_position(),
    };
    THREAD_CALL.with(|c| *c.borrow_mut() = Some(site.clone()));
    *rt.last_call.lock().unwrap() = Some(site);
    Ok(rt)
}

thread_local! {
    /// The last primitive called on this thread: a step of `parallel` that fails reports
    /// its own call site, not whichever primitive another step called last.
    static THREAD_CALL: std::cell::RefCell<Option<CallSite>> = const { std::cell::RefCell::new(None) };
}

/// The last primitive called on this thread.
pub fn thread_call() -> Option<CallSite> {
    THREAD_CALL.with(|c| c.borrow().clone())
}
