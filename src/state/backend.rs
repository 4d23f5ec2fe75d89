//! Where stack documents and their locks live: one interface, two places.
//!
//! * [`Local`]: `$GEUSEMAKER_HOME/stacks/` (atomic files, an OS lock per stack);
//! * [`super::s3::S3`]: `s3://bucket/prefix/` shared by a team (conditional writes, a lock
//!   object with a lease).
//!
//! Every command that reads or writes stack state goes through [`StateBackend`]. The CLI picks
//! the backend once per process ([`select`]); without a choice it is the local one.
//!
//! Every write names the version it was based on ([`Version`]): a backend refuses a write whose
//! base is no longer the stored document ([`StateError::Conflict`]), so two writers can never
//! silently overwrite each other.

use std::fs;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use sha2::{Digest, Sha256};

use super::{write_atomic, Home, LockHolder, StackLock, StateError};

/// The stored version a document was read at: S3's ETag, or the file's sha256. `None`: the
/// document did not exist.
pub type Version = Option<String>;

/// A document as read, with the version a write must be based on.
#[derive(Debug, Clone)]
pub struct Stored {
    pub text: String,
    pub version: String,
}

impl Stored {
    /// A document's bytes as read from `location`: text, or a positioned refusal.
    pub fn from_bytes(
        location: &str,
        bytes: Vec<u8>,
        version: String,
    ) -> Result<Stored, StateError> {
        let text = String::from_utf8(bytes).map_err(|e| StateError::Corrupt {
            path: location.into(),
            line: 1,
            column: 1,
            message: format!("not UTF-8 text: {e}"),
        })?;
        Ok(Stored { text, version })
    }
}

/// A held stack lock; released when dropped.
pub trait HeldLock: Send + Sync + std::fmt::Debug {
    /// The holder of a run that died holding the lock (or whose lease ran out), taken over.
    fn previous_holder(&self) -> Option<&LockHolder>;
    /// `Err` once the lock is known to be lost (its lease was taken over by another run).
    fn check(&self) -> Result<(), StateError>;
}

/// One place stack documents live.
pub trait Backend: Send + Sync {
    /// Where stacks live, for messages: a directory or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Where one stack's document lives.
    fn location(&self, stack: &str) -> String;
    /// Names of the stacks that have a document, sorted.
    fn names(&self) -> Result<Vec<String>, StateError>;
    /// The documents of `names`, in order (a remote backend reads them in parallel).
    fn read_many(&self, names: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        names.iter().map(|n| self.read(n)).collect()
    }
    fn read(&self, stack: &str) -> Result<Option<Stored>, StateError>;
    /// Replace the document if it is still at `base` (or still absent when `base` is `None`);
    /// returns the new version.
    fn write(&self, stack: &str, text: &[u8], base: &Version) -> Result<String, StateError>;
    /// Remove the document if it is still at `base`.
    fn remove(&self, stack: &str, base: &str) -> Result<(), StateError>;
    /// Keep a copy of a document beside it (`<stack>.json<suffix>`), e.g. before a migration.
    fn keep_copy(&self, stack: &str, suffix: &str, text: &[u8]) -> Result<(), StateError>;
    /// Take the stack's lock or fail at once, naming the holder.
    fn lock(&self, stack: &str, run: &str, command: &str) -> Result<Box<dyn HeldLock>, StateError>;
    /// Who holds (or last held) the stack's lock.
    fn holder(&self, stack: &str) -> Result<Option<LockHolder>, StateError>;
    /// Remove the stack's lock record (`unlock`, after its checks): only while `shown` is still
    /// its holder (`None`: while it names no readable holder).
    fn break_lock(&self, stack: &str, shown: Option<&LockHolder>) -> Result<(), StateError>;
    /// Things the user should know about this backend (once per process), e.g. an S3 bucket
    /// without versioning.
    fn notices(&self) -> Vec<String> {
        Vec::new()
    }
    fn is_remote(&self) -> bool;
}

/// A shared handle to the backend in use.
#[derive(Clone)]
pub struct StateBackend(Arc<dyn Backend>);

impl std::fmt::Debug for StateBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StateBackend({})", self.0.describe())
    }
}

impl std::ops::Deref for StateBackend {
    type Target = dyn Backend;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}

static SELECTED: OnceLock<StateBackend> = OnceLock::new();

/// Choose the backend of this process (the CLI does, once, from `--state` and the settings).
/// A second choice is ignored.
pub fn select(backend: StateBackend) {
    let _ = SELECTED.set(backend);
}

impl StateBackend {
    pub fn new(backend: impl Backend + 'static) -> Self {
        StateBackend(Arc::new(backend))
    }

    /// The local backend under `home`.
    pub fn local(home: Home) -> Self {
        Self::new(Local { home })
    }

