//! `import "name"` resolution: the importing file's directory, the recipe's directory, the
//! nearest project `stdlib/` above the recipe, then the stdlib embedded in the binary.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{Engine, EvalAltResult, Module, ModuleResolver, Position, Scope, Shared};

use super::embedded;
use super::error::UsageError;
use super::project::Project;
use super::sources::Sources;
use crate::state::Home;

pub struct Resolver {
    /// The project (geusemaker.toml) around the working directory: shared sources, verified.
    project: Option<(Project, Home)>,
    recipe_dir: Option<PathBuf>,
    stdlib_dir: Option<PathBuf>,
    sources: Arc<Sources>,
    cache: Mutex<HashMap<String, Shared<Module>>>,
}

impl Resolver {
    pub fn new(recipe_dir: Option<&Path>, sources: Arc<Sources>) -> Self {
        let stdlib_dir =
            recipe_dir.and_then(|d| d.ancestors().map(|a| a.join("stdlib")).find(|s| s.is_dir()));
        Resolver {
            project: current_project(),
            recipe_dir: recipe_dir.map(Path::to_path_buf),
            stdlib_dir,
            sources,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Where `path` would be loaded from, checked against the project's lock: a shared source
    /// (`acme/gpu-tier`) first, then [`Self::locate`]. `Err` when a file fails verification.
    pub(crate) fn find(
        &self,
        importer: Option<&str>,
        path: &str,
    ) -> Result<Option<(String, String, Option<PathBuf>)>, UsageError> {
        if let Some((project, home)) = &self.project {
            if let Some((name, text, file)) = project.load_file(home, path)? {
                return Ok(Some((name, text, Some(file))));
            }
        }
        let found = self.locate(importer, path);
        if let (Some((project, home)), Some((_, text, Some(file)))) = (&self.project, &found) {
            project.verify_file(home, file, text)?;
        }
        Ok(found)
    }

    /// Where `path` would be loaded from: (display name, text, file path).
    pub(crate) fn locate(
        &self,
        importer: Option<&str>,
        path: &str,
    ) -> Option<(String, String, Option<PathBuf>)> {
        let rel = format!("{path}.rhai");
        let importer_dir = importer
            .and_then(|s| self.sources.get(s))
            .and_then(|f| f.path)
            .and_then(|p| p.parent().map(Path::to_path_buf));
        for dir in [
            importer_dir,
            self.recipe_dir.clone(),
            self.stdlib_dir.clone(),
        ]
        .into_iter()
        .flatten()
        {
            let file = dir.join(&rel);
            if file.is_file() {
                if let Ok(text) = std::fs::read_to_string(&file) {
                    return Some((display_path(&file), text, Some(file)));
                }
            }
        }
        embedded::stdlib(path).map(|text| {
            (
                format!("{}/stdlib/{rel}", embedded::BUNDLED),
                text.to_string(),
                None,
            )
        })
    }
}

/// The project around the working directory, if any (a malformed one is reported by
/// [`check_project`] before anything runs).
pub fn current_project() -> Option<(Project, Home)> {
    let cwd = std::env::current_dir().ok()?;
    let project = Project::discover(&cwd).ok()??;
    Some((project, Home::from_env().ok()?))
}

/// Fail early on a malformed geusemaker.toml or geusemaker.lock.
pub fn check_project() -> Result<(), String> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(());
    };
    Project::discover(&cwd).map(|_| ())
}

/// A path relative to the working directory when it is below it.
pub fn display_path(p: &Path) -> String {
    std::env::current_dir()
        .ok()
        .and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or_else(|| p.to_path_buf())
        .to_string_lossy()
        .to_string()
}

fn valid_import(path: &str) -> bool {
    !path.is_empty()
        && !path.starts_with('/')
        && path.split('/').all(|seg| {
            !seg.is_empty()
                && seg != ".."
                && seg != "."
                && seg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        })
}

impl ModuleResolver for Resolver {
    fn resolve(
        &self,
        engine: &Engine,
        source: Option<&str>,
        path: &str,
        pos: Position,
    ) -> Result<Shared<Module>, Box<EvalAltResult>> {
        if !valid_import(path) {
            return Err(EvalAltResult::ErrorModuleNotFound(
                format!("{path} (imports are names like \"network\" or \"lib/storage\", without .rhai, `..` or leading /)"),
                pos,
            )
            .into());
        }
        let (name, text, file) = self
            .find(source, path)
            .map_err(|e| {
                // Thrown like a primitive's error (a map), so the report shows the hint as one.
                let mut err = match e.hint() {
                    Some(h) => crate::primitives::usage_err_hint(e.message(), h),
                    None => crate::primitives::usage_err(e.message()),
                };
                err.set_position(pos);
                err
            })?
            .ok_or_else(|| Box::new(EvalAltResult::ErrorModuleNotFound(path.to_string(), pos)))?;
        if let Some(m) = self.cache.lock().unwrap().get(&name) {
            return Ok(m.clone());
        }
        self.sources.insert(&name, &text, file);
        let mut ast = engine
            .compile(&text)
            .map_err(|e| EvalAltResult::ErrorInModule(name.clone(), Box::new(e.into()), pos))?;
        ast.set_source(name.as_str());
        let module = Module::eval_ast_as_new(Scope::new(), &ast, engine)
            .map_err(|e| EvalAltResult::ErrorInModule(name.clone(), e, pos))?;
        let module: Shared<Module> = module.into();
        self.cache.lock().unwrap().insert(name, module.clone());
        Ok(module)
    }
}

#[cfg(test)]
mod tests {
    use super::valid_import;

    #[test]
    fn import_names() {
        for ok in ["network", "lib/storage", "a-b_c"] {
            assert!(valid_import(ok), "{ok}");
        }
        for bad in ["", "/etc/passwd", "../x", "a/../b", "x.rhai", "a//b", "./x"] {
            assert!(!valid_import(bad), "{bad}");
        }
    }
}
