//! `destroy` — of a healthy stack, of a name it does not know, of a deploy killed at any
//! point — and the locks runs leave: Ctrl-C releases its own, `unlock` clears a dead run's.

use std::process::Command;

use super::*;

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
