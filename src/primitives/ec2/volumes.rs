//! `ec2::` — EBS: the data volume, its attachment, snapshots.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::super::opts::{decode, required};
use super::super::{id_of, rt, usage_err, Runtime};
use super::*;
use crate::cloud::ec2::Volume;
use crate::cloud::tags::{NAME_TAG, STACK_TAG};
use crate::cloud::wait::{poll_until, Backoff, Poll};
use crate::state::Kind;

/// The options of `ec2::volume`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VolumeCreateOptions {
    pub(super) az: Option<String>,
    #[serde(default = "fifty")]
    pub(super) size_gb: i64,
    #[serde(rename = "type", default = "default_volume_type")]
    pub(super) volume_type: String,
}

pub(super) fn fifty() -> i64 {
    50
}

/// The stack's volumes named `<stack>-<name>` (not deleted).
pub(super) fn stack_volumes(rt: &Runtime, name: &str) -> Result<Vec<Volume>, Box<EvalAltResult>> {
    rt.aws()?
        .ec2
        .find_volumes(&[
            (STACK_TAG.into(), rt.stack.clone()),
            (NAME_TAG.into(), rt.resource_name(name)),
        ])
        .map_err(crate::primitives::cloud_err)
}

pub(super) fn wait_volume(
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

#[export_module]
pub mod api {
    use super::*;
    use crate::cloud::ec2::{Volume, VolumeRequest};
    use crate::primitives::cloud_err;

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
}
