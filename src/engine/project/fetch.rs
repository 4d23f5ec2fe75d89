//! Git sources: the bare repository and verified checkouts cached per source and commit, and
//! the file hashes a lock records.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::engine::gitobj::{self, ObjectError};
use crate::state::Home;

use super::*;

/// Why a git source could not be fetched, verified or checked out.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// git cannot be started.
    #[error("cannot run git: {0} (shared git sources need git installed)")]
    NoGit(#[source] std::io::Error),
    /// A git command failed; `stderr` is what it said.
    #[error("git {args} failed: {stderr}")]
    Git { args: String, stderr: String },
    /// A file or directory of the cache could not be made, read, moved or locked.
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Cloning or fetching from the origin failed.
    #[error("cannot fetch source `{name}` from {url}: {source}")]
    Unreachable {
        name: String,
        url: String,
        #[source]
        source: Box<SourceError>,
    },
    /// The origin has no such tag, branch or commit.
    #[error("source `{name}`: {url} has no tag or commit `{rev}`")]
    NoRevision {
        name: String,
        url: String,
        rev: String,
    },
    /// The origin answers a commit id with another commit.
    #[error("source `{name}`: {url} resolves {commit} to {got}")]
    WrongCommit {
        name: String,
        url: String,
        commit: String,
        got: String,
    },
    /// The commit's objects do not verify, even fetched again (or git cannot read them).
    #[error("source `{name}` at {commit} from {url}: {source}")]
    Objects {
        name: String,
        url: String,
        commit: String,
        #[source]
        source: ObjectError,
    },
    /// Git's object store of the cache could not be read.
    #[error(transparent)]
    Store(ObjectError),
    /// A checkout does not read back as it was written.
    #[error("cannot check out {} ({file} differs after writing it)", dest.display())]
    CheckoutDiffers { dest: PathBuf, file: String },
}

impl SourceError {
    /// `action` on `path` failed: for `map_err`.
    fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> SourceError {
        let path = path.to_path_buf();
        move |source| SourceError::Io {
            action,
            path,
            source,
        }
    }

    /// What to do about it, when there is something to say.
    fn hint(&self) -> Option<String> {
        match self {
            SourceError::NoGit(_) | SourceError::Store(ObjectError::Git(_)) => {
                Some("install git, or use a `path` source".into())
            }
            // git missing says so before a URL is doubted.
            SourceError::Unreachable { source, .. } => source.hint().or_else(|| {
                Some(
                    "check the URL and the network (a private repository needs git's own access to it)"
                        .into(),
                )
            }),
            SourceError::NoRevision { name, .. } => Some(format!(
                "check `rev` of [sources.{name}] in {PROJECT_FILE} (a tag, a branch or a commit \
                 id); for the commit {LOCK_FILE} records, `geusemaker recipes update {name}`"
            )),
            _ => None,
        }
    }
}

impl From<SourceError> for UsageError {
    fn from(e: SourceError) -> Self {
        UsageError::Invalid {
            hint: e.hint(),
            message: e.to_string(),
        }
    }
}

