//! IAM: the instance's role and instance profile.

use std::fmt;

use aws_sdk_iam::types::Tag;
use rhai::CustomType;

use super::{Blocking, CloudError, Tags};

const SVC: &str = "iam";

/// Lets EC2 assume the role.
pub const EC2_TRUST_POLICY: &str = r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"ec2.amazonaws.com"},"Action":"sts:AssumeRole"}]}"#;

/// Session Manager and Run Command on the instance (no SSH needed), in `partition`.
pub fn ssm_core_policy_arn(partition: &str) -> String {
    format!("arn:{partition}:iam::aws:policy/AmazonSSMManagedInstanceCore")
}

/// Where an instance policy applies: the stack's partition, region and account. Parameter
/// ARNs name all three, so a stack of the same name in another region or account is not
/// this stack's.
#[derive(Debug, Clone, PartialEq)]
pub struct Scope<'a> {
    pub partition: &'a str,
    pub region: &'a str,
    pub account: &'a str,
}

/// An instance profile and the role inside it.
#[derive(Debug, Clone, CustomType, serde::Serialize)]
#[rhai_type(name = "InstanceProfile", extra = super::display_fns)]
pub struct InstanceProfile {
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(readonly)]
    pub arn: String,
    #[rhai_type(readonly)]
    pub role_name: String,
    #[rhai_type(readonly)]
    pub role_arn: String,
}

impl fmt::Display for InstanceProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InstanceProfile({} role {})", self.name, self.role_name)
    }
}

/// The SSM read actions an instance could use on parameters.
const PARAMETER_READS: [&str; 4] = [
    "ssm:GetParameter",
    "ssm:GetParameters",
    "ssm:GetParametersByPath",
    "ssm:GetParameterHistory",
];

/// Read access to one stack's SSM parameters, nothing else. The Allow grants the stack's
/// path; the Deny takes away what `AmazonSSMManagedInstanceCore` grants besides
/// (`ssm:GetParameter(s)` on every parameter of the account): an explicit Deny wins over
/// any Allow, so the role reads its own stack's secrets and no one else's.
///
/// With `snapshot_volume` (the data volume's `Name` tag) the
/// daily snapshot of that one volume: create a snapshot of a volume tagged with that name and
/// the stack (the snapshot itself tagged with the stack at creation), tag it only as part of
/// that creation, delete only the stack's snapshots, and describe (which cannot be scoped).
pub fn instance_policy(stack: &str, scope: &Scope, snapshot_volume: Option<&str>) -> String {
    let Scope {
        partition,
        region,
        account,
    } = scope;
    let parameters = format!("arn:{partition}:ssm:{region}:{account}:parameter");
    let own = [
        format!("{parameters}/geusemaker/{stack}"),
        format!("{parameters}/geusemaker/{stack}/*"),
    ];
    let mut statements = vec![
        serde_json::json!({
            "Sid": "ReadOwnStackParameters",
            "Effect": "Allow",
            "Action": PARAMETER_READS,
            "Resource": own,
        }),
        serde_json::json!({
            "Sid": "NoOtherParameters",
            "Effect": "Deny",
            "Action": PARAMETER_READS,
            "NotResource": own,
        }),
        // The boot's progress, for the CLI to show: that one parameter, and no other write.
        serde_json::json!({
            "Sid": "ReportBootProgress",
            "Effect": "Allow",
            "Action": "ssm:PutParameter",
            "Resource": format!("{parameters}{}", crate::boot::channel_parameter(stack)),
        }),
    ];
    if let Some(volume) = snapshot_volume {
        let stack_tag = super::tags::STACK_TAG;
        statements.extend([
            serde_json::json!({
                "Sid": "SnapshotOwnDataVolume",
                "Effect": "Allow",
                "Action": "ec2:CreateSnapshot",
                "Resource": format!("arn:{partition}:ec2:{region}:{account}:volume/*"),
                "Condition": { "StringEquals": {
                    "aws:ResourceTag/Name": volume,
                    format!("aws:ResourceTag/{stack_tag}"): stack,
                } },
            }),
            serde_json::json!({
                "Sid": "CreateStackSnapshots",
                "Effect": "Allow",
                "Action": "ec2:CreateSnapshot",
                "Resource": format!("arn:{partition}:ec2:{region}::snapshot/*"),
                "Condition": { "StringEquals": {
                    format!("aws:RequestTag/{stack_tag}"): stack,
                    "aws:RequestTag/geusemaker:snapshot": "daily",
                } },
            }),
            serde_json::json!({
                "Sid": "TagSnapshotsAtCreation",
                "Effect": "Allow",
                "Action": "ec2:CreateTags",
                "Resource": format!("arn:{partition}:ec2:{region}::snapshot/*"),
                "Condition": { "StringEquals": { "ec2:CreateAction": "CreateSnapshot" } },
            }),
            serde_json::json!({
                "Sid": "PruneStackSnapshots",
                "Effect": "Allow",
                "Action": "ec2:DeleteSnapshot",
                "Resource": format!("arn:{partition}:ec2:{region}::snapshot/*"),
                // Its own daily snapshots only: not one a person took or tagged by hand.
                "Condition": { "StringEquals": {
                    format!("aws:ResourceTag/{stack_tag}"): stack,
                    "aws:ResourceTag/geusemaker:snapshot": "daily",
                } },
            }),
            serde_json::json!({
                "Sid": "FindVolumeAndSnapshots",
                "Effect": "Allow",
                "Action": ["ec2:DescribeVolumes", "ec2:DescribeSnapshots"],
                "Resource": "*",
            }),
        ]);
    }
    serde_json::json!({ "Version": "2012-10-17", "Statement": statements }).to_string()
}

