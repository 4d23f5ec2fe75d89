//! AWS access: clients built from the standard credential chain, one interface per service,
//! error translation, waiters.
//!
//! Primitives reach AWS only through the traits here ([`Ec2Api`], [`EfsApi`], …). The SDK
//! implementations block on the tokio runtime (Rhai is synchronous); another implementation —
//! a recording backend for `--plan` — can stand in without touching recipes.

pub mod cloudfront;
pub mod ec2;
pub mod efs;
pub mod elb;
pub mod error;
pub mod iam;
pub mod identity;
pub mod plan;
pub mod policy;
pub mod pricing;
pub mod ssm;
pub mod tags;
pub mod wait;

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::{
    BeforeSerializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

pub use cloudfront::CloudFrontApi;
pub use ec2::Ec2Api;
pub use efs::EfsApi;
pub use elb::ElbApi;
pub use error::CloudError;
pub use iam::IamApi;
pub use identity::{Identity, PreflightError};
pub use pricing::PricingApi;
pub use ssm::SsmApi;
pub use tags::Tags;

/// How to reach AWS: from the CLI flags; everything else comes from the standard chain
/// (environment, `~/.aws/config`, SSO, instance metadata), including `AWS_ENDPOINT_URL`.
#[derive(Debug, Clone, Default)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// The region when neither `region` nor the stack gives one (config.toml's `aws.region`);
    /// it wins over `AWS_REGION` and the profile.
    pub default_region: Option<String>,
    /// Refuse every operation that is not a read (`run --plan` on a live stack): the first
    /// refused one is kept in [`CallStats::refused_write`].
    pub read_only: bool,
}

/// Counts of AWS requests made by this process (for the run summary).
#[derive(Debug, Default)]
pub struct CallStats {
    inner: Mutex<CallStatsInner>,
    responses: std::sync::atomic::AtomicU64,
    read_only: bool,
    refused: Mutex<Option<String>>,
}

/// Does an AWS operation only read? (Describe…, Get…, List…, and the few reads named
/// otherwise.)
pub fn is_read_operation(name: &str) -> bool {
    ["Describe", "Get", "List", "Lookup", "Search"]
        .iter()
        .any(|p| name.starts_with(p))
}

/// Test-only crash switch: `GEUSEMAKER_TEST_KILL_AFTER_RESPONSES=k` makes the process SIGKILL
/// itself as soon as the k-th AWS response arrives, before it is read — the worst moment for a
/// crash (AWS did the work, the ledger has not heard). The crash-safety tests use it.
pub const KILL_SWITCH_ENV: &str = "GEUSEMAKER_TEST_KILL_AFTER_RESPONSES";

fn kill_switch() -> Option<u64> {
    static AFTER: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *AFTER.get_or_init(|| {
        std::env::var(KILL_SWITCH_ENV)
            .ok()
            .and_then(|v| v.parse().ok())
    })
}

#[derive(Debug, Default, Clone)]
struct CallStatsInner {
    operations: u64,
    attempts: u64,
    by_operation: BTreeMap<String, u64>,
}

impl CallStats {
    /// Logical API calls (one per SDK operation invoked).
    pub fn operations(&self) -> u64 {
        self.inner.lock().unwrap().operations
    }
    /// HTTP attempts, retries included.
    pub fn attempts(&self) -> u64 {
        self.inner.lock().unwrap().attempts
    }
    /// `service:Operation` → count.
    pub fn by_operation(&self) -> BTreeMap<String, u64> {
        self.inner.lock().unwrap().by_operation.clone()
    }
    /// The first operation a read-only connection refused (`EC2:CreateTags`).
    pub fn refused_write(&self) -> Option<String> {
        self.refused.lock().unwrap().clone()
    }
}

#[derive(Debug)]
struct CountingInterceptor(Arc<CallStats>);

