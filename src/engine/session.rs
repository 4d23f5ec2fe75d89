//! Running recipes against a stack: `run`, `destroy`, `rollback`, `unlock`.
//!
//! A [`Session`] holds the stack's lock for as long as it lives, so a failed run and its
//! automatic rollback, or a rollback and its relaunch, happen under one lock.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rhai::{Dynamic, AST};

use super::meta::{self, RecipeMeta};
use super::resolver::{display_path, Resolver};
use super::sources::Sources;
use super::{build_engine, diag, embedded, known_functions, scan};
use crate::cloud::plan::{is_planned, Recorder};
use crate::cloud::AwsSettings;
use crate::primitives::{did_you_mean, Params, Runtime};
use crate::state::{
    validate_stack_name, Home, ResourceStatus, RunRecord, StackState, StackStatus, StackStore,
    StateBackend, StateError,
};
use crate::ui::{fmt_duration, Ui};

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

/// Why a command did not succeed; each carries its fully rendered message.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The invocation itself is wrong (exit 2): nothing was started.
    #[error("{0}")]
    Usage(String),
    /// The recipe failed to compile or failed while running (exit 1): a rendered report that
    /// starts with its own `error:` line.
    #[error("{0}")]
    Recipe(String),
    /// Stopped by Ctrl-C (exit 130): a rendered report, like `Recipe`.
    #[error("{0}")]
    Interrupted(String),
    #[error("{0}")]
    State(#[from] StateError),
    /// AWS could not be reached as anyone (exit 2): nothing was asked of it, nothing recorded.
    #[error("{}", .0.render())]
    Preflight(crate::cloud::PreflightError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) | RunError::Preflight(_) => 2,
            RunError::Interrupted(_) => 130,
            RunError::Recipe(_) | RunError::State(_) => 1,
        }
    }
}

/// A recipe's text and where it came from.
pub struct LoadedRecipe {
    /// How errors name it: a path relative to the working directory, or `recipes/<name>.rhai`.
    pub display: String,
    /// What `load_recipe` takes to load it again (an absolute path, or a bundled name).
    pub source_id: String,
    pub text: String,
    /// The file on disk (`None` for a bundled recipe).
    pub path: Option<PathBuf>,
    pub dir: Option<PathBuf>,
}

/// A path to a `.rhai` file, the name of a bundled recipe, or `source/name` of a shared source
/// locked in the project (verified against geusemaker.lock).
pub fn load_recipe(arg: &str) -> Result<LoadedRecipe, RunError> {
    super::resolver::check_project().map_err(RunError::Usage)?;
    let project = super::resolver::current_project();
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::Usage(format!("cannot read recipe {arg}: {e}")))?;
        if let Some((p, home)) = &project {
            p.verify_file(home, path, &text).map_err(RunError::Usage)?;
        }
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Ok(LoadedRecipe {
            display: display_path(&abs),
            source_id: abs.to_string_lossy().to_string(),
            text,
            dir: abs.parent().map(Path::to_path_buf),
            path: Some(abs),
        });
    }
    if let Some((p, home)) = &project {
        if let Some((display, text, file)) = p.load_file(home, arg).map_err(RunError::Usage)? {
            return Ok(LoadedRecipe {
                display,
                source_id: arg.to_string(),
                text,
                dir: file.parent().map(Path::to_path_buf),
                path: Some(file),
            });
        }
    }
    if let Some(text) = embedded::recipe(arg) {
        return Ok(LoadedRecipe {
            // Not a path in the working directory: `recipes copy` makes it one.
            display: format!("{}/recipes/{arg}.rhai", embedded::BUNDLED),
            source_id: arg.to_string(),
            text: text.to_string(),
            path: None,
            dir: None,
        });
    }
    let bundled: Vec<&str> = embedded::RECIPES.iter().map(|(n, _)| *n).collect();
    let mut msg = format!(
        "no recipe `{arg}`: not a file, and not a bundled recipe ({})",
        bundled.join(", ")
    );
    if let Some(id) = super::recipes::id_of_named(arg) {
        msg.push_str(&format!(
            "\nhint: a local recipe is named `{arg}`: run it as `{id}` (`recipes list` shows what each is run as)"
        ));
    } else if let Some(s) = did_you_mean(arg, bundled.iter().copied()) {
        msg.push_str(&format!("\nhint: did you mean `{s}`?"));
    }
    Err(RunError::Usage(msg))
}

/// A recipe compiled and checked, ready to run.
struct Compiled {
    recipe: LoadedRecipe,
    ast: AST,
    sources: Arc<Sources>,
    /// The recipe's header, when it has one.
    meta: Option<RecipeMeta>,
}

fn color() -> bool {
    console::colors_enabled_stderr() && std::env::var_os("NO_COLOR").is_none()
}

/// A header problem rendered like any other recipe error.
pub fn header_error(e: &meta::HeaderError, display: &str, sources: &Sources) -> String {
    diag::render(
        &diag::Diagnostic {
            message: e.message.clone(),
            hint: None,
            primary: Some(diag::Loc {
                source: display.to_string(),
                line: e.line,
                col: e.col,
            }),
            frames: Vec::new(),
        },
        sources,
        color(),
    )
}

