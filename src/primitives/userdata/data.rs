//! `userdata::` — the data on the instance: snapshots, backups, the saved configuration, and
//! releasing and resuming the data volume.

use rhai::plugin::*;
use rhai::{Array, EvalAltResult, Map};

use super::super::opts::decode;
use super::super::{rt, usage_err};
use crate::boot;
use crate::services;

use super::*;

#[export_module]
pub mod api {
    /// A daily systemd timer that snapshots the stack's data volume (`ec2::volume("data")`)
    /// with the instance's role and deletes its snapshots older than `keep_days` (7). The role
    /// needs `iam::instance_profile(name, #{ data_snapshots: true })`: it may snapshot that
    /// volume only, and delete only the stack's snapshots.
    ///
    /// ```rhai
    /// let snapshots = userdata::data_snapshots(#{ keep_days: 7 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn data_snapshots(
        ctx: NativeCallContext,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::data_snapshots";
        let rt = rt(&ctx)?;
        let keep = decode::<SnapshotOptions>(F, options)?.keep_days;
        let keep =
            u32::try_from(keep).map_err(|_| usage_err(format!("{F}: keep_days must be 1..365")))?;
        boot::data_snapshots(&rt.region()?, &rt.stack, &rt.resource_name("data"), keep)
            .map_err(err(F))
    }

    /// A daily systemd timer backing up every service with a `backup` entry to
    /// `<efs_dir>/backups/<service>/`, keeping `keep_days` (7) days; nothing when no service
    /// has one.
    ///
    /// ```rhai
    /// let nightly = userdata::backups(svcs, #{ keep_days: 14 });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn backups(services: Array, options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::backups";
        let svcs = decode_services(F, services)?;
        let o: BackupOptions = decode(F, options)?;
        let l = Dirs {
            efs_dir: o.efs_dir,
            data_dir: o.data_dir,
            ..Dirs::default()
        }
        .layout();
        let keep = o.keep_days;
        let keep =
            u32::try_from(keep).map_err(|_| usage_err(format!("{F}: keep_days must be 1..365")))?;
        services::backups(&svcs, &l, keep).map_err(|e| service_err(F, e))
    }

    /// The section update `id` starts with: the compose and env files as they are now, kept
    /// (root-only, written whole or not at all) so `userdata::restore_config` can put exactly
    /// them back if the update fails its health checks. `options`: `id` (required: the run's
    /// id), `env_dir`, `stack_dir`.
    ///
    /// ```rhai
    /// let keep = userdata::save_config(#{ id: state::run_id() });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn save_config(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::save_config";
        let (id, l) = config_options(F, options)?;
        boot::save_config(&l, &id).map_err(err(F))
    }

    /// The configuration `userdata::save_config` kept for update `id` put back and the stack
    /// started from it again (its images are still on the instance); nothing is touched when
    /// that update kept nothing. `options`: `id` (required), `env_dir`, `stack_dir`.
    ///
    /// ```rhai
    /// ssm::send_command(vm, [userdata::script([userdata::restore_config(#{ id: run })])]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn restore_config(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::restore_config";
        let (id, l) = config_options(F, options)?;
        boot::restore_config(&l, &id).map_err(err(F))
    }

    /// Stop every container and unmount the data volume, so it can move to another instance
    /// while this one keeps running (a spot instance cannot be stopped). Run through SSM.
    ///
    /// ```rhai
    /// ssm::send_command(vm, [userdata::script([userdata::data_release(#{})])]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn data_release(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::data_release";
        boot::data_release(&data_options(F, options)?).map_err(err(F))
    }

    /// The data volume (attached again) mounted, Docker and the stack started: the way back
    /// from `userdata::data_release`. Run through SSM.
    ///
    /// ```rhai
    /// ssm::send_command(vm, [userdata::script([userdata::data_resume(#{})])]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn data_resume(options: Map) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::data_resume";
        boot::data_resume(&data_options(F, options)?).map_err(err(F))
    }
}