impl Intercept for CountingInterceptor {
    fn name(&self) -> &'static str {
        "GeusemakerCallCounter"
    }

    // Once per operation; by now the operation's metadata is in the config bag.
    fn read_before_serialization(
        &self,
        _ctx: &BeforeSerializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let key = cfg
            .load::<Metadata>()
            .map(|m| format!("{}:{}", m.service(), m.name()))
            .unwrap_or_else(|| "unknown".into());
        tracing::debug!(call = %key, "aws request");
        if self.0.read_only {
            let op = cfg
                .load::<Metadata>()
                .map(|m| m.name())
                .unwrap_or("unknown");
            if !is_read_operation(op) {
                let mut refused = self.0.refused.lock().unwrap();
                refused.get_or_insert_with(|| key.clone());
                return Err(format!("{key} refused: this connection only reads (a plan)").into());
            }
        }
        let mut s = self.0.inner.lock().unwrap();
        s.operations += 1;
        *s.by_operation.entry(key).or_default() += 1;
        Ok(())
    }

    fn read_before_deserialization(
        &self,
        _ctx: &aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let n = self
            .0
            .responses
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            + 1;
        if kill_switch() == Some(n) {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &std::process::id().to_string()])
                .status();
            std::thread::sleep(std::time::Duration::from_secs(5));
        }
        Ok(())
    }

    fn read_before_attempt(
        &self,
        _ctx: &BeforeTransmitInterceptorContextRef<'_>,
        _rc: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.inner.lock().unwrap().attempts += 1;
        Ok(())
    }
}

/// A tokio runtime that synchronous callers (the Rhai engine's thread) block on.
#[derive(Clone)]
pub struct Blocking {
    rt: Arc<tokio::runtime::Runtime>,
}

impl Blocking {
    pub fn new() -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("geusemaker-io")
            .enable_all()
            .build()?;
        Ok(Blocking { rt: Arc::new(rt) })
    }

    /// Run a future to completion from synchronous code.
    pub fn block_on<F: Future>(&self, fut: F) -> F::Output {
        self.rt.block_on(fut)
    }

    /// Send one AWS request and wait for its answer: the one way the clients call AWS, an SDK
    /// error translated as `service`'s `operation` ([`CloudError::from_sdk`]).
    pub fn call<T, E, R>(
        &self,
        service: &'static str,
        operation: &str,
        request: impl Future<Output = Result<T, SdkError<E, R>>>,
    ) -> Result<T, CloudError>
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug + Send + Sync + 'static,
    {
        self.rt
            .block_on(request)
            .map_err(|e| CloudError::from_sdk(service, operation, e))
    }

    pub fn handle(&self) -> &tokio::runtime::Handle {
        self.rt.handle()
    }
}

/// The AWS clients of one run, behind the per-service interfaces.
#[derive(Clone)]
pub struct Aws {
    pub region: String,
    /// Who the calls are made as (the preflight's answer).
    pub identity: Identity,
    pub ec2: Arc<dyn Ec2Api>,
    pub efs: Arc<dyn EfsApi>,
    pub elb: Arc<dyn ElbApi>,
    pub cloudfront: Arc<dyn CloudFrontApi>,
    pub ssm: Arc<dyn SsmApi>,
    pub iam: Arc<dyn IamApi>,
    pub pricing: Arc<dyn PricingApi>,
    pub stats: Arc<CallStats>,
}

/// The region a connection with `settings` would use, without asking AWS anything (a recipe
/// that only wants the region needs no credentials).
pub fn resolve_region(settings: &AwsSettings, rt: &Blocking) -> Result<String, PreflightError> {
    region_of(&rt.block_on(sdk_config(settings)))
}

/// The region an SDK configuration names, checked.
fn region_of(sdk: &SdkConfig) -> Result<String, PreflightError> {
    let region = sdk
        .region()
        .map(|r| r.to_string())
        .ok_or(PreflightError::NoRegion)?;
    check_region(&region)?;
    Ok(region)
}

