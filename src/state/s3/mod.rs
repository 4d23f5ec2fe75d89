//! The team backend: stack documents in S3 (`s3://bucket/prefix`), shared by every machine.
//!
//! * `<prefix>/stacks/<stack>.json` is the stack document (its ledger included). Every write is
//!   conditional: `If-Match` the ETag it was based on, or `If-None-Match: *` for a new stack,
//!   so a write based on a stale read fails (412) instead of overwriting another machine's.
//! * `<prefix>/locks/<stack>.lock` is the stack's lock: created with `If-None-Match: *`, it
//!   names its holder (user, host, pid, run) and a lease that a thread renews (`If-Match`)
//!   while the run lives. A lock whose lease ran out is taken over (`If-Match` its ETag, so of
//!   two machines taking it over only one wins); a run that finds its own lock taken over stops
//!   writing ([`StateError::LockLost`]).
//! * Every object is written with server-side encryption (SSE-S3, or SSE-KMS with a key).
//!
//! Leases are judged by the clock of the machine reading them: clocks kept by NTP differ by far
//! less than a lease (2 minutes by default).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use aws_sdk_s3::types::BucketVersioningStatus;
use aws_sdk_s3::Client;

use super::backend::{Backend, HeldLock, Stored, Version};
use super::{LockHolder, StateError};

mod lock;
mod shared;

use lock::*;
use shared::*;

/// Test-only: a run with this variable set never renews its lease in the background (as a
/// laptop asleep would not), so tests can make a lease run out under a live run.
pub const NO_RENEWAL_ENV: &str = "GEUSEMAKER_TEST_NO_LEASE_RENEWAL";

/// Builds the AWS configuration when S3 is first used (commands that never read state never
/// need credentials).
pub type Connect =
    Box<dyn Fn() -> Pin<Box<dyn Future<Output = aws_config::SdkConfig> + Send>> + Send + Sync>;

/// `s3://bucket/prefix`, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Url {
    pub bucket: String,
    /// Without leading or trailing `/`; may be empty.
    pub prefix: String,
}

impl S3Url {
    pub fn parse(url: &str) -> Result<S3Url, StateError> {
        let bad = |reason: &str| StateError::BadUrl {
            url: url.to_string(),
            reason: reason.to_string(),
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| bad("it does not start with s3://"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.')
            && bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
            && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
        if !valid_bucket {
            return Err(bad(
                "the bucket name must be 3-63 lowercase letters, digits, `-` or `.`",
            ));
        }
        let prefix = prefix.trim_matches('/').to_string();
        if prefix.split('/').any(|p| p == ".." || p == ".") || prefix.contains("//") {
            return Err(bad("the prefix has an empty, `.` or `..` part"));
        }
        Ok(S3Url {
            bucket: bucket.to_string(),
            prefix,
        })
    }

    fn key(&self, rest: &str) -> String {
        if self.prefix.is_empty() {
            rest.to_string()
        } else {
            format!("{}/{rest}", self.prefix)
        }
    }

    /// `s3://bucket/prefix` (normalised).
    pub fn url(&self) -> String {
        format!("s3://{}", self.key_url(""))
    }

    fn key_url(&self, rest: &str) -> String {
        let key = self.key(rest);
        if key.is_empty() {
            self.bucket.clone()
        } else {
            format!("{}/{}", self.bucket, key.trim_end_matches('/'))
        }
    }
}

/// The S3 backend's settings (`[state]` in the settings).
#[derive(Debug, Clone)]
pub struct S3Settings {
    pub url: S3Url,
    /// The bucket's region, when it is not the AWS chain's.
    pub region: Option<String>,
    /// How long a lock lives without being renewed.
    pub lease: Duration,
    /// SSE-KMS with this key instead of SSE-S3.
    pub kms_key: Option<String>,
}

/// What an S3 call can end in, beyond its answer.
#[derive(Debug)]
enum Fail {
    /// 412: the condition did not hold.
    Precondition,
    Other(StateError),
}

struct Shared {
    settings: S3Settings,
    connect: Connect,
    client: OnceLock<Client>,
    rt: tokio::runtime::Runtime,
    notices: OnceLock<Vec<String>>,
    /// Neither the settings nor the AWS chain name a region (known once the client is built).
    no_region: OnceLock<bool>,
}

/// Stack state in an S3 bucket.
pub struct S3 {
    shared: Arc<Shared>,
}

impl S3 {
    pub fn new(settings: S3Settings, connect: Connect) -> Result<S3, StateError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("geusemaker-state")
            .enable_all()
            .build()
            .map_err(|e| StateError::io(std::path::Path::new("tokio runtime"), e))?;
        Ok(S3 {
            shared: Arc::new(Shared {
                settings,
                connect,
                client: OnceLock::new(),
                rt,
                notices: OnceLock::new(),
                no_region: OnceLock::new(),
            }),
        })
    }
}

impl Backend for S3 {
    fn describe(&self) -> String {
        self.shared.url().url()
    }

