//! Re-runs on a live stack: the diff (`plan`, drift in `status`), changes applied in place
//! through SSM, a replacement instance, a restart; an unchanged re-run writes nothing.

use super::*;

/// Does this AWS operation (as the fault proxy names it) change anything?
fn is_write(op: &str) -> bool {
    const READS: &[&str] = &["describe", "get", "list", "lookup"];
    if op.contains(" HTTP/1.1") {
        // REST (EFS, CloudFront, Backup): reads are GETs.
        return !op.starts_with("GET ");
    }
    let op = op.to_ascii_lowercase();
    !READS.iter().any(|r| op.starts_with(r))
}

/// Every operation the proxy saw that changes something.
fn writes_seen(proxy: &support::proxy::FaultProxy) -> Vec<String> {
    proxy
        .stats()
        .log
        .iter()
        .map(|(op, _)| op.clone())
        .filter(|op| is_write(op))
        .collect()
}

fn update_snapshots(sdk: &support::Sdk, stack: &str) -> Vec<String> {
    let out = sdk
        .block_on(
            sdk.ec2
                .describe_snapshots()
                .owner_ids("self")
                .filters(support::filter("tag:geusemaker:stack", stack))
                .filters(support::filter("tag:geusemaker:snapshot", "update"))
                .send(),
        )
        .unwrap();
    out.snapshots()
        .iter()
        .filter_map(|s| s.snapshot_id().map(str::to_string))
        .collect()
}

#[test]
fn a_rerun_narrows_access_and_an_unchanged_one_writes_nothing() {
    let w = World::moto();
    let stack = support::stack_name("narrow");
    let ins = stand_ins();
    rerun(&w, &stack, &["allowed_cidr=192.0.2.0/24"], &ins, None).success();

    let out = rerun(&w, &stack, &[], &ins, None);
    out.success()
        .stdout_has(&format!("~ security group {stack}-app: -tcp/5678 from 192.0.2.0/24, +tcp/5678 from 192.0.2.1/32"))
        .stdout_has("1 change(s) to what existed");
    let sdk = w.sdk();
    let sgs = sdk.stack_security_groups(&stack);
    let app = sgs
        .iter()
        .find(|g| g.group_name() == Some(&format!("{stack}-app")))
        .unwrap();
    let ranges: Vec<&str> = app
        .ip_permissions()
        .iter()
        .flat_map(|p| p.ip_ranges())
        .filter_map(|r| r.cidr_ip())
        .collect();
    assert_eq!(ranges, ["192.0.2.1/32"], "the old range is gone");

    // The role's inline policy widened by hand: the next run makes it the recipe's again.
    let role = format!("{stack}-app");
    let policy = |sdk: &support::Sdk| -> String {
        let out = sdk
            .block_on(
                sdk.iam
                    .get_role_policy()
                    .role_name(&role)
                    .policy_name("geusemaker-stack-parameters")
                    .send(),
            )
            .unwrap();
        support::url_decode(out.policy_document())
    };
    let applied = policy(&sdk);
    sdk.block_on(
        sdk.iam
            .put_role_policy()
            .role_name(&role)
            .policy_name("geusemaker-stack-parameters")
            .policy_document(r#"{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"ssm:*","Resource":"*"}]}"#)
            .send(),
    )
    .unwrap();
    rerun(&w, &stack, &[], &ins, None)
        .success()
        .stdout_has(&format!("~ role {role}: its policies made the recipe's"));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&policy(&sdk)).unwrap(),
        serde_json::from_str::<serde_json::Value>(&applied).unwrap()
    );

    // The same recipe again: reads only, and it says so.
    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![]);
    let out = rerun(&w, &stack, &[], &ins, Some(&proxy.endpoint()));
    out.success().stdout_has("nothing changed");
    let writes = writes_seen(&proxy);
    assert_eq!(
        writes,
        Vec::<String>::new(),
        "an unchanged re-run writes nothing"
    );
    assert!(
        !proxy.stats().log.is_empty(),
        "it did read through the proxy"
    );
}

/// The IAM actions `geusemaker policy dev` grants, lower-cased without their service prefix.
fn policy_actions(w: &World) -> Vec<String> {
    let out = w.run(&["policy", "dev"]);
    out.success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|st| match &st["Action"] {
            serde_json::Value::Array(a) => a.clone(),
            one => vec![one.clone()],
        })
        .filter_map(|a| {
            a.as_str()
                .map(|a| a.rsplit(':').next().unwrap().to_ascii_lowercase())
        })
        .collect()
}

