//! `elb::` — application load balancer, target group, listeners, target health.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys, required, WaitOptions};
use super::{id_of, rt, usage_err, ChangeAction, OptionKeys, Runtime};
use crate::cloud::elb::{ListenerAction, LoadBalancer, TargetGroup, TargetGroupSpec};
use crate::naming::elb_name;
use crate::state::Kind;

pub fn types(engine: &mut Engine) {
    use crate::cloud::elb::*;
    engine
        .build_type::<LoadBalancer>()
        .build_type::<TargetGroup>()
        .build_type::<Listener>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "wait_target_healthy",
        keys: keys::<WaitOptions>,
    },
    OptionKeys {
        function: "load_balancer",
        keys: keys::<BalancerOptions>,
    },
    OptionKeys {
        function: "target_group",
        keys: keys::<TargetGroupOptions>,
    },
    OptionKeys {
        function: "listener",
        keys: keys::<ListenerOptions>,
    },
];

fn lb_arn(v: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    match v.clone().try_cast::<LoadBalancer>() {
        Some(lb) => Ok(lb.arn),
        None => id_of(v, "a load balancer"),
    }
}

fn tg_arn(v: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    match v.clone().try_cast::<TargetGroup>() {
        Some(tg) => Ok(tg.arn),
        None => id_of(v, "a target group"),
    }
}

fn listener_arn(v: &Dynamic) -> Result<String, Box<EvalAltResult>> {
    match v.clone().try_cast::<crate::cloud::elb::Listener>() {
        Some(l) => Ok(l.arn),
        None => id_of(v, "a listener"),
    }
}

fn wait_lb(rt: &Runtime, arn: &str, name: &str) -> Result<LoadBalancer, Box<EvalAltResult>> {
    use crate::cloud::wait::{poll_until, Backoff, Poll};
    let aws = rt.aws()?;
    rt.waiting(
        &format!("load balancer {name} active"),
        |tick| {
            poll_until(
                "elb",
                &format!("load balancer {name}"),
                Backoff::new(Duration::from_secs(600)),
                tick,
                || {
                    let lb = aws.elb.find_load_balancer(name)?;
                    Ok(match lb {
                        Some(lb) if lb.arn == arn && lb.state == "active" => Poll::Ready(lb),
                        Some(lb) if lb.state == "provisioning" => Poll::Pending(lb.state),
                        Some(lb) => Poll::Failed(lb.state),
                        None => Poll::Failed("deleted".into()),
                    })
                },
            )
        },
        |lb| format!("active at {}", lb.dns_name),
    )
}

/// The options of `elb::load_balancer`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BalancerOptions {
    #[serde(default)]
    subnets: Array,
    #[serde(default)]
    security_groups: Array,
}

/// The options of `elb::target_group` (the ranges are checked after decoding).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TargetGroupOptions {
    vpc: Option<Dynamic>,
    port: Option<i64>,
    #[serde(default = "slash")]
    health_path: String,
    interval: Option<i64>,
    timeout: Option<i64>,
    healthy_threshold: Option<i64>,
    unhealthy_threshold: Option<i64>,
    #[serde(default = "ok_status")]
    matcher: String,
}

fn slash() -> String {
    "/".into()
}

fn ok_status() -> String {
    "200".into()
}

/// The options of `elb::listener`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListenerOptions {
    port: Option<i64>,
    target_group: Option<Dynamic>,
    certificate_arn: Option<String>,
    #[serde(default)]
    redirect_to_https: bool,
    require_header: Option<Dynamic>,
}

#[export_module]
pub mod api {
    use crate::cloud::elb::{HeaderRule, Listener, LoadBalancer, TargetGroup};
    use crate::cloud::wait::{poll_until, Backoff, Poll};
    use crate::primitives::cloud_err;

