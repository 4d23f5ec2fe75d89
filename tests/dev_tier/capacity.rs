//! Where the instance goes: on demand when there is no spot capacity, the next zone (with its
//! storage) when a zone has none, and no expensive type without saying so.

use crate::support::proxy::{FaultProxy, Rule};

use super::*;

#[test]
fn no_spot_capacity_anywhere_falls_back_to_on_demand() {
    let w = World::moto();
    let stack = support::stack_name("dev-od");
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::ec2_error(
            &["Action=RunInstances", "InstanceMarketOptions.MarketType=spot", &format!("{stack}-app")],
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient t3.medium capacity in the Availability Zone you requested.",
        )],
    );
    let out = deploy(&w, &stack, Some(&proxy.endpoint()), &[]);
    out.success()
        .stdout_has("allowed_cidr: 203.0.113.9/32, this machine's public address")
        .stderr_has("no spot capacity for t3.medium in us-east-1a (InsufficientInstanceCapacity)")
        .stderr_has("launched on-demand");
    assert_eq!(
        proxy.hit_count(),
        6,
        "spot tried once in each of the six zones"
    );
    let state = w.state(&stack);
    assert_eq!(state["outputs"]["market"], "on-demand");
    assert!(state["outputs"]["market_reason"]
        .as_str()
        .unwrap()
        .contains("InsufficientInstanceCapacity"));
    let inst = w.sdk().stack_instances(&stack);
    assert_eq!(inst.len(), 1);
    assert_eq!(inst[0].instance_lifecycle(), None, "on-demand");
    // The refused attempts are in the ledger as failed, not as pending intents.
    let launches: Vec<&serde_json::Value> = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "ec2:instance")
        .collect();
    assert_eq!(
        launches.iter().filter(|r| r["status"] == "failed").count(),
        6
    );
    assert_eq!(
        launches.iter().filter(|r| r["status"] == "created").count(),
        1
    );
}

#[test]
fn a_zone_without_capacity_moves_the_instance_and_its_storage_to_the_next() {
    let w = World::moto();
    let stack = support::stack_name("dev-az");
    let sdk = w.sdk();
    let subnets = sdk
        .block_on(
            sdk.ec2
                .describe_subnets()
                .filters(support::filter("default-for-az", "true"))
                .send(),
        )
        .unwrap();
    let mut subnets: Vec<_> = subnets
        .subnets()
        .iter()
        .map(|s| {
            (
                s.availability_zone().unwrap().to_string(),
                s.subnet_id().unwrap().to_string(),
            )
        })
        .collect();
    subnets.sort();
    let (first_az, first_subnet) = subnets[0].clone();
    let (second_az, _) = subnets[1].clone();
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::ec2_error(
            &[
                "Action=RunInstances",
                &format!("SubnetId={first_subnet}"),
                &format!("{stack}-app"),
            ],
            "InsufficientInstanceCapacity",
            "no capacity",
        )],
    );
    let out = deploy(
        &w,
        &stack,
        Some(&proxy.endpoint()),
        &["ssh_cidr=192.0.2.0/24", "allowed_cidr=192.0.2.0/24"],
    );
    out.success()
        .stderr_has(&format!("no spot capacity for t3.medium in {first_az}"));
    let inst = sdk.stack_instances(&stack);
    assert_eq!(
        inst[0].placement().unwrap().availability_zone(),
        Some(second_az.as_str())
    );
    assert_eq!(
        inst[0].instance_lifecycle().map(|l| l.as_str()),
        Some("spot"),
        "still spot, one zone over"
    );
    let state = w.state(&stack);
    let vol = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .volume_ids(ledger_id(&state, "ec2:volume", "data"))
                .send(),
        )
        .unwrap();
    assert_eq!(
        vol.volumes()[0].availability_zone(),
        Some(second_az.as_str()),
        "the data volume follows"
    );
    let fs_id = ledger_id(&state, "efs:file-system", "data");
    let mts = sdk
        .block_on(
            sdk.efs
                .describe_mount_targets()
                .file_system_id(&fs_id)
                .send(),
        )
        .unwrap();
    assert_eq!(
        mts.mount_targets()[0].availability_zone_name(),
        Some(second_az.as_str()),
        "the mount target follows"
    );
    // SSH was asked for explicitly: exactly that range on 22.
    let app = sdk
        .block_on(
            sdk.ec2
                .describe_security_groups()
                .group_ids(ledger_id(&state, "ec2:security-group", "app"))
                .send(),
        )
        .unwrap();
    let ssh: Vec<_> = app.security_groups()[0]
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(22))
        .flat_map(|p| p.ip_ranges().iter().filter_map(|r| r.cidr_ip()))
        .collect();
    assert_eq!(ssh, ["192.0.2.0/24"]);
}

#[test]
fn expensive_instance_types_are_refused_before_anything_is_created() {
    let w = World::moto();
    let stack = support::stack_name("dev-p4");
    let out = deploy(&w, &stack, None, &["instance_type=p4d.24xlarge"]);
    out.failure(1)
        .stderr_has("p4d.24xlarge costs dollars per hour")
        .stderr_has("allow_expensive=true")
        .stderr_has("stdlib/instance.rhai:");
    assert!(
        !w.state_path(&stack).exists(),
        "nothing created, nothing recorded"
    );
    assert!(w.sdk().stack_security_groups(&stack).is_empty());
}
