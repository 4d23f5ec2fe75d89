//! The recording backend behind `run --plan`: every service interface answered from memory,
//! with no network and no credentials. Each call records the AWS operations the SDK
//! implementation would make (the list `geusemaker policy` turns into IAM actions); created
//! resources get ids marked "known after apply" and are found again by later calls, so a recipe
//! runs end to end exactly as it would for a first deploy.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::cloudfront::{CloudFrontApi, Distribution, OriginSpec};
use super::ec2::{
    Ec2Api, Image, IngressRule, Instance, InstanceTypeInfo, KeyPair, LaunchSpec, SecurityGroup,
    SpotPrice, Subnet, Volume, VolumeRequest, Vpc,
};
use super::efs::{EfsApi, FileSystem, MountTarget};
use super::elb::{
    ElbApi, HeaderRule, Listener, ListenerAction, LoadBalancer, TargetGroup, TargetGroupSpec,
};
use super::iam::{IamApi, InstanceProfile};
use super::pricing::PricingApi;
use super::ssm::{CommandResult, Parameter, SsmApi};
use super::{Aws, CallStats, CloudError, Identity, Tags};
use crate::state::Kind;

/// Marks ids that exist only after a real run.
pub const PLANNED: &str = "planned";

/// Is `id` one the plan made up?
pub fn is_planned(id: &str) -> bool {
    id.to_ascii_lowercase().contains(PLANNED)
}

/// Planned resources of one type, each with the tags it was created with: the model's one
/// store, for every type.
struct Tagged<T>(Vec<(T, Vec<(String, String)>)>);

impl<T> Default for Tagged<T> {
    fn default() -> Self {
        Tagged(Vec::new())
    }
}

impl<T: Clone> Tagged<T> {
    /// Record `item`, created with `tags`.
    fn add(&mut self, item: T, tags: Vec<(String, String)>) {
        self.0.push((item, tags));
    }

    /// The first item `pred` accepts.
    fn find(&self, pred: impl Fn(&T) -> bool) -> Option<T> {
        self.0.iter().map(|(x, _)| x).find(|x| pred(x)).cloned()
    }

    fn find_mut(&mut self, pred: impl Fn(&T) -> bool) -> Option<&mut T> {
        self.0.iter_mut().map(|(x, _)| x).find(|x| pred(x))
    }

    /// The first item `pred` accepts, with its tags.
    fn find_tagged_mut(
        &mut self,
        pred: impl Fn(&T) -> bool,
    ) -> Option<(&mut T, &mut Vec<(String, String)>)> {
        self.0
            .iter_mut()
            .find(|(x, _)| pred(x))
            .map(|(x, t)| (x, t))
    }

    /// Every item `pred` accepts.
    fn filter(&self, pred: impl Fn(&T) -> bool) -> Vec<T> {
        self.0
            .iter()
            .map(|(x, _)| x)
            .filter(|x| pred(x))
            .cloned()
            .collect()
    }

    /// The items carrying all the `want` tags that `pred` accepts.
    fn tagged(&self, want: &[(String, String)], pred: impl Fn(&T) -> bool) -> Vec<T> {
        self.0
            .iter()
            .filter(|(x, t)| has_tags(t, want) && pred(x))
            .map(|(x, _)| x.clone())
            .collect()
    }

    fn remove(&mut self, pred: impl Fn(&T) -> bool) {
        self.0.retain(|(x, _)| !pred(x));
    }
}

#[derive(Default)]
struct Model {
    instances: Tagged<Instance>,
    groups: Tagged<SecurityGroup>,
    key_pairs: Tagged<KeyPair>,
    volumes: Tagged<Volume>,
    file_systems: Tagged<FileSystem>,
    mount_targets: Vec<MountTarget>,
    load_balancers: Tagged<LoadBalancer>,
    target_groups: Tagged<TargetGroup>,
    listeners: Vec<(String, Listener)>,
    distributions: Tagged<Distribution>,
    parameters: BTreeMap<String, Parameter>,
    profiles: Vec<InstanceProfile>,
}

/// What a plan did: the operations, in order, and the model of what it created.
pub struct Recorder {
    region: String,
    calls: Mutex<Vec<String>>,
    /// The user data of each instance launched: (name, script).
    user_data: Mutex<Vec<(String, String)>>,
    next: Mutex<u32>,
    model: Mutex<Model>,
}

