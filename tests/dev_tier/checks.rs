//! The checks of `secure_deploy`: what AWS, the state and the boot script hold after the deploy.

use crate::support::tag;

use super::*;

/// The ids the dev deploy recorded in its ledger, for the checks below.
pub(super) struct DevIds {
    pub(super) instance: String,
    file_system: String,
    volume: String,
    app_sg: String,
    efs_sg: String,
}

impl DevIds {
    pub(super) fn from_ledger(state: &serde_json::Value) -> DevIds {
        DevIds {
            instance: ledger_id(state, "ec2:instance", "app"),
            file_system: ledger_id(state, "efs:file-system", "data"),
            volume: ledger_id(state, "ec2:volume", "data"),
            app_sg: ledger_id(state, "ec2:security-group", "app"),
            efs_sg: ledger_id(state, "ec2:security-group", "efs"),
        }
    }
}

/// The deploy's report: ready, where to find n8n and its password, the cost, how to destroy,
/// every service healthy, and no open-internet warning for a restricted CIDR.
pub(super) fn assert_ready_with_every_service_healthy(out: &Outcome, stack: &str) {
    out.success()
        .stdout_has(&format!("Stack {stack} is ready"))
        .stdout_has("n8n: http://")
        .stdout_has(&format!("/geusemaker/{stack}/n8n/owner_password"))
        .stdout_has("aws ssm get-parameter")
        .stdout_has("/month")
        .stdout_has(&format!("geusemaker destroy {stack}"))
        .stdout_has("AWS requests");
    for svc in ["n8n", "ollama", "qdrant", "crawl4ai", "postgres"] {
        assert!(
            out.stdout
                .lines()
                .any(|l| l.contains(svc) && l.contains("healthy")),
            "{svc} not healthy:\n{}",
            out.stdout
        );
    }
    assert!(
        !out.stderr.contains("open to the whole internet"),
        "restricted CIDR: no warning"
    );
}

/// State: complete, running, healthy snapshot, no pending intents.
pub(super) fn assert_state_complete(state: &serde_json::Value, ids: &DevIds, cidr: &str) {
    let (instance_id, volume_id) = (&ids.instance, &ids.volume);
    assert_eq!(state["status"], "running");
    assert_eq!(state["outputs"]["instance_id"], instance_id.as_str());
    assert_eq!(state["outputs"]["data_volume_id"], volume_id.as_str());
    assert_eq!(state["outputs"]["market"], "spot");
    assert_eq!(state["last_healthy"]["instance_id"], instance_id.as_str());
    assert_eq!(
        state["last_healthy"]["services"].as_array().unwrap().len(),
        5
    );
    assert_eq!(state["params"]["allowed_cidr"], cidr);
    assert!(
        state["resources"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["status"] == "created"),
        "{}",
        state["resources"]
    );
}

/// Instance: spot, IMDSv2, the profile, tagged, in the app group only; returns its zone.
pub(super) fn assert_instance_hardened(sdk: &support::Sdk, stack: &str, ids: &DevIds) -> String {
    let (instance_id, app_sg) = (&ids.instance, &ids.app_sg);
    let inst = sdk.stack_instances(stack);
    assert_eq!(inst.len(), 1);
    let i = &inst[0];
    assert_eq!(i.instance_id(), Some(instance_id.as_str()));
    support::assert_spot_app_instance(i, stack);
    assert_eq!(
        i.security_groups()
            .iter()
            .filter_map(|g| g.group_id())
            .collect::<Vec<_>>(),
        [app_sg.as_str()]
    );
    i.placement()
        .unwrap()
        .availability_zone()
        .unwrap()
        .to_string()
}

