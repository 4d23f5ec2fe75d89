//! `monitor`: a rollback after repeated failures, and spot interruptions (a notice on the
//! channel, an instance gone) answered by relaunching the stack on its data.

use crate::support::{flaky_stub, stand_ins_with_n8n};

use super::*;

/// The instance a stack's state names, and the instance its data volume is attached to.
fn instance_and_volume_attachment(w: &World, stack: &str) -> (String, Option<String>) {
    let state = w.state(stack);
    let instance = state["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let volume = state["outputs"]["data_volume_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sdk = w.sdk();
    let v = sdk
        .block_on(sdk.ec2.describe_volumes().volume_ids(&volume).send())
        .unwrap();
    let attached = v.volumes()[0]
        .attachments()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_string);
    (instance, attached)
}

#[test]
fn monitor_rolls_back_after_three_failures_but_not_after_one() {
    let w = World::moto();
    let stack = support::stack_name("mon");
    deploy_dev(&w, &stack);
    let (first_instance, _) = instance_and_volume_attachment(&w, &stack);

    // One failed check: a warning, no rollback.
    let once = stand_ins_with_n8n(flaky_stub(1));
    let out = run_with(
        &w,
        &["monitor", &stack, "--interval", "1s", "--rounds", "3"],
        &once,
    );
    out.success()
        .stdout_has("n8n warning ×1")
        .stdout_has("stopped monitoring");
    assert!(w.state(&stack)["rollback_history"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(instance_and_volume_attachment(&w, &stack).0, first_instance);
    let log =
        std::fs::read_to_string(w.home.path().join("logs").join(format!("{stack}.log"))).unwrap();
    assert!(
        log.contains("health check") && log.contains("service=n8n"),
        "checks are logged:\n{log}"
    );

    // Three in a row: critical, so the rollback recipe runs and the snapshot is relaunched.
    let thrice = stand_ins_with_n8n(flaky_stub(3));
    let out = run_with(
        &w,
        &["monitor", &stack, "--interval", "1s", "--rounds", "3"],
        &thrice,
    );
    out.success()
        .stdout_has("n8n critical ×3")
        .stderr_has("n8n failed 3 checks in a row")
        .stdout_has("rolled back and relaunched");
    let state = w.state(&stack);
    let rb = state["rollback_history"].as_array().unwrap();
    assert_eq!(rb.len(), 1);
    assert_eq!(rb[0]["trigger"], "health_check_failed");
    assert_eq!(rb[0]["success"], true);
    let (instance, attached) = instance_and_volume_attachment(&w, &stack);
    assert_ne!(instance, first_instance, "a new instance");
    assert_eq!(
        attached.as_deref(),
        Some(instance.as_str()),
        "the data volume follows it"
    );

    // status shows the rollback.
    run_with(&w, &["status", &stack], &stand_ins())
        .success()
        .stdout_has("trigger health_check_failed · succeeded");

    // With rollback off, the same failures only warn.
    let out = run_with(
        &w,
        &[
            "monitor",
            &stack,
            "--interval",
            "1s",
            "--rounds",
            "3",
            "--no-rollback",
        ],
        &stand_ins_with_n8n(flaky_stub(3)),
    );
    out.success()
        .stderr_has("would roll back, but rollback is off");
    assert_eq!(
        w.state(&stack)["rollback_history"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

/// A spot interruption notice reported on the boot channel (the instance's timer does that
/// about two minutes ahead) makes `monitor` start the replacement while the instance still
/// runs — not once it is gone (issue 19).
#[test]
fn a_spot_notice_on_the_channel_starts_the_replacement_before_the_instance_is_gone() {
    let w = World::moto();
    let stack = support::stack_name("notice");
    deploy_dev(&w, &stack);
    let (first_instance, _) = instance_and_volume_attachment(&w, &stack);
    let sdk = w.sdk();
    let monitor_once = || {
        Outcome::from(
            w.cmd()
                .args(["monitor", &stack, "--interval", "1s", "--rounds", "1"])
                .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
                .output()
                .unwrap(),
        )
    };
    let run = w.state(&stack)["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let token = w.state(&stack)["values"]["spot_notice_tokens"][&run]
        .as_str()
        .expect("the boot's notice token is kept in the state")
        .to_string();
    assert_eq!(token.len(), 32);
    // A notice that is not of the boot that launched the instance — written with credentials
    // taken from an earlier instance of the stack, which can read the run id on the instance's
    // tags but not the boot's token — starts nothing.
    for (forged_run, forged_token) in [
        ("20261201T000000Z-0ld0ne", token.as_str()),
        (run.as_str(), "00000000000000000000000000000000"),
        (run.as_str(), ""),
    ] {
        let mut forged = serde_json::json!({
            "run": forged_run, "step": "spot interruption notice",
            "state": "notice", "at": "2026-12-02T09:00:00Z", "done": [],
            "instance": first_instance,
            "notice": { "action": "terminate", "time": "2026-12-02T09:02:00Z" },
        });
        if !forged_token.is_empty() {
            forged["token"] = forged_token.into();
        }
        sdk.write_boot_channel(&stack, &forged);
        no_notice_acted_on(monitor_once());
        assert_eq!(w.state(&stack)["rollback_history"], serde_json::json!([]));
    }
    // What the watcher on the instance writes (the instance itself is still running).
    let notice = serde_json::json!({
        "run": run, "step": "spot interruption notice",
        "state": "notice", "at": "2026-12-02T10:00:00Z", "done": [],
        "instance": first_instance,
        "notice": { "action": "terminate", "time": "2026-12-02T10:02:00Z" },
        "token": token,
    });
    sdk.write_boot_channel(&stack, &notice);
    assert_eq!(
        sdk.stack_instances(&stack).len(),
        1,
        "the noticed instance still runs when the monitor looks"
    );
    monitor_once()
        .success()
        .stderr_has(&format!(
            "spot interruption notice for {first_instance} (reported 2026-12-02T10:00:00Z: terminate at 2026-12-02T10:02:00Z)"
        ))
        .stdout_has("rolled back and relaunched")
        .stdout_has("the stack was down at most ");
    let rb = &w.state(&stack)["rollback_history"][0];
    assert_eq!(rb["trigger"], "spot_interruption");
    assert!(rb["down_seconds"].is_u64(), "{rb}");
    // The stack's log and `status` say when the notice came and how long the stack was down.
    let log = std::fs::read_to_string(w.home.path().join(format!("logs/{stack}.log"))).unwrap();
    assert!(
        log.contains("monitor: rollback finished") && log.contains("down_seconds"),
        "{log}"
    );
    let status = w.run(&["status", &stack]);
    status
        .success()
        .stdout_has("trigger spot_interruption · succeeded · down at most ")
        .stdout_has(&format!(
            "why: spot interruption notice for {first_instance} (reported 2026-12-02T10:00:00Z: terminate at 2026-12-02T10:02:00Z)"
        ));
    let (instance, attached) = instance_and_volume_attachment(&w, &stack);
    assert_ne!(instance, first_instance);
    assert_eq!(
        attached.as_deref(),
        Some(instance.as_str()),
        "data volume moved"
    );
    // The new instance's boot is this relaunch's: the old notice does not fire again.
    no_notice_acted_on(monitor_once());
}

/// A monitor round that found no spot notice to act on.
fn no_notice_acted_on(out: Outcome) {
    out.success();
    assert!(
        !out.stderr.contains("spot interruption notice"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_spot_interruption_relaunches_the_stack_with_its_data() {
    let w = World::moto();
    let stack = support::stack_name("spot");
    run_with(
        &w,
        &[
            "run",
            "dev",
            "--name",
            &stack,
            "--set",
            "health_timeout=30",
            "--set",
            "allowed_cidr=192.0.2.1/32",
            "--set",
            "fallback_types=t3.large",
        ],
        &stand_ins(),
    )
    .success();
    let (first_instance, attached) = instance_and_volume_attachment(&w, &stack);
    assert_eq!(attached.as_deref(), Some(first_instance.as_str()));
    let fs_before = w.state(&stack)["outputs"]["file_system_id"].clone();

    // AWS takes the spot instance back (moto cannot interrupt: terminate it through the API)…
    let sdk = w.sdk();
    sdk.block_on(
        sdk.ec2
            .terminate_instances()
            .instance_ids(&first_instance)
            .send(),
    )
    .unwrap();
    // …and has no more spot t3.medium anywhere: the tier's fallback rules pick the next type.
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::ec2_error(
            &[
                "Action=RunInstances",
                "InstanceType=t3.medium",
                "InstanceMarketOptions.MarketType=spot",
            ],
            "InsufficientInstanceCapacity",
            "We currently do not have sufficient t3.medium capacity.",
        )],
    );
    let out = w
        .cmd()
        .args(["monitor", &stack, "--interval", "1s", "--rounds", "1"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    let out = Outcome::from(out);
    out.success()
        .stderr_has(&format!("spot instance {first_instance} is terminated"))
        .stderr_has("no spot capacity for t3.medium in us-east-1a")
        .stderr_has("launched spot t3.large")
        .stdout_has("rolled back and relaunched");
    assert_eq!(
        proxy.hit_count(),
        1,
        "the data volume keeps the relaunch in its zone"
    );
    let state = w.state(&stack);
    let rb = &state["rollback_history"][0];
    assert_eq!(rb["trigger"], "spot_interruption");
    assert_eq!(rb["success"], true);
    let (instance, attached) = instance_and_volume_attachment(&w, &stack);
    assert_ne!(instance, first_instance);
    assert_eq!(
        attached.as_deref(),
        Some(instance.as_str()),
        "data volume re-attached"
    );
    assert_eq!(state["outputs"]["file_system_id"], fs_before, "same EFS");
    assert_eq!(state["status"], "running");
    let live = sdk.stack_instances(&stack);
    assert_eq!(live.len(), 1, "exactly one instance afterwards");
    assert_eq!(
        live[0].instance_lifecycle().map(|l| l.as_str()),
        Some("spot")
    );
    assert_eq!(
        live[0].instance_type().map(|t| t.as_str()),
        Some("t3.large")
    );
}
