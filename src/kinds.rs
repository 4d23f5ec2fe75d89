//! What recipe params and settings commonly hold — an IPv4 range, an instance type, a region,
//! AWS ids, an email, a container image, a DNS name, a certificate ARN — each checked for its
//! meaning, with a message in words (never a regular expression). A leaf: the recipe header
//! (`type = "cidr"`), config.toml and the primitives use the same rules.

use crate::suggest::did_you_mean;

/// Every AWS region geusemaker knows (a newer one: `GEUSEMAKER_ALLOW_ANY_REGION=1`).
pub const KNOWN_REGIONS: &[&str] = &[
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "af-south-1",
    "ap-east-1",
    "ap-east-2",
    "ap-south-1",
    "ap-south-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-southeast-3",
    "ap-southeast-4",
    "ap-southeast-5",
    "ap-southeast-6",
    "ap-southeast-7",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-northeast-3",
    "ca-central-1",
    "ca-west-1",
    "eu-central-1",
    "eu-central-2",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-south-1",
    "eu-south-2",
    "eu-north-1",
    "il-central-1",
    "me-south-1",
    "me-central-1",
    "mx-central-1",
    "sa-east-1",
    "us-gov-east-1",
    "us-gov-west-1",
    "cn-north-1",
    "cn-northwest-1",
];

/// EC2 instance sizes that are not `<n>xlarge` or `metal-<n>xl`.
const SIZES: &[&str] = &[
    "nano", "micro", "small", "medium", "large", "xlarge", "2xlarge", "4xlarge", "8xlarge",
    "12xlarge", "16xlarge", "24xlarge", "48xlarge", "metal",
];

/// A kind of value, as a recipe header names it (`type = "instance_type"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ValueKind {
    /// An IPv4 range, `203.0.113.7/32`, without host bits.
    Cidr,
    /// An EC2 instance type, `t3.medium`.
    InstanceType,
    /// An AWS region, `eu-west-1`.
    Region,
    VpcId,
    SubnetId,
    /// An AMI id, `ami-…`.
    ImageId,
    Email,
    /// A container image pinned to a tag or digest, `n8nio/n8n:2.41.3`.
    Image,
    /// A DNS name, `n8n.example.com`.
    Domain,
    /// An ACM certificate ARN.
    CertificateArn,
}

/// Why a value is not of its kind: what was given and why, in words.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct KindError {
    pub message: String,
    /// The value meant, when one is close.
    pub suggestion: Option<String>,
}

fn refuse(message: impl Into<String>) -> Result<(), KindError> {
    Err(KindError {
        message: message.into(),
        suggestion: None,
    })
}

fn refuse_or_suggest<'a>(
    message: String,
    given: &str,
    known: impl IntoIterator<Item = &'a str>,
) -> Result<(), KindError> {
    Err(KindError {
        message,
        suggestion: did_you_mean(given, known).map(str::to_string),
    })
}

fn hex(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

impl ValueKind {
    pub const ALL: &'static [ValueKind] = &[
        ValueKind::Cidr,
        ValueKind::InstanceType,
        ValueKind::Region,
        ValueKind::VpcId,
        ValueKind::SubnetId,
        ValueKind::ImageId,
        ValueKind::Email,
        ValueKind::Image,
        ValueKind::Domain,
        ValueKind::CertificateArn,
    ];

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == name)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ValueKind::Cidr => "cidr",
            ValueKind::InstanceType => "instance_type",
            ValueKind::Region => "region",
            ValueKind::VpcId => "vpc_id",
            ValueKind::SubnetId => "subnet_id",
            ValueKind::ImageId => "image_id",
            ValueKind::Email => "email",
            ValueKind::Image => "image",
            ValueKind::Domain => "domain",
            ValueKind::CertificateArn => "certificate_arn",
        }
    }

    /// What a value of this kind looks like.
    pub fn describe(self) -> &'static str {
        match self {
            ValueKind::Cidr => "an IPv4 range like 203.0.113.7/32",
            ValueKind::InstanceType => "an EC2 instance type like t3.medium",
            ValueKind::Region => "an AWS region like eu-west-1",
            ValueKind::VpcId => "a VPC id like vpc-0abc1234",
            ValueKind::SubnetId => "a subnet id like subnet-0abc1234",
            ValueKind::ImageId => "an AMI id like ami-0abc1234",
            ValueKind::Email => "an email address",
            ValueKind::Image => "a container image with a tag or digest, like n8nio/n8n:2.41.3",
            ValueKind::Domain => "a DNS name like n8n.example.com",
            ValueKind::CertificateArn => {
                "an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
            }
        }
    }

    /// Is `v` a value of this kind?
    pub fn check(self, v: &str) -> Result<(), KindError> {
        match self {
            ValueKind::Cidr => crate::cidr::parse(v).map(|_| ()).map_err(|e| KindError {
                message: e.to_string(),
                suggestion: None,
            }),
            ValueKind::InstanceType => instance_type(v),
            ValueKind::Region => {
                if KNOWN_REGIONS.contains(&v)
                    || std::env::var_os("GEUSEMAKER_ALLOW_ANY_REGION").is_some()
                {
                    Ok(())
                } else {
                    refuse_or_suggest(
                        format!("`{v}` is not an AWS region (a region AWS opened recently: set GEUSEMAKER_ALLOW_ANY_REGION=1)"),
                        v,
                        KNOWN_REGIONS.iter().copied(),
                    )
                }
            }
            ValueKind::VpcId => aws_id(v, "vpc", "VPC id"),
            ValueKind::SubnetId => aws_id(v, "subnet", "subnet id"),
            ValueKind::ImageId => aws_id(v, "ami", "AMI id"),
            // The characters the instance's owner set-up takes safely (see boot::n8n_owner).
            ValueKind::Email => match v.split_once('@') {
                Some((user, host))
                    if !user.is_empty()
                        && !host.is_empty()
                        && !host.contains('@')
                        && v.chars()
                            .all(|c| c.is_ascii_alphanumeric() || "@.+-_".contains(c)) =>
                {
                    Ok(())
                }
                _ => refuse(format!(
                    "`{v}` is not an email address like admin@example.com (letters, digits and . + - _ around one @)"
                )),
            },
            ValueKind::Image => image(v),
            ValueKind::Domain => domain(v),
            ValueKind::CertificateArn => {
                let parts: Vec<&str> = v.splitn(6, ':').collect();
                let ok = parts.len() == 6
                    && parts[0] == "arn"
                    && parts[1].starts_with("aws")
                    && parts[2] == "acm"
                    && !parts[3].is_empty()
                    && parts[4].len() == 12
                    && parts[4].chars().all(|c| c.is_ascii_digit())
                    && parts[5]
                        .strip_prefix("certificate/")
                        .is_some_and(|id| !id.is_empty());
                if ok {
                    Ok(())
                } else {
                    refuse(format!(
                        "`{v}` is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
                    ))
                }
            }
        }
    }
}