fn has_tags(have: &[(String, String)], want: &[(String, String)]) -> bool {
    want.iter().all(|w| have.contains(w))
}

fn not_found(service: &'static str, op: &str, code: &str, what: &str) -> CloudError {
    CloudError::new(service, op, code, format!("{what} does not exist"))
}

impl Recorder {
    pub fn new(region: &str) -> Arc<Recorder> {
        Arc::new(Recorder {
            region: region.to_string(),
            calls: Mutex::new(Vec::new()),
            user_data: Mutex::new(Vec::new()),
            next: Mutex::new(0),
            model: Mutex::new(Model::default()),
        })
    }

    /// The operations recorded so far (`EC2:RunInstances`, …), in call order.
    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }

    /// The user data of every instance the plan launched, as `(name, script)`.
    pub fn user_data(&self) -> Vec<(String, String)> {
        self.user_data.lock().unwrap().clone()
    }

    /// Operation → count.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for c in self.calls() {
            *m.entry(c).or_default() += 1;
        }
        m
    }

    fn op(&self, ops: &[&str]) {
        self.calls
            .lock()
            .unwrap()
            .extend(ops.iter().map(|s| s.to_string()));
    }

    fn id(&self, prefix: &str) -> String {
        let mut n = self.next.lock().unwrap();
        *n += 1;
        format!("{prefix}-{PLANNED}{:04}", *n)
    }

    fn az(&self, i: usize) -> String {
        format!("{}{}", self.region, ["a", "b", "c"][i % 3])
    }

    /// The AWS clients of a plan: every service answered by this recorder.
    pub fn aws(self: &Arc<Self>) -> Aws {
        Aws {
            region: self.region.clone(),
            identity: Identity {
                account: "123456789012".into(),
                arn: "arn:aws:iam::123456789012:user/plan".into(),
            },
            ec2: Arc::new(PlanApi(self.clone())),
            efs: Arc::new(PlanApi(self.clone())),
            elb: Arc::new(PlanApi(self.clone())),
            cloudfront: Arc::new(PlanApi(self.clone())),
            ssm: Arc::new(PlanApi(self.clone())),
            iam: Arc::new(PlanApi(self.clone())),
            pricing: Arc::new(PlanApi(self.clone())),
            stats: Arc::new(CallStats::default()),
        }
    }
}

/// One handle type implements every service interface over the shared recorder.
struct PlanApi(Arc<Recorder>);

impl PlanApi {
    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.0.model.lock().unwrap()
    }

    /// Move a planned instance to `state`; returns the state it had.
    fn set_state(&self, id: &str, state: &str) -> Result<String, CloudError> {
        let mut m = self.model();
        Ok(match m.instances.find_mut(|i| i.id == id) {
            Some(i) => std::mem::replace(&mut i.state, state.into()),
            None => state.into(),
        })
    }
}

const GPU_FAMILIES: &[&str] = &["g4dn", "g4ad", "g5", "g5g", "g6", "g6e", "p3", "p4d", "p5"];

