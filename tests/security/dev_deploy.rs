//! The dev tier secure by default: the deployer only, a re-run taking back a wider range, IMDSv2,
//! the owner's login, the boot script's guarantees, health checks, backups and snapshots; an
//! older file system's backups turned on; an owner who cannot log in.

use super::*;

#[test]
fn a_default_dev_deploy_lets_in_the_deployer_only_and_a_rerun_takes_back_a_wider_range() {
    let w = World::moto();
    let stack = support::stack_name("sec");
    let (n8n, logins) = n8n_stub(200);
    let ends = stand_ins_with_n8n(n8n);

    assert_open_to_everyone_is_honoured_with_a_warning(&w, &stack, &ends);
    assert_rerun_with_the_default_admits_the_deployer_only(&w, &stack, &ends);
    let state = w.state(&stack);
    assert_eq!(state["params"]["allowed_cidr"], "", "the default was used");

    let sdk = w.sdk();
    let inst = sdk.stack_instances(&stack);
    assert_imdsv2_one_hop(&inst[0]);
    assert_deploy_logged_in_as_the_owner(&w, &sdk, &stack, &state, &logins);
    assert_health_checks_probe_the_services(&state);

    let script = sdk.user_data(inst[0].instance_id().unwrap());
    support::shellcheck(w.home.path(), "secure-user-data", &script);
    assert_n8n_starts_on_the_loopback(&w, &script);
    assert_n8n_published_only_after_its_owner(&w, &script);
    assert_boot_waits_checks_retries_and_names_failures(&script);
    assert_a_stopped_postgres_is_unhealthy(&w, &stack, &ends);
    assert_efs_backed_up_and_the_volume_snapshotted_daily(&w, &sdk, &stack, &state, &script);
    assert_the_role_snapshots_its_own_volume_only(&sdk, &stack);
    assert_snapshots_kept_and_deleted_with_the_data(&w, &sdk, &stack, &state, &ends);
    assert!(w.sdk().leftovers(&stack).is_empty());
}

/// Explicitly open to everyone: honoured, with a warning.
fn assert_open_to_everyone_is_honoured_with_a_warning(w: &World, stack: &str, ends: &str) {
    run(
        w,
        &[
            "run",
            "dev",
            "--name",
            stack,
            "--set",
            "health_timeout=30",
            "--set",
            "allowed_cidr=0.0.0.0/0",
        ],
        ends,
    )
    .success()
    .stderr_has("open to the whole internet");
    assert_eq!(
        open_ranges(w, stack),
        [format!("{stack}-app 5678:5678 from 0.0.0.0/0")]
    );
}

/// The default: the deployer's own address, and the wider rule revoked on the re-run.
fn assert_rerun_with_the_default_admits_the_deployer_only(w: &World, stack: &str, ends: &str) {
    let out = run(
        w,
        &["run", "dev", "--name", stack, "--set", "health_timeout=30"],
        ends,
    );
    out.success()
        .stdout_has(&format!(
            "allowed_cidr: {DEPLOYER_IP}/32, this machine's public address"
        ))
        .stdout_has(&format!("~ security group {stack}-app: -tcp/5678 from 0.0.0.0/0, +tcp/5678 from {DEPLOYER_IP}/32"));
    assert_eq!(
        open_ranges(w, stack),
        [format!("{stack}-app 5678:5678 from {DEPLOYER_IP}/32")],
        "nothing else is open to any address"
    );
}

/// The instance: IMDSv2 only, one hop (a container cannot reach the role's credentials).
fn assert_imdsv2_one_hop(instance: &aws_sdk_ec2::types::Instance) {
    let meta = instance.metadata_options().unwrap();
    assert_eq!(meta.http_tokens().map(|t| t.as_str()), Some("required"));
    assert_eq!(meta.http_put_response_hop_limit(), Some(1));
}

/// The deploy logged in as n8n's owner, with the password kept in SSM.
fn assert_deploy_logged_in_as_the_owner(
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
    logins: &std::sync::Mutex<Vec<String>>,
) {
    let password = sdk.secret_value(&format!("/geusemaker/{stack}/n8n/owner_password"));
    let logins = logins.lock().unwrap().clone();
    assert!(!logins.is_empty(), "the deploy proved the owner can log in");
    let login: serde_json::Value = serde_json::from_str(&logins[0]).unwrap();
    assert_eq!(login["emailOrLdapLoginId"], "admin@example.com");
    assert_eq!(login["password"], password.as_str());
    let state_text = std::fs::read_to_string(w.state_path(stack)).unwrap();
    assert!(!state_text.contains(&password), "the password stays in SSM");
    let checks = &state["values"]["health_checks"];
    assert!(
        checks
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["name"] != "n8n-login"),
        "status and monitor do not log in (n8n rate-limits logins): {checks}"
    );
}