/// The IAM operations primitives use.
pub trait IamApi: Send + Sync {
    /// Role (EC2 trust) + managed policies + one inline policy + instance profile containing
    /// it; each part created only when missing, the policies brought to what is asked. Returns
    /// the profile and whether anything was created or changed.
    fn ensure_instance_profile(
        &self,
        name: &str,
        managed_policies: &[String],
        inline_policy: (&str, &str),
        tags: &Tags,
        look_first: bool,
    ) -> Result<(InstanceProfile, bool), CloudError>;
    fn find_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, CloudError>;
    fn role_exists(&self, name: &str) -> Result<bool, CloudError>;
    /// Remove the role from the profile, detach/delete its policies, delete both.
    fn delete_instance_profile(&self, name: &str) -> Result<(), CloudError>;
}

/// [`IamApi`] over aws-sdk-iam.
pub struct SdkIam {
    client: aws_sdk_iam::Client,
    rt: Blocking,
}

impl SdkIam {
    pub fn new(client: aws_sdk_iam::Client, rt: Blocking) -> Self {
        SdkIam { client, rt }
    }

    fn role_arn(&self, name: &str) -> Result<Option<String>, CloudError> {
        self.rt.block_on(get_role(&self.client, name))
    }
}

async fn get_role(c: &aws_sdk_iam::Client, name: &str) -> Result<Option<String>, CloudError> {
    match c.get_role().role_name(name).send().await {
        Ok(out) => Ok(out.role().map(|r| r.arn().to_string())),
        Err(e) => CloudError::from_sdk(SVC, "GetRole", e).absent(),
    }
}

async fn get_profile(
    c: &aws_sdk_iam::Client,
    name: &str,
) -> Result<Option<InstanceProfile>, CloudError> {
    match c
        .get_instance_profile()
        .instance_profile_name(name)
        .send()
        .await
    {
        Ok(out) => Ok(out.instance_profile().map(|p| {
            let role = p.roles().first();
            InstanceProfile {
                name: p.instance_profile_name().to_string(),
                arn: p.arn().to_string(),
                role_name: role.map(|r| r.role_name().to_string()).unwrap_or_default(),
                role_arn: role.map(|r| r.arn().to_string()).unwrap_or_default(),
            }
        })),
        Err(e) => CloudError::from_sdk(SVC, "GetInstanceProfile", e).absent(),
    }
}

