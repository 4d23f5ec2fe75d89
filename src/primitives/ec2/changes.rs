//! `ec2::` — an instance changed in place: what differs from the recipe, stop and start, a new
//! instance type, tags.

use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::super::opts::decode;
use super::super::{id_of, rt, usage_err};
use super::*;

/// What `ec2::instance_changes` compares the instance with.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct WantedInstance {
    pub(super) image: Option<Dynamic>,
    #[serde(default)]
    pub(super) instance_types: Vec<String>,
    pub(super) spot: Option<bool>,
    #[serde(default)]
    pub(super) on_demand_fallback: bool,
    pub(super) root_volume_gb: Option<i64>,
}

#[export_module]
pub mod api {
    use super::*;
    use crate::cloud::ec2::Instance;
    use crate::primitives::cloud_err;

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
}
