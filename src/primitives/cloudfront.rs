//! `cloudfront::` — a CDN distribution in front of the load balancer.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys, required, WaitOptions};
use super::{id_of, rt, usage_err, ChangeAction, OptionKeys, Runtime};
use crate::cloud::cloudfront::Distribution;
use crate::state::Kind;

pub fn types(engine: &mut Engine) {
    engine.build_type::<Distribution>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "wait_deployed",
        keys: keys::<WaitOptions>,
    },
    OptionKeys {
        function: "distribution",
        keys: keys::<DistributionOptions>,
    },
];

/// CloudFront Function names are at most 64 characters of letters, digits, `-` and `_`.
fn function_name(full: &str) -> String {
    if full.len() <= 64 {
        return full.to_string();
    }
    let hash = full.bytes().fold(0xcbf29ce484222325u64, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100000001b3)
    });
    format!(
        "{}-{:06x}",
        full[..57].trim_end_matches('-'),
        hash & 0xff_ffff
    )
}

fn dist_id(v: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    match v.clone().try_cast::<Distribution>() {
        Some(d) => Ok(d.id),
        None => id_of(v, "a distribution"),
    }
}

fn wait_deployed(
    rt: &Runtime,
    id: &str,
    timeout: Duration,
) -> Result<Distribution, Box<EvalAltResult>> {
    use crate::cloud::wait::{poll_until, Backoff, Poll};
    let aws = rt.aws()?;
    let backoff = Backoff {
        timeout,
        first: Duration::from_secs(5),
        max: Duration::from_secs(30),
    };
    rt.waiting(
        &format!("distribution {id} deployed"),
        |tick| {
            poll_until(
                "cloudfront",
                &format!("distribution {id}"),
                backoff,
                tick,
                || {
                    Ok(match aws.cloudfront.get(id)? {
                        Some(d) if d.status == "Deployed" => Poll::Ready(d),
                        Some(d) => Poll::Pending(d.status),
                        None => Poll::Failed("deleted".into()),
                    })
                },
            )
        },
        |d| format!("deployed at {}", d.domain),
    )
}

/// The options of `cloudfront::distribution`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DistributionOptions {
    /// A load balancer, or a DNS name.
    origin: Option<Dynamic>,
    #[serde(default)]
    origin_https: bool,
    origin_headers: Option<Dynamic>,
    viewer_function: Option<String>,
}

#[export_module]
pub mod api {
    use crate::cloud::cloudfront::{Distribution, OriginSpec};
    use crate::primitives::cloud_err;

