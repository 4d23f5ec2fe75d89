//! CloudFront: a distribution in front of the load balancer, and its disable → delete cycle.

use std::fmt;

use aws_sdk_cloudfront::types::{
    AllowedMethods, CachedMethods, CustomHeaders, CustomOriginConfig, DefaultCacheBehavior,
    DistributionConfig, DistributionConfigWithTags, HttpVersion, Method, Origin,
    OriginCustomHeader, OriginProtocolPolicy, Origins, PriceClass, Tag, Tags as CfTags,
    ViewerProtocolPolicy,
};
use rhai::CustomType;

use super::{Blocking, CloudError, Tags};

const SVC: &str = "cloudfront";

/// AWS-managed cache policy "CachingDisabled": n8n is dynamic, nothing is cached.
pub const CACHING_DISABLED_POLICY: &str = "4135ea2d-6df8-44a3-9df3-4b5a84be39ad";
/// AWS-managed origin request policy "AllViewer": every header, cookie and query string (and
/// the WebSocket upgrade headers) reach n8n.
pub const ALL_VIEWER_ORIGIN_REQUEST_POLICY: &str = "216adef6-5c7f-47e4-b989-5492eafa07d3";

/// A CloudFront distribution.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Distribution", extra = super::display_fns)]
pub struct Distribution {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub arn: String,
    /// `xxxx.cloudfront.net`.
    #[rhai_type(readonly)]
    pub domain: String,
    /// `InProgress` or `Deployed`.
    #[rhai_type(readonly)]
    pub status: String,
    #[rhai_type(readonly)]
    pub enabled: bool,
    #[rhai_type(readonly)]
    pub origin: String,
}

impl fmt::Display for Distribution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Distribution({} {} {})",
            self.id, self.domain, self.status
        )
    }
}

/// How a distribution reaches its origin.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OriginSpec {
    /// The origin's DNS name (a load balancer's).
    pub domain: String,
    /// HTTPS to the origin (its certificate must match `domain`); plain HTTP otherwise.
    pub https: bool,
    /// Headers CloudFront adds to every request to the origin, sorted by name: a secret one
    /// lets the origin refuse whatever did not come through this distribution.
    pub headers: Vec<(String, String)>,
}

/// The CloudFront operations primitives use.
pub trait CloudFrontApi: Send + Sync {
    /// Create a distribution for `origin`. `caller_reference` makes it idempotent.
    fn create(
        &self,
        caller_reference: &str,
        origin: &OriginSpec,
        comment: &str,
        tags: &Tags,
    ) -> Result<Distribution, CloudError>;
    /// Make distribution `id` reach its origin as `origin` says (protocol and headers);
    /// `false` when it already does (nothing is changed).
    fn converge_origin(&self, id: &str, origin: &OriginSpec) -> Result<bool, CloudError>;
    fn get(&self, id: &str) -> Result<Option<Distribution>, CloudError>;
    /// Every distribution of the account.
    fn list(&self) -> Result<Vec<Distribution>, CloudError>;
    /// Distributions tagged `key=value`.
    fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<Distribution>, CloudError>;
    /// Set Enabled=false (with the current ETag).
    fn disable(&self, id: &str) -> Result<(), CloudError>;
    fn delete(&self, id: &str) -> Result<(), CloudError>;
}

/// [`CloudFrontApi`] over aws-sdk-cloudfront.
pub struct SdkCloudFront {
    client: aws_sdk_cloudfront::Client,
    rt: Blocking,
}

impl SdkCloudFront {
    pub fn new(client: aws_sdk_cloudfront::Client, rt: Blocking) -> Self {
        SdkCloudFront { client, rt }
    }

    fn etag_and_config(&self, id: &str) -> Result<(String, DistributionConfig), CloudError> {
        let out = self
            .rt
            .block_on(self.client.get_distribution_config().id(id).send())
            .map_err(|e| CloudError::from_sdk(SVC, "GetDistributionConfig", e))?;
        let etag = out.e_tag().unwrap_or_default().to_string();
        let config = out.distribution_config().cloned().ok_or_else(|| {
            CloudError::new(
                SVC,
                "GetDistributionConfig",
                "NoConfig",
                "no configuration in the answer",
            )
        })?;
        Ok((etag, config))
    }

    /// `(id, arn)` of every distribution of the account.
    fn summaries(&self) -> Result<Vec<(String, String)>, CloudError> {
        let list = self
            .rt
            .block_on(self.client.list_distributions().send())
            .map_err(|e| CloudError::from_sdk(SVC, "ListDistributions", e))?;
        Ok(list
            .distribution_list()
            .map(|l| l.items())
            .unwrap_or_default()
            .iter()
            .map(|d| (d.id().to_string(), d.arn().to_string()))
            .collect())
    }
}

