//! The Rhai host: a sandboxed engine with the primitives registered, module resolution,
//! params, and error rendering.

pub mod check;
pub mod deploy;
pub mod diag;
pub mod docs;
pub mod embedded;
pub mod error;
pub mod eval;
pub mod gitobj;
pub mod meta;
pub mod project;
pub mod recipes;
pub mod repl;
pub mod resolver;
pub mod scan;
pub mod schema;
pub mod session;
pub mod sources;

use rhai::{Engine, AST};

use crate::ui::Ui;
use resolver::Resolver;

pub use session::{
    destroy, load_recipe, rollback, run, unlock, LoadedRecipe, RunError, RunRequest, RunSummary,
};

/// Sandbox limits: generous for real recipes, finite for runaway ones.
pub mod limits {
    pub const MAX_OPERATIONS: u64 = 5_000_000;
    pub const MAX_CALL_LEVELS: usize = 64;
    pub const MAX_EXPR_DEPTH: usize = 128;
    pub const MAX_FN_EXPR_DEPTH: usize = 64;
    pub const MAX_STRING_SIZE: usize = 1 << 20;
    /// rhai re-measures a whole array (and map) after every call that touches it, so
    /// growing one to N costs N²/2 steps: these bounds stop a runaway loop within a second
    /// (scripts/bench.sh sandbox) and are far above what recipes hold.
    pub const MAX_ARRAY_SIZE: usize = 10_000;
    pub const MAX_MAP_SIZE: usize = 25_000;
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
    // Ctrl-C stops a script between two operations (waits check it too).
    engine.on_progress(|_| crate::interrupt::requested().then(|| "interrupted".into()));
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

/// An engine only for parsing (static checks): the sandbox's expression limits, nothing
/// registered.
pub fn parser() -> Engine {
    let mut engine = Engine::new_raw();
    engine.set_max_expr_depths(limits::MAX_EXPR_DEPTH, limits::MAX_FN_EXPR_DEPTH);
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
