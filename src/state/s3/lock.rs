//! A stack's lock in S3: an object with a lease that a thread renews while the run lives.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use chrono::Utc;

use crate::state::backend::HeldLock;
use crate::state::{LockHolder, StateError};

use super::*;

/// A held S3 lock: renewed by a thread until dropped, then deleted.
pub(super) struct S3Lock {
    inner: Arc<LockInner>,
    renewer: Option<std::thread::JoinHandle<()>>,
    previous: Option<LockHolder>,
}

/// The lock object as this run last wrote it.
pub(super) struct Held {
    holder: LockHolder,
    etag: String,
}

/// Why a renewal did not extend the lease.
pub(super) enum RenewError {
    /// Another run holds the lock now (or it was removed): named.
    Lost(String),
    /// S3 did not answer as asked; the lock may still be ours.
    Failed(StateError),
}

pub(super) struct LockInner {
    shared: Arc<Shared>,
    stack: String,
    key: String,
    held: Mutex<Held>,
    /// One renewal at a time (the thread, or `check` when the lease is close to its end).
    renewing: Mutex<()>,
    /// Set once the lock is known to be another run's (or its lease ran out unrenewed).
    lost: Mutex<Option<String>>,
    stop: (Mutex<bool>, Condvar),
}

pub(super) fn relock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for S3Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Lock({})", self.inner.key)
    }
}

impl S3Lock {
    pub(super) fn acquire(
        shared: Arc<Shared>,
        stack: &str,
        run: &str,
        command: &str,
    ) -> Result<S3Lock, StateError> {
        let key = shared.lock_key(stack);
        let lease = shared.settings.lease;
        let fresh = || {
            let mut h = LockHolder::here(run, command);
            h.lease_until = Some(Utc::now() + lease);
            h
        };
        let mut previous = None;
        let mut attempts = 0;
        let (holder, etag) = loop {
            attempts += 1;
            let holder = fresh();
            match shared.put_checked(&key, &shared.holder_document(&holder), None) {
                Ok(etag) => break (holder, etag),
                Err(Fail::Other(e)) => return Err(e),
                Err(Fail::Precondition) => {}
            }
            // Held: by whom, and is its lease still running?
            let Some((bytes, etag)) = shared.get_blocking(&key).map_err(other)? else {
                if attempts < 5 {
                    continue; // released meanwhile
                }
                return Err(locked(
                    stack,
                    "another run (the lock keeps changing)".into(),
                ));
            };
            let current: Option<LockHolder> = serde_json::from_slice(&bytes).ok();
            let expired = current
                .as_ref()
                .is_some_and(|h| h.lease_until.is_some_and(|t| t < Utc::now()));
            if !expired {
                let who = current.map(|h| h.to_string()).unwrap_or_else(|| {
                    format!(
                        "an unreadable lock object ({}); `geusemaker unlock {stack}` removes it",
                        shared.location_of(&key)
                    )
                });
                return Err(locked(stack, who));
            }
            // Take over the expired lock: only one of two machines doing so at once wins.
            let holder = fresh();
            match shared.put_checked(&key, &shared.holder_document(&holder), Some(&etag)) {
                Ok(new) => {
                    previous = current;
                    break (holder, new);
                }
                Err(Fail::Other(e)) => return Err(e),
                Err(Fail::Precondition) if attempts < 5 => continue,
                Err(Fail::Precondition) => {
                    return Err(locked(stack, "another run taking it over".into()))
                }
            }
        };
        let inner = Arc::new(LockInner {
            shared,
            stack: stack.to_string(),
            key,
            held: Mutex::new(Held { holder, etag }),
            renewing: Mutex::new(()),
            lost: Mutex::new(None),
            stop: (Mutex::new(false), Condvar::new()),
        });
        let thread = {
            let inner = inner.clone();
            std::thread::Builder::new()
                .name("geusemaker-lease".into())
                .spawn(move || inner.renew_until_stopped())
        };
        // Without renewals the lease would run out under the run: the lock is given back
        // (dropped) and the run does not start.
        let mut lock = S3Lock {
            inner,
            renewer: None,
            previous,
        };
        lock.renewer = Some(
            thread.map_err(|e| StateError::io(std::path::Path::new("lease renewal thread"), e))?,
        );
        Ok(lock)
    }
}

pub(super) fn locked(stack: &str, holder: String) -> StateError {
    StateError::Locked {
        stack: stack.to_string(),
        holder,
    }
}