impl Aws {
    /// Resolve the region and the credentials, ask STS who they belong to (the preflight:
    /// one short, fixable error instead of a failure inside a recipe), then build every client.
    pub fn connect(settings: &AwsSettings, rt: &Blocking) -> Result<Aws, PreflightError> {
        let sdk = rt.block_on(sdk_config(settings));
        let region = region_of(&sdk)?;
        let stats = Arc::new(CallStats {
            read_only: settings.read_only,
            ..CallStats::default()
        });
        let counter = || CountingInterceptor(stats.clone());
        // The preflight: a dead endpoint or missing network is said after a few seconds,
        // not after the retries a deploy's calls get.
        let sts = aws_sdk_sts::Client::from_conf(
            aws_sdk_sts::config::Builder::from(&sdk)
                .retry_config(
                    RetryConfig::standard()
                        .with_max_attempts(3)
                        .with_initial_backoff(Duration::from_millis(200))
                        .with_max_backoff(Duration::from_secs(2)),
                )
                .interceptor(counter())
                .build(),
        );
        let identity = rt.block_on(identity::preflight(&sdk, &sts, settings.profile.as_deref()))?;

        // EC2 is where deploys get throttled (RequestLimitExceeded): adaptive retries also slow
        // the client down when it is throttled, and get more attempts.
        let ec2 = aws_sdk_ec2::Client::from_conf(
            aws_sdk_ec2::config::Builder::from(&sdk)
                .retry_config(
                    RetryConfig::adaptive()
                        .with_max_attempts(EC2_ATTEMPTS)
                        .with_initial_backoff(Duration::from_millis(200))
                        .with_max_backoff(Duration::from_secs(20)),
                )
                .interceptor(counter())
                .build(),
        );
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&sdk)
                .interceptor(counter())
                .build(),
        );
        let efs = aws_sdk_efs::Client::from_conf(
            aws_sdk_efs::config::Builder::from(&sdk)
                .interceptor(counter())
                .build(),
        );
        let backup = aws_sdk_backup::Client::from_conf(
            aws_sdk_backup::config::Builder::from(&sdk)
                .interceptor(counter())
                .build(),
        );
        let elb = aws_sdk_elasticloadbalancingv2::Client::from_conf(
            aws_sdk_elasticloadbalancingv2::config::Builder::from(&sdk)
                .interceptor(counter())
                .build(),
        );
        let cloudfront = aws_sdk_cloudfront::Client::from_conf(
            aws_sdk_cloudfront::config::Builder::from(&sdk)
                .interceptor(counter())
                .build(),
        );
        let iam = aws_sdk_iam::Client::from_conf(
            aws_sdk_iam::config::Builder::from(&sdk)
                .interceptor(counter())
                .build(),
        );
        // The Pricing API lives in a few regions only; its answer is the same from any of them.
        // Fail fast: the price has a cached/bundled fallback, a deploy must not wait on it.
        let pricing = aws_sdk_pricing::Client::from_conf(
            aws_sdk_pricing::config::Builder::from(&sdk)
                .region(Region::new(pricing::API_REGION))
                .retry_config(RetryConfig::standard().with_max_attempts(1))
                .timeout_config(
                    TimeoutConfig::builder()
                        .operation_timeout(Duration::from_secs(8))
                        .build(),
                )
                .interceptor(counter())
                .build(),
        );

        Ok(Aws {
            ec2: Arc::new(ec2::SdkEc2::new(ec2, ssm.clone(), rt.clone())),
            efs: Arc::new(efs::SdkEfs::new(efs, backup, rt.clone())),
            elb: Arc::new(elb::SdkElb::new(elb, rt.clone())),
            cloudfront: Arc::new(cloudfront::SdkCloudFront::new(cloudfront, rt.clone())),
            ssm: Arc::new(ssm::SdkSsm::new(ssm, rt.clone())),
            iam: Arc::new(iam::SdkIam::new(iam, rt.clone())),
            pricing: Arc::new(pricing::SdkPricing::new(pricing, rt.clone())),
            region,
            identity,
            stats,
        })
    }
}

/// Attempts for a create that is retried by geusemaker (not the SDK), see [`retry_create`].
pub const CREATE_ATTEMPTS: u32 = 6;

static CREATE_RETRIES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// Creates this process sent again after a retryable failure (see [`retry_create`]).
pub fn create_retries() -> u64 {
    CREATE_RETRIES.load(std::sync::atomic::Ordering::SeqCst)
}

/// Retry a create whose response may be lost. The SDK must not retry it itself (a retried
/// request that AWS — or an emulator — does not recognise as the same would create a second
/// resource): on a retryable failure, `recover` first looks for what the lost request may have
/// created (by client token, name or tags) and returns it; otherwise the create is sent again
/// after a jittered, capped exponential backoff. The final error names the operation and the
/// attempts made.
pub fn retry_create<T>(
    attempt: impl FnMut() -> Result<T, CloudError>,
    recover: impl FnMut() -> Result<Option<T>, CloudError>,
) -> Result<T, CloudError> {
    retry_create_from(Duration::from_millis(200), attempt, recover)
}

