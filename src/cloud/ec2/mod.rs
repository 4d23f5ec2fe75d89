//! EC2: network discovery, AMIs, security groups, key pairs, instances, spot prices — the
//! handles and the interface, in four area traits ([`Ec2Network`], [`Ec2Catalog`],
//! [`Ec2Instances`], [`Ec2Volumes`]) that [`Ec2Api`] joins. The SDK implementation is in
//! `sdk/`, one file per area, with the conversions from the SDK's types in `convert.rs`.

use std::collections::BTreeMap;
use std::fmt;

use rhai::{CustomType, TypeBuilder};

use super::{Blocking, CloudError, Tags};

const SVC: &str = "ec2";

/// A VPC.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Vpc", extra = super::display_fns)]
pub struct Vpc {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub cidr: String,
    #[rhai_type(readonly)]
    pub is_default: bool,
}

impl fmt::Display for Vpc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Vpc({} {}{})",
            self.id,
            self.cidr,
            if self.is_default { " default" } else { "" }
        )
    }
}

/// A subnet of a VPC, in one Availability Zone.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Subnet", extra = super::display_fns)]
pub struct Subnet {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub vpc_id: String,
    #[rhai_type(readonly)]
    pub az: String,
    #[rhai_type(readonly)]
    pub cidr: String,
    #[rhai_type(readonly)]
    pub default_for_az: bool,
    #[rhai_type(readonly)]
    pub public_ip_on_launch: bool,
}

impl fmt::Display for Subnet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Subnet({} {} {})", self.id, self.az, self.cidr)
    }
}

/// A machine image.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Image", extra = super::display_fns)]
pub struct Image {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub architecture: String,
    /// How it was found: `ssm` (the public parameter) or `describe_images`.
    #[rhai_type(readonly)]
    pub source: String,
}

impl fmt::Display for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Image({} {})", self.id, self.name)
    }
}

/// One inbound rule: a port range from a CIDR, another security group or a managed prefix list
/// (e.g. CloudFront's origin-facing addresses).
#[derive(Debug, Clone, PartialEq, CustomType, serde::Serialize)]
#[rhai_type(name = "IngressRule", extra = super::display_fns)]
pub struct IngressRule {
    #[rhai_type(readonly)]
    pub protocol: String,
    #[rhai_type(readonly)]
    pub from_port: i64,
    #[rhai_type(readonly)]
    pub to_port: i64,
    #[rhai_type(readonly)]
    pub cidr: Option<String>,
    #[rhai_type(readonly)]
    pub source_sg: Option<String>,
    #[rhai_type(readonly)]
    pub prefix_list: Option<String>,
    #[rhai_type(readonly)]
    pub description: String,
}

impl IngressRule {
    /// Same traffic allowed (descriptions aside).
    pub fn same_grant(&self, other: &IngressRule) -> bool {
        self.protocol == other.protocol
            && self.from_port == other.from_port
            && self.to_port == other.to_port
            && self.cidr == other.cidr
            && self.source_sg == other.source_sg
            && self.prefix_list == other.prefix_list
    }
}

impl fmt::Display for IngressRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ports = if self.from_port == self.to_port {
            self.from_port.to_string()
        } else {
            format!("{}-{}", self.from_port, self.to_port)
        };
        let from = self
            .cidr
            .as_deref()
            .or(self.source_sg.as_deref())
            .or(self.prefix_list.as_deref())
            .unwrap_or("?");
        write!(f, "{}/{} from {}", self.protocol, ports, from)
    }
}

/// A security group with its inbound rules.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "SecurityGroup", extra = Self::extras)]
pub struct SecurityGroup {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub vpc_id: String,
    #[rhai_type(skip)]
    pub ingress: Vec<IngressRule>,
}

impl SecurityGroup {
    fn extras(b: &mut TypeBuilder<Self>) {
        super::display_fns(b);
        b.with_get("ingress", |sg: &mut Self| -> rhai::Array {
            sg.ingress
                .iter()
                .cloned()
                .map(rhai::Dynamic::from)
                .collect()
        });
    }
}

impl fmt::Display for SecurityGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SecurityGroup({} {} {} rules)",
            self.id,
            self.name,
            self.ingress.len()
        )
    }
}

/// An EC2 key pair. The private key (when geusemaker created it) is saved under the state
/// directory with mode 0600; only its path is ever shown.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "KeyPair", extra = super::display_fns)]
pub struct KeyPair {
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub fingerprint: String,
    #[rhai_type(readonly)]
    pub private_key_path: Option<String>,
}

impl fmt::Display for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({} {})", self.name, self.id)
    }
}

