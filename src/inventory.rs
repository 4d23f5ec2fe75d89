//! What a stack has in AWS: resolving ledger intents whose id never got recorded (a crash or
//! a lost response between the API call and the ledger write), and finding resources that
//! carry the stack's tag. Destroy and rollback start from here.

use std::collections::BTreeMap;

use crate::cloud::tags::{NAME_TAG, STACK_TAG};
use crate::cloud::{Aws, CloudError};
use crate::naming::elb_name;
use crate::state::Kind;
use crate::state::Resource;

/// A resource found in AWS.
#[derive(Debug, Clone, PartialEq)]
pub struct Found {
    pub kind: Kind,
    pub name: String,
    pub id: String,
    pub attrs: BTreeMap<String, String>,
}

fn logical(stack: &str, full: &str) -> String {
    full.strip_prefix(&format!("{stack}-"))
        .unwrap_or(full)
        .to_string()
}

fn named(stack: &str, name: &str) -> Vec<(String, String)> {
    vec![
        (STACK_TAG.into(), stack.into()),
        (NAME_TAG.into(), format!("{stack}-{name}")),
    ]
}

/// Root devices: a root volume goes with its instance and is never the stack's to delete.
fn is_root_device(device: Option<&str>) -> bool {
    matches!(device, Some("/dev/xvda" | "/dev/sda1" | "/dev/sda"))
}

/// The full SSM name of a ledger parameter entry.
pub fn parameter_name(stack: &str, name: &str) -> String {
    if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/geusemaker/{stack}/{name}")
    }
}

/// The id of the resource a ledger intent may have created, or `None` if it does not exist.
/// `Err` for kinds this runtime cannot look up.
pub fn resolve_intent(
    aws: &Aws,
    stack: &str,
    r: &Resource,
    ledger: &[Resource],
) -> Result<Option<String>, CloudError> {
    let first = |v: Vec<String>| v.into_iter().next();
    Ok(match r.kind {
        Kind::Instance => first(
            aws.ec2
                .find_instances(&named(stack, &r.name))?
                .into_iter()
                .map(|i| i.id)
                .collect(),
        ),
        Kind::SecurityGroup => first(
            aws.ec2
                .find_security_groups(&named(stack, &r.name))?
                .into_iter()
                .map(|g| g.id)
                .collect(),
        ),
        Kind::Volume => first(
            aws.ec2
                .find_volumes(&named(stack, &r.name))?
                .into_iter()
                .map(|v| v.id)
                .collect(),
        ),
        Kind::KeyPair => aws
            .ec2
            .find_key_pair(&format!("{stack}-{}", r.name))?
            .map(|k| k.name),
        Kind::FileSystem => aws.efs.find_by_token(&r.token)?.map(|f| f.id),
        Kind::MountTarget => {
            let subnet = r.name.strip_prefix("mount-").unwrap_or("");
            let mut found = None;
            for fs in ledger
                .iter()
                .filter(|e| e.kind == Kind::FileSystem)
                .filter_map(|e| e.id.as_deref())
            {
                match aws.efs.mount_targets(fs) {
                    Ok(mts) => {
                        if let Some(m) = mts.into_iter().find(|m| m.subnet_id == subnet) {
                            found = Some(m.id);
                            break;
                        }
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            found
        }
        Kind::InstanceProfile => {
            let full = format!("{stack}-{}", r.name);
            // A role may exist without its profile (a crash between the two creates).
            let exists =
                aws.iam.find_instance_profile(&full)?.is_some() || aws.iam.role_exists(&full)?;
            exists.then_some(full)
        }
        Kind::Parameter => aws
            .ssm
            .get(&parameter_name(stack, &r.name))?
            .map(|(p, _)| p.name),
        Kind::LoadBalancer => aws
            .elb
            .find_load_balancer(&elb_name(stack, &r.name))?
            .map(|l| l.arn),
        Kind::TargetGroup => aws
            .elb
            .find_target_group(&elb_name(stack, &r.name))?
            .map(|t| t.arn),
        Kind::Listener => {
            let port: i64 = r
                .name
                .strip_prefix("port-")
                .and_then(|p| p.parse().ok())
                .unwrap_or(-1);
            let mut found = None;
            for lb in ledger
                .iter()
                .filter(|e| e.kind == Kind::LoadBalancer)
                .filter_map(|e| e.id.as_deref())
            {
                match aws.elb.listeners(lb) {
                    Ok(ls) => {
                        if let Some(l) = ls.into_iter().find(|l| l.port == port) {
                            found = Some(l.arn);
                            break;
                        }
                    }
                    Err(e) if e.is_not_found() => {}
                    Err(e) => return Err(e),
                }
            }
            found
        }
        Kind::Distribution => aws
            .cloudfront
            .find_tagged("geusemaker:caller-reference", &r.token)?
            .into_iter()
            .next()
            .map(|d| d.id),
        // A CloudFront Function has no lookup here: such an intent is reported, not resolved.
        Kind::CloudFrontFunction => {
            return Err(CloudError::new(
                "geusemaker",
                "resolve",
                "UnknownKind",
                format!("no lookup for resources of kind {}", r.kind),
            ))
        }
    })
}

/// Every resource carrying `geusemaker:stack=<stack>` (EC2, EFS) or under the stack's SSM path.
pub fn tagged(aws: &Aws, stack: &str) -> Result<Vec<Found>, CloudError> {
    let tag = [(STACK_TAG.to_string(), stack.to_string())];
    let mut out = Vec::new();
    let found = |kind: Kind, name: String, id: String| Found {
        kind,
        name,
        id,
        attrs: BTreeMap::new(),
    };
    for i in aws.ec2.find_instances(&tag)? {
        out.push(found(Kind::Instance, logical(stack, &i.name), i.id));
    }
    for v in aws.ec2.find_volumes(&tag)? {
        if !is_root_device(v.device.as_deref()) {
            out.push(found(Kind::Volume, logical(stack, &v.name), v.id));
        }
    }
    for g in aws.ec2.find_security_groups(&tag)? {
        out.push(found(Kind::SecurityGroup, logical(stack, &g.name), g.id));
    }
    for k in aws.ec2.find_key_pairs(&tag)? {
        out.push(found(Kind::KeyPair, logical(stack, &k.name), k.name));
    }
    for fs in aws.efs.find_by_tag(STACK_TAG, stack)? {
        for mt in aws.efs.mount_targets(&fs.id)? {
            let mut f = found(Kind::MountTarget, format!("mount-{}", mt.subnet_id), mt.id);
            f.attrs.insert("file_system".into(), fs.id.clone());
            out.push(f);
        }
        out.push(found(Kind::FileSystem, logical(stack, &fs.name), fs.id));
    }
    for (kind, name, arn) in aws.elb.tagged(STACK_TAG, stack)? {
        if kind == Kind::LoadBalancer {
            for l in aws.elb.listeners(&arn)? {
                out.push(found(Kind::Listener, format!("port-{}", l.port), l.arn));
            }
        }
        out.push(found(kind, logical(stack, &name), arn));
    }
    for d in aws.cloudfront.find_tagged(STACK_TAG, stack)? {
        out.push(found(Kind::Distribution, d.id.clone(), d.id));
    }
    let prefix = format!("/geusemaker/{stack}/");
    for p in aws.ssm.list_by_path(&prefix)? {
        let name = p.name.strip_prefix(&prefix).unwrap_or(&p.name).to_string();
        out.push(found(Kind::Parameter, name, p.name));
    }
    Ok(out)
}
