//! The preflight of every connection: a region, credentials, and one STS
//! `GetCallerIdentity` (which needs no IAM permission) before any other call. A run that
//! cannot reach AWS as someone stops here, with one short message that says how to fix it,
//! before it records or creates anything.

use aws_config::SdkConfig;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::ProvideCredentials;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

/// Who the credentials belong to.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    pub account: String,
    pub arn: String,
}

impl Identity {
    /// The partition of the credentials' ARN (`aws`, `aws-cn`, `aws-us-gov`): the one every
    /// ARN the stack writes into a policy belongs to.
    pub fn partition(&self) -> &str {
        self.arn
            .split(':')
            .nth(1)
            .filter(|p| !p.is_empty())
            .unwrap_or("aws")
    }
}

/// Why a connection to AWS could not be made. Each variant knows how it is fixed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreflightError {
    #[error("no AWS region: none in --region, the stack, config.toml, AWS_REGION or the profile")]
    NoRegion,
    #[error("`{region}` is not an AWS region{}", suggestion.as_ref().map(|s| format!(" (did you mean `{s}`?)")).unwrap_or_default())]
    UnknownRegion {
        region: String,
        suggestion: Option<String>,
    },
    #[error("no AWS credentials found{}", profile_note(profile))]
    NoCredentials { profile: Option<String> },
    #[error(
        "the AWS credentials{} could not be loaded: {detail}",
        profile_note(profile)
    )]
    CredentialsFailed {
        profile: Option<String>,
        detail: String,
    },
    #[error(
        "AWS rejected the credentials{}: {code}: {message}",
        profile_note(profile)
    )]
    Rejected {
        profile: Option<String>,
        code: String,
        message: String,
    },
    #[error(
        "the session credentials{} have expired ({code})",
        profile_note(profile)
    )]
    Expired {
        profile: Option<String>,
        code: String,
    },
    #[error("cannot reach AWS{}: {detail}", endpoint.as_ref().map(|e| format!(" at {e}")).unwrap_or_default())]
    Unreachable {
        endpoint: Option<String>,
        detail: String,
    },
}

fn profile_note(profile: &Option<String>) -> String {
    profile
        .as_ref()
        .map(|p| format!(" (profile `{p}`)"))
        .unwrap_or_default()
}

impl PreflightError {
    /// The ways out, most common first.
    pub fn fixes(&self) -> Vec<String> {
        let creds = || {
            vec![
                "export AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… (and AWS_SESSION_TOKEN for temporary keys)".to_string(),
                "--profile NAME for a profile in ~/.aws/config (`aws configure` writes one)".to_string(),
                "`aws sso login --profile NAME` for IAM Identity Center (SSO)".to_string(),
            ]
        };
        match self {
            PreflightError::NoRegion => vec![
                "--region us-east-1 (or another region)".into(),
                "export AWS_REGION=us-east-1".into(),
                "`geusemaker config set aws.region us-east-1` for every run".into(),
            ],
            PreflightError::UnknownRegion { .. } => vec![
                "regions look like us-east-1 or eu-west-1".into(),
                "a region AWS opened recently: set GEUSEMAKER_ALLOW_ANY_REGION=1".into(),
            ],
            PreflightError::NoCredentials { .. } | PreflightError::CredentialsFailed { .. } => {
                creds()
            }
            PreflightError::Rejected { .. } => {
                let mut f = vec!["check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY or the profile's keys, and that this machine's clock is right".to_string()];
                f.extend(creds().into_iter().skip(1));
                f
            }
            PreflightError::Expired { .. } => vec![
                "`aws sso login --profile NAME`, or fresh temporary keys (AWS_SESSION_TOKEN)"
                    .into(),
            ],
            PreflightError::Unreachable { endpoint, .. } => {
                let mut f =
                    vec!["check the network (a proxy: HTTPS_PROXY), then run again".to_string()];
                if endpoint.is_some() {
                    f.push(
                        "AWS_ENDPOINT_URL points at an emulator: is it running there?".to_string(),
                    );
                }
                f
            }
        }
    }