fn git(args: &[&str], dir: Option<&Path>) -> Result<String, SourceError> {
    let mut c = Command::new("git");
    if let Some(d) = dir {
        c.arg("-C").arg(d);
    }
    // The cache's repository is data, not configuration: none of its hooks or helpers run.
    c.args([
        "-c",
        "core.hooksPath=/dev/null",
        "-c",
        "core.fsmonitor=false",
        "-c",
        "credential.helper=",
    ]);
    let out = c
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(SourceError::NoGit)?;
    if !out.status.success() {
        return Err(SourceError::Git {
            args: args.join(" "),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The cache of source `name`: a bare repository (`repo.git`, the git objects) and one
/// checkout per commit.
fn source_cache(home: &Home, name: &str) -> PathBuf {
    home.cache_dir().join("sources").join(name)
}

fn is_commit_id(rev: &str) -> bool {
    (rev.len() == 40 || rev.len() == 64) && rev.chars().all(|c| c.is_ascii_hexdigit())
}

/// Make sure the bare repository of `name` has `rev` (cloning or fetching from `url`), and
/// resolve it to a commit id.
fn fetch_commit(home: &Home, name: &str, url: &str, rev: &str) -> Result<String, SourceError> {
    let base = source_cache(home, name);
    let repo = base.join("repo.git");
    let unreachable = |e| SourceError::Unreachable {
        name: name.to_string(),
        url: url.to_string(),
        source: Box::new(e),
    };
    std::fs::create_dir_all(&base).map_err(SourceError::io("create", &base))?;
    let has = |r: &str| {
        git(
            &[
                "rev-parse",
                "--verify",
                "--quiet",
                &format!("{r}^{{commit}}"),
            ],
            Some(&repo),
        )
    };
    if !repo.is_dir() {
        let tmp = tempfile::Builder::new()
            .prefix(".clone-")
            .tempdir_in(&base)
            .map_err(SourceError::io("create a directory in", &base))?;
        let work = tmp.path().join("repo.git");
        git(
            &["clone", "--quiet", "--bare", url, &work.to_string_lossy()],
            None,
        )
        .map_err(unreachable)?;
        // Another process may have cloned it meanwhile: theirs is as good as ours.
        if let Err(e) = std::fs::rename(&work, &repo) {
            if !repo.is_dir() {
                return Err(SourceError::io("move the clone into", &repo)(e));
            }
        }
    } else if !(is_commit_id(rev) && has(rev).is_ok()) {
        // A tag or branch may have moved: ask the origin again.
        git(
            &[
                "fetch",
                "--quiet",
                "--force",
                url,
                "+refs/heads/*:refs/heads/*",
                "+refs/tags/*:refs/tags/*",
            ],
            Some(&repo),
        )
        .map_err(unreachable)?;
    }
    has(rev).map_err(|_| SourceError::NoRevision {
        name: name.to_string(),
        url: url.to_string(),
        rev: rev.to_string(),
    })
}

/// The files of `commit`, verified from the git objects down (fetching from `url` again when
/// the object store is incomplete or was changed).
fn commit_files(
    home: &Home,
    name: &str,
    url: &str,
    commit: &str,
) -> Result<BTreeMap<String, Vec<u8>>, SourceError> {
    let repo = source_cache(home, name).join("repo.git");
    if repo.is_dir() {
        match gitobj::commit_files(&repo, commit) {
            Ok(files) => return Ok(files),
            Err(e @ ObjectError::Git(_)) => return Err(SourceError::Store(e)),
            Err(e) => {
                crate::ui::Ui::detect(false).warn(&format!(
                    "source `{name}`: {e}; fetching it again from {url}"
                ));
                std::fs::remove_dir_all(&repo).map_err(SourceError::io("remove", &repo))?;
            }
        }
    }
    let got = fetch_commit(home, name, url, commit)?;
    if got != commit {
        return Err(SourceError::WrongCommit {
            name: name.to_string(),
            url: url.to_string(),
            commit: commit.to_string(),
            got,
        });
    }
    gitobj::commit_files(&repo, commit).map_err(|source| SourceError::Objects {
        name: name.to_string(),
        url: url.to_string(),
        commit: commit.to_string(),
        source,
    })
}

/// The files of a commit that a checkout holds: `.rhai` files (the only ones geusemaker loads
/// and locks) at plain relative paths — nothing hidden, so never a `.git` of the source's
/// making that git would later read as configuration.
pub(super) fn recipe_files(files: BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    files
        .into_iter()
        .filter(|(rel, _)| {
            rel.ends_with(".rhai")
                && rel.split('/').all(|part| {
                    !part.is_empty()
                        && !part.starts_with('.')
                        && !part.contains(['\\', ':'])
                        && !part.eq_ignore_ascii_case("git~1")
                })
        })
        .collect()
}

/// Is `dir` exactly `files` (every file there with its content, and no other `.rhai` file)?
fn checkout_matches(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Option<String> {
    for (rel, bytes) in files {
        match std::fs::read(dir.join(rel)) {
            Ok(b) if b == *bytes => {}
            _ => return Some(rel.clone()),
        }
    }
    let on_disk = hash_tree(dir).unwrap_or_default();
    on_disk.keys().find(|f| !files.contains_key(*f)).cloned()
}

/// Write `files` as the checkout `dest` (replacing what is there, atomically).
fn write_checkout(dest: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), SourceError> {
    let parent = dest.parent().expect("a checkout has a parent");
    let tmp = tempfile::Builder::new()
        .prefix(".checkout-")
        .tempdir_in(parent)
        .map_err(SourceError::io("create a directory in", parent))?;
    for (rel, bytes) in files {
        let f = tmp.path().join(rel);
        if let Some(d) = f.parent() {
            std::fs::create_dir_all(d).map_err(SourceError::io("create", d))?;
        }
        std::fs::write(&f, bytes).map_err(SourceError::io("write", &f))?;
    }
    let old = parent.join(format!(".old-{}", rand::random::<u32>()));
    // Concurrent runs may each put a checkout in place: whichever lands, it is checked below.
    let _ = std::fs::rename(dest, &old);
    let dir = tmp.keep();
    if std::fs::rename(&dir, dest).is_err() {
        let _ = std::fs::remove_dir_all(&dir);
    }
    let _ = std::fs::remove_dir_all(&old);
    match checkout_matches(dest, files) {
        None => Ok(()),
        Some(file) => Err(SourceError::CheckoutDiffers {
            dest: dest.to_path_buf(),
            file,
        }),
    }
}

/// The cache of one source, held by one process at a time (concurrent CI jobs share it).
fn lock_cache(home: &Home, name: &str) -> Result<std::fs::File, SourceError> {
    let base = source_cache(home, name);
    std::fs::create_dir_all(&base).map_err(SourceError::io("create", &base))?;
    let path = base.join(".lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(SourceError::io("open", &path))?;
    f.lock().map_err(SourceError::io("lock", &path))?;
    Ok(f)
}

static VERIFIED: std::sync::Mutex<Vec<PathBuf>> = std::sync::Mutex::new(Vec::new());

/// The checkout of `commit`, verified against its git objects once per process.
pub(super) fn verified_checkout(
    home: &Home,
    name: &str,
    url: &str,
    commit: &str,
) -> Result<PathBuf, SourceError> {
    let dest = source_cache(home, name).join(commit);
    if VERIFIED.lock().unwrap().contains(&dest) {
        return Ok(dest);
    }
    let _held = lock_cache(home, name)?;
    checkout_locked(home, name, url, commit)
}

/// [`verified_checkout`] with the cache's lock held.
fn checkout_locked(
    home: &Home,
    name: &str,
    url: &str,
    commit: &str,
) -> Result<PathBuf, SourceError> {
    let dest = source_cache(home, name).join(commit);
    let files = recipe_files(commit_files(home, name, url, commit)?);
    if dest.is_dir() {
        if let Some(file) = checkout_matches(&dest, &files) {
            crate::ui::Ui::detect(false).warn(&format!(
                "source `{name}`: the cached copy of {file} differs from commit {}; checked out again from its git objects",
                &commit[..12.min(commit.len())]
            ));
            write_checkout(&dest, &files)?;
        }
    } else {
        write_checkout(&dest, &files)?;
    }
    VERIFIED.lock().unwrap().push(dest.clone());
    Ok(dest)
}

/// Fetch `rev` of `url` and check its commit out (verified); returns the checkout, the commit
/// and the sha256 of every `.rhai` file — read from the git objects, never from the cache.
pub fn fetch(
    home: &Home,
    name: &str,
    url: &str,
    rev: &str,
) -> Result<(PathBuf, String, BTreeMap<String, String>), SourceError> {
    let _held = lock_cache(home, name)?;
    let commit = fetch_commit(home, name, url, rev)?;
    let dir = checkout_locked(home, name, url, &commit)?;
    let hashes = recipe_files(commit_files(home, name, url, &commit)?)
        .into_iter()
        .map(|(rel, bytes)| (rel, sha256(&bytes)))
        .collect();
    Ok((dir, commit, hashes))
}

/// Every `.rhai` file below `dir` (relative path → sha256).
pub fn hash_tree(dir: &Path) -> Result<BTreeMap<String, String>, SourceError> {
    fn walk(
        root: &Path,
        dir: &Path,
        out: &mut BTreeMap<String, String>,
    ) -> Result<(), SourceError> {
        let entries = std::fs::read_dir(dir).map_err(SourceError::io("read", dir))?;
        for e in entries.flatten() {
            let p = e.path();
            if p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            if p.is_dir() {
                walk(root, &p, out)?;
            } else if p.extension().is_some_and(|x| x == "rhai") {
                let bytes = std::fs::read(&p).map_err(SourceError::io("read", &p))?;
                let rel = p
                    .strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .to_string();
                out.insert(rel, sha256(&bytes));
            }
        }
        Ok(())
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out)?;
    Ok(out)
}
