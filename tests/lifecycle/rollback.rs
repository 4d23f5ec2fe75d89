//! Automatic rollback of a failed run (its data kept, or everything with `--keep-failed`) and
//! `rollback` to the last healthy deploy.

use super::*;

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