/// An EC2 instance as last described.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Instance", extra = Self::extras)]
pub struct Instance {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub state: String,
    #[rhai_type(readonly)]
    pub instance_type: String,
    #[rhai_type(readonly)]
    pub az: String,
    #[rhai_type(readonly)]
    pub subnet_id: String,
    #[rhai_type(readonly)]
    pub vpc_id: String,
    #[rhai_type(readonly)]
    pub image_id: String,
    #[rhai_type(readonly)]
    pub private_ip: Option<String>,
    #[rhai_type(readonly)]
    pub public_ip: Option<String>,
    #[rhai_type(readonly)]
    pub public_dns: Option<String>,
    /// `spot` or `on-demand`.
    #[rhai_type(readonly)]
    pub lifecycle: String,
    #[rhai_type(readonly)]
    pub imdsv2_required: bool,
    #[rhai_type(readonly)]
    pub instance_profile_arn: Option<String>,
    /// When it was launched (RFC 3339).
    #[rhai_type(readonly)]
    pub launch_time: Option<String>,
    /// Why it is in its state, e.g. `Server.SpotInstanceTermination` (stopped/terminated ones).
    #[rhai_type(readonly)]
    pub state_reason: Option<String>,
    /// The spot request behind a spot instance.
    #[rhai_type(readonly)]
    pub spot_request_id: Option<String>,
    #[rhai_type(skip)]
    pub security_groups: Vec<String>,
    /// Every tag, by key.
    #[rhai_type(skip)]
    pub tags: BTreeMap<String, String>,
}

impl Instance {
    fn extras(b: &mut TypeBuilder<Self>) {
        super::display_fns(b);
        b.with_get("security_groups", |i: &mut Self| -> rhai::Array {
            i.security_groups
                .iter()
                .cloned()
                .map(rhai::Dynamic::from)
                .collect()
        });
        b.with_get("is_spot", |i: &mut Self| i.lifecycle == "spot");
        b.with_get("tags", |i: &mut Self| -> rhai::Map {
            i.tags
                .iter()
                .map(|(k, v)| (k.as_str().into(), rhai::Dynamic::from(v.clone())))
                .collect()
        });
    }
}

impl fmt::Display for Instance {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Instance({} {} {} {} {})",
            self.id, self.state, self.instance_type, self.lifecycle, self.az
        )
    }
}

/// An EBS volume.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "Volume", extra = super::display_fns)]
pub struct Volume {
    #[rhai_type(readonly)]
    pub id: String,
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub az: String,
    #[rhai_type(readonly)]
    pub size_gb: i64,
    #[rhai_type(readonly)]
    pub volume_type: String,
    #[rhai_type(readonly)]
    pub encrypted: bool,
    /// `creating`, `available`, `in-use`, …
    #[rhai_type(readonly)]
    pub state: String,
    /// The instance it is attached to, if any.
    #[rhai_type(readonly)]
    pub attached_to: Option<String>,
    #[rhai_type(readonly)]
    pub device: Option<String>,
    /// Whether terminating the instance deletes it (false for data volumes).
    #[rhai_type(readonly)]
    pub delete_on_termination: bool,
}

impl fmt::Display for Volume {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Volume({} {}GiB {} {} {})",
            self.id, self.size_gb, self.volume_type, self.az, self.state
        )
    }
}

/// What an instance type offers.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "InstanceTypeInfo", extra = super::display_fns)]
pub struct InstanceTypeInfo {
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub vcpus: i64,
    #[rhai_type(readonly)]
    pub memory_gib: f64,
    /// Number of GPUs (0 for none).
    #[rhai_type(readonly)]
    pub gpus: i64,
    #[rhai_type(readonly)]
    pub gpu_model: String,
    #[rhai_type(readonly)]
    pub gpu_memory_gib: f64,
    /// `x86_64` or `arm64` (the first supported).
    #[rhai_type(readonly)]
    pub architecture: String,
    #[rhai_type(readonly)]
    pub spot_supported: bool,
}

impl fmt::Display for InstanceTypeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "InstanceTypeInfo({} {} vCPU {} GiB {} GPU)",
            self.name, self.vcpus, self.memory_gib, self.gpus
        )
    }
}

/// What a new EBS volume looks like.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeRequest {
    pub az: String,
    pub size_gb: i32,
    pub volume_type: String,
    pub client_token: String,
    pub tags: Tags,
}

/// A spot price observation.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "SpotPrice", extra = super::display_fns)]
pub struct SpotPrice {
    #[rhai_type(readonly)]
    pub instance_type: String,
    #[rhai_type(readonly)]
    pub az: String,
    #[rhai_type(readonly)]
    pub usd_per_hour: f64,
    #[rhai_type(readonly)]
    pub timestamp: String,
}

impl fmt::Display for SpotPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "SpotPrice({} {} ${:.4}/h)",
            self.instance_type, self.az, self.usd_per_hour
        )
    }
}