fn compile(recipe: LoadedRecipe) -> Result<Compiled, RunError> {
    let sources = Arc::new(Sources::default());
    sources.insert(&recipe.display, &recipe.text, recipe.path.clone());
    let meta = meta::parse(&recipe.text)
        .map_err(|e| RunError::Recipe(header_error(&e, &recipe.display, &sources)))?;
    let engine = build_engine(Ui::detect(true), None);
    let mut ast = engine.compile(&recipe.text).map_err(|e| {
        RunError::Recipe(diag::render(
            &diag::from_parse(&e, &recipe.display),
            &sources,
            color(),
        ))
    })?;
    ast.set_source(recipe.display.as_str());
    Ok(Compiled {
        meta,
        recipe,
        ast,
        sources,
    })
}

/// Check `--set` against the recipe and, for a recipe with a header, resolve every declared
/// param (typed, validated, required ones present) — all before anything runs.
fn prepare_params(c: &Compiled, params: Params) -> Result<Params, RunError> {
    if let Some(m) = &c.meta {
        for key in params.given() {
            if m.param(key).is_none() {
                let mut msg = format!(
                    "--set {key}: the recipe {} has no param `{key}`",
                    c.recipe.display
                );
                match did_you_mean(key, m.params.iter().map(|p| p.name.as_str())) {
                    Some(s) => msg.push_str(&format!("\nhint: did you mean `{s}`?")),
                    None if m.params.is_empty() => {
                        msg.push_str("\nhint: this recipe takes no params")
                    }
                    None => msg.push_str(&format!(
                        "\nhint: its params are: {} (`geusemaker recipes show {}`)",
                        m.params
                            .iter()
                            .map(|p| p.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", "),
                        c.recipe.source_id
                    )),
                }
                return Err(RunError::Usage(msg));
            }
        }
        let declared =
            meta::resolve(m, params.given_map(), params.settings()).map_err(RunError::Usage)?;
        return Ok(params.with_declared(declared));
    }
    check_sets(c, &params)?;
    Ok(params)
}

/// The params whose value does not come from the recipe, with where it comes from
/// (`instance_type = t3.large (config.toml deploy.instance_type)`), on one line.
fn chosen_params(c: &Compiled, params: &Params) -> Option<String> {
    let mut out: Vec<String> = params
        .given_map()
        .iter()
        .map(|(k, v)| format!("{k} = {v} (--set)"))
        .collect();
    out.extend(
        params
            .settings()
            .iter()
            .filter(|(k, _)| !params.given_map().contains_key(*k) && declares(c, k))
            .map(|(k, v)| format!("{k} = {v} (config.toml {})", crate::config::param_key(k))),
    );
    (!out.is_empty()).then(|| format!("params not from the recipe: {}", out.join(", ")))
}

/// Does the recipe take param `name` (header, or a literal `param("name", …)` call)?
fn declares(c: &Compiled, name: &str) -> bool {
    match &c.meta {
        Some(m) => m.param(name).is_some(),
        None => {
            let d = scan::param_names(&c.ast);
            d.dynamic || d.names.contains(name)
        }
    }
}