fn instance_type(v: &str) -> Result<(), KindError> {
    let Some((family, size)) = v.split_once('.') else {
        return refuse(format!(
            "`{v}` is not an EC2 instance type: a family, a dot and a size, like t3.medium"
        ));
    };
    let family_ok = family.starts_with(|c: char| c.is_ascii_lowercase())
        && family.chars().any(|c| c.is_ascii_digit())
        && family
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !family_ok {
        return refuse(format!(
            "`{v}`: `{family}` is not an instance family (letters and a generation number, like t3, m7i or g5)"
        ));
    }
    let numbered = |s: &str, suffix: &str| {
        s.strip_suffix(suffix).is_some_and(|n| {
            !n.is_empty() && !n.starts_with('0') && n.chars().all(|c| c.is_ascii_digit())
        })
    };
    let size_ok = SIZES.contains(&size)
        || numbered(size, "xlarge")
        || size
            .strip_prefix("metal-")
            .is_some_and(|s| numbered(s, "xl"));
    if size_ok {
        return Ok(());
    }
    Err(KindError {
        message: format!(
            "`{v}`: `{size}` is not an EC2 instance size (nano, micro, small, medium, large, xlarge, 2xlarge … 48xlarge, metal)"
        ),
        suggestion: did_you_mean(size, SIZES.iter().copied()).map(|s| format!("{family}.{s}")),
    })
}

fn aws_id(v: &str, prefix: &str, what: &str) -> Result<(), KindError> {
    match v.strip_prefix(prefix).and_then(|r| r.strip_prefix('-')) {
        Some(id) if hex(id) && (id.len() == 8 || id.len() == 17) => Ok(()),
        _ => refuse(format!(
            "`{v}` is not a {what}: `{prefix}-` and 8 or 17 hexadecimal digits"
        )),
    }
}

fn domain(v: &str) -> Result<(), KindError> {
    let labels: Vec<&str> = v.split('.').collect();
    let label_ok = |l: &&str| {
        !l.is_empty()
            && l.len() <= 63
            && !l.starts_with('-')
            && !l.ends_with('-')
            && l.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    };
    let tld_ok = labels
        .last()
        .is_some_and(|t| t.len() >= 2 && t.chars().all(|c| c.is_ascii_lowercase()));
    if labels.len() >= 2 && v.len() <= 253 && labels.iter().all(label_ok) && tld_ok {
        Ok(())
    } else {
        refuse(format!(
            "`{v}` is not a DNS name like n8n.example.com (lowercase letters, digits and `-`, dot-separated)"
        ))
    }
}

