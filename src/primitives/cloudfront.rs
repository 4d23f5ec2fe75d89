//! `cloudfront::` — a CDN distribution in front of the load balancer.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Dynamic, Engine, EvalAltResult, Map};

use super::opts::Opts;
use super::{id_of, rt, usage_err, Runtime};
use crate::cloud::cloudfront::Distribution;

pub fn types(engine: &mut Engine) {
    engine.build_type::<Distribution>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
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
    /// the logs — so the origin can refuse what did not come through CloudFront). A
    /// distribution found again is brought to these origin settings.
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
        let mut o = Opts::new(F, options, &["origin", "origin_https", "origin_headers"])?;
        let origin = o
            .value("origin")
            .ok_or_else(|| usage_err(format!("{F}: option `origin` is required")))?;
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
        let origin_https = o.bool("origin_https")?.unwrap_or(false);
        let headers = match o.value("origin_headers") {
            None => Vec::new(),
            Some(h) => crate::primitives::opts::header_pairs(F, h)?,
        };
        let spec = OriginSpec {
            domain: origin.clone(),
            https: origin_https,
            headers,
        };
        let aws = rt.aws()?;
        let tags = rt.tags(name);
        // Found again by the stack's Name tag on a re-run.
        let existing = aws
            .cloudfront
            .find_tagged(crate::cloud::tags::NAME_TAG, &tags.name)
            .map_err(cloud_err)?;
        if let Some(d) = existing.into_iter().find(|d| d.origin == origin) {
            if aws
                .cloudfront
                .converge_origin(&d.id, &spec)
                .map_err(cloud_err)?
            {
                rt.ui.info(&format!(
                    "{name}: origin settings updated (protocol, headers); CloudFront deploys the change"
                ));
            }
            rt.adopt(
                "cloudfront:distribution",
                name,
                &d.id,
                BTreeMap::from([("domain".to_string(), d.domain.clone())]),
            )?;
            return Ok(d);
        }
        let comment = format!("geusemaker {} {name}", rt.stack);
        rt.create_recorded(
            "cloudfront:distribution",
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
        let mut o = Opts::new("cloudfront::wait_deployed", options, &["timeout"])?;
        let timeout = Duration::from_secs(o.int("timeout")?.unwrap_or(1800).max(1) as u64);
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
            rt.mark_deleted("cloudfront:distribution", &id)?;
            return Ok(false);
        }
        aws.cloudfront.disable(&id).map_err(cloud_err)?;
        super::wait_deployed(&rt, &id, Duration::from_secs(3600))?;
        let result = aws.cloudfront.delete(&id);
        rt.settle_delete("cloudfront:distribution", &id, result)
    }
}
