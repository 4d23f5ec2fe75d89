//! Shared recipes with integrity: a project's `geusemaker.toml` names recipe sources (a
//! directory, or a git repository at a tag or commit); `geusemaker recipes add|update` writes
//! `geusemaker.lock` with the resolved commit and the sha256 of every `.rhai` file; `run` and
//! `check` load `import "acme/gpu-tier"` (and `run acme/gpu-tier`) through it and refuse a file
//! whose hash differs from the lock. A git source's cached checkout is verified against the
//! locked commit's git objects on every use (each object's id recomputed, see `gitobj`) and
//! checked out again when it differs; `recipes update` hashes what it reads from git, never the
//! cache.
//!
//! The project and lock files are read and written here; fetching from git and the cache of
//! checkouts are in `fetch.rs`, whose failures are a [`SourceError`] (a usage error, with a
//! hint, to the commands).
//!
//! ```toml
//! # geusemaker.toml
//! [sources.acme]
//! git = "https://github.com/acme/geusemaker-recipes.git"
//! rev = "v1.2.0"
//!
//! [sources.team]
//! path = "../team-recipes"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::error::UsageError;
use crate::state::{write_atomic, Home};

pub use crate::config::PROJECT_FILE;
mod fetch;
use fetch::verified_checkout;
pub use fetch::{fetch, hash_tree, SourceError};

pub const LOCK_FILE: &str = "geusemaker.lock";

/// Where a source's files come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Origin {
    Git { url: String, rev: String },
    Path(PathBuf),
}

/// One source as the lock records it.
#[derive(Debug, Clone, PartialEq)]
pub struct Locked {
    pub origin: Origin,
    /// The resolved commit (git sources).
    pub commit: Option<String>,
    /// Path inside the source → `sha256:<hex>`.
    pub files: BTreeMap<String, String>,
}

/// A project: its directory, declared sources and lock.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub sources: BTreeMap<String, Origin>,
    pub lock: BTreeMap<String, Locked>,
}

