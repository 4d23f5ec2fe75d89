//! The files of one git commit, read from a repository's object store and verified on the way:
//! every object's id is recomputed from its content (sha1, or sha256 for a sha256 repository),
//! from the commit id down through its trees to each file. The commit id in geusemaker.lock is
//! then the only thing trusted — not the cache, not the object store.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{ChildStdin, ChildStdout, Command, Stdio};

use sha1::Sha1;
use sha2::{Digest, Sha256};

/// Why a commit's files could not be read as they are.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ObjectError {
    #[error("cannot run git: {0} (shared git sources need git installed)")]
    Git(String),
    #[error("the object store has no {kind} {id}")]
    Missing { kind: &'static str, id: String },
    #[error("object {id} does not hash to its id: the object store was changed")]
    Corrupt { id: String },
    #[error("object {id} is not a well-formed {kind}")]
    Malformed { kind: &'static str, id: String },
}

/// `git cat-file --batch` on one repository.
struct Store {
    input: ChildStdin,
    output: BufReader<ChildStdout>,
    child: std::process::Child,
}

impl Store {
    fn open(repo: &Path) -> Result<Store, ObjectError> {
        let mut child = Command::new("git")
            .arg("-C")
            .arg(repo)
            .args(["cat-file", "--batch"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| ObjectError::Git(e.to_string()))?;
        let input = child.stdin.take().expect("piped stdin");
        let output = BufReader::new(child.stdout.take().expect("piped stdout"));
        Ok(Store {
            input,
            output,
            child,
        })
    }

    /// The object `id` of `kind`, its content checked against its id.
    fn read(&mut self, id: &str, kind: &'static str) -> Result<Vec<u8>, ObjectError> {
        let io = |e: std::io::Error| ObjectError::Git(e.to_string());
        writeln!(self.input, "{id}").map_err(io)?;
        self.input.flush().map_err(io)?;
        let mut header = String::new();
        self.output.read_line(&mut header).map_err(io)?;
        let fields: Vec<&str> = header.split_whitespace().collect();
        let missing = || ObjectError::Missing {
            kind,
            id: id.to_string(),
        };
        let [got_id, got_kind, size] = fields[..] else {
            return Err(missing());
        };
        let size: usize = size.parse().map_err(|_| missing())?;
        let mut content = vec![0; size + 1];
        self.output.read_exact(&mut content).map_err(io)?;
        content.pop(); // the newline after each object
        if got_id != id || got_kind != kind {
            return Err(missing());
        }
        if object_id(kind, &content, id.len()) != id {
            return Err(ObjectError::Corrupt { id: id.to_string() });
        }
        Ok(content)
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A git object id: the hash of `<kind> <size>\0<content>` (sha1: 40 hex digits, sha256: 64).
pub fn object_id(kind: &str, content: &[u8], hex_len: usize) -> String {
    let header = format!("{kind} {}\0", content.len());
    let digest: Vec<u8> = if hex_len == 64 {
        let mut h = Sha256::new();
        h.update(header.as_bytes());
        h.update(content);
        h.finalize().to_vec()
    } else {
        let mut h = Sha1::new();
        h.update(header.as_bytes());
        h.update(content);
        h.finalize().to_vec()
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Every regular file of `commit` (path → bytes), each object verified against its id.
/// Symbolic links and submodules are left out: a recipe source is plain files.
pub fn commit_files(repo: &Path, commit: &str) -> Result<BTreeMap<String, Vec<u8>>, ObjectError> {
    let mut store = Store::open(repo)?;
    let body = store.read(commit, "commit")?;
    let malformed = |kind, id: &str| ObjectError::Malformed {
        kind,
        id: id.to_string(),
    };
    let tree = std::str::from_utf8(&body)
        .ok()
        .and_then(|t| t.lines().next())
        .and_then(|l| l.strip_prefix("tree "))
        .map(str::to_string)
        .ok_or_else(|| malformed("commit", commit))?;
    let mut out = BTreeMap::new();
    let mut todo = vec![(String::new(), tree)];
    while let Some((prefix, id)) = todo.pop() {
        let body = store.read(&id, "tree")?;
        let id_bytes = commit.len() / 2;
        let mut rest = &body[..];
        while !rest.is_empty() {
            let nul = rest
                .iter()
                .position(|b| *b == 0)
                .ok_or_else(|| malformed("tree", &id))?;
            let entry = std::str::from_utf8(&rest[..nul]).map_err(|_| malformed("tree", &id))?;
            let (mode, name) = entry
                .split_once(' ')
                .ok_or_else(|| malformed("tree", &id))?;
            if rest.len() < nul + 1 + id_bytes || name.contains('/') || name == ".." {
                return Err(malformed("tree", &id));
            }
            let child: String = rest[nul + 1..nul + 1 + id_bytes]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            rest = &rest[nul + 1 + id_bytes..];
            let path = format!("{prefix}{name}");
            match mode {
                "40000" => todo.push((format!("{path}/"), child)),
                "100644" | "100755" => {
                    let content = store.read(&child, "blob")?;
                    out.insert(path, content);
                }
                _ => {} // symlink (120000) or submodule (160000)
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    #[test]
    fn a_commit_is_read_and_verified_down_to_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        git(d, &["init", "--quiet"]);
        std::fs::create_dir_all(d.join("lib")).unwrap();
        std::fs::write(d.join("a.rhai"), "let a = 1;\n").unwrap();
        std::fs::write(d.join("lib/b.rhai"), "fn b() { 2 }\n").unwrap();
        git(d, &["add", "."]);
        git(d, &["commit", "--quiet", "-m", "one"]);
        let commit = git(d, &["rev-parse", "HEAD"]);
        let files = commit_files(d, &commit).unwrap();
        assert_eq!(files.keys().collect::<Vec<_>>(), ["a.rhai", "lib/b.rhai"]);
        assert_eq!(files["lib/b.rhai"], b"fn b() { 2 }\n");
        assert_eq!(
            object_id("blob", b"let a = 1;\n", 40),
            git(d, &["hash-object", "a.rhai"])
        );

        // A blob changed in place in the object store (same name, other content) is caught.
        let blob = git(d, &["rev-parse", "HEAD:a.rhai"]);
        let path = d.join(".git/objects").join(&blob[..2]).join(&blob[2..]);
        let evil = {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(b"blob 11\0let a = 9;\n").unwrap();
            e.finish().unwrap()
        };
        let mut perms = std::fs::metadata(&path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&path, perms).unwrap();
        std::fs::write(&path, evil).unwrap();
        assert_eq!(
            commit_files(d, &commit).unwrap_err(),
            ObjectError::Corrupt { id: blob }
        );
        // An id the store does not have.
        assert!(matches!(
            commit_files(d, &"0".repeat(40)).unwrap_err(),
            ObjectError::Missing { .. }
        ));
    }
}
