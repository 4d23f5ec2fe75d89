//! The boot channel (issue 19): the run follows the instance's boot and update steps as it
//! writes them, keeps the timeline, and ends at once when a step fails.

use super::*;

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
