//! The S3 calls behind the backend: conditional reads and writes, checked deletes.

use std::time::Duration;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::get_object::GetObjectError;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::ServerSideEncryption;
use aws_sdk_s3::Client;
use aws_smithy_runtime_api::http::Response as HttpResponse;

use crate::state::{LockHolder, StateError};

use super::*;

impl Shared {
    pub(super) fn client(&self) -> Client {
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

    pub(super) fn url(&self) -> &S3Url {
        &self.settings.url
    }

    pub(super) fn doc_key(&self, stack: &str) -> String {
        self.url().key(&format!("stacks/{stack}.json"))
    }

    pub(super) fn lock_key(&self, stack: &str) -> String {
        self.url().key(&format!("locks/{stack}.lock"))
    }

    pub(super) fn location_of(&self, key: &str) -> String {
        format!("s3://{}/{key}", self.url().bucket)
    }

    pub(super) fn err<E>(
        &self,
        key: &str,
        action: &'static str,
        e: SdkError<E, HttpResponse>,
    ) -> Fail
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

    pub(super) fn get_err(&self, key: &str, e: FetchError) -> Fail {
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

    pub(super) fn get_blocking(&self, key: &str) -> Result<Option<(Vec<u8>, String)>, Fail> {
        let client = self.client();
        self.rt
            .block_on(fetch(client, self.url().bucket.clone(), key.to_string()))
            .map_err(|e| self.get_err(key, e))
    }

    /// Put `bytes` at `key` if the condition holds: `None` = must not exist, `Some(etag)` = must
    /// be at that ETag. Returns the new ETag.
    pub(super) fn put(&self, key: &str, bytes: &[u8], base: Option<&str>) -> Result<String, Fail> {
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
    pub(super) fn put_checked(
        &self,
        key: &str,
        bytes: &[u8],
        base: Option<&str>,
    ) -> Result<String, Fail> {
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
    pub(super) fn delete_if(&self, key: &str, etag: &str) -> Result<(), Fail> {
        match self.get_blocking(key)? {
            None => Ok(()),
            Some((_, now)) if now != etag => Err(Fail::Precondition),
            Some(_) => self.delete(key, Some(etag)),
        }
    }

    /// Delete `key`; with `etag`, only while it is at that ETag (S3's conditional delete).
    pub(super) fn delete(&self, key: &str, etag: Option<&str>) -> Result<(), Fail> {
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

    pub(super) fn conflict(&self, stack: &str, f: Fail) -> StateError {
        match f {
            Fail::Precondition => StateError::Conflict {
                stack: stack.to_string(),
                location: self.location_of(&self.doc_key(stack)),
            },
            Fail::Other(e) => e,
        }
    }

    pub(super) fn holder_document(&self, holder: &LockHolder) -> Vec<u8> {
        serde_json::to_vec_pretty(holder).expect("lock holder serializes")
    }
}

pub(super) fn other(f: Fail) -> StateError {
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

pub(super) enum FetchError {
    Sdk(Box<SdkError<GetObjectError, HttpResponse>>),
    Body(String),
}

/// An object's bytes and ETag; `None` when there is no such key.
pub(super) async fn fetch(
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
