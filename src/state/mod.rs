//! Per-stack state: the stack document, its resource ledger, its lock; under `$GEUSEMAKER_HOME`
//! or in a team's S3 bucket (see [`backend`]).
//!
//! Invariants:
//! * every write is atomic (temp + fsync + rename) and files are 0600;
//! * one exclusive lock per stack for the duration of a run;
//! * a create primitive records an *intent* (with its idempotency token) before calling AWS
//!   and the resource id right after, so a crash at any point leaves a ledger from which
//!   destroy can find everything;
//! * no secret value is ever stored (see [`StackState::set_value`]).

pub mod applied;
mod atomic;
pub mod backend;
mod kind;
mod lock;
pub mod migrate;
mod paths;
pub mod s3;
mod stack;

pub use atomic::write_atomic;
pub use backend::StateBackend;
pub use kind::Kind;
pub use lock::{LockHolder, StackLock};
pub use paths::{Home, HOME_ENV};
pub use stack::{
    HealthySnapshot, Resource, ResourceStatus, RollbackRecord, RollbackTrigger, RunRecord,
    StackState, StackStatus, StackStore,
};

use std::path::{Path, PathBuf};

/// Errors of the state layer, each with enough context to act on: a message and (most) a
/// hint, kept apart ([`StateError::message`], [`StateError::hint`]); `Display` shows both.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    NoHome,
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    Corrupt {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    Locked {
        stack: String,
        holder: String,
    },
    Conflict {
        stack: String,
        location: String,
    },
    LockLost {
        stack: String,
        holder: String,
    },
    Remote {
        location: String,
        action: &'static str,
        message: String,
        hint: Option<String>,
    },
    BadUrl {
        url: String,
        reason: String,
    },
    InvalidName {
        name: String,
        reason: &'static str,
    },
    SecretValue {
        key: String,
    },
}

impl StateError {
    /// What went wrong, without the hint.
    pub fn message(&self) -> String {
        match self {
            StateError::NoHome => {
                format!("cannot find a home directory for the state; set {HOME_ENV}")
            }
            StateError::Io { path, source } => format!("{}: {source}", path.display()),
            StateError::Corrupt {
                path,
                line,
                column,
                message,
            } => format!(
                "{}:{line}:{column}: the state file is not valid: {message}",
                path.display()
            ),
            StateError::Locked { stack, holder } => {
                format!("stack `{stack}` is locked by {holder}")
            }
            StateError::Conflict { stack, location } => format!(
                "the state of stack `{stack}` changed since it was read ({location}): another run wrote it; nothing was overwritten"
            ),
            StateError::LockLost { stack, holder } => format!(
                "the lock of stack `{stack}` was lost (now held by {holder}): this run stopped before changing anything more"
            ),
            StateError::Remote {
                location,
                action,
                message,
                ..
            } => format!("{location}: cannot {action}: {message}"),
            StateError::BadUrl { url, reason } => {
                format!("invalid state location `{url}`: {reason}")
            }
            StateError::InvalidName { name, reason } => {
                format!("invalid stack name `{name}`: {reason}")
            }
            StateError::SecretValue { key } => {
                format!("refusing to store a secret in the state file (key `{key}`)")
            }
        }
    }

    /// What to do about it, when there is something to say.
    pub fn hint(&self) -> Option<String> {
        let text = match self {
            StateError::NoHome | StateError::Io { .. } => return None,
            StateError::Remote { hint, .. } => return hint.clone(),
            StateError::Corrupt { .. } => "nothing was changed; fix the file or move it aside (it is the only record of the stack's resources)".to_string(),
            StateError::Locked { .. } => {
                "wait for that run to finish; only one run per stack at a time".to_string()
            }
            StateError::Conflict { .. } => {
                "run the command again: it starts from the current state".to_string()
            }
            StateError::LockLost { stack, .. } => format!(
                "`geusemaker status {stack}` shows the stack as the other run leaves it; its ledger has everything this run created"
            ),
            StateError::BadUrl { .. } => "use `local` or `s3://BUCKET/PREFIX`".to_string(),
            StateError::InvalidName { .. } => "use 2-63 characters: a lowercase letter first, then lowercase letters, digits or `-` (e.g. `my-stack`)".to_string(),
            StateError::SecretValue { .. } => "keep secrets in SSM SecureString parameters and store the parameter name instead".to_string(),
        };
        Some(text)
    }
}

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())?;
        match self.hint() {
            Some(h) => write!(f, "\nhint: {h}"),
            None => Ok(()),
        }
    }
}

impl StateError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        StateError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Validate a stack name: `^[a-z][a-z0-9-]{1,62}$`.
///
/// The name ends up in AWS resource names and tags, SSM paths and file names, so it is kept
/// to characters every one of those accepts.
pub fn validate_stack_name(name: &str) -> Result<(), StateError> {
    let invalid = |reason| StateError::InvalidName {
        name: name.to_string(),
        reason,
    };
    let first = name.chars().next().ok_or_else(|| invalid("it is empty"))?;
    if !first.is_ascii_lowercase() {
        return Err(invalid("it must start with a lowercase letter"));
    }
    if name.len() < 2 {
        return Err(invalid("it is shorter than 2 characters"));
    }
    if name.len() > 63 {
        return Err(invalid("it is longer than 63 characters"));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        let _ = c;
        return Err(invalid(
            "it may contain only lowercase letters, digits and `-`",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{validate_stack_name, StateError};

    #[test]
    fn an_error_keeps_its_message_and_hint_apart() {
        let e = StateError::Locked {
            stack: "web".into(),
            holder: "pid 7 on box".into(),
        };
        assert_eq!(e.message(), "stack `web` is locked by pid 7 on box");
        assert_eq!(
            e.to_string(),
            format!("{}\nhint: {}", e.message(), e.hint().unwrap())
        );
        let bare = StateError::Remote {
            location: "s3://b/k".into(),
            action: "read",
            message: "boom".into(),
            hint: None,
        };
        assert_eq!(bare.to_string(), "s3://b/k: cannot read: boom");
        assert_eq!(bare.hint(), None);
    }

    #[test]
    fn stack_names() {
        for ok in ["ab", "my-stack", "a1", "x-2-y", &"a".repeat(63)] {
            validate_stack_name(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        for bad in [
            "",
            "a",
            "1abc",
            "-abc",
            "My-stack",
            "my_stack",
            "my stack",
            "stack!",
            "ünï",
            &"a".repeat(64),
            "../etc",
        ] {
            assert!(validate_stack_name(bad).is_err(), "{bad:?} accepted");
        }
    }
}