/// The role and profile `name`, made or brought up to date in rounds of concurrent calls:
/// what exists (role ∥ profile; only with `look_first`), what is missing (role ∥ profile), then
/// the policies ∥ the role's place in the profile. Every create tolerates "already exists" (a
/// profile made earlier, or a retried request whose first answer was lost), so skipping the
/// first round is safe when nothing is expected to exist. Returns whether anything was created.
async fn ensure(
    c: &aws_sdk_iam::Client,
    name: &str,
    managed_policies: &[String],
    (policy_name, policy_doc): (&str, &str),
    tags: &Tags,
    look_first: bool,
) -> Result<(InstanceProfile, bool), CloudError> {
    let (profile, role) = if look_first {
        let (profile, role) = tokio::join!(get_profile(c, name), get_role(c, name));
        (profile?, role?)
    } else {
        (None, None)
    };
    let created = profile.is_none() || role.is_none();

    let make_role = async {
        if let Some(arn) = role {
            return Ok(arn);
        }
        let out = c
            .create_role()
            .role_name(name)
            .assume_role_policy_document(EC2_TRUST_POLICY)
            .description("geusemaker instance role")
            .set_tags(Some(iam_tags(tags)))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk(SVC, "CreateRole", e));
        match out {
            Ok(out) => Ok(out.role().map(|r| r.arn().to_string()).unwrap_or_default()),
            Err(e) if e.is_duplicate() => get_role(c, name).await?.ok_or(e),
            Err(e) => Err(e),
        }
    };
    let make_profile = async {
        if let Some(p) = profile {
            return Ok(p);
        }
        let out = c
            .create_instance_profile()
            .instance_profile_name(name)
            .set_tags(Some(iam_tags(tags)))
            .send()
            .await
            .map_err(|e| CloudError::from_sdk(SVC, "CreateInstanceProfile", e));
        match out {
            Ok(out) => Ok(InstanceProfile {
                name: name.to_string(),
                arn: out
                    .instance_profile()
                    .map(|p| p.arn().to_string())
                    .unwrap_or_default(),
                role_name: String::new(),
                role_arn: String::new(),
            }),
            Err(e) if e.is_duplicate() => get_profile(c, name).await?.ok_or(e),
            Err(e) => Err(e),
        }
    };
    let (role_arn, profile) = tokio::join!(make_role, make_profile);
    let (role_arn, profile) = (role_arn?, profile?);

    // A role found again gets what the recipe says: policies it lacks are attached, an inline
    // policy that differs is replaced; one that matches is left alone (no write).
    let (attached, inline_now) = if created {
        (Vec::new(), None)
    } else {
        let attached = async {
            c.list_attached_role_policies()
                .role_name(name)
                .send()
                .await
                .map(|o| {
                    o.attached_policies()
                        .iter()
                        .filter_map(|p| p.policy_arn().map(str::to_string))
                        .collect::<Vec<_>>()
                })
                .map_err(|e| CloudError::from_sdk(SVC, "ListAttachedRolePolicies", e))
        };
        let inline = async {
            match c
                .get_role_policy()
                .role_name(name)
                .policy_name(policy_name)
                .send()
                .await
            {
                Ok(o) => Ok(Some(percent_decode(o.policy_document()))),
                Err(e) => {
                    let e = CloudError::from_sdk(SVC, "GetRolePolicy", e);
                    if e.is_not_found() {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                }
            }
        };
        let (a, i) = tokio::join!(attached, inline);
        (a?, i?)
    };
    let missing_managed = managed_policies.iter().any(|a| !attached.contains(a));
    let same_inline = inline_now.is_some_and(|doc| {
        serde_json::from_str::<serde_json::Value>(&doc).ok()
            == serde_json::from_str::<serde_json::Value>(policy_doc).ok()
    });
    let attach = async {
        for arn in managed_policies.iter().filter(|a| !attached.contains(a)) {
            c.attach_role_policy()
                .role_name(name)
                .policy_arn(arn)
                .send()
                .await
                .map_err(|e| CloudError::from_sdk(SVC, "AttachRolePolicy", e))?;
        }
        Ok::<(), CloudError>(())
    };
    let inline = async {
        if same_inline {
            return Ok(());
        }
        c.put_role_policy()
            .role_name(name)
            .policy_name(policy_name)
            .policy_document(policy_doc)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| CloudError::from_sdk(SVC, "PutRolePolicy", e))
    };
    let add_role = async {
        if !profile.role_name.is_empty() {
            return Ok(());
        }
        let added = c
            .add_role_to_instance_profile()
            .instance_profile_name(name)
            .role_name(name)
            .send()
            .await
            .map_err(|e| CloudError::from_sdk(SVC, "AddRoleToInstanceProfile", e));
        match added {
            Ok(_) => Ok(()),
            // "LimitExceeded: one role per profile" after a lost answer: check it is ours.
            Err(e) if e.code == "LimitExceeded" || e.is_duplicate() => {
                match get_profile(c, name).await? {
                    Some(p) if p.role_name == name => Ok(()),
                    _ => Err(e),
                }
            }
            Err(e) => Err(e),
        }
    };
    let (a, i, r) = tokio::join!(attach, inline, add_role);
    a?;
    i?;
    r?;
    Ok((
        InstanceProfile {
            name: name.to_string(),
            arn: profile.arn,
            role_name: name.to_string(),
            role_arn,
        },
        created || missing_managed || !same_inline,
    ))
}

fn iam_tags(tags: &Tags) -> Vec<Tag> {
    tags.pairs()
        .into_iter()
        .map(|(k, v)| {
            Tag::builder()
                .key(k)
                .value(v)
                .build()
                .expect("tag has key and value")
        })
        .collect()
}

impl IamApi for SdkIam {
    fn ensure_instance_profile(
        &self,
        name: &str,
        managed_policies: &[String],
        inline_policy: (&str, &str),
        tags: &Tags,
        look_first: bool,
    ) -> Result<(InstanceProfile, bool), CloudError> {
        self.rt.block_on(ensure(
            &self.client,
            name,
            managed_policies,
            inline_policy,
            tags,
            look_first,
        ))
    }

    fn find_instance_profile(&self, name: &str) -> Result<Option<InstanceProfile>, CloudError> {
        self.rt.block_on(get_profile(&self.client, name))
    }

