//! The least-privilege IAM policy for a set of recorded AWS operations (`geusemaker policy`).
//!
//! An SDK operation maps to its IAM action (`EFS:CreateFileSystem` →
//! `elasticfilesystem:CreateFileSystem`), plus the actions AWS checks besides it: tagging on
//! create (every geusemaker resource is tagged at creation), `iam:PassRole` for an instance
//! profile, the network-interface calls EFS makes on the caller's behalf.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};

/// What a re-run on a live stack calls besides a first deploy's operations: the diff's reads,
/// the services updated through SSM Run Command (and the health checks run there), an
/// on-demand type changed by stop/modify/start, a replacement moving the data volume with a
/// snapshot first, the instance's services tag, the role's policies compared.
pub const UPDATE_OPERATIONS: &[&str] = &[
    "EC2:StopInstances",
    "EC2:StartInstances",
    "EC2:ModifyInstanceAttribute",
    "EC2:DetachVolume",
    "EC2:AttachVolume",
    "EC2:CreateSnapshot",
    "EC2:DescribeSnapshots",
    "EC2:DeleteSnapshot",
    "EC2:CreateTags",
    "EC2:TerminateInstances",
    "EC2:RevokeSecurityGroupIngress",
    "SSM:SendCommand",
    "SSM:GetCommandInvocation",
    "IAM:ListAttachedRolePolicies",
    "IAM:GetRolePolicy",
];

/// What every connection calls first (the preflight). It needs no permission — AWS answers
/// `GetCallerIdentity` for any valid credentials — and is listed so the policy names every call.
pub const PREFLIGHT_OPERATIONS: &[&str] = &["STS:GetCallerIdentity"];

/// The IAM service prefix of an SDK service id.
fn prefix(service: &str) -> Option<&'static str> {
    Some(match service {
        "EC2" => "ec2",
        "EFS" => "elasticfilesystem",
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "CloudFront" => "cloudfront",
        "SSM" => "ssm",
        "IAM" => "iam",
        "Pricing" => "pricing",
        "Backup" => "backup",
        "STS" => "sts",
        _ => return None,
    })
}

/// The IAM actions one operation (`EC2:RunInstances`) needs.
pub fn actions_for(op: &str) -> Vec<String> {
    let Some((service, name)) = op.split_once(':') else {
        return Vec::new();
    };
    let Some(p) = prefix(service) else {
        return Vec::new();
    };
    let mut out = vec![match (p, name) {
        ("cloudfront", "CreateDistributionWithTags") => "cloudfront:CreateDistribution".to_string(),
        _ => format!("{p}:{name}"),
    }];
    let extra: &[&str] = match (p, name) {
        (
            "ec2",
            "RunInstances"
            | "CreateSecurityGroup"
            | "CreateVolume"
            | "CreateKeyPair"
            | "ImportKeyPair",
        ) => &["ec2:CreateTags"],
        ("elasticfilesystem", "CreateFileSystem") => &["elasticfilesystem:TagResource"],
        ("elasticfilesystem", "CreateMountTarget") => &[
            "ec2:DescribeSubnets",
            "ec2:DescribeNetworkInterfaces",
            "ec2:CreateNetworkInterface",
        ],
        ("elasticfilesystem", "DeleteMountTarget") => &["ec2:DeleteNetworkInterface"],
        (
            "elasticloadbalancing",
            "CreateLoadBalancer" | "CreateTargetGroup" | "CreateListener" | "CreateRule",
        ) => &["elasticloadbalancing:AddTags"],
        ("cloudfront", "CreateDistributionWithTags") => &["cloudfront:TagResource"],
        ("ssm", "PutParameter") => &["ssm:AddTagsToResource"],
        ("iam", "CreateRole") => &["iam:TagRole"],
        ("iam", "CreateInstanceProfile") => &["iam:TagInstanceProfile"],
        _ => &[],
    };
    out.extend(extra.iter().map(|s| s.to_string()));
    out
}

/// The policy document for `ops`: one statement per service, sorted actions, and `iam:PassRole`
/// limited to the stack's roles and to EC2 when instances get a profile.
pub fn document(ops: &[String], stack: Option<&str>) -> Value {
    let mut by_prefix: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for op in ops {
        for a in actions_for(op) {
            let p = a.split(':').next().unwrap_or("").to_string();
            by_prefix.entry(p).or_default().insert(a);
        }
    }
    let mut statements: Vec<Value> = by_prefix
        .iter()
        .map(|(p, actions)| {
            json!({
                "Sid": format!("Geusemaker{}", sid(p)),
                "Effect": "Allow",
                "Action": actions.iter().collect::<Vec<_>>(),
                "Resource": "*",
            })
        })
        .collect();
    let launches_with_profile = ops.iter().any(|o| o == "EC2:RunInstances")
        && ops
            .iter()
            .any(|o| o.starts_with("IAM:") && o.contains("InstanceProfile"));
    if launches_with_profile {
        let role = match stack {
            Some(s) => format!("arn:aws:iam::*:role/{s}-*"),
            None => "arn:aws:iam::*:role/*".to_string(),
        };
        statements.push(json!({
            "Sid": "GeusemakerPassInstanceRole",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": role,
            "Condition": { "StringEquals": { "iam:PassedToService": "ec2.amazonaws.com" } },
        }));
    }
    json!({ "Version": "2012-10-17", "Statement": statements })
}

