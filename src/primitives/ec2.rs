//! `ec2::` — network discovery, AMIs, security groups, key pairs, instances, spot prices.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys, one_of, required, wait_timeout, WaitOptions};
use super::{id_of, rt, usage_err, ChangeAction, OptionKeys, Runtime};
use crate::cloud::ec2::{IngressRule, Instance, LaunchSpec, SecurityGroup, Volume, VolumeSpec};
use crate::cloud::tags::{NAME_TAG, STACK_TAG};

/// The root volume size an instance was launched with (GiB), tagged on it.
pub const ROOT_GB_TAG: &str = "geusemaker:root-gb";

/// What a stack snapshot is for: `daily` (taken by the instance), `update` (before one).
pub const SNAPSHOT_TAG: &str = "geusemaker:snapshot";
use crate::cloud::wait::{poll_until, Backoff, Poll};
use crate::state::Kind;

pub fn types(engine: &mut Engine) {
    use crate::cloud::ec2::*;
    engine
        .build_type::<Vpc>()
        .build_type::<Subnet>()
        .build_type::<Image>()
        .build_type::<IngressRule>()
        .build_type::<SecurityGroup>()
        .build_type::<KeyPair>()
        .build_type::<Instance>()
        .build_type::<SpotPrice>()
        .build_type::<Volume>()
        .build_type::<InstanceTypeInfo>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "run_instance",
        keys: keys::<RunInstanceOptions>,
    },
    OptionKeys {
        function: "wait_until_running",
        keys: keys::<WaitOptions>,
    },
    OptionKeys {
        function: "security_group",
        keys: keys::<GroupOptions>,
    },
    OptionKeys {
        function: "volume",
        keys: keys::<VolumeCreateOptions>,
    },
    OptionKeys {
        function: "instances",
        keys: keys::<ListOptions>,
    },
    OptionKeys {
        function: "security_groups",
        keys: keys::<GroupListOptions>,
    },
    OptionKeys {
        function: "instance_changes",
        keys: keys::<WantedInstance>,
    },
];

/// One ingress rule (see `ec2::security_group`).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleOptions {
    port: Option<i64>,
    from_port: Option<i64>,
    to_port: Option<i64>,
    #[serde(default = "tcp")]
    protocol: String,
    cidr: Option<String>,
    source: Option<Dynamic>,
    prefix_list: Option<String>,
    #[serde(default)]
    description: String,
}

fn tcp() -> String {
    "tcp".into()
}

/// The options of `ec2::security_group`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupOptions {
    description: Option<String>,
    #[serde(default)]
    ingress: Array,
}

/// The options of `ec2::volume`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeCreateOptions {
    az: Option<String>,
    #[serde(default = "fifty")]
    size_gb: i64,
    #[serde(rename = "type", default = "default_volume_type")]
    volume_type: String,
}

fn fifty() -> i64 {
    50
}

/// The options of `ec2::instances`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ListOptions {
    state: Option<String>,
    tag: Option<String>,
    stack: Option<String>,
}

/// The options of `ec2::security_groups`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct GroupListOptions {
    vpc: Option<Dynamic>,
}

/// What `ec2::instance_changes` compares the instance with.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WantedInstance {
    image: Option<Dynamic>,
    #[serde(default)]
    instance_types: Vec<String>,
    spot: Option<bool>,
    #[serde(default)]
    on_demand_fallback: bool,
    root_volume_gb: Option<i64>,
}