    fn role_exists(&self, name: &str) -> Result<bool, CloudError> {
        Ok(self.role_arn(name)?.is_some())
    }

    fn delete_instance_profile(&self, name: &str) -> Result<(), CloudError> {
        let ignore_missing = |r: Result<(), CloudError>| match r {
            Err(e) if e.is_not_found() => Ok(()),
            other => other,
        };
        if let Some(p) = self.find_instance_profile(name)? {
            if !p.role_name.is_empty() {
                ignore_missing(
                    self.rt
                        .call(
                            SVC,
                            "RemoveRoleFromInstanceProfile",
                            self.client
                                .remove_role_from_instance_profile()
                                .instance_profile_name(name)
                                .role_name(&p.role_name)
                                .send(),
                        )
                        .map(|_| ()),
                )?;
            }
            ignore_missing(
                self.rt
                    .call(
                        SVC,
                        "DeleteInstanceProfile",
                        self.client
                            .delete_instance_profile()
                            .instance_profile_name(name)
                            .send(),
                    )
                    .map(|_| ()),
            )?;
        }
        if self.role_arn(name)?.is_none() {
            return Ok(());
        }
        let attached = self.rt.call(
            SVC,
            "ListAttachedRolePolicies",
            self.client
                .list_attached_role_policies()
                .role_name(name)
                .send(),
        )?;
        for p in attached.attached_policies() {
            if let Some(arn) = p.policy_arn() {
                ignore_missing(
                    self.rt
                        .call(
                            SVC,
                            "DetachRolePolicy",
                            self.client
                                .detach_role_policy()
                                .role_name(name)
                                .policy_arn(arn)
                                .send(),
                        )
                        .map(|_| ()),
                )?;
            }
        }
        let inline = self.rt.call(
            SVC,
            "ListRolePolicies",
            self.client.list_role_policies().role_name(name).send(),
        )?;
        for p in inline.policy_names() {
            ignore_missing(
                self.rt
                    .call(
                        SVC,
                        "DeleteRolePolicy",
                        self.client
                            .delete_role_policy()
                            .role_name(name)
                            .policy_name(p)
                            .send(),
                    )
                    .map(|_| ()),
            )?;
        }
        ignore_missing(
            self.rt
                .call(
                    SVC,
                    "DeleteRole",
                    self.client.delete_role().role_name(name).send(),
                )
                .map(|_| ()),
        )
    }
}

/// IAM returns policy documents URL-encoded (RFC 3986).
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod decode_tests {
    #[test]
    fn policy_documents_are_url_decoded() {
        assert_eq!(
            super::percent_decode("%7B%22a%22%3A%20%22b%2Fc%22%7D"),
            r#"{"a": "b/c"}"#
        );
        assert_eq!(super::percent_decode("100%"), "100%");
        assert_eq!(super::percent_decode("%zz"), "%zz");
    }
}

#[cfg(test)]
mod policy_tests {
    use super::*;

    /// Every ARN of the instance policy names the stack's partition, and the parameter ARNs
    /// its region and account: a stack of the same name in another region or account, or a
    /// China or GovCloud partition, gets a policy of its own.
    #[test]
    fn the_instance_policy_is_scoped_to_the_stacks_partition_region_and_account() {
        let identity = super::super::Identity {
            account: "210987654321".into(),
            arn: "arn:aws-cn:sts::210987654321:assumed-role/deployer/me".into(),
        };
        let scope = Scope {
            partition: identity.partition(),
            region: "cn-north-1",
            account: &identity.account,
        };
        let doc: serde_json::Value =
            serde_json::from_str(&instance_policy("demo", &scope, Some("demo-data"))).unwrap();
        let mut arns = Vec::new();
        for s in doc["Statement"].as_array().unwrap() {
            for key in ["Resource", "NotResource"] {
                match &s[key] {
                    serde_json::Value::String(a) => arns.push(a.clone()),
                    serde_json::Value::Array(list) => {
                        arns.extend(list.iter().map(|a| a.as_str().unwrap().to_string()))
                    }
                    _ => {}
                }
            }
        }
        let arns: Vec<&String> = arns.iter().filter(|a| *a != "*").collect();
        assert!(arns.len() >= 6, "{arns:?}");
        for a in &arns {
            assert!(a.starts_with("arn:aws-cn:"), "{a}");
            if a.contains(":ssm:") {
                assert!(
                    a.starts_with("arn:aws-cn:ssm:cn-north-1:210987654321:parameter/"),
                    "{a}"
                );
            }
        }
        assert!(arns.contains(
            &&"arn:aws-cn:ssm:cn-north-1:210987654321:parameter/geusemaker-boot/demo".to_string()
        ));
        assert_eq!(
            ssm_core_policy_arn(identity.partition()),
            "arn:aws-cn:iam::aws:policy/AmazonSSMManagedInstanceCore"
        );
    }
}