    /// Create (or find) the distribution `<stack>-<name>` in front of `origin` (a load
    /// balancer or a DNS name); returns at once (status `InProgress`). Caching is disabled (n8n
    /// is dynamic), every method, header, cookie and query string reaches the origin (which
    /// keeps WebSockets working), viewers are redirected to HTTPS. Options: `origin`
    /// (required), `origin_https` (false: the load balancer listens on HTTP 80; true needs a
    /// certificate on the load balancer that matches the origin's name), `origin_headers`
    /// (a map of headers added to every request to the origin — a `Secret` value stays out of
    /// the logs — so the origin can refuse what did not come through CloudFront),
    /// `viewer_function` (a CloudFront Function ARN run on every viewer request, e.g. from
    /// `cloudfront::viewer_filter`). A distribution found again is brought to these settings.
    ///
    /// ```rhai
    /// let cdn = cloudfront::distribution("cdn", #{ origin: lb });
    /// let cdn = cloudfront::distribution("cdn", #{ origin: lb, origin_headers: #{ "X-Origin-Verify": secret } });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn distribution(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<Distribution, Box<EvalAltResult>> {
        const F: &str = "cloudfront::distribution";
        let rt = rt(&ctx)?;
        let o: DistributionOptions = decode(F, options)?;
        let origin = required(F, "origin", o.origin)?;
        let origin = match origin.clone().try_cast::<crate::cloud::elb::LoadBalancer>() {
            Some(lb) => lb.dns_name,
            None => origin.into_string().map_err(|t| {
                usage_err(format!(
                    "{F}: origin is a load balancer or a DNS name, not {t}"
                ))
            })?,
        };
        if origin.is_empty() || origin.contains('/') || origin.contains(':') {
            return Err(usage_err(format!("{F}: `{origin}` is not a DNS name")));
        }
        let origin_https = o.origin_https;
        let headers = match o.origin_headers {
            None => Vec::new(),
            Some(h) => crate::primitives::opts::header_pairs(F, h)?,
        };
        let viewer_function = o.viewer_function;
        if let Some(arn) = &viewer_function {
            if !(arn.starts_with("arn:aws:cloudfront::") && arn.contains(":function/")) {
                return Err(usage_err(format!(
                    "{F}: `{arn}` is not a CloudFront Function ARN (cloudfront::viewer_filter returns one)"
                )));
            }
        }
        let spec = OriginSpec {
            domain: origin.clone(),
            https: origin_https,
            headers,
            viewer_function,
        };
        let aws = rt.aws()?;
        let tags = rt.tags(name);
        // Found again by the stack's Name tag on a re-run.
        let existing = aws
            .cloudfront
            .find_tagged(crate::cloud::tags::NAME_TAG, &tags.name)
            .map_err(cloud_err)?;
        // One distribution per name: one found again is brought to this origin (a move to
        // HTTPS at the user's own name updates it rather than making a second).
        if let Some(mut d) = existing.into_iter().next() {
            d.origin = spec.domain.clone();
            if aws
                .cloudfront
                .converge_origin(&d.id, &spec)
                .map_err(cloud_err)?
            {
                rt.record_change(
                    ChangeAction::InPlace,
                    &format!("distribution {name}"),
                    "origin settings made the recipe's (CloudFront deploys the change)",
                );
            }
            rt.adopt(
                Kind::Distribution,
                name,
                &d.id,
                BTreeMap::from([("domain".to_string(), d.domain.clone())]),
            )?;
            return Ok(d);
        }
        let comment = format!("geusemaker {} {name}", rt.stack);
        rt.create_recorded(
            Kind::Distribution,
            name,
            |token| {
                let mut t = tags.clone();
                // Lets a retried create whose answer was lost find the distribution it made.
                t.extra
                    .insert("geusemaker:caller-reference".into(), token.to_string());
                aws.cloudfront.create(token, &spec, &comment, &t)
            },
            |d: &Distribution| {
                (
                    d.id.clone(),
                    BTreeMap::from([("domain".to_string(), d.domain.clone())]),
                )
            },
        )
    }

    /// Create (or update) and publish the CloudFront Function `<stack>-<name>` that lets only
    /// viewers from `cidrs` (IPv4 ranges) through and answers everyone else 403; returns its
    /// ARN for `cloudfront::distribution`'s `viewer_function`. CloudFront has no security
    /// group: this is how a distribution admits `allowed_cidr` only.
    ///
    /// ```rhai
    /// let viewers = cloudfront::viewer_filter("viewers", ["203.0.113.7/32"]);
    /// let cdn = cloudfront::distribution("cdn", #{ origin: lb, viewer_function: viewers });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn viewer_filter(
        ctx: NativeCallContext,
        name: &str,
        cidrs: rhai::Array,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "cloudfront::viewer_filter";
        let rt = rt(&ctx)?;
        let mut ranges = Vec::new();
        for c in cidrs {
            let text = c.into_string().map_err(|t| {
                usage_err(format!(
                    "{F}: ranges are strings like \"203.0.113.7/32\", not {t}"
                ))
            })?;
            ranges.push(crate::cidr::parse(&text).map_err(|e| usage_err(format!("{F}: {e}")))?);
        }
        if ranges.is_empty() {
            return Err(usage_err(format!(
                "{F}: no ranges: nobody could use the distribution"
            )));
        }
        let full = super::function_name(&rt.resource_name(name));
        let code = crate::cloud::cloudfront::viewer_filter_code(&ranges);
        let comment = format!("geusemaker {}: viewers allowed", rt.stack);
        let aws = rt.aws()?;
        if rt.ledger_id(Kind::CloudFrontFunction, name)?.is_some() {
            let (arn, changed) = aws
                .cloudfront
                .ensure_function(&full, &comment, &code)
                .map_err(cloud_err)?;
            rt.adopt(Kind::CloudFrontFunction, name, &full, BTreeMap::new())?;
            if changed {
                rt.record_change(
                    ChangeAction::InPlace,
                    &format!("viewer filter {name}"),
                    &format!("{} allowed range(s), published", ranges.len()),
                );
            }
            return Ok(arn);
        }
        let arn = rt.create_recorded(
            Kind::CloudFrontFunction,
            name,
            |_t| {
                aws.cloudfront
                    .ensure_function(&full, &comment, &code)
                    .map(|(a, _)| a)
            },
            |_arn: &String| (full.clone(), BTreeMap::new()),
        )?;
        rt.ui.info(&format!(
            "viewer filter {name}: {} range(s) allowed, everyone else 403",
            ranges.len()
        ));
        Ok(arn)
    }

    /// Delete the CloudFront Function (by name); `false` when it was already gone. A function
    /// still used by a distribution cannot be deleted: delete the distribution first.
    ///
    /// ```rhai
    /// cloudfront::delete_function("my-stack-viewers");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_function(ctx: NativeCallContext, name: &str) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let gone = rt
            .aws()?
            .cloudfront
            .delete_function(name)
            .map_err(cloud_err)?;
        rt.mark_deleted(Kind::CloudFrontFunction, name)?;
        Ok(gone)
    }

    /// Every distribution of the account (for exploring it).
    ///
    /// ```rhai
    /// cloudfront::distributions()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn distributions(ctx: NativeCallContext) -> Result<rhai::Array, Box<EvalAltResult>> {
        let list = rt(&ctx)?.aws()?.cloudfront.list().map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Block until the distribution is `Deployed` (timeout 1800 s, or `#{ timeout: s }`):
    /// CloudFront takes minutes.
    ///
    /// ```rhai
    /// cdn = cloudfront::wait_deployed(cdn, #{ timeout: 1800 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_deployed(
        ctx: NativeCallContext,
        distribution: Dynamic,
        options: Map,
    ) -> Result<Distribution, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: WaitOptions = decode("cloudfront::wait_deployed", options)?;
        let timeout = Duration::from_secs(o.timeout.unwrap_or(1800).max(1) as u64);
        super::wait_deployed(&rt, &super::dist_id(&distribution)?, timeout)
    }

    /// Delete a distribution the way CloudFront requires: disable it, wait until that is
    /// deployed, then delete with the current ETag. `false` when it was already gone.
    ///
    /// ```rhai
    /// cloudfront::delete_distribution(cdn);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_distribution(
        ctx: NativeCallContext,
        distribution: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = super::dist_id(&distribution)?;
        let aws = rt.aws()?;
        if aws.cloudfront.get(&id).map_err(cloud_err)?.is_none() {
            rt.mark_deleted(Kind::Distribution, &id)?;
            return Ok(false);
        }
        aws.cloudfront.disable(&id).map_err(cloud_err)?;
        super::wait_deployed(&rt, &id, Duration::from_secs(3600))?;
        let result = aws.cloudfront.delete(&id);
        rt.settle_delete(Kind::Distribution, &id, result)
    }
}
