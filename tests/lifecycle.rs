//! Destroy, rollback, automatic rollback, crash safety and lock hygiene, through the binary
//! against moto.

use crate::support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{stand_ins, Outcome, World};

fn run(w: &World, args: &[&str], extra_env: &[(&str, &str)]) -> Outcome {
    let mut cmd = w.cmd();
    cmd.args(args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Outcome::from(out)
}

fn deploy_dev(w: &World, stack: &str) -> Outcome {
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
            "allowed_cidr=192.0.2.1/32",
        ],
        &[],
    )
}

#[test]
fn destroy_keeps_the_data_then_deletes_it_when_asked() {
    let w = World::moto();
    let stack = support::stack_name("gone");
    deploy_dev(&w, &stack).success();
    let sdk = w.sdk();
    let before = sdk.leftovers(&stack);
    assert_eq!(before.instances.len(), 1);
    assert_eq!((before.file_systems.len(), before.parameters.len()), (1, 5));

    // Without a terminal and without --yes, destroy refuses to guess — up front: no inventory
    // read, no run recorded, the stack's status untouched.
    let state_before = w.state(&stack);
    let refused = run(&w, &["destroy", &stack], &[]);
    refused
        .failure(2)
        .stderr_has("no terminal to confirm on: pass --yes");
    assert!(
        !refused.stdout.contains("WILL BE DELETED"),
        "{}",
        refused.stdout
    );
    assert_eq!(w.state(&stack), state_before, "nothing recorded");
    assert_eq!(
        sdk.leftovers(&stack),
        before,
        "nothing deleted without confirmation"
    );

    let out = run(&w, &["destroy", &stack, "--yes"], &[]);
    out.success()
        .stdout_has("WILL BE DELETED")
        .stdout_has("WILL BE KEPT")
        .stdout_has("destroyed; its data was kept");
    let after = sdk.leftovers(&stack);
    assert!(after.non_data().is_empty(), "left behind: {after:?}");
    assert_eq!(after.file_systems, before.file_systems, "EFS kept");
    assert_eq!(after.parameters, before.parameters, "secrets kept");
    let data_volume = w.state(&stack)["outputs"]["data_volume_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        after.volumes,
        std::slice::from_ref(&data_volume),
        "only the data volume is left"
    );
    assert!(
        out.stdout.contains(&before.file_systems[0]) && out.stdout.contains(&data_volume),
        "kept ids are printed"
    );
    assert_eq!(w.state(&stack)["status"], "destroyed");

    // The status of a destroyed stack checks nothing (the stand-ins still answer at its old
    // addresses: that is not the stack), and a terminated instance is not "up".
    let status = run(&w, &["status", &stack, "--json"], &[]);
    status.success();
    let report: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert_eq!(report["status"], "destroyed");
    assert_eq!(report["services"], serde_json::json!([]), "{report}");
    assert_eq!(report["drift"], serde_json::json!([]), "{report}");
    let status = run(&w, &["status", &stack], &[]);
    status
        .success()
        .stdout_has("terminated")
        .stdout_has("the stack is destroyed: no service is checked");
    assert!(!status.stdout.contains(" · up "), "{}", status.stdout);

    // A second destroy is fine and deletes nothing more.
    run(&w, &["destroy", &stack, "--yes"], &[])
        .success()
        .stdout_has("nothing to delete");

    // With delete_data (and the second confirmation, answered by --yes): nothing at all.
    let out = run(
        &w,
        &["destroy", &stack, "--yes", "--set", "delete_data=true"],
        &[],
    );
    out.success()
        .stdout_has("Really delete the data?")
        .stdout_has(&format!("file system(s) {} with", before.file_systems[0]))
        .stdout_has("is gone");
    assert!(
        sdk.leftovers(&stack).is_empty(),
        "{:?}",
        sdk.leftovers(&stack)
    );
    assert!(
        !w.state_path(&stack).exists(),
        "nothing remains, so no state either"
    );
    run(&w, &["destroy", &stack, "--yes"], &[])
        .failure(2)
        .stderr_has(&format!("no stack named `{stack}`"));
}

