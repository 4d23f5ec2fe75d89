//! The quickstart recipe: what it creates, tags and records, and a re-run that creates nothing.

use crate::support::tag;

use super::*;

#[test]
fn quickstart_deploys_tagged_encrypted_resources_and_records_them() {
    let w = World::moto();
    let stack = support::stack_name("qs");
    let out = quickstart(&w, &stack);
    out.success()
        .stdout_has("==> Network")
        .stdout_has("==> Waiting")
        .stdout_has("AWS requests");

    let state = w.state(&stack);
    assert_state_lists_every_resource(&w, &stack, &state);
    let run_id = state["runs"][0]["id"].as_str().unwrap().to_string();

    let sdk = w.sdk();
    let instance = assert_instance_tagged_and_mounting_efs(&sdk, &stack, &state, &run_id);
    let efs_sg = assert_security_groups_exact(&sdk, &stack, &state);
    assert_efs_encrypted_and_tagged(&sdk, &stack, &state, &run_id, &instance, &efs_sg);
    let doc = assert_role_has_ssm_core_and_reads_its_parameters(&sdk, &stack);
    assert_role_denied_parameters_outside_its_stack(&doc, &stack);
    assert_role_writes_its_boot_channel_only(&doc, &stack);

    let again = quickstart(&w, &stack);
    assert_rerun_creates_nothing(&again, &w, &sdk, &stack, &state);
}