/// Every query- or JSON-protocol operation the proxy saw that the policy does not grant.
fn outside_policy(proxy: &support::proxy::FaultProxy, granted: &[String]) -> Vec<String> {
    let mut missing: Vec<String> = proxy
        .stats()
        .log
        .iter()
        .map(|(op, _)| op.clone())
        .filter(|op| !op.contains(" HTTP/1.1")) // REST (EFS, CloudFront): named by path
        .filter(|op| !granted.contains(&op.to_ascii_lowercase()))
        .collect();
    missing.sort();
    missing.dedup();
    missing
}

#[test]
fn a_type_change_replaces_the_spot_instance_and_moves_the_data_volume() {
    let w = World::moto();
    let stack = support::stack_name("replace");
    let ins = stand_ins();
    rerun(&w, &stack, &[], &ins, None).success();
    let before = w.state(&stack);
    let old = before["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sdk = w.sdk();
    let volume = data_volume(&sdk, &stack).volume_id().unwrap().to_string();

    let proxy =
        support::proxy::FaultProxy::start(&support::moto().endpoint, vec![spot_cannot_stop()]);
    let out = rerun(
        &w,
        &stack,
        &["instance_type=t3.large"],
        &ins,
        Some(&proxy.endpoint()),
    );
    out.success()
        .stdout_has("-/+ instance")
        .stdout_has("t3.medium → t3.large")
        .stdout_has("Apply these changes to the running stack? yes (no terminal to ask on)")
        .stdout_has("n8n was down about ");
    let vm = the_instance(&sdk, &stack);
    let new = vm.instance_id().unwrap().to_string();
    assert_ne!(new, old, "a new instance");
    assert_eq!(vm.instance_type().map(|t| t.as_str()), Some("t3.large"));
    // The old spot instance was not stopped (AWS refuses): its services released the volume.
    assert_eq!(
        proxy.hit_count(),
        0,
        "StopInstances was not called on a spot instance"
    );
    assert!(
        ssm_commands(&sdk, &stack)
            .iter()
            .any(|c| c.contains("stop the services and release the data volume")),
        "the old instance released the data volume through SSM"
    );
    let v = data_volume(&sdk, &stack);
    assert_eq!(v.volume_id(), Some(volume.as_str()), "the same data volume");
    assert_eq!(
        attached_to(&v).as_deref(),
        Some(new.as_str()),
        "moved to the new instance"
    );
    let after = w.state(&stack);
    assert_eq!(after["outputs"]["instance_id"], new.as_str());
    assert_eq!(
        after["outputs"]["file_system_id"], before["outputs"]["file_system_id"],
        "same EFS"
    );
    assert_eq!(
        after["outputs"]["secrets"], before["outputs"]["secrets"],
        "same secrets"
    );
    assert_eq!(
        update_snapshots(&sdk, &stack).len(),
        1,
        "the snapshot before the move is kept"
    );
    assert_eq!(
        after["values"]["update_in_progress"],
        serde_json::Value::Null
    );
    assert_eq!(
        outside_policy(&proxy, &policy_actions(&w)),
        Vec::<String>::new(),
        "`geusemaker policy dev` grants what a replacement calls"
    );
}

#[test]
fn an_image_change_is_applied_in_place_through_ssm_and_launches_nothing() {
    let w = World::moto();
    let stack = support::stack_name("inplace");
    let ins = stand_ins();
    rerun(&w, &stack, &[], &ins, None).success();
    let sdk = w.sdk();
    let vm = the_instance(&sdk, &stack);
    let id = vm.instance_id().unwrap().to_string();
    let fingerprint = instance_tag(&vm, "geusemaker:services").expect("fingerprint tag");
    assert!(ssm_commands(&sdk, &stack)
        .iter()
        .all(|c| !c.contains("keep the running configuration")));

    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![]);
    let out = rerun(
        &w,
        &stack,
        &["images=n8nio/n8n:2.40.7"],
        &ins,
        Some(&proxy.endpoint()),
    );
    assert_eq!(
        outside_policy(&proxy, &policy_actions(&w)),
        Vec::<String>::new(),
        "`geusemaker policy dev` grants what an update in place calls"
    );
    out.success()
        .stdout_has("~ services: n8n: image n8nio/n8n:2.41.3 → n8nio/n8n:2.40.7")
        .stdout_has("~ services: n8n-runner: image n8nio/runners:2.41.3 → n8nio/runners:2.40.7")
        .stdout_has("2 change(s) to what existed: services\n");
    let vm = the_instance(&sdk, &stack);
    assert_eq!(vm.instance_id(), Some(id.as_str()), "the same instance");
    let updates: Vec<String> = ssm_commands(&sdk, &stack)
        .into_iter()
        .filter(|c| c.contains("keep the running configuration"))
        .collect();
    assert!(!updates.is_empty(), "an update command");
    assert!(
        updates.iter().all(|u| u == &updates[0]),
        "one update, however often sent"
    );
    let script = &updates[0];
    let compose = support::heredoc(script, "/opt/geusemaker/compose.yaml");
    assert!(compose.contains("image: n8nio/n8n:2.40.7"), "{compose}");
    let dir = tempfile::tempdir().unwrap();
    support::validate_compose_schema(dir.path(), "update", compose);
    support::shellcheck(dir.path(), "update", script);
    assert!(script.contains("up -d --remove-orphans"));
    let now = instance_tag(&vm, "geusemaker:services").unwrap();
    assert_ne!(now, fingerprint, "the tag says what runs now");
    assert_eq!(
        update_snapshots(&sdk, &stack).len(),
        1,
        "a snapshot before the update"
    );

    // Applied: the same recipe again changes nothing.
    rerun(&w, &stack, &["images=n8nio/n8n:2.40.7"], &ins, None)
        .success()
        .stdout_has("nothing changed");
}