/// Security groups: exactly the intended rules.
pub(super) fn assert_security_groups_exact(
    sdk: &support::Sdk,
    stack: &str,
    ids: &DevIds,
    cidr: &str,
) {
    let (app_sg, efs_sg) = (&ids.app_sg, &ids.efs_sg);
    let sgs = sdk.stack_security_groups(stack);
    assert_eq!(sgs.len(), 2);
    let app = sgs
        .iter()
        .find(|g| g.group_id() == Some(app_sg.as_str()))
        .unwrap();
    let mut rules: Vec<(i32, i32, String)> = Vec::new();
    for p in app.ip_permissions() {
        for r in p.ip_ranges() {
            rules.push((
                p.from_port().unwrap(),
                p.to_port().unwrap(),
                r.cidr_ip().unwrap().to_string(),
            ));
        }
        for g in p.user_id_group_pairs() {
            rules.push((
                p.from_port().unwrap(),
                p.to_port().unwrap(),
                g.group_id().unwrap().to_string(),
            ));
        }
    }
    rules.sort();
    assert_eq!(
        rules,
        [(5678, 5678, cidr.to_string())],
        "no SSH, n8n from the allowed range; internal services have no rule (loopback only)"
    );
    let efs_group = sgs
        .iter()
        .find(|g| g.group_id() == Some(efs_sg.as_str()))
        .unwrap();
    let p = efs_group.ip_permissions();
    assert_eq!(p.len(), 1);
    assert_eq!((p[0].from_port(), p[0].to_port()), (Some(2049), Some(2049)));
    assert!(p[0].ip_ranges().is_empty());
    assert_eq!(
        p[0].user_id_group_pairs()[0].group_id(),
        Some(app_sg.as_str())
    );
}

/// EFS encrypted + tagged, mount target in the instance's zone behind the EFS group.
pub(super) fn assert_efs_encrypted_and_tagged(
    sdk: &support::Sdk,
    stack: &str,
    ids: &DevIds,
    az: &str,
) {
    let (fs_id, efs_sg) = (&ids.file_system, &ids.efs_sg);
    let fs = sdk
        .block_on(sdk.efs.describe_file_systems().file_system_id(fs_id).send())
        .unwrap();
    assert_eq!(fs.file_systems()[0].encrypted(), Some(true));
    assert!(fs.file_systems()[0]
        .tags()
        .iter()
        .any(|t| t.key() == "geusemaker:stack" && t.value() == stack));
    let mts = sdk
        .block_on(
            sdk.efs
                .describe_mount_targets()
                .file_system_id(fs_id)
                .send(),
        )
        .unwrap();
    assert_eq!(mts.mount_targets().len(), 1);
    assert_eq!(mts.mount_targets()[0].availability_zone_name(), Some(az));
    let mt_sgs = sdk
        .block_on(
            sdk.efs
                .describe_mount_target_security_groups()
                .mount_target_id(mts.mount_targets()[0].mount_target_id())
                .send(),
        )
        .unwrap();
    assert_eq!(mt_sgs.security_groups(), std::slice::from_ref(efs_sg));
}

/// The data volume: outlives the instance, same zone, encrypted gp3, tagged.
pub(super) fn assert_data_volume_outlives_the_instance(
    sdk: &support::Sdk,
    stack: &str,
    ids: &DevIds,
    az: &str,
) {
    let (volume_id, instance_id) = (&ids.volume, &ids.instance);
    let v = sdk
        .block_on(sdk.ec2.describe_volumes().volume_ids(volume_id).send())
        .unwrap();
    let v = &v.volumes()[0];
    assert_eq!(v.availability_zone(), Some(az));
    assert_eq!(v.encrypted(), Some(true));
    assert_eq!(v.volume_type().map(|t| t.as_str()), Some("gp3"));
    assert_eq!(v.size(), Some(50));
    assert_eq!(
        tag(v.tags(), "Name"),
        Some(format!("{stack}-data").as_str())
    );
    let att = &v.attachments()[0];
    assert_eq!(att.instance_id(), Some(instance_id.as_str()));
    assert_eq!(att.device(), Some("/dev/sdf"));
    assert_ne!(
        att.delete_on_termination(),
        Some(true),
        "attached separately: not deleted with the instance"
    );
}