fn retry_create_from<T>(
    first_delay: Duration,
    mut attempt: impl FnMut() -> Result<T, CloudError>,
    mut recover: impl FnMut() -> Result<Option<T>, CloudError>,
) -> Result<T, CloudError> {
    let mut delay = first_delay;
    let mut n = 1;
    loop {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(e) if e.is_retryable() && n < CREATE_ATTEMPTS => {
                tracing::debug!(operation = %e.operation, code = %e.code, attempt = n, "create failed; looking for what it made before retrying");
                if let Some(found) = recover()? {
                    tracing::debug!(operation = %e.operation, "the lost create had succeeded; using what it made");
                    return Ok(found);
                }
                CREATE_RETRIES.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let jitter = rand::random::<f64>() * 0.5 + 0.75;
                std::thread::sleep(delay.mul_f64(jitter));
                delay = (delay * 2).min(Duration::from_secs(10));
                n += 1;
            }
            Err(mut e) => {
                if e.is_retryable() {
                    let base = e
                        .message
                        .trim_end_matches(" (still failing after the SDK's retries with backoff)");
                    e.message = format!("{base} (gave up after {n} attempts)");
                }
                return Err(e);
            }
        }
    }
}

/// AWS regions this build knows. A region AWS opened since can be used with
/// `GEUSEMAKER_ALLOW_ANY_REGION=1`.
pub use crate::kinds::KNOWN_REGIONS;

fn check_region(region: &str) -> Result<(), PreflightError> {
    if KNOWN_REGIONS.contains(&region) || std::env::var_os("GEUSEMAKER_ALLOW_ANY_REGION").is_some()
    {
        return Ok(());
    }
    Err(PreflightError::UnknownRegion {
        region: region.to_string(),
        suggestion: crate::suggest::did_you_mean(region, KNOWN_REGIONS.iter().copied())
            .map(str::to_string),
    })
}

/// Attempts per EC2 call (adaptive retry mode), and per call of the other services.
pub const EC2_ATTEMPTS: u32 = 8;
pub const ATTEMPTS: u32 = 6;

/// The SDK configuration `settings` give (region, profile, retries, timeouts), without any
/// call to AWS.
pub async fn sdk_config(settings: &AwsSettings) -> SdkConfig {
    let mut loader = aws_config::defaults(BehaviorVersion::latest())
        // Deploy-time throttling and 5xx are normal; ride through them with jittered, capped
        // exponential backoff (the SDK's standard mode).
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(ATTEMPTS)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(20)),
        )
        // A call (retries included) gives up after 3 minutes; one attempt after 60 s.
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(10))
                .operation_attempt_timeout(Duration::from_secs(60))
                .operation_timeout(Duration::from_secs(180))
                .build(),
        );
    if let Some(region) = settings
        .region
        .as_ref()
        .or(settings.default_region.as_ref())
    {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &settings.profile {
        loader = loader.profile_name(profile);
    }
    loader.load().await
}

/// `to_string`/`to_debug` for a typed handle, from its `Display` (so `print(vpc)` reads well).
pub(crate) fn display_fns<T>(b: &mut rhai::TypeBuilder<T>)
where
    T: rhai::Variant + Clone + std::fmt::Display,
{
    b.with_fn("to_string", |v: &mut T| v.to_string());
    b.with_fn("to_debug", |v: &mut T| v.to_string());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttled() -> CloudError {
        CloudError::new("ec2", "RunInstances", "RequestLimitExceeded", "slow down")
    }

    #[test]
    fn a_create_looks_for_what_a_lost_attempt_made_before_sending_again() {
        let mut sent = 0;
        let mut looked = 0;
        let r = retry_create_from(
            Duration::from_millis(1),
            || {
                sent += 1;
                Err::<&str, _>(throttled())
            },
            || {
                looked += 1;
                Ok((looked == 2).then_some("i-found"))
            },
        );
        assert_eq!(r.unwrap(), "i-found");
        assert_eq!(
            (sent, looked),
            (2, 2),
            "found on the second look, no third send"
        );
    }

    #[test]
    fn a_create_gives_up_with_the_operation_and_the_count() {
        let mut sent = 0;
        let e = retry_create_from(
            Duration::from_millis(1),
            || {
                sent += 1;
                Err::<(), _>(throttled())
            },
            || Ok(None),
        )
        .unwrap_err();
        assert_eq!(sent, CREATE_ATTEMPTS);
        assert_eq!(e.operation, "RunInstances");
        assert!(
            e.message
                .ends_with(&format!("(gave up after {CREATE_ATTEMPTS} attempts)")),
            "{}",
            e.message
        );
        // Errors that retrying cannot fix are returned at once.
        let mut sent = 0;
        let e = retry_create(
            || {
                sent += 1;
                Err::<(), _>(CloudError::new(
                    "ec2",
                    "RunInstances",
                    "InvalidAMIID.NotFound",
                    "no",
                ))
            },
            || Ok(None),
        )
        .unwrap_err();
        assert_eq!((sent, e.message.as_str()), (1, "no"));
    }
}
