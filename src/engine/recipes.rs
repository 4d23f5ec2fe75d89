//! `geusemaker recipes list|show|copy`: the recipes a user can run, what they take, and a copy
//! of a bundled one (with the stdlib modules it imports) to edit.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use rhai::AST;
use serde::Serialize;

use super::meta::{self, RecipeMeta};
use super::project::{self, Origin, Project};
use super::session::{load_recipe, RunError, UsageError};
use super::{embedded, resolver::display_path, scan};
use crate::ui::Ui;

fn parse_only(text: &str) -> Option<AST> {
    super::parser().compile(text).ok()
}

/// Bundled stdlib modules `text` needs, directly or through other stdlib modules.
pub fn stdlib_closure(text: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo: Vec<String> = parse_only(text)
        .map(|a| scan::imports(&a).into_iter().map(|i| i.path).collect())
        .unwrap_or_default();
    while let Some(m) = todo.pop() {
        let Some(src) = embedded::stdlib(&m) else {
            continue;
        };
        if seen.insert(m) {
            if let Some(ast) = parse_only(src) {
                todo.extend(scan::imports(&ast).into_iter().map(|i| i.path));
            }
        }
    }
    seen
}

#[derive(Debug, Serialize)]
struct Listed {
    /// What `run`, `check` and `recipes show` take: a bundled name, a file's path, or
    /// `source/name`.
    id: String,
    /// The header's name.
    name: String,
    version: Option<String>,
    description: Option<String>,
    /// `bundled`, `local`, or the shared source and its commit.
    source: String,
}

fn listed(id: String, text: &str, source: String) -> Listed {
    let m = meta::parse(text).ok().flatten();
    Listed {
        name: m.as_ref().map_or_else(|| id.clone(), |m| m.name.clone()),
        id,
        version: m.as_ref().map(|m| m.version.clone()),
        description: m.map(|m| m.description),
        source,
    }
}

/// Recipes in `dir` (files with a header; modules without one are not recipes).
fn local_recipes(dir: &Path) -> Vec<Listed> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "rhai"))
        .collect();
    files.sort();
    files
        .into_iter()
        .filter_map(|p| {
            let text = std::fs::read_to_string(&p).ok()?;
            let m = meta::parse(&text).ok().flatten()?;
            // This repository's own copy of a bundled recipe is that recipe.
            if embedded::recipe(&m.name) == Some(text.as_str()) {
                return None;
            }
            Some(listed(display_path(&p), &text, "local".into()))
        })
        .collect()
}

/// Recipes beyond the bundled ones, listed as `run` takes them: files with a header in
/// `./recipes` and `.` (by path), then `source/name` for the project's locked sources.
fn extra_recipes() -> Vec<Listed> {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    let mut all: Vec<Listed> = [cwd.join("recipes"), cwd]
        .iter()
        .flat_map(|d| local_recipes(d))
        .collect();
    if let Some((project, home)) = super::resolver::current_project() {
        for (name, locked) in &project.lock {
            let Ok(dir) = project.checkout(&home, name) else {
                continue;
            };
            let at = match (&locked.origin, &locked.commit) {
                (Origin::Git { rev, .. }, Some(c)) => {
                    format!("{name}@{rev} ({})", &c[..c.len().min(12)])
                }
                _ => format!("{name} (directory)"),
            };
            for file in locked.files.keys() {
                let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
                    continue;
                };
                if meta::parse(&text).ok().flatten().is_none() {
                    continue;
                }
                let id = format!("{name}/{}", file.trim_end_matches(".rhai"));
                all.push(listed(id, &text, at.clone()));
            }
        }
    }
    all
}

/// What `run` takes for a local or shared recipe whose header is named `name`.
pub fn id_of_named(name: &str) -> Option<String> {
    extra_recipes()
        .into_iter()
        .find(|l| l.name == name)
        .map(|l| l.id)
}

/// The ids (`run` arguments) of [`extra_recipes`].
pub fn project_recipe_ids() -> Vec<String> {
    extra_recipes().into_iter().map(|l| l.id).collect()
}

/// `geusemaker recipes list [--json]`: bundled ones, then those in `./recipes` and `.`.
pub fn list(json: bool) -> Result<(), RunError> {
    let mut all: Vec<Listed> = embedded::RECIPES
        .iter()
        .map(|(n, t)| listed(n.to_string(), t, "bundled".into()))
        .collect();
    all.extend(extra_recipes());
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("list serializes")
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = all
        .iter()
        .map(|r| {
            // The first column is what `run` takes; a header name that differs from it (a
            // local file's) is said next to the source.
            let source = if r.source == "local" {
                format!("local, named `{}`", r.name)
            } else {
                r.source.clone()
            };
            vec![
                r.id.clone(),
                r.version.clone().unwrap_or_else(|| "-".into()),
                source,
                r.description.clone().unwrap_or_default(),
            ]
        })
        .collect();
    Ui::detect(false).table(
        &["RECIPE", "VERSION", "SOURCE", "DESCRIPTION"].map(String::from),
        &rows,
    );
    Ok(())
}

