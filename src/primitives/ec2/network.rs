//! `ec2::` — the network: VPCs, subnets, security groups and their rules.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::super::opts::decode;
use super::super::{id_of, rt, usage_err, ChangeAction};
use crate::cloud::ec2::{IngressRule, SecurityGroup};
use crate::cloud::wait::{poll_until, Backoff, Poll};
use crate::state::Kind;

/// One ingress rule (see `ec2::security_group`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RuleOptions {
    pub(super) port: Option<i64>,
    pub(super) from_port: Option<i64>,
    pub(super) to_port: Option<i64>,
    #[serde(default = "tcp")]
    pub(super) protocol: String,
    pub(super) cidr: Option<String>,
    pub(super) source: Option<Dynamic>,
    pub(super) prefix_list: Option<String>,
    #[serde(default)]
    pub(super) description: String,
}

pub(super) fn tcp() -> String {
    "tcp".into()
}

/// The options of `ec2::security_group`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupOptions {
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) ingress: Array,
}

/// The options of `ec2::security_groups`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct GroupListOptions {
    pub(super) vpc: Option<Dynamic>,
}

/// `#{ port: 5678, cidr: "203.0.113.7/32" }` or `#{ port: 5432, source: sg }`.
pub(super) fn parse_rules(
    func: &'static str,
    rules: Array,
) -> Result<Vec<IngressRule>, Box<EvalAltResult>> {
    rules
        .into_iter()
        .map(|r| {
            let map = r
                .try_cast::<Map>()
                .ok_or_else(|| usage_err(format!("{func}: each ingress rule is a map like #{{ port: 5678, cidr: \"10.0.0.0/16\" }}")))?;
            let o: RuleOptions = decode(func, map)?;
            let port = o.port;
            let from_port = o.from_port.or(port).ok_or_else(|| usage_err(format!("{func}: an ingress rule needs `port` (or `from_port`/`to_port`)")))?;
            let to_port = o.to_port.or(port).unwrap_or(from_port);
            let protocol = o.protocol;
            if !["tcp", "udp", "icmp", "-1"].contains(&protocol.as_str()) {
                return Err(usage_err(format!("{func}: protocol must be tcp, udp, icmp or -1, not `{protocol}`")));
            }
            if !(0..=65535).contains(&from_port) || !(0..=65535).contains(&to_port) || from_port > to_port {
                return Err(usage_err(format!("{func}: invalid port range {from_port}-{to_port}")));
            }
            let cidr = o.cidr;
            // `source: "self"` is the group the rule is added to (known once it exists).
            let source = o.source.map(|v| id_of(&v, "a security group")).transpose()?;
            let prefix_list = o.prefix_list;
            if [cidr.is_some(), source.is_some(), prefix_list.is_some()].iter().filter(|b| **b).count() != 1 {
                return Err(usage_err(format!("{func}: an ingress rule needs exactly one of `cidr`, `source` or `prefix_list`")));
            }
            if let Some(pl) = &prefix_list {
                if !pl.starts_with("pl-") || !pl[3..].chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    return Err(usage_err(format!("{func}: `{pl}` is not a prefix list id (pl-…; ec2::managed_prefix_list finds one by name)")));
                }
            }
            if let Some(c) = &cidr {
                validate_cidr(func, c)?;
            }
            Ok(IngressRule {
                protocol,
                from_port,
                to_port,
                cidr,
                source_sg: source,
                prefix_list,
                description: o.description,
            })
        })
        .collect()
}

/// A group from a handle (which already knows its rules: no describe) or an id (looked up).
pub(super) fn group_of(
    aws: &crate::cloud::Aws,
    group: &Dynamic,
) -> Result<SecurityGroup, Box<EvalAltResult>> {
    match group.clone().try_cast::<SecurityGroup>() {
        Some(sg) => Ok(sg),
        None => {
            let id = id_of(group, "a security group")?;
            aws.ec2
                .security_group(&id)
                .map_err(crate::primitives::cloud_err)
        }
    }
}

/// Rules with `source: "self"` pointed at the group `id`.
pub(super) fn with_self(rules: Vec<IngressRule>, id: &str) -> Vec<IngressRule> {
    rules
        .into_iter()
        .map(|mut r| {
            if r.source_sg.as_deref() == Some("self") {
                r.source_sg = Some(id.to_string());
            }
            r
        })
        .collect()
}

