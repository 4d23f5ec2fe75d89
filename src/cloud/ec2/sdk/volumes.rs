//! [`Ec2Volumes`] over aws-sdk-ec2: encrypted EBS volumes, attachments, snapshots.

use aws_sdk_ec2::types::{ResourceType, VolumeType};

use crate::cloud::{retry_create, CloudError, Tags};

use super::super::convert::*;
use super::super::*;
use super::SdkEc2;

impl SdkEc2 {
    /// One CreateVolume request, without the SDK's retries (see [`retry_create`]).
    fn create_volume_once(&self, req: &VolumeRequest) -> Result<Volume, CloudError> {
        let mut tags = req.tags.clone();
        tags.extra
            .insert(TOKEN_TAG.to_string(), req.client_token.clone());
        let out = self.rt.call(
            SVC,
            "CreateVolume",
            self.client
                .create_volume()
                .availability_zone(&req.az)
                .size(req.size_gb)
                .volume_type(VolumeType::from(req.volume_type.as_str()))
                .encrypted(true)
                .client_token(&req.client_token)
                .tag_specifications(tag_spec(ResourceType::Volume, &tags))
                .customize()
                .config_override(no_sdk_retries())
                .send(),
        )?;
        Ok(Volume {
            id: s(out.volume_id()),
            name: req.tags.name.clone(),
            az: s(out.availability_zone()),
            size_gb: out.size().unwrap_or(req.size_gb) as i64,
            volume_type: out
                .volume_type()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            encrypted: out.encrypted().unwrap_or(true),
            state: out
                .state()
                .map(|t| t.as_str().to_string())
                .unwrap_or_default(),
            attached_to: None,
            device: None,
            delete_on_termination: false,
        })
    }
}

impl Ec2Volumes for SdkEc2 {
    fn find_snapshots(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<(String, String)>, CloudError> {
        let mut req = self.client.describe_snapshots().owner_ids("self");
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeSnapshots", req.send())?;
        let mut found: Vec<(String, String)> = out
            .snapshots()
            .iter()
            .map(|s| {
                (
                    s.snapshot_id().unwrap_or_default().to_string(),
                    s.start_time().map(|t| t.to_string()).unwrap_or_default(),
                )
            })
            .collect();
        found.sort_by(|a, b| a.1.cmp(&b.1));
        Ok(found)
    }

    fn delete_snapshot(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteSnapshot",
                self.client.delete_snapshot().snapshot_id(id).send(),
            )
            .map(|_| ())
    }

    fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &Tags,
    ) -> Result<String, CloudError> {
        let out = self.rt.call(
            SVC,
            "CreateSnapshot",
            self.client
                .create_snapshot()
                .volume_id(volume_id)
                .description(description)
                .tag_specifications(tag_spec(ResourceType::Snapshot, tags))
                .send(),
        )?;
        Ok(s(out.snapshot_id()))
    }

    fn detach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DetachVolume",
                self.client
                    .detach_volume()
                    .volume_id(volume_id)
                    .instance_id(instance_id)
                    .device(device)
                    .send(),
            )
            .map(|_| ())
    }

    fn find_volumes(&self, tags: &[(String, String)]) -> Result<Vec<Volume>, CloudError> {
        let mut req = self
            .client
            .describe_volumes()
            .filters(filter("status", &["creating", "available", "in-use"]));
        for (k, v) in tags {
            req = req.filters(filter(&format!("tag:{k}"), &[v]));
        }
        let out = self.rt.call(SVC, "DescribeVolumes", req.send())?;
        Ok(out.volumes().iter().map(to_volume).collect())
    }

    fn volume(&self, id: &str) -> Result<Volume, CloudError> {
        let out = self.rt.call(
            SVC,
            "DescribeVolumes",
            self.client.describe_volumes().volume_ids(id).send(),
        )?;
        out.volumes().first().map(to_volume).ok_or_else(|| {
            CloudError::new(
                SVC,
                "DescribeVolumes",
                "InvalidVolume.NotFound",
                format!("volume {id} not found"),
            )
        })
    }

    fn create_volume(&self, req: &VolumeRequest) -> Result<Volume, CloudError> {
        retry_create(
            || self.create_volume_once(req),
            || {
                Ok(self
                    .find_volumes(&[(TOKEN_TAG.to_string(), req.client_token.clone())])?
                    .into_iter()
                    .next())
            },
        )
    }

    fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<String, CloudError> {
        let result = self
            .rt
            .call(
                SVC,
                "AttachVolume",
                self.client
                    .attach_volume()
                    .volume_id(volume_id)
                    .instance_id(instance_id)
                    .device(device)
                    .send(),
            )
            .map(|out| {
                out.state()
                    .map(|st| st.as_str().to_string())
                    .unwrap_or_else(|| "attaching".into())
            });
        match result {
            // A retried request whose first answer was lost: attached already, to this instance.
            Err(e) if e.code.contains("InUse") || e.code == "IncorrectState" => {
                match self.volume(volume_id) {
                    Ok(v) if v.attached_to.as_deref() == Some(instance_id) => {
                        Ok(if v.state == "in-use" {
                            "attached"
                        } else {
                            "attaching"
                        }
                        .into())
                    }
                    _ => Err(e),
                }
            }
            other => other,
        }
    }

    fn delete_volume(&self, id: &str) -> Result<(), CloudError> {
        self.rt
            .call(
                SVC,
                "DeleteVolume",
                self.client.delete_volume().volume_id(id).send(),
            )
            .map(|_| ())
    }
}
