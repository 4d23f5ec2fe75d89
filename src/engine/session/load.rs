//! Loading a recipe and checking what it was given, before anything runs: its text, its
//! header, its compiled AST, `--set` against the params it declares.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rhai::AST;

use super::{Failure, RunError, UsageError};
use crate::cloud::AwsSettings;
use crate::engine::meta::{self, RecipeMeta};
use crate::engine::resolver::display_path;
use crate::engine::sources::Sources;
use crate::engine::{build_engine, diag, embedded, scan};
use crate::primitives::Params;
use crate::ui::Ui;

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
    crate::engine::resolver::check_project().map_err(RunError::usage)?;
    let project = crate::engine::resolver::current_project();
    let path = Path::new(arg);
    if path.is_file() {
        let text = std::fs::read_to_string(path)
            .map_err(|e| RunError::usage(format!("cannot read recipe {arg}: {e}")))?;
        if let Some((p, home)) = &project {
            p.verify_file(home, path, &text)?;
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
        if let Some((display, text, file)) = p.load_file(home, arg)? {
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
    Err(UsageError::UnknownRecipe {
        name: arg.to_string(),
        bundled: embedded::RECIPES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect(),
        local: crate::engine::recipes::id_of_named(arg),
    }
    .into())
}

/// A recipe compiled and checked, ready to run.
pub(super) struct Compiled {
    pub(super) recipe: LoadedRecipe,
    pub(super) ast: AST,
    pub(super) sources: Arc<Sources>,
    /// The recipe's header, when it has one.
    pub(super) meta: Option<RecipeMeta>,
}

/// A header problem, shown like any other recipe error.
pub fn header_error(e: &meta::HeaderError, display: &str, sources: &Arc<Sources>) -> Failure {
    Failure::recipe(
        diag::Diagnostic {
            message: e.message.clone(),
            hint: None,
            primary: Some(diag::Loc {
                source: display.to_string(),
                line: e.line,
                col: e.col,
            }),
            frames: Vec::new(),
        },
        sources.clone(),
    )
}

pub(super) fn compile(recipe: LoadedRecipe) -> Result<Compiled, RunError> {
    let sources = Arc::new(Sources::default());
    sources.insert(&recipe.display, &recipe.text, recipe.path.clone());
    let meta = meta::parse(&recipe.text)
        .map_err(|e| RunError::from(header_error(&e, &recipe.display, &sources)))?;
    let engine = build_engine(Ui::detect(true), None);
    let mut ast = engine.compile(&recipe.text).map_err(|e| {
        RunError::from(Failure::recipe(
            diag::from_parse(&e, &recipe.display),
            sources.clone(),
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
pub(super) fn prepare_params(c: &Compiled, params: Params) -> Result<Params, RunError> {
    if let Some(m) = &c.meta {
        for key in params.given() {
            if m.param(key).is_none() {
                return Err(UsageError::UnknownParam {
                    key: key.to_string(),
                    recipe: c.recipe.display.clone(),
                    params: m.params.iter().map(|p| p.name.clone()).collect(),
                    show: Some(c.recipe.source_id.clone()),
                }
                .into());
            }
        }
        let declared =
            meta::resolve(m, params.given_map(), params.settings()).map_err(RunError::usage)?;
        return Ok(params.with_declared(declared));
    }
    check_sets(c, &params)?;
    Ok(params)
}

/// The params whose value does not come from the recipe, with where it comes from
/// (`instance_type = t3.large (config.toml deploy.instance_type)`), on one line.
pub(super) fn chosen_params(c: &Compiled, params: &Params) -> Option<String> {
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
pub(super) fn declares(c: &Compiled, name: &str) -> bool {
    match &c.meta {
        Some(m) => m.param(name).is_some(),
        None => {
            let d = scan::param_names(&c.ast);
            d.dynamic || d.names.contains(name)
        }
    }
}

/// Every `--set` must be a param the recipe reads (unless it computes param names).
pub(super) fn check_sets(c: &Compiled, params: &Params) -> Result<(), RunError> {
    let declared = scan::param_names(&c.ast);
    if declared.dynamic {
        return Ok(());
    }
    for key in params.given() {
        if declared.names.contains(key) {
            continue;
        }
        return Err(UsageError::UnknownParam {
            key: key.to_string(),
            recipe: c.recipe.display.clone(),
            params: declared.names.iter().cloned().collect(),
            show: None,
        }
        .into());
    }
    Ok(())
}

pub(super) fn parse_sets(sets: &[String]) -> Result<Params, RunError> {
    Params::parse(sets).map_err(|e| RunError::usage(e.to_string()))
}

/// `--set region=…` is the same as `--region`, for recipes that list the region as a param.
pub(super) fn region_from_params(aws: &mut AwsSettings, params: &Params) -> Result<(), RunError> {
    if let Some(r) = params.raw("region").filter(|r| !r.is_empty()) {
        match &aws.region {
            Some(flag) if flag != r => {
                return Err(RunError::usage(format!(
                    "--region {flag} and --set region={r} disagree; give one"
                )))
            }
            _ => aws.region = Some(r.to_string()),
        }
    }
    Ok(())
}

/// Recipes whose failure is not rolled back automatically (they are the rollback).
pub(super) fn is_teardown(c: &Compiled) -> bool {
    matches!(c.recipe.source_id.as_str(), "destroy" | "rollback")
        || c.recipe
            .path
            .as_ref()
            .and_then(|p| p.file_stem())
            .is_some_and(|s| s == "destroy" || s == "rollback")
}
