//! AWS errors translated into something a user can act on.

use std::error::Error as StdError;
use std::fmt;

use aws_credential_types::provider::error::CredentialsError;
use aws_smithy_http::endpoint::ResolveEndpointError as RulesEndpointError;
use aws_smithy_runtime_api::client::endpoint::error::ResolveEndpointError;
use aws_smithy_runtime_api::client::result::{ConnectorError, SdkError};
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// A failed AWS call: which one, AWS's error code, its message and what to do about it.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudError {
    pub service: &'static str,
    pub operation: String,
    /// AWS's error code (`UnauthorizedOperation`), or one of ours for client-side failures
    /// (`MissingCredentials`, `MissingRegion`, `EndpointConfig`, `EndpointUnreachable`,
    /// `Timeout`, `Unhandled`: an answer without an error code).
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
}

impl CloudError {
    pub fn new(
        service: &'static str,
        operation: impl Into<String>,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let code = code.into();
        let message = message.into();
        let hint = hint_for(&code);
        CloudError {
            service,
            operation: operation.into(),
            code,
            message,
            hint,
        }
    }

    /// Translate an SDK error. Walks the whole source chain: the SDK's top-level display is
    /// often just "dispatch failure" with the useful part three levels down.
    pub fn from_sdk<E, R>(service: &'static str, operation: &str, err: SdkError<E, R>) -> Self
    where
        E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
        R: fmt::Debug + Send + Sync + 'static,
    {
        let chain = error_chain(&err);
        let (code, message) = match &err {
            SdkError::ServiceError(se) => {
                let e = se.err();
                // Without a code, the answer was none of the operation's modelled errors: a raw
                // 5xx, say, from an emulator that lacks the operation.
                let code = e.code().unwrap_or("Unhandled").to_string();
                let message = e
                    .message()
                    .map(str::to_string)
                    .unwrap_or_else(|| chain.clone());
                (code, message)
            }
            SdkError::TimeoutError(_) => ("Timeout".to_string(), chain.clone()),
            SdkError::DispatchFailure(df) => {
                if df.is_timeout() {
                    ("Timeout".to_string(), chain.clone())
                } else if df.is_io() {
                    ("EndpointUnreachable".to_string(), chain.clone())
                } else {
                    (classify_client_failure(&err).to_string(), chain.clone())
                }
            }
            SdkError::ResponseError(_) => ("MalformedResponse".to_string(), chain.clone()),
            SdkError::ConstructionFailure(_) => {
                (classify_client_failure(&err).to_string(), chain.clone())
            }
            _ => {
                let code = err.code().unwrap_or("Unknown").to_string();
                (code, chain.clone())
            }
        };
        let mut e = CloudError::new(service, operation, code, message);
        if e.is_retryable() && !matches!(e.code.as_str(), "Unhandled" | "MalformedResponse") {
            e.message
                .push_str(" (still failing after the SDK's retries with backoff)");
        }
        e
    }

    /// `Ok(None)` when the error says the resource is not there; the error otherwise.
    pub fn absent<T>(self) -> Result<Option<T>, CloudError> {
        if self.is_not_found() {
            Ok(None)
        } else {
            Err(self)
        }
    }

    /// True for codes that mean "the resource is not there".
    pub fn is_not_found(&self) -> bool {
        self.code.contains("NotFound")
            || matches!(
                self.code.as_str(),
                "NoSuchEntity"
                    | "FileSystemNotFound"
                    | "MountTargetNotFound"
                    | "ParameterNotFound"
                    | "NoSuchDistribution"
            )
    }

    /// Worth trying again: throttling, AWS-side failures (5xx), timeouts, lost connections.
    pub fn is_retryable(&self) -> bool {
        self.is_throttling()
            || matches!(
                self.code.as_str(),
                "RequestLimitExceeded"
                    | "ServiceUnavailable"
                    | "Unavailable"
                    | "InternalError"
                    | "InternalFailure"
                    | "InternalServerError"
                    | "ServiceUnavailableException"
                    | "Timeout"
                    | "EndpointUnreachable"
                    | "Unhandled"
                    | "MalformedResponse"
            )
    }

    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "RequestLimitExceeded"
                | "Throttling"
                | "ThrottlingException"
                | "TooManyRequestsException"
        )
    }

    /// True for codes that say "this already exists".
    pub fn is_duplicate(&self) -> bool {
        self.code.contains("Duplicate")
            || matches!(
                self.code.as_str(),
                "EntityAlreadyExists" | "FileSystemAlreadyExists" | "ParameterAlreadyExists"
            )
    }
}

impl fmt::Display for CloudError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{} failed: {}: {}",
            self.service, self.operation, self.code, self.message
        )
    }
}

impl StdError for CloudError {}

fn error_chain(err: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p == &s) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