impl Ec2Api for PlanApi {
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
    fn latest_al2023(&self, arch: &str) -> Result<Image, CloudError> {
        self.0.op(&["SSM:GetParameter"]);
        Ok(Image {
            id: format!("ami-{PLANNED}-al2023"),
            name: format!("al2023-ami-kernel-default-{arch} (latest, looked up at apply)"),
            architecture: arch.into(),
            source: "ssm".into(),
        })
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
    fn spot_request_status(&self, _id: &str) -> Result<Option<String>, CloudError> {
        self.0.op(&["EC2:DescribeSpotInstanceRequests"]);
        Ok(None)
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
    fn vpcs(&self) -> Result<Vec<Vpc>, CloudError> {
        Ok(vec![self.default_vpc()?])
    }
    fn describe_instances(
        &self,
        _f: &[(String, Vec<String>)],
    ) -> Result<Vec<Instance>, CloudError> {
        self.0.op(&["EC2:DescribeInstances"]);
        Ok(self.model().instances.filter(|_| true))
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

impl EfsApi for PlanApi {
    fn find_by_token(&self, token: &str) -> Result<Option<FileSystem>, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        Ok(self
            .model()
            .file_systems
            .find(|f| f.creation_token == token))
    }
    fn file_system(&self, id: &str) -> Result<FileSystem, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        self.model()
            .file_systems
            .find(|f| f.id == id)
            .ok_or_else(|| not_found("efs", "DescribeFileSystems", "FileSystemNotFound", id))
    }
    fn automatic_backups(&self, _id: &str) -> Result<bool, CloudError> {
        self.0.op(&["EFS:DescribeBackupPolicy"]);
        Ok(true)
    }
    fn set_automatic_backups(&self, _id: &str, _on: bool) -> Result<(), CloudError> {
        self.0.op(&["EFS:PutBackupPolicy"]);
        Ok(())
    }
    fn backups(&self, _id: &str) -> Result<Vec<(String, String)>, CloudError> {
        self.0.op(&[
            "EFS:DescribeFileSystems",
            "Backup:ListRecoveryPointsByResource",
        ]);
        Ok(Vec::new())
    }
    fn delete_backup(&self, _vault: &str, _point: &str) -> Result<(), CloudError> {
        self.0.op(&["Backup:DeleteRecoveryPoint"]);
        Ok(())
    }
    fn create_file_system(
        &self,
        token: &str,
        _backups: bool,
        tags: &Tags,
    ) -> Result<FileSystem, CloudError> {
        // "Already exists" (same creation token) is answered by looking it up.
        self.0
            .op(&["EFS:CreateFileSystem", "EFS:DescribeFileSystems"]);
        let f = FileSystem {
            id: self.0.id("fs"),
            name: tags.name.clone(),
            state: "available".into(),
            encrypted: true,
            creation_token: token.into(),
            size_bytes: 0,
            mount_targets: 0,
        };
        self.model().file_systems.add(f.clone(), tags.pairs());
        Ok(f)
    }
    fn delete_file_system(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&["EFS:DeleteFileSystem"]);
        self.model().file_systems.remove(|f| f.id == id);
        Ok(())
    }
    fn mount_targets(&self, fs_id: &str) -> Result<Vec<MountTarget>, CloudError> {
        self.0.op(&["EFS:DescribeMountTargets"]);
        Ok(self
            .model()
            .mount_targets
            .iter()
            .filter(|m| m.file_system_id == fs_id)
            .cloned()
            .collect())
    }
    fn mount_target(&self, id: &str) -> Result<Option<MountTarget>, CloudError> {
        self.0.op(&["EFS:DescribeMountTargets"]);
        Ok(self
            .model()
            .mount_targets
            .iter()
            .find(|m| m.id == id)
            .cloned())
    }
    fn list(&self) -> Result<Vec<FileSystem>, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        Ok(self.model().file_systems.filter(|_| true))
    }
    fn find_by_tag(&self, key: &str, value: &str) -> Result<Vec<FileSystem>, CloudError> {
        self.0.op(&["EFS:DescribeFileSystems"]);
        let want = [(key.to_string(), value.to_string())];
        Ok(self.model().file_systems.tagged(&want, |_| true))
    }
    fn create_mount_target(
        &self,
        fs_id: &str,
        subnet_id: &str,
        _sgs: &[String],
    ) -> Result<MountTarget, CloudError> {
        self.0.op(&["EFS:CreateMountTarget"]);
        let m = MountTarget {
            id: self.0.id("fsmt"),
            file_system_id: fs_id.into(),
            subnet_id: subnet_id.into(),
            az: subnet_id
                .rsplit_once(&format!("{PLANNED}-"))
                .map(|(_, a)| a.to_string())
                .unwrap_or_default(),
            ip: "10.0.0.20".into(),
            state: "available".into(),
        };
        self.model().mount_targets.push(m.clone());
        Ok(m)
    }
    fn delete_mount_target(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&["EFS:DeleteMountTarget"]);
        self.model().mount_targets.retain(|m| m.id != id);
        Ok(())
    }
}