/// Secrets: SecureString, tagged, never in the user data, the state, or the output.
pub(super) fn assert_secrets_never_leak(
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    out: &Outcome,
    script: &str,
) {
    let state_text = std::fs::read_to_string(w.state_path(stack)).unwrap();
    for name in [
        "n8n/encryption_key",
        "n8n/owner_password",
        "postgres/password",
    ] {
        let full = format!("/geusemaker/{stack}/{name}");
        let p = sdk
            .block_on(
                sdk.ssm
                    .get_parameter()
                    .name(&full)
                    .with_decryption(true)
                    .send(),
            )
            .unwrap();
        let p = p.parameter().unwrap();
        assert_eq!(p.r#type().map(|t| t.as_str()), Some("SecureString"));
        let value = p.value().unwrap();
        assert!(value.len() >= 22, "≥ 128 bits");
        assert!(
            !state_text.contains(value),
            "{name} value in the state file"
        );
        assert!(!script.contains(value), "{name} value in the user data");
        assert!(
            !out.stdout.contains(value) && !out.stderr.contains(value),
            "{name} value in the output"
        );
        assert!(script.contains(&full), "the boot script fetches {full}");
    }
}

/// The boot script: shellcheck-clean, within EC2's user-data limit, mounting the EFS.
pub(super) fn assert_boot_script_clean_and_mounting_efs(
    w: &World,
    sdk: &support::Sdk,
    ids: &DevIds,
    script: &str,
) {
    let (instance_id, fs_id) = (&ids.instance, &ids.file_system);
    support::shellcheck(w.home.path(), "user-data", script);
    let sent = sdk.user_data_payload(instance_id);
    assert!(sent.len() <= 16 * 1024, "user data within EC2's 16 KiB");
    if script.len() > 16 * 1024 {
        assert_eq!(&sent[..2], &[0x1f, 0x8b], "a larger script goes gzipped");
    }
    assert!(script.contains(&format!("{fs_id}:/ /mnt/efs efs _netdev,tls")));
}

/// The compose file: the six services, pinned, restarted, health-checked, only n8n published
/// beyond the loopback.
pub(super) fn assert_services_pinned_and_on_loopback(services: &serde_yaml::Mapping) {
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(
        names,
        [
            "postgres",
            "n8n",
            "n8n-runner",
            "ollama",
            "qdrant",
            "crawl4ai"
        ]
    );
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        let image = svc["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            !tag.is_empty() && tag != "latest",
            "{name}: {image} is not pinned"
        );
        assert_eq!(svc["restart"].as_str(), Some("unless-stopped"), "{name}");
        assert_eq!(
            svc["healthcheck"]["test"].is_sequence(),
            name != "n8n-runner",
            "{name}: a healthcheck exactly where the service declares one"
        );
        // Only n8n is published beyond the instance's loopback.
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let p = p.as_str().unwrap();
            assert_eq!(!p.starts_with("127.0.0.1:"), name == "n8n", "{name}: {p}");
        }
    }
}

/// One env file per service with secrets, holding only its own; the owner's password in no
/// container's.
pub(super) fn assert_secrets_in_per_service_env_files(
    services: &serde_yaml::Mapping,
    script: &str,
) {
    for (name, svc) in services {
        let name = name.as_str().unwrap();
        if let Some(files) = svc["env_file"].as_sequence() {
            assert_eq!(files.len(), 1, "{name}");
            assert_eq!(
                files[0].as_str().unwrap(),
                format!("/etc/geusemaker/env/{name}.env")
            );
        }
    }
    assert!(script.contains("} > '/etc/geusemaker/env/postgres.env.tmp'"));
    assert!(
        !script.contains("/etc/geusemaker/env/ollama.env"),
        "Ollama has no secrets"
    );
    let owner = script.find("echo \"N8N_OWNER_PASSWORD=").unwrap();
    let written_to = &script[owner..][script[owner..].find("} > '").unwrap()..];
    assert!(
        written_to.starts_with("} > '/etc/geusemaker/boot.env.tmp'"),
        "the owner's password goes to the boot env file only"
    );
    assert_eq!(script.matches("echo \"N8N_OWNER_PASSWORD=").count(), 1);
}