/// What a call that never got an answer from AWS failed on, from the error types in its
/// source chain: the credentials, working out the endpoint (no region, say), or the network.
fn classify_client_failure(err: &(dyn StdError + 'static)) -> &'static str {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if e.is::<CredentialsError>() {
            return "MissingCredentials";
        }
        // The SDK's endpoint rules (a missing region, say) fail with the first; an endpoint
        // URL the runtime cannot use with the second.
        if e.is::<RulesEndpointError>() || e.is::<ResolveEndpointError>() {
            return "EndpointConfig";
        }
        if e.downcast_ref::<ConnectorError>()
            .is_some_and(|c| c.is_io() || c.is_timeout())
            || e.is::<std::io::Error>()
        {
            return "EndpointUnreachable";
        }
        cur = e.source();
    }
    "ClientError"
}

/// What to do about the common failures.
pub fn hint_for(code: &str) -> Option<String> {
    let h = match code {
        "UnauthorizedOperation" | "AccessDenied" | "AccessDeniedException" => {
            "your AWS identity lacks a permission for this call; grant it in IAM (the message names the action) or run with a profile that has it (--profile)"
        }
        "AuthFailure" | "InvalidClientTokenId" | "SignatureDoesNotMatch" | "UnrecognizedClientException" => {
            "AWS rejected the credentials; check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or the profile (--profile), and that the clock is right"
        }
        "ExpiredToken" | "ExpiredTokenException" | "RequestExpired" => {
            "the session credentials expired; refresh them (e.g. `aws sso login`) and run again"
        }
        "MissingCredentials" => {
            "no AWS credentials found; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or pass --profile NAME for a profile in ~/.aws/config"
        }
        "MissingRegion" => "no AWS region set; pass --region (e.g. --region us-east-1) or set AWS_REGION",
        "EndpointConfig" => {
            "the SDK could not work out AWS's address for this call (the message says why); check --region (or AWS_REGION) and AWS_ENDPOINT_URL"
        }
        "EndpointUnreachable" => {
            "cannot reach the AWS endpoint; check the network, or AWS_ENDPOINT_URL if you point at a local emulator"
        }
        "Timeout" => "the call timed out; AWS may be slow or unreachable, run again (creates are idempotent)",
        "InsufficientInstanceCapacity" => {
            "AWS has no capacity for this instance type in this Availability Zone right now; try another subnet/AZ, another instance type, or on-demand instead of spot"
        }
        "SpotMaxPriceTooLow" | "MaxSpotInstanceCountExceeded" => {
            "spot capacity is not available at this price/quota; use on-demand (--set spot=false) or another instance type"
        }
        "VcpuLimitExceeded" | "InstanceLimitExceeded" => {
            "your account's vCPU quota for this instance family is exhausted; request an increase in Service Quotas or pick a smaller type"
        }
        "RequestLimitExceeded" | "Throttling" | "ThrottlingException" | "TooManyRequestsException" => {
            "AWS is throttling API calls; geusemaker retried with backoff; wait a minute and run again (creates are idempotent)"
        }
        "InvalidParameterValue" | "InvalidParameterCombination" | "ValidationError" | "ValidationException" => {
            "AWS rejected a parameter value (named in the message); check the recipe's arguments and --set values"
        }
        "InvalidAMIID.NotFound" | "InvalidAMIID.Malformed" => {
            "that AMI does not exist in this region; AMI ids are per region, look it up with ec2::latest_al2023_ami()"
        }
        "InvalidInstanceType" | "InvalidInstanceType.NotFound" => {
            "that instance type does not exist (or is not offered) in this region; check the spelling, e.g. t3.medium"
        }
        "InvalidKeyPair.NotFound" => "that key pair does not exist in this region; create it with ec2::key_pair()",
        "InvalidGroup.NotFound" => "that security group does not exist (deleted outside geusemaker?); re-run to re-create it",
        "InvalidSubnetID.NotFound" | "InvalidVpcID.NotFound" => {
            "that subnet/VPC does not exist in this region; let the recipe discover it or check --set values"
        }
        "Unhandled" | "InternalError" | "InternalFailure" | "ServiceUnavailable" => {
            "AWS (or the emulator at AWS_ENDPOINT_URL) failed to handle the call; try again later"
        }
        _ => return None,
    };
    Some(h.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn common_codes_have_hints() {
        for code in [
            "UnauthorizedOperation",
            "InsufficientInstanceCapacity",
            "RequestLimitExceeded",
            "InvalidParameterValue",
            "MissingCredentials",
            "MissingRegion",
        ] {
            let e = CloudError::new("ec2", "RunInstances", code, "m");
            assert!(e.hint.is_some(), "{code} has no hint");
        }
        assert!(CloudError::new("ec2", "X", "SomethingNew", "m")
            .hint
            .is_none());
    }

    #[test]
    fn classification() {
        assert!(CloudError::new("ec2", "X", "InvalidGroup.NotFound", "").is_not_found());
        assert!(CloudError::new("iam", "X", "NoSuchEntity", "").is_not_found());
        assert!(CloudError::new("ec2", "X", "InvalidGroup.Duplicate", "").is_duplicate());
        assert!(CloudError::new("ec2", "X", "RequestLimitExceeded", "").is_throttling());
        assert!(!CloudError::new("ec2", "X", "AuthFailure", "").is_not_found());
    }

    /// An error wrapping another, as the SDK's layers wrap the cause.
    #[derive(Debug)]
    struct Wrapped(Box<dyn StdError + Send + Sync>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("dispatch failure")
        }
    }

    impl StdError for Wrapped {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(self.0.as_ref())
        }
    }

    #[test]
    fn client_failures_are_classified_from_the_chain() {
        let no_credentials = Wrapped(Box::new(CredentialsError::not_loaded(
            "no credentials in the provider chain",
        )));
        assert_eq!(
            classify_client_failure(&no_credentials),
            "MissingCredentials"
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        let unreachable = Wrapped(Box::new(ConnectorError::io(Box::new(refused))));
        assert_eq!(classify_client_failure(&unreachable), "EndpointUnreachable");
        let rules = Wrapped(Box::new(RulesEndpointError::message(
            "Invalid Configuration: Missing Region",
        )));
        assert_eq!(classify_client_failure(&rules), "EndpointConfig");
        let url = Wrapped(Box::new(ResolveEndpointError::message("not a URL")));
        assert_eq!(classify_client_failure(&url), "EndpointConfig");
        // The words do not count, only the types.
        let words = Wrapped(Box::new(std::fmt::Error));
        assert_eq!(classify_client_failure(&words), "ClientError");
    }
}