impl ElbApi for PlanApi {
    fn find_load_balancer(&self, name: &str) -> Result<Option<LoadBalancer>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeLoadBalancers"]);
        Ok(self.model().load_balancers.find(|l| l.name == name))
    }
    fn load_balancers(&self) -> Result<Vec<LoadBalancer>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeLoadBalancers"]);
        Ok(self.model().load_balancers.filter(|_| true))
    }
    fn create_load_balancer(
        &self,
        name: &str,
        _subnets: &[String],
        _sgs: &[String],
        tags: &Tags,
    ) -> Result<LoadBalancer, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:CreateLoadBalancer"]);
        let id = self.0.id("lb");
        let l = LoadBalancer {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:000000000000:loadbalancer/app/{name}/{id}",
                self.0.region
            ),
            name: name.into(),
            dns_name: format!("{name}-{PLANNED}.{}.elb.amazonaws.com", self.0.region),
            state: "active".into(),
            vpc_id: String::new(),
        };
        self.model().load_balancers.add(l.clone(), tags.pairs());
        Ok(l)
    }
    fn delete_load_balancer(&self, arn: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeleteLoadBalancer"]);
        self.model().load_balancers.remove(|l| l.arn == arn);
        Ok(())
    }
    fn find_target_group(&self, name: &str) -> Result<Option<TargetGroup>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeTargetGroups"]);
        Ok(self.model().target_groups.find(|t| t.name == name))
    }
    fn create_target_group(
        &self,
        spec: &TargetGroupSpec,
        tags: &Tags,
    ) -> Result<TargetGroup, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:CreateTargetGroup"]);
        let id = self.0.id("tg");
        let t = TargetGroup {
            arn: format!(
                "arn:aws:elasticloadbalancing:{}:000000000000:targetgroup/{}/{id}",
                self.0.region, spec.name
            ),
            name: spec.name.clone(),
            port: i64::from(spec.port),
            health_path: spec.health_path.clone(),
        };
        self.model().target_groups.add(t.clone(), tags.pairs());
        Ok(t)
    }
    fn delete_target_group(&self, arn: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeleteTargetGroup"]);
        self.model().target_groups.remove(|t| t.arn == arn);
        Ok(())
    }
    fn listeners(&self, lb_arn: &str) -> Result<Vec<Listener>, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DescribeListeners"]);
        Ok(self
            .model()
            .listeners
            .iter()
            .filter(|(l, _)| l == lb_arn)
            .map(|(_, l)| l.clone())
            .collect())
    }
    fn create_listener(
        &self,
        lb_arn: &str,
        port: i32,
        certificate_arn: Option<&str>,
        a: &ListenerAction,
        _t: &Tags,
    ) -> Result<Listener, CloudError> {
        self.0.op(&["Elastic Load Balancing v2:CreateListener"]);
        let l = Listener {
            arn: format!("{lb_arn}/listener-{}", self.0.id("l")),
            port: i64::from(port),
            protocol: if certificate_arn.is_some() {
                "HTTPS"
            } else {
                "HTTP"
            }
            .into(),
            default_action: match a {
                ListenerAction::Forward { .. } => "forward",
                ListenerAction::RedirectToHttps => "redirect",
                ListenerAction::Forbidden => "fixed-response",
            }
            .into(),
            default_target: match a {
                ListenerAction::Forward { target_group_arn } => Some(target_group_arn.clone()),
                _ => None,
            },
        };
        self.model().listeners.push((lb_arn.into(), l.clone()));
        Ok(l)
    }
    fn set_default_action(&self, _l: &str, _a: &ListenerAction) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:ModifyListener"]);
        Ok(())
    }
    fn ensure_header_rule(&self, _l: &str, _r: &HeaderRule, _t: &Tags) -> Result<bool, CloudError> {
        self.0.op(&[
            "Elastic Load Balancing v2:DescribeRules",
            "Elastic Load Balancing v2:CreateRule",
        ]);
        Ok(true)
    }
    fn delete_listener(&self, arn: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeleteListener"]);
        self.model().listeners.retain(|(_, l)| l.arn != arn);
        Ok(())
    }
    fn register(&self, _tg: &str, _i: &str, _p: i32) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:RegisterTargets"]);
        Ok(())
    }
    fn deregister(&self, _tg: &str, _i: &str) -> Result<(), CloudError> {
        self.0.op(&["Elastic Load Balancing v2:DeregisterTargets"]);
        Ok(())
    }
    fn target_health(&self, _tg: &str, _i: &str) -> Result<Option<(String, String)>, CloudError> {
        self.0
            .op(&["Elastic Load Balancing v2:DescribeTargetHealth"]);
        Ok(Some(("healthy".into(), String::new())))
    }
    fn tagged(&self, key: &str, value: &str) -> Result<Vec<(Kind, String, String)>, CloudError> {
        self.0.op(&[
            "Elastic Load Balancing v2:DescribeLoadBalancers",
            "Elastic Load Balancing v2:DescribeTargetGroups",
            "Elastic Load Balancing v2:DescribeTags",
        ]);
        let want = [(key.to_string(), value.to_string())];
        let m = self.model();
        let lbs = m.load_balancers.tagged(&want, |_| true).into_iter();
        let tgs = m.target_groups.tagged(&want, |_| true).into_iter();
        Ok(lbs
            .map(|l| (Kind::LoadBalancer, l.arn, l.name))
            .chain(tgs.map(|g| (Kind::TargetGroup, g.arn, g.name)))
            .collect())
    }
}