pub fn sha256(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn valid_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

fn toml_err(path: &Path, text: &str, e: &toml_edit::TomlError) -> String {
    let (line, col) = crate::config::line_col(text, e.span().map_or(0, |s| s.start));
    format!(
        "{}:{line}:{col}: not valid TOML: {}",
        path.display(),
        e.message().lines().next().unwrap_or("")
    )
}

fn origin_of(
    name: &str,
    t: &dyn toml_edit::TableLike,
    root: &Path,
    file: &Path,
) -> Result<Origin, String> {
    let s = |k: &str| t.get(k).and_then(|v| v.as_str()).map(str::to_string);
    match (s("git"), s("path")) {
        (Some(url), None) => Ok(Origin::Git {
            url,
            rev: s("rev").ok_or_else(|| {
                format!(
                    "{}: source `{name}` needs `rev` (a tag or commit) beside `git`",
                    file.display()
                )
            })?,
        }),
        (None, Some(p)) => Ok(Origin::Path(root.join(p))),
        _ => Err(format!(
            "{}: source `{name}` needs exactly one of `git` (with `rev`) or `path`",
            file.display()
        )),
    }
}

impl Project {
    /// The nearest `geusemaker.toml` at or above `dir`, with its lock; `Ok(None)` without one.
    pub fn discover(dir: &Path) -> Result<Option<Project>, String> {
        let Some(root) = dir.ancestors().find(|d| d.join(PROJECT_FILE).is_file()) else {
            return Ok(None);
        };
        Project::load(root).map(Some)
    }

    pub fn load(root: &Path) -> Result<Project, String> {
        let file = root.join(PROJECT_FILE);
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        let doc: toml_edit::DocumentMut = text.parse().map_err(|e| toml_err(&file, &text, &e))?;
        let mut sources = BTreeMap::new();
        if let Some(t) = doc.get("sources").and_then(|s| s.as_table_like()) {
            for (name, item) in t.iter() {
                if !valid_name(name) {
                    return Err(format!(
                        "{}: source name `{name}`: lowercase letters, digits, - and _",
                        file.display()
                    ));
                }
                let table = item.as_table_like().ok_or_else(|| {
                    format!("{}: [sources.{name}] must be a table", file.display())
                })?;
                sources.insert(name.to_string(), origin_of(name, table, root, &file)?);
            }
        }
        let lock_file = root.join(LOCK_FILE);
        let mut lock = BTreeMap::new();
        if let Ok(ltext) = std::fs::read_to_string(&lock_file) {
            let ldoc: toml_edit::DocumentMut = ltext
                .parse()
                .map_err(|e| toml_err(&lock_file, &ltext, &e))?;
            if let Some(t) = ldoc.get("sources").and_then(|s| s.as_table_like()) {
                for (name, item) in t.iter() {
                    let table = item.as_table_like().ok_or_else(|| {
                        format!("{}: [sources.{name}] must be a table", lock_file.display())
                    })?;
                    let origin = origin_of(name, table, root, &lock_file)?;
                    let files = table
                        .get("files")
                        .and_then(|f| f.as_table_like())
                        .map(|f| {
                            f.iter()
                                .filter_map(|(k, v)| Some((k.to_string(), v.as_str()?.to_string())))
                                .collect()
                        })
                        .unwrap_or_default();
                    lock.insert(
                        name.to_string(),
                        Locked {
                            origin,
                            commit: table
                                .get("commit")
                                .and_then(|c| c.as_str())
                                .map(str::to_string),
                            files,
                        },
                    );
                }
            }
        }
        Ok(Project {
            root: root.to_path_buf(),
            sources,
            lock,
        })
    }

    /// The directory holding a locked source's files. For a git source it is verified against
    /// the locked commit's git objects (once per process) and checked out again from them when
    /// it differs: the cache is never trusted as it is.
    pub fn checkout(&self, home: &Home, name: &str) -> Result<PathBuf, UsageError> {
        let locked = self.locked(name)?;
        match (&locked.origin, &locked.commit) {
            (Origin::Path(p), _) => Ok(p.clone()),
            (Origin::Git { url, .. }, Some(commit)) => Ok(verified_checkout(home, name, url, commit)?),
            (Origin::Git { .. }, None) => Err(format!("{LOCK_FILE}: source `{name}` has no commit; run `geusemaker recipes update {name}`").into()),
        }
    }

    fn locked(&self, name: &str) -> Result<&Locked, UsageError> {
        let locked = self.lock.get(name).ok_or_else(|| UsageError::Invalid {
            message: format!("source `{name}` is not in {LOCK_FILE}"),
            hint: Some(format!(
                "run `geusemaker recipes update {name}` to fetch and lock it"
            )),
        })?;
        if let Some(declared) = self.sources.get(name) {
            if *declared != locked.origin {
                return Err(UsageError::Invalid {
                    message: format!("source `{name}` in {PROJECT_FILE} differs from {LOCK_FILE}"),
                    hint: Some(format!(
                        "run `geusemaker recipes update {name}` to lock the new version"
                    )),
                });
            }
        }
        Ok(locked)
    }

    /// Load `source/rest` (an import path or a recipe name, without `.rhai`), verified against
    /// the lock: `Ok(None)` when `source` is not a source of this project.
    pub fn load_file(
        &self,
        home: &Home,
        path: &str,
    ) -> Result<Option<(String, String, PathBuf)>, UsageError> {
        let Some((source, rest)) = path.split_once('/') else {
            return Ok(None);
        };
        if !self.sources.contains_key(source) && !self.lock.contains_key(source) {
            return Ok(None);
        }
        let dir = self.checkout(home, source)?;
        let rel = format!("{rest}.rhai");
        let file = dir.join(&rel);
        let text = std::fs::read_to_string(&file)
            .map_err(|_| format!("source `{source}` has no {rel} (in {})", dir.display()))?;
        self.verify(source, &rel, text.as_bytes())?;
        Ok(Some((format!("{source}/{rel}"), text, file)))
    }

    /// If `file` is inside a source, its hash must match the lock.
    pub fn verify_file(&self, home: &Home, file: &Path, text: &str) -> Result<(), UsageError> {
        for name in self.lock.keys() {
            let Ok(dir) = self.checkout(home, name) else {
                continue;
            };
            let (Ok(dir), Ok(f)) = (dir.canonicalize(), file.canonicalize()) else {
                continue;
            };
            if let Ok(rel) = f.strip_prefix(&dir) {
                return self.verify(name, &rel.to_string_lossy(), text.as_bytes());
            }
        }
        Ok(())
    }

    fn verify(&self, source: &str, rel: &str, bytes: &[u8]) -> Result<(), UsageError> {
        let locked = self.locked(source)?;
        let actual = sha256(bytes);
        match locked.files.get(rel) {
            Some(expected) if *expected == actual => Ok(()),
            Some(expected) => Err(UsageError::Invalid {
                message: format!("{source}/{rel} does not match {LOCK_FILE}: it is {actual}, the lock says {expected}"),
                hint: Some(format!("someone changed it since it was locked; if the change is intended, run `geusemaker recipes update {source}`, otherwise restore the file")),
            }),
            None => Err(UsageError::Invalid {
                message: format!("{source}/{rel} is not in {LOCK_FILE}"),
                hint: Some(format!("run `geusemaker recipes update {source}` if the file is meant to be there")),
            }),
        }
    }
}

/// Add (or replace) a source in the project file at `root` (created when missing).
pub fn add_source(root: &Path, name: &str, origin: &Origin) -> Result<(), String> {
    if !valid_name(name) {
        return Err(format!(
            "source name `{name}`: lowercase letters, digits, - and _, starting with a letter"
        ));
    }
    let file = root.join(PROJECT_FILE);
    let text = std::fs::read_to_string(&file).unwrap_or_default();
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| toml_err(&file, &text, &e))?;
    if !doc.contains_table("sources") {
        let mut t = toml_edit::Table::new();
        t.set_implicit(true);
        doc.insert("sources", toml_edit::Item::Table(t));
    }
    let mut t = toml_edit::Table::new();
    match origin {
        Origin::Git { url, rev } => {
            t.insert("git", toml_edit::value(url.as_str()));
            t.insert("rev", toml_edit::value(rev.as_str()));
        }
        Origin::Path(p) => {
            t.insert("path", toml_edit::value(p.to_string_lossy().as_ref()));
        }
    }
    doc["sources"][name] = toml_edit::Item::Table(t);
    write_atomic(&file, doc.to_string().as_bytes()).map_err(|e| e.to_string())
}

