//! `ec2::` — instances: launch (the spec checked before anything is asked of AWS), find,
//! wait, terminate, list.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::super::opts::{decode, one_of, required, wait_timeout};
use super::super::{id_of, rt, usage_err, Runtime};
use super::*;
use crate::cloud::ec2::{Instance, LaunchSpec, VolumeSpec};
use crate::cloud::tags::{NAME_TAG, STACK_TAG};
use crate::cloud::wait::{poll_until, Backoff, Poll};
use crate::cloud::Tags;
use crate::state::Kind;

/// The options of `ec2::instances`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ListOptions {
    pub(super) state: Option<String>,
    pub(super) tag: Option<String>,
    pub(super) stack: Option<String>,
}

pub(super) fn wait_instance(
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
pub(super) fn live_instances(
    rt: &Runtime,
    name: &str,
) -> Result<Vec<Instance>, Box<EvalAltResult>> {
    rt.aws()?
        .ec2
        .find_instances(&[
            (STACK_TAG.into(), rt.stack.clone()),
            (NAME_TAG.into(), rt.resource_name(name)),
        ])
        .map_err(crate::primitives::cloud_err)
}

pub(super) fn placeholder(id: &str) -> Instance {
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

/// The options of `ec2::run_instance` (see its documentation).
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RunInstanceOptions {
    pub(super) image: Option<Dynamic>,
    #[serde(default = "default_instance_type")]
    pub(super) instance_type: String,
    pub(super) subnet: Option<Dynamic>,
    #[serde(default)]
    pub(super) security_groups: Vec<Dynamic>,
    pub(super) key_pair: Option<Dynamic>,
    pub(super) user_data: Option<String>,
    #[serde(default)]
    pub(super) spot: bool,
    pub(super) max_price: Option<String>,
    pub(super) instance_profile: Option<Dynamic>,
    #[serde(default = "default_root_volume_gb")]
    pub(super) root_volume_gb: i64,
    #[serde(default)]
    pub(super) volumes: Vec<Dynamic>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, Dynamic>,
    #[serde(default)]
    pub(super) replace: bool,
}

pub(super) fn default_instance_type() -> String {
    "t3.medium".into()
}

pub(super) fn default_root_volume_gb() -> i64 {
    30
}

/// One of `ec2::run_instance`'s extra `volumes`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VolumeOptions {
    pub(super) device: Option<String>,
    pub(super) size_gb: Option<i64>,
    #[serde(rename = "type", default = "default_volume_type")]
    pub(super) volume_type: String,
    #[serde(default = "yes")]
    pub(super) delete_on_termination: bool,
    #[serde(default = "yes")]
    pub(super) encrypted: bool,
}

pub(super) fn default_volume_type() -> String {
    "gp3".into()
}

pub(super) fn yes() -> bool {
    true
}

/// What `ec2::run_instance` asks EC2 for, checked: the handles' ids, the user data's size, an
/// encrypted gp3 root volume and the extra volumes. The client token is the ledger's, later.
fn launch_spec(
    f: &'static str,
    o: RunInstanceOptions,
    tags: Tags,
) -> Result<LaunchSpec, Box<EvalAltResult>> {
    let image_id = id_of(&required(f, "image", o.image)?, "an image")?;
    let subnet_id = id_of(&required(f, "subnet", o.subnet)?, "a subnet")?;
    let security_group_ids = o
        .security_groups
        .iter()
        .map(|g| id_of(g, "a security group"))
        .collect::<Result<Vec<_>, _>>()?;
    let key_name = o.key_pair.map(|k| id_of(&k, "a key pair")).transpose()?;
    if let Some(script) = &o.user_data {
        // Sent gzipped when it is larger than EC2 takes (cloud-init unpacks it).
        if let Err(packed) = crate::boot::user_data_payload(script) {
            return Err(usage_err(format!(
                "{f}: user_data is over EC2's 16 KiB limit even gzipped ({} bytes, {packed} compressed)",
                script.len()
            )));
        }
    }
    let instance_profile = o
        .instance_profile
        .map(|p| id_of(&p, "an instance profile"))
        .transpose()?;
    let mut volumes = vec![VolumeSpec {
        device: "/dev/xvda".into(),
        size_gb: o.root_volume_gb as i32,
        volume_type: "gp3".into(),
        delete_on_termination: true,
        encrypted: true,
    }];
    for v in o.volumes {
        let map = v
            .try_cast::<Map>()
            .ok_or_else(|| usage_err(format!("{f}: each volume is a map")))?;
        let vo: VolumeOptions = decode(f, map)?;
        volumes.push(VolumeSpec {
            device: required(f, "device", vo.device)?,
            size_gb: vo
                .size_gb
                .ok_or_else(|| usage_err(format!("{f}: a volume needs `size_gb`")))?
                as i32,
            volume_type: vo.volume_type,
            delete_on_termination: vo.delete_on_termination,
            encrypted: vo.encrypted,
        });
    }
    Ok(LaunchSpec {
        image_id,
        instance_type: o.instance_type,
        subnet_id,
        security_group_ids,
        key_name,
        user_data: o.user_data,
        spot: o.spot,
        max_price: o.max_price,
        instance_profile,
        volumes,
        client_token: String::new(),
        tags,
    })
}

/// The instance's tags: the run's own, the recipe's extra ones (never `aws:`, the stack's or
/// `Name`), and the root volume size it gets at launch, which a re-run compares.
fn launch_tags(
    f: &str,
    rt: &Runtime,
    name: &str,
    extra: BTreeMap<String, Dynamic>,
    root_gb: i64,
) -> Result<Tags, Box<EvalAltResult>> {
    let mut tags = rt.tags(name);
    for (k, v) in extra {
        if k.starts_with("aws:") || k.starts_with("geusemaker:stack") || k == "Name" {
            return Err(usage_err(format!(
                "{f}: tag `{k}` is not the recipe's to set"
            )));
        }
        tags.extra.insert(k, v.to_string());
    }
    tags.extra
        .insert(ROOT_GB_TAG.to_string(), root_gb.to_string());
    Ok(tags)
}

#[export_module]
pub mod api {
    use super::*;
    use crate::cloud::ec2::Instance;
    use crate::primitives::cloud_err;

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
        let mut o: RunInstanceOptions = decode(F, options)?;
        let replace = o.replace;
        let root_gb = o.root_volume_gb;
        let tags = launch_tags(F, &rt, name, std::mem::take(&mut o.tags), root_gb)?;
        let spec = launch_spec(F, o, tags)?;
        let aws = rt.aws()?;
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
                    client_token: token.to_string(),
                    ..spec.clone()
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
}
