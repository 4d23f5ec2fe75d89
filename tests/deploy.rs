//! End to end through the binary against moto: the quickstart recipe creates a VPC-discovered
//! security group, an encrypted EFS with a mount target and a tagged spot instance; the state
//! lists each resource; re-runs converge; a second concurrent run is refused.

use crate::support;

use std::time::{Duration, Instant};

use support::{tag, Outcome, World};

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

/// `run recipes/quickstart.rhai` for `stack`, n8n open to 203.0.113.7/32.
fn quickstart(w: &World, stack: &str) -> Outcome {
    w.run(&[
        "run",
        "recipes/quickstart.rhai",
        "--name",
        stack,
        "--set",
        "allowed_cidr=203.0.113.7/32",
    ])
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

#[test]
fn a_second_concurrent_run_on_the_same_stack_is_refused_at_once() {
    let w = World::moto();
    let stack = support::stack_name("lock");
    // A recipe that holds the stack for a while: it waits on a port nobody listens on.
    let port = support::free_port();
    let slow = w.recipe(
        "slow.rhai",
        &format!("health::wait_until_healthy([#{{ name: \"nothing\", tcp: \"127.0.0.1:{port}\", timeout_ms: 200 }}], #{{ timeout: 20, interval: 1 }});\n"),
    );
    let mut first = w
        .cmd()
        .args(["run", slow.to_str().unwrap(), "--name", &stack])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = w.home.path().join("stacks").join(format!("{stack}.lock"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock)
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "first run never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = w.run(&["run", slow.to_str().unwrap(), "--name", &stack]);
    out.failure(1)
        .stderr_has(&format!("stack `{stack}` is locked by pid {}", first.id()))
        .stderr_has("only one run per stack");
    first.kill().unwrap();
    first.wait().unwrap();
    // The OS released the dead run's lock: the stack is usable again.
    let quick = w.recipe("quick.rhai", "ui::success(\"got the lock\");\n");
    w.run(&["run", quick.to_str().unwrap(), "--name", &stack])
        .success()
        .stdout_has("got the lock");
}

#[test]
fn aws_errors_show_code_hint_position_and_the_stdlib_frame() {
    let w = World::moto();
    let stack = support::stack_name("awserr");
    let r = w.recipe(
        "bad-sg.rhai",
        "import \"storage\" as storage;\nlet vpc = ec2::default_vpc();\nlet sg = storage::nfs_security_group(\"efs\", vpc, \"sg-00000000000000000\");\n",
    );
    let out = w.run(&["run", r.to_str().unwrap(), "--name", &stack]);
    out.failure(1)
        .stderr_has("AWS ec2:AuthorizeSecurityGroupIngress failed: InvalidGroup.NotFound")
        .stderr_has("hint:")
        .stderr_has("stdlib/storage.rhai:")
        .stderr_has("call stack (outermost first):")
        .stderr_has("bad-sg.rhai:3:")
        .stderr_has("ec2::security_group()");
    // What the failed run did create is in the ledger, so it can be cleaned up.
    let state = w.state(&stack);
    assert_eq!(state["status"], "failed");
    assert!(state["runs"][0]["outcome"]
        .as_str()
        .unwrap()
        .starts_with("failed: AWS ec2:AuthorizeSecurityGroupIngress"));
    assert_eq!(state["resources"][0]["kind"], "ec2:security-group");
}

#[test]
fn invalid_instance_type_is_an_actionable_error_at_the_launch() {
    let w = World::moto();
    let stack = support::stack_name("badtype");
    let out = w.run(&[
        "run",
        "quickstart",
        "--name",
        &stack,
        "--set",
        // Well formed (the header's check passes it), but no such type: AWS says so.
        "instance_type=t9.large",
    ]);
    out.failure(1)
        .stderr_has("RunInstances failed: InvalidInstanceType")
        .stderr_has("recipes/quickstart.rhai:")
        .stderr_has("ec2::run_instance");
    let state = w.state(&stack);
    let launch = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ec2:instance")
        .unwrap();
    assert_eq!(
        launch["status"], "failed",
        "a refused launch is recorded as failed, not pending"
    );
    assert!(w.sdk().stack_instances(&stack).is_empty());
}

/// The preflight (issue 18): without credentials or a region a run stops before its first AWS
/// call with one short message saying how to fix it — no SDK log lines, no position inside the
/// stdlib, exit 2 — and leaves no trace: no new stack, and an existing one exactly as it was.
#[test]
fn missing_credentials_and_region_stop_the_run_before_anything() {
    let w = World::moto();
    let no_credentials = |args: &[&str]| {
        w.cmd()
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };
    let out = no_credentials(&["run", "quickstart", "--name", "nocreds"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: no AWS credentials found\n"),
        "{stderr}"
    );
    for fix in [
        "AWS_ACCESS_KEY_ID",
        "--profile",
        "aws configure",
        "aws sso login",
    ] {
        assert!(stderr.contains(fix), "names the fix {fix}: {stderr}");
    }
    assert!(!stderr.contains("WARN"), "no SDK log lines: {stderr}");
    assert!(
        !stderr.contains(".rhai:"),
        "no position in a recipe: {stderr}"
    );
    assert!(
        !w.home.path().join("stacks/nocreds.json").exists(),
        "nothing recorded"
    );
    let list = w.run(&["list"]);
    assert!(!list.stdout.contains("nocreds"), "{}", list.stdout);

    let out = w
        .cmd()
        .args(["run", "quickstart", "--name", "noregion"])
        .env_remove("AWS_REGION")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: no AWS region") || stderr.contains("\nerror: no AWS region"),
        "{stderr}"
    );
    assert!(stderr.contains("--region us-east-1"), "{stderr}");
    assert!(!w.home.path().join("stacks/noregion.json").exists());

    // With -v the SDK's own reasons are there for whoever wants them.
    let out = no_credentials(&["-v", "run", "quickstart", "--name", "nocreds"]);
    assert_eq!(out.status.code(), Some(2));

    // An existing stack is left exactly as it was: no failed run, no status change.
    let stack = support::stack_name("pre");
    let r = w.recipe(
        "sg.rhai",
        "let vpc = ec2::default_vpc();\nec2::security_group(\"app\", vpc, #{});\n",
    );
    let r = r.to_str().unwrap();
    w.run(&["run", r, "--name", &stack]).success();
    let file = w.home.path().join("stacks").join(format!("{stack}.json"));
    let before = std::fs::read_to_string(&file).unwrap();
    let out = no_credentials(&["run", r, "--name", &stack]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let out = no_credentials(&["destroy", &stack, "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let status = w.run(&["list"]);
    assert!(status.stdout.contains("running"), "{}", status.stdout);
}

/// Params are checked for meaning before anything is created (issue 18): a range with a byte
/// over 255 or a prefix over 32, a misspelt instance type — each refused in words (never a
/// regular expression), exit 2, no stack recorded, no AWS call. config.toml values are checked
/// the same way, and those a run uses are shown with their source.
#[test]
fn params_and_settings_are_checked_for_meaning_before_anything_is_created() {
    let w = World::moto();
    for (set, words) in [
        (
            "allowed_cidr=999.1.1.1/32",
            "999 is not an address byte (each of the four is 0–255)",
        ),
        (
            "allowed_cidr=10.0.0.0/33",
            "the prefix length must be 0–32, not 33",
        ),
        (
            "instance_type=t3.larg",
            "`larg` is not an EC2 instance size",
        ),
        ("owner_email=admin", "is not an email address"),
        ("images=n8nio/n8n", "names no version"),
    ] {
        let out = w.run(&["run", "dev", "--name", "typed", "--set", set]);
        out.failure(2).stderr_has(words);
        assert!(
            !out.stderr.contains("^"),
            "no regular expression: {}",
            out.stderr
        );
        assert!(
            !w.state_path("typed").exists(),
            "nothing recorded for {set}"
        );
    }
    assert!(w.sdk().leftovers("typed").is_empty());
    let out = w.run(&[
        "run",
        "dev",
        "--name",
        "typed",
        "--set",
        "instance_type=t3.larg",
    ]);
    out.stderr_has("did you mean `t3.large`?");

    // config.toml: a misspelt type is refused where it is written, and at every run.
    w.run(&["config", "set", "deploy.instance_type", "t3.larg"])
        .failure(2)
        .stderr_has("did you mean `t3.large`?");
    std::fs::write(
        w.home.path().join("config.toml"),
        "[deploy]\ninstance_type = \"t3.larg\"\n",
    )
    .unwrap();
    w.run(&["run", "dev", "--name", "typed", "--plan"])
        .failure(2)
        .stderr_has("config.toml:2:17: deploy.instance_type: `t3.larg`")
        .stderr_has("geusemaker config set|unset KEY");
    // … and the way out works on that very file.
    w.run(&["config", "unset", "deploy.instance_type"])
        .success();
    w.run(&["run", "dev", "--name", "typed", "--plan"])
        .success();
    // A valid one applies to a recipe that takes the param — in plain sight, with its source.
    std::fs::write(
        w.home.path().join("config.toml"),
        "[deploy]\ninstance_type = \"t3.large\"\nspot = true\n",
    )
    .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    w.run(&[
        "run",
        root.join("recipes/examples/lean.rhai").to_str().unwrap(),
        "--name",
        "typed",
        "--plan",
        "--set",
        "allowed_cidr=198.51.100.0/24",
    ])
    .success()
    .stdout_has("params not from the recipe: allowed_cidr = 198.51.100.0/24 (--set), instance_type = t3.large (config.toml deploy.instance_type), spot = true (config.toml deploy.spot)");
}

#[test]
fn region_flag_selects_another_region() {
    let w = World::moto();
    let stack = support::stack_name("west");
    let r = w.recipe("where.rhai", "let vpc = ec2::default_vpc();\nlet n = ec2::subnets(vpc).len();\nstate::output(\"subnets\", n);\nstate::output(\"region\", state::region());\n");
    w.run(&[
        "run",
        r.to_str().unwrap(),
        "--name",
        &stack,
        "--region",
        "us-west-2",
    ])
    .success();
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["region"], "us-west-2");
    assert_eq!(
        s["outputs"]["subnets"], 4,
        "moto's us-west-2 has 4 default subnets"
    );
}