/// What `update` changed for one source.
#[derive(Debug, Default)]
pub struct Change {
    pub commit: Option<(Option<String>, String)>,
    pub added: Vec<String>,
    pub changed: Vec<String>,
    pub removed: Vec<String>,
}

/// Resolve, fetch and hash the named sources (all when `only` is empty) and write the lock.
pub fn update(
    project: &Project,
    home: &Home,
    only: &[String],
) -> Result<BTreeMap<String, Change>, UsageError> {
    for n in only {
        if !project.sources.contains_key(n) {
            return Err(UsageError::Invalid {
                message: format!(
                    "no source `{n}` in {}",
                    project.root.join(PROJECT_FILE).display()
                ),
                hint: crate::suggest::did_you_mean(n, project.sources.keys().map(String::as_str))
                    .map(|s| format!("did you mean `{s}`?")),
            });
        }
    }
    let mut lock = project.lock.clone();
    lock.retain(|k, _| project.sources.contains_key(k));
    let mut changes = BTreeMap::new();
    for (name, origin) in &project.sources {
        if !only.is_empty() && !only.contains(name) {
            continue;
        }
        let (files, commit) = match origin {
            Origin::Git { url, rev } => {
                let (_, c, hashes) = fetch(home, name, url, rev)?;
                (hashes, Some(c))
            }
            Origin::Path(p) => {
                if !p.is_dir() {
                    return Err(
                        format!("source `{name}`: {} is not a directory", p.display()).into(),
                    );
                }
                (hash_tree(p)?, None)
            }
        };
        let before = lock.get(name);
        let mut ch = Change::default();
        if before.and_then(|b| b.commit.clone()) != commit {
            if let Some(c) = &commit {
                ch.commit = Some((before.and_then(|b| b.commit.clone()), c.clone()));
            }
        }
        let old = before.map(|b| b.files.clone()).unwrap_or_default();
        for (f, h) in &files {
            match old.get(f) {
                None => ch.added.push(f.clone()),
                Some(o) if o != h => ch.changed.push(f.clone()),
                _ => {}
            }
        }
        ch.removed = old
            .keys()
            .filter(|f| !files.contains_key(*f))
            .cloned()
            .collect();
        lock.insert(
            name.clone(),
            Locked {
                origin: origin.clone(),
                commit,
                files,
            },
        );
        changes.insert(name.clone(), ch);
    }
    write_lock(&project.root, &lock)?;
    Ok(changes)
}