fn built<T, E: std::fmt::Display>(what: &str, r: Result<T, E>) -> Result<T, CloudError> {
    r.map_err(|e| {
        CloudError::new(
            SVC,
            "CreateDistribution",
            "InvalidRequest",
            format!("{what}: {e}"),
        )
    })
}

fn to_distribution(d: &aws_sdk_cloudfront::types::Distribution) -> Distribution {
    let config = d.distribution_config();
    Distribution {
        id: d.id().to_string(),
        arn: d.arn().to_string(),
        domain: d.domain_name().to_string(),
        status: d.status().to_string(),
        enabled: config.map(|c| c.enabled()).unwrap_or(false),
        origin: config
            .and_then(|c| c.origins())
            .and_then(|o| o.items().first())
            .map(|o| o.domain_name().to_string())
            .unwrap_or_default(),
    }
}

fn custom_origin(https: bool) -> Result<CustomOriginConfig, CloudError> {
    built(
        "origin",
        CustomOriginConfig::builder()
            .http_port(80)
            .https_port(443)
            .origin_protocol_policy(if https {
                OriginProtocolPolicy::HttpsOnly
            } else {
                OriginProtocolPolicy::HttpOnly
            })
            .origin_read_timeout(60)
            .origin_keepalive_timeout(5)
            .build(),
    )
}

fn custom_headers(headers: &[(String, String)]) -> Result<CustomHeaders, CloudError> {
    let items = headers
        .iter()
        .map(|(k, v)| {
            built(
                "origin header",
                OriginCustomHeader::builder()
                    .header_name(k)
                    .header_value(v)
                    .build(),
            )
        })
        .collect::<Result<Vec<_>, _>>()?;
    built(
        "origin headers",
        CustomHeaders::builder()
            .quantity(items.len() as i32)
            .set_items(Some(items))
            .build(),
    )
}

/// The origin headers of a configuration, sorted by name.
fn headers_of(origin: &Origin) -> Vec<(String, String)> {
    let mut h: Vec<(String, String)> = origin
        .custom_headers()
        .map(|c| c.items())
        .unwrap_or_default()
        .iter()
        .map(|h| (h.header_name().to_string(), h.header_value().to_string()))
        .collect();
    h.sort();
    h
}