/// Qdrant and PostgreSQL on the EBS data volume, n8n and Ollama on EFS.
pub(super) fn assert_data_on_the_right_storage(services: &serde_yaml::Mapping) {
    let volumes = |svc: &str| -> Vec<String> {
        services[svc]["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    assert!(
        volumes("qdrant")
            .iter()
            .any(|v| v == "/mnt/data/qdrant:/qdrant/storage"),
        "Qdrant on the EBS data volume, not NFS"
    );
    assert!(volumes("postgres")[0].starts_with("/mnt/data/"));
    assert!(volumes("n8n")[0].starts_with("/mnt/efs/"));
    assert!(volumes("ollama")[0].starts_with("/mnt/efs/"));
}

/// Every resource carries the stack tag.
pub(super) fn assert_every_resource_tagged(sdk: &support::Sdk, stack: &str, ids: &DevIds) {
    let vols = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .filters(support::filter("attachment.instance-id", &ids.instance))
                .send(),
        )
        .unwrap();
    for vol in vols.volumes() {
        assert_eq!(
            tag(vol.tags(), "geusemaker:stack"),
            Some(stack),
            "{:?}",
            vol.volume_id()
        );
    }
    let role = sdk
        .block_on(sdk.iam.get_role().role_name(format!("{stack}-app")).send())
        .unwrap();
    assert!(role
        .role()
        .unwrap()
        .tags()
        .iter()
        .any(|t| t.key() == "geusemaker:stack" && t.value() == stack));
}

/// Re-run: nothing new.
pub(super) fn assert_rerun_created_nothing(
    again: &Outcome,
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
) {
    again.success().stdout_has("nothing changed");
    assert_eq!(sdk.stack_instances(stack).len(), 1);
    assert_eq!(sdk.stack_security_groups(stack).len(), 2);
    let state2 = w.state(stack);
    assert_eq!(
        state2["resources"].as_array().unwrap().len(),
        state["resources"].as_array().unwrap().len()
    );
    let data_vols = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .filters(support::filter("tag:Name", &format!("{stack}-data")))
                .send(),
        )
        .unwrap();
    assert_eq!(data_vols.volumes().len(), 1);
}

/// Lose the instance: terminate it, as a spot interruption would.
pub(super) fn terminate_instance(sdk: &support::Sdk, instance_id: &str) {
    sdk.block_on(
        sdk.ec2
            .terminate_instances()
            .instance_ids(instance_id)
            .send(),
    )
    .unwrap();
    let _ = sdk.block_on(
        sdk.ec2
            .describe_instances()
            .instance_ids(instance_id)
            .send(),
    );
}

/// Losing the instance keeps the data volume (and EFS).
pub(super) fn assert_data_survives_the_instance(sdk: &support::Sdk, ids: &DevIds) {
    let (volume_id, fs_id) = (&ids.volume, &ids.file_system);
    let v = sdk
        .block_on(sdk.ec2.describe_volumes().volume_ids(volume_id).send())
        .expect("the data volume survives termination");
    assert_eq!(
        v.volumes()[0].state().map(|s| s.as_str()),
        Some("available")
    );
    assert!(sdk
        .block_on(sdk.efs.describe_file_systems().file_system_id(fs_id).send())
        .is_ok());
}

/// n8n's encryption key, as SSM holds it.
pub(super) fn encryption_key(sdk: &support::Sdk, stack: &str) -> String {
    let key_name = format!("/geusemaker/{stack}/n8n/encryption_key");
    let p = sdk
        .block_on(
            sdk.ssm
                .get_parameter()
                .name(&key_name)
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    p.parameter().unwrap().value().unwrap().to_string()
}

/// The next run converges: a new instance in the data's zone, the same volume re-attached.
pub(super) fn assert_next_run_reattaches_the_data(
    healed: &Outcome,
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    ids: &DevIds,
    az: &str,
    key_before: &str,
) {
    let (instance_id, volume_id) = (&ids.instance, &ids.volume);
    healed
        .success()
        .stdout_has("1 resource(s) created by this run");
    let inst = sdk.stack_instances(stack);
    assert_eq!(inst.len(), 1);
    assert_ne!(
        inst[0].instance_id(),
        Some(instance_id.as_str()),
        "a replacement instance"
    );
    assert_eq!(
        inst[0].placement().unwrap().availability_zone(),
        Some(az),
        "in the data volume's zone"
    );
    let v = sdk
        .block_on(sdk.ec2.describe_volumes().volume_ids(volume_id).send())
        .unwrap();
    assert_eq!(
        v.volumes()[0].attachments()[0].instance_id(),
        inst[0].instance_id(),
        "the same data volume, re-attached"
    );
    assert_eq!(
        encryption_key(sdk, stack),
        key_before,
        "n8n's encryption key is kept"
    );
    assert_eq!(
        w.state(stack)["outputs"]["instance_id"],
        inst[0].instance_id().unwrap()
    );
}
