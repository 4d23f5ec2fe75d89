//! The Rhai host: a sandboxed engine with the primitives registered, module resolution,
//! params, and error rendering.

pub mod diag;
pub mod docs;
pub mod embedded;
pub mod resolver;
pub mod scan;
pub mod sources;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use rhai::{Dynamic, Engine, AST};

use crate::cloud::AwsSettings;
use crate::primitives::{did_you_mean, Params, Runtime};
use crate::state::{validate_stack_name, Home, RunRecord, StackStatus, StackStore, StateError};
use crate::ui::{fmt_duration, Ui};
use resolver::{display_path, Resolver};
use sources::Sources;

/// Sandbox limits: generous for real recipes, finite for runaway ones.
pub mod limits {
    pub const MAX_OPERATIONS: u64 = 5_000_000;
    pub const MAX_CALL_LEVELS: usize = 64;
    pub const MAX_EXPR_DEPTH: usize = 128;
    pub const MAX_FN_EXPR_DEPTH: usize = 64;
    pub const MAX_STRING_SIZE: usize = 1 << 20;
    pub const MAX_ARRAY_SIZE: usize = 100_000;
    pub const MAX_MAP_SIZE: usize = 100_000;
    pub const MAX_MODULES: usize = 128;
}

/// A Rhai engine with the sandbox limits and every primitive registered. Scripts have no
/// file, process or network access except through primitives; `eval` is disabled.
pub fn build_engine(ui: Ui, resolver: Option<Resolver>) -> Engine {
    let mut engine = Engine::new();
    engine
        .set_max_operations(limits::MAX_OPERATIONS)
        .set_max_call_levels(limits::MAX_CALL_LEVELS)
        .set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH)
        .set_max_string_size(limits::MAX_STRING_SIZE)
        .set_max_array_size(limits::MAX_ARRAY_SIZE)
        .set_max_map_size(limits::MAX_MAP_SIZE)
        .set_max_modules(limits::MAX_MODULES)
        .set_strict_variables(true)
        .set_fail_on_invalid_map_property(true);
    engine.disable_symbol("eval");
    let print_ui = ui.clone();
    engine.on_print(move |s| print_ui.info(s));
    engine.on_debug(|s, src, pos| tracing::debug!(source = src.unwrap_or(""), %pos, "{s}"));
    if let Some(r) = resolver {
        engine.set_module_resolver(r);
    } else {
        engine.set_module_resolver(rhai::module_resolvers::DummyModuleResolver::new());
    }
    crate::primitives::register_all(&mut engine);
    engine
}

/// Every script-visible function name (`ec2::default_vpc`, `param`, …) for suggestions.
pub fn known_functions(engine: &Engine, ast: Option<&AST>) -> Vec<String> {
    let mut names: Vec<String> = engine
        .gen_fn_signatures(false)
        .into_iter()
        .filter_map(|s| s.split('(').next().map(|n| n.trim().to_string()))
        .collect();
    if let Some(ast) = ast {
        names.extend(ast.iter_functions().map(|f| f.name.to_string()));
    }
    names.sort();
    names.dedup();
    names
}

/// What `geusemaker run` was asked to do.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub recipe: String,
    pub stack: String,
    pub sets: Vec<String>,
    pub aws: AwsSettings,
    pub assume_yes: bool,
}

/// Why a run did not succeed; each carries its fully rendered message.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The invocation itself is wrong (exit 2): nothing was started.
    #[error("{0}")]
    Usage(String),
    /// The recipe failed to compile or failed while running (exit 1).
    #[error("{0}")]
    Recipe(String),
    #[error("{0}")]
    State(#[from] StateError),
}

impl RunError {
    pub fn exit_code(&self) -> i32 {
        match self {
            RunError::Usage(_) => 2,
            RunError::Recipe(_) | RunError::State(_) => 1,
        }
    }
}

/// A recipe's text and where it came from.
pub struct LoadedRecipe {
    pub display: String,
    pub text: String,
    /// The file on disk (`None` for a bundled recipe).
    pub path: Option<PathBuf>,
    pub dir: Option<PathBuf>,
}