#[test]
fn destroy_of_an_unknown_stack_names_the_known_ones() {
    let w = World::moto();
    let r = w.recipe("noop.rhai", "state::output(\"x\", 1);\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "alpha-one"])
        .success();
    w.run(&["destroy", "alpha-onr", "--yes"])
        .failure(2)
        .stderr_has("no stack named `alpha-onr`")
        .stderr_has("did you mean `alpha-one`?");
    w.run(&["destroy", "zzz-never", "--yes"])
        .failure(2)
        .stderr_has("known stacks: alpha-one");
    w.run(&["rollback", "zzz-never"])
        .failure(2)
        .stderr_has("no stack named");
}

const FAILS_AFTER_CREATING: &str = r#"
let vpc = ec2::default_vpc();
let sg = ec2::security_group("web", vpc, #{ ingress: [ #{ port: 443, cidr: "192.0.2.0/24" } ] });
let key = ec2::key_pair("admin");
let secret = ssm::ensure_secret("app/token", #{});
throw "the recipe gives up here";
"#;

#[test]
fn a_failed_run_removes_what_it_created_but_not_data() {
    let w = World::moto();
    let stack = support::stack_name("autorb");
    let r = w.recipe("fails.rhai", FAILS_AFTER_CREATING);
    let out = w.run(&["run", r.to_str().unwrap(), "--name", &stack]);
    out.failure(1)
        .stderr_has("error: the recipe gives up here")
        .stderr_has("fails.rhai:6:")
        .stderr_has("automatic rollback removed what this run created");
    let left = w.sdk().leftovers(&stack);
    assert!(left.non_data().is_empty(), "{left:?}");
    assert_eq!(
        left.parameters,
        [format!("/geusemaker/{stack}/app/token")],
        "secrets are data: kept"
    );
    let state = w.state(&stack);
    assert_eq!(state["status"], "failed");
    let record = &state["rollback_history"][0];
    assert_eq!(record["trigger"], "run_failed");
    assert_eq!(record["success"], true);
    assert_eq!(record["error"], "the recipe gives up here");
    assert_eq!(
        record["resources_deleted"].as_array().unwrap().len(),
        2,
        "{record}"
    );
}

#[test]
fn keep_failed_keeps_everything_for_debugging() {
    let w = World::moto();
    let stack = support::stack_name("keepfail");
    let r = w.recipe("fails.rhai", FAILS_AFTER_CREATING);
    w.run(&[
        "run",
        r.to_str().unwrap(),
        "--name",
        &stack,
        "--keep-failed",
    ])
    .failure(1)
    .stderr_has("--keep-failed: the 3 resource(s) this run created were kept")
    .stderr_has(&format!("geusemaker destroy {stack}"));
    let left = w.sdk().leftovers(&stack);
    assert_eq!((left.security_groups.len(), left.key_pairs.len()), (1, 1));
    assert!(w.state(&stack)["rollback_history"]
        .as_array()
        .unwrap()
        .is_empty());
    w.run(&["destroy", &stack, "--yes", "--set", "delete_data=true"])
        .success();
    assert!(w.sdk().leftovers(&stack).is_empty());
}

#[test]
fn a_deploy_that_never_gets_healthy_is_rolled_back_with_its_data_kept() {
    let w = World::moto();
    let stack = support::stack_name("unhealthy");
    let dead = support::free_port();
    let out = w
        .cmd()
        .args(["run", "dev", "--name", &stack, "--set", "health_timeout=3"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", format!("n8n=127.0.0.1:{dead},ollama=127.0.0.1:{dead},qdrant=127.0.0.1:{dead},crawl4ai=127.0.0.1:{dead},postgres=127.0.0.1:{dead}"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("not healthy after 3s") && stderr.contains("automatic rollback removed"),
        "{stderr}"
    );
    // No count that the clean-up (which keeps the data) would contradict.
    assert!(
        stderr.contains("removing what it created; its data is kept"),
        "{stderr}"
    );
    let left = w.sdk().leftovers(&stack);
    assert!(left.non_data().is_empty(), "{left:?}");
    assert_eq!(
        (
            left.file_systems.len(),
            left.volumes.len(),
            left.parameters.len()
        ),
        (1, 1, 5),
        "data kept: {left:?}"
    );
    let state = w.state(&stack);
    assert_eq!(state["rollback_history"][0]["trigger"], "timeout");
    assert_eq!(state["status"], "failed");
    // The clean-up (a destroy run) does not make the stack a `destroy` tier.
    assert_eq!(state["recipe"], "<bundled>/recipes/dev.rhai");
    let list = w.run(&["list"]);
    let row = list.stdout.lines().find(|l| l.contains(&stack)).unwrap();
    assert!(row.contains(" dev ") && !row.contains("destroy"), "{row}");
}

#[test]
fn rollback_relaunches_the_last_healthy_deploy_on_the_same_data() {
    let w = World::moto();
    let stack = support::stack_name("rb");
    deploy_dev(&w, &stack).success();
    let sdk = w.sdk();
    let before = w.state(&stack);
    let old_instance = before["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let volume = before["outputs"]["data_volume_id"]
        .as_str()
        .unwrap()
        .to_string();
    let image = before["last_healthy"]["image_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        before["last_healthy"]["recipe"], "dev",
        "the snapshot names its recipe"
    );
    assert_eq!(
        before["last_healthy"]["params"]["allowed_cidr"], "192.0.2.1/32",
        "and its params"
    );

    // A snapshot its recipe would now refuse is found before the rollback terminates
    // anything (the stack would be left without an instance).
    let file = w.state_path(&stack);
    let good = std::fs::read_to_string(&file).unwrap();
    let mut bad: serde_json::Value = serde_json::from_str(&good).unwrap();
    bad["last_healthy"]["params"]["owner_email"] = "o'brien@example.com".into();
    std::fs::write(&file, serde_json::to_string_pretty(&bad).unwrap()).unwrap();
    run(&w, &["rollback", &stack], &[])
        .failure(2)
        .stderr_has("cannot be relaunched as it was recorded, so nothing was rolled back")
        .stderr_has("owner_email");
    let live: Vec<String> = sdk
        .stack_instances(&stack)
        .iter()
        .filter_map(|i| i.instance_id().map(str::to_string))
        .collect();
    assert_eq!(
        live,
        std::slice::from_ref(&old_instance),
        "the instance is untouched"
    );
    std::fs::write(&file, good).unwrap();

    let out = run(&w, &["rollback", &stack], &[]);
    out.success()
        .stdout_has("Relaunching the last healthy deploy")
        .stdout_has("rolled back and relaunched");
    let inst = sdk.stack_instances(&stack);
    assert_eq!(inst.len(), 1);
    assert_ne!(inst[0].instance_id(), Some(old_instance.as_str()));
    assert_eq!(
        inst[0].image_id(),
        Some(image.as_str()),
        "the snapshot's image"
    );
    let v = sdk
        .block_on(sdk.ec2.describe_volumes().volume_ids(&volume).send())
        .unwrap();
    assert_eq!(
        v.volumes()[0].attachments()[0].instance_id(),
        inst[0].instance_id(),
        "same data volume"
    );
    let state = w.state(&stack);
    assert_eq!(state["status"], "running");
    let record = &state["rollback_history"][0];
    assert_eq!(record["trigger"], "manual");
    assert_eq!(record["success"], true);
    assert_eq!(
        record["resources_deleted"],
        serde_json::json!([old_instance])
    );
    assert!(record["relaunch_run"].is_string());
    // The relaunch used the snapshot's params: n8n is still open to that range only.
    let app = sdk
        .stack_security_groups(&stack)
        .into_iter()
        .find(|g| g.group_name() == Some(format!("{stack}-app").as_str()))
        .unwrap();
    let n8n: Vec<_> = app
        .ip_permissions()
        .iter()
        .filter(|p| p.from_port() == Some(5678))
        .flat_map(|p| p.ip_ranges().iter().filter_map(|r| r.cidr_ip()))
        .collect();
    assert_eq!(n8n, ["192.0.2.1/32"]);
}

#[test]
fn rollback_without_a_healthy_snapshot_leaves_the_stack_failed_with_data() {
    let w = World::moto();
    let stack = support::stack_name("rbnosnap");
    w.run(&["run", "quickstart", "--name", &stack]).success();
    let out = w.run(&["rollback", &stack, "--trigger", "spot-interruption"]);
    out.success().stderr_has("no healthy deploy recorded");
    let left = w.sdk().leftovers(&stack);
    assert!(left.instances.is_empty());
    assert_eq!(left.file_systems.len(), 1);
    let state = w.state(&stack);
    assert_eq!(state["status"], "failed");
    assert_eq!(state["rollback_history"][0]["trigger"], "spot_interruption");
}

/// SIGKILL the deploy right after the k-th AWS response (AWS did the work, the ledger has not
/// heard of it), then destroy: nothing may be left, and the state file must always parse.
#[test]
fn a_deploy_killed_at_any_point_can_be_destroyed_completely() {
    let w = World::moto();
    // Kill points spread over the requests a whole dev deploy makes (several go out at once),
    // counted from its run summary.
    let whole = run(
        &w,
        &[
            "run",
            "dev",
            "--name",
            &support::stack_name("crashref"),
            "--set",
            "health_timeout=30",
        ],
        &[],
    );
    let requests: usize = whole
        .stdout
        .split(" AWS requests")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in the run summary:\n{}", whole.stdout));
    assert!(requests > 12, "{requests} requests");
    let points: Vec<usize> = (0..12).map(|i| 1 + i * (requests - 2) / 11).collect();
    for k in points {
        let stack = support::stack_name(&format!("crash{k}"));
        let out = run(
            &w,
            &["run", "dev", "--name", &stack, "--set", "health_timeout=30"],
            &[("GEUSEMAKER_TEST_KILL_AFTER_RESPONSES", &k.to_string())],
        );
        assert_eq!(
            out.code, -1,
            "k={k}: expected death by SIGKILL\n{}\n{}",
            out.stdout, out.stderr
        );
        if w.state_path(&stack).exists() {
            let text = std::fs::read_to_string(w.state_path(&stack)).unwrap();
            serde_json::from_str::<serde_json::Value>(&text)
                .unwrap_or_else(|e| panic!("k={k}: state does not parse: {e}\n{text}"));
            let d = run(
                &w,
                &["destroy", &stack, "--yes", "--set", "delete_data=true"],
                &[],
            );
            d.success();
            assert!(
                d.stderr.contains("taking it over"),
                "k={k}: the dead run's lock is reported:\n{}",
                d.stderr
            );
        }
        let left = w.sdk().leftovers(&stack);
        assert!(left.is_empty(), "k={k}: orphans after destroy: {left:?}");
    }
}

#[test]
fn ctrl_c_stops_cleanly_releases_the_lock_and_offers_rollback() {
    let w = World::moto();
    let stack = support::stack_name("sigint");
    let dead = support::free_port();
    let r = w.recipe(
        "slow.rhai",
        &format!("let sg = ec2::security_group(\"web\", ec2::default_vpc(), #{{}});\nhealth::wait_until_healthy([#{{ name: \"x\", tcp: \"127.0.0.1:{dead}\", timeout_ms: 200 }}], #{{ timeout: 60, interval: 1 }});\n"),
    );
    let child = w
        .cmd()
        .args(["run", r.to_str().unwrap(), "--name", &stack])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let log = w.home.path().join("logs").join(format!("{stack}.log"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("created kind")
    {
        assert!(Instant::now() < deadline, "the run never created its group");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_millis(500));
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let started = Instant::now();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stops at the next step, not after the wait"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stderr.contains(&format!("geusemaker rollback {stack}")),
        "rollback is offered: {stderr}"
    );
    let state = w.state(&stack);
    assert_eq!(state["runs"][0]["outcome"], "interrupted");
    assert_eq!(
        w.sdk().leftovers(&stack).security_groups.len(),
        1,
        "no automatic rollback on Ctrl-C"
    );
    // The lock was released on the way out.
    let quick = w.recipe("quick.rhai", "ui::success(\"lock is free\");\n");
    let next = w.run(&["run", quick.to_str().unwrap(), "--name", &stack]);
    next.success().stdout_has("lock is free");
    assert!(
        !next.stderr.contains("taking it over"),
        "a clean stop leaves no stale lock"
    );
}

#[test]
fn unlock_reports_free_locks_and_refuses_live_holders() {
    let w = World::moto();
    let stack = support::stack_name("unlock");
    w.run(&["unlock", &stack])
        .success()
        .stdout_has("is not locked");
    let dead = support::free_port();
    let r = w.recipe("hold.rhai", &format!("health::wait_until_healthy([#{{ name: \"x\", tcp: \"127.0.0.1:{dead}\", timeout_ms: 200 }}], #{{ timeout: 20, interval: 1 }});\n"));
    let mut holder = w
        .cmd()
        .args(["run", r.to_str().unwrap(), "--name", &stack])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lock = w.home.path().join("stacks").join(format!("{stack}.lock"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::fs::read_to_string(&lock)
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(50));
    }
    w.run(&["unlock", &stack])
        .failure(2)
        .stderr_has("locked by a live process")
        .stderr_has(&format!("kill {}", holder.id()));
    holder.kill().unwrap();
    holder.wait().unwrap();
    w.run(&["unlock", &stack])
        .success()
        .stdout_has("cleared the record of a run that died");
}

// ---- Re-runs on a live stack: the diff, in place, replacement, health-gated -----------------

/// `run dev` on `stack` with `sets` (after the common ones), through `endpoint` when given,
/// with `stand_ins` answering for the services.
fn rerun(
    w: &World,
    stack: &str,
    sets: &[&str],
    stand_ins: &str,
    endpoint: Option<&str>,
) -> Outcome {
    let mut args = vec!["run", "dev", "--name", stack, "--set", "health_timeout=20"];
    if !sets.iter().any(|s| s.starts_with("allowed_cidr=")) {
        args.extend(["--set", "allowed_cidr=192.0.2.1/32"]);
    }
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let mut cmd = w.cmd();
    cmd.args(&args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins);
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    Outcome::from(cmd.output().unwrap())
}

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

/// The scripts a stack's runs sent through SSM Run Command (their comment is `geusemaker
/// <stack> <run>`), oldest first. moto 5.2.1 attributes every command to every instance it was
/// ever sent to (its SendCommand answers list them all), so commands are told apart by stack,
/// not by instance.
fn ssm_commands(sdk: &support::Sdk, stack: &str) -> Vec<String> {
    let prefix = format!("geusemaker {stack} ");
    let mut scripts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = sdk
            .block_on(sdk.ssm.list_commands().set_next_token(token.clone()).send())
            .unwrap();
        scripts.extend(
            out.commands()
                .iter()
                .filter(|c| c.comment().is_some_and(|m| m.starts_with(&prefix)))
                .flat_map(|c| {
                    c.parameters()
                        .and_then(|p| p.get("commands"))
                        .cloned()
                        .unwrap_or_default()
                }),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return scripts;
        }
    }
}

fn instance_tag(i: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    support::tag(i.tags(), key).map(str::to_string)
}

fn data_volume(sdk: &support::Sdk, stack: &str) -> aws_sdk_ec2::types::Volume {
    let out = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .filters(support::filter("tag:Name", &format!("{stack}-data")))
                .send(),
        )
        .unwrap();
    assert_eq!(out.volumes().len(), 1, "one data volume");
    out.volumes()[0].clone()
}

fn attached_to(v: &aws_sdk_ec2::types::Volume) -> Option<String> {
    v.attachments()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_string)
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

/// The stack's one instance that is not terminated (stopped ones count: an old instance left
/// stopped would be a second one).
fn the_instance(sdk: &support::Sdk, stack: &str) -> aws_sdk_ec2::types::Instance {
    let out = sdk
        .block_on(
            sdk.ec2
                .describe_instances()
                .filters(support::filter("tag:geusemaker:stack", stack))
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .values("stopping")
                        .values("stopped")
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let live: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect();
    assert_eq!(
        live.len(),
        1,
        "exactly one instance not terminated: {:?}",
        live.iter()
            .map(|i| (i.instance_id(), i.state()))
            .collect::<Vec<_>>()
    );
    live[0].clone()
}

/// AWS refuses to stop an instance of a one-time spot request; the proxy answers so.
fn spot_cannot_stop() -> support::proxy::Rule {
    support::proxy::Rule::ec2_error(
        &["Action=StopInstances"],
        "UnsupportedOperation",
        "You can't stop the Spot Instance because it is associated with a one-time Spot Instance request.",
    )
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
fn an_unhealthy_update_in_place_puts_the_previous_services_back() {
    let w = World::moto();
    let stack = support::stack_name("restore");
    rerun(&w, &stack, &[], &stand_ins(), None).success();
    let sdk = w.sdk();
    let vm = the_instance(&sdk, &stack);
    let id = vm.instance_id().unwrap().to_string();
    let fingerprint = instance_tag(&vm, "geusemaker:services").unwrap();

    let failing = support::stand_ins_with_n8n(support::http_stub(500, "down"));
    let out = rerun(&w, &stack, &["images=n8nio/n8n:2.40.7"], &failing, None);
    out.failure(1).stderr_has("the previous services are back");
    let sent = ssm_commands(&sdk, &stack);
    let update = sent
        .iter()
        .find(|c| c.contains("keep the running configuration"))
        .expect("the update was sent");
    let restore: Vec<&String> = sent
        .iter()
        .filter(|c| c.contains("the previous configuration back"))
        .collect();
    // One restore (an SDK retry of a send moto answered late may record it twice; the script
    // is the same and running it twice is harmless).
    assert!(!restore.is_empty(), "a restore command");
    assert!(
        restore.iter().all(|r| r == &restore[0]),
        "runs {:?}\n{}\n{}",
        w.state(&stack)["runs"],
        out.stdout,
        out.stderr
    );
    // The restore puts back what this update kept, not an older update's files.
    let kept = update
        .split("mv -f '")
        .nth(1)
        .and_then(|rest| rest.split("' '").nth(1))
        .and_then(|target| target.split('\'').next())
        .expect("the update keeps the files under a name of its own");
    assert!(
        kept.ends_with(".tar") && kept.contains("/var/lib/geusemaker/previous/"),
        "{kept}"
    );
    assert!(
        restore[0].contains(&format!("[ -f '{kept}' ]")),
        "{}",
        restore[0]
    );
    let dir = tempfile::tempdir().unwrap();
    support::shellcheck(dir.path(), "restore", restore[0]);
    let vm = the_instance(&sdk, &stack);
    assert_eq!(vm.instance_id(), Some(id.as_str()));
    assert_eq!(
        instance_tag(&vm, "geusemaker:services").as_deref(),
        Some(fingerprint.as_str()),
        "the instance still runs the previous services"
    );
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );

    // Once n8n is healthy again, the next run applies the change.
    rerun(&w, &stack, &["images=n8nio/n8n:2.40.7"], &stand_ins(), None)
        .success()
        .stdout_has("~ services: n8n: image");
}

#[test]
fn an_unhealthy_replacement_brings_the_old_instance_back_with_its_volume() {
    let w = World::moto();
    let stack = support::stack_name("putback");
    rerun(&w, &stack, &[], &stand_ins(), None).success();
    let sdk = w.sdk();
    let old = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();

    let failing = support::stand_ins_with_n8n(support::http_stub(500, "down"));
    let proxy =
        support::proxy::FaultProxy::start(&support::moto().endpoint, vec![spot_cannot_stop()]);
    let out = rerun(
        &w,
        &stack,
        &["instance_type=t3.large"],
        &failing,
        Some(&proxy.endpoint()),
    );
    out.failure(1).stderr_has("the data volume goes back to");
    assert_eq!(
        proxy.hit_count(),
        0,
        "StopInstances was not called on a spot instance"
    );
    let sent = ssm_commands(&sdk, &stack);
    let released = sent
        .iter()
        .position(|c| c.contains("stop the services and release the data volume"))
        .expect("the old instance released the volume");
    let resumed = sent
        .iter()
        .position(|c| c.contains("the data volume and the services back"))
        .expect("the old instance took it back and started its services");
    assert_ne!(released, resumed);
    let vm = the_instance(&sdk, &stack);
    assert_eq!(
        vm.instance_id(),
        Some(old.as_str()),
        "the old instance is back"
    );
    assert_eq!(
        vm.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running")
    );
    assert_eq!(vm.instance_type().map(|t| t.as_str()), Some("t3.medium"));
    assert_eq!(
        attached_to(&data_volume(&sdk, &stack)).as_deref(),
        Some(old.as_str())
    );
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );
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
fn a_replacement_killed_at_any_point_is_put_right_by_the_next_run() {
    let w = World::moto();
    let ins = stand_ins();
    // The requests a whole replacement makes, from a reference run's summary.
    let reference = support::stack_name("swapref");
    rerun(&w, &reference, &[], &ins, None).success();
    let whole = rerun(&w, &reference, &["instance_type=t3.large"], &ins, None);
    whole.success();
    let requests: usize = whole
        .stdout
        .split(" AWS requests")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in the run summary:\n{}", whole.stdout));
    assert!(requests > 20, "{requests} requests");

    let stack = support::stack_name("swapkill");
    rerun(&w, &stack, &[], &ins, None).success();
    let sdk = w.sdk();
    let volume = data_volume(&sdk, &stack).volume_id().unwrap().to_string();
    let fs = w.state(&stack)["outputs"]["file_system_id"].clone();
    // Kill points spread over the replacement's requests; each crash is followed by a run to
    // the same type, and the next crash goes back the other way.
    let points: Vec<usize> = (0..6).map(|i| 12 + i * (requests - 14) / 5).collect();
    let mut recovered = 0;
    for (n, k) in points.into_iter().enumerate() {
        let target = if n % 2 == 0 { "t3.large" } else { "t3.medium" };
        let set = format!("instance_type={target}");
        let mut cmd = w.cmd();
        cmd.args([
            "run",
            "dev",
            "--name",
            &stack,
            "--set",
            "health_timeout=20",
            "--set",
            "allowed_cidr=192.0.2.1/32",
            "--set",
            &set,
        ])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", &ins)
        .env("GEUSEMAKER_TEST_KILL_AFTER_RESPONSES", k.to_string());
        let killed = Outcome::from(cmd.output().unwrap());
        assert_eq!(
            killed.code, -1,
            "k={k}: expected death by SIGKILL\n{}\n{}",
            killed.stdout, killed.stderr
        );

        let again = rerun(&w, &stack, &[&set], &ins, None);
        again.success();
        if again
            .stderr
            .contains("an earlier run stopped in the middle")
        {
            recovered += 1;
        }
        let vm = the_instance(&sdk, &stack);
        let id = vm.instance_id().unwrap().to_string();
        assert_eq!(
            vm.instance_type().map(|t| t.as_str()),
            Some(target),
            "k={k}"
        );
        let v = data_volume(&sdk, &stack);
        assert_eq!(
            v.volume_id(),
            Some(volume.as_str()),
            "k={k}: the same data volume"
        );
        assert_eq!(
            attached_to(&v).as_deref(),
            Some(id.as_str()),
            "k={k}: attached to the live instance"
        );
        let state = w.state(&stack);
        assert_eq!(
            state["outputs"]["file_system_id"], fs,
            "k={k}: the same EFS"
        );
        assert_eq!(
            state["values"]["update_in_progress"],
            serde_json::Value::Null,
            "k={k}"
        );
    }
    assert!(
        recovered >= 2,
        "the kills land inside replacements ({recovered} recovered)"
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

#[test]
fn an_update_that_fails_before_its_health_gate_is_undone_at_once() {
    let w = World::moto();
    let ins = stand_ins();

    // The update script fails on the instance: the previous services are put back at once.
    let stack = support::stack_name("scriptfail");
    rerun(&w, &stack, &[], &ins, None).success();
    let sdk = w.sdk();
    let vm = the_instance(&sdk, &stack);
    let id = vm.instance_id().unwrap().to_string();
    let fingerprint = instance_tag(&vm, "geusemaker:services").unwrap();
    let failed = support::proxy::Rule::json(
        &["\"CommandId\""],
        r#"{"CommandId":"c","InstanceId":"i","Status":"Failed","StatusDetails":"Failed","ResponseCode":1,"StandardOutputContent":"","StandardErrorContent":""}"#,
    )
    .first(1);
    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![failed]);
    rerun(
        &w,
        &stack,
        &["images=n8nio/n8n:2.40.7"],
        &ins,
        Some(&proxy.endpoint()),
    )
    .failure(1)
    .stderr_has("the services update failed on")
    .stderr_has("the previous services are back");
    assert!(ssm_commands(&sdk, &stack)
        .iter()
        .any(|c| c.contains("the previous configuration back")));
    let vm = the_instance(&sdk, &stack);
    assert_eq!(vm.instance_id(), Some(id.as_str()), "the same instance");
    assert_eq!(
        instance_tag(&vm, "geusemaker:services").as_deref(),
        Some(fingerprint.as_str())
    );
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );

    // The data volume cannot be attached to the new instance: the old one gets it back.
    let stack = support::stack_name("attachfail");
    rerun(&w, &stack, &[], &ins, None).success();
    let old = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();
    let refused = support::proxy::Rule::ec2_error(
        &["Action=AttachVolume"],
        "VolumeInUse",
        "the volume is attached to another instance",
    )
    .first(1);
    let proxy = support::proxy::FaultProxy::start(
        &support::moto().endpoint,
        vec![refused, spot_cannot_stop()],
    );
    rerun(
        &w,
        &stack,
        &["instance_type=t3.large"],
        &ins,
        Some(&proxy.endpoint()),
    )
    .failure(1)
    .stderr_has("the data volume goes back to");
    let vm = the_instance(&sdk, &stack);
    assert_eq!(
        vm.instance_id(),
        Some(old.as_str()),
        "the old instance serves again"
    );
    assert_eq!(
        attached_to(&data_volume(&sdk, &stack)).as_deref(),
        Some(old.as_str())
    );
    assert!(ssm_commands(&sdk, &stack)
        .iter()
        .any(|c| c.contains("the data volume and the services back")));
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );
}

/// Plays the instance's side of the boot channel (issue 19): once the run has launched its
/// instance, writes this run's boot document to `/geusemaker-boot/<stack>` as the boot
/// script would (`docs`, one after another, `gap` apart).
fn play_boot(w: &World, stack: &str, docs: &[serde_json::Value], gap: Duration) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        assert!(
            Instant::now() < deadline,
            "the run never launched its instance"
        );
        if let Ok(text) = std::fs::read_to_string(w.state_path(stack)) {
            let state: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            let launched = state["resources"].as_array().is_some_and(|r| {
                r.iter()
                    .any(|r| r["kind"] == "ec2:instance" && r["id"].is_string())
            });
            if launched {
                break state["runs"].as_array().unwrap().last().unwrap()["id"]
                    .as_str()
                    .unwrap()
                    .to_string();
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let sdk = w.sdk();
    for (i, doc) in docs.iter().enumerate() {
        let mut doc = doc.clone();
        doc["run"] = run.clone().into();
        sdk.write_boot_channel(stack, &doc);
        if i + 1 < docs.len() {
            std::thread::sleep(gap);
        }
    }
}

/// `run dev` on `stack` in the background (the test plays the instance meanwhile), the
/// services answered as `endpoints` says (GEUSEMAKER_HEALTH_ENDPOINTS).
fn deploy_in_background(
    w: &World,
    stack: &str,
    health_timeout: u32,
    endpoints: &str,
) -> std::process::Child {
    w.cmd()
        .args(["run", "dev", "--name", stack])
        .args(["--set", &format!("health_timeout={health_timeout}")])
        .args(["--set", "allowed_cidr=192.0.2.1/32"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", endpoints)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Every service at an address where nothing answers.
fn dead_endpoints() -> String {
    let dead = support::free_port();
    ["n8n", "ollama", "qdrant", "crawl4ai", "postgres"]
        .map(|s| format!("{s}=127.0.0.1:{dead}"))
        .join(",")
}

/// The deploy shows the instance's boot as it goes — each step with its time, in order — and
/// keeps the timeline in the state; `status` shows it.
#[test]
fn the_deploy_follows_the_boot_channel_and_keeps_its_timeline() {
    let w = World::moto();
    let stack = support::stack_name("bootch");
    // n8n comes up late (its first answers are 503): the boot is reported meanwhile.
    let n8n = support::flaky_stub(4);
    let child = deploy_in_background(&w, &stack, 120, &support::stand_ins_with_n8n(n8n));
    let step = |s: &str, n: u64| serde_json::json!({ "step": s, "seconds": n });
    let pull = |name: &str, state: &str, bytes: u64, seconds: u64| serde_json::json!({ "kind": "image", "name": name, "state": state, "bytes": bytes, "seconds": seconds });
    play_boot(
        &w,
        &stack,
        &[
            serde_json::json!({ "step": "EFS", "state": "running", "at": "2026-12-02T10:00:40Z",
                                "done": [step("packages", 40)] }),
            serde_json::json!({ "step": "pull the images", "state": "running", "at": "2026-12-02T10:00:43Z",
                                "done": [step("packages", 40), step("EFS", 3)],
                                "pulls": [pull("postgres:16.15", "done", 431_900_000, 12),
                                          pull("n8nio/n8n:2.41.3", "pulling", 0, 0)] }),
            serde_json::json!({ "step": "finished", "state": "done", "at": "2026-12-02T10:02:00Z",
                                "done": [step("packages", 40), step("EFS", 3), step("pull the images", 77)],
                                "pulls": [pull("postgres:16.15", "done", 431_900_000, 12),
                                          pull("n8nio/n8n:2.41.3", "done", 1_210_000_000, 71)] }),
        ],
        Duration::from_secs(6),
    );
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.success();
    let at = |needle: &str| {
        out.stdout
            .find(needle)
            .unwrap_or_else(|| panic!("missing {needle}:\n{}", out.stdout))
    };
    assert!(at("boot: packages (40s)") < at("boot: EFS (3s)"));
    assert!(at("boot: EFS (3s)") < at("boot: image postgres:16.15 pulled (431.9 MB, 12s)"));
    assert!(
        at("boot: image postgres:16.15 pulled")
            < at("boot: image n8nio/n8n:2.41.3 pulled (1.2 GB, 71s)")
    );
    at("boot: pull the images (77s)");
    for once in ["boot: packages", "boot: image postgres:16.15"] {
        assert_eq!(out.stdout.matches(once).count(), 1, "each step once");
    }
    let state = w.state(&stack);
    let boot = &state["values"]["boot"];
    assert_eq!(boot["state"], "done", "{boot}");
    assert_eq!(boot["done"].as_array().unwrap().len(), 3);
    assert_eq!(boot["pulls"].as_array().unwrap().len(), 2);
    let instance = w.sdk().stack_instances(&stack)[0]
        .instance_id()
        .unwrap()
        .to_string();
    assert_eq!(
        boot["on"],
        instance.as_str(),
        "the timeline says which instance it is of"
    );
    w.run(&["status", &stack])
        .success()
        .stdout_has("Boot      packages 40s · EFS 3s · pull the images 77s (120s in all)")
        .stdout_has("Pulled    2 images, 1.6 GB (longest n8nio/n8n:2.41.3, 71s)");
    // Destroy removes the channel too (it is in no ledger, and no secret); the secrets stay.
    let out = w.run(&["destroy", &stack, "--yes"]);
    out.success();
    assert!(
        !out.stdout.contains("geusemaker-boot") && !out.stdout.contains("parameter boot"),
        "not listed as a resource or a secret:\n{}",
        out.stdout
    );
    let sdk = w.sdk();
    let channel = sdk.block_on(
        sdk.ssm
            .get_parameter()
            .name(format!("/geusemaker-boot/{stack}"))
            .send(),
    );
    assert!(channel.is_err(), "the channel is gone: {channel:?}");
    assert_eq!(w.sdk().leftovers(&stack).parameters.len(), 5);
}

/// A failed boot reported on the channel ends the run at once — no wait for the health
/// timeout — naming the step, and the usual clean-up removes what the run created.
#[test]
fn a_boot_failure_on_the_channel_ends_the_run_at_once() {
    let w = World::moto();
    let stack = support::stack_name("bootfail");
    let mut child = deploy_in_background(&w, &stack, 900, &dead_endpoints());
    play_boot(
        &w,
        &stack,
        &[serde_json::json!({
            "step": "Docker images", "state": "failed", "at": "2026-12-02T10:01:00Z",
            "done": [{ "step": "packages", "seconds": 40 }],
            "error": { "step": "Docker images", "line": 212 },
        })],
        Duration::ZERO,
    );
    // Ends on the report, long before the 900 s timeout (a bound for a hung run, not a speed).
    let deadline = Instant::now() + Duration::from_secs(240);
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the run kept waiting after the boot reported its failure");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.failure(1)
        .stderr_has("the instance's boot failed in step `Docker images`, line 212")
        .stderr_has("automatic rollback removed");
    assert!(!out.stderr.contains("not healthy after"), "{}", out.stderr);
    let left = w.sdk().leftovers(&stack);
    assert!(left.non_data().is_empty(), "{left:?}");
    assert_eq!(w.state(&stack)["values"]["boot"]["state"], "failed");
}

/// Plays the instance's side of an in-place update: once the run has begun its update (the
/// stack's `update_in_progress` names it), `doc` is written to the boot channel as the
/// update script would.
fn play_update(w: &World, stack: &str, doc: serde_json::Value) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let run = loop {
        assert!(Instant::now() < deadline, "the run never began its update");
        let id = w.state(stack)["values"]["update_in_progress"]["id"].clone();
        if let Some(id) = id.as_str() {
            break id.to_string();
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut doc = doc;
    doc["run"] = run.into();
    w.sdk().write_boot_channel(stack, &doc);
}

/// An in-place update reports like a boot: its steps and image pulls are shown while the CLI
/// waits for the SSM command, and a step it reports failed ends the wait at once, named, with
/// the previous services put back.
#[test]
fn an_update_in_place_shows_its_steps_and_names_a_failed_one() {
    let w = World::moto();
    let stack = support::stack_name("updsteps");
    rerun(&w, &stack, &[], &stand_ins(), None).success();
    // The instance takes its time: the first answers about the update command say it is still
    // running (moto finishes every command at once).
    let in_progress = || {
        support::proxy::Rule::json(
            &["CommandId", "InstanceId"],
            r#"{"CommandId":"c","InstanceId":"i","Status":"InProgress","StatusDetails":"InProgress","ResponseCode":-1,"StandardOutputContent":"","StandardErrorContent":""}"#,
        )
        .first(4)
    };
    let update = |image: &str, proxy: &support::proxy::FaultProxy| {
        w.cmd()
            .args(["run", "dev", "--name", &stack, "--set", "health_timeout=20"])
            .args([
                "--set",
                "allowed_cidr=192.0.2.1/32",
                "--set",
                &format!("images={image}"),
            ])
            .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let step = |s: &str, n: u64| serde_json::json!({ "step": s, "seconds": n });

    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![in_progress()]);
    let child = update("n8nio/n8n:2.40.7", &proxy);
    play_update(
        &w,
        &stack,
        serde_json::json!({
            "step": "finished", "state": "done", "at": "2026-12-02T10:00:40Z",
            "done": [step("keep the running configuration", 1), step("pull the images", 21),
                     step("start the stack", 6)],
            "pulls": [{ "kind": "image", "name": "n8nio/n8n:2.40.7", "state": "done",
                        "bytes": 431_900_000u64, "seconds": 19 }],
        }),
    );
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.success()
        .stdout_has("update: pull the images (21s)")
        .stdout_has("update: image n8nio/n8n:2.40.7 pulled (431.9 MB, 19s)")
        .stdout_has("update: start the stack (6s)");
    assert_eq!(
        w.state(&stack)["values"]["boot"]["state"],
        serde_json::Value::Null,
        "an update's steps are not taken for the boot's timeline"
    );

    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![in_progress()]);
    let child = update("n8nio/n8n:2.40.6", &proxy);
    play_update(
        &w,
        &stack,
        serde_json::json!({
            "step": "pull the images", "state": "failed", "at": "2026-12-02T10:05:40Z",
            "done": [step("keep the running configuration", 1)],
            "pulls": [{ "kind": "image", "name": "n8nio/n8n:2.40.6", "state": "failed", "seconds": 40 }],
            "error": { "step": "pull the images", "line": 97 },
        }),
    );
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.failure(1)
        .stdout_has("update: image n8nio/n8n:2.40.6 FAILED to pull after 40s")
        .stderr_has("the services update failed in step `pull the images`, line 97")
        .stderr_has("the previous services are back");
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );
}

/// The services can answer before the boot has finished (its last steps: backups, snapshots):
/// the deploy follows the boot to its end, and a step that fails after the services are
/// healthy fails the deploy too.
#[test]
fn a_boot_step_failing_after_the_services_answer_still_fails_the_deploy() {
    let w = World::moto();
    let stack = support::stack_name("bootlate");
    // n8n answers only once the boot has reported (the test opens the gate).
    let (n8n, gate) = support::gated_stub();
    let child = deploy_in_background(&w, &stack, 300, &support::stand_ins_with_n8n(n8n));
    let done = [
        serde_json::json!({ "step": "packages", "seconds": 40 }),
        serde_json::json!({ "step": "start the stack", "seconds": 9 }),
    ];
    play_boot(
        &w,
        &stack,
        &[
            serde_json::json!({ "step": "nightly backups", "state": "running",
                              "at": "2026-12-02T10:01:00Z", "done": done }),
        ],
        Duration::ZERO,
    );
    gate.open();
    // The services answer; then the boot's last step fails.
    let deadline = Instant::now() + Duration::from_secs(120);
    while gate.ok_served() < 1 {
        assert!(
            Instant::now() < deadline,
            "the deploy never checked n8n again"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let run = w.state(&stack)["runs"].as_array().unwrap().last().unwrap()["id"].clone();
    w.sdk().write_boot_channel(
        &stack,
        &serde_json::json!({ "run": run, "step": "nightly backups", "state": "failed",
                             "at": "2026-12-02T10:01:30Z", "done": done,
                             "error": { "step": "nightly backups", "line": 301 } }),
    );
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.failure(1)
        .stdout_has("boot: start the stack (9s)")
        .stderr_has("the instance's boot failed in step `nightly backups`, line 301");
    assert_eq!(w.state(&stack)["values"]["boot"]["state"], "failed");
}

/// A model the instance could not pull will not come: the deploy ends at once, naming it,
/// instead of waiting for Ollama's check to time out.
#[test]
fn a_model_that_cannot_be_pulled_ends_the_deploy_at_once() {
    let w = World::moto();
    let stack = support::stack_name("modelfail");
    let child = deploy_in_background(&w, &stack, 900, &dead_endpoints());
    play_boot(
        &w,
        &stack,
        &[serde_json::json!({
            "step": "finished", "state": "done", "at": "2026-12-02T10:03:00Z",
            "done": [{ "step": "packages", "seconds": 40 }],
            "pulls": [{ "kind": "model", "name": "llama3.2:3b", "state": "failed", "seconds": 300 }],
        })],
        Duration::ZERO,
    );
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.failure(1)
        .stdout_has("boot: model llama3.2:3b FAILED to pull after 300s")
        .stderr_has("the instance could not pull model `llama3.2:3b`")
        .stderr_has("/var/log/geusemaker-models.log");
    assert!(!out.stderr.contains("not healthy after"), "{}", out.stderr);
}