/// The id the ledger records for the resource `kind` `name`.
fn id_of(state: &serde_json::Value, kind: &str, name: &str) -> String {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == kind && r["name"] == name)
        .unwrap_or_else(|| panic!("{kind} {name}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The state file: every resource with its id, nothing pending.
fn assert_state_lists_every_resource(w: &World, stack: &str, state: &serde_json::Value) {
    assert_eq!(state["status"], "running");
    assert_eq!(state["region"], "us-east-1");
    assert_eq!(support::file_mode(&w.state_path(stack)), 0o600);
    let resources = state["resources"].as_array().unwrap();
    let kinds: Vec<&str> = resources
        .iter()
        .map(|r| r["kind"].as_str().unwrap())
        .collect();
    for kind in [
        "ec2:security-group",
        "iam:instance-profile",
        "efs:file-system",
        "efs:mount-target",
        "ec2:instance",
    ] {
        assert!(
            kinds.contains(&kind),
            "{kind} missing from the ledger: {kinds:?}"
        );
    }
    assert_eq!(
        kinds.iter().filter(|k| **k == "ec2:security-group").count(),
        2
    );
    for r in resources {
        assert_eq!(r["status"], "created", "{r}");
        assert!(r["id"].as_str().is_some_and(|id| !id.is_empty()), "{r}");
        assert!(!r["token"].as_str().unwrap().is_empty());
    }
}

/// The instance: spot, tagged, IMDSv2, profile, user data mounting the EFS; returns it.
fn assert_instance_tagged_and_mounting_efs(
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
    run_id: &str,
) -> aws_sdk_ec2::types::Instance {
    let instances = sdk.stack_instances(stack);
    assert_eq!(instances.len(), 1);
    let i = &instances[0];
    assert_eq!(
        i.instance_id().unwrap(),
        id_of(state, "ec2:instance", "app")
    );
    assert_eq!(tag(i.tags(), "geusemaker:run"), Some(run_id));
    assert_eq!(tag(i.tags(), "Name"), Some(format!("{stack}-app").as_str()));
    support::assert_spot_app_instance(i, stack);
    let ud = sdk.user_data(i.instance_id().unwrap());
    let fs_id = id_of(state, "efs:file-system", "data");
    assert!(ud.starts_with("#!/bin/bash"), "{ud}");
    assert!(
        ud.contains(&format!("{fs_id}:/ /mnt/efs efs _netdev,tls")),
        "{ud}"
    );
    i.clone()
}

/// Security groups: app port from the allowed CIDR only; NFS from the app group only; both in
/// the default VPC. Returns the EFS group.
fn assert_security_groups_exact(
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
) -> aws_sdk_ec2::types::SecurityGroup {
    let sgs = sdk.stack_security_groups(stack);
    assert_eq!(sgs.len(), 2);
    let app = sgs
        .iter()
        .find(|g| g.group_id() == Some(id_of(state, "ec2:security-group", "app").as_str()))
        .unwrap();
    let efs_sg = sgs
        .iter()
        .find(|g| g.group_id() == Some(id_of(state, "ec2:security-group", "efs").as_str()))
        .unwrap();
    assert_eq!(app.group_name(), Some(format!("{stack}-app").as_str()));
    assert_eq!(
        tag(app.tags(), "Name"),
        Some(format!("{stack}-app").as_str())
    );
    let perms = app.ip_permissions();
    assert_eq!(perms.len(), 1);
    assert_eq!(
        (perms[0].from_port(), perms[0].to_port()),
        (Some(5678), Some(5678))
    );
    let cidrs: Vec<_> = perms[0]
        .ip_ranges()
        .iter()
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(cidrs, ["203.0.113.7/32"]);
    let perms = efs_sg.ip_permissions();
    assert_eq!(perms.len(), 1);
    assert_eq!(perms[0].from_port(), Some(2049));
    assert!(perms[0].ip_ranges().is_empty());
    assert_eq!(perms[0].user_id_group_pairs()[0].group_id(), app.group_id());
    let default_vpc = sdk
        .block_on(
            sdk.ec2
                .describe_vpcs()
                .filters(support::filter("is-default", "true"))
                .send(),
        )
        .unwrap()
        .vpcs()[0]
        .vpc_id()
        .unwrap()
        .to_string();
    assert_eq!(app.vpc_id(), Some(default_vpc.as_str()));
    efs_sg.clone()
}

/// EFS: encrypted, tagged, one mount target guarded by the EFS group.
fn assert_efs_encrypted_and_tagged(
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
    run_id: &str,
    i: &aws_sdk_ec2::types::Instance,
    efs_sg: &aws_sdk_ec2::types::SecurityGroup,
) {
    let fs_id = id_of(state, "efs:file-system", "data");
    let fs = sdk
        .block_on(
            sdk.efs
                .describe_file_systems()
                .file_system_id(&fs_id)
                .send(),
        )
        .unwrap();
    let fs = &fs.file_systems()[0];
    assert_eq!(fs.encrypted(), Some(true));
    assert!(fs
        .tags()
        .iter()
        .any(|t| t.key() == "geusemaker:stack" && t.value() == stack));
    assert!(fs
        .tags()
        .iter()
        .any(|t| t.key() == "geusemaker:run" && t.value() == run_id));
    let mts = sdk
        .block_on(
            sdk.efs
                .describe_mount_targets()
                .file_system_id(&fs_id)
                .send(),
        )
        .unwrap();
    assert_eq!(mts.mount_targets().len(), 1);
    let mt_id = mts.mount_targets()[0].mount_target_id();
    assert_eq!(
        mt_id,
        id_of(
            state,
            "efs:mount-target",
            &format!("mount-{}", i.subnet_id().unwrap())
        )
    );
    let mt_sgs = sdk
        .block_on(
            sdk.efs
                .describe_mount_target_security_groups()
                .mount_target_id(mt_id)
                .send(),
        )
        .unwrap();
    assert_eq!(
        mt_sgs.security_groups(),
        [efs_sg.group_id().unwrap().to_string()]
    );
}

/// IAM: SSM core + read of this stack's parameters, no wildcard resource; returns the inline
/// policy document.
fn assert_role_has_ssm_core_and_reads_its_parameters(sdk: &support::Sdk, stack: &str) -> String {
    let role = format!("{stack}-app");
    let attached = sdk
        .block_on(
            sdk.iam
                .list_attached_role_policies()
                .role_name(&role)
                .send(),
        )
        .unwrap();
    assert!(attached
        .attached_policies()
        .iter()
        .any(|p| p.policy_arn() == Some("arn:aws:iam::aws:policy/AmazonSSMManagedInstanceCore")));
    let inline = sdk
        .block_on(
            sdk.iam
                .get_role_policy()
                .role_name(&role)
                .policy_name("geusemaker-stack-parameters")
                .send(),
        )
        .unwrap();
    let doc = support::url_decode(inline.policy_document());
    assert!(
        doc.contains(&format!("parameter/geusemaker/{stack}/*")),
        "{doc}"
    );
    assert!(!doc.contains("\"*\""), "no wildcard resource: {doc}");
    doc
}

/// The managed policy grants ssm:GetParameter(s) on every parameter: the inline policy must
/// take that away outside the stack's path (an explicit Deny on everything else).
fn assert_role_denied_parameters_outside_its_stack(doc: &str, stack: &str) {
    let policy: serde_json::Value = serde_json::from_str(doc).unwrap();
    let deny = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Effect"] == "Deny")
        .unwrap_or_else(|| panic!("no Deny statement: {doc}"));
    let denied: Vec<&str> = deny["Action"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    for action in [
        "ssm:GetParameter",
        "ssm:GetParameters",
        "ssm:GetParametersByPath",
    ] {
        assert!(denied.contains(&action), "{action} not denied: {doc}");
    }
    // moto's account, the stack's region: a stack of the same name elsewhere is not this one.
    let parameters = "arn:aws:ssm:us-east-1:123456789012:parameter";
    assert_eq!(
        deny["NotResource"],
        serde_json::json!([
            format!("{parameters}/geusemaker/{stack}"),
            format!("{parameters}/geusemaker/{stack}/*")
        ]),
        "the Deny covers everything but the stack's own path, in its region and account"
    );
}

/// The one write the role has: its stack's boot channel (issue 19).
fn assert_role_writes_its_boot_channel_only(doc: &str, stack: &str) {
    let policy: serde_json::Value = serde_json::from_str(doc).unwrap();
    let parameters = "arn:aws:ssm:us-east-1:123456789012:parameter";
    let writes: Vec<&serde_json::Value> = policy["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| {
            let actions: Vec<&str> = match &s["Action"] {
                serde_json::Value::String(a) => vec![a.as_str()],
                serde_json::Value::Array(a) => a.iter().filter_map(|x| x.as_str()).collect(),
                _ => vec![],
            };
            s["Effect"] == "Allow"
                && actions
                    .iter()
                    .any(|a| a.starts_with("ssm:") && !a.starts_with("ssm:Get"))
        })
        .collect();
    assert_eq!(writes.len(), 1, "{doc}");
    assert_eq!(writes[0]["Action"], "ssm:PutParameter");
    assert_eq!(
        writes[0]["Resource"],
        format!("{parameters}/geusemaker-boot/{stack}")
    );
}

/// Re-run: converges without creating anything new.
fn assert_rerun_creates_nothing(
    again: &Outcome,
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
) {
    let resources = state["resources"].as_array().unwrap();
    again.success().stdout_has("already running");
    assert_eq!(sdk.stack_instances(stack).len(), 1);
    assert_eq!(sdk.stack_security_groups(stack).len(), 2);
    let state2 = w.state(stack);
    assert_eq!(
        state2["resources"].as_array().unwrap().len(),
        resources.len(),
        "no new ledger entries"
    );
    assert_eq!(state2["runs"].as_array().unwrap().len(), 2);
    let fss = sdk
        .block_on(
            sdk.efs
                .describe_file_systems()
                .creation_token(format!("geusemaker-{stack}-data"))
                .send(),
        )
        .unwrap();
    assert_eq!(fss.file_systems().len(), 1);
}