    fn location(&self, stack: &str) -> String {
        self.shared.location_of(&self.shared.doc_key(stack))
    }

    fn names(&self) -> Result<Vec<String>, StateError> {
        let s = &self.shared;
        let client = s.client();
        let prefix = s.url().key("stacks/");
        let mut names = Vec::new();
        let mut pages = client
            .list_objects_v2()
            .bucket(&s.url().bucket)
            .prefix(&prefix)
            .into_paginator()
            .send();
        while let Some(page) = s.rt.block_on(pages.next()) {
            let page = page.map_err(|e| other(s.err(&prefix, "list", e)))?;
            for o in page.contents() {
                let Some(name) = o
                    .key()
                    .and_then(|k| k.strip_prefix(&prefix))
                    .and_then(|k| k.strip_suffix(".json"))
                else {
                    continue;
                };
                if super::validate_stack_name(name).is_ok() {
                    names.push(name.to_string());
                }
            }
        }
        names.sort();
        Ok(names)
    }

    fn read(&self, stack: &str) -> Result<Option<Stored>, StateError> {
        let s = &self.shared;
        let key = s.doc_key(stack);
        let Some((bytes, etag)) = s.get_blocking(&key).map_err(other)? else {
            return Ok(None);
        };
        Stored::from_bytes(&s.location_of(&key), bytes, etag).map(Some)
    }

    fn read_many(&self, names: &[String]) -> Vec<Result<Option<Stored>, StateError>> {
        let s = &self.shared;
        let client = s.client();
        // At most 16 requests at a time. The tasks own only what they fetch with: the runtime
        // is never dropped from one of its own tasks.
        let permits = Arc::new(tokio::sync::Semaphore::new(16));
        let tasks: Vec<_> = names
            .iter()
            .map(|n| {
                let (client, permits) = (client.clone(), permits.clone());
                let (bucket, key) = (s.url().bucket.clone(), s.doc_key(n));
                s.rt.spawn(async move {
                    let _permit = permits.acquire_owned().await;
                    fetch(client, bucket, key).await
                })
            })
            .collect();
        tasks
            .into_iter()
            .zip(names)
            .map(|(task, name)| {
                let key = s.doc_key(name);
                let got =
                    s.rt.block_on(task)
                        .unwrap_or_else(|e| Err(FetchError::Body(e.to_string())))
                        .map_err(|e| other(s.get_err(&key, e)))?;
                match got {
                    None => Ok(None),
                    Some((bytes, etag)) => {
                        Stored::from_bytes(&s.location_of(&key), bytes, etag).map(Some)
                    }
                }
            })
            .collect()
    }

    fn write(&self, stack: &str, text: &[u8], base: &Version) -> Result<String, StateError> {
        let s = &self.shared;
        s.put_checked(&s.doc_key(stack), text, base.as_deref())
            .map_err(|f| s.conflict(stack, f))
    }

