//! EFS: encrypted file systems (idempotent by creation token) and mount targets.

use std::fmt;

use aws_sdk_efs::types::{BackupPolicy, LifeCycleState, Status, Tag};
use rhai::CustomType;

use super::{Blocking, CloudError, Tags};

const SVC: &str = "efs";

/// An EFS file system.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "FileSystem", extra = super::display_fns)]
pub struct FileSystem {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub state: String,
    #[rhai_type(readonly)]
    pub encrypted: bool,
    #[rhai_type(readonly)]
    pub creation_token: String,
    #[rhai_type(readonly)]
    pub size_bytes: i64,
    /// How many mount targets it had when described.
    #[rhai_type(readonly)]
    pub mount_targets: i64,
}

impl fmt::Display for FileSystem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "FileSystem({} {} {})",
            self.id,
            self.state,
            if self.encrypted {
                "encrypted"
            } else {
                "unencrypted"
            }
        )
    }
}

/// A mount target: the NFS endpoint of a file system in one subnet.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "MountTarget", extra = super::display_fns)]
pub struct MountTarget {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub file_system_id: String,
    #[rhai_type(readonly)]
    pub subnet_id: String,
    #[rhai_type(readonly)]
    pub az: String,
    #[rhai_type(readonly)]
    pub ip: String,
    #[rhai_type(readonly)]
    pub state: String,
}

impl fmt::Display for MountTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MountTarget({} {} {} {})",
            self.id, self.az, self.ip, self.state
        )
    }
}

/// The EFS operations primitives use.
pub trait EfsApi: Send + Sync {
    fn find_by_token(&self, token: &str) -> Result<Option<FileSystem>, CloudError>;
    fn file_system(&self, id: &str) -> Result<FileSystem, CloudError>;
    /// Create an encrypted file system, with AWS Backup's automatic daily backups when
    /// `backups`; the creation token makes this idempotent.
    fn create_file_system(
        &self,
        token: &str,
        backups: bool,
        tags: &Tags,
    ) -> Result<FileSystem, CloudError>;
    /// Are automatic backups on (the file system's backup policy `ENABLED`)?
    fn automatic_backups(&self, id: &str) -> Result<bool, CloudError>;
    /// Turn automatic backups on or off.
    fn set_automatic_backups(&self, id: &str, on: bool) -> Result<(), CloudError>;
    /// The file system's backups in AWS Backup (automatic or not): `(vault, recovery point
    /// ARN)`.
    fn backups(&self, id: &str) -> Result<Vec<(String, String)>, CloudError>;
    /// Delete one backup (a recovery point in `vault`).
    fn delete_backup(&self, vault: &str, recovery_point: &str) -> Result<(), CloudError>;
    fn delete_file_system(&self, id: &str) -> Result<(), CloudError>;
    fn mount_targets(&self, fs_id: &str) -> Result<Vec<MountTarget>, CloudError>;
    /// One mount target by id; `None` when it does not exist.
    fn mount_target(&self, id: &str) -> Result<Option<MountTarget>, CloudError>;
    /// Every file system of the region.
    fn list(&self) -> Result<Vec<FileSystem>, CloudError>;
    /// File systems carrying the tag `key=value`.
    fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<FileSystem>, CloudError>;
    fn create_mount_target(
        &self,
        fs_id: &str,
        subnet_id: &str,
        security_groups: &[String],
    ) -> Result<MountTarget, CloudError>;
    fn delete_mount_target(&self, id: &str) -> Result<(), CloudError>;
}

/// [`EfsApi`] over aws-sdk-efs.
pub struct SdkEfs {
    client: aws_sdk_efs::Client,
    /// AWS Backup holds the file system's backups.
    backup: aws_sdk_backup::Client,
    rt: Blocking,
}

impl SdkEfs {
    pub fn new(client: aws_sdk_efs::Client, backup: aws_sdk_backup::Client, rt: Blocking) -> Self {
        SdkEfs { client, backup, rt }
    }

    /// Every file system of the region, all pages.
    fn descriptions(&self) -> Result<Vec<aws_sdk_efs::types::FileSystemDescription>, CloudError> {
        let mut found = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let out = self.rt.call(
                SVC,
                "DescribeFileSystems",
                self.client
                    .describe_file_systems()
                    .set_marker(marker.clone())
                    .send(),
            )?;
            found.extend(out.file_systems().iter().cloned());
            marker = out.next_marker().map(str::to_string);
            if marker.is_none() {
                return Ok(found);
            }
        }
    }
}

