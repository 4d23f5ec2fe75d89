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
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketVersioningStatus, ServerSideEncryption};
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;
use chrono::Utc;

use super::backend::{Backend, HeldLock, Stored, Version};
use super::{LockHolder, StateError};

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

impl Shared {
    fn client(&self) -> Client {
        self.client
            .get_or_init(|| {
                let sdk = self.rt.block_on((self.connect)());
                let _ = self
                    .no_region
                    .set(sdk.region().is_none() && self.settings.region.is_none());
                let mut b = aws_sdk_s3::config::Builder::from(&sdk);
                if let Some(r) = &self.settings.region {
                    b = b.region(aws_sdk_s3::config::Region::new(r.clone()));
                }
                // An emulator (AWS_ENDPOINT_URL) is reached by path, not by bucket host name.
                if sdk.endpoint_url().is_some() {
                    b = b.force_path_style(true);
                }
                // A state call never outlives a third of the lease: a renewal stuck on the
                // network must not let the lease run out unnoticed (see `S3Lock::check`).
                let lease = self.settings.lease;
                let clamp = |d: Duration, lo: u64, hi: u64| {
                    d.clamp(Duration::from_secs(lo), Duration::from_secs(hi))
                };
                b = b
                    .retry_config(
                        aws_sdk_s3::config::retry::RetryConfig::standard().with_max_attempts(3),
                    )
                    .timeout_config(
                        aws_sdk_s3::config::timeout::TimeoutConfig::builder()
                            .connect_timeout(Duration::from_secs(3))
                            .operation_attempt_timeout(clamp(lease / 6, 3, 20))
                            .operation_timeout(clamp(lease / 3, 5, 40))
                            .build(),
                    );
                Client::from_conf(b.build())
            })
            .clone()
    }

    fn url(&self) -> &S3Url {
        &self.settings.url
    }

    fn doc_key(&self, stack: &str) -> String {
        self.url().key(&format!("stacks/{stack}.json"))
    }

    fn lock_key(&self, stack: &str) -> String {
        self.url().key(&format!("locks/{stack}.lock"))
    }