#[test]
fn an_on_demand_type_change_is_a_restart_of_the_same_instance() {
    let w = World::moto();
    let stack = support::stack_name("resize");
    rerun(&w, &stack, &["spot=false"], &stand_ins(), None).success();
    let sdk = w.sdk();
    let id = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();

    // Just started, the instance's SSM agent has not registered yet: AWS says so once.
    let unregistered = support::proxy::Rule::json_error(
        &["\"DocumentName\""],
        "InvalidInstanceId",
        "Instances not in a valid state for account",
    )
    .first(1);
    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![unregistered]);
    rerun(
        &w,
        &stack,
        &["spot=false", "instance_type=t3.large"],
        &stand_ins(),
        Some(&proxy.endpoint()),
    )
    .success()
    .stdout_has("~! instance")
    .stdout_has("t3.medium → t3.large")
    .stdout_has("waiting for its SSM agent to register");
    let vm = the_instance(&sdk, &stack);
    assert_eq!(vm.instance_id(), Some(id.as_str()), "the same instance");
    assert_eq!(vm.instance_type().map(|t| t.as_str()), Some("t3.large"));
    // A new public address: n8n's URLs were written again, through SSM (dev has no load
    // balancer in front).
    assert!(ssm_commands(&sdk, &stack)
        .iter()
        .any(|c| c.contains("n8n's public URL") && c.contains("keep the running configuration")));
    assert_eq!(
        attached_to(&data_volume(&sdk, &stack)).as_deref(),
        Some(id.as_str())
    );
}