/// What the S3 state backend needs on `s3://bucket/prefix`: its objects (stack documents and
/// locks), the bucket's listing (a missing object then answers 404, not 403) and its
/// versioning setting; with a KMS key, that key's use.
pub fn state_statements(bucket: &str, prefix: &str, kms_key: Option<&str>) -> Vec<Value> {
    let objects = if prefix.is_empty() {
        format!("arn:aws:s3:::{bucket}/*")
    } else {
        format!("arn:aws:s3:::{bucket}/{prefix}/*")
    };
    let mut out = vec![
        json!({
            "Sid": "GeusemakerStateObjects",
            "Effect": "Allow",
            "Action": ["s3:DeleteObject", "s3:GetObject", "s3:PutObject"],
            "Resource": objects,
        }),
        json!({
            "Sid": "GeusemakerStateBucket",
            "Effect": "Allow",
            "Action": ["s3:GetBucketVersioning", "s3:ListBucket"],
            "Resource": format!("arn:aws:s3:::{bucket}"),
        }),
    ];
    if let Some(key) = kms_key {
        out.push(json!({
            "Sid": "GeusemakerStateKey",
            "Effect": "Allow",
            "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
            "Resource": if key.starts_with("arn:") { key.to_string() } else { "*".to_string() },
        }));
    }
    out
}

fn sid(prefix: &str) -> String {
    match prefix {
        "ec2" => "EC2".into(),
        "elasticfilesystem" => "EFS".into(),
        "elasticloadbalancing" => "ELB".into(),
        "cloudfront" => "CloudFront".into(),
        "ssm" => "SSM".into(),
        "iam" => "IAM".into(),
        "pricing" => "Pricing".into(),
        "backup" => "Backup".into(),
        other => other.to_uppercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_map_to_their_actions_and_companions() {
        assert_eq!(
            actions_for("EC2:RunInstances"),
            ["ec2:RunInstances", "ec2:CreateTags"]
        );
        assert_eq!(
            actions_for("CloudFront:CreateDistributionWithTags"),
            ["cloudfront:CreateDistribution", "cloudfront:TagResource"]
        );
        assert_eq!(
            actions_for("Elastic Load Balancing v2:DescribeTargetHealth"),
            ["elasticloadbalancing:DescribeTargetHealth"]
        );
        assert!(actions_for("Unknown:Thing").is_empty());
    }

    #[test]
    fn the_document_groups_by_service_and_scopes_pass_role() {
        let ops: Vec<String> = [
            "EC2:RunInstances",
            "EC2:DescribeVpcs",
            "IAM:CreateInstanceProfile",
            "EFS:CreateFileSystem",
        ]
        .map(String::from)
        .to_vec();
        let d = document(&ops, Some("demo"));
        let st = d["Statement"].as_array().unwrap();
        let ec2 = st.iter().find(|s| s["Sid"] == "GeusemakerEC2").unwrap();
        assert_eq!(
            ec2["Action"],
            json!(["ec2:CreateTags", "ec2:DescribeVpcs", "ec2:RunInstances"])
        );
        let pass = st
            .iter()
            .find(|s| s["Sid"] == "GeusemakerPassInstanceRole")
            .unwrap();
        assert_eq!(pass["Resource"], "arn:aws:iam::*:role/demo-*");
        assert!(document(&ops[1..2], None)["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["Action"] != "iam:PassRole"));
    }

    #[test]
    fn the_state_bucket_statements_are_scoped_to_its_prefix() {
        let st = super::state_statements("acme-state", "geusemaker", None);
        assert_eq!(st.len(), 2);
        assert_eq!(st[0]["Resource"], "arn:aws:s3:::acme-state/geusemaker/*");
        assert_eq!(
            st[0]["Action"],
            serde_json::json!(["s3:DeleteObject", "s3:GetObject", "s3:PutObject"])
        );
        assert_eq!(st[1]["Resource"], "arn:aws:s3:::acme-state");
        let bare = super::state_statements("acme-state", "", Some("arn:aws:kms:eu-west-1:1:key/k"));
        assert_eq!(bare[0]["Resource"], "arn:aws:s3:::acme-state/*");
        assert_eq!(bare[2]["Resource"], "arn:aws:kms:eu-west-1:1:key/k");
    }
}