    fn location_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.url().bucket)
    }

    fn err<E>(&self, key: &str, action: &'static str, e: SdkError<E, HttpResponse>) -> Fail
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = e.raw_response().map(|r| r.status().as_u16());
        let code = e.code().map(str::to_string);
        // 412 only: a 409 (ConditionalRequestConflict) means another conditional request on
        // the key was in flight; it says nothing about what is stored, and is retried.
        if status == Some(412) {
            return Fail::Precondition;
        }
        // A request that never left (no credentials, no region, no network): what stopped
        // it, found by type in the error's sources.
        let mut missing = None;
        let mut innermost = e.to_string();
        let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(&e);
        while let Some(s) = source {
            if s.is::<aws_credential_types::provider::error::CredentialsError>() {
                missing = Some((
                    format!("no usable AWS credentials: {s}"),
                    "the state bucket is reached with the command's credentials: --profile, `aws.profile`, AWS_PROFILE or the AWS chain".to_string(),
                ));
            }
            innermost = s.to_string();
            source = s.source();
        }
        if missing.is_none() && status.is_none() && self.no_region.get() == Some(&true) {
            missing = Some((
                "no region for the state bucket".to_string(),
                "set the bucket's region: `state.region` ([state] region = \"…\") or AWS_REGION"
                    .to_string(),
            ));
        }
        if let Some((message, hint)) = missing {
            return Fail::Other(StateError::Remote {
                location: self.location_of(key),
                action,
                message,
                hint: Some(hint),
            });
        }
        let message = match (&code, e.message()) {
            (Some(c), Some(m)) => format!("{c}: {m}"),
            (Some(c), None) => c.clone(),
            _ => innermost,
        };
        let hint = match code.as_deref() {
            Some("AccessDenied") | Some("Forbidden") => Some(
                "the credentials lack the state backend's permissions: `geusemaker policy` prints them (docs/teams.md)".to_string(),
            ),
            Some("PermanentRedirect")
            | Some("AuthorizationHeaderMalformed")
            | Some("IllegalLocationConstraintException") => Some(
                "the bucket is in another region: set `state.region` ([state] region = \"…\")".to_string(),
            ),
            Some("NoSuchBucket") => Some(format!(
                "create the bucket (with versioning) first, see docs/teams.md: aws s3api create-bucket --bucket {}",
                self.url().bucket
            )),
            _ if status.is_none() => Some(
                "S3 could not be reached: check the network, the credentials and `[state] region`".to_string(),
            ),
            _ => None,
        };
        Fail::Other(StateError::Remote {
            location: self.location_of(key),
            action,
            message,
            hint,
        })
    }

    fn get_err(&self, key: &str, e: FetchError) -> Fail {
        match e {
            FetchError::Sdk(e) => self.err(key, "read", *e),
            FetchError::Body(message) => Fail::Other(StateError::Remote {
                location: self.location_of(key),
                action: "read",
                message,
                hint: None,
            }),
        }
    }

    fn get_blocking(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, Fail> {
        let client = self.client();
        self.rt
            .block_on(fetch(client, self.url().bucket.clone(), key.to_string()))
            .map_err(|e| self.get_err(key, e))
    }

    /// Put `bytes` at `key` if the condition holds: `None` = must not exist, `Some(etag)` = must
    /// be at that ETag. Returns the new ETag.
    fn put(&self, key: &str, bytes: &[u8], base: Option<&str>) -> Result<String, Fail> {
        let client = self.client();
        let send = || {
            let mut req = client
                .put_object()
                .bucket(&self.url().bucket)
                .key(key)
                .content_type("application/json")
                .body(ByteStream::from(bytes.to_vec()));
            req = match &self.settings.kms_key {
                Some(k) => req
                    .server_side_encryption(ServerSideEncryption::AwsKms)
                    .ssekms_key_id(k),
                None => req.server_side_encryption(ServerSideEncryption::Aes256),
            };
            req = match base {
                Some(etag) => req.if_match(etag),
                None => req.if_none_match("*"),
            };
            self.rt.block_on(req.send()).map_err(Box::new)
        };
        // 409 ConditionalRequestConflict: another conditional write on the key was in flight
        // (another machine taking the lock). The SDK does not retry it; it is sent again here.
        let mut sent = send();
        for pause in [200, 500, 1000] {
            match &sent {
                Err(e) if e.raw_response().is_some_and(|r| r.status().as_u16() == 409) => {
                    std::thread::sleep(Duration::from_millis(pause));
                    sent = send();
                }
                _ => break,
            }
        }
        let out = sent.map_err(|e| {
            let e = *e;
            // If-Match on a key that is gone answers 404: the object is not what was read.
            let gone = e
                .as_service_error()
                .and_then(|s| s.meta().code())
                .is_some_and(|c| c == "NoSuchKey");
            if base.is_some() && gone {
                Fail::Precondition
            } else {
                self.err(key, "write", e)
            }
        })?;
        Ok(out.e_tag().unwrap_or_default().to_string())
    }

    /// [`Shared::put`], where a failed precondition may be this very write: the SDK retries a
    /// request whose answer was lost, and the retry finds the first attempt's object. What is
    /// there is read back; the same bytes mean the write landed.
    fn put_checked(&self, key: &str, bytes: &[u8], base: Option<&str>) -> Result<String, Fail> {
        match self.put(key, bytes, base) {
            Err(Fail::Precondition) => match self.get_blocking(key)? {
                Some((now, etag)) if now == bytes => Ok(etag),
                _ => Err(Fail::Precondition),
            },
            other => other,
        }
    }

    /// Delete `key` if it is still at `etag` (read, compared, deleted: the caller holds the
    /// stack's lock, which is what keeps others from writing in between).
    fn delete_if(&self, key: &str, etag: &str) -> Result<(), Fail> {
        match self.get_blocking(key)? {
            None => Ok(()),
            Some((_, now)) if now != etag => Err(Fail::Precondition),
            Some(_) => self.delete(key, Some(etag)),
        }
    }

    /// Delete `key`; with `etag`, only while it is at that ETag (S3's conditional delete).
    fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), Fail> {
        let client = self.client();
        let mut req = client.delete_object().bucket(&self.url().bucket).key(key);
        if let Some(etag) = etag {
            req = req.if_match(etag);
        }
        match self.rt.block_on(req.send()) {
            Ok(_) => Ok(()),
            // Gone already.
            Err(e)
                if e.as_service_error()
                    .and_then(|s| s.meta().code())
                    .is_some_and(|c| c == "NoSuchKey") =>
            {
                Ok(())
            }
            Err(e) => Err(self.err(key, "delete", e)),
        }
    }

    fn conflict(&self, stack: &str, f: Fail) -> StateError {
        match f {
            Fail::Precondition => StateError::Conflict {
                stack: stack.to_string(),
                location: self.location_of(&self.doc_key(stack)),
            },
            Fail::Other(e) => e,
        }
    }

    fn holder_document(&self, holder: &LockHolder) -> Vec<u8> {
        serde_json::to_vec_pretty(holder).expect("lock holder serializes")
    }
}

