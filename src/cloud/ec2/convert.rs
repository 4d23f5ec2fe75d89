//! From the SDK's types to the handles, and back (filters, tags, rules).

use aws_sdk_ec2::types::{
    Filter, HttpTokensState, IpPermission, IpRange, Ipv6Range, PrefixListId, ResourceType, Tag,
    TagSpecification, UserIdGroupPair,
};

use super::Tags;

use super::*;

/// Per-operation override: no SDK retries (geusemaker retries the create, looking first).
pub(super) fn no_sdk_retries() -> aws_sdk_ec2::config::Builder {
    aws_sdk_ec2::config::Builder::default().retry_config(aws_config::retry::RetryConfig::disabled())
}

pub(super) fn filter(name: &str, values: &[&str]) -> Filter {
    Filter::builder()
        .name(name)
        .set_values(Some(values.iter().map(|v| v.to_string()).collect()))
        .build()
}

pub(super) fn tag_spec(rt: ResourceType, tags: &Tags) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(rt)
        .set_tags(Some(
            tags.pairs()
                .into_iter()
                .map(|(k, v)| Tag::builder().key(k).value(v).build())
                .collect(),
        ))
        .build()
}

pub(super) fn s(v: Option<&str>) -> String {
    v.unwrap_or_default().to_string()
}

pub(super) fn to_sg(g: &aws_sdk_ec2::types::SecurityGroup) -> SecurityGroup {
    let mut ingress = Vec::new();
    for p in g.ip_permissions() {
        let protocol = s(p.ip_protocol());
        let (from_port, to_port) = (
            p.from_port().unwrap_or(-1) as i64,
            p.to_port().unwrap_or(-1) as i64,
        );
        for r in p.ip_ranges() {
            ingress.push(IngressRule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                cidr: r.cidr_ip().map(str::to_string),
                source_sg: None,
                prefix_list: None,
                description: s(r.description()),
            });
        }
        // IPv6 ranges are never opened by geusemaker; one added by hand is seen (and a
        // re-run's `set_ingress` revokes it).
        for r in p.ipv6_ranges() {
            ingress.push(IngressRule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                cidr: r.cidr_ipv6().map(str::to_string),
                source_sg: None,
                prefix_list: None,
                description: s(r.description()),
            });
        }
        for pl in p.prefix_list_ids() {
            ingress.push(IngressRule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                cidr: None,
                source_sg: None,
                prefix_list: pl.prefix_list_id().map(str::to_string),
                description: s(pl.description()),
            });
        }
        for pair in p.user_id_group_pairs() {
            ingress.push(IngressRule {
                protocol: protocol.clone(),
                from_port,
                to_port,
                cidr: None,
                source_sg: pair.group_id().map(str::to_string),
                prefix_list: None,
                description: s(pair.description()),
            });
        }
    }
    SecurityGroup {
        id: s(g.group_id()),
        name: s(g.group_name()),
        vpc_id: s(g.vpc_id()),
        ingress,
    }
}

/// The state an instance was in before a terminate, stop or start (the answer's first change).
pub(super) fn previous_state(changes: &[aws_sdk_ec2::types::InstanceStateChange]) -> String {
    changes
        .first()
        .and_then(|c| c.previous_state())
        .and_then(|st| st.name())
        .map(|n| n.as_str().to_string())
        .unwrap_or_default()
}

pub(super) fn to_instance(i: &aws_sdk_ec2::types::Instance) -> Instance {
    let name = i
        .tags()
        .iter()
        .find(|t| t.key() == Some("Name"))
        .and_then(|t| t.value())
        .unwrap_or_default()
        .to_string();
    Instance {
        id: s(i.instance_id()),
        name,
        state: i
            .state()
            .and_then(|st| st.name())
            .map(|n| n.as_str().to_string())
            .unwrap_or_default(),
        instance_type: i
            .instance_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        az: s(i.placement().and_then(|p| p.availability_zone())),
        subnet_id: s(i.subnet_id()),
        vpc_id: s(i.vpc_id()),
        image_id: s(i.image_id()),
        private_ip: i.private_ip_address().map(str::to_string),
        public_ip: i.public_ip_address().map(str::to_string),
        public_dns: i
            .public_dns_name()
            .filter(|d| !d.is_empty())
            .map(str::to_string),
        lifecycle: match i.instance_lifecycle() {
            Some(l) if l.as_str() == "spot" => "spot".into(),
            _ => "on-demand".into(),
        },
        imdsv2_required: i
            .metadata_options()
            .and_then(|m| m.http_tokens())
            .is_some_and(|t| *t == HttpTokensState::Required),
        instance_profile_arn: i
            .iam_instance_profile()
            .and_then(|p| p.arn())
            .map(str::to_string),
        launch_time: i.launch_time().map(smithy_time),
        state_reason: i
            .state_reason()
            .and_then(|r| r.code())
            .filter(|c| !c.is_empty())
            .map(str::to_string),
        spot_request_id: i.spot_instance_request_id().map(str::to_string),
        security_groups: i
            .security_groups()
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect(),
        tags: i
            .tags()
            .iter()
            .filter_map(|t| Some((t.key()?.to_string(), t.value()?.to_string())))
            .collect(),
    }
}

/// An SDK timestamp as RFC 3339.
pub(super) fn smithy_time(t: &aws_smithy_types::DateTime) -> String {
    t.fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

pub(super) fn to_volume(v: &aws_sdk_ec2::types::Volume) -> Volume {
    let att = v.attachments().first();
    Volume {
        id: s(v.volume_id()),
        name: v
            .tags()
            .iter()
            .find(|t| t.key() == Some("Name"))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_string(),
        az: s(v.availability_zone()),
        size_gb: v.size().unwrap_or(0) as i64,
        volume_type: v
            .volume_type()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        encrypted: v.encrypted().unwrap_or(false),
        state: v
            .state()
            .map(|t| t.as_str().to_string())
            .unwrap_or_default(),
        attached_to: att.and_then(|a| a.instance_id()).map(str::to_string),
        device: att.and_then(|a| a.device()).map(str::to_string),
        delete_on_termination: att.and_then(|a| a.delete_on_termination()).unwrap_or(false),
    }
}

pub(super) fn ip_permission(rule: &IngressRule) -> IpPermission {
    let mut p = IpPermission::builder()
        .ip_protocol(&rule.protocol)
        .from_port(rule.from_port as i32)
        .to_port(rule.to_port as i32);
    if let Some(cidr) = &rule.cidr {
        p = if cidr.contains(':') {
            p.ipv6_ranges(
                Ipv6Range::builder()
                    .cidr_ipv6(cidr)
                    .description(&rule.description)
                    .build(),
            )
        } else {
            p.ip_ranges(
                IpRange::builder()
                    .cidr_ip(cidr)
                    .description(&rule.description)
                    .build(),
            )
        };
    }
    if let Some(sg) = &rule.source_sg {
        p = p.user_id_group_pairs(
            UserIdGroupPair::builder()
                .group_id(sg)
                .description(&rule.description)
                .build(),
        );
    }
    if let Some(pl) = &rule.prefix_list {
        p = p.prefix_list_ids(
            PrefixListId::builder()
                .prefix_list_id(pl)
                .description(&rule.description)
                .build(),
        );
    }
    p.build()
}