/// The recorded health checks: Ollama by its models' exact names, n8n's readiness, and
/// PostgreSQL by its container's health.
fn assert_health_checks_probe_the_services(state: &serde_json::Value) {
    let checks = &state["values"]["health_checks"];
    let check = |name: &str| {
        checks
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {checks}"))
            .clone()
    };
    let ollama = check("ollama");
    assert!(ollama["url"].as_str().unwrap().ends_with("/api/tags"));
    assert_eq!(
        ollama["body"],
        serde_json::json!([r#""name":"llama3.2:3b""#]),
        "the requested models, by exact name"
    );
    assert!(check("n8n")["url"]
        .as_str()
        .unwrap()
        .ends_with(":5678/healthz/readiness"));
    assert_eq!(check("postgres")["container_health"], true);
}

/// The boot script: n8n starts from the held compose file, on the loopback only, and its owner
/// script is installed after that stack starts.
fn assert_n8n_starts_on_the_loopback(w: &World, script: &str) {
    let setup = heredoc(script, "/opt/geusemaker/compose.setup.yaml");
    let full = heredoc(script, "/opt/geusemaker/compose.yaml");
    support::validate_compose_schema(w.home.path(), "setup", setup);
    let held: serde_yaml::Value = serde_yaml::from_str(setup).unwrap();
    let published: serde_yaml::Value = serde_yaml::from_str(full).unwrap();
    assert_eq!(
        held["services"]["n8n"]["ports"][0].as_str(),
        Some("127.0.0.1:5678:5678")
    );
    assert_eq!(
        published["services"]["n8n"]["ports"][0].as_str(),
        Some("5678:5678")
    );
    let up_held = script
        .find("-f '/opt/geusemaker/compose.setup.yaml' up -d")
        .expect("the stack starts from the held file");
    let owner_unit = script
        .find("/usr/local/sbin/geusemaker-n8n-owner")
        .expect("the owner script is installed");
    assert!(
        up_held < owner_unit,
        "installed after the held stack starts"
    );
}

/// The boot waits for n8n's owner (a step with its time) and fails, named, without one; n8n is
/// published only once the owner exists, and no password is left behind.
fn assert_n8n_published_only_after_its_owner(w: &World, script: &str) {
    assert!(script.contains(
        "if ! systemctl start geusemaker-n8n-owner.service; then\n  tail -n 20 /var/log/geusemaker-n8n-owner.log >&2 || true"
    ));
    assert!(!script.contains("--no-block"));
    let unit = heredoc(script, "/etc/systemd/system/geusemaker-n8n-owner.service");
    assert!(
        unit.contains("ConditionPathExists=!/var/lib/geusemaker/n8n-owner.done")
            && unit.contains("WantedBy=multi-user.target"),
        "runs at every boot until it has succeeded once:\n{unit}"
    );
    let owner = heredoc(script, "/usr/local/sbin/geusemaker-n8n-owner");
    support::shellcheck(w.home.path(), "n8n-owner", owner);
    let setup_call = owner.find("/rest/owner/setup").unwrap();
    let login_call = owner.find("/rest/login >/dev/null").unwrap();
    let publish = owner
        .find("-f '/opt/geusemaker/compose.yaml' up -d\necho \"n8n published\"")
        .expect("published after the owner");
    let done = owner
        .find("touch '/var/lib/geusemaker/n8n-owner.done'")
        .unwrap();
    assert!(
        setup_call < login_call && login_call < publish && publish < done,
        "the owner first, then published, then marked done"
    );
    assert!(
        owner.contains("n8n stays on 127.0.0.1\" >&2\n  exit 1\nfi\nrm -f"),
        "no owner: n8n stays unpublished (and the unit tries again at the next boot)"
    );
    assert!(
        script.contains("rm -f '/etc/geusemaker/boot.env'"),
        "no password left behind"
    );
}

/// n8n's public URL from the instance metadata, Docker after the mounts, a checked Compose
/// plugin, retried network steps, and a failure named by its step.
fn assert_boot_waits_checks_retries_and_names_failures(script: &str) {
    // n8n learns its public URL from the instance metadata (no load balancer in front).
    assert!(script.contains("echo \"WEBHOOK_URL=http://$public_ip:5678/\""));
    assert!(script.contains(">> '/etc/geusemaker/env/n8n.env'"));
    // Docker waits for EFS and the data volume at every boot.
    assert!(script.contains(
        "RequiresMountsFor=%s\\n' '/mnt/efs /mnt/data' > /etc/systemd/system/docker.service.d/geusemaker-mounts.conf"
    ));
    // The Compose plugin is checked before it is installed; network steps are retried.
    assert!(script.contains("sha256sum --check --strict"));
    assert!(script.contains("retry dnf install"));
    assert!(script.contains("retry docker compose"));
    // A failure names its step in the boot log and on the boot channel.
    assert!(script.contains("echo \"geusemaker boot FAILED in step: ${boot_step} (line $1)\""));
    assert!(script.contains("trap 'boot_failed \"${LINENO}\"' ERR"));
}

/// A stopped PostgreSQL: its port still accepts, Docker says unhealthy — and so do we.
fn assert_a_stopped_postgres_is_unhealthy(w: &World, stack: &str, ends: &str) {
    let stopped = support::http_stub(200, support::CONTAINER_UNHEALTHY_JSON);
    let ends_stopped = ends.replace(
        &ends[ends.find("postgres=").unwrap()..],
        &format!("postgres=127.0.0.1:{stopped}"),
    );
    let out = run(w, &["status", stack, "--json"], &ends_stopped);
    let s: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let pg = s["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "postgres")
        .unwrap_or_else(|| panic!("postgres in status: {s}"));
    assert_ne!(pg["status"], "healthy", "{pg}");
    assert!(
        pg["error"]
            .as_str()
            .unwrap_or_default()
            .contains(r#""Status\":\"healthy"#),
        "{pg}"
    );
}

/// Backups outside the failure domain: EFS through AWS Backup, the data volume in daily
/// snapshots the instance takes.
fn assert_efs_backed_up_and_the_volume_snapshotted_daily(
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
    script: &str,
) {
    let fs_id = state["outputs"]["file_system_id"].as_str().unwrap();
    let policy = sdk
        .block_on(
            sdk.efs
                .describe_backup_policy()
                .file_system_id(fs_id)
                .send(),
        )
        .unwrap();
    assert_eq!(
        policy.backup_policy().unwrap().status().as_str(),
        "ENABLED",
        "EFS automatic backups"
    );
    assert!(script.contains("systemctl enable --now geusemaker-snapshot.timer"));
    let snapshot_script = heredoc(script, "/usr/local/sbin/geusemaker-snapshot");
    support::shellcheck(w.home.path(), "snapshot", snapshot_script);
    assert!(snapshot_script.contains(&format!("'Name=tag:Name,Values={stack}-data'")));
    assert!(snapshot_script.contains("--query \"Snapshots[?StartTime<'$cutoff'].SnapshotId\""));
}

/// The instance's role may snapshot the stack's data volume only, and prune the stack's
/// snapshots only.
fn assert_the_role_snapshots_its_own_volume_only(sdk: &support::Sdk, stack: &str) {
    let role_policy = sdk
        .block_on(
            sdk.iam
                .get_role_policy()
                .role_name(format!("{stack}-app"))
                .policy_name("geusemaker-stack-parameters")
                .send(),
        )
        .unwrap();
    let doc: serde_json::Value =
        serde_json::from_str(&support::url_decode(role_policy.policy_document())).unwrap();
    let statement = |sid: &str| {
        doc["Statement"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["Sid"] == sid)
            .unwrap_or_else(|| panic!("no {sid}: {doc}"))
            .clone()
    };
    let own_volume = statement("SnapshotOwnDataVolume");
    assert_eq!(own_volume["Action"], "ec2:CreateSnapshot");
    assert_eq!(
        own_volume["Condition"]["StringEquals"]["aws:ResourceTag/Name"],
        format!("{stack}-data")
    );
    assert_eq!(
        own_volume["Condition"]["StringEquals"]["aws:ResourceTag/geusemaker:stack"],
        stack
    );
    let prune = statement("PruneStackSnapshots");
    assert_eq!(
        prune["Condition"]["StringEquals"]["aws:ResourceTag/geusemaker:stack"], stack,
        "deletes the stack's snapshots only"
    );
}

/// A snapshot as the instance's timer takes it: kept with the data by a plain destroy, deleted
/// with it by `delete_data=true`.
fn assert_snapshots_kept_and_deleted_with_the_data(
    w: &World,
    sdk: &support::Sdk,
    stack: &str,
    state: &serde_json::Value,
    ends: &str,
) {
    let volume = state["outputs"]["data_volume_id"].as_str().unwrap();
    let snap = sdk
        .block_on(
            sdk.ec2
                .create_snapshot()
                .volume_id(volume)
                .tag_specifications(
                    aws_sdk_ec2::types::TagSpecification::builder()
                        .resource_type(aws_sdk_ec2::types::ResourceType::Snapshot)
                        .tags(support::ec2_tag("geusemaker:stack", stack))
                        .tags(support::ec2_tag("geusemaker:snapshot", "daily"))
                        .build(),
                )
                .send(),
        )
        .unwrap()
        .snapshot_id()
        .unwrap()
        .to_string();
    let snapshot_exists = |id: &str| {
        sdk.block_on(sdk.ec2.describe_snapshots().owner_ids("self").send())
            .unwrap()
            .snapshots()
            .iter()
            .any(|s| s.snapshot_id() == Some(id))
    };
    run(w, &["destroy", stack, "--yes"], ends)
        .success()
        .stdout_has(&format!("ec2:snapshot daily ({snap})"));
    assert!(snapshot_exists(&snap), "kept with the data");
    run(
        w,
        &["destroy", stack, "--yes", "--set", "delete_data=true"],
        ends,
    )
    .success();
    assert!(!snapshot_exists(&snap), "deleted with the data");
}

#[test]
fn a_rerun_turns_on_automatic_backups_of_an_older_file_system() {
    use support::proxy::{FaultProxy, Rule};
    let w = World::moto();
    let stack = support::stack_name("efsbk");
    let (n8n, _) = n8n_stub(200);
    let ends = stand_ins_with_n8n(n8n);
    let args = ["run", "dev", "--name", &stack, "--set", "health_timeout=30"];
    run(&w, &args, &ends).success();
    // A file system from before backups were on: AWS says DISABLED. moto does not implement
    // PutBackupPolicy; the proxy answers both calls as AWS does.
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![
            Rule::rest_json(
                "GET /2015-02-01/file-systems/",
                200,
                r#"{"BackupPolicy":{"Status":"DISABLED"}}"#,
            ),
            Rule::rest_json(
                "PUT /2015-02-01/file-systems/",
                200,
                r#"{"BackupPolicy":{"Status":"ENABLING"}}"#,
            ),
        ],
    );
    let out = Outcome::from(
        w.cmd()
            .args(args)
            .env("GEUSEMAKER_HEALTH_ENDPOINTS", &ends)
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .output()
            .unwrap(),
    );
    out.success()
        .stdout_has("~ file system data: automatic backups turned on");
    let hits = proxy.hits.lock().unwrap().clone();
    assert!(
        hits.iter()
            .any(|b| b.contains(r#""BackupPolicy""#) && b.contains(r#""Status":"ENABLED""#)),
        "PutBackupPolicy ENABLED was sent: {hits:?}"
    );

    // The file system's backups are its data: kept by a plain destroy, deleted with
    // delete_data. moto has no recovery points; the proxy answers as AWS Backup does for a
    // file system with one automatic backup.
    let point =
        "arn:aws:backup:us-east-1:123456789012:recovery-point:0e9a1c5b-1f5e-4f43-9b8e-2f6c4d3e7a10";
    let backups = FaultProxy::start(
        &support::moto().endpoint,
        vec![
            Rule::rest_json(
                "GET /resources/",
                200,
                &format!(
                    r#"{{"RecoveryPoints":[{{"RecoveryPointArn":"{point}","BackupVaultName":"aws/efs/automatic-backup-vault","Status":"COMPLETED","BackupSizeBytes":1048576}}]}}"#
                ),
            ),
            Rule::rest_json("DELETE /backup-vaults/", 200, ""),
        ],
    );
    let destroy = |extra: &[&str]| {
        let mut args = vec!["destroy", &stack, "--yes"];
        args.extend_from_slice(extra);
        Outcome::from(
            w.cmd()
                .args(&args)
                .env("GEUSEMAKER_HEALTH_ENDPOINTS", &ends)
                .env("AWS_ENDPOINT_URL", backups.endpoint())
                .output()
                .unwrap(),
        )
    };
    let deletes = || {
        backups
            .stats()
            .seen
            .iter()
            .filter(|(line, _)| line.starts_with("DELETE /backup-vaults/"))
            .map(|(line, _)| line.clone())
            .collect::<Vec<_>>()
    };
    destroy(&[]).success();
    assert!(deletes().is_empty(), "kept with the data");
    destroy(&["--set", "delete_data=true"])
        .success()
        .stdout_has("1 backup(s) deleted");
    let deleted = deletes();
    assert_eq!(deleted.len(), 1, "{deleted:?}");
    assert!(
        deleted[0].starts_with(
            "DELETE /backup-vaults/aws%2Fefs%2Fautomatic-backup-vault/recovery-points/"
        ),
        "{}",
        deleted[0]
    );
    assert!(w.sdk().leftovers(&stack).is_empty());
}

#[test]
fn an_owner_who_cannot_log_in_fails_the_deploy() {
    let w = World::moto();
    let stack = support::stack_name("nologin");
    let (n8n, logins) = n8n_stub(401);
    let out = run(
        &w,
        &["run", "dev", "--name", &stack, "--set", "health_timeout=5"],
        &stand_ins_with_n8n(n8n),
    );
    out.failure(1)
        .stderr_has("n8n-login")
        .stderr_has("HTTP 401");
    assert!(!logins.lock().unwrap().is_empty());
    assert!(
        w.sdk().leftovers(&stack).non_data().is_empty(),
        "the failed run was rolled back"
    );
}