    fn remove(&self, stack: &str, base: &str) -> Result<(), StateError> {
        let s = &self.shared;
        s.delete_if(&s.doc_key(stack), base)
            .map_err(|f| s.conflict(stack, f))
    }

    fn keep_copy(&self, stack: &str, suffix: &str, text: &[u8]) -> Result<(), StateError> {
        let s = &self.shared;
        let key = s.url().key(&format!("stacks/{stack}.json{suffix}"));
        match s.put(&key, text, None) {
            // A copy kept by an earlier run stays as it was.
            Ok(_) | Err(Fail::Precondition) => Ok(()),
            Err(Fail::Other(e)) => Err(e),
        }
    }

    fn lock(&self, stack: &str, run: &str, command: &str) -> Result<Box<dyn HeldLock>, StateError> {
        let lock = S3Lock::acquire(self.shared.clone(), stack, run, command)?;
        Ok(Box::new(lock))
    }

    fn holder(&self, stack: &str) -> Result<Option<LockHolder>, StateError> {
        let s = &self.shared;
        let key = s.lock_key(stack);
        Ok(s.get_blocking(&key)
            .map_err(other)?
            .and_then(|(bytes, _)| serde_json::from_slice(&bytes).ok()))
    }

    fn break_lock(&self, stack: &str, shown: Option<&LockHolder>) -> Result<(), StateError> {
        let s = &self.shared;
        let key = s.lock_key(stack);
        let Some((bytes, etag)) = s.get_blocking(&key).map_err(other)? else {
            return Ok(());
        };
        let now: Option<LockHolder> = serde_json::from_slice(&bytes).ok();
        let changed = || {
            locked(
                stack,
                format!(
                    "{} (the lock changed after it was shown; nothing was removed, run unlock again)",
                    now.as_ref()
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| "another run".into())
                ),
            )
        };
        // The holder shown, or (none shown) a lock object that is still unreadable.
        let same = match (shown, &now) {
            (Some(shown), Some(now)) => now.same_holder(shown),
            (None, None) => true,
            _ => false,
        };
        if !same {
            return Err(changed());
        }
        match s.delete(&key, Some(&etag)) {
            Err(Fail::Precondition) => Err(changed()),
            other_result => other_result.map_err(other),
        }
    }

    fn notices(&self) -> Vec<String> {
        let s = &self.shared;
        s.notices
            .get_or_init(|| {
                let client = s.client();
                let versioning = s.rt.block_on(
                    client
                        .get_bucket_versioning()
                        .bucket(&s.url().bucket)
                        .send(),
                );
                match versioning {
                    Ok(v) if v.status() == Some(&BucketVersioningStatus::Enabled) => Vec::new(),
                    Ok(_) => vec![format!(
                        "bucket `{b}` does not keep versions: an older state cannot be recovered; turn versioning on with `aws s3api put-bucket-versioning --bucket {b} --versioning-configuration Status=Enabled`",
                        b = s.url().bucket
                    )],
                    Err(e) => vec![format!(
                        "could not check whether bucket `{}` keeps versions: {}",
                        s.url().bucket,
                        other(s.err("", "check versioning", e))
                    )],
                }
            })
            .clone()
    }

    fn is_remote(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = S3Url::parse("s3://team-state/geusemaker/").unwrap();
        assert_eq!(u.bucket, "team-state");
        assert_eq!(u.prefix, "geusemaker");
        assert_eq!(u.url(), "s3://team-state/geusemaker");
        assert_eq!(u.key("stacks/a.json"), "geusemaker/stacks/a.json");
        let bare = S3Url::parse("s3://team-state").unwrap();
        assert_eq!(bare.key("stacks/a.json"), "stacks/a.json");
        assert_eq!(bare.url(), "s3://team-state");
        for bad in [
            "team-state",
            "s3://",
            "s3://A",
            "s3://Team/x",
            "s3://-bucket/x",
            "s3://bucket/../x",
            "s3://bucket/a//b",
        ] {
            assert!(S3Url::parse(bad).is_err(), "{bad} accepted");
        }
    }
}