/// Every `--set` must be a param the recipe reads (unless it computes param names).
fn check_sets(c: &Compiled, params: &Params) -> Result<(), RunError> {
    let declared = scan::param_names(&c.ast);
    if declared.dynamic {
        return Ok(());
    }
    for key in params.given() {
        if declared.names.contains(key) {
            continue;
        }
        let mut msg = format!(
            "--set {key}: the recipe {} has no param `{key}`",
            c.recipe.display
        );
        match did_you_mean(key, declared.names.iter().map(String::as_str)) {
            Some(s) => msg.push_str(&format!("\nhint: did you mean `{s}`?")),
            None if declared.names.is_empty() => {
                msg.push_str("\nhint: this recipe takes no params")
            }
            None => msg.push_str(&format!(
                "\nhint: its params are: {}",
                declared
                    .names
                    .iter()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
        return Err(RunError::Usage(msg));
    }
    Ok(())
}

fn new_run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Outcome figures of a successful command.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub api_calls: u64,
    pub attempts: u64,
}

/// What one execution of a recipe did.
struct Execution {
    run_id: String,
    /// The rendered error, when it failed.
    error: Option<String>,
    /// The failure's `code` (see [`diag::error_code`]).
    code: Option<String>,
    interrupted: bool,
    api_calls: u64,
    attempts: u64,
    /// Creates sent again by geusemaker (their requests are in `api_calls`).
    create_retries: u64,
    waited: Duration,
    took: Duration,
    /// Ledger entries this execution created (not found or adopted ones).
    created: usize,
    /// Live ledger entries this execution deleted.
    deleted: usize,
    /// What it changed on resources that already existed.
    changes: Vec<crate::primitives::Change>,
    /// Diff mode: the run reached the confirmation of its changes (the diff is complete).
    diff_finished: bool,
    /// Diff mode: the first write the read-only connection refused.
    refused_write: Option<String>,
}

impl Execution {
    fn summary(&self) -> String {
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
struct Session {
    stack: String,
    home: Home,
    backend: StateBackend,
    ui: Ui,
    aws: AwsSettings,
    store: Option<StackStore>,
    /// The stack had no state before this session.
    new_stack: bool,
    /// Plan mode: the recording backend, a detached store.
    plan: Option<Arc<Recorder>>,
    /// Diff mode: real AWS read only, a detached copy of the stack's state.
    diff: bool,
}

impl Session {
    fn open(
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
                    return Err(RunError::Usage(format!(
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
    fn diffing(stack: &str, aws: &AwsSettings, ui: Ui) -> Result<Option<Session>, RunError> {
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
    fn planning(stack: &str, region: &str, ui: Ui) -> Result<Session, RunError> {
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

    fn state(&self) -> &StackState {
        self.store.as_ref().expect("session has its store").state()
    }

    fn store_mut(&mut self) -> &mut StackStore {
        self.store.as_mut().expect("session has its store")
    }

    /// Run one compiled recipe with `params` on the stack.
    fn exec(&mut self, c: &Compiled, params: Params, ui: &Ui) -> Result<Execution, RunError> {
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
        store.update(|s| {
            s.status = if first {
                StackStatus::Creating
            } else {
                StackStatus::Updating
            };
            // The stack's recipe is its tier's: a destroy or rollback run does not replace it.
            if !teardown {
                s.recipe = Some(recipe_name.clone());
            }
            s.runs.push(RunRecord {
                id: run_id.clone(),
                recipe: recipe_name.clone(),
                started_at: chrono::Utc::now(),
                finished_at: None,
                outcome: None,
            });
        })?;

        let resolver = Resolver::new(c.recipe.dir.as_deref(), c.sources.clone());
        let mut engine = build_engine(ui.clone(), Some(resolver));
        let runtime = Arc::new(
            Runtime::new(
                &self.stack,
                &run_id,
                &c.recipe.source_id,
                self.home.clone(),
                ui.clone(),
                params,
                self.aws.clone(),
                Some(store),
            )
            .map_err(|e| RunError::Recipe(format!("error: cannot start the async runtime: {e}\n")))?
            .planned(self.plan.clone())
            .diffing(self.diff),
        );
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
        let (api_calls, attempts, region, refused_write) = match runtime.aws_if_connected() {
            Some(aws) => (
                aws.stats.operations(),
                aws.stats.attempts(),
                Some(aws.region.clone()),
                aws.stats.refused_write(),
            ),
            None => (0, 0, None, None),
        };
        let preflight = runtime.preflight_failed();
        let diff_finished = runtime.diff_finished();
        let waited = runtime.waited();
        let changes = runtime.changes();
        let config = runtime.params.resolved();
        let forget = runtime.forget_requested();
        let code = result.as_ref().err().and_then(|e| diag::error_code(e));
        let error = result.as_ref().err().map(|e| {
            let known = known_functions(&engine, Some(&c.ast));
            let last = runtime.last_call();
            diag::render(
                &diag::from_eval(e, &recipe_name, &c.sources, &known, last.as_ref()),
                &c.sources,
                color(),
            )
        });
        drop(engine);
        let runtime = Arc::try_unwrap(runtime).map_err(|_| {
            RunError::Recipe("error: internal: runtime still shared after the run\n".into())
        })?;
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
        store.update(|s| {
            s.params = config;
            if region.is_some() {
                s.region = region.clone();
            }
            if let Some(r) = s.runs.iter_mut().rev().find(|r| r.id == run_id) {
                r.finished_at = Some(chrono::Utc::now());
                r.outcome = Some(match &error {
                    None => "succeeded".into(),
                    Some(_) if interrupted => "interrupted".into(),
                    Some(e) => format!(
                        "failed: {}",
                        e.lines().next().unwrap_or("").trim_start_matches("error: ")
                    ),
                });
            }
            match &error {
                None if matches!(s.status, StackStatus::Creating | StackStatus::Updating) => {
                    s.status = StackStatus::Running
                }
                None => {}
                Some(_) => s.status = StackStatus::Failed,
            }
        })?;
        let created = store
            .state()
            .resources
            .iter()
            .filter(|r| r.run == run_id && !r.token.starts_with("adopted:") && r.id.is_some())
            .count();
        let live_after = live_indices(store.state());
        let deleted = live_before
            .iter()
            .filter(|i| !live_after.contains(i))
            .count();
        let exec = Execution {
            deleted,
            run_id,
            error,
            code,
            interrupted,
            api_calls,
            attempts,
            create_retries: crate::cloud::create_retries() - retries_before,
            waited,
            took: started.elapsed(),
            created,
            changes,
            diff_finished,
            refused_write,
        };
        match &exec.error {
            None => tracing::info!(run = %exec.run_id, summary = %exec.summary(), "run succeeded"),
            // Info, not error: the user sees the rendered error; this line is for the log file.
            Some(e) => {
                tracing::info!(run = %exec.run_id, summary = %exec.summary(), error = %e.lines().next().unwrap_or(""), "run failed")
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
    fn discard_if_empty(&mut self) -> Result<bool, RunError> {
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
    fn state_location(&self) -> String {
        self.backend.location(&self.stack)
    }
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

fn parse_sets(sets: &[String]) -> Result<Params, RunError> {
    Params::parse(sets).map_err(|e| RunError::Usage(e.to_string()))
}

/// `--set region=…` is the same as `--region`, for recipes that list the region as a param.
fn region_from_params(aws: &mut AwsSettings, params: &Params) -> Result<(), RunError> {
    if let Some(r) = params.raw("region").filter(|r| !r.is_empty()) {
        match &aws.region {
            Some(flag) if flag != r => {
                return Err(RunError::Usage(format!(
                    "--region {flag} and --set region={r} disagree; give one"
                )))
            }
            _ => aws.region = Some(r.to_string()),
        }
    }
    Ok(())
}

pub fn require_existing(stack: &str) -> Result<(), RunError> {
    validate_stack_name(stack).map_err(|e| RunError::Usage(e.to_string()))?;
    let backend = StateBackend::current()?;
    if backend.exists(stack)? {
        return Ok(());
    }
    let known = backend.names()?;
    let mut msg = format!("no stack named `{stack}` in {}", backend.describe());
    match did_you_mean(stack, known.iter().map(String::as_str)) {
        Some(s) => msg.push_str(&format!("\nhint: did you mean `{s}`?")),
        None if known.is_empty() => msg.push_str(
            "\nhint: there are no stacks yet; deploy one with `geusemaker run dev --name NAME`",
        ),
        None => msg.push_str(&format!("\nhint: known stacks: {}", known.join(", "))),
    }
    Err(RunError::Usage(msg))
}

/// Recipes whose failure is not rolled back automatically (they are the rollback).
fn is_teardown(c: &Compiled) -> bool {
    matches!(c.recipe.source_id.as_str(), "destroy" | "rollback")
        || c.recipe
            .path
            .as_ref()
            .and_then(|p| p.file_stem())
            .is_some_and(|s| s == "destroy" || s == "rollback")
}

/// Ids of ledger entries created by `run_id` that are now deleted.
fn removed_by(state: &StackState, run_id: &str) -> Vec<String> {
    state
        .resources
        .iter()
        .filter(|r| r.run == run_id && r.status == ResourceStatus::Deleted)
        .filter_map(|r| r.id.clone())
        .collect()
}

fn record_rollback(store: &mut StackStore, record: serde_json::Value) -> Result<(), StateError> {
    store.update(|s| s.rollback_history.push(record))
}

/// Remove what run `run_id` created (data kept), with the bundled (or local) destroy recipe.
fn roll_back_run(
    session: &mut Session,
    run_id: &str,
    trigger: &str,
    original: &str,
) -> Result<String, RunError> {
    let destroy = compile(load_recipe("destroy")?)?;
    let ui = Ui::detect(true);
    let only = prepare_params(&destroy, parse_sets(&[format!("only_run={run_id}")])?)?;
    let rb = match session.exec(&destroy, only, &ui) {
        Ok(rb) => rb,
        // The clean-up could not reach AWS (credentials expired during the run): the run's
        // own failure is still the story; what it created stays in the ledger.
        Err(RunError::Preflight(e)) => {
            if let Some(store) = session.store.as_mut() {
                store.update(|s| s.status = StackStatus::Failed)?;
            }
            return Ok(format!(
                "automatic rollback could not reach AWS: {e}\nwhat this run created remains (the ledger lists it): `geusemaker destroy {0}` removes it once AWS answers\n",
                session.stack
            ));
        }
        Err(e) => return Err(e),
    };
    let removed = session
        .store
        .as_ref()
        .map(|s| removed_by(s.state(), run_id))
        .unwrap_or_default();
    let success = rb.error.is_none();
    if let Some(store) = session.store.as_mut() {
        record_rollback(
            store,
            serde_json::json!({
                "at": chrono::Utc::now().to_rfc3339(),
                "trigger": trigger,
                "run": run_id,
                "resources_deleted": removed,
                "success": success,
                "error": original,
            }),
        )?;
        store.update(|s| s.status = StackStatus::Failed)?;
    }
    Ok(match rb.error {
        None if removed.is_empty() => {
            "automatic rollback: this run had created nothing that needed removing\n".to_string()
        }
        None => format!(
            "automatic rollback removed what this run created: {}\n",
            removed.join(", ")
        ),
        Some(e) => format!("automatic rollback failed too:\n{e}"),
    })
}

/// `geusemaker run`: validate everything that can be validated before touching AWS, take the
/// stack's lock, run the recipe, and on failure remove what the run created (unless
/// `keep_failed`).
pub fn run(req: RunRequest) -> Result<RunSummary, RunError> {
    validate_stack_name(&req.stack).map_err(|e| RunError::Usage(e.to_string()))?;
    let params = parse_sets(&req.sets)?.with_settings(req.param_settings.clone());
    let compiled = compile(load_recipe(&req.recipe)?)?;
    let params = prepare_params(&compiled, params)?;
    let mut aws = req.aws.clone();
    region_from_params(&mut aws, &params)?;
    // Destroy always asks: without a terminal to ask on, say so before anything is read or
    // recorded (not after printing the inventory, as a failed run).
    if compiled.recipe.source_id == "destroy" && !Ui::detect(req.assume_yes).can_confirm() {
        return Err(RunError::Usage(format!(
            "no terminal to confirm on: pass --yes to destroy stack `{0}`\nhint: geusemaker destroy {0} --yes",
            req.stack
        )));
    }

    let mut session = Session::open(
        &req.stack,
        aws,
        req.assume_yes,
        &format!("run {}", req.recipe),
    )?;
    let ui = session.ui.clone();
    let exec = session.exec(&compiled, params, &ui)?;
    let summary = exec.summary();

    let Some(error) = exec.error.clone() else {
        if session.store.is_none() {
            ui.success(&format!(
                "run {} finished: {summary}; the stack's state was removed",
                exec.run_id
            ));
        } else {
            let changed = match exec.changes.len() {
                0 => String::new(),
                n => format!("; {n} change(s) to what existed"),
            };
            match (exec.created, exec.deleted, changed.is_empty()) {
                (0, 0, true) => {
                    ui.info("nothing changed: every resource already was what the recipe says")
                }
                (0, 0, false) => {
                    let mut what: Vec<&str> = Vec::new();
                    for c in &exec.changes {
                        if !what.contains(&c.resource.as_str()) {
                            what.push(&c.resource);
                        }
                    }
                    ui.info(&format!(
                        "{} change(s) to what existed: {}",
                        exec.changes.len(),
                        what.join(", ")
                    ))
                }
                (c, 0, _) => ui.info(&format!("{c} resource(s) created by this run{changed}")),
                (0, d, _) => ui.info(&format!("{d} resource(s) deleted by this run{changed}")),
                (c, d, _) => ui.info(&format!(
                    "{c} resource(s) created and {d} deleted by this run{changed}"
                )),
            }
            ui.success(&format!("run {} finished: {summary}", exec.run_id));
            ui.info(&format!("state: {}", session.state_location()));
        }
        return Ok(RunSummary {
            run_id: exec.run_id,
            api_calls: exec.api_calls,
            attempts: exec.attempts,
        });
    };

    let run_id = exec.run_id.clone();
    if exec.interrupted {
        crate::interrupt::reset();
        let mut text = format!("{error}run {run_id} interrupted after {summary}\n");
        if exec.created > 0 {
            // No count here: the clean-up keeps the data (destroy says what it removes).
            let offer = "Roll back what this run created (its data is kept)?".to_string();
            if !req.assume_yes && ui.confirm(&offer).unwrap_or(false) {
                text.push_str(&roll_back_run(
                    &mut session,
                    &run_id,
                    "interrupted",
                    "interrupted",
                )?);
            } else {
                text.push_str(&format!(
                    "nothing was rolled back: `geusemaker rollback {0}` or `geusemaker destroy {0}` removes it, `geusemaker run {1} --name {0}` continues\n",
                    req.stack, req.recipe
                ));
            }
        }
        return Err(RunError::Interrupted(text));
    }
    if session.discard_if_empty()? {
        return Err(RunError::Recipe(format!(
            "{error}run {run_id} failed after {summary}; nothing was created\n"
        )));
    }
    let mut text = format!("{error}run {run_id} failed after {summary}\n");
    if exec.created > 0 && !req.keep_failed && !is_teardown(&compiled) {
        let trigger = match exec.code.as_deref() {
            Some("WaitTimeout" | "NotHealthy") => "timeout",
            _ => "run_failed",
        };
        let first_line = error
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ")
            .to_string();
        ui.warn("run failed: removing what it created; its data is kept (--keep-failed keeps everything)");
        text.push_str(&roll_back_run(&mut session, &run_id, trigger, &first_line)?);
    } else if exec.created > 0 && req.keep_failed {
        text.push_str(&format!(
            "--keep-failed: the {} resource(s) this run created were kept for debugging; `geusemaker destroy {}` removes them\n",
            exec.created, req.stack
        ));
    }
    text.push_str(&format!(
        "state: {} (the ledger lists every resource)\n",
        session.state_location()
    ));
    Err(RunError::Recipe(text))
}

/// `geusemaker destroy <name>`: the destroy recipe on an existing stack.
pub fn destroy(mut req: RunRequest) -> Result<RunSummary, RunError> {
    require_existing(&req.stack)?;
    req.recipe = "destroy".into();
    req.keep_failed = true;
    run(req)
}

/// `geusemaker rollback <name>`: the rollback recipe, then — when the stack has a last-healthy
/// snapshot — the snapshot's recipe with its params, all under one lock.
/// The recipe and params that relaunch a `last_healthy` snapshot: its recipe, its params (those
/// the recipe still declares), its image — checked like any run's.
fn relaunch_of(snapshot: &serde_json::Value) -> Result<(Compiled, Params), RunError> {
    let recipe_id = snapshot["recipe"].as_str().unwrap_or("dev").to_string();
    let mut relaunch_sets: Vec<String> = snapshot["params"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| match v {
                    serde_json::Value::String(s) => format!("{k}={s}"),
                    serde_json::Value::Array(a) => format!(
                        "{k}={}",
                        a.iter()
                            .map(|x| x
                                .as_str()
                                .map(str::to_string)
                                .unwrap_or_else(|| x.to_string()))
                            .collect::<Vec<_>>()
                            .join(",")
                    ),
                    other => format!("{k}={other}"),
                })
                .collect()
        })
        .unwrap_or_default();
    let compiled = compile(load_recipe(&recipe_id)?)?;
    // A param the recipe no longer declares (it changed since the snapshot) is left out.
    relaunch_sets.retain(|kv| {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        declares(&compiled, key)
    });
    if let Some(image) = snapshot["image_id"].as_str() {
        if declares(&compiled, "image_id") {
            relaunch_sets.retain(|s| !s.starts_with("image_id="));
            relaunch_sets.push(format!("image_id={image}"));
        }
    }
    let params = prepare_params(&compiled, parse_sets(&relaunch_sets)?)?;
    Ok((compiled, params))
}

/// `reason`: what made `monitor` roll back (a spot interruption notice, failing checks), kept
/// in the rollback's record.
pub fn rollback(
    req: RunRequest,
    trigger: &str,
    reason: Option<&str>,
) -> Result<RunSummary, RunError> {
    require_existing(&req.stack)?;
    // What the relaunch will run is checked before the rollback terminates anything: a
    // snapshot whose params its recipe now refuses would leave the stack without an instance.
    let backend = StateBackend::current()?;
    if let Some(snapshot) = StackStore::load(&backend, &req.stack)?.and_then(|s| s.last_healthy) {
        relaunch_of(&snapshot).map_err(|e| {
            RunError::Usage(format!(
                "the last healthy deploy cannot be relaunched as it was recorded, so nothing was rolled back:\n{e}"
            ))
        })?;
    }
    let mut sets = req.sets.clone();
    sets.push(format!("trigger={trigger}"));
    let compiled = compile(load_recipe("rollback")?)?;
    let params = prepare_params(&compiled, parse_sets(&sets)?)?;
    let mut session = Session::open(&req.stack, req.aws.clone(), req.assume_yes, "rollback")?;
    let ui = session.ui.clone();
    // The stack is down from the rollback's first step (the instance terminated) until the
    // relaunch is healthy: counted to the relaunch's end, an upper bound.
    let started = Instant::now();
    let exec = session.exec(&compiled, params, &ui)?;
    if let Some(e) = &exec.error {
        return Err(RunError::Recipe(format!(
            "{e}rollback {} failed after {}\n",
            exec.run_id,
            exec.summary()
        )));
    }
    let snapshot = session.state().last_healthy.clone();
    let relaunch = session.state().status == StackStatus::RollingBack;
    let Some(snapshot) = snapshot.filter(|_| relaunch) else {
        ui.success(&format!(
            "rollback {} finished: {}",
            exec.run_id,
            exec.summary()
        ));
        return Ok(RunSummary {
            run_id: exec.run_id,
            api_calls: exec.api_calls,
            attempts: exec.attempts,
        });
    };

    let (compiled, relaunch_params) = relaunch_of(&snapshot)?;
    ui.stage(&format!(
        "Relaunching the last healthy deploy ({})",
        compiled.recipe.display
    ));
    let relaunch = session.exec(&compiled, relaunch_params, &ui)?;
    let down = started.elapsed().as_secs();
    let store = session.store_mut();
    store.update(|s| {
        if let Some(last) = s
            .rollback_history
            .last_mut()
            .and_then(|r| r.as_object_mut())
        {
            last.insert("relaunch_run".into(), relaunch.run_id.clone().into());
            last.insert("success".into(), relaunch.error.is_none().into());
            if let Some(r) = reason {
                last.insert("reason".into(), r.into());
            }
            if relaunch.error.is_none() {
                last.insert("down_seconds".into(), down.into());
            }
            if let Some(e) = &relaunch.error {
                last.insert(
                    "error".into(),
                    e.lines()
                        .next()
                        .unwrap_or("")
                        .trim_start_matches("error: ")
                        .into(),
                );
            }
        }
    })?;
    match relaunch.error {
        None => {
            ui.success(&format!(
                "rolled back and relaunched: {}",
                relaunch.summary()
            ));
            ui.info(&format!(
                "the stack was down at most {down} s (from the instance's termination to the relaunch's end)"
            ));
            Ok(RunSummary {
                run_id: relaunch.run_id,
                api_calls: relaunch.api_calls,
                attempts: relaunch.attempts,
            })
        }
        Some(e) => Err(RunError::Recipe(format!(
            "{e}the relaunch after rollback failed; the data is kept\n"
        ))),
    }
}

/// `geusemaker unlock <name>`: clear a lock whose holder is gone. A shared (S3) lock is
/// removed after a confirmation, its holder named: the holder may be alive on another machine.
pub fn unlock(stack: &str, assume_yes: bool) -> Result<String, RunError> {
    validate_stack_name(stack).map_err(|e| RunError::Usage(e.to_string()))?;
    let backend = StateBackend::current()?;
    match backend.lock(stack, "unlock", "unlock") {
        Ok(lock) => {
            let msg = match lock.previous_holder() {
                Some(h) => format!("stack `{stack}` was not locked; cleared the record of a run that died ({h})"),
                None => format!("stack `{stack}` is not locked"),
            };
            Ok(msg)
        }
        Err(StateError::Locked { mut holder, .. }) if backend.is_remote() => {
            // A shared lock's holder may be alive on another machine: the user decides.
            let mut shown = backend.holder(stack)?;
            // No readable holder: released meanwhile (and maybe taken again), or a damaged
            // lock object.
            if shown.is_none() {
                match backend.lock(stack, "unlock", "unlock") {
                    Ok(_free) => {
                        return Ok(format!("stack `{stack}` is not locked (its run just ended)"))
                    }
                    Err(StateError::Locked { holder: now, .. }) => {
                        holder = now;
                        shown = backend.holder(stack)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let question = match &shown {
                Some(h) if h.is_live() => format!("stack `{stack}` is locked by {h}, whose lease still runs: that run may be alive on {}. Remove its lock anyway (the run stops at its first write after its next renewal)?", h.host),
                Some(h) => format!("stack `{stack}` is locked by {h}, whose lease ran out. Remove the lock?"),
                None => format!("stack `{stack}` is locked by {holder}. Remove the lock?"),
            };
            if !Ui::detect(assume_yes).confirm(&question).map_err(RunError::Usage)? {
                return Err(RunError::Usage(format!("the lock of `{stack}` was kept")));
            }
            backend.break_lock(stack, shown.as_ref())?;
            Ok(format!("removed the lock of `{stack}` held by {holder}"))
        }
        Err(StateError::Locked { holder, .. }) => match backend.holder(stack)? {
            Some(h) if h.is_alive_here() => Err(RunError::Usage(format!(
                "stack `{stack}` is locked by a live process: {holder}\nhint: wait for it, or stop it (kill {}) and run unlock again",
                h.pid
            ))),
            _ => {
                backend.break_lock(stack, None)?;
                Ok(format!("removed the lock of `{stack}` held by {holder}, which is not running here"))
            }
        },
        Err(e) => Err(e.into()),
    }
}

/// The region a plan is made for: `--region`, config.toml, `AWS_REGION`/`AWS_DEFAULT_REGION`,
/// or us-east-1 (a plan reads no profile and needs no credentials).
fn plan_region(aws: &AwsSettings, params: &Params) -> String {
    aws.region
        .clone()
        .or_else(|| {
            params
                .raw("region")
                .filter(|r| !r.is_empty())
                .map(str::to_string)
        })
        .or_else(|| aws.default_region.clone())
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        })
        .unwrap_or_else(|| "us-east-1".into())
}

/// What a plan found.
pub struct Plan {
    pub stack: String,
    pub recipe: String,
    pub region: String,
    /// (kind, name, id) of every resource the recipe would create.
    pub resources: Vec<(String, String, String)>,
    /// Operations of the recipe's run, then of destroy's (when asked), in call order.
    pub calls: Vec<String>,
    pub destroy_calls: Vec<String>,
    /// The recipe's own monthly estimate (`state::set("cost", #{ monthly, … })`), if it made one.
    pub cost_monthly: Option<f64>,
    /// The user data of each instance the recipe would launch: (name, script).
    pub user_data: Vec<(String, String)>,
}

/// Run `req`'s recipe as a plan (and, with `with_destroy`, the destroy recipe after it, on the
/// planned resources). Nothing is written and no AWS call is made.
pub fn make_plan(req: &RunRequest, ui: Ui, with_destroy: bool) -> Result<Plan, RunError> {
    validate_stack_name(&req.stack).map_err(|e| RunError::Usage(e.to_string()))?;
    let params = parse_sets(&req.sets)?.with_settings(req.param_settings.clone());
    let compiled = compile(load_recipe(&req.recipe)?)?;
    let params = prepare_params(&compiled, params)?;
    let region = plan_region(&req.aws, &params);
    let mut session = Session::planning(&req.stack, &region, ui.clone())?;
    let exec = session.exec(&compiled, params, &ui)?;
    if let Some(e) = exec.error {
        return Err(RunError::Recipe(format!(
            "{e}the plan stopped here: this is where a real run would fail too\n"
        )));
    }
    let recorder = session.plan.clone().expect("a planning session records");
    let calls = recorder.calls();
    let resources = session
        .store
        .as_ref()
        .map(|s| {
            s.state()
                .resources
                .iter()
                .filter(|r| r.status == ResourceStatus::Created)
                .map(|r| {
                    (
                        r.kind.clone(),
                        r.name.clone(),
                        r.id.clone().unwrap_or_default(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let cost_monthly = session
        .store
        .as_ref()
        .and_then(|s| s.state().values.get("cost")?.get("monthly")?.as_f64());
    let mut destroy_calls = Vec::new();
    if with_destroy {
        let destroy = compile(load_recipe("destroy")?)?;
        let dparams = prepare_params(&destroy, parse_sets(&["delete_data=true".to_string()])?)?;
        let quiet = ui.clone().silent();
        let d = session.exec(&destroy, dparams, &quiet)?;
        if let Some(e) = d.error {
            return Err(RunError::Recipe(format!(
                "{e}planning the destroy recipe failed\n"
            )));
        }
        destroy_calls = recorder.calls()[calls.len()..].to_vec();
    }
    Ok(Plan {
        stack: req.stack.clone(),
        recipe: compiled.recipe.display.clone(),
        region,
        resources,
        calls,
        destroy_calls,
        cost_monthly,
        user_data: recorder.user_data(),
    })
}

/// What `run --plan` found on a live stack, for `--json`.
#[derive(serde::Serialize)]
struct LiveDiff<'a> {
    stack: &'a str,
    recipe: &'a str,
    region: Option<&'a str>,
    changes: &'a [crate::primitives::Change],
    /// The recipe ran to its end or to the confirmation of its changes: nothing left unseen.
    complete: bool,
    /// When not complete: the first AWS operation a real run would make that the plan could
    /// not show (a resource to create, a setting to change outside the diff).
    stops_before: Option<&'a str>,
}

/// `run --plan` on a stack that has live resources: the recipe runs against AWS with reads
/// only (a copy of the state in memory, no lock, health not probed) and stops where it would
/// first change something; the diff is what it found. `None` when the stack is not live.
fn plan_live(req: &RunRequest, json: bool) -> Result<Option<()>, RunError> {
    validate_stack_name(&req.stack).map_err(|e| RunError::Usage(e.to_string()))?;
    let mut ui = Ui::detect(true);
    if json {
        ui = ui.with_stdout_reserved();
    }
    let params = parse_sets(&req.sets)?.with_settings(req.param_settings.clone());
    let compiled = compile(load_recipe(&req.recipe)?)?;
    let params = prepare_params(&compiled, params)?;
    let mut aws = req.aws.clone();
    region_from_params(&mut aws, &params)?;
    let Some(mut session) = Session::diffing(&req.stack, &aws, ui.clone())? else {
        return Ok(None);
    };
    ui.stage(&format!(
        "Plan: {} on live stack {} — AWS is only read, nothing is changed",
        req.recipe, req.stack
    ));
    let exec = session.exec(&compiled, params, &ui)?;
    let complete = exec.diff_finished || exec.error.is_none();
    if let (Some(e), false) = (&exec.error, complete) {
        if exec.refused_write.is_none() {
            return Err(RunError::Recipe(format!(
                "{e}the plan stopped here: this is where a real run would fail too\n"
            )));
        }
    }
    let region = session.state().region.clone();
    if json {
        let doc = LiveDiff {
            stack: &req.stack,
            recipe: &compiled.recipe.display,
            region: region.as_deref(),
            changes: &exec.changes,
            complete,
            stops_before: if complete {
                None
            } else {
                exec.refused_write.as_deref()
            },
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("a diff serializes")
        );
        return Ok(Some(()));
    }
    ui.stage(&format!("Plan for live stack {}", req.stack));
    if exec.changes.is_empty() && complete {
        ui.line("no changes: the running stack is what the recipe says");
    } else {
        for c in &exec.changes {
            ui.change(&c.to_string());
        }
    }
    if !complete {
        ui.warn(&format!(
            "the plan stops before {}: the recipe would next change something the diff cannot show yet (a new resource, or a setting outside it); the changes above come first",
            exec.refused_write.as_deref().unwrap_or("an AWS write")
        ));
    }
    ui.line(&format!(
        "`geusemaker run {} --name {}` applies it (asking first on a terminal).",
        req.recipe, req.stack
    ));
    Ok(Some(()))
}

/// `geusemaker run <recipe> --name x --plan`: the recipe's own output, then what it would
/// create and call. On a live stack: the diff between the recipe and AWS ([`plan_live`]).
pub fn plan(req: RunRequest, show_user_data: bool, json: bool) -> Result<(), RunError> {
    if plan_live(&req, json)?.is_some() {
        return Ok(());
    }
    let ui = Ui::detect(true);
    ui.stage(&format!(
        "Plan: {} on stack {} — no AWS calls, no credentials, nothing written",
        req.recipe, req.stack
    ));
    let p = make_plan(&req, ui.clone(), false)?;
    ui.stage(&format!(
        "Plan for {} ({}, {}): {} resource(s) to create",
        p.stack,
        p.recipe,
        p.region,
        p.resources.len()
    ));
    let rows: Vec<Vec<String>> = p
        .resources
        .iter()
        .map(|(k, n, id)| {
            vec![
                k.clone(),
                n.clone(),
                if is_planned(id) {
                    "(known after apply)".into()
                } else {
                    id.clone()
                },
            ]
        })
        .collect();
    ui.table(&["KIND", "NAME", "ID"].map(String::from), &rows);
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for c in &p.calls {
        *counts.entry(c.as_str()).or_default() += 1;
    }
    ui.line("");
    ui.line(&format!(
        "AWS actions it would call ({} requests, {} distinct):",
        p.calls.len(),
        counts.len()
    ));
    for (op, n) in counts {
        ui.line(&format!(
            "    {op}{}",
            if n > 1 {
                format!(" ×{n}")
            } else {
                String::new()
            }
        ));
    }
    if show_user_data {
        for (name, script) in &p.user_data {
            ui.line("");
            ui.line(&format!(
                "User data of instance {name} ({} bytes):",
                script.len()
            ));
            println!("{script}");
        }
    } else if !p.user_data.is_empty() {
        ui.line("");
        ui.line("`--show-user-data` prints each instance's boot script (with its compose file).");
    }
    ui.line("");
    ui.line(&format!(
        "`geusemaker policy {} --name {}` prints the IAM policy for these actions (and destroy's); \
         `geusemaker run {} --name {}` applies it.",
        req.recipe, p.stack, req.recipe, p.stack
    ));
    Ok(())
}
