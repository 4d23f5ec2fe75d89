//! What a ledger entry is: one variant per kind of AWS resource geusemaker creates. In the
//! stack's document and in Rhai (`state::ledger()`, `r.kind`) a kind is its `service:type`
//! name (`ec2:instance`).

use serde::{Deserialize, Serialize};

/// The kind of a ledger entry. A new kind changes the stack document's format: bump
/// `SCHEMA_VERSION` with it, so an older geusemaker says to upgrade instead of failing to read
/// the document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    #[serde(rename = "ec2:instance")]
    Instance,
    #[serde(rename = "ec2:volume")]
    Volume,
    #[serde(rename = "ec2:security-group")]
    SecurityGroup,
    #[serde(rename = "ec2:key-pair")]
    KeyPair,
    #[serde(rename = "efs:file-system")]
    FileSystem,
    #[serde(rename = "efs:mount-target")]
    MountTarget,
    #[serde(rename = "elb:load-balancer")]
    LoadBalancer,
    #[serde(rename = "elb:target-group")]
    TargetGroup,
    #[serde(rename = "elb:listener")]
    Listener,
    #[serde(rename = "cloudfront:distribution")]
    Distribution,
    #[serde(rename = "cloudfront:function")]
    CloudFrontFunction,
    #[serde(rename = "iam:instance-profile")]
    InstanceProfile,
    #[serde(rename = "ssm:parameter")]
    Parameter,
}

impl Kind {
    pub const ALL: [Kind; 13] = [
        Kind::Instance,
        Kind::Volume,
        Kind::SecurityGroup,
        Kind::KeyPair,
        Kind::FileSystem,
        Kind::MountTarget,
        Kind::LoadBalancer,
        Kind::TargetGroup,
        Kind::Listener,
        Kind::Distribution,
        Kind::CloudFrontFunction,
        Kind::InstanceProfile,
        Kind::Parameter,
    ];

    /// Its `service:type` name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Kind::Instance => "ec2:instance",
            Kind::Volume => "ec2:volume",
            Kind::SecurityGroup => "ec2:security-group",
            Kind::KeyPair => "ec2:key-pair",
            Kind::FileSystem => "efs:file-system",
            Kind::MountTarget => "efs:mount-target",
            Kind::LoadBalancer => "elb:load-balancer",
            Kind::TargetGroup => "elb:target-group",
            Kind::Listener => "elb:listener",
            Kind::Distribution => "cloudfront:distribution",
            Kind::CloudFrontFunction => "cloudfront:function",
            Kind::InstanceProfile => "iam:instance-profile",
            Kind::Parameter => "ssm:parameter",
        }
    }

    /// The kind named `name` (`ec2:instance`).
    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == name)
    }

    /// An IAM resource: global, not in the stack's region.
    pub fn is_iam(self) -> bool {
        matches!(self, Kind::InstanceProfile)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Kind;

    #[test]
    fn a_kind_is_written_and_read_by_its_name() {
        for k in Kind::ALL {
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
            assert_eq!(serde_json::from_str::<Kind>(&json).unwrap(), k);
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
        assert_eq!(Kind::parse("ec2:vpc"), None);
    }
}
