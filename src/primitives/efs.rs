//! `efs::` — encrypted file systems and mount targets.

use std::collections::BTreeMap;
use std::time::Duration;

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys, wait_timeout};
use super::{id_of, rt, ChangeAction, OptionKeys};
use crate::state::Kind;

pub fn types(engine: &mut Engine) {
    engine
        .build_type::<crate::cloud::efs::FileSystem>()
        .build_type::<crate::cloud::efs::MountTarget>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "file_system",
        keys: keys::<FileSystemOptions>,
    },
    OptionKeys {
        function: "wait_available",
        keys: keys::<super::opts::WaitOptions>,
    },
];

/// The options of `efs::file_system`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSystemOptions {
    #[serde(default = "yes")]
    automatic_backups: bool,
}

fn yes() -> bool {
    true
}

#[export_module]
pub mod api {
    use crate::cloud::efs::{FileSystem, MountTarget};
    use crate::cloud::wait::{poll_until, Backoff, Poll};
    use crate::primitives::cloud_err;

    /// Create (or find, on a re-run) the encrypted file system `<stack>-<name>`, with AWS
    /// Backup's automatic daily backups (kept 35 days, outside the file system); returns at
    /// once. Its creation token is derived from stack and name, so a retried or repeated
    /// create never makes a second file system.
    ///
    /// ```rhai
    /// let fs = efs::file_system("data");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn file_system(
        ctx: NativeCallContext,
        name: &str,
    ) -> Result<FileSystem, Box<EvalAltResult>> {
        file_system_opts(ctx, name, Map::new())
    }

    /// `file_system` with options: `automatic_backups` (true). A file system found again is
    /// brought to the setting: a re-run turns automatic backups on (or off) as the recipe says.
    ///
    /// ```rhai
    /// let scratch = efs::file_system("scratch", #{ automatic_backups: false });
    /// ```
    #[rhai_fn(name = "file_system", return_raw)]
    pub fn file_system_opts(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<FileSystem, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: FileSystemOptions = decode("efs::file_system", options)?;
        let backups = o.automatic_backups;
        let aws = rt.aws()?;
        let token = format!("geusemaker-{}", rt.resource_name(name));
        // One the ledger knows is looked up; otherwise it is created straight away: the
        // creation token makes that idempotent (one that exists after all is returned).
        if rt.ledger_id(Kind::FileSystem, name)?.is_some() {
            if let Some(fs) = aws.efs.find_by_token(&token).map_err(cloud_err)? {
                rt.adopt(Kind::FileSystem, name, &fs.id, BTreeMap::new())?;
                if aws.efs.automatic_backups(&fs.id).map_err(cloud_err)? != backups {
                    aws.efs
                        .set_automatic_backups(&fs.id, backups)
                        .map_err(cloud_err)?;
                    rt.record_change(
                        ChangeAction::InPlace,
                        &format!("file system {name}"),
                        &format!(
                            "automatic backups turned {}",
                            if backups { "on" } else { "off" }
                        ),
                    );
                }
                return Ok(fs);
            }
        }
        // The creation token is deterministic, so the intent carries it instead of a random one.
        let fs = rt.create_recorded_with(
            Kind::FileSystem,
            name,
            || token.clone(),
            |token| aws.efs.create_file_system(token, backups, &rt.tags(name)),
            |fs: &FileSystem| (fs.id.clone(), BTreeMap::new()),
        )?;
        if fs.mount_targets == 0 {
            // efs::mount_target need not look for one in this run.
            rt.note_absent(Kind::MountTarget, &fs.id);
        }
        rt.ui.info(&format!(
            "file system {name}: {} (encrypted{})",
            fs.id,
            if backups {
                ", daily automatic backups"
            } else {
                ""
            }
        ));
        Ok(fs)
    }

    /// Block until the file system is `available` (timeout 600 s, or `#{ timeout: s }`). A
    /// handle that already says `available` is returned as it is, without asking AWS again.
    ///
    /// ```rhai
    /// fs = efs::wait_available(fs);
    /// ```
    #[rhai_fn(name = "wait_available", return_raw)]
    pub fn wait_available(
        ctx: NativeCallContext,
        fs: Dynamic,
    ) -> Result<FileSystem, Box<EvalAltResult>> {
        wait_available_opts(ctx, fs, Map::new())
    }

    /// Like `wait_available(fs)` with options.
    ///
    /// ```rhai
    /// fs = efs::wait_available(fs, #{ timeout: 120 });
    /// ```
    #[rhai_fn(name = "wait_available", return_raw)]
    pub fn wait_available_opts(
        ctx: NativeCallContext,
        fs: Dynamic,
        options: Map,
    ) -> Result<FileSystem, Box<EvalAltResult>> {
        let t = wait_timeout("efs::wait_available", options, 600)?;
        // The create's (or an earlier describe's) answer already says so: no need to ask again.
        if let Some(f) = fs.clone().try_cast::<FileSystem>() {
            if f.state == "available" {
                return Ok(f);
            }
        }
        let id = id_of(&fs, "a file system")?;
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        rt.waiting(
            &format!("file system {id} available"),
            |tick| {
                poll_until(
                    "efs",
                    &format!("file system {id}"),
                    Backoff::new(t),
                    tick,
                    || {
                        let fs = aws.efs.file_system(&id)?;
                        Ok(match fs.state.as_str() {
                            "available" => Poll::Ready(fs),
                            "creating" | "updating" => Poll::Pending(fs.state),
                            other => Poll::Failed(other.to_string()),
                        })
                    },
                )
            },
            |_| "available".into(),
        )
    }

    /// Create (or find) the mount target of `fs` in `subnet`, with the given security groups;
    /// returns at once. A file system has one mount target per Availability Zone: an
    /// existing one in the subnet's zone is returned.
    ///
    /// ```rhai
    /// let mt = efs::mount_target(fs, subnets[0], [efs_sg]);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn mount_target(
        ctx: NativeCallContext,
        fs: Dynamic,
        subnet: Dynamic,
        security_groups: Array,
    ) -> Result<MountTarget, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let fs_id = id_of(&fs, "a file system")?;
        let subnet_id = id_of(&subnet, "a subnet")?;
        let sgs = security_groups
            .iter()
            .map(|g| id_of(g, "a security group"))
            .collect::<Result<Vec<_>, _>>()?;
        let aws = rt.aws()?;
        let existing = if rt.known_absent(Kind::MountTarget, &fs_id) {
            Vec::new()
        } else {
            aws.efs.mount_targets(&fs_id).map_err(cloud_err)?
        };
        let logical = format!("mount-{subnet_id}");
        if let Some(mt) = existing.into_iter().find(|m| m.subnet_id == subnet_id) {
            rt.adopt(
                Kind::MountTarget,
                &logical,
                &mt.id,
                BTreeMap::from([("file_system".to_string(), fs_id.clone())]),
            )?;
            return Ok(mt);
        }
        rt.forget_absent(Kind::MountTarget, &fs_id);
        rt.create_recorded(
            Kind::MountTarget,
            &logical,
            |_token| aws.efs.create_mount_target(&fs_id, &subnet_id, &sgs),
            |mt: &MountTarget| {
                (
                    mt.id.clone(),
                    BTreeMap::from([
                        ("file_system".to_string(), fs_id.clone()),
                        ("az".to_string(), mt.az.clone()),
                    ]),
                )
            },
        )
    }

    /// The mount targets of a file system.
    ///
    /// ```rhai
    /// for mt in efs::mount_targets(fs) { print(mt); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn mount_targets(ctx: NativeCallContext, fs: Dynamic) -> Result<Array, Box<EvalAltResult>> {
        let id = id_of(&fs, "a file system")?;
        let list = rt(&ctx)?.aws()?.efs.mount_targets(&id).map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Delete the file system's backups in AWS Backup (its automatic daily ones included);
    /// returns how many. They are its data: `destroy` calls this only with `delete_data`.
    ///
    /// ```rhai
    /// let n = efs::delete_backups(fs);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_backups(ctx: NativeCallContext, fs: Dynamic) -> Result<i64, Box<EvalAltResult>> {
        let id = id_of(&fs, "a file system")?;
        let rt = rt(&ctx)?;
        let efs = &rt.aws()?.efs;
        let points = efs.backups(&id).map_err(cloud_err)?;
        for (vault, point) in &points {
            efs.delete_backup(vault, point).map_err(cloud_err)?;
        }
        if !points.is_empty() {
            rt.ui.info(&format!(
                "file system {id}: {} backup(s) deleted",
                points.len()
            ));
        }
        Ok(points.len() as i64)
    }

    /// Every EFS file system of the region (for exploring an account).
    ///
    /// ```rhai
    /// efs::file_systems()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn file_systems(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let list = rt(&ctx)?.aws()?.efs.list().map_err(cloud_err)?;
        Ok(list.into_iter().map(Dynamic::from).collect())
    }

    /// Block until the mount target is `available` (timeout 600 s); a handle that already says
    /// so is returned as it is.
    ///
    /// ```rhai
    /// mt = efs::wait_mount_target(mt);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_mount_target(
        ctx: NativeCallContext,
        mt: MountTarget,
    ) -> Result<MountTarget, Box<EvalAltResult>> {
        if mt.state == "available" {
            return Ok(mt);
        }
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let (fs_id, mt_id) = (mt.file_system_id.clone(), mt.id.clone());
        rt.waiting(
            &format!("mount target {mt_id} available"),
            |tick| {
                poll_until(
                    "efs",
                    &format!("mount target {mt_id}"),
                    Backoff::new(Duration::from_secs(600)),
                    tick,
                    || {
                        let found = aws
                            .efs
                            .mount_targets(&fs_id)?
                            .into_iter()
                            .find(|m| m.id == mt_id);
                        Ok(match found {
                            Some(m) if m.state == "available" => Poll::Ready(m),
                            Some(m) if m.state == "creating" => Poll::Pending(m.state),
                            Some(m) => Poll::Failed(m.state),
                            None => Poll::Failed("deleted".into()),
                        })
                    },
                )
            },
            |m| format!("available at {}", m.ip),
        )
    }

    /// Delete a mount target (a handle or its id) and wait until it is gone; `false` when it
    /// was already gone.
    ///
    /// ```rhai
    /// efs::delete_mount_target(mt);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_mount_target(
        ctx: NativeCallContext,
        mt: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let mt_id = id_of(&mt, "a mount target")?;
        let existed = rt.settle_delete(
            Kind::MountTarget,
            &mt_id,
            aws.efs.delete_mount_target(&mt_id),
        )?;
        if !existed {
            return Ok(false);
        }
        rt.waiting(
            &format!("mount target {mt_id} deleted"),
            |tick| {
                poll_until(
                    "efs",
                    &format!("mount target {mt_id} deletion"),
                    Backoff::new(Duration::from_secs(600)),
                    tick,
                    || {
                        Ok(match aws.efs.mount_target(&mt_id)? {
                            None => Poll::Ready(()),
                            Some(m) => Poll::Pending(m.state),
                        })
                    },
                )
            },
            |_| "gone".into(),
        )?;
        Ok(true)
    }

    /// Delete a file system (its mount targets must be gone first); `false` when it was
    /// already gone. Data is lost: recipes keep this behind an explicit confirmation.
    ///
    /// ```rhai
    /// efs::delete_file_system(fs);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_file_system(
        ctx: NativeCallContext,
        fs: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let id = id_of(&fs, "a file system")?;
        let result = rt.aws()?.efs.delete_file_system(&id);
        rt.settle_delete(Kind::FileSystem, &id, result)
    }
}
