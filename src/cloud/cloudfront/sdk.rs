//! [`CloudFrontApi`] over aws-sdk-cloudfront, and the conversions from its types.

use aws_sdk_cloudfront::types::{
    AllowedMethods, CachedMethods, CustomHeaders, CustomOriginConfig, DefaultCacheBehavior,
    DistributionConfig, DistributionConfigWithTags, EventType, FunctionAssociation,
    FunctionAssociations, FunctionConfig, FunctionRuntime, FunctionStage, HttpVersion, Method,
    Origin, OriginCustomHeader, OriginProtocolPolicy, Origins, PriceClass, Tag, Tags as CfTags,
    ViewerProtocolPolicy,
};

use crate::cloud::{Blocking, CloudError, Tags};

use super::*;

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
        let out = self.rt.call(
            SVC,
            "GetDistributionConfig",
            self.client.get_distribution_config().id(id).send(),
        )?;
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

    /// `(ETag, ARN)` of a function's stage; `None` when it does not exist.
    fn describe_function(
        &self,
        name: &str,
        stage: FunctionStage,
    ) -> Result<Option<(String, String)>, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeFunction",
            self.client
                .describe_function()
                .name(name)
                .stage(stage)
                .send(),
        ) {
            Ok(out) => Ok(Some((
                out.e_tag().unwrap_or_default().to_string(),
                out.function_summary()
                    .and_then(|f| f.function_metadata())
                    .map(|m| m.function_arn().to_string())
                    .unwrap_or_default(),
            ))),
            Err(e) => {
                if e.code == "NoSuchFunctionExists" {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// `(id, arn)` of every distribution of the account.
    fn summaries(&self) -> Result<Vec<(String, String)>, CloudError> {
        let list = self.rt.call(
            SVC,
            "ListDistributions",
            self.client.list_distributions().send(),
        )?;
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

fn function_associations(viewer: Option<&str>) -> Result<FunctionAssociations, CloudError> {
    let items = viewer
        .map(|arn| {
            built(
                "function association",
                FunctionAssociation::builder()
                    .function_arn(arn)
                    .event_type(EventType::ViewerRequest)
                    .build(),
            )
        })
        .transpose()?;
    built(
        "function associations",
        FunctionAssociations::builder()
            .quantity(i32::from(items.is_some()))
            .set_items(items.map(|i| vec![i]))
            .build(),
    )
}

/// The viewer-request function of a configuration's default behaviour.
fn viewer_function_of(config: &DistributionConfig) -> Option<String> {
    config
        .default_cache_behavior()
        .and_then(|b| b.function_associations())
        .map(|f| f.items())
        .unwrap_or_default()
        .iter()
        .find(|a| a.event_type() == &EventType::ViewerRequest)
        .map(|a| a.function_arn().to_string())
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
                        .function_associations(function_associations(
                            origin.viewer_function.as_deref(),
                        )?)
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
        let out = self.rt.call(
            SVC,
            "CreateDistributionWithTags",
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
        if https == origin.https
            && current.domain_name() == origin.domain
            && headers_of(current) == wanted_headers
            && viewer_function_of(&config) == origin.viewer_function
        {
            return Ok(false);
        }
        let mut updated = current.clone();
        updated.domain_name = origin.domain.clone();
        updated.custom_origin_config = Some(custom_origin(origin.https)?);
        updated.custom_headers = Some(custom_headers(&wanted_headers)?);
        let mut config = config;
        config.origins = Some(built(
            "origins",
            Origins::builder().quantity(1).items(updated).build(),
        )?);
        if let Some(mut behavior) = config.default_cache_behavior.take() {
            behavior.function_associations =
                Some(function_associations(origin.viewer_function.as_deref())?);
            config.default_cache_behavior = Some(behavior);
        }
        self.rt
            .call(
                SVC,
                "UpdateDistribution",
                self.client
                    .update_distribution()
                    .id(id)
                    .if_match(etag)
                    .distribution_config(config)
                    .send(),
            )
            .map(|_| true)
    }

    fn ensure_function(
        &self,
        name: &str,
        comment: &str,
        code: &str,
    ) -> Result<(String, bool), CloudError> {
        let config = built(
            "function",
            FunctionConfig::builder()
                .comment(comment)
                .runtime(FunctionRuntime::CloudfrontJs20)
                .build(),
        )?;
        let current = self.rt.call(
            SVC,
            "GetFunction",
            self.client
                .get_function()
                .name(name)
                .stage(FunctionStage::Development)
                .send(),
        );
        let (etag, changed) = match current {
            Ok(out) if out.function_code().map(|b| b.as_ref()) == Some(code.as_bytes()) => {
                (out.e_tag().unwrap_or_default().to_string(), false)
            }
            Ok(out) => {
                let updated = self.rt.call(
                    SVC,
                    "UpdateFunction",
                    self.client
                        .update_function()
                        .name(name)
                        .if_match(out.e_tag().unwrap_or_default())
                        .function_config(config)
                        .function_code(aws_smithy_types::Blob::new(code.as_bytes()))
                        .send(),
                )?;
                (updated.e_tag().unwrap_or_default().to_string(), true)
            }
            Err(e) => {
                if e.code != "NoSuchFunctionExists" {
                    return Err(e);
                }
                let created = self.rt.call(
                    SVC,
                    "CreateFunction",
                    self.client
                        .create_function()
                        .name(name)
                        .function_config(config)
                        .function_code(aws_smithy_types::Blob::new(code.as_bytes()))
                        .send(),
                )?;
                (created.e_tag().unwrap_or_default().to_string(), true)
            }
        };
        // The LIVE stage is what a distribution runs: publish whatever changed (and a function
        // whose development code was never published).
        let live = self.describe_function(name, FunctionStage::Live)?;
        let live_arn = live.filter(|_| !changed).map(|(_, arn)| arn);
        if let Some(arn) = live_arn {
            return Ok((arn, false));
        }
        let published = self.rt.call(
            SVC,
            "PublishFunction",
            self.client
                .publish_function()
                .name(name)
                .if_match(etag)
                .send(),
        )?;
        let arn = published
            .function_summary()
            .and_then(|f| f.function_metadata())
            .map(|m| m.function_arn().to_string())
            .ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "PublishFunction",
                    "NoFunction",
                    "no function in the answer",
                )
            })?;
        Ok((arn, true))
    }

    fn delete_function(&self, name: &str) -> Result<bool, CloudError> {
        let Some((etag, _)) = self.describe_function(name, FunctionStage::Development)? else {
            return Ok(false);
        };
        self.rt
            .call(
                SVC,
                "DeleteFunction",
                self.client
                    .delete_function()
                    .name(name)
                    .if_match(etag)
                    .send(),
            )
            .map(|_| true)
    }

    fn get(&self, id: &str) -> Result<Option<Distribution>, CloudError> {
        match self.rt.call(
            SVC,
            "GetDistribution",
            self.client.get_distribution().id(id).send(),
        ) {
            Ok(out) => Ok(out.distribution().map(to_distribution)),
            Err(e) => {
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
            let tags = self.rt.call(
                SVC,
                "ListTagsForResource",
                self.client.list_tags_for_resource().resource(&arn).send(),
            )?;
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
            .call(
                SVC,
                "UpdateDistribution",
                self.client
                    .update_distribution()
                    .id(id)
                    .if_match(etag)
                    .distribution_config(disabled)
                    .send(),
            )
            .map(|_| ())
    }

    fn delete(&self, id: &str) -> Result<(), CloudError> {
        let (etag, _) = self.etag_and_config(id)?;
        self.rt
            .call(
                SVC,
                "DeleteDistribution",
                self.client
                    .delete_distribution()
                    .id(id)
                    .if_match(etag)
                    .send(),
            )
            .map(|_| ())
    }
}