impl CloudFrontApi for SdkCloudFront {
    fn create(
        &self,
        caller_reference: &str,
        origin: &OriginSpec,
        comment: &str,
        tags: &Tags,
    ) -> Result<Distribution, CloudError> {
        let origin_id = "geusemaker-alb";
        let methods = [
            Method::Get,
            Method::Head,
            Method::Options,
            Method::Put,
            Method::Post,
            Method::Patch,
            Method::Delete,
        ];
        let allowed = built(
            "allowed methods",
            AllowedMethods::builder()
                .quantity(methods.len() as i32)
                .set_items(Some(methods.to_vec()))
                .cached_methods(built(
                    "cached methods",
                    CachedMethods::builder()
                        .quantity(2)
                        .items(Method::Get)
                        .items(Method::Head)
                        .build(),
                )?)
                .build(),
        )?;
        let custom = custom_origin(origin.https)?;
        let config = built(
            "distribution",
            DistributionConfig::builder()
                .caller_reference(caller_reference)
                .comment(comment)
                .enabled(true)
                .price_class(PriceClass::PriceClass100)
                .http_version(HttpVersion::Http2)
                .origins(built(
                    "origins",
                    Origins::builder()
                        .quantity(1)
                        .items(built(
                            "origin",
                            Origin::builder()
                                .id(origin_id)
                                .domain_name(&origin.domain)
                                .custom_origin_config(custom)
                                .custom_headers(custom_headers(&origin.headers)?)
                                .build(),
                        )?)
                        .build(),
                )?)
                .default_cache_behavior(built(
                    "cache behaviour",
                    DefaultCacheBehavior::builder()
                        .target_origin_id(origin_id)
                        .viewer_protocol_policy(ViewerProtocolPolicy::RedirectToHttps)
                        .allowed_methods(allowed)
                        .cache_policy_id(CACHING_DISABLED_POLICY)
                        .origin_request_policy_id(ALL_VIEWER_ORIGIN_REQUEST_POLICY)
                        .compress(true)
                        .build(),
                )?)
                .build(),
        )?;
        let tags = CfTags::builder()
            .set_items(Some(
                tags.pairs()
                    .into_iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| {
                        CloudError::new(
                            SVC,
                            "CreateDistributionWithTags",
                            "InvalidRequest",
                            e.to_string(),
                        )
                    })?,
            ))
            .build();
        let request = DistributionConfigWithTags::builder()
            .distribution_config(config)
            .tags(tags)
            .build();
        let out = self.rt.block_on(
            self.client
                .create_distribution_with_tags()
                .distribution_config_with_tags(request)
                .send(),
        );
        match out {
            Ok(out) => out.distribution().map(to_distribution).ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "CreateDistributionWithTags",
                    "NoDistribution",
                    "no distribution in the answer",
                )
            }),
            Err(e) => {
                let e = CloudError::from_sdk(SVC, "CreateDistributionWithTags", e);
                // Same caller reference: the earlier request (whose answer was lost) created it.
                if e.code == "DistributionAlreadyExists" {
                    if let Some(d) = self
                        .find_tagged("geusemaker:caller-reference", caller_reference)?
                        .into_iter()
                        .next()
                    {
                        return Ok(d);
                    }
                }
                Err(e)
            }
        }
    }

    fn converge_origin(&self, id: &str, origin: &OriginSpec) -> Result<bool, CloudError> {
        let (etag, config) = self.etag_and_config(id)?;
        let Some(current) = config.origins().and_then(|o| o.items().first()) else {
            return Err(CloudError::new(
                SVC,
                "GetDistributionConfig",
                "NoOrigin",
                format!("distribution {id} has no origin"),
            ));
        };
        let https = current
            .custom_origin_config()
            .map(|c| c.origin_protocol_policy() == &OriginProtocolPolicy::HttpsOnly)
            .unwrap_or(false);
        let mut wanted_headers = origin.headers.clone();
        wanted_headers.sort();
        if https == origin.https && headers_of(current) == wanted_headers {
            return Ok(false);
        }
        let mut updated = current.clone();
        updated.custom_origin_config = Some(custom_origin(origin.https)?);
        updated.custom_headers = Some(custom_headers(&wanted_headers)?);
        let mut config = config;
        config.origins = Some(built(
            "origins",
            Origins::builder().quantity(1).items(updated).build(),
        )?);
        self.rt
            .block_on(
                self.client
                    .update_distribution()
                    .id(id)
                    .if_match(etag)
                    .distribution_config(config)
                    .send(),
            )
            .map(|_| true)
            .map_err(|e| CloudError::from_sdk(SVC, "UpdateDistribution", e))
    }

    fn get(&self, id: &str) -> Result<Option<Distribution>, CloudError> {
        match self
            .rt
            .block_on(self.client.get_distribution().id(id).send())
        {
            Ok(out) => Ok(out.distribution().map(to_distribution)),
            Err(e) => {
                let e = CloudError::from_sdk(SVC, "GetDistribution", e);
                if e.code == "NoSuchDistribution" {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn list(&self) -> Result<Vec<Distribution>, CloudError> {
        let mut out = Vec::new();
        for (id, _) in self.summaries()? {
            if let Some(d) = self.get(&id)? {
                out.push(d);
            }
        }
        Ok(out)
    }

    fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<Distribution>, CloudError> {
        let mut found = Vec::new();
        for (id, arn) in self.summaries()? {
            let tags = self
                .rt
                .block_on(self.client.list_tags_for_resource().resource(&arn).send())
                .map_err(|e| CloudError::from_sdk(SVC, "ListTagsForResource", e))?;
            let tagged = tags
                .tags()
                .map(|t| t.items())
                .unwrap_or_default()
                .iter()
                .any(|t| t.key() == key && t.value() == Some(value));
            if tagged {
                if let Some(d) = self.get(&id)? {
                    found.push(d);
                }
            }
        }
        Ok(found)
    }

    fn disable(&self, id: &str) -> Result<(), CloudError> {
        let (etag, config) = self.etag_and_config(id)?;
        if !config.enabled() {
            return Ok(());
        }
        let mut disabled = config;
        disabled.enabled = false;
        self.rt
            .block_on(
                self.client
                    .update_distribution()
                    .id(id)
                    .if_match(etag)
                    .distribution_config(disabled)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk(SVC, "UpdateDistribution", e))
    }

    fn delete(&self, id: &str) -> Result<(), CloudError> {
        let (etag, _) = self.etag_and_config(id)?;
        self.rt
            .block_on(
                self.client
                    .delete_distribution()
                    .id(id)
                    .if_match(etag)
                    .send(),
            )
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk(SVC, "DeleteDistribution", e))
    }
}