pub(super) fn validate_cidr(func: &str, c: &str) -> Result<(), Box<EvalAltResult>> {
    crate::cidr::parse(c)
        .map(|_| ())
        .map_err(|e| usage_err(format!("{func}: {e}")))
}

/// A group's rules going from what it has to `rules` (`stale` ones revoked): `-tcp/5678 from
/// 0.0.0.0/0, +tcp/5678 from 203.0.113.7/32`, or "" when nothing changes.
pub(super) fn ingress_delta(
    sg: &SecurityGroup,
    rules: &[IngressRule],
    stale: &[IngressRule],
) -> String {
    stale
        .iter()
        .map(|r| format!("-{r}"))
        .chain(
            rules
                .iter()
                .filter(|w| !sg.ingress.iter().any(|r| r.same_grant(w)))
                .map(|r| format!("+{r}")),
        )
        .collect::<Vec<_>>()
        .join(", ")
}

#[export_module]
pub mod api {
    use super::*;
    use crate::cloud::ec2::{SecurityGroup, Vpc};
    use crate::primitives::cloud_err;

    /// The region's default VPC.
    ///
    /// ```rhai
    /// let vpc = ec2::default_vpc();
    /// print(`${vpc.id} ${vpc.cidr}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn default_vpc(ctx: NativeCallContext) -> Result<Vpc, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        rt.aws()?.ec2.default_vpc().map_err(cloud_err)
    }

    /// A VPC by id.
    ///
    /// ```rhai
    /// let vpc = ec2::vpc("vpc-0abc123");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn vpc(ctx: NativeCallContext, id: &str) -> Result<Vpc, Box<EvalAltResult>> {
        rt(&ctx)?.aws()?.ec2.vpc(id).map_err(cloud_err)
    }

    /// The subnets of a VPC (a `Vpc` or its id), sorted by Availability Zone.
    ///
    /// ```rhai
    /// let subnets = ec2::subnets(ec2::default_vpc());
    /// for s in subnets { print(`${s.id} in ${s.az}`); }
    /// ```
    #[rhai_fn(name = "subnets", return_raw)]
    pub fn subnets(ctx: NativeCallContext, vpc: Dynamic) -> Result<Array, Box<EvalAltResult>> {
        let id = id_of(&vpc, "a VPC")?;
        let list = rt(&ctx)?.aws()?.ec2.subnets(Some(&id)).map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Every subnet in the region (of every VPC), sorted by Availability Zone: one request that
    /// needs no VPC id, so it can go out beside `ec2::default_vpc()`.
    ///
    /// ```rhai
    /// let r = parallel(#{ vpc: || ec2::default_vpc(), subnets: || ec2::subnets() });
    /// let mine = r.subnets.filter(|s| s.vpc_id == r.vpc.id);
    /// ```
    #[rhai_fn(name = "subnets", return_raw)]
    pub fn all_subnets(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let list = rt(&ctx)?.aws()?.ec2.subnets(None).map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// The id of an AWS-managed prefix list, by name: for rules that admit an AWS service's
    /// addresses only, e.g. CloudFront reaching a load balancer
    /// (`com.amazonaws.global.cloudfront.origin-facing`). An error when the region has none.
    ///
    /// ```rhai
    /// let cloudfront = ec2::managed_prefix_list("com.amazonaws.global.cloudfront.origin-facing");
    /// let rule = #{ port: 80, prefix_list: cloudfront, description: "CloudFront only" };
    /// ```
    #[rhai_fn(return_raw)]
    pub fn managed_prefix_list(
        ctx: NativeCallContext,
        name: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        match rt.aws()?.ec2.managed_prefix_list(name).map_err(cloud_err)? {
            Some(id) => Ok(id),
            None => Err(usage_err(format!(
                "ec2::managed_prefix_list: the region {} has no AWS-managed prefix list `{name}`",
                rt.region()?
            ))),
        }
    }

    /// Create (or find, on a re-run) the security group `<stack>-<name>` in `vpc`, and make
    /// sure it has the given inbound rules. A group the stack's ledger knows is described by
    /// id; otherwise it is created straight away (a group of that name that exists after all is
    /// adopted). Options: `description`, `ingress` (an array of
    /// rules: `port` or `from_port`/`to_port`, `protocol` (tcp), exactly one of `cidr`,
    /// `source` (another group, or `"self"` for members of this group) or `prefix_list` (a
    /// managed prefix list id), `description`).
    ///
    /// ```rhai
    /// let web = ec2::security_group("web", vpc, #{
    ///     description: "n8n from the office",
    ///     ingress: [ #{ port: 5678, cidr: "203.0.113.7/32", description: "n8n" } ],
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn security_group(
        ctx: NativeCallContext,
        name: &str,
        vpc: Dynamic,
        options: Map,
    ) -> Result<SecurityGroup, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: GroupOptions = decode("ec2::security_group", options)?;
        let description = o
            .description
            .unwrap_or_else(|| format!("geusemaker {} {name}", rt.stack));
        let rules = parse_rules("ec2::security_group", o.ingress)?;
        let vpc_id = id_of(&vpc, "a VPC")?;
        let aws = rt.aws()?;
        let group_name = rt.resource_name(name);
        let attrs = BTreeMap::from([("vpc".to_string(), vpc_id.clone())]);
        let known = match rt.ledger_id(Kind::SecurityGroup, name)? {
            Some(id) => match aws.ec2.security_group(&id) {
                Ok(sg) if sg.vpc_id == vpc_id => Some(sg),
                Ok(_) => None,
                Err(e) if e.is_not_found() => None,
                Err(e) => return Err(cloud_err(e)),
            },
            None => None,
        };
        let sg = match known {
            Some(sg) => sg,
            // CreateSecurityGroup answers a duplicate name with the existing group (adopted).
            None => rt.create_recorded(
                Kind::SecurityGroup,
                name,
                |_token| {
                    aws.ec2.create_security_group(
                        &vpc_id,
                        &group_name,
                        &description,
                        &rt.tags(name),
                    )
                },
                |sg: &SecurityGroup| (sg.id.clone(), attrs.clone()),
            )?,
        };
        if rules.is_empty() {
            return Ok(sg);
        }
        let rules = with_self(rules, &sg.id);
        aws.ec2.authorize_ingress(&sg, &rules).map_err(cloud_err)
    }

    /// Add inbound rules to an existing group (rules it already has are skipped).
    ///
    /// ```rhai
    /// ec2::allow_ingress(efs_sg, [ #{ port: 2049, source: instance_sg, description: "NFS" } ]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn allow_ingress(
        ctx: NativeCallContext,
        group: Dynamic,
        rules: Array,
    ) -> Result<SecurityGroup, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let rules = parse_rules("ec2::allow_ingress", rules)?;
        let aws = rt.aws()?;
        let sg = group_of(aws, &group)?;
        let rules = with_self(rules, &sg.id);
        aws.ec2.authorize_ingress(&sg, &rules).map_err(cloud_err)
    }

    /// Make a group's inbound rules exactly `rules`: missing ones are added, any other rule
    /// (an older allowed range, one added by hand) is revoked and named on the console. What a
    /// re-run uses so that narrowing who may connect takes effect.
    ///
    /// ```rhai
    /// ec2::set_ingress(web, [ #{ port: 5678, cidr: "203.0.113.7/32", description: "n8n" } ]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set_ingress(
        ctx: NativeCallContext,
        group: Dynamic,
        rules: Array,
    ) -> Result<SecurityGroup, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let rules = parse_rules("ec2::set_ingress", rules)?;
        let aws = rt.aws()?;
        let sg = group_of(aws, &group)?;
        let rules = with_self(rules, &sg.id);
        let stale: Vec<IngressRule> = sg
            .ingress
            .iter()
            .filter(|r| !rules.iter().any(|w| w.same_grant(r)))
            .cloned()
            .collect();
        let detail = ingress_delta(&sg, &rules, &stale);
        let existed = !rt.created_this_run(&sg.id)?;
        // Add first, then take away: the allowed clients never lose access in between.
        let mut sg = aws.ec2.authorize_ingress(&sg, &rules).map_err(cloud_err)?;
        if !stale.is_empty() {
            aws.ec2.revoke_rules(&sg.id, &stale).map_err(cloud_err)?;
            sg.ingress
                .retain(|r| !stale.iter().any(|x| x.same_grant(r)));
        }
        if existed && !detail.is_empty() {
            rt.record_change(
                ChangeAction::InPlace,
                &format!("security group {}", sg.name),
                &detail,
            );
        }
        Ok(sg)
    }

    /// What `ec2::set_ingress(group, rules)` would change, without changing it: `[]`, or one
    /// `#{ action: "in_place", resource, detail }` naming the rules revoked (`-`) and added
    /// (`+`). A group this run created has no change (it is new). Only reads.
    ///
    /// ```rhai
    /// for c in ec2::ingress_changes(sgs.app, rules) { ui::info(c.detail); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ingress_changes(
        ctx: NativeCallContext,
        group: Dynamic,
        rules: Array,
    ) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let rules = parse_rules("ec2::ingress_changes", rules)?;
        let sg = group_of(rt.aws()?, &group)?;
        let rules = with_self(rules, &sg.id);
        let stale: Vec<IngressRule> = sg
            .ingress
            .iter()
            .filter(|r| !rules.iter().any(|w| w.same_grant(r)))
            .cloned()
            .collect();
        let detail = ingress_delta(&sg, &rules, &stale);
        if detail.is_empty() || rt.created_this_run(&sg.id)? {
            return Ok(Array::new());
        }
        let mut m = Map::new();
        m.insert("action".into(), "in_place".into());
        m.insert(
            "resource".into(),
            format!("security group {}", sg.name).into(),
        );
        m.insert("detail".into(), detail.into());
        Ok(vec![Dynamic::from_map(m)])
    }

    /// Delete a security group (a handle or id); `false` when it was already gone. While another group (or a network interface
    /// of a terminating instance) still references it, AWS answers DependencyViolation: that
    /// is retried for up to 5 minutes. Already gone is fine.
    ///
    /// ```rhai
    /// ec2::delete_security_group(web);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_security_group(
        ctx: NativeCallContext,
        group: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&group, "a security group")?;
        let aws = rt.aws()?;
        let existed = rt.waiting(
            &format!("security group {id} deleted"),
            |tick| {
                poll_until(
                    "ec2",
                    &format!("security group {id} deletion"),
                    Backoff::new(Duration::from_secs(300)),
                    tick,
                    || match aws.ec2.delete_security_group(&id) {
                        Ok(()) => Ok(Poll::Ready(true)),
                        Err(e) if e.is_not_found() => Ok(Poll::Ready(false)),
                        Err(e) if e.code == "DependencyViolation" => {
                            Ok(Poll::Pending("still in use".into()))
                        }
                        Err(e) => Err(e),
                    },
                )
            },
            |existed| {
                if *existed {
                    "deleted".into()
                } else {
                    "already gone".into()
                }
            },
        )?;
        rt.mark_deleted(Kind::SecurityGroup, &id)?;
        Ok(existed)
    }

    /// Remove every inbound rule of a group (so that groups referencing each other can be
    /// deleted). Returns the group without rules.
    ///
    /// ```rhai
    /// ec2::revoke_ingress(app_sg);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn revoke_ingress(
        ctx: NativeCallContext,
        group: Dynamic,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&group, "a security group")?;
        let aws = rt.aws()?;
        let sg = match aws.ec2.security_group(&id) {
            Ok(sg) => sg,
            Err(e) if e.is_not_found() => return Ok(Dynamic::UNIT),
            Err(e) => return Err(cloud_err(e)),
        };
        aws.ec2.revoke_all_ingress(&sg).map_err(cloud_err)?;
        Ok(Dynamic::from(SecurityGroup {
            ingress: Vec::new(),
            ..sg
        }))
    }

    /// Every VPC of the region (for exploring an account).
    ///
    /// ```rhai
    /// ec2::vpcs()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn vpcs(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let list = rt(&ctx)?.aws()?.ec2.vpcs().map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Security groups, optionally of one VPC: `#{ vpc: vpc }`.
    ///
    /// ```rhai
    /// ec2::security_groups(#{ vpc: ec2::default_vpc() })
    /// ```
    #[rhai_fn(return_raw)]
    pub fn security_groups(
        ctx: NativeCallContext,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let o: GroupListOptions = decode("ec2::security_groups", options)?;
        let vpc = o.vpc.map(|v| id_of(&v, "a VPC")).transpose()?;
        let list = rt(&ctx)?
            .aws()?
            .ec2
            .list_security_groups(vpc.as_deref())
            .map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }
}