impl LockInner {
    /// The lease's safety margin: a run stops trusting its lock this long before the lease
    /// ends (another machine's clock may be ahead; a write takes time).
    pub(super) fn margin(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.shared.settings.lease / 3).unwrap_or_default()
    }

    /// Extend the lease: the lock object replaced if it is still the one this run wrote.
    pub(super) fn renew_once(&self, only_if_due: bool) -> Result<(), RenewError> {
        let _one = relock(&self.renewing);
        let (mut holder, etag) = {
            let held = relock(&self.held);
            (held.holder.clone(), held.etag.clone())
        };
        // Renewed meanwhile by the other caller (the thread, or `check`).
        if only_if_due && !self.due(&holder) {
            return Ok(());
        }
        holder.lease_until = Some(Utc::now() + self.shared.settings.lease);
        let doc = self.shared.holder_document(&holder);
        match self.shared.put(&self.key, &doc, Some(&etag)) {
            Ok(etag) => {
                *relock(&self.held) = Held { holder, etag };
                Ok(())
            }
            Err(Fail::Precondition) => {
                let now = self.shared.get_blocking(&self.key).map_err(|f| match f {
                    Fail::Other(e) => RenewError::Failed(e),
                    Fail::Precondition => RenewError::Failed(other(f)),
                })?;
                let Some((bytes, etag)) = now else {
                    return Err(RenewError::Lost(
                        "nobody: its lock was removed (`unlock`)".into(),
                    ));
                };
                match serde_json::from_slice::<LockHolder>(&bytes) {
                    // Still this run's lock: an earlier renewal landed although its answer
                    // was lost (the ETag kept here is older). Carry on from what is there.
                    Ok(there) if there.same_holder(&holder) => {
                        let due = self.due(&there);
                        *relock(&self.held) = Held {
                            holder: there,
                            etag,
                        };
                        if !due {
                            return Ok(());
                        }
                        // What landed is itself near its end: once more, from its ETag.
                        drop(_one);
                        self.renew_once(false)
                    }
                    Ok(there) => Err(RenewError::Lost(there.to_string())),
                    Err(_) => Err(RenewError::Lost("an unreadable lock object".into())),
                }
            }
            Err(Fail::Other(e)) => Err(RenewError::Failed(e)),
        }
    }

    /// Whether less than the margin is left of `holder`'s lease (by the wall clock).
    pub(super) fn due(&self, holder: &LockHolder) -> bool {
        holder
            .lease_until
            .is_none_or(|t| t - self.margin() <= Utc::now())
    }

    pub(super) fn mark_lost(&self, who: String) {
        tracing::warn!(stack = %self.stack, holder = %who, "the stack's lock is no longer this run's");
        relock(&self.lost).get_or_insert(who);
    }

    /// Renew every third of the lease (every 2 s after a failure) until stopped or lost.
    pub(super) fn renew_until_stopped(&self) {
        let every = (self.shared.settings.lease / 3).max(Duration::from_millis(200));
        let mut wait = every;
        if std::env::var_os(NO_RENEWAL_ENV).is_some() {
            wait = Duration::from_secs(24 * 3600);
        }
        loop {
            {
                let (stopped, cv) = &self.stop;
                let guard = relock(stopped);
                let (guard, _) = cv
                    .wait_timeout_while(guard, wait, |s| !*s)
                    .unwrap_or_else(|e| e.into_inner());
                if *guard {
                    return;
                }
            }
            if relock(&self.lost).is_some() {
                return;
            }
            match self.renew_once(false) {
                Ok(()) => wait = every,
                Err(RenewError::Lost(who)) => return self.mark_lost(who),
                Err(RenewError::Failed(e)) => {
                    tracing::warn!(stack = %self.stack, error = %e, "could not renew the lock's lease");
                    let until = relock(&self.held).holder.lease_until;
                    if until.is_some_and(|t| t < Utc::now()) {
                        return self.mark_lost(format!(
                            "nobody yet: its lease ran out while S3 could not be reached ({e})"
                        ));
                    }
                    wait = every.min(Duration::from_secs(2));
                }
            }
        }
    }
}

impl HeldLock for S3Lock {
    fn previous_holder(&self) -> Option<&LockHolder> {
        self.previous.as_ref()
    }

    /// Whether this run may still write: not lost, and the lease ends later than the margin
    /// from now — by the wall clock, which also runs while a laptop sleeps. Near its end the
    /// lease is renewed here and now (the renewal thread may be stuck, or the process was
    /// paused); a renewal that fails means the run must stop.
    fn check(&self) -> Result<(), StateError> {
        let inner = &self.inner;
        let lost = |holder: String| StateError::LockLost {
            stack: inner.stack.clone(),
            holder,
        };
        if let Some(who) = relock(&inner.lost).clone() {
            return Err(lost(who));
        }
        if !inner.due(&relock(&inner.held).holder) {
            return Ok(());
        }
        match inner.renew_once(true) {
            Ok(()) => Ok(()),
            Err(RenewError::Lost(who)) => {
                inner.mark_lost(who.clone());
                Err(lost(who))
            }
            Err(RenewError::Failed(e)) => Err(lost(format!(
                "nobody yet: its lease is ending and could not be renewed ({e})"
            ))),
        }
    }
}

impl Drop for S3Lock {
    fn drop(&mut self) {
        {
            let (stopped, cv) = &self.inner.stop;
            *relock(stopped) = true;
            cv.notify_all();
        }
        if let Some(t) = self.renewer.take() {
            let _ = t.join();
        }
        if relock(&self.inner.lost).is_none() {
            let etag = relock(&self.inner.held).etag.clone();
            // Only while it is still this run's: S3's conditional delete.
            if let Err(Fail::Other(e)) = self.inner.shared.delete_if(&self.inner.key, &etag) {
                tracing::warn!(stack = %self.inner.stack, error = %e, "could not release the lock; its lease ends it");
            }
        }
    }
}