    /// The message with its fixes, as the CLI prints it.
    pub fn render(&self) -> String {
        let mut out = format!("error: {self}\n");
        out.push_str("fix it with one of:\n");
        for f in self.fixes() {
            out.push_str(&format!("  - {f}\n"));
        }
        out
    }
}

impl From<PreflightError> for super::CloudError {
    /// For the commands that report a missing connection beside what they could read
    /// (`status`, `list`): one code per variant, the fixes as the hint.
    fn from(e: PreflightError) -> Self {
        let code = match &e {
            PreflightError::NoRegion => "MissingRegion",
            PreflightError::UnknownRegion { .. } => "UnknownRegion",
            PreflightError::NoCredentials { .. } | PreflightError::CredentialsFailed { .. } => {
                "MissingCredentials"
            }
            PreflightError::Rejected { code, .. } | PreflightError::Expired { code, .. } => code,
            PreflightError::Unreachable { .. } => "EndpointUnreachable",
        }
        .to_string();
        let mut out = super::CloudError::new("sts", "GetCallerIdentity", code, e.to_string());
        out.hint = Some(e.fixes().join("; or "));
        out
    }
}

/// Credentials from the chain the SDK config carries, then `GetCallerIdentity`.
pub async fn preflight(
    sdk: &SdkConfig,
    sts: &aws_sdk_sts::Client,
    profile: Option<&str>,
) -> Result<Identity, PreflightError> {
    let profile = profile.map(str::to_string);
    let provider = sdk
        .credentials_provider()
        .ok_or_else(|| PreflightError::NoCredentials {
            profile: profile.clone(),
        })?;
    if let Err(e) = provider.provide_credentials().await {
        return Err(match e {
            CredentialsError::CredentialsNotLoaded(_) => PreflightError::NoCredentials { profile },
            other => PreflightError::CredentialsFailed {
                profile,
                detail: chain(&other),
            },
        });
    }
    match sts.get_caller_identity().send().await {
        Ok(out) => Ok(Identity {
            account: out.account().unwrap_or_default().to_string(),
            arn: out.arn().unwrap_or_default().to_string(),
        }),
        Err(SdkError::ServiceError(se)) => {
            let e = se.err();
            let code = e.code().unwrap_or("Unknown").to_string();
            if matches!(
                code.as_str(),
                "ExpiredToken" | "ExpiredTokenException" | "RequestExpired"
            ) {
                Err(PreflightError::Expired { profile, code })
            } else {
                Err(PreflightError::Rejected {
                    profile,
                    message: e.message().unwrap_or_default().to_string(),
                    code,
                })
            }
        }
        Err(other) => Err(PreflightError::Unreachable {
            endpoint: sdk.endpoint_url().map(str::to_string),
            detail: chain(&other),
        }),
    }
}

/// An error and its sources on one line (the SDK's top-level text is often just "dispatch
/// failure").
fn chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut cur = Some(err);
    while let Some(e) = cur {
        let s = e.to_string();
        if !s.is_empty() && !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
        cur = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_failure_says_how_to_fix_it() {
        let all = [
            PreflightError::NoRegion,
            PreflightError::UnknownRegion {
                region: "us-est-1".into(),
                suggestion: Some("us-east-1".into()),
            },
            PreflightError::NoCredentials {
                profile: Some("team".into()),
            },
            PreflightError::Expired {
                profile: None,
                code: "ExpiredToken".into(),
            },
            PreflightError::Unreachable {
                endpoint: Some("http://127.0.0.1:1".into()),
                detail: "connection refused".into(),
            },
        ];
        for e in all {
            let text = e.render();
            assert!(text.starts_with("error: "), "{text}");
            assert!(text.contains("\n  - "), "{text}");
        }
        let e = PreflightError::NoCredentials {
            profile: Some("team".into()),
        };
        assert_eq!(e.to_string(), "no AWS credentials found (profile `team`)");
        assert!(e.render().contains("aws sso login"));
        let e = PreflightError::UnknownRegion {
            region: "us-est-1".into(),
            suggestion: Some("us-east-1".into()),
        };
        assert_eq!(
            e.to_string(),
            "`us-est-1` is not an AWS region (did you mean `us-east-1`?)"
        );
    }
}
