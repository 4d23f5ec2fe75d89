//! EC2 as a plan sees it: answered from the model.

use crate::cloud::ec2::{
    Ec2Catalog, Ec2Instances, Ec2Network, Ec2Volumes, Image, IngressRule, Instance,
    InstanceTypeInfo, KeyPair, LaunchSpec, SecurityGroup, SpotPrice, Subnet, Volume, VolumeRequest,
    Vpc,
};
use crate::cloud::{CloudError, Tags};

use super::*;

const GPU_FAMILIES: &[&str] = &["g4dn", "g4ad", "g5", "g5g", "g6", "g6e", "p3", "p4d", "p5"];

impl Ec2Network for PlanApi {
    fn default_vpc(&self) -> Result<Vpc, CloudError> {
        self.0.op(&["EC2:DescribeVpcs"]);
        Ok(Vpc {
            id: format!("vpc-{PLANNED}-default"),
            cidr: "172.31.0.0/16".into(),
            is_default: true,
        })
    }

    fn vpc(&self, id: &str) -> Result<Vpc, CloudError> {
        self.0.op(&["EC2:DescribeVpcs"]);
        Ok(Vpc {
            id: id.into(),
            cidr: "10.0.0.0/16".into(),
            is_default: false,
        })
    }

    fn subnets(&self, vpc_id: Option<&str>) -> Result<Vec<Subnet>, CloudError> {
        self.0.op(&["EC2:DescribeSubnets"]);
        let default_vpc = format!("vpc-{PLANNED}-default");
        let vpc_id = vpc_id.unwrap_or(&default_vpc);
        Ok((0..3)
            .map(|i| Subnet {
                id: format!("subnet-{PLANNED}-{}", self.0.az(i)),
                vpc_id: vpc_id.into(),
                az: self.0.az(i),
                cidr: format!("172.31.{}.0/20", i * 16),
                default_for_az: true,
                public_ip_on_launch: true,
            })
            .collect())
    }

    fn managed_prefix_list(&self, name: &str) -> Result<Option<String>, CloudError> {
        self.0.op(&["EC2:DescribeManagedPrefixLists"]);
        Ok(Some(format!(
            "pl-{PLANNED}-{}",
            name.rsplit('.').next().unwrap_or(name)
        )))
    }

    fn find_security_group(
        &self,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<SecurityGroup>, CloudError> {
        self.0.op(&["EC2:DescribeSecurityGroups"]);
        Ok(self
            .model()
            .groups
            .find(|g| g.vpc_id == vpc_id && g.name == name))
    }

    fn security_group(&self, id: &str) -> Result<SecurityGroup, CloudError> {
        self.0.op(&["EC2:DescribeSecurityGroups"]);
        self.model()
            .groups
            .find(|g| g.id == id)
            .ok_or_else(|| not_found("ec2", "DescribeSecurityGroups", "InvalidGroup.NotFound", id))
    }

    fn create_security_group(
        &self,
        vpc_id: &str,
        name: &str,
        _d: &str,
        tags: &Tags,
    ) -> Result<SecurityGroup, CloudError> {
        // A duplicate name is answered by looking the group up.
        self.0
            .op(&["EC2:CreateSecurityGroup", "EC2:DescribeSecurityGroups"]);
        let g = SecurityGroup {
            id: self.0.id("sg"),
            name: name.into(),
            vpc_id: vpc_id.into(),
            ingress: Vec::new(),
        };
        self.model().groups.add(g.clone(), tags.pairs());
        Ok(g)
    }

    fn authorize_ingress(
        &self,
        group: &SecurityGroup,
        rules: &[IngressRule],
    ) -> Result<SecurityGroup, CloudError> {
        self.0.op(&["EC2:AuthorizeSecurityGroupIngress"]);
        let mut m = self.model();
        let g = m.groups.find_mut(|g| g.id == group.id);
        let mut out = group.clone();
        out.ingress.extend(rules.iter().cloned());
        if let Some(g) = g {
            *g = out.clone();
        }
        Ok(out)
    }

    fn delete_security_group(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&["EC2:DeleteSecurityGroup"]);
        self.model().groups.remove(|g| g.id == id);
        Ok(())
    }