impl CloudFrontApi for PlanApi {
    fn create(
        &self,
        _caller: &str,
        origin: &OriginSpec,
        _comment: &str,
        tags: &Tags,
    ) -> Result<Distribution, CloudError> {
        self.0.op(&["CloudFront:CreateDistributionWithTags"]);
        let id = self.0.id("E").to_uppercase();
        let d = Distribution {
            arn: format!("arn:aws:cloudfront::000000000000:distribution/{id}"),
            domain: format!("{}.cloudfront.net", id.to_lowercase()),
            id,
            status: "Deployed".into(),
            enabled: true,
            origin: origin.domain.clone(),
        };
        self.model().distributions.add(d.clone(), tags.pairs());
        Ok(d)
    }
    fn converge_origin(&self, _id: &str, _origin: &OriginSpec) -> Result<bool, CloudError> {
        self.0.op(&["CloudFront:GetDistributionConfig"]);
        Ok(false)
    }
    fn ensure_function(
        &self,
        name: &str,
        _comment: &str,
        _code: &str,
    ) -> Result<(String, bool), CloudError> {
        self.0.op(&[
            "CloudFront:GetFunction",
            "CloudFront:CreateFunction",
            "CloudFront:DescribeFunction",
            "CloudFront:PublishFunction",
        ]);
        Ok((
            format!("arn:aws:cloudfront::000000000000:function/{name}"),
            true,
        ))
    }
    fn delete_function(&self, _name: &str) -> Result<bool, CloudError> {
        self.0
            .op(&["CloudFront:DescribeFunction", "CloudFront:DeleteFunction"]);
        Ok(true)
    }
    fn get(&self, id: &str) -> Result<Option<Distribution>, CloudError> {
        self.0.op(&["CloudFront:GetDistribution"]);
        Ok(self.model().distributions.find(|d| d.id == id))
    }
    fn list(&self) -> Result<Vec<Distribution>, CloudError> {
        self.0.op(&["CloudFront:ListDistributions"]);
        Ok(self.model().distributions.filter(|_| true))
    }
    fn find_tagged(&self, key: &str, value: &str) -> Result<Vec<Distribution>, CloudError> {
        self.0.op(&[
            "CloudFront:ListDistributions",
            "CloudFront:ListTagsForResource",
        ]);
        let want = [(key.to_string(), value.to_string())];
        Ok(self.model().distributions.tagged(&want, |_| true))
    }
    fn disable(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&[
            "CloudFront:GetDistributionConfig",
            "CloudFront:UpdateDistribution",
        ]);
        if let Some(d) = self.model().distributions.find_mut(|d| d.id == id) {
            d.enabled = false;
        }
        Ok(())
    }
    fn delete(&self, id: &str) -> Result<(), CloudError> {
        self.0.op(&[
            "CloudFront:GetDistributionConfig",
            "CloudFront:DeleteDistribution",
        ]);
        self.model().distributions.remove(|d| d.id == id);
        Ok(())
    }
}