fn constraints(p: &meta::ParamSpec) -> String {
    let mut c = Vec::new();
    if !p.allowed.is_empty() {
        c.push(format!(
            "one of {}",
            p.allowed
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join("|")
        ));
    }
    if let Some(pat) = &p.pattern {
        c.push(format!("matches {pat}"));
    }
    if let Some(min) = p.min {
        c.push(format!(">= {min}"));
    }
    if let Some(max) = p.max {
        c.push(format!("<= {max}"));
    }
    c.join(", ")
}

/// The header of `recipe` (a bundled name or a file).
pub fn header_of(recipe: &str) -> Result<(String, Option<RecipeMeta>), RunError> {
    let loaded = load_recipe(recipe)?;
    let sources = std::sync::Arc::new(super::sources::Sources::default());
    sources.insert(&loaded.display, &loaded.text, loaded.path.clone());
    let m = meta::parse(&loaded.text)
        .map_err(|e| RunError::from(super::session::header_error(&e, &loaded.display, &sources)))?;
    Ok((loaded.display, m))
}

fn project_root() -> Result<PathBuf, RunError> {
    let cwd = std::env::current_dir()
        .map_err(|e| RunError::usage(format!("no working directory: {e}")))?;
    Ok(Project::discover(&cwd)
        .map_err(RunError::usage)?
        .map_or(cwd, |p| p.root))
}

fn report_changes(changes: &std::collections::BTreeMap<String, project::Change>) {
    for (name, ch) in changes {
        let mut parts = Vec::new();
        if let Some((old, new)) = &ch.commit {
            parts.push(match old {
                Some(o) => format!(
                    "commit {} → {}",
                    &o[..o.len().min(12)],
                    &new[..new.len().min(12)]
                ),
                None => format!("commit {}", &new[..new.len().min(12)]),
            });
        }
        for (what, files) in [
            ("added", &ch.added),
            ("changed", &ch.changed),
            ("removed", &ch.removed),
        ] {
            if !files.is_empty() {
                parts.push(format!("{what} {}", files.join(", ")));
            }
        }
        if parts.is_empty() {
            parts.push("unchanged".into());
        }
        println!("{name}: {}", parts.join("; "));
    }
}

/// `geusemaker recipes add <name> <source> [--rev REV]`.
pub fn add(name: &str, source: &str, rev: Option<&str>) -> Result<(), RunError> {
    let root = project_root()?;
    let is_git = source.contains("://") || source.starts_with("git@") || source.ends_with(".git");
    let origin = if is_git {
        let rev = rev.ok_or_else(|| {
            RunError::usage(format!("a git source needs --rev (a tag or commit), e.g. geusemaker recipes add {name} {source} --rev v1.0.0"))
        })?;
        Origin::Git {
            url: source.to_string(),
            rev: rev.to_string(),
        }
    } else {
        let dir = Path::new(source);
        if !dir.is_dir() {
            return Err(RunError::usage(format!(
                "{source} is neither a git URL nor a directory"
            )));
        }
        if rev.is_some() {
            return Err(RunError::usage(
                "--rev is for git sources; a directory is used as it is",
            ));
        }
        let abs = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
        let root_abs = root.canonicalize().unwrap_or_else(|_| root.clone());
        Origin::Path(relative(&root_abs, &abs))
    };
    project::add_source(&root, name, &origin).map_err(RunError::usage)?;
    let project = Project::load(&root).map_err(RunError::usage)?;
    let home = crate::state::Home::from_env()?;
    let changes = project::update(&project, &home, &[name.to_string()])
        .map_err(|e| RunError::failed(e.to_string()))?;
    report_changes(&changes);
    println!(
        "locked in {}; import its modules as \"{name}/<file>\", run its recipes as `geusemaker run {name}/<file> --name …`",
        root.join(project::LOCK_FILE).display()
    );
    Ok(())
}

/// `geusemaker recipes update [names…]`.
pub fn update(names: &[String]) -> Result<(), RunError> {
    let cwd = std::env::current_dir()
        .map_err(|e| RunError::usage(format!("no working directory: {e}")))?;
    let project = Project::discover(&cwd)
        .map_err(RunError::usage)?
        .ok_or_else(|| {
            RunError::usage(format!(
                "no {} here or above; `geusemaker recipes add NAME SOURCE` starts one",
                project::PROJECT_FILE
            ))
        })?;
    let home = crate::state::Home::from_env()?;
    let changes = project::update(&project, &home, names).map_err(RunError::Usage)?;
    report_changes(&changes);
    Ok(())
}