#[test]
fn plan_on_a_live_stack_shows_the_diff_and_changes_nothing() {
    let w = World::moto();
    let stack = support::stack_name("diff");
    let ins = stand_ins();
    rerun(&w, &stack, &["allowed_cidr=192.0.2.0/24"], &ins, None).success();
    let sdk = w.sdk();
    let id = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();
    let state_before = std::fs::read_to_string(w.state_path(&stack)).unwrap();

    let plan = |extra: &[&str], endpoint: &str| {
        let mut args = vec!["run", "dev", "--name", &stack, "--plan"];
        for s in extra {
            args.extend(["--set", s]);
        }
        let out = w
            .cmd()
            .args(&args)
            .env("AWS_ENDPOINT_URL", endpoint)
            .env("GEUSEMAKER_HEALTH_ENDPOINTS", &ins)
            .output()
            .unwrap();
        Outcome::from(out)
    };
    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![]);
    let out = plan(
        &[
            "allowed_cidr=192.0.2.1/32",
            "instance_type=t3.large",
            "images=n8nio/n8n:2.40.7",
        ],
        &proxy.endpoint(),
    );
    out.success()
        .stdout_has("AWS is only read, nothing is changed")
        .stdout_has(&format!("~ security group {stack}-app: -tcp/5678 from 192.0.2.0/24, +tcp/5678 from 192.0.2.1/32"))
        .stdout_has(&format!("-/+ instance {stack}-app: t3.medium → t3.large"))
        .stdout_has("~ services: n8n: image n8nio/n8n:2.41.3 → n8nio/n8n:2.40.7");
    let writes = writes_seen(&proxy);
    assert_eq!(writes, Vec::<String>::new(), "a plan only reads");
    assert_eq!(the_instance(&sdk, &stack).instance_id(), Some(id.as_str()));
    assert_eq!(
        std::fs::read_to_string(w.state_path(&stack)).unwrap(),
        state_before,
        "the stack's state is not written"
    );

    // --json: the same diff, for scripts.
    let mut cmd = w.cmd();
    cmd.args([
        "run",
        "dev",
        "--name",
        &stack,
        "--plan",
        "--json",
        "--set",
        "allowed_cidr=192.0.2.0/24",
        "--set",
        "spot=false",
    ])
    .env("AWS_ENDPOINT_URL", proxy.endpoint());
    let out = Outcome::from(cmd.output().unwrap());
    out.success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["complete"], true, "{doc}");
    let changes = doc["changes"].as_array().unwrap();
    assert_eq!(changes.len(), 1, "{doc}");
    assert_eq!(changes[0]["action"], "replace");
    assert_eq!(changes[0]["resource"], format!("instance {stack}-app"));
    assert_eq!(changes[0]["detail"], "spot → on-demand");

    // The recipe as deployed: no changes (the recipe runs to its end, still reading only).
    plan(&["allowed_cidr=192.0.2.0/24"], &proxy.endpoint())
        .success()
        .stdout_has("no changes: the running stack is what the recipe says");
    let writes = writes_seen(&proxy);
    assert_eq!(writes, Vec::<String>::new(), "no plan writes");
    assert_eq!(
        std::fs::read_to_string(w.state_path(&stack)).unwrap(),
        state_before,
        "no plan writes the stack's state"
    );
}

#[test]
fn status_shows_drift_and_the_next_run_converges_it() {
    let w = World::moto();
    let stack = support::stack_name("drift");
    let ins = stand_ins();
    // On-demand: a type changed in the console is something one can do by hand.
    rerun(&w, &stack, &["spot=false"], &ins, None).success();
    let sdk = w.sdk();
    let id = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();
    let status = |json: bool| {
        let mut args = vec!["status", stack.as_str()];
        if json {
            args.push("--json");
        }
        let out = w
            .cmd()
            .args(&args)
            .env("GEUSEMAKER_HEALTH_ENDPOINTS", &ins)
            .output()
            .unwrap();
        Outcome::from(out)
    };
    let clean = status(true);
    clean.success();
    let doc: serde_json::Value = serde_json::from_str(&clean.stdout).unwrap();
    assert_eq!(doc["drift"], serde_json::json!([]), "{doc}");

    // By hand: SSH opened to the world, and the type changed in the console.
    let app = sdk
        .stack_security_groups(&stack)
        .into_iter()
        .find(|g| g.group_name() == Some(&format!("{stack}-app")))
        .unwrap();
    sdk.block_on(
        sdk.ec2
            .authorize_security_group_ingress()
            .group_id(app.group_id().unwrap())
            .ip_protocol("tcp")
            .from_port(22)
            .to_port(22)
            .cidr_ip("0.0.0.0/0")
            .send(),
    )
    .unwrap();
    sdk.block_on(sdk.ec2.stop_instances().instance_ids(&id).send())
        .unwrap();
    sdk.block_on(
        sdk.ec2
            .modify_instance_attribute()
            .instance_id(&id)
            .instance_type(
                aws_sdk_ec2::types::AttributeValue::builder()
                    .value("t3.large")
                    .build(),
            )
            .send(),
    )
    .unwrap();
    sdk.block_on(sdk.ec2.start_instances().instance_ids(&id).send())
        .unwrap();

    status(false)
        .success()
        .stdout_has("Drift: AWS differs from what the last run applied")
        .stdout_has("instance type t3.large in AWS, t3.medium applied")
        .stdout_has(&format!(
            "security group {stack}-app: +tcp/22 from 0.0.0.0/0"
        ));

    // The next run shows both in its diff and puts them back (an on-demand type: a restart).
    rerun(&w, &stack, &["spot=false"], &ins, None)
        .success()
        .stdout_has(&format!(
            "~ security group {stack}-app: -tcp/22 from 0.0.0.0/0"
        ))
        .stdout_has(&format!("~! instance {stack}-app: t3.large → t3.medium"));
    let after = status(true);
    after.success();
    let doc: serde_json::Value = serde_json::from_str(&after.stdout).unwrap();
    assert_eq!(doc["drift"], serde_json::json!([]), "{doc}");
}