fn state_str(s: Option<&LifeCycleState>) -> String {
    s.map(|s| s.as_str().to_string()).unwrap_or_default()
}

fn to_fs(d: &aws_sdk_efs::types::FileSystemDescription) -> FileSystem {
    FileSystem {
        id: d.file_system_id().to_string(),
        name: d.name().unwrap_or_default().to_string(),
        state: d.life_cycle_state().as_str().to_string(),
        encrypted: d.encrypted().unwrap_or(false),
        creation_token: d.creation_token().to_string(),
        size_bytes: d.size_in_bytes().map(|s| s.value()).unwrap_or(0),
        mount_targets: i64::from(d.number_of_mount_targets()),
    }
}

fn to_mt(m: &aws_sdk_efs::types::MountTargetDescription) -> MountTarget {
    MountTarget {
        id: m.mount_target_id().to_string(),
        file_system_id: m.file_system_id().to_string(),
        subnet_id: m.subnet_id().to_string(),
        az: m.availability_zone_name().unwrap_or_default().to_string(),
        ip: m.ip_address().unwrap_or_default().to_string(),
        state: state_str(Some(m.life_cycle_state())),
    }
}

impl EfsApi for SdkEfs {
    fn find_by_token(&self, token: &str) -> Result<Option<FileSystem>, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeFileSystems",
            self.client
                .describe_file_systems()
                .creation_token(token)
                .send(),
        ) {
            Ok(out) => Ok(out.file_systems().first().map(to_fs)),
            Err(e) => e.absent(),
        }
    }

    fn file_system(&self, id: &str) -> Result<FileSystem, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeFileSystems",
            self.client
                .describe_file_systems()
                .file_system_id(id)
                .send(),
        )?;
        out.file_systems().first().map(to_fs).ok_or_else(|| {
            CloudError::new(
                SVC,
                "DescribeFileSystems",
                "FileSystemNotFound",
                format!("file system {id} not found"),
            )
        })
    }

    fn automatic_backups(&self, id: &str) -> Result<bool, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeBackupPolicy",
            self.client
                .describe_backup_policy()
                .file_system_id(id)
                .send(),
        ) {
            Ok(out) => Ok(out
                .backup_policy()
                .is_some_and(|p| matches!(p.status(), Status::Enabled | Status::Enabling))),
            Err(e) => {
                // A file system that never had a policy answers PolicyNotFound: off.
                if e.code == "PolicyNotFound" {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn backups(&self, id: &str) -> Result<Vec<(String, String)>, CloudError> {
        let described = match self.rt.call(
            SVC,
            "DescribeFileSystems",
            self.client
                .describe_file_systems()
                .file_system_id(id)
                .send(),
        ) {
            Ok(out) => out,
            Err(e) => {
                // Gone already: its backups can no longer be found by it.
                return if e.is_not_found() {
                    Ok(Vec::new())
                } else {
                    Err(e)
                };
            }
        };
        let arn = described
            .file_systems()
            .first()
            .and_then(|f| f.file_system_arn())
            .map(str::to_string)
            .ok_or_else(|| {
                CloudError::new(
                    SVC,
                    "DescribeFileSystems",
                    "FileSystemNotFound",
                    format!("file system {id} not found"),
                )
            })?;
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self.rt.call(
                "backup",
                "ListRecoveryPointsByResource",
                self.backup
                    .list_recovery_points_by_resource()
                    .resource_arn(&arn)
                    .set_next_token(token.take())
                    .send(),
            )?;
            for p in out.recovery_points() {
                if let (Some(vault), Some(point)) = (p.backup_vault_name(), p.recovery_point_arn())
                {
                    found.push((vault.to_string(), point.to_string()));
                }
            }
            match out.next_token() {
                Some(t) if !t.is_empty() => token = Some(t.to_string()),
                _ => break,
            }
        }
        Ok(found)
    }

    fn delete_backup(&self, vault: &str, recovery_point: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                "backup",
                "DeleteRecoveryPoint",
                self.backup
                    .delete_recovery_point()
                    .backup_vault_name(vault)
                    .recovery_point_arn(recovery_point)
                    .send(),
            )
            .map(|_| ())
    }

    fn set_automatic_backups(&self, id: &str, on: bool) -> Result<(), CloudError> {
        let policy = BackupPolicy::builder()
            .status(if on {
                Status::Enabled
            } else {
                Status::Disabled
            })
            .build()
            .map_err(|e| {
                CloudError::new(SVC, "PutBackupPolicy", "InvalidRequest", e.to_string())
            })?;
        self.rt
            .call(
                SVC,
                "PutBackupPolicy",
                self.client
                    .put_backup_policy()
                    .file_system_id(id)
                    .backup_policy(policy)
                    .send(),
            )
            .map(|_| ())
    }

    fn create_file_system(
        &self,
        token: &str,
        backups: bool,
        tags: &Tags,
    ) -> Result<FileSystem, CloudError> {
        let req = self
            .client
            .create_file_system()
            .creation_token(token)
            .encrypted(true)
            .backup(backups)
            .performance_mode(aws_sdk_efs::types::PerformanceMode::GeneralPurpose)
            .throughput_mode(aws_sdk_efs::types::ThroughputMode::Elastic)
            .set_tags(Some(
                tags.pairs()
                    .into_iter()
                    .map(|(k, v)| {
                        Tag::builder()
                            .key(k)
                            .value(v)
                            .build()
                            .expect("tag has key and value")
                    })
                    .collect(),
            ));
        match self.rt.call(SVC, "CreateFileSystem", req.send()) {
            Ok(out) => Ok(FileSystem {
                id: out.file_system_id().to_string(),
                name: out.name().unwrap_or_default().to_string(),
                state: out.life_cycle_state().as_str().to_string(),
                encrypted: out.encrypted().unwrap_or(false),
                creation_token: out.creation_token().to_string(),
                size_bytes: out.size_in_bytes().map(|s| s.value()).unwrap_or(0),
                mount_targets: i64::from(out.number_of_mount_targets()),
            }),
            Err(e) => {
                // Same token: the earlier request (whose answer we lost) created it.
                if e.code == "FileSystemAlreadyExists" {
                    if let Some(fs) = self.find_by_token(token)? {
                        return Ok(fs);
                    }
                }
                Err(e)
            }
        }
    }

    fn delete_file_system(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteFileSystem",
                self.client.delete_file_system().file_system_id(id).send(),
            )
            .map(|_| ())
    }

    fn mount_targets(&self, fs_id: &str) -> Result<Vec<MountTarget>, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeMountTargets",
            self.client
                .describe_mount_targets()
                .file_system_id(fs_id)
                .send(),
        )?;
        Ok(out.mount_targets().iter().map(to_mt).collect())
    }

    fn create_mount_target(
        &self,
        fs_id: &str,
        subnet_id: &str,
        security_groups: &[String],
    ) -> Result<MountTarget, CloudError> {
        let out = self.rt.call(
            SVC,
            "CreateMountTarget",
            self.client
                .create_mount_target()
                .file_system_id(fs_id)
                .subnet_id(subnet_id)
                .set_security_groups(Some(security_groups.to_vec()))
                .send(),
        );
        let out = match out {
            Ok(out) => out,
            // A retried request whose first answer was lost: the mount target in this subnet
            // is the one it made.
            Err(e) if e.code == "MountTargetConflict" => {
                return self
                    .mount_targets(fs_id)?
                    .into_iter()
                    .find(|m| m.subnet_id == subnet_id)
                    .ok_or(e)
            }
            Err(e) => return Err(e),
        };
        Ok(MountTarget {
            id: out.mount_target_id().to_string(),
            file_system_id: out.file_system_id().to_string(),
            subnet_id: out.subnet_id().to_string(),
            az: out.availability_zone_name().unwrap_or_default().to_string(),
            ip: out.ip_address().unwrap_or_default().to_string(),
            state: state_str(Some(out.life_cycle_state())),
        })
    }

    fn delete_mount_target(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteMountTarget",
                self.client.delete_mount_target().mount_target_id(id).send(),
            )
            .map(|_| ())
    }

    fn mount_target(&self, id: &str) -> Result<Option<MountTarget>, CloudError> {
        match self.rt.call(
            SVC,
            "DescribeMountTargets",
            self.client
                .describe_mount_targets()
                .mount_target_id(id)
                .send(),
        ) {
            Ok(out) => Ok(out.mount_targets().first().map(to_mt)),
            Err(e) => e.absent(),
        }
    }

    fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<FileSystem>, CloudError> {
        Ok(self
            .descriptions()?
            .iter()
            .filter(|f| {
                f.tags()
                    .iter()
                    .any(|t| t.key() == key && t.value() == value)
            })
            .map(to_fs)
            .collect())
    }

    fn list(&self) -> Result<Vec<FileSystem>, CloudError> {
        Ok(self.descriptions()?.iter().map(to_fs).collect())
    }
}