fn other(f: Fail) -> StateError {
    match f {
        Fail::Other(e) => e,
        // Only conditional calls answer 412; callers of unconditional ones never see it.
        Fail::Precondition => StateError::Remote {
            location: String::new(),
            action: "call",
            message: "unexpected precondition failure".into(),
            hint: None,
        },
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

enum FetchError {
    Sdk(Box<SdkError<GetObjectError, HttpResponse>>),
    Body(String),
}

/// An object's bytes and ETag; `None` when there is no such key.
async fn fetch(
    client: Client,
    bucket: String,
    key: String,
) -> Result<Option<(Vec<u8>, String)>, FetchError> {
    let out = match client.get_object().bucket(bucket).key(key).send().await {
        Ok(o) => o,
        Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => return Ok(None),
        Err(e) => return Err(FetchError::Sdk(Box::new(e))),
    };
    let etag = out.e_tag().unwrap_or_default().to_string();
    let bytes = out
        .body
        .collect()
        .await
        .map_err(|e| FetchError::Body(e.to_string()))?;
    Ok(Some((bytes.to_vec(), etag)))
}

/// A held S3 lock: renewed by a thread until dropped, then deleted.
struct S3Lock {
    inner: Arc<LockInner>,
    renewer: Option<std::thread::JoinHandle<()>>,
    previous: Option<LockHolder>,
}

/// The lock object as this run last wrote it.
struct Held {
    holder: LockHolder,
    etag: String,
}

/// Why a renewal did not extend the lease.
enum RenewError {
    /// Another run holds the lock now (or it was removed): named.
    Lost(String),
    /// S3 did not answer as asked; the lock may still be ours.
    Failed(StateError),
}

struct LockInner {
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

fn relock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for S3Lock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "S3Lock({})", self.inner.key)
    }
}

impl S3Lock {
    fn acquire(
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

fn locked(stack: &str, holder: String) -> StateError {
    StateError::Locked {
        stack: stack.to_string(),
        holder,
    }
}

impl LockInner {
    /// The lease's safety margin: a run stops trusting its lock this long before the lease
    /// ends (another machine's clock may be ahead; a write takes time).
    fn margin(&self) -> chrono::Duration {
        chrono::Duration::from_std(self.shared.settings.lease / 3).unwrap_or_default()
    }

    /// Extend the lease: the lock object replaced if it is still the one this run wrote.
    fn renew_once(&self, only_if_due: bool) -> Result<(), RenewError> {
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
    fn due(&self, holder: &LockHolder) -> bool {
        holder
            .lease_until
            .is_none_or(|t| t - self.margin() <= Utc::now())
    }

    fn mark_lost(&self, who: String) {
        tracing::warn!(stack = %self.stack, holder = %who, "the stack's lock is no longer this run's");
        relock(&self.lost).get_or_insert(who);
    }

    /// Renew every third of the lease (every 2 s after a failure) until stopped or lost.
    fn renew_until_stopped(&self) {
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