impl SsmApi for PlanApi {
    fn put_secure(
        &self,
        name: &str,
        _value: &str,
        overwrite: bool,
        _tags: &Tags,
    ) -> Result<(Parameter, bool), CloudError> {
        // Without overwrite, an existing parameter is read instead.
        self.0.op(&["SSM:PutParameter", "SSM:GetParameter"]);
        let mut m = self.model();
        if let Some(p) = m.parameters.get(name) {
            if !overwrite {
                return Ok((p.clone(), false));
            }
        }
        let p = Parameter {
            name: name.into(),
            kind: "SecureString".into(),
            version: 1,
        };
        m.parameters.insert(name.into(), p.clone());
        Ok((p, true))
    }
    fn get(&self, name: &str) -> Result<Option<(Parameter, String)>, CloudError> {
        self.0.op(&["SSM:GetParameter"]);
        Ok(self
            .model()
            .parameters
            .get(name)
            .map(|p| (p.clone(), "generated-at-apply".to_string())))
    }
    fn delete(&self, name: &str) -> Result<(), CloudError> {
        self.0.op(&["SSM:DeleteParameter"]);
        self.model().parameters.remove(name);
        Ok(())
    }
    fn list_by_path(&self, path: &str) -> Result<Vec<Parameter>, CloudError> {
        self.0.op(&["SSM:GetParametersByPath"]);
        Ok(self
            .model()
            .parameters
            .values()
            .filter(|p| p.name.starts_with(path))
            .cloned()
            .collect())
    }
    fn send_command(&self, _i: &str, _c: &[String], _comment: &str) -> Result<String, CloudError> {
        self.0.op(&["SSM:SendCommand"]);
        Ok(self.0.id("cmd"))
    }
    fn command_result(
        &self,
        command_id: &str,
        instance_id: &str,
    ) -> Result<CommandResult, CloudError> {
        self.0.op(&["SSM:GetCommandInvocation"]);
        Ok(CommandResult {
            command_id: command_id.into(),
            instance_id: instance_id.into(),
            status: "Success".into(),
            exit_code: 0,
            stdout: String::new(),
            stderr: String::new(),
        })
    }
}

impl IamApi for PlanApi {
    fn ensure_instance_profile(
        &self,
        name: &str,
        _managed: &[String],
        _inline: (&str, &str),
        _tags: &Tags,
        _look_first: bool,
    ) -> Result<(InstanceProfile, bool), CloudError> {
        self.0.op(&[
            "IAM:GetInstanceProfile",
            "IAM:GetRole",
            "IAM:CreateRole",
            "IAM:AttachRolePolicy",
            "IAM:PutRolePolicy",
            "IAM:CreateInstanceProfile",
            "IAM:AddRoleToInstanceProfile",
        ]);
        let p = InstanceProfile {
            name: name.into(),
            arn: format!("arn:aws:iam::000000000000:instance-profile/{name}"),
            role_name: name.into(),
            role_arn: format!("arn:aws:iam::000000000000:role/{name}"),
        };
        self.model().profiles.push(p.clone());
        Ok((p, true))
    }
    fn find_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, CloudError> {
        self.0.op(&["IAM:GetInstanceProfile"]);
        Ok(self
            .model()
            .profiles
            .iter()
            .find(|p| p.name == name)
            .cloned())
    }
    fn role_exists(&self, name: &str) -> Result<bool, CloudError> {
        self.0.op(&["IAM:GetRole"]);
        Ok(self.model().profiles.iter().any(|p| p.role_name == name))
    }
    fn delete_instance_profile(&self, name: &str) -> Result<(), CloudError> {
        self.0.op(&[
            "IAM:GetInstanceProfile",
            "IAM:RemoveRoleFromInstanceProfile",
            "IAM:DeleteInstanceProfile",
            "IAM:ListAttachedRolePolicies",
            "IAM:DetachRolePolicy",
            "IAM:ListRolePolicies",
            "IAM:DeleteRolePolicy",
            "IAM:DeleteRole",
        ]);
        self.model().profiles.retain(|p| p.name != name);
        Ok(())
    }
}

impl PricingApi for PlanApi {
    fn get_products(&self, _filters: &[(&str, &str)]) -> Result<Vec<String>, CloudError> {
        self.0.op(&["Pricing:GetProducts"]);
        Err(CloudError::new(
            "pricing",
            "GetProducts",
            "PlanMode",
            "a plan makes no AWS calls",
        ))
    }
}