    fn find_key_pair(&self, name: &str) -> Result<Option<KeyPair>, CloudError> {
        self.0.op(&["EC2:DescribeKeyPairs"]);
        Ok(self.model().key_pairs.find(|k| k.name == name))
    }

    fn create_key_pair(&self, name: &str, tags: &Tags) -> Result<(KeyPair, String), CloudError> {
        // A lost answer makes it look (and delete what the lost request made) before retrying.
        self.0.op(&[
            "EC2:CreateKeyPair",
            "EC2:DescribeKeyPairs",
            "EC2:DeleteKeyPair",
        ]);
        let k = KeyPair {
            name: name.into(),
            id: self.0.id("key"),
            fingerprint: String::new(),
            private_key_path: None,
        };
        self.model().key_pairs.add(k.clone(), tags.pairs());
        Ok((k, "(a private key, created at apply)".into()))
    }

    fn import_key_pair(
        &self,
        name: &str,
        _public_key: &str,
        tags: &Tags,
    ) -> Result<KeyPair, CloudError> {
        self.0.op(&["EC2:ImportKeyPair"]);
        let k = KeyPair {
            name: name.into(),
            id: self.0.id("key"),
            fingerprint: String::new(),
            private_key_path: None,
        };
        self.model().key_pairs.add(k.clone(), tags.pairs());
        Ok(k)
    }

    fn delete_key_pair(&self, name: &str) -> Result<(), CloudError> {
        self.0.op(&["EC2:DeleteKeyPair"]);
        self.model().key_pairs.remove(|k| k.name == name);
        Ok(())
    }

    fn vpcs(&self) -> Result<Vec<Vpc>, CloudError> {
        Ok(vec![self.default_vpc()?])
    }