fn image(v: &str) -> Result<(), KindError> {
    let (name, pinned) = if let Some((name, digest)) = v.split_once("@sha256:") {
        if digest.len() != 64 || !hex(digest) {
            return refuse(format!(
                "`{v}`: a digest is @sha256: and 64 hexadecimal digits"
            ));
        }
        (name, true)
    } else {
        // A tag follows the last `:` after the last `/` (a registry may have a port).
        let last = v.rsplit('/').next().unwrap_or(v);
        match last.split_once(':') {
            Some((_, tag)) => {
                let tag_ok = !tag.is_empty()
                    && tag.len() <= 128
                    && tag.starts_with(|c: char| c.is_ascii_alphanumeric())
                    && tag
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c));
                if !tag_ok {
                    return refuse(format!("`{v}`: `{tag}` is not an image tag"));
                }
                (
                    &v[..v.len() - tag.len() - 1],
                    !crate::boot::FLOATING_TAGS.contains(&tag),
                )
            }
            None => (v, false),
        }
    };
    let name_ok = !name.is_empty()
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "./_-:".contains(c));
    if !name_ok {
        return refuse(format!(
            "`{v}` is not a container image name (lowercase, like n8nio/n8n or ghcr.io/org/app)"
        ));
    }
    if !pinned {
        return refuse(format!(
            "`{v}` names no version: pin a tag (like {name}:1.2.3) or a digest (@sha256:…); `latest` and other moving tags change under you"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(k: ValueKind, v: &str) -> String {
        k.check(v).unwrap_err().to_string()
    }

    #[test]
    fn instance_types_are_family_dot_size() {
        for ok in [
            "t3.medium",
            "g5.xlarge",
            "p4d.24xlarge",
            "m7i-flex.large",
            "u-6tb1.56xlarge",
            "mac2-m2pro.metal",
            "c7gn.metal-48xl",
            "t4g.nano",
        ] {
            ValueKind::InstanceType.check(ok).unwrap();
        }
        let e = ValueKind::InstanceType.check("t3.larg").unwrap_err();
        assert!(
            e.message.contains("`larg` is not an EC2 instance size"),
            "{e}"
        );
        assert_eq!(e.suggestion.as_deref(), Some("t3.large"));
        assert!(msg(ValueKind::InstanceType, "large").contains("a family, a dot and a size"));
        assert!(ValueKind::InstanceType.check("t3.0xlarge").is_err());
        for real in [
            "u7i-12tb.224xlarge",
            "mac2-m2.metal",
            "x8g.metal-24xl",
            "p6-b200.48xlarge",
            "mac-m4.metal",
        ] {
            ValueKind::InstanceType.check(real).unwrap();
        }
        assert!(msg(ValueKind::InstanceType, "T3.medium").contains("not an instance family"));
    }

    #[test]
    fn ranges_regions_and_ids_say_what_is_wrong() {
        assert!(msg(ValueKind::Cidr, "10.0.0.0/33").contains("prefix length must be 0–32"));
        assert!(msg(ValueKind::Cidr, "999.1.1.1/32").contains("999 is not an address byte"));
        let e = ValueKind::Region.check("us-est-1").unwrap_err();
        assert_eq!(e.suggestion.as_deref(), Some("us-east-1"));
        ValueKind::VpcId.check("vpc-0123456789abcdef0").unwrap();
        ValueKind::VpcId.check("vpc-12345678").unwrap();
        assert!(msg(ValueKind::VpcId, "vpc-xyz").contains("8 or 17 hexadecimal digits"));
        assert!(msg(ValueKind::SubnetId, "vpc-12345678").contains("not a subnet id"));
        ValueKind::ImageId.check("ami-0abcdef1234567890").unwrap();
    }

    #[test]
    fn emails_domains_images_and_certificates() {
        ValueKind::Email.check("ops@example.com").unwrap();
        ValueKind::Email.check("Ops@Example.com").unwrap();
        ValueKind::Email.check("ops@localhost").unwrap();
        assert!(msg(ValueKind::Email, "admin").contains("not an email address"));
        // What the owner set-up on the instance would refuse is refused here, first.
        for bad in ["o'brien@example.com", "a$(reboot)@example.com", "a@b@c"] {
            assert!(ValueKind::Email.check(bad).is_err(), "{bad}");
            assert!(crate::boot::n8n_owner(bad, 5678, &Default::default(), false).is_err());
        }
        ValueKind::Domain.check("n8n.example.com").unwrap();
        assert!(msg(ValueKind::Domain, "example..com").contains("not a DNS name"));
        ValueKind::Image.check("n8nio/n8n:2.41.3").unwrap();
        ValueKind::Image.check("localhost:5000/app:1").unwrap();
        ValueKind::Image
            .check(&format!("qdrant/qdrant@sha256:{}", "a".repeat(64)))
            .unwrap();
        assert!(msg(ValueKind::Image, "n8nio/n8n").contains("names no version"));
        assert!(msg(ValueKind::Image, "n8nio/n8n:latest").contains("names no version"));
        assert!(msg(ValueKind::Image, "n8nio/n8n:stable").contains("names no version"));
        ValueKind::CertificateArn
            .check("arn:aws:acm:us-east-1:123456789012:certificate/abc-123")
            .unwrap();
        assert!(msg(ValueKind::CertificateArn, "arn:aws:acm:").contains("not an ACM"));
    }

    #[test]
    fn every_kind_round_trips_its_name() {
        for k in ValueKind::ALL {
            assert_eq!(ValueKind::parse(k.as_str()), Some(*k));
            assert!(!k.describe().is_empty());
        }
        assert_eq!(ValueKind::parse("cidrr"), None);
    }
}