/// `to` relative to `from` (both absolute), with `..` where needed.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let f: Vec<_> = from.components().collect();
    let t: Vec<_> = to.components().collect();
    let common = f.iter().zip(&t).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..f.len() {
        out.push("..");
    }
    for c in &t[common..] {
        out.push(c);
    }
    if out.as_os_str().is_empty() {
        out.push(".");
    }
    out
}

/// `geusemaker recipes show <recipe> [--json]`.
pub fn show(recipe: &str, json: bool) -> Result<(), RunError> {
    let (display, m) = header_of(recipe)?;
    let Some(m) = m else {
        return Err(RunError::usage(format!(
            "{display} has no header (`//! [recipe]` … `//! [params]` at the top): its params are not declared\nhint: docs/recipes.md shows the header; `geusemaker check {recipe}` checks it"
        )));
    };
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&m).expect("header serializes")
        );
        return Ok(());
    }
    let ui = Ui::detect(false);
    ui.line(&format!("{} {} — {}", m.name, m.version, display));
    ui.line(&format!("    {}", m.description));
    ui.line("");
    if m.params.is_empty() {
        ui.line("no params");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = m
        .params
        .iter()
        .map(|p| {
            vec![
                p.name.clone(),
                p.type_name(),
                p.default
                    .as_ref()
                    .map_or("(required)".to_string(), |d| match d {
                        meta::Value::String(s) if s.is_empty() => "\"\"".into(),
                        meta::Value::List(l) if l.is_empty() => "[]".into(),
                        other => other.to_string(),
                    }),
                p.help.clone(),
                constraints(p),
            ]
        })
        .collect();
    ui.table(
        &["PARAM", "TYPE", "DEFAULT", "HELP", "CHECKS"].map(String::from),
        &rows,
    );
    ui.line("");
    let example = m
        .params
        .iter()
        .find(|p| p.default.is_none())
        .or_else(|| m.param("instance_type"))
        .unwrap_or(&m.params[0]);
    ui.line(&format!(
        "Set with --set NAME=VALUE, e.g. geusemaker run {recipe} --name my-stack --set {}=…",
        example.name
    ));
    Ok(())
}

/// `geusemaker recipes copy <name> [dir] [--force]`: the bundled recipe as `dir/<name>.rhai`
/// and the stdlib modules it uses as `dir/stdlib/*.rhai` (found first by the resolver).
pub fn copy(name: &str, dir: &Path, force: bool) -> Result<Vec<PathBuf>, RunError> {
    let Some(text) = embedded::recipe(name) else {
        let bundled: Vec<&str> = embedded::RECIPES.iter().map(|(n, _)| *n).collect();
        return Err(RunError::Usage(UsageError::Invalid {
            message: format!(
                "no bundled recipe `{name}` (bundled: {})",
                bundled.join(", ")
            ),
            hint: crate::suggest::did_you_mean(name, bundled.iter().copied())
                .map(|s| format!("did you mean `{s}`?")),
        }));
    };
    let mut files = vec![(dir.join(format!("{name}.rhai")), text)];
    for m in stdlib_closure(text) {
        if let Some(src) = embedded::stdlib(&m) {
            files.push((dir.join("stdlib").join(format!("{m}.rhai")), src));
        }
    }
    if !force {
        let existing: Vec<String> = files
            .iter()
            .filter(|(p, _)| p.exists())
            .map(|(p, _)| display_path(p))
            .collect();
        if !existing.is_empty() {
            return Err(RunError::usage_hint(
                format!("would overwrite {}", existing.join(", ")),
                "pass --force to replace them, or copy into another directory",
            ));
        }
    }
    let mut written = Vec::new();
    for (path, content) in files {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| RunError::usage(format!("cannot create {}: {e}", parent.display())))?;
        }
        std::fs::write(&path, content)
            .map_err(|e| RunError::usage(format!("cannot write {}: {e}", path.display())))?;
        written.push(path);
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dev_recipe_needs_the_tier_modules_and_what_they_import() {
        let needed = stdlib_closure(embedded::recipe("dev").unwrap());
        for m in [
            "network", "security", "instance", "services", "tier", "storage", "report",
        ] {
            assert!(needed.contains(m), "{m} missing from {needed:?}");
        }
        assert!(!needed.contains("teardown"));
    }

    #[test]
    fn copy_writes_the_recipe_and_its_modules_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let written = copy("dev", dir.path(), false).unwrap();
        assert!(dir.path().join("dev.rhai").is_file());
        assert!(dir.path().join("stdlib/tier.rhai").is_file());
        assert_eq!(
            written.len(),
            1 + stdlib_closure(embedded::recipe("dev").unwrap()).len()
        );
        let e = copy("dev", dir.path(), false).unwrap_err().to_string();
        assert!(
            e.contains("would overwrite") && e.contains("--force"),
            "{e}"
        );
        assert!(copy("dev", dir.path(), true).is_ok());
        assert!(copy("deb", dir.path(), false)
            .unwrap_err()
            .to_string()
            .contains("did you mean `dev`"));
    }
}
