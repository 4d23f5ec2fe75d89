//! One exclusive advisory lock per stack, held for the whole run.
//!
//! The lock file records who holds it so that a second run can say whom it is waiting on.
//! The OS releases the lock when the process dies, so a crash never leaves a stale lock.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{Home, StateError};

/// Who holds a stack lock (written into the lock file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LockHolder {
    pub pid: u32,
    pub host: String,
    /// The user who ran the command (`$USER`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user: String,
    pub run: String,
    pub command: String,
    pub since: chrono::DateTime<chrono::Utc>,
    /// A shared lock's lease: it is the holder's until then unless renewed (the local lock
    /// has none: the OS frees it when the process dies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_until: Option<chrono::DateTime<chrono::Utc>>,
}

impl std::fmt::Display for LockHolder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.user.is_empty() {
            String::new()
        } else {
            format!("{} ", self.user)
        };
        write!(
            f,
            "{who}pid {} on {} (run {}, `{}`, since {}",
            self.pid,
            self.host,
            self.run,
            self.command,
            self.since.format("%Y-%m-%d %H:%M:%SZ")
        )?;
        match self.lease_until {
            Some(t) => write!(f, ", lease until {})", t.format("%H:%M:%SZ")),
            None => write!(f, ")"),
        }
    }
}

impl LockHolder {
    /// This process, running `command` as run `run`.
    pub fn here(run: &str, command: &str) -> LockHolder {
        LockHolder {
            pid: std::process::id(),
            host: hostname(),
            user: std::env::var("USER")
                .or_else(|_| std::env::var("LOGNAME"))
                .unwrap_or_default(),
            run: run.to_string(),
            command: command.to_string(),
            since: chrono::Utc::now(),
            lease_until: None,
        }
    }

    /// The same run's lock (its lease may have been renewed since).
    pub fn same_holder(&self, other: &LockHolder) -> bool {
        (self.pid, &self.host, &self.run, self.since)
            == (other.pid, &other.host, &other.run, other.since)
    }

    /// Whether the holder is still working: its lease runs (a shared lock), or it is a live
    /// process on this machine (a local lock).
    pub fn is_live(&self) -> bool {
        match self.lease_until {
            Some(t) => t > chrono::Utc::now(),
            None => self.is_alive_here(),
        }
    }

    /// Whether the holder is a live process on this machine.
    pub fn is_alive_here(&self) -> bool {
        self.host == hostname() && std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// A held stack lock; released when dropped (or when the process exits).
#[derive(Debug)]
pub struct StackLock {
    file: File,
    path: PathBuf,
    /// A holder recorded by a process that died without releasing (the OS freed the lock).
    previous: Option<LockHolder>,
}

impl StackLock {
    /// Take the stack's lock or fail at once, naming the holder.
    pub fn acquire(
        home: &Home,
        stack: &str,
        run: &str,
        command: &str,
    ) -> Result<StackLock, StateError> {
        home.ensure()?;
        let path = home.lock_file(stack);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|e| StateError::io(&path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                let holder = serde_json::from_str::<LockHolder>(&text)
                    .map(|h| h.to_string())
                    .unwrap_or_else(|_| "another geusemaker process".to_string());
                return Err(StateError::Locked {
                    stack: stack.to_string(),
                    holder,
                });
            }
            Err(TryLockError::Error(e)) => return Err(StateError::io(&path, e)),
        }
        // A clean exit clears the holder; one still recorded belongs to a run that died.
        let mut previous_text = String::new();
        let _ = file.read_to_string(&mut previous_text);
        let previous = serde_json::from_str::<LockHolder>(&previous_text).ok();
        let holder = LockHolder::here(run, command);
        let text = serde_json::to_string(&holder).expect("lock holder serializes");
        file.set_len(0)
            .and_then(|_| file.seek(SeekFrom::Start(0)))
            .and_then(|_| file.write_all(text.as_bytes()))
            .and_then(|_| file.sync_all())
            .map_err(|e| StateError::io(&path, e))?;
        Ok(StackLock {
            file,
            path,
            previous,
        })
    }

    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The holder of a run that died while holding this lock, if any.
    pub fn previous_holder(&self) -> Option<&LockHolder> {
        self.previous.as_ref()
    }

    /// Who holds (or last held) the stack's lock, from the lock file.
    pub fn holder(home: &Home, stack: &str) -> Option<LockHolder> {
        let text = std::fs::read_to_string(home.lock_file(stack)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

impl Drop for StackLock {
    fn drop(&mut self) {
        // Clear the holder before the OS drops the lock with the descriptor.
        let _ = self.file.set_len(0);
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_acquire_fails_naming_the_holder_and_drop_releases() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let first = StackLock::acquire(&home, "demo", "run-1", "run dev").unwrap();
        let err = StackLock::acquire(&home, "demo", "run-2", "run dev").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("demo"), "{msg}");
        assert!(msg.contains("run-1"), "{msg}");
        assert!(
            msg.contains(&format!("pid {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        let third =
            StackLock::acquire(&home, "demo", "run-3", "run dev").expect("lock is free after drop");
        assert!(
            third.previous_holder().is_none(),
            "a clean release leaves no holder behind"
        );
    }

    #[test]
    fn a_holder_left_by_a_dead_process_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        home.ensure().unwrap();
        let dead = LockHolder {
            pid: 999_999_999,
            ..LockHolder::here("r0", "run dev")
        };
        std::fs::write(
            home.lock_file("demo"),
            serde_json::to_string(&dead).unwrap(),
        )
        .unwrap();
        assert!(!dead.is_alive_here());
        let lock = StackLock::acquire(&home, "demo", "r1", "run dev").unwrap();
        assert_eq!(lock.previous_holder().map(|h| h.run.as_str()), Some("r0"));
        assert_eq!(StackLock::holder(&home, "demo").unwrap().run, "r1");
    }

    #[test]
    fn locks_are_per_stack() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let _a = StackLock::acquire(&home, "alpha", "r", "c").unwrap();
        let _b = StackLock::acquire(&home, "beta", "r", "c").unwrap();
    }
}