/// A path to a `.rhai` file, or the name of a bundled recipe.
pub fn load_recipe(arg: &str) -> Result<LoadedRecipe, RunError> {
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::Usage(format!("cannot read recipe {arg}: {e}")))?;
        let abs = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        return Ok(LoadedRecipe {
            display: display_path(&abs),
            text,
            dir: abs.parent().map(Path::to_path_buf),
            path: Some(abs),
        });
    }
    if let Some(text) = embedded::recipe(arg) {
        return Ok(LoadedRecipe {
            display: format!("recipes/{arg}.rhai"),
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
    if let Some(s) = did_you_mean(arg, bundled.iter().copied()) {
        msg.push_str(&format!("\nhint: did you mean `{s}`?"));
    }
    Err(RunError::Usage(msg))
}

fn new_run_id() -> String {
    format!(
        "{}-{:06x}",
        chrono::Utc::now().format("%Y%m%dT%H%M%SZ"),
        rand::random::<u32>() & 0xff_ffff
    )
}

/// Outcome figures of a successful run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub run_id: String,
    pub api_calls: u64,
    pub attempts: u64,
}

/// `geusemaker run`: validate everything that can be validated before touching AWS, take the
/// stack's lock, run the recipe, record the outcome.
pub fn run(req: RunRequest) -> Result<RunSummary, RunError> {
    let started = Instant::now();
    validate_stack_name(&req.stack).map_err(|e| RunError::Usage(e.to_string()))?;
    let params = Params::parse(&req.sets).map_err(|e| RunError::Usage(e.to_string()))?;
    let recipe = load_recipe(&req.recipe)?;
    let ui = Ui::detect(req.assume_yes);
    let color = console::colors_enabled_stderr() && std::env::var_os("NO_COLOR").is_none();

    let sources = Arc::new(Sources::default());
    sources.insert(&recipe.display, &recipe.text, recipe.path.clone());
    let resolver = Resolver::new(recipe.dir.as_deref(), sources.clone());
    let mut engine = build_engine(ui.clone(), Some(resolver));

    let mut ast = engine.compile(&recipe.text).map_err(|e| {
        RunError::Recipe(diag::render(
            &diag::from_parse(&e, &recipe.display),
            &sources,
            color,
        ))
    })?;
    ast.set_source(recipe.display.as_str());

    let declared = scan::param_names(&ast);
    if !declared.dynamic {
        for key in params.given() {
            if !declared.names.contains(key) {
                let mut msg = format!(
                    "--set {key}: the recipe {} has no param `{key}`",
                    recipe.display
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
        }
    }

    // `--set region=…` is the same as `--region`, for recipes that list the region as a param.
    let mut aws = req.aws.clone();
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

    let home = Home::from_env()?;
    let run_id = new_run_id();
    let mut store = StackStore::open(&home, &req.stack, &run_id, &format!("run {}", req.recipe))?;
    let first = store.state().resources.is_empty() && store.state().runs.is_empty();
    store.update(|s| {
        s.status = if first {
            StackStatus::Creating
        } else {
            StackStatus::Updating
        };
        s.recipe = Some(recipe.display.clone());
        s.runs.push(RunRecord {
            id: run_id.clone(),
            recipe: recipe.display.clone(),
            started_at: chrono::Utc::now(),
            finished_at: None,
            outcome: None,
        });
    })?;
    let state_path = store.path().to_path_buf();

    let runtime = Arc::new(
        Runtime::new(
            &req.stack,
            &run_id,
            home,
            ui.clone(),
            params,
            req.aws.clone(),
            Some(store),
        )
        .map_err(|e| RunError::Recipe(format!("error: cannot start the async runtime: {e}")))?,
    );
    engine.set_default_tag(Dynamic::from(runtime.clone()));
    ui.info(&format!(
        "stack {} · recipe {} · run {run_id}",
        req.stack, recipe.display
    ));

    tracing::info!(stack = %req.stack, recipe = %recipe.display, run = %run_id, "run started");
    let result = engine.run_ast(&ast);
    // The engine holds the runtime in its tag; release it so the store can be finished.
    engine.set_default_tag(Dynamic::UNIT);

    let (api_calls, attempts, region) = match runtime.aws_if_connected() {
        Some(aws) => (
            aws.stats.operations(),
            aws.stats.attempts(),
            Some(aws.region.clone()),
        ),
        None => (0, 0, None),
    };
    let waited = runtime.waited();
    let config = runtime.params.resolved();
    let rendered_error = result.as_ref().err().map(|e| {
        let known = known_functions(&engine, Some(&ast));
        let last = runtime.last_call();
        diag::render(
            &diag::from_eval(e, &recipe.display, &sources, &known, last.as_ref()),
            &sources,
            color,
        )
    });
    drop(engine);
    let runtime = Arc::try_unwrap(runtime).map_err(|_| {
        RunError::Recipe("error: internal: runtime still shared after the run".into())
    })?;
    let mut store = runtime.take_store().expect("run has a store");
    store.update(|s| {
        s.config = config;
        if region.is_some() {
            s.region = region.clone();
        }
        if let Some(r) = s.runs.iter_mut().rev().find(|r| r.id == run_id) {
            r.finished_at = Some(chrono::Utc::now());
            r.outcome = Some(match &rendered_error {
                None => "succeeded".into(),
                Some(e) => format!(
                    "failed: {}",
                    e.lines().next().unwrap_or("").trim_start_matches("error: ")
                ),
            });
        }
        match rendered_error {
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
    // A first run that failed before creating anything leaves nothing worth remembering.
    let discarded = first && rendered_error.is_some() && store.state().resources.is_empty();
    if discarded {
        store.discard()?;
    }

    let summary = format!(
        "{api_calls} AWS requests ({attempts} attempts), waited {} of {}",
        fmt_duration(waited),
        fmt_duration(started.elapsed())
    );
    match &rendered_error {
        None => tracing::info!(run = %run_id, %summary, "run succeeded"),
        Some(e) => {
            tracing::error!(run = %run_id, %summary, error = %e.lines().next().unwrap_or(""), "run failed")
        }
    }
    match rendered_error {
        None => {
            if created == 0 {
                ui.info("nothing changed: every resource already existed");
            } else {
                ui.info(&format!("{created} resource(s) created by this run"));
            }
            ui.success(&format!("run {run_id} finished: {summary}"));
            ui.info(&format!("state: {}", state_path.display()));
            Ok(RunSummary { run_id, api_calls, attempts })
        }
        Some(text) if discarded => Err(RunError::Recipe(format!("{text}run {run_id} failed after {summary}; nothing was created\n"))),
        Some(text) => Err(RunError::Recipe(format!(
            "{text}run {run_id} failed after {summary}\nstate: {} (the ledger lists what this run created)\n",
            state_path.display()
        ))),
    }
}