    /// The backend chosen for this process, else the local one under `$GEUSEMAKER_HOME`.
    pub fn current() -> Result<Self, StateError> {
        match SELECTED.get() {
            Some(b) => Ok(b.clone()),
            None => Ok(Self::local(Home::from_env()?)),
        }
    }

    /// Whether a stack has a document here.
    pub fn exists(&self, stack: &str) -> Result<bool, StateError> {
        Ok(self.read(stack)?.is_some())
    }
}

/// Stacks in `$GEUSEMAKER_HOME/stacks/`: today's files.
#[derive(Debug, Clone)]
pub struct Local {
    pub home: Home,
}

/// A file's version: the sha256 of its bytes.
fn digest(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Local {
    fn read_file(&self, path: &PathBuf) -> Result<Option<Vec<u8>>, StateError> {
        match fs::read(path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StateError::io(path, e)),
        }
    }

    fn check_base(&self, stack: &str, base: Option<&str>) -> Result<(), StateError> {
        let path = self.home.stack_file(stack);
        let now = self.read_file(&path)?.map(|b| digest(&b));
        if now.as_deref() != base {
            return Err(StateError::Conflict {
                stack: stack.to_string(),
                location: path.display().to_string(),
            });
        }
        Ok(())
    }
}

impl Backend for Local {
    fn describe(&self) -> String {
        self.home.stacks_dir().display().to_string()
    }

    fn location(&self, stack: &str) -> String {
        self.home.stack_file(stack).display().to_string()
    }

    fn names(&self) -> Result<Vec<String>, StateError> {
        Ok(self.home.stack_names())
    }

    fn read(&self, stack: &str) -> Result<Option<Stored>, StateError> {
        let path = self.home.stack_file(stack);
        let Some(bytes) = self.read_file(&path)? else {
            return Ok(None);
        };
        let version = digest(&bytes);
        Stored::from_bytes(&path.display().to_string(), bytes, version).map(Some)
    }

    fn write(&self, stack: &str, text: &[u8], base: &Version) -> Result<String, StateError> {
        // Writers hold the stack's lock, so the check and the rename do not race with another
        // geusemaker; the check catches anything else that changed the file meanwhile.
        self.check_base(stack, base.as_deref())?;
        self.home.ensure()?;
        write_atomic(&self.home.stack_file(stack), text)?;
        Ok(digest(text))
    }

    fn remove(&self, stack: &str, base: &str) -> Result<(), StateError> {
        let path = self.home.stack_file(stack);
        match self.read_file(&path)? {
            None => Ok(()),
            Some(b) if digest(&b) != base => Err(StateError::Conflict {
                stack: stack.to_string(),
                location: path.display().to_string(),
            }),
            Some(_) => fs::remove_file(&path).map_err(|e| StateError::io(&path, e)),
        }
    }

    fn keep_copy(&self, stack: &str, suffix: &str, text: &[u8]) -> Result<(), StateError> {
        let mut keep = self.home.stack_file(stack).into_os_string();
        keep.push(suffix);
        write_atomic(std::path::Path::new(&keep), text)
    }

    fn lock(&self, stack: &str, run: &str, command: &str) -> Result<Box<dyn HeldLock>, StateError> {
        Ok(Box::new(StackLock::acquire(
            &self.home, stack, run, command,
        )?))
    }

    fn holder(&self, stack: &str) -> Result<Option<LockHolder>, StateError> {
        Ok(StackLock::holder(&self.home, stack))
    }

    fn break_lock(&self, stack: &str, _shown: Option<&LockHolder>) -> Result<(), StateError> {
        // The OS lock is what keeps runs apart here; the file only names the last holder.
        let path = self.home.lock_file(stack);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(StateError::io(&path, e)),
        }
    }

    fn is_remote(&self) -> bool {
        false
    }
}

impl HeldLock for StackLock {
    fn previous_holder(&self) -> Option<&LockHolder> {
        StackLock::previous_holder(self)
    }
    fn check(&self) -> Result<(), StateError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_write_based_on_a_stale_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let b = StateBackend::local(Home::at(dir.path()));
        let v1 = b.write("demo", b"{\"a\":1}", &None).unwrap();
        // A second "create" is refused: the document exists now.
        assert!(matches!(
            b.write("demo", b"{}", &None),
            Err(StateError::Conflict { .. })
        ));
        let v2 = b.write("demo", b"{\"a\":2}", &Some(v1.clone())).unwrap();
        let e = b
            .write("demo", b"{\"a\":3}", &Some(v1.clone()))
            .unwrap_err();
        assert!(matches!(e, StateError::Conflict { .. }), "{e}");
        assert_eq!(b.read("demo").unwrap().unwrap().text, "{\"a\":2}");
        assert!(b.remove("demo", &v1).is_err(), "a stale remove is refused");
        b.remove("demo", &v2).unwrap();
        assert!(b.read("demo").unwrap().is_none());
    }
}