/// `#{ port: 5678, cidr: "203.0.113.7/32" }` or `#{ port: 5432, source: sg }`.
fn parse_rules(func: &'static str, rules: Array) -> Result<Vec<IngressRule>, Box<EvalAltResult>> {
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
fn group_of(aws: &crate::cloud::Aws, group: &Dynamic) -> Result<SecurityGroup, Box<EvalAltResult>> {
    match group.clone().try_cast::<SecurityGroup>() {
        Some(sg) => Ok(sg),
        None => {
            let id = id_of(group, "a security group")?;
            aws.ec2.security_group(&id).map_err(super::cloud_err)
        }
    }
}

/// Rules with `source: "self"` pointed at the group `id`.
fn with_self(rules: Vec<IngressRule>, id: &str) -> Vec<IngressRule> {
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

fn validate_cidr(func: &str, c: &str) -> Result<(), Box<EvalAltResult>> {
    crate::cidr::parse(c)
        .map(|_| ())
        .map_err(|e| usage_err(format!("{func}: {e}")))
}

fn wait_instance(
    rt: &Runtime,
    id: &str,
    timeout: Duration,
    target: &'static str,
) -> Result<Instance, Box<EvalAltResult>> {
    let aws = rt.aws()?;
    rt.waiting(
        &format!("instance {id} {target}"),
        |tick| {
            poll_until(
                "ec2",
                &format!("instance {id} to be {target}"),
                Backoff::new(timeout),
                tick,
                || {
                    let i = match aws.ec2.instance(id) {
                        Ok(i) => i,
                        Err(e) if target == "terminated" && e.is_not_found() => {
                            return Ok(Poll::Ready(Instance {
                                state: "terminated".into(),
                                ..placeholder(id)
                            }))
                        }
                        Err(e) => return Err(e),
                    };
                    Ok(match (target, i.state.as_str()) {
                        (t, s) if t == s => Poll::Ready(i),
                        ("running", "pending") => Poll::Pending("pending".into()),
                        ("running", other) => Poll::Failed(other.to_string()),
                        (_, other) => Poll::Pending(other.to_string()),
                    })
                },
            )
        },
        |i: &Instance| match (&i.public_ip, &i.private_ip) {
            (Some(ip), _) | (None, Some(ip)) if target == "running" => format!("running at {ip}"),
            _ => i.state.clone(),
        },
    )
}

/// The stack's live instances named `<stack>-<name>`.
fn live_instances(rt: &Runtime, name: &str) -> Result<Vec<Instance>, Box<EvalAltResult>> {
    rt.aws()?
        .ec2
        .find_instances(&[
            (STACK_TAG.into(), rt.stack.clone()),
            (NAME_TAG.into(), rt.resource_name(name)),
        ])
        .map_err(super::cloud_err)
}

/// The stack's volumes named `<stack>-<name>` (not deleted).
fn stack_volumes(rt: &Runtime, name: &str) -> Result<Vec<Volume>, Box<EvalAltResult>> {
    rt.aws()?
        .ec2
        .find_volumes(&[
            (STACK_TAG.into(), rt.stack.clone()),
            (NAME_TAG.into(), rt.resource_name(name)),
        ])
        .map_err(super::cloud_err)
}

/// A group's rules going from what it has to `rules` (`stale` ones revoked): `-tcp/5678 from
/// 0.0.0.0/0, +tcp/5678 from 203.0.113.7/32`, or "" when nothing changes.
fn ingress_delta(sg: &SecurityGroup, rules: &[IngressRule], stale: &[IngressRule]) -> String {
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

fn placeholder(id: &str) -> Instance {
    Instance {
        id: id.into(),
        name: String::new(),
        state: String::new(),
        instance_type: String::new(),
        az: String::new(),
        subnet_id: String::new(),
        vpc_id: String::new(),
        image_id: String::new(),
        private_ip: None,
        public_ip: None,
        public_dns: None,
        lifecycle: String::new(),
        imdsv2_required: false,
        instance_profile_arn: None,
        launch_time: None,
        state_reason: None,
        spot_request_id: None,
        security_groups: Vec::new(),
        tags: Default::default(),
    }
}

fn wait_volume(
    rt: &Runtime,
    id: &str,
    target: &'static str,
    instance: Option<&str>,
) -> Result<Volume, Box<EvalAltResult>> {
    let aws = rt.aws()?;
    let what = match instance {
        Some(i) => format!("volume {id} attached to {i}"),
        None => format!("volume {id} {target}"),
    };
    rt.waiting(
        &what,
        |tick| {
            poll_until(
                "ec2",
                &what,
                Backoff::new(Duration::from_secs(300)),
                tick,
                || {
                    let v = aws.ec2.volume(id)?;
                    Ok(match (target, v.state.as_str()) {
                        // Created: free to attach, or already attached (a re-run).
                        ("available", "available" | "in-use") => Poll::Ready(v),
                        ("detached", "available") => Poll::Ready(v),
                        ("in-use", "in-use") if v.attached_to.as_deref() == instance => {
                            Poll::Ready(v)
                        }
                        (_, "creating" | "available" | "in-use") => Poll::Pending(v.state),
                        (_, other) => Poll::Failed(other.to_string()),
                    })
                },
            )
        },
        |v: &Volume| match &v.device {
            Some(d) => format!("{} at {d}", v.state),
            None => v.state.clone(),
        },
    )
}

/// The options of `ec2::run_instance` (see its documentation).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RunInstanceOptions {
    image: Option<Dynamic>,
    #[serde(default = "default_instance_type")]
    instance_type: String,
    subnet: Option<Dynamic>,
    #[serde(default)]
    security_groups: Vec<Dynamic>,
    key_pair: Option<Dynamic>,
    user_data: Option<String>,
    #[serde(default)]
    spot: bool,
    max_price: Option<String>,
    instance_profile: Option<Dynamic>,
    #[serde(default = "default_root_volume_gb")]
    root_volume_gb: i64,
    #[serde(default)]
    volumes: Vec<Dynamic>,
    #[serde(default)]
    tags: BTreeMap<String, Dynamic>,
    #[serde(default)]
    replace: bool,
}

fn default_instance_type() -> String {
    "t3.medium".into()
}

fn default_root_volume_gb() -> i64 {
    30
}

/// One of `ec2::run_instance`'s extra `volumes`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct VolumeOptions {
    device: Option<String>,
    size_gb: Option<i64>,
    #[serde(rename = "type", default = "default_volume_type")]
    volume_type: String,
    #[serde(default = "yes")]
    delete_on_termination: bool,
    #[serde(default = "yes")]
    encrypted: bool,
}

fn default_volume_type() -> String {
    "gp3".into()
}

fn yes() -> bool {
    true
}

#[export_module]
pub mod api {
    use crate::cloud::ec2::{
        Image, Instance, KeyPair, SecurityGroup, SpotPrice, Volume, VolumeRequest, Vpc,
    };
    use crate::primitives::{cloud_err, state_err};

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

    /// The latest Amazon Linux 2023 AMI for x86_64, from the public SSM parameter (falling
    /// back to DescribeImages).
    ///
    /// ```rhai
    /// let ami = ec2::latest_al2023_ami();
    /// ```
    #[rhai_fn(name = "latest_al2023_ami", return_raw)]
    pub fn latest_al2023_ami(ctx: NativeCallContext) -> Result<Image, Box<EvalAltResult>> {
        latest_al2023_ami_arch(ctx, "x86_64")
    }

    /// The latest Amazon Linux 2023 AMI for `arch`: `"x86_64"` or `"arm64"`.
    ///
    /// ```rhai
    /// let ami = ec2::latest_al2023_ami("arm64");
    /// ```
    #[rhai_fn(name = "latest_al2023_ami", return_raw)]
    pub fn latest_al2023_ami_arch(
        ctx: NativeCallContext,
        arch: &str,
    ) -> Result<Image, Box<EvalAltResult>> {
        if !["x86_64", "arm64"].contains(&arch) {
            return Err(usage_err(format!(
                "ec2::latest_al2023_ami: arch must be \"x86_64\" or \"arm64\", not \"{arch}\""
            )));
        }
        rt(&ctx)?.aws()?.ec2.latest_al2023(arch).map_err(cloud_err)
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

    /// Create (or find) the key pair `<stack>-<name>` (ed25519). A newly created private key
    /// is saved under `$GEUSEMAKER_HOME/keys/` with mode 0600; `key.private_key_path` says where.
    ///
    /// ```rhai
    /// let key = ec2::key_pair("admin");
    /// ui::info(`ssh key: ${key.private_key_path}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn key_pair(ctx: NativeCallContext, name: &str) -> Result<KeyPair, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let key_name = rt.resource_name(name);
        let path = rt.home.keys_dir().join(format!("{key_name}.pem"));
        let path_str = path.to_string_lossy().to_string();
        if let Some(mut k) = aws.ec2.find_key_pair(&key_name).map_err(cloud_err)? {
            rt.adopt(Kind::KeyPair, name, &k.name, BTreeMap::new())?;
            k.private_key_path = path.exists().then_some(path_str);
            return Ok(k);
        }
        let (mut key, material) = rt.create_recorded(
            Kind::KeyPair,
            name,
            |_token| aws.ec2.create_key_pair(&key_name, &rt.tags(name)),
            |(k, _): &(KeyPair, String)| {
                (
                    k.name.clone(),
                    BTreeMap::from([("key_pair_id".to_string(), k.id.clone())]),
                )
            },
        )?;
        rt.home.ensure().map_err(state_err)?;
        crate::state::write_atomic(&path, material.as_bytes()).map_err(state_err)?;
        key.private_key_path = Some(path_str);
        Ok(key)
    }

    /// Import a public key as the key pair `<stack>-<name>` (or find it on a re-run).
    ///
    /// ```rhai
    /// let key = ec2::import_key_pair("admin", "ssh-ed25519 AAAA… me@laptop");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn import_key_pair(
        ctx: NativeCallContext,
        name: &str,
        public_key: &str,
    ) -> Result<KeyPair, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let key_name = rt.resource_name(name);
        if let Some(k) = aws.ec2.find_key_pair(&key_name).map_err(cloud_err)? {
            rt.adopt(Kind::KeyPair, name, &k.name, BTreeMap::new())?;
            return Ok(k);
        }
        rt.create_recorded(
            Kind::KeyPair,
            name,
            |_token| {
                aws.ec2
                    .import_key_pair(&key_name, public_key, &rt.tags(name))
            },
            |k: &KeyPair| (k.name.clone(), BTreeMap::new()),
        )
    }

    /// Delete a key pair (a handle or its name) and its saved private key; `false` when it was
    /// already gone.
    ///
    /// ```rhai
    /// ec2::delete_key_pair(key);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_key_pair(
        ctx: NativeCallContext,
        key: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let name = id_of(&key, "a key pair")?;
        let result = rt.aws()?.ec2.delete_key_pair(&name);
        let _ = std::fs::remove_file(rt.home.keys_dir().join(format!("{name}.pem")));
        rt.settle_delete(Kind::KeyPair, &name, result)
    }

    /// Launch the instance `<stack>-<name>` and return at once (state `pending`); wait with
    /// `ec2::wait_until_running`. On a re-run, a live instance with that name is returned
    /// instead of launching another (after `ec2::find_instance(name)` found none in this run,
    /// it is not looked for again). IMDSv2 is always required.
    ///
    /// Options: `image` (required), `instance_type` (t3.medium), `subnet` (required),
    /// `security_groups` (array), `key_pair`, `user_data` (script text), `spot` (false),
    /// `max_price`, `instance_profile`, `root_volume_gb` (30), `volumes` (array of
    /// `#{ device, size_gb, type ("gp3"), delete_on_termination (true), encrypted (true) }`),
    /// `tags` (map of extra tags, e.g. a fingerprint of what the instance runs), `replace`
    /// (true: launch even though a live one exists — the new half of a replacement).
    ///
    /// ```rhai
    /// let vm = ec2::run_instance("app", #{
    ///     image: ec2::latest_al2023_ami(),
    ///     instance_type: "t3.medium",
    ///     subnet: subnets[0],
    ///     security_groups: [web],
    ///     spot: true,
    ///     instance_profile: profile,
    ///     user_data: script,
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn run_instance(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<Instance, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        const F: &str = "ec2::run_instance";
        let o: RunInstanceOptions = decode(F, options)?;
        let image_id = id_of(&required(F, "image", o.image)?, "an image")?;
        let subnet_id = id_of(&required(F, "subnet", o.subnet)?, "a subnet")?;
        let instance_type = o.instance_type;
        let security_group_ids = o
            .security_groups
            .iter()
            .map(|g| id_of(g, "a security group"))
            .collect::<Result<Vec<_>, _>>()?;
        let key_name = o.key_pair.map(|k| id_of(&k, "a key pair")).transpose()?;
        let user_data = o.user_data;
        if let Some(script) = &user_data {
            // Sent gzipped when it is larger than EC2 takes (cloud-init unpacks it).
            if let Err(packed) = crate::boot::user_data_payload(script) {
                return Err(usage_err(format!(
                    "{F}: user_data is over EC2's 16 KiB limit even gzipped ({} bytes, {packed} compressed)",
                    script.len()
                )));
            }
        }
        let spot = o.spot;
        let max_price = o.max_price;
        let instance_profile = o
            .instance_profile
            .map(|p| id_of(&p, "an instance profile"))
            .transpose()?;
        let root_gb = o.root_volume_gb;
        let mut volumes = vec![VolumeSpec {
            device: "/dev/xvda".into(),
            size_gb: root_gb as i32,
            volume_type: "gp3".into(),
            delete_on_termination: true,
            encrypted: true,
        }];
        for v in o.volumes {
            let map = v
                .try_cast::<Map>()
                .ok_or_else(|| usage_err(format!("{F}: each volume is a map")))?;
            let vo: VolumeOptions = decode(F, map)?;
            volumes.push(VolumeSpec {
                device: required(F, "device", vo.device)?,
                size_gb: vo
                    .size_gb
                    .ok_or_else(|| usage_err(format!("{F}: a volume needs `size_gb`")))?
                    as i32,
                volume_type: vo.volume_type,
                delete_on_termination: vo.delete_on_termination,
                encrypted: vo.encrypted,
            });
        }

        let extra_tags = o.tags;
        let replace = o.replace;
        let aws = rt.aws()?;
        let mut tags = rt.tags(name);
        for (k, v) in extra_tags {
            if k.starts_with("aws:") || k.starts_with("geusemaker:stack") || k == "Name" {
                return Err(usage_err(format!(
                    "{F}: tag `{k}` is not the recipe's to set"
                )));
            }
            tags.extra.insert(k.to_string(), v.to_string());
        }
        // What the instance got at launch and cannot change later: a re-run compares it.
        tags.extra
            .insert(ROOT_GB_TAG.to_string(), root_gb.to_string());
        let alive = if replace || rt.known_absent(Kind::Instance, name) {
            Vec::new()
        } else {
            live_instances(&rt, name)?
        };
        if let Some(i) = alive.into_iter().next() {
            rt.adopt(
                Kind::Instance,
                name,
                &i.id,
                BTreeMap::from([("az".to_string(), i.az.clone())]),
            )?;
            rt.ui.info(&format!(
                "instance {name}: already running as {} ({})",
                i.id, i.state
            ));
            return Ok(i);
        }
        let i = rt.create_recorded(
            Kind::Instance,
            name,
            |token| {
                aws.ec2.run_instance(&LaunchSpec {
                    image_id: image_id.clone(),
                    instance_type: instance_type.clone(),
                    subnet_id: subnet_id.clone(),
                    security_group_ids: security_group_ids.clone(),
                    key_name: key_name.clone(),
                    user_data: user_data.clone(),
                    spot,
                    max_price: max_price.clone(),
                    instance_profile: instance_profile.clone(),
                    volumes: volumes.clone(),
                    client_token: token.to_string(),
                    tags: tags.clone(),
                })
            },
            |i: &Instance| {
                (
                    i.id.clone(),
                    BTreeMap::from([
                        ("az".to_string(), i.az.clone()),
                        ("lifecycle".to_string(), i.lifecycle.clone()),
                        ("instance_type".to_string(), i.instance_type.clone()),
                    ]),
                )
            },
        )?;
        rt.ui.info(&format!(
            "instance {name}: launched {} ({} {})",
            i.id, i.instance_type, i.lifecycle
        ));
        Ok(i)
    }

    /// The stack's live instance `<stack>-<name>` (pending, running, stopping or stopped), or
    /// `()`. Asked early, beside other work, it spares `ec2::run_instance` its own lookup.
    ///
    /// ```rhai
    /// let earlier = ec2::find_instance("app");
    /// if earlier != () { ui::info(`still running: ${earlier.id}`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn find_instance(
        ctx: NativeCallContext,
        name: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        match live_instances(&rt, name)?.into_iter().next() {
            Some(i) => Ok(Dynamic::from(i)),
            None => {
                rt.note_absent(Kind::Instance, name);
                Ok(Dynamic::UNIT)
            }
        }
    }

    /// Every live instance `<stack>-<name>` (pending, running, stopping or stopped): more than
    /// one only in the middle of a replacement.
    ///
    /// ```rhai
    /// for vm in ec2::find_instances("app") { ui::info(vm.id); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn find_instances(ctx: NativeCallContext, name: &str) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        Ok(live_instances(&rt, name)?
            .into_iter()
            .map(Dynamic::from)
            .collect())
    }

    /// A volume, described now (by handle or id).
    ///
    /// ```rhai
    /// let v = ec2::describe_volume(data);
    /// if v.attached_to == () { ui::info("detached"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn describe_volume(
        ctx: NativeCallContext,
        volume: Dynamic,
    ) -> Result<Volume, Box<EvalAltResult>> {
        let id = id_of(&volume, "a volume")?;
        rt(&ctx)?.aws()?.ec2.volume(&id).map_err(cloud_err)
    }

    /// An instance, described now (by handle or id).
    ///
    /// ```rhai
    /// let vm = ec2::instance("i-0abc123");
    /// print(vm.state);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instance(
        ctx: NativeCallContext,
        instance: Dynamic,
    ) -> Result<Instance, Box<EvalAltResult>> {
        let id = id_of(&instance, "an instance")?;
        rt(&ctx)?.aws()?.ec2.instance(&id).map_err(cloud_err)
    }

    /// Block until the instance is `running` (default timeout 600 s); returns it described
    /// again (with its IP addresses).
    ///
    /// ```rhai
    /// vm = ec2::wait_until_running(vm);
    /// ```
    #[rhai_fn(name = "wait_until_running", return_raw)]
    pub fn wait_until_running(
        ctx: NativeCallContext,
        instance: Dynamic,
    ) -> Result<Instance, Box<EvalAltResult>> {
        wait_until_running_opts(ctx, instance, Map::new())
    }

    /// Like `wait_until_running(instance)`, with `#{ timeout: seconds }`.
    ///
    /// ```rhai
    /// vm = ec2::wait_until_running(vm, #{ timeout: 300 });
    /// ```
    #[rhai_fn(name = "wait_until_running", return_raw)]
    pub fn wait_until_running_opts(
        ctx: NativeCallContext,
        instance: Dynamic,
        options: Map,
    ) -> Result<Instance, Box<EvalAltResult>> {
        let timeout = wait_timeout("ec2::wait_until_running", options, 600)?;
        let id = id_of(&instance, "an instance")?;
        let rt = rt(&ctx)?;
        wait_instance(&rt, &id, timeout, "running")
    }

    /// Ask EC2 to terminate the instance; returns at once: `true`, or `false` when it was
    /// already gone.
    ///
    /// ```rhai
    /// ec2::terminate(vm);
    /// ec2::wait_until_terminated(vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn terminate(
        ctx: NativeCallContext,
        instance: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        match rt.aws()?.ec2.terminate_instance(&id) {
            Ok(previous) => Ok(previous != "terminated"),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(cloud_err(e)),
        }
    }

    /// Block until the instance is `terminated` (default timeout 600 s) and mark it deleted
    /// in the ledger.
    ///
    /// ```rhai
    /// ec2::wait_until_terminated(vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_until_terminated(
        ctx: NativeCallContext,
        instance: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        wait_instance(&rt, &id, Duration::from_secs(600), "terminated")?;
        rt.mark_deleted(Kind::Instance, &id)
    }

    /// What differs between the live instance `vm` and what the recipe asks, each as
    /// `#{ action, resource, detail }` (empty: nothing). `want`: `image`, `instance_types`
    /// (the first is asked for, the rest are acceptable fallbacks), `spot`,
    /// `on_demand_fallback`, `root_volume_gb`. An image, a root volume or a market that
    /// differs is `"replace"` (the instance gets them only at launch); another type is
    /// `"restart"` for an on-demand instance (stop, change, start: same disks, same address
    /// inside the VPC) and `"replace"` for a spot one (AWS cannot change it). Only reads.
    ///
    /// ```rhai
    /// for c in ec2::instance_changes(vm, #{ image: ami, instance_types: ["t3.large"], spot: true }) {
    ///     ui::info(`${c.action}: ${c.detail}`);
    /// }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instance_changes(vm: Instance, want: Map) -> Result<Array, Box<EvalAltResult>> {
        const F: &str = "ec2::instance_changes";
        let o: WantedInstance = decode(F, want)?;
        let image = o.image.map(|i| id_of(&i, "an image")).transpose()?;
        let types = o.instance_types;
        let spot = o.spot;
        let fallback = o.on_demand_fallback;
        let root_gb = o.root_volume_gb;
        let change = |action: &str, detail: String| -> Dynamic {
            let mut m = Map::new();
            m.insert("action".into(), action.into());
            m.insert("resource".into(), format!("instance {}", vm.name).into());
            m.insert("detail".into(), detail.into());
            Dynamic::from_map(m)
        };
        let mut out = Array::new();
        if let Some(image) = image.filter(|i| *i != vm.image_id) {
            out.push(change(
                "replace",
                format!("image {} → {image}", vm.image_id),
            ));
        }
        match spot {
            Some(true) if vm.lifecycle != "spot" && !fallback => out.push(change(
                "replace",
                "on-demand → spot (on_demand_fallback is off)".into(),
            )),
            Some(false) if vm.lifecycle == "spot" => {
                out.push(change("replace", "spot → on-demand".into()))
            }
            _ => {}
        }
        if let Some(first) = types.first() {
            if !types.contains(&vm.instance_type) {
                let how = if vm.lifecycle == "spot" {
                    "replace"
                } else {
                    "restart"
                };
                out.push(change(how, format!("{} → {first}", vm.instance_type)));
            }
        }
        if let Some(gb) = root_gb {
            if let Some(had) = vm.tags.get(ROOT_GB_TAG).filter(|h| **h != gb.to_string()) {
                out.push(change(
                    "replace",
                    format!("root volume {had} GiB → {gb} GiB"),
                ));
            }
        }
        Ok(out)
    }

    /// Ask EC2 to stop the instance; returns at once (`false` when it was stopped already).
    /// Its EBS volumes stay; a spot instance cannot be stopped this way (AWS refuses).
    ///
    /// ```rhai
    /// ec2::stop(vm);
    /// vm = ec2::wait_until_stopped(vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stop(ctx: NativeCallContext, instance: Dynamic) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        let before = rt.aws()?.ec2.stop_instance(&id).map_err(cloud_err)?;
        Ok(!matches!(before.as_str(), "stopped" | "stopping"))
    }

    /// Block until the instance is `stopped` (timeout 600 s); returns it described again.
    ///
    /// ```rhai
    /// vm = ec2::wait_until_stopped(vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_until_stopped(
        ctx: NativeCallContext,
        instance: Dynamic,
    ) -> Result<Instance, Box<EvalAltResult>> {
        let id = id_of(&instance, "an instance")?;
        let rt = rt(&ctx)?;
        wait_instance(&rt, &id, Duration::from_secs(600), "stopped")
    }

    /// Ask EC2 to start a stopped instance; returns at once. Wait with
    /// `ec2::wait_until_running`.
    ///
    /// ```rhai
    /// ec2::start(vm);
    /// vm = ec2::wait_until_running(vm);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn start(ctx: NativeCallContext, instance: Dynamic) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        let before = rt.aws()?.ec2.start_instance(&id).map_err(cloud_err)?;
        Ok(!matches!(before.as_str(), "running" | "pending"))
    }

    /// Change the type of a stopped instance (start it again with `ec2::start`).
    ///
    /// ```rhai
    /// ec2::set_instance_type(vm, "t3.large");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set_instance_type(
        ctx: NativeCallContext,
        instance: Dynamic,
        instance_type: &str,
    ) -> Result<(), Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        rt.aws()?
            .ec2
            .set_instance_type(&id, instance_type)
            .map_err(cloud_err)
    }

    /// Add or overwrite tags (a map) on an instance, volume or other EC2 resource. The
    /// stack's own tags (`geusemaker:stack`, `Name`) and `aws:` ones are refused.
    ///
    /// ```rhai
    /// ec2::set_tags(vm, #{ "geusemaker:services": fp });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set_tags(
        ctx: NativeCallContext,
        resource: Dynamic,
        tags: Map,
    ) -> Result<(), Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&resource, "a resource")?;
        let mut pairs = Vec::new();
        for (k, v) in tags {
            if k.starts_with("aws:") || k.starts_with("geusemaker:stack") || k == "Name" {
                return Err(usage_err(format!(
                    "ec2::set_tags: tag `{k}` is not the recipe's to set"
                )));
            }
            pairs.push((k.to_string(), v.to_string()));
        }
        rt.aws()?.ec2.set_tags(&id, &pairs).map_err(cloud_err)
    }

    /// Detach a volume from the instance it is attached to; returns at once (`false` when it
    /// was not attached). Wait with `ec2::wait_volume_detached`.
    ///
    /// ```rhai
    /// ec2::detach_volume(data);
    /// data = ec2::wait_volume_detached(data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn detach_volume(
        ctx: NativeCallContext,
        volume: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&volume, "a volume")?;
        let aws = rt.aws()?;
        let v = aws.ec2.volume(&id).map_err(cloud_err)?;
        let (Some(instance), Some(device)) = (v.attached_to.as_deref(), v.device.as_deref()) else {
            return Ok(false);
        };
        aws.ec2
            .detach_volume(&id, instance, device)
            .map_err(cloud_err)?;
        Ok(true)
    }

    /// Block until the volume is detached (`available`); returns it described again.
    ///
    /// ```rhai
    /// data = ec2::wait_volume_detached(data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_volume_detached(
        ctx: NativeCallContext,
        volume: Dynamic,
    ) -> Result<Volume, Box<EvalAltResult>> {
        let id = id_of(&volume, "a volume")?;
        let rt = rt(&ctx)?;
        wait_volume(&rt, &id, "detached", None)
    }

    /// Start an EBS snapshot of the stack's volume, tagged `geusemaker:snapshot=<kind>` (and
    /// the stack's tags); returns its id at once (the snapshot is of this moment, it completes
    /// in the background). `destroy` with `delete_data` removes it; the instance's own daily
    /// snapshots (kind `daily`) are pruned by the instance.
    ///
    /// ```rhai
    /// let before = ec2::snapshot(data, "update");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn snapshot(
        ctx: NativeCallContext,
        volume: Dynamic,
        kind: &str,
    ) -> Result<String, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&volume, "a volume")?;
        if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_lowercase() || c == '-') {
            return Err(usage_err(format!(
                "ec2::snapshot: kind `{kind}` must be lower-case letters and dashes"
            )));
        }
        let mut tags = rt.tags(&format!("data-{kind}"));
        tags.extra
            .insert(SNAPSHOT_TAG.to_string(), kind.to_string());
        let snap = rt
            .aws()?
            .ec2
            .create_snapshot(&id, &format!("geusemaker {} {kind}", rt.stack), &tags)
            .map_err(cloud_err)?;
        rt.ui.info(&format!("snapshot {snap} of {id} ({kind})"));
        Ok(snap)
    }

    /// The stack's snapshots of one kind (`"update"`, `"daily"`), oldest first.
    ///
    /// ```rhai
    /// let older = ec2::snapshots("update");
    /// ```
    #[rhai_fn(name = "snapshots", return_raw)]
    pub fn snapshots_of(ctx: NativeCallContext, kind: &str) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let tags = [
            (STACK_TAG.to_string(), rt.stack.clone()),
            (SNAPSHOT_TAG.to_string(), kind.to_string()),
        ];
        Ok(rt
            .aws()?
            .ec2
            .find_snapshots(&tags)
            .map_err(cloud_err)?
            .into_iter()
            .map(|(id, _)| Dynamic::from(id))
            .collect())
    }

    /// The stack's EBS volume `<stack>-<name>` if it exists (any state but deleted), else `()`.
    /// Recipes use it to put a replacement instance in the volume's Availability Zone.
    ///
    /// ```rhai
    /// let existing = ec2::find_volume("data");
    /// if existing != () { ui::info(`data volume in ${existing.az}`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn find_volume(ctx: NativeCallContext, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        match stack_volumes(&rt, name)?.into_iter().next() {
            Some(v) => Ok(Dynamic::from(v)),
            None => {
                rt.note_absent(Kind::Volume, name);
                Ok(Dynamic::UNIT)
            }
        }
    }

    /// Create (or find, on a re-run) the encrypted EBS volume `<stack>-<name>`; returns at once.
    /// It is independent of any instance, so it survives instance loss; attach it with
    /// `ec2::attach_volume`. Options: `az` (required), `size_gb` (50), `type` ("gp3").
    /// After `ec2::find_volume(name)` found nothing in this run, it is not looked for again.
    ///
    /// ```rhai
    /// let data = ec2::volume("data", #{ az: vm.az, size_gb: 50 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn volume(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<Volume, Box<EvalAltResult>> {
        const F: &str = "ec2::volume";
        let rt = rt(&ctx)?;
        let o: VolumeCreateOptions = decode(F, options)?;
        let az = required(F, "az", o.az)?;
        let size_gb = o.size_gb;
        if !(1..=16_384).contains(&size_gb) {
            return Err(usage_err(format!("{F}: size_gb must be 1..16384")));
        }
        let volume_type = o.volume_type;
        let aws = rt.aws()?;
        let tags = rt.tags(name);
        let found = if rt.known_absent(Kind::Volume, name) {
            Vec::new()
        } else {
            stack_volumes(&rt, name)?
        };
        if let Some(v) = found.into_iter().next() {
            if v.az != az {
                return Err(usage_err(format!(
                    "{F}: volume {} holds this stack's data in {}, not {az}; launch the instance in {} (ec2::find_volume tells where)",
                    v.id, v.az, v.az
                )));
            }
            rt.adopt(
                Kind::Volume,
                name,
                &v.id,
                BTreeMap::from([("az".to_string(), v.az.clone())]),
            )?;
            return Ok(v);
        }
        rt.create_recorded(
            Kind::Volume,
            name,
            |token| {
                aws.ec2.create_volume(&VolumeRequest {
                    az: az.clone(),
                    size_gb: size_gb as i32,
                    volume_type: volume_type.clone(),
                    client_token: token.to_string(),
                    tags: tags.clone(),
                })
            },
            |v: &Volume| {
                (
                    v.id.clone(),
                    BTreeMap::from([("az".to_string(), v.az.clone())]),
                )
            },
        )
    }

    /// Block until the volume is created: `available`, or already `in-use` (timeout 300 s).
    /// A handle that already says `available` (the create's own answer) is returned as it is,
    /// without asking AWS again.
    ///
    /// ```rhai
    /// data = ec2::wait_volume_available(data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_volume_available(
        ctx: NativeCallContext,
        volume: Dynamic,
    ) -> Result<Volume, Box<EvalAltResult>> {
        if let Some(v) = volume.clone().try_cast::<Volume>() {
            if v.state == "available" {
                return Ok(v);
            }
        }
        let id = id_of(&volume, "a volume")?;
        let rt = rt(&ctx)?;
        wait_volume(&rt, &id, "available", None)
    }

    /// Attach the volume to the instance as `device` (e.g. "/dev/sdf") and wait until it is
    /// in use there. Already attached to that instance: nothing to do.
    ///
    /// ```rhai
    /// data = ec2::attach_volume(data, vm, "/dev/sdf");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn attach_volume(
        ctx: NativeCallContext,
        volume: Dynamic,
        instance: Dynamic,
        device: &str,
    ) -> Result<Volume, Box<EvalAltResult>> {
        const F: &str = "ec2::attach_volume";
        let rt = rt(&ctx)?;
        let vol_id = id_of(&volume, "a volume")?;
        let inst_id = id_of(&instance, "an instance")?;
        if !device.starts_with("/dev/sd") && !device.starts_with("/dev/xvd") {
            return Err(usage_err(format!(
                "{F}: device must look like /dev/sdf, not `{device}`"
            )));
        }
        let aws = rt.aws()?;
        // A handle that the create (or a wait) just returned as `available` is attached
        // straight away; anything else is described first.
        let fresh = volume
            .clone()
            .try_cast::<Volume>()
            .filter(|v| v.state == "available" && v.attached_to.is_none());
        let v = match fresh {
            Some(v) => v,
            None => aws.ec2.volume(&vol_id).map_err(cloud_err)?,
        };
        let in_use_elsewhere = |other: &str| {
            usage_err(format!(
                "{F}: volume {vol_id} is attached to {other}; detach it (or terminate that instance) first"
            ))
        };
        match v.attached_to.as_deref() {
            Some(i) if i == inst_id => return Ok(v),
            Some(other) => return Err(in_use_elsewhere(other)),
            None => {}
        }
        let answered = match aws.ec2.attach_volume(&vol_id, &inst_id, device) {
            Ok(state) => state,
            Err(e) if e.code.contains("InUse") => {
                // The handle was stale: say where the volume is.
                let now = aws.ec2.volume(&vol_id).map_err(cloud_err)?;
                return Err(match now.attached_to.as_deref() {
                    Some(other) => in_use_elsewhere(other),
                    None => cloud_err(e),
                });
            }
            Err(e) => return Err(cloud_err(e)),
        };
        if answered == "attached" {
            // Nothing left to wait for.
            let mut v = v;
            v.state = "in-use".into();
            v.attached_to = Some(inst_id);
            v.device = Some(device.to_string());
            return Ok(v);
        }
        wait_volume(&rt, &vol_id, "in-use", Some(&inst_id))
    }

    /// The stack's EBS snapshots (the daily ones of its data volume, taken by the instance),
    /// oldest first: ids.
    ///
    /// ```rhai
    /// for id in ec2::snapshots() { print(id); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn snapshots(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let tags = [(crate::cloud::tags::STACK_TAG.to_string(), rt.stack.clone())];
        Ok(rt
            .aws()?
            .ec2
            .find_snapshots(&tags)
            .map_err(cloud_err)?
            .into_iter()
            .map(|(id, _)| Dynamic::from(id))
            .collect())
    }

    /// Delete a snapshot (data backups: recipes keep this behind the data confirmation).
    ///
    /// ```rhai
    /// ec2::delete_snapshot("snap-0123456789abcdef0");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_snapshot(ctx: NativeCallContext, id: &str) -> Result<(), Box<EvalAltResult>> {
        if !id.starts_with("snap-") {
            return Err(usage_err(format!(
                "ec2::delete_snapshot: `{id}` is not a snapshot id"
            )));
        }
        rt(&ctx)?.aws()?.ec2.delete_snapshot(id).map_err(cloud_err)
    }

    /// Delete a volume (its data is lost: recipes keep this behind a confirmation); `false` when
    /// it was already gone.
    ///
    /// ```rhai
    /// ec2::delete_volume(data);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_volume(
        ctx: NativeCallContext,
        volume: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&volume, "a volume")?;
        let result = rt.aws()?.ec2.delete_volume(&id);
        rt.settle_delete(Kind::Volume, &id, result)
    }

    /// What an instance type offers in this region (vCPUs, memory, GPUs); an error naming the
    /// type when the region does not know it.
    ///
    /// ```rhai
    /// let info = ec2::instance_type_info("g4dn.xlarge");
    /// if info.gpus == 0 { throw "not a GPU type"; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instance_type_info(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<crate::cloud::ec2::InstanceTypeInfo, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let region = rt.region()?;
        rt.aws()?
            .ec2
            .instance_type_info(instance_type)
            .map_err(cloud_err)?
            .ok_or_else(|| {
                super::super::usage_err_hint(
                    format!("instance type {instance_type} does not exist in {region}"),
                    "check the spelling (e.g. g4dn.xlarge) and that the region offers it",
                )
            })
    }

    /// The Availability Zones of the region that offer an instance type, sorted.
    ///
    /// ```rhai
    /// let zones = ec2::zones_offering("g4dn.xlarge");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn zones_offering(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let zones = rt(&ctx)?
            .aws()?
            .ec2
            .zones_offering(instance_type)
            .map_err(cloud_err)?;
        Ok(zones.into_iter().map(Dynamic::from).collect())
    }

    /// The latest Deep Learning Base AMI (NVIDIA driver and container toolkit, Amazon Linux
    /// 2023) from its public SSM parameter, falling back to DescribeImages by name.
    ///
    /// ```rhai
    /// let ami = ec2::latest_gpu_ami();
    /// ```
    #[rhai_fn(return_raw)]
    pub fn latest_gpu_ami(ctx: NativeCallContext) -> Result<Image, Box<EvalAltResult>> {
        rt(&ctx)?.aws()?.ec2.latest_gpu_ami().map_err(cloud_err)
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

    /// Instances, filtered: `#{ state: "running", tag: "Name=web", stack: "my-stack" }` (all
    /// optional; `tag` is `key=value` or just `key`).
    ///
    /// ```rhai
    /// ec2::instances(#{ state: "running", stack: "my-stack" })
    /// ```
    #[rhai_fn(return_raw)]
    pub fn instances(ctx: NativeCallContext, options: Map) -> Result<Array, Box<EvalAltResult>> {
        const F: &str = "ec2::instances";
        let o: ListOptions = decode(F, options)?;
        let mut filters: Vec<(String, Vec<String>)> = Vec::new();
        const STATES: &[&str] = &[
            "pending",
            "running",
            "shutting-down",
            "terminated",
            "stopping",
            "stopped",
        ];
        if let Some(state) = one_of(F, "state", o.state, STATES)? {
            filters.push(("instance-state-name".into(), vec![state]));
        }
        if let Some(tag) = o.tag {
            match tag.split_once('=') {
                Some((k, v)) => filters.push((format!("tag:{k}"), vec![v.to_string()])),
                None => filters.push(("tag-key".into(), vec![tag])),
            }
        }
        if let Some(stack) = o.stack {
            filters.push((format!("tag:{STACK_TAG}"), vec![stack]));
        }
        let list = rt(&ctx)?
            .aws()?
            .ec2
            .describe_instances(&filters)
            .map_err(cloud_err)?;
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

    /// Current spot prices for an instance type, one per Availability Zone, cheapest first.
    ///
    /// ```rhai
    /// let cheapest = ec2::spot_prices("t3.medium")[0];
    /// ui::info(`${cheapest.az}: $${cheapest.usd_per_hour}/h`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn spot_prices(
        ctx: NativeCallContext,
        instance_type: &str,
    ) -> Result<Array, Box<EvalAltResult>> {
        let list: Vec<SpotPrice> = rt(&ctx)?
            .aws()?
            .ec2
            .spot_price_history(instance_type)
            .map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }
}