    /// Create (or find) the internet-facing application load balancer `<stack>-<name>`
    /// (shortened to ELB's 32 characters when needed); returns at once. Options: `subnets`
    /// (at least two, in different Availability Zones), `security_groups`.
    ///
    /// ```rhai
    /// let lb = elb::load_balancer("web", #{ subnets: [net.subnets[0], net.subnets[1]], security_groups: [alb_sg] });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn load_balancer(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<LoadBalancer, Box<EvalAltResult>> {
        const F: &str = "elb::load_balancer";
        let rt = rt(&ctx)?;
        let o: BalancerOptions = decode(F, options)?;
        let subnets = o.subnets;
        let mut zones: Vec<String> = subnets
            .iter()
            .filter_map(|s| {
                s.clone()
                    .try_cast::<crate::cloud::ec2::Subnet>()
                    .map(|s| s.az)
            })
            .collect();
        zones.sort();
        zones.dedup();
        let subnet_ids = subnets
            .iter()
            .map(|s| id_of(s, "a subnet"))
            .collect::<Result<Vec<_>, _>>()?;
        if subnet_ids.len() < 2 || (zones.len() == subnet_ids.len() && zones.len() < 2) {
            return Err(usage_err(format!("{F}: an application load balancer needs subnets in at least two Availability Zones")));
        }
        let sgs = o
            .security_groups
            .iter()
            .map(|g| id_of(g, "a security group"))
            .collect::<Result<Vec<_>, _>>()?;
        let aws = rt.aws()?;
        let lb_name = super::elb_name(&rt.stack, name);
        if let Some(lb) = aws.elb.find_load_balancer(&lb_name).map_err(cloud_err)? {
            rt.adopt(
                Kind::LoadBalancer,
                name,
                &lb.arn,
                BTreeMap::from([("dns".to_string(), lb.dns_name.clone())]),
            )?;
            return Ok(lb);
        }
        let tags = crate::cloud::Tags::new(&rt.stack, &rt.run_id, &lb_name);
        rt.create_recorded(
            Kind::LoadBalancer,
            name,
            |_t| {
                aws.elb
                    .create_load_balancer(&lb_name, &subnet_ids, &sgs, &tags)
            },
            |lb: &LoadBalancer| {
                (
                    lb.arn.clone(),
                    BTreeMap::from([("dns".to_string(), lb.dns_name.clone())]),
                )
            },
        )
    }

    /// Every load balancer of the region (for exploring an account).
    ///
    /// ```rhai
    /// elb::load_balancers()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn load_balancers(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let list = rt(&ctx)?.aws()?.elb.load_balancers().map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Block until the load balancer is `active` (timeout 600 s).
    ///
    /// ```rhai
    /// lb = elb::wait_active(lb);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_active(
        ctx: NativeCallContext,
        lb: LoadBalancer,
    ) -> Result<LoadBalancer, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        super::wait_lb(&rt, &lb.arn, &lb.name)
    }

    /// Create (or find) the HTTP target group `<stack>-<name>` for instances. Options: `vpc`
    /// (required), `port` (required), `health_path` ("/"), `interval` (30 s), `timeout` (5 s),
    /// `healthy_threshold` (2), `unhealthy_threshold` (3), `matcher` ("200").
    ///
    /// ```rhai
    /// let tg = elb::target_group("n8n", #{ vpc: net.vpc, port: 5678, health_path: "/healthz" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn target_group(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<TargetGroup, Box<EvalAltResult>> {
        const F: &str = "elb::target_group";
        let rt = rt(&ctx)?;
        let o: TargetGroupOptions = decode(F, options)?;
        let vpc_id = id_of(&required(F, "vpc", o.vpc)?, "a VPC")?;
        let port = required(F, "port", o.port)?;
        if !(1..=65535).contains(&port) {
            return Err(usage_err(format!("{F}: port must be 1..65535")));
        }
        let within = |k: &str,
                      v: Option<i64>,
                      d: i64,
                      range: std::ops::RangeInclusive<i64>|
         -> Result<i32, Box<EvalAltResult>> {
            let v = v.unwrap_or(d);
            if !range.contains(&v) {
                return Err(usage_err(format!(
                    "{F}: `{k}` must be in {}..={}",
                    range.start(),
                    range.end()
                )));
            }
            Ok(v as i32)
        };
        let spec = TargetGroupSpec {
            name: super::elb_name(&rt.stack, name),
            vpc_id,
            port: port as i32,
            health_path: o.health_path,
            interval_s: within("interval", o.interval, 30, 5..=300)?,
            timeout_s: within("timeout", o.timeout, 5, 2..=120)?,
            healthy_threshold: within("healthy_threshold", o.healthy_threshold, 2, 2..=10)?,
            unhealthy_threshold: within("unhealthy_threshold", o.unhealthy_threshold, 3, 2..=10)?,
            matcher: o.matcher,
        };
        if !spec.health_path.starts_with('/') {
            return Err(usage_err(format!("{F}: health_path must start with /")));
        }
        let aws = rt.aws()?;
        // Look up first: re-creating a target group is not idempotent everywhere.
        if let Some(tg) = aws.elb.find_target_group(&spec.name).map_err(cloud_err)? {
            rt.adopt(Kind::TargetGroup, name, &tg.arn, BTreeMap::new())?;
            return Ok(tg);
        }
        let tags = crate::cloud::Tags::new(&rt.stack, &rt.run_id, &spec.name);
        rt.create_recorded(
            Kind::TargetGroup,
            name,
            |_t| aws.elb.create_target_group(&spec, &tags),
            |tg: &TargetGroup| (tg.arn.clone(), BTreeMap::new()),
        )
    }

    /// Create (or find) the listener on `port` of `lb`. Options: `port` (required), then either
    /// `target_group` (forward to it; HTTPS when `certificate_arn` is given) or
    /// `redirect_to_https: true` (HTTP 301 to port 443). `require_header: #{ name: value }`
    /// (one header; the value a string or a `Secret`) forwards only requests that carry it —
    /// everything else gets HTTP 403 — so only the CloudFront distribution that adds it can
    /// use the load balancer. A listener found again is brought to these settings.
    ///
    /// ```rhai
    /// elb::listener(lb, #{ port: 80, target_group: tg });
    /// elb::listener(lb, #{ port: 443, target_group: tg, certificate_arn: cert });
    /// elb::listener(lb, #{ port: 80, redirect_to_https: true });
    /// elb::listener(lb, #{ port: 80, target_group: tg, require_header: #{ "X-Origin-Verify": secret } });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn listener(
        ctx: NativeCallContext,
        lb: Dynamic,
        options: Map,
    ) -> Result<Listener, Box<EvalAltResult>> {
        const F: &str = "elb::listener";
        let rt = rt(&ctx)?;
        let o: ListenerOptions = decode(F, options)?;
        let port = required(F, "port", o.port)?;
        let cert = o.certificate_arn;
        if let Some(c) = &cert {
            if !c.starts_with("arn:") || !c.contains(":certificate/") {
                return Err(usage_err(format!(
                    "{F}: `{c}` is not an ACM certificate ARN"
                )));
            }
        }
        let action = match (o.target_group, o.redirect_to_https) {
            (Some(tg), false) => ListenerAction::Forward {
                target_group_arn: super::tg_arn(&tg)?,
            },
            (None, true) => ListenerAction::RedirectToHttps,
            _ => {
                return Err(usage_err(format!(
                    "{F}: give exactly one of `target_group` or `redirect_to_https: true`"
                )))
            }
        };
        // With a required header the target is reached only through the rule; the default
        // answers 403.
        let gate = match o.require_header {
            None => None,
            Some(h) => {
                let pairs = crate::primitives::opts::header_pairs(F, h)?;
                let ListenerAction::Forward { target_group_arn } = &action else {
                    return Err(usage_err(format!(
                        "{F}: `require_header` goes with `target_group`"
                    )));
                };
                match <[(String, String); 1]>::try_from(pairs) {
                    Ok([(header, value)]) => Some(HeaderRule {
                        header,
                        value,
                        target_group_arn: target_group_arn.clone(),
                    }),
                    Err(_) => {
                        return Err(usage_err(format!(
                        "{F}: `require_header` is one header: #{{ \"X-Origin-Verify\": secret }}"
                    )))
                    }
                }
            }
        };
        let default = if gate.is_some() {
            ListenerAction::Forbidden
        } else {
            action
        };
        let lb_arn = super::lb_arn(&lb)?;
        let aws = rt.aws()?;
        let logical = format!("port-{port}");
        let tags = rt.tags(&logical);
        let existing = aws
            .elb
            .listeners(&lb_arn)
            .map_err(cloud_err)?
            .into_iter()
            .find(|l| l.port == port);
        let listener = match existing {
            Some(mut l) => {
                rt.adopt(Kind::Listener, &logical, &l.arn, BTreeMap::new())?;
                // A re-run makes the listener what the recipe says: closed to requests without
                // the header, open again once the recipe no longer asks for one, forwarding to
                // the recipe's target group.
                let (wanted, target) = match &default {
                    ListenerAction::Forward { target_group_arn } => {
                        ("forward", Some(target_group_arn.clone()))
                    }
                    ListenerAction::RedirectToHttps => ("redirect", None),
                    ListenerAction::Forbidden => ("fixed-response", None),
                };
                if l.default_action != wanted || l.default_target != target {
                    aws.elb
                        .set_default_action(&l.arn, &default)
                        .map_err(cloud_err)?;
                    rt.record_change(
                        ChangeAction::InPlace,
                        &format!("listener {port}"),
                        &format!("default action {} → {wanted}", l.default_action),
                    );
                    l.default_action = wanted.into();
                    l.default_target = target;
                }
                l
            }
            None => rt.create_recorded(
                Kind::Listener,
                &logical,
                |_t| {
                    aws.elb
                        .create_listener(&lb_arn, port as i32, cert.as_deref(), &default, &tags)
                },
                |l: &Listener| {
                    (
                        l.arn.clone(),
                        BTreeMap::from([("load_balancer".to_string(), lb_arn.clone())]),
                    )
                },
            )?,
        };
        if let Some(rule) = &gate {
            aws.elb
                .ensure_header_rule(&listener.arn, rule, &tags)
                .map_err(cloud_err)?;
        }
        Ok(listener)
    }

    /// Register an instance with a target group on `port` (registering again is harmless).
    ///
    /// ```rhai
    /// elb::register(tg, vm, 5678);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn register(
        ctx: NativeCallContext,
        tg: Dynamic,
        instance: Dynamic,
        port: i64,
    ) -> Result<(), Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let (tg, id) = (super::tg_arn(&tg)?, id_of(&instance, "an instance")?);
        rt.aws()?
            .elb
            .register(&tg, &id, port as i32)
            .map_err(cloud_err)
    }

    /// Remove an instance from a target group (already gone is fine).
    ///
    /// ```rhai
    /// elb::deregister(tg, old_vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn deregister(
        ctx: NativeCallContext,
        tg: Dynamic,
        instance: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let (tg, id) = (super::tg_arn(&tg)?, id_of(&instance, "an instance")?);
        match rt.aws()?.elb.deregister(&tg, &id) {
            Err(e) if !e.is_not_found() && e.code != "InvalidTarget" => Err(cloud_err(e)),
            _ => Ok(()),
        }
    }

    /// Block until the load balancer reports the instance `healthy` in the target group
    /// (timeout 900 s, or `#{ timeout: s }`); returns the state.
    ///
    /// ```rhai
    /// elb::wait_target_healthy(tg, vm, #{ timeout: 900 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_target_healthy(
        ctx: NativeCallContext,
        tg: Dynamic,
        instance: Dynamic,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: WaitOptions = decode("elb::wait_target_healthy", options)?;
        let timeout = Duration::from_secs(o.timeout.unwrap_or(900).max(1) as u64);
        let (tg, id) = (super::tg_arn(&tg)?, id_of(&instance, "an instance")?);
        let aws = rt.aws()?;
        rt.waiting(
            &format!("target {id} healthy behind the load balancer"),
            |tick| {
                poll_until(
                    "elb",
                    &format!("target {id}"),
                    Backoff::new(timeout),
                    tick,
                    || {
                        Ok(match aws.elb.target_health(&tg, &id)? {
                            Some((state, _)) if state == "healthy" => Poll::Ready(state),
                            Some((state, reason)) if reason.is_empty() => Poll::Pending(state),
                            Some((state, reason)) => Poll::Pending(format!("{state} ({reason})")),
                            None => Poll::Pending("not registered".into()),
                        })
                    },
                )
            },
            |s| s.clone(),
        )
    }

    /// Delete a listener (handle or ARN); `false` when it was already gone.
    ///
    /// ```rhai
    /// elb::delete_listener(http);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_listener(
        ctx: NativeCallContext,
        listener: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let arn = super::listener_arn(&listener)?;
        let result = rt.aws()?.elb.delete_listener(&arn);
        rt.settle_delete(Kind::Listener, &arn, result)
    }

    /// Delete a target group (handle or ARN); `false` when it was already gone.
    ///
    /// ```rhai
    /// elb::delete_target_group(tg);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_target_group(
        ctx: NativeCallContext,
        tg: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let arn = super::tg_arn(&tg)?;
        let result = rt.aws()?.elb.delete_target_group(&arn);
        rt.settle_delete(Kind::TargetGroup, &arn, result)
    }

    /// Delete a load balancer (handle or ARN); `false` when it was already gone.
    ///
    /// ```rhai
    /// elb::delete_load_balancer(lb);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_load_balancer(
        ctx: NativeCallContext,
        lb: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let arn = super::lb_arn(&lb)?;
        let result = rt.aws()?.elb.delete_load_balancer(&arn);
        rt.settle_delete(Kind::LoadBalancer, &arn, result)
    }

    /// The instances registered with a target group and their states, as maps
    /// `#{ id, state }` (for reports).
    ///
    /// ```rhai
    /// let health = elb::target_state(tg, vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn target_state(
        ctx: NativeCallContext,
        tg: Dynamic,
        instance: Dynamic,
    ) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let (tg, id) = (super::tg_arn(&tg)?, id_of(&instance, "an instance")?);
        let state = rt.aws()?.elb.target_health(&tg, &id).map_err(cloud_err)?;
        Ok(state
            .into_iter()
            .map(|(s, _)| {
                let mut m = Map::new();
                m.insert("id".into(), id.clone().into());
                m.insert("state".into(), s.into());
                Dynamic::from_map(m)
            })
            .collect())
    }
}