/// An extra EBS volume (or the root volume) for a launch.
#[derive(Debug, Clone, PartialEq)]
pub struct VolumeSpec {
    pub device: String,
    pub size_gb: i32,
    pub volume_type: String,
    pub delete_on_termination: bool,
    pub encrypted: bool,
}

/// Everything needed to launch one instance.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchSpec {
    pub image_id: String,
    pub instance_type: String,
    pub subnet_id: String,
    pub security_group_ids: Vec<String>,
    pub key_name: Option<String>,
    pub user_data: Option<String>,
    pub spot: bool,
    pub max_price: Option<String>,
    /// Instance profile name or ARN.
    pub instance_profile: Option<String>,
    pub volumes: Vec<VolumeSpec>,
    pub client_token: String,
    pub tags: Tags,
}

/// VPCs, subnets, security groups and key pairs: where an instance lives and who may reach it.
pub trait Ec2Network: Send + Sync {
    fn default_vpc(&self) -> Result<Vpc, CloudError>;
    fn vpc(&self, id: &str) -> Result<Vpc, CloudError>;
    /// The subnets of a VPC, or of every VPC in the region (`None`), sorted by zone.
    fn subnets(&self, vpc_id: Option<&str>) -> Result<Vec<Subnet>, CloudError>;
    /// The id of the AWS-managed prefix list `name` in the region (e.g.
    /// `com.amazonaws.global.cloudfront.origin-facing`), `None` when the region has none.
    fn managed_prefix_list(&self, name: &str) -> Result<Option<String>, CloudError>;
    fn find_security_group(
        &self,
        vpc_id: &str,
        name: &str,
    ) -> Result<Option<SecurityGroup>, CloudError>;
    fn security_group(&self, id: &str) -> Result<SecurityGroup, CloudError>;
    fn create_security_group(
        &self,
        vpc_id: &str,
        name: &str,
        description: &str,
        tags: &Tags,
    ) -> Result<SecurityGroup, CloudError>;
    /// Add the rules `group` lacks (judged from `group.ingress`); returns the group with
    /// its rules as they now are.
    fn authorize_ingress(
        &self,
        group: &SecurityGroup,
        rules: &[IngressRule],
    ) -> Result<SecurityGroup, CloudError>;
    fn delete_security_group(&self, id: &str) -> Result<(), CloudError>;
    fn find_key_pair(&self, name: &str) -> Result<Option<KeyPair>, CloudError>;
    /// Create an ed25519 key pair; returns it and its private key material.
    fn create_key_pair(&self, name: &str, tags: &Tags) -> Result<(KeyPair, String), CloudError>;
    fn import_key_pair(
        &self,
        name: &str,
        public_key: &str,
        tags: &Tags,
    ) -> Result<KeyPair, CloudError>;
    fn delete_key_pair(&self, name: &str) -> Result<(), CloudError>;
    /// Every VPC of the region.
    fn vpcs(&self) -> Result<Vec<Vpc>, CloudError>;
    /// Security groups, optionally of one VPC.
    fn list_security_groups(&self, vpc_id: Option<&str>) -> Result<Vec<SecurityGroup>, CloudError>;
    /// Security groups carrying all these tags.
    fn find_security_groups(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<SecurityGroup>, CloudError>;
    /// Remove every inbound rule of the group (so groups that reference each other can go).
    fn revoke_all_ingress(&self, group: &SecurityGroup) -> Result<(), CloudError>;
    /// Remove these inbound rules of the group `group_id`.
    fn revoke_rules(&self, group_id: &str, rules: &[IngressRule]) -> Result<(), CloudError>;
    /// Key pairs carrying all these tags.
    fn find_key_pairs(&self, tags: &[(String, String)]) -> Result<Vec<KeyPair>, CloudError>;
}

/// What the region offers: AMIs, instance types, the zones that have them, spot prices.
pub trait Ec2Catalog: Send + Sync {
    /// Latest Amazon Linux 2023 for `arch` (`x86_64` | `arm64`): the SSM public parameter,
    /// falling back to DescribeImages by name.
    fn latest_al2023(&self, arch: &str) -> Result<Image, CloudError>;
    fn spot_price_history(&self, instance_type: &str) -> Result<Vec<SpotPrice>, CloudError>;
    /// Every spot price change for `instance_type` in `az` since `since` (Linux), oldest first,
    /// with the price in force at `since` included when AWS reports it.
    fn spot_price_changes(
        &self,
        instance_type: &str,
        az: &str,
        since: std::time::SystemTime,
    ) -> Result<Vec<SpotPrice>, CloudError>;
    /// What an instance type offers; `None` when the region does not know it.
    fn instance_type_info(
        &self,
        instance_type: &str,
    ) -> Result<Option<InstanceTypeInfo>, CloudError>;
    /// The Availability Zones of this region that offer the instance type.
    fn zones_offering(&self, instance_type: &str) -> Result<Vec<String>, CloudError>;
    /// The latest Deep Learning Base AMI (NVIDIA driver, Docker with the NVIDIA runtime):
    /// its public SSM parameter, falling back to DescribeImages by name.
    fn latest_gpu_ami(&self) -> Result<Image, CloudError>;
}

/// Instances: launch, find, stop, start, resize, terminate; tags on any resource.
pub trait Ec2Instances: Send + Sync {
    fn run_instance(&self, spec: &LaunchSpec) -> Result<Instance, CloudError>;
    fn instance(&self, id: &str) -> Result<Instance, CloudError>;
    /// Non-terminated instances carrying all these tags.
    fn find_instances(&self, tags: &[(String, String)]) -> Result<Vec<Instance>, CloudError>;
    /// Terminate; returns the state the instance was in before.
    fn terminate_instance(&self, id: &str) -> Result<String, CloudError>;
    /// The status code of a spot request, e.g. `fulfilled` or `marked-for-termination`.
    fn spot_request_status(&self, request_id: &str) -> Result<Option<String>, CloudError>;
    /// Instances matching DescribeInstances filters (`name` → values).
    fn describe_instances(
        &self,
        filters: &[(String, Vec<String>)],
    ) -> Result<Vec<Instance>, CloudError>;
    /// Stop an instance; returns the state it was in before.
    fn stop_instance(&self, id: &str) -> Result<String, CloudError>;
    /// Start a stopped instance; returns the state it was in before.
    fn start_instance(&self, id: &str) -> Result<String, CloudError>;
    /// Change the type of a stopped instance.
    fn set_instance_type(&self, id: &str, instance_type: &str) -> Result<(), CloudError>;
    /// Add (or overwrite) tags on a resource.
    fn set_tags(&self, resource_id: &str, tags: &[(String, String)]) -> Result<(), CloudError>;
}

/// EBS volumes and their snapshots.
pub trait Ec2Volumes: Send + Sync {
    /// Volumes (not deleted) carrying all these tags.
    fn find_volumes(&self, tags: &[(String, String)]) -> Result<Vec<Volume>, CloudError>;
    fn volume(&self, id: &str) -> Result<Volume, CloudError>;
    /// Create an encrypted volume (idempotent through the client token).
    fn create_volume(&self, req: &VolumeRequest) -> Result<Volume, CloudError>;
    /// Attach; returns the attachment's state in the answer (`attaching`, or `attached`).
    fn attach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<String, CloudError>;
    fn delete_volume(&self, id: &str) -> Result<(), CloudError>;
    /// This account's EBS snapshots carrying all these tags: `(id, start time)`, oldest first.
    fn find_snapshots(
        &self,
        tags: &[(String, String)],
    ) -> Result<Vec<(String, String)>, CloudError>;
    fn delete_snapshot(&self, id: &str) -> Result<(), CloudError>;
    /// Start an EBS snapshot of a volume (tagged); returns its id at once.
    fn create_snapshot(
        &self,
        volume_id: &str,
        description: &str,
        tags: &Tags,
    ) -> Result<String, CloudError>;
    /// Detach a volume from the instance it is attached to (as `device`).
    fn detach_volume(
        &self,
        volume_id: &str,
        instance_id: &str,
        device: &str,
    ) -> Result<(), CloudError>;
}

/// Every EC2 operation primitives use: the four areas above, implemented together by the SDK
/// backend ([`SdkEc2`]) and the plan recorder. Callers name the area trait they use.
pub trait Ec2Api: Ec2Network + Ec2Catalog + Ec2Instances + Ec2Volumes {}

impl<T: Ec2Network + Ec2Catalog + Ec2Instances + Ec2Volumes> Ec2Api for T {}

/// The tag carrying a create's client token, to find a resource whose create response was lost.
pub const TOKEN_TAG: &str = "geusemaker:token";

/// How long RunInstances waits for a new instance profile to become visible to EC2.
pub const PROFILE_PROPAGATION: std::time::Duration = std::time::Duration::from_secs(60);

/// RunInstances' answer while IAM has not yet propagated a new instance profile: "Value (…)
/// for parameter iamInstanceProfile.name is invalid. Invalid IAM Instance Profile name".
///
/// The one place geusemaker reads an error's words: AWS gives this case no code of its own
/// (`InvalidParameterValue` is any bad parameter), and retrying every bad parameter for a
/// minute would hide the recipe's real mistakes.
pub fn profile_not_yet_visible(e: &CloudError) -> bool {
    e.code == "InvalidParameterValue" && e.message.contains("iamInstanceProfile")
}

mod convert;
mod sdk;

pub use sdk::SdkEc2;
