//! `userdata::` — the boot script and its plain sections: packages, mounts, files, the boot
//! channel, spot notices.

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::super::opts::decode;
use super::super::{id_of, rt, usage_err};
use crate::boot;

use super::*;

#[export_module]
pub mod api {
    /// A boot script: the strict-mode header (and a boot log) followed by the given sections.
    ///
    /// ```rhai
    /// let script = userdata::script([
    ///     userdata::packages(),
    ///     userdata::efs_mount(fs, "/mnt/efs"),
    /// ]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn script(sections: Array) -> Result<String, Box<EvalAltResult>> {
        Ok(boot::script(&strings("userdata::script", sections)?))
    }

    /// A boot script that reports its progress (`#{ report: true }`): after each step it
    /// writes the boot document — this run, the step now, the steps done with their seconds,
    /// and on a failure the failing step — to the stack's SSM parameter
    /// `/geusemaker-boot/<stack>` with the instance role (`iam::instance_profile` allows that
    /// one parameter). `health::wait_until_healthy` reads it while it waits: the phases show as
    /// they pass, and a failed boot ends the wait at once.
    ///
    /// ```rhai
    /// let script = userdata::script([userdata::packages()], #{ report: true });
    /// ```
    #[rhai_fn(name = "script", return_raw)]
    pub fn script_opts(
        ctx: NativeCallContext,
        sections: Array,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::script";
        let report = decode::<ScriptOptions>(F, options)?.report;
        let sections = strings(F, sections)?;
        if !report {
            return Ok(boot::script(&sections));
        }
        let rt = rt(&ctx)?;
        let channel = boot::Channel {
            region: rt.region()?,
            parameter: boot::channel_parameter(&rt.stack),
            run: rt.run_id.clone(),
        };
        boot::script_reporting(&sections, Some(&channel))
            .map_err(|e| usage_err(format!("{F}: {e}")))
    }

    /// The name of the stack's boot channel (the SSM parameter its boot reports to).
    ///
    /// ```rhai
    /// ssm::delete_parameter(userdata::boot_channel());
    /// ```
    #[rhai_fn(return_raw)]
    pub fn boot_channel(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        Ok(boot::channel_parameter(&rt(&ctx)?.stack))
    }

    /// A timer on the instance that watches the metadata for a spot interruption notice and
    /// reports it on the stack's boot channel (`/geusemaker-boot/<stack>`): `monitor` then
    /// starts the replacement about two minutes before AWS takes the instance.
    ///
    /// ```rhai
    /// let watch = userdata::spot_notices();
    /// ```
    #[rhai_fn(return_raw)]
    pub fn spot_notices(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::spot_notices";
        let rt = rt(&ctx)?;
        let channel = boot::Channel {
            region: rt.region()?,
            parameter: boot::channel_parameter(&rt.stack),
            run: rt.run_id.clone(),
        };
        // The notice carries a token only this boot script and the stack's state know: the run
        // id is no secret (it is on the instance's tags, which the account can read).
        let token = {
            let mut store = rt.store()?;
            let mut token = None;
            store
                .update(|s| token = Some(boot::notice_token(&mut s.values, &rt.run_id)))
                .map_err(|e| usage_err(format!("{F}: {e}")))?;
            token.expect("set by the update")
        };
        boot::spot_notices(&channel, &token).map_err(|e| usage_err(format!("{F}: {e}")))
    }

    /// Install Docker, the pinned Docker Compose plugin, amazon-efs-utils and xfsprogs.
    ///
    /// ```rhai
    /// let install = userdata::packages();
    /// ```
    pub fn packages() -> String {
        boot::packages()
    }

    /// Mount EFS `fs` (handle or id) at `mount_point` with TLS via amazon-efs-utils, with a
    /// `_netdev` fstab entry, retrying until the mount target answers.
    ///
    /// ```rhai
    /// let mount = userdata::efs_mount(fs, "/mnt/efs");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn efs_mount(fs: Dynamic, mount_point: &str) -> Result<String, Box<EvalAltResult>> {
        let id = id_of(&fs, "a file system")?;
        boot::efs_mount(&id, mount_point).map_err(err("userdata::efs_mount"))
    }

    /// Wait for an EBS volume to be attached, create an XFS file system only if it has none
    /// (a re-attached volume keeps its data), and mount it at `mount_point` by UUID. `volume`
    /// is a `Volume`, its id, or the device it will be attached as (`"/dev/sdf"`) — the
    /// latter lets the boot script be written before the volume exists.
    ///
    /// ```rhai
    /// let data_mount = userdata::ebs_mount("/dev/sdf", "/mnt/data");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ebs_mount(volume: Dynamic, mount_point: &str) -> Result<String, Box<EvalAltResult>> {
        let id = id_of(&volume, "a volume or device")?;
        boot::ebs_mount(&id, mount_point).map_err(err("userdata::ebs_mount"))
    }

    /// At boot, fetch SSM parameters (decrypted, with the instance role) into a root-only env
    /// file: `vars` maps variable names to parameter handles or names. The values never
    /// appear in the user data.
    ///
    /// ```rhai
    /// let env = userdata::ssm_env("/etc/geusemaker/stack.env", #{
    ///     POSTGRES_PASSWORD: pg_password,          // a Parameter from ssm::ensure_secret
    /// });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ssm_env(
        ctx: NativeCallContext,
        env_file: &str,
        vars: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        const F: &str = "userdata::ssm_env";
        let rt = rt(&ctx)?;
        let region = rt.region()?;
        let mut pairs = Vec::new();
        for (k, v) in vars {
            pairs.push((k.to_string(), param_name(F, &k, v)?));
        }
        boot::ssm_env(&region, env_file, &pairs).map_err(err(F))
    }

    /// Write `content` to `path` with `mode` (e.g. "0644") through a quoted heredoc.
    ///
    /// ```rhai
    /// let f = userdata::write_file("/opt/geusemaker/compose.yaml", compose, "0644");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn write_file(path: &str, content: &str, mode: &str) -> Result<String, Box<EvalAltResult>> {
        boot::write_file(path, content, mode).map_err(err("userdata::write_file"))
    }
}