fn write_lock(root: &Path, lock: &BTreeMap<String, Locked>) -> Result<(), String> {
    let mut doc = toml_edit::DocumentMut::new();
    doc.decor_mut().set_prefix(
        "# geusemaker.lock — written by `geusemaker recipes add|update`; commit it with the project.\n# `run` and `check` refuse a source file whose sha256 differs from this.\n\n",
    );
    let mut sources = toml_edit::Table::new();
    sources.set_implicit(true);
    for (name, l) in lock {
        let mut t = toml_edit::Table::new();
        match &l.origin {
            Origin::Git { url, rev } => {
                t.insert("git", toml_edit::value(url.as_str()));
                t.insert("rev", toml_edit::value(rev.as_str()));
            }
            Origin::Path(p) => {
                let shown = p.strip_prefix(root).unwrap_or(p);
                t.insert("path", toml_edit::value(shown.to_string_lossy().as_ref()));
            }
        }
        if let Some(c) = &l.commit {
            t.insert("commit", toml_edit::value(c.as_str()));
        }
        let mut files = toml_edit::Table::new();
        for (f, h) in &l.files {
            files.insert(f, toml_edit::value(h.as_str()));
        }
        t.insert("files", toml_edit::Item::Table(files));
        sources.insert(name, toml_edit::Item::Table(t));
    }
    doc.insert("sources", toml_edit::Item::Table(sources));
    write_atomic(&root.join(LOCK_FILE), doc.to_string().as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::fetch::recipe_files;
    use super::*;

    #[test]
    fn a_checkout_holds_plain_recipe_files_only() {
        let files: BTreeMap<String, Vec<u8>> = [
            ".git/config",
            ".GIT/hooks/post-checkout.rhai",
            "lib/.hidden.rhai",
            "notes.txt",
            "a.rhai",
            "lib/b.rhai",
            "git~1/x.rhai",
        ]
        .into_iter()
        .map(|p| (p.to_string(), b"x".to_vec()))
        .collect();
        assert_eq!(
            recipe_files(files).into_keys().collect::<Vec<_>>(),
            ["a.rhai", "lib/b.rhai"]
        );
    }

    #[test]
    fn a_source_that_cannot_be_fetched_says_which_and_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let url = dir.path().join("no-such-repo.git");
        let url = url.to_str().unwrap();
        let e = fetch(&home, "acme", url, "v1.0.0").unwrap_err();
        let SourceError::Unreachable { name, source, .. } = &e else {
            panic!("unreachable, not {e:?}")
        };
        assert_eq!(name, "acme");
        assert!(matches!(**source, SourceError::Git { .. }), "{source:?}");
        assert!(
            e.to_string()
                .starts_with(&format!("cannot fetch source `acme` from {url}: git clone")),
            "{e}"
        );
        let usage = UsageError::from(e);
        assert!(
            usage.hint().unwrap().starts_with("check the URL"),
            "{usage}"
        );
        // Without git, that is what the hint says, not the URL.
        let no_git = SourceError::Unreachable {
            name: "acme".into(),
            url: url.into(),
            source: Box::new(SourceError::NoGit(std::io::Error::from(
                std::io::ErrorKind::NotFound,
            ))),
        };
        let usage = UsageError::from(no_git);
        assert!(usage.hint().unwrap().starts_with("install git"), "{usage}");
    }

    #[test]
    fn path_sources_lock_and_catch_a_changed_file() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path().join("home"));
        let team = dir.path().join("team");
        std::fs::create_dir_all(team.join("lib")).unwrap();
        std::fs::write(team.join("tier.rhai"), "let a = 1;\n").unwrap();
        std::fs::write(team.join("lib/x.rhai"), "fn f() { 1 }\n").unwrap();
        let root = dir.path().join("proj");
        std::fs::create_dir_all(&root).unwrap();
        add_source(&root, "team", &Origin::Path(PathBuf::from("../team"))).unwrap();
        let p = Project::discover(&root.join("sub/dir")).unwrap().unwrap();
        assert_eq!(p.root, root, "found from below");
        let changes = update(&p, &home, &[]).unwrap();
        assert_eq!(changes["team"].added, ["lib/x.rhai", "tier.rhai"]);
        let p = Project::discover(&root).unwrap().unwrap();
        let (display, text, _) = p.load_file(&home, "team/lib/x").unwrap().unwrap();
        assert_eq!(
            (display.as_str(), text.as_str()),
            ("team/lib/x.rhai", "fn f() { 1 }\n")
        );
        assert!(p.load_file(&home, "other/x").unwrap().is_none());
        std::fs::write(team.join("tier.rhai"), "let a = 2;\n").unwrap();
        let e = p.load_file(&home, "team/tier").unwrap_err();
        assert!(
            e.to_string()
                .contains("team/tier.rhai does not match geusemaker.lock"),
            "{e}"
        );
        std::fs::write(team.join("new.rhai"), "1").unwrap();
        assert!(p
            .load_file(&home, "team/new")
            .unwrap_err()
            .to_string()
            .contains("is not in geusemaker.lock"));
        let changes = update(&p, &home, &["team".into()]).unwrap();
        assert_eq!(
            (
                changes["team"].changed.clone(),
                changes["team"].added.clone()
            ),
            (vec!["tier.rhai".to_string()], vec!["new.rhai".to_string()])
        );
        assert!(update(&p, &home, &["tem".into()])
            .unwrap_err()
            .to_string()
            .contains("did you mean `team`"));
    }
}