    fn list_security_groups(&self, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, CloudError> {
        self.0.op(&["EC2:DescribeSecurityGroups"]);
        Ok(self
            .model()
            .groups
            .filter(|g| vpc_id.is_none_or(|v| g.vpc_id == v)))
    }

    fn find_security_groups(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<SecurityGroup>, CloudError> {
        self.0.op(&["EC2:DescribeSecurityGroups"]);
        Ok(self.model().groups.tagged(tags, |_| true))
    }

    fn revoke_all_ingress(&self, group: &SecurityGroup) -> Result<(), CloudError> {
        if !group.ingress.is_empty() {
            self.0.op(&["EC2:RevokeSecurityGroupIngress"]);
        }
        if let Some(g) = self.model().groups.find_mut(|g| g.id == group.id) {
            g.ingress.clear();
        }
        Ok(())
    }

    fn revoke_rules(&self, group_id: &str, rules: &[IngressRule]) -> Result<(), CloudError> {
        if !rules.is_empty() {
            self.0.op(&["EC2:RevokeSecurityGroupIngress"]);
        }
        if let Some(g) = self.model().groups.find_mut(|g| g.id == group_id) {
            g.ingress.retain(|r| !rules.iter().any(|x| x.same_grant(r)));
        }
        Ok(())
    }

    fn find_key_pairs(&self, tags: &[(String, String)]) -> Result<Vec<KeyPair>, CloudError> {
        self.0.op(&["EC2:DescribeKeyPairs"]);
        Ok(self.model().key_pairs.tagged(tags, |_| true))
    }
}

impl Ec2Catalog for PlanApi {
    fn latest_al2023(&self, arch: &str) -> Result<Image, CloudError> {
        self.0.op(&["SSM:GetParameter"]);
        Ok(Image {
            id: format!("ami-{PLANNED}-al2023"),
            name: format!("al2023-ami-kernel-default-{arch} (latest, looked up at apply)"),
            architecture: arch.into(),
            source: "ssm".into(),
        })
    }

    fn spot_price_history(&self, instance_type: &str) -> Result<Vec<SpotPrice>, CloudError> {
        // Unknown until apply: the cost estimate falls back to a share of on-demand.
        let _ = instance_type;
        self.0.op(&["EC2:DescribeSpotPriceHistory"]);
        Ok(Vec::new())
    }

    fn spot_price_changes(
        &self,
        _t: &str,
        _az: &str,
        _since: std::time::SystemTime,
    ) -> Result<Vec<SpotPrice>, CloudError> {
        self.0.op(&["EC2:DescribeSpotPriceHistory"]);
        Ok(Vec::new())
    }

    fn instance_type_info(
        &self,
        instance_type: &str,
    ) -> Result<Option<InstanceTypeInfo>, CloudError> {
        self.0.op(&["EC2:DescribeInstanceTypes"]);
        let family = instance_type.split('.').next().unwrap_or("");
        let gpu = GPU_FAMILIES.contains(&family);
        Ok(Some(InstanceTypeInfo {
            name: instance_type.into(),
            vcpus: 0,
            memory_gib: 0.0,
            gpus: i64::from(gpu),
            gpu_model: if gpu {
                "GPU (model known at apply)".into()
            } else {
                String::new()
            },
            gpu_memory_gib: 0.0,
            architecture: if family.ends_with('g') && !gpu {
                "arm64"
            } else {
                "x86_64"
            }
            .into(),
            spot_supported: true,
        }))
    }

    fn zones_offering(&self, _t: &str) -> Result<Vec<String>, CloudError> {
        self.0.op(&["EC2:DescribeInstanceTypeOfferings"]);
        Ok((0..3).map(|i| self.0.az(i)).collect())
    }

    fn latest_gpu_ami(&self) -> Result<Image, CloudError> {
        self.0.op(&["SSM:GetParameter"]);
        Ok(Image {
            id: format!("ami-{PLANNED}-dlami"),
            name: "Deep Learning Base AMI (latest, looked up at apply)".into(),
            architecture: "x86_64".into(),
            source: "ssm".into(),
        })
    }
}

impl Ec2Instances for PlanApi {
    fn run_instance(&self, spec: &LaunchSpec) -> Result<Instance, CloudError> {
        self.0.op(&["EC2:RunInstances"]);
        let az = spec
            .subnet_id
            .rsplit_once(&format!("{PLANNED}-"))
            .map(|(_, az)| az.to_string())
            .unwrap_or_else(|| self.0.az(0));
        let i = Instance {
            id: self.0.id("i"),
            name: spec.tags.name.clone(),
            state: "running".into(),
            instance_type: spec.instance_type.clone(),
            az,
            subnet_id: spec.subnet_id.clone(),
            vpc_id: String::new(),
            image_id: spec.image_id.clone(),
            private_ip: Some("10.0.0.10".into()),
            public_ip: Some("192.0.2.10".into()),
            public_dns: None,
            lifecycle: if spec.spot { "spot" } else { "on-demand" }.into(),
            imdsv2_required: true,
            instance_profile_arn: spec.instance_profile.clone(),
            launch_time: None,
            state_reason: None,
            spot_request_id: None,
            security_groups: spec.security_group_ids.clone(),
            tags: spec.tags.pairs().into_iter().collect(),
        };
        if let Some(ud) = &spec.user_data {
            self.0
                .user_data
                .lock()
                .unwrap()
                .push((spec.tags.name.clone(), ud.clone()));
        }
        self.model().instances.add(i.clone(), spec.tags.pairs());
        Ok(i)
    }

    fn instance(&self, id: &str) -> Result<Instance, CloudError> {
        self.0.op(&["EC2:DescribeInstances"]);
        self.model()
            .instances
            .find(|i| i.id == id)
            .ok_or_else(|| not_found("ec2", "DescribeInstances", "InvalidInstanceID.NotFound", id))
    }

    fn find_instances(&self, tags: &[(String, String)]) -> Result<Vec<Instance>, CloudError> {
        self.0.op(&["EC2:DescribeInstances"]);
        Ok(self
            .model()
            .instances
            .tagged(tags, |i| i.state != "terminated"))
    }

    fn terminate_instance(&self, id: &str) -> Result<String, CloudError> {
        self.0.op(&["EC2:TerminateInstances"]);
        let mut m = self.model();
        let i = m.instances.find_mut(|i| i.id == id);
        Ok(match i {
            Some(i) => std::mem::replace(&mut i.state, "terminated".into()),
            None => "terminated".into(),
        })
    }

    fn spot_request_status(&self, _id: &str) -> Result<Option<String>, CloudError> {
        self.0.op(&["EC2:DescribeSpotInstanceRequests"]);
        Ok(None)
    }

    fn describe_instances(
        &self,
        _f: &[(String, Vec<String>)],
    ) -> Result<Vec<Instance>, CloudError> {
        self.0.op(&["EC2:DescribeInstances"]);
        Ok(self.model().instances.filter(|_| true))
    }

    fn stop_instance(&self, id: &str) -> Result<String, CloudError> {
        self.0.op(&["EC2:StopInstances"]);
        self.set_state(id, "stopped")
    }

    fn start_instance(&self, id: &str) -> Result<String, CloudError> {
        self.0.op(&["EC2:StartInstances"]);
        self.set_state(id, "running")
    }

    fn set_instance_type(&self, id: &str, instance_type: &str) -> Result<(), CloudError> {
        self.0.op(&["EC2:ModifyInstanceAttribute"]);
        if let Some(i) = self.model().instances.find_mut(|i| i.id == id) {
            i.instance_type = instance_type.to_string();
        }
        Ok(())
    }

    fn set_tags(&self, resource_id: &str, tags: &[(String, String)]) -> Result<(), CloudError> {
        self.0.op(&["EC2:CreateTags"]);
        if let Some((i, t)) = self
            .model()
            .instances
            .find_tagged_mut(|i| i.id == resource_id)
        {
            for (k, v) in tags {
                i.tags.insert(k.clone(), v.clone());
                t.retain(|(tk, _)| tk != k);
                t.push((k.clone(), v.clone()));
            }
        }
        Ok(())
    }
}

impl Ec2Volumes for PlanApi {
    fn find_snapshots(
        &self,
        _tags: &[(String, String)],
    ) -> Result<Vec<(String, String)>, CloudError> {
        self.0.op(&["EC2:DescribeSnapshots"]);
        Ok(Vec::new())
    }

    fn delete_snapshot(&self, _id: &str) -> Result<(), CloudError> {
        self.0.op(&["EC2:DeleteSnapshot"]);
        Ok(())
    }

    fn create_snapshot(
        &self,
        _volume_id: &str,
        _description: &str,
        _tags: &Tags,
    ) -> Result<String, CloudError> {
        self.0.op(&["EC2:CreateSnapshot", "EC2:CreateTags"]);
        Ok(self.0.id("snap"))
    }

    fn detach_volume(
        &self,
        volume_id: &str,
        _instance_id: &str,
        _device: &str,
    ) -> Result<(), CloudError> {
        self.0.op(&["EC2:DetachVolume"]);
        if let Some(v) = self.model().volumes.find_mut(|v| v.id == volume_id) {
            v.state = "available".into();
            v.attached_to = None;
            v.device = None;
        }
        Ok(())
    }

    fn find_volumes(&self, tags: &[(String, String)]) -> Result<Vec<Volume>, CloudError> {
        self.0.op(&["EC2:DescribeVolumes"]);
        Ok(self.model().volumes.tagged(tags, |v| v.state != "deleted"))
    }

    fn volume(&self, id: &str) -> Result<Volume, CloudError> {
        self.0.op(&["EC2:DescribeVolumes"]);
        self.model()
            .volumes
            .find(|v| v.id == id)
            .ok_or_else(|| not_found("ec2", "DescribeVolumes", "InvalidVolume.NotFound", id))
    }

    fn create_volume(&self, req: &VolumeRequest) -> Result<Volume, CloudError> {
        self.0.op(&["EC2:CreateVolume"]);
        let v = Volume {
            id: self.0.id("vol"),
            name: req.tags.name.clone(),
            az: req.az.clone(),
            size_gb: i64::from(req.size_gb),
            volume_type: req.volume_type.clone(),
            encrypted: true,
            state: "available".into(),
            attached_to: None,
            device: None,
            delete_on_termination: false,
        };
        self.model().volumes.add(v.clone(), req.tags.pairs());
        Ok(v)
    }

    fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<String, CloudError> {
        self.0.op(&["EC2:AttachVolume"]);
        if let Some(v) = self.model().volumes.find_mut(|v| v.id == volume_id) {
            v.state = "in-use".into();
            v.attached_to = Some(instance_id.into());
            v.device = Some(device.into());
        }
        Ok("attached".into())
    }

    fn delete_volume(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&["EC2:DeleteVolume"]);
        self.model().volumes.remove(|v| v.id == id);
        Ok(())
    }
}
