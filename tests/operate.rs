//! Living with a stack (issue 7): list, status, cost, monitor, logs and config, through the
//! binary against moto with local stand-ins for the services.

use crate::support;

use support::proxy::{FaultProxy, Rule};
use support::{flaky_stub, stand_ins, stand_ins_with_n8n, Outcome, World};

fn run_with(w: &World, args: &[&str], endpoints: &str) -> Outcome {
    let out = w
        .cmd()
        .args(args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", endpoints)
        .output()
        .unwrap();
    Outcome::from(out)
}

fn deploy_dev(w: &World, stack: &str) {
    run_with(
        w,
        &[
            "run",
            "--name",
            stack,
            "--set",
            "health_timeout=30",
            "--set",
            "allowed_cidr=192.0.2.1/32",
        ],
        &stand_ins(),
    )
    .success();
}

fn json(out: &Outcome) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
}

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
fn status_list_and_cost_describe_a_deployed_stack() {
    let w = World::moto();
    let stack = support::stack_name("ops");
    // A setting supplies the recipe's instance_type (no --set): settings beat recipe defaults.
    w.run(&["config", "set", "deploy.instance_type", "t3.large"])
        .success()
        .stdout_has("deploy.instance_type = t3.large");
    deploy_dev(&w, &stack);
    assert_eq!(w.state(&stack)["params"]["instance_type"], "t3.large");
    let endpoints = stand_ins();

    // status --json: the instance, the five services, nothing missing.
    let out = run_with(&w, &["status", &stack, "--json"], &endpoints);
    out.success();
    let s = json(&out);
    assert_eq!(s["name"], stack.as_str());
    assert_eq!(s["tier"], "dev");
    assert_eq!(s["status"], "running");
    assert_eq!(s["instance"]["state"], "running");
    assert_eq!(s["instance"]["instance_type"], "t3.large");
    assert_eq!(s["instance"]["market"], "spot");
    let services = s["services"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|x| x["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "postgres",
            "n8n",
            "ollama",
            "qdrant",
            "crawl4ai",
            "n8n-runner"
        ]
    );
    // The runner declares no health check: listed, not checked.
    let (runner, checked) = services.split_last().unwrap();
    assert_eq!(runner["status"], "unknown");
    assert_eq!(runner["error"], "no health check declared");
    for svc in checked {
        assert_eq!(svc["status"], "healthy", "{svc}");
        assert_eq!(svc["consecutive_failures"], 0);
        assert!(svc["latency_ms"].as_i64().is_some());
    }
    assert_eq!(
        s["missing"].as_array().unwrap().len(),
        0,
        "{}",
        s["missing"]
    );
    assert!(s["last_rollback"].is_null());
    assert!(s["load_balancer"].is_null() && s["cloudfront"].is_null());

    // status, for people: a header, a table, the rollback line.
    let out = run_with(&w, &["status", &stack], &endpoints);
    out.success()
        .stdout_has(&format!("Stack {stack} · dev tier · running · us-east-1"))
        .stdout_has("Last rollback  none");
    assert!(
        out.stdout.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.starts_with(&["SERVICE", "STATUS", "LATENCY", "FAILURES"])
        }),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("n8n-runner") && l.contains("no health check")),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.trim_start().starts_with("postgres") && l.contains("healthy")),
        "{}",
        out.stdout
    );

    // list: the stack with its tier, instance and cost so far.
    let out = w.run(&["list", "--json"]);
    out.success();
    let rows = json(&out);
    let row = &rows.as_array().unwrap()[0];
    assert_eq!(row["name"], stack.as_str());
    assert_eq!(row["tier"], "dev");
    assert_eq!(row["instance_state"], "running");
    assert_eq!(row["market"], "spot");
    assert!(row["url"].as_str().unwrap().starts_with("http://"));
    assert!(row["cost_to_date_usd"].as_f64().unwrap() > 0.0, "{row}");
    w.run(&["list"])
        .success()
        .stdout_has("NAME")
        .stdout_has("COST TO DATE")
        .stdout_has(&stack)
        .stdout_has("spot running");

    // cost: spot price history (moto's is one row) against the on-demand fallback price
    // (moto has no Price List API), storage measured, savings computed.
    let out = w.run(&["cost", &stack, "--json"]);
    out.success();
    let c = json(&out);
    assert_eq!(c["instance"]["market"], "spot");
    assert_eq!(c["instance"]["instance_type"], "t3.large");
    assert!(
        c["instance"]["source"]
            .as_str()
            .unwrap()
            .contains("spot price history in us-east-1"),
        "{c}"
    );
    assert_eq!(c["instance"]["on_demand_usd_per_hour"], 0.0832);
    assert!(c["instance"]["on_demand_source"]
        .as_str()
        .unwrap()
        .contains("bundled us-east-1 list price"));
    let items: Vec<&str> = c["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["item"].as_str().unwrap())
        .collect();
    assert!(items.iter().any(|i| i.starts_with("EFS fs-")), "{items:?}");
    assert!(
        items
            .iter()
            .any(|i| i.starts_with("EBS data volume vol-") && i.contains("(50 GB gp3)")),
        "{items:?}"
    );
    assert!(items.contains(&"EBS root volume (30 GB gp3)"), "{items:?}");
    let monthly = c["usd_per_month"].as_f64().unwrap();
    let on_demand = c["on_demand_usd_per_month"].as_f64().unwrap();
    assert!(on_demand > monthly && monthly > 0.0, "{c}");
    let savings = c["savings_pct"].as_f64().unwrap();
    assert!((savings - (1.0 - monthly / on_demand) * 100.0).abs() < 1e-6);
    assert!(c["cost_to_date_usd"].as_f64().unwrap() > 0.0);
    w.run(&["cost", &stack])
        .success()
        .stdout_has("Hourly rate")
        .stdout_has("Monthly estimate  ~$")
        .stdout_has("savings")
        .stdout_has("Cost to date      ~$")
        .stdout_has("`~` marks an estimate");

    // UI settings apply to every command.
    w.run(&["config", "set", "ui.emoji", "true"]).success();
    run_with(&w, &["status", &stack], &endpoints)
        .success()
        .stdout_has("🟢 healthy");
}

#[test]
fn vanished_resources_are_reported_not_fatal() {
    let w = World::moto();
    let stack = support::stack_name("lost");
    deploy_dev(&w, &stack);
    let state = w.state(&stack);
    let instance = state["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let sdk = w.sdk();
    // Someone terminates the instance behind our back.
    sdk.block_on(sdk.ec2.terminate_instances().instance_ids(&instance).send())
        .unwrap();

    let out = run_with(&w, &["status", &stack, "--json"], &stand_ins());
    out.success();
    let s = json(&out);
    assert_eq!(s["instance"]["state"], "terminated");
    let missing: Vec<&str> = s["missing"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(missing, [instance.as_str()], "{s}");
    run_with(&w, &["status", &stack], &stand_ins())
        .success()
        .stdout_has("Missing: 1 resource(s) in the ledger are gone from AWS")
        .stdout_has(&format!("ec2:instance {instance} (app)"));

    // Cost and list still answer; the instance no longer costs anything.
    let c = json(w.run(&["cost", &stack, "--json"]).success());
    assert!(c["instance"].is_null());
    assert!(
        c["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().unwrap().contains("the instance is terminated")),
        "{c}"
    );
    let rows = json(w.run(&["list", "--json"]).success());
    assert_eq!(rows[0]["instance_state"], "terminated");

    // Logs explain that there is no instance to read from.
    w.run(&["logs", &stack])
        .failure(1)
        .stderr_has(&format!("instance {instance} is terminated"))
        .stderr_has("rollback");
}

#[test]
fn unknown_stacks_and_damaged_state_get_clear_answers() {
    let w = World::offline();
    let stacks = w.home.path().join("stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    for cmd in [
        ["status", "nope"],
        ["cost", "nope"],
        ["monitor", "nope"],
        ["logs", "nope"],
    ] {
        w.run(&cmd)
            .failure(2)
            .stderr_has("no stack named `nope`")
            .stderr_has("there are no stacks yet");
    }
    std::fs::write(
        stacks.join("alpha.json"),
        "{ \"schema_version\": 1,\n  \"stack\": oops }",
    )
    .unwrap();
    w.run(&["status", "alpah"])
        .failure(2)
        .stderr_has("did you mean `alpha`?");
    w.run(&["status", "zzz-top"])
        .failure(2)
        .stderr_has("known stacks: alpha");
    // A damaged state file is named with its line, and list goes on without it.
    w.run(&["status", "alpha"])
        .failure(1)
        .stderr_has("alpha.json:2:");
    let out = w.run(&["list"]);
    out.success().stdout_has("alpha").stdout_has("unreadable");
    out.stderr_has("alpha.json:2:");
    w.run(&["status", "Bad_Name"])
        .failure(2)
        .stderr_has("stack name");
}

#[test]
fn config_get_set_list_and_a_malformed_file() {
    let w = World::offline();
    w.run(&["config", "get", "health.interval"])
        .success()
        .stdout_has("30s");
    w.run(&["config", "set", "health.interval", "45s"])
        .success();
    w.run(&["config", "get", "health.interval"])
        .success()
        .stdout_has("45s");
    w.run(&["config", "set", "health.failures", "zero"])
        .failure(2)
        .stderr_has("`zero` is not an integer from 1 to 100");
    w.run(&["config", "set", "health.failure", "2"])
        .failure(2)
        .stderr_has("did you mean `health.failures`?");
    let out = w.run(&["config", "list"]);
    out.success()
        .stdout_has("health.interval")
        .stdout_has("config.toml")
        .stdout_has("monitor.auto_rollback");
    let j = json(w.run(&["config", "list", "--json"]).success());
    assert_eq!(j["health.interval"], "45s");
    assert_eq!(j["health.failures"], 3);
    w.run(&["config", "unset", "health.interval"])
        .success()
        .stdout_has("30s (default)");

    // Precedence: the flag beats the setting, the setting beats AWS_REGION (us-east-1 here).
    w.run(&["config", "set", "aws.region", "eu-west-1"])
        .success();
    w.run(&["eval", "state::region()"])
        .success()
        .stdout_has("eu-west-1");
    w.run(&["eval", "--region", "us-west-2", "state::region()"])
        .success()
        .stdout_has("us-west-2");

    // A hand-edited mistake stops every command that reads settings, naming the line.
    let path = w.home.path().join("config.toml");
    std::fs::write(
        &path,
        "[health]\ninterval = \"30s\"\ncritical_ms = \"fast\"\n",
    )
    .unwrap();
    w.run(&["list"])
        .failure(2)
        .stderr_has("config.toml:3:15: health.critical_ms: expected an integer");
    w.run(&["run", "dev", "--name", "abc"])
        .failure(2)
        .stderr_has("config.toml:3:15");
    std::fs::write(&path, "[ui]\ncompact = true\n").unwrap();
    w.run(&["list"]).success();
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

#[test]
fn logs_are_fetched_through_ssm() {
    let w = World::moto();
    let stack = support::stack_name("logs");
    deploy_dev(&w, &stack);
    let instance = w.state(&stack)["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();

    // moto runs nothing and answers "Success" with no output: that is not "no log lines".
    w.run(&["logs", &stack, "--service", "n8n", "--since", "5m"])
        .failure(1)
        .stderr_has(&format!("instance {instance} did not run the log command"));
    let sdk = w.sdk();
    let commands = sdk
        .block_on(sdk.ssm.list_commands().instance_id(&instance).send())
        .unwrap();
    let sent: Vec<String> = commands
        .commands()
        .iter()
        .filter(|c| c.comment() == Some("geusemaker logs"))
        .flat_map(|c| {
            c.parameters()
                .and_then(|p| p.get("commands"))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .contains("compose.yaml' logs --no-color --timestamps --tail 300 --since '5m' 'n8n'"),
        "{}",
        sent[0]
    );

    w.run(&["logs", &stack, "--service", "n8m"])
        .failure(2)
        .stderr_has("did you mean `n8n`?");
    w.run(&["logs", &stack, "--since", "soon"])
        .failure(2)
        .stderr_has("--since");

    // An instance whose SSM agent has not registered: AWS answers InvalidInstanceId.
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::json_error(
            &["geusemaker logs"],
            "InvalidInstanceId",
            "Instances not in a valid state for account",
        )],
    );
    let out = w
        .cmd()
        .args(["logs", &stack])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("instance {instance} is not managed by SSM yet")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: the SSM agent registers"), "{stderr}");
    assert_eq!(proxy.hit_count(), 1);

    // What the command prints on a real instance, played by the proxy: its markers, then the
    // lines (none, some, or compose's failure).
    let answer = |output: &str| {
        let body = serde_json::json!({
            "CommandId": "c", "InstanceId": instance, "Status": "Success",
            "StandardOutputContent": output, "StandardErrorContent": "", "ResponseCode": 0,
        });
        FaultProxy::start(
            &support::moto().endpoint,
            vec![Rule::json(&["\"CommandId\"", &instance], &body.to_string())],
        )
    };
    let logs_via = |proxy: &FaultProxy| {
        support::Outcome::from(
            w.cmd()
                .args(["logs", &stack, "--service", "n8n", "--since", "5m"])
                .env("AWS_ENDPOINT_URL", proxy.endpoint())
                .output()
                .unwrap(),
        )
    };
    let proxy = answer("@@geusemaker-logs\n@@geusemaker-logs-exit=0\n");
    logs_via(&proxy)
        .success()
        .stderr_has("no log lines from n8n in the last 5m");
    let proxy = answer(
        "@@geusemaker-logs\ngeusemaker-n8n-1  | 2026-01-01T10:00:00Z Editor is now accessible\n@@geusemaker-logs-exit=0\n",
    );
    logs_via(&proxy)
        .success()
        .stdout_has("n8n        | Editor is now accessible");
    // The boot log (issue 19): its last lines, through the same kind of command.
    let proxy = answer("@@geusemaker-logs\ngeusemaker step: packages\ngeusemaker boot FAILED in step: packages (line 40)\n@@geusemaker-logs-exit=0\n");
    support::Outcome::from(
        w.cmd()
            .args(["logs", &stack, "--boot"])
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .output()
            .unwrap(),
    )
    .success()
    .stdout_has("geusemaker step: packages\ngeusemaker boot FAILED in step: packages (line 40)");
    // What went to the instance is the boot log's tail (the proxy only played the answer).
    let commands = sdk
        .block_on(sdk.ssm.list_commands().instance_id(&instance).send())
        .unwrap();
    assert!(
        commands.commands().iter().any(|c| c
            .parameters()
            .and_then(|p| p.get("commands"))
            .is_some_and(|c| c
                .iter()
                .any(|c| c.contains("tail -n 300 '/var/log/geusemaker-boot.log'")))),
        "{commands:?}"
    );
    w.run(&["logs", &stack, "--boot", "--service", "n8n"])
        .failure(2);
    let proxy = answer("@@geusemaker-logs\nno such service: n8n\n@@geusemaker-logs-exit=1\n");
    logs_via(&proxy)
        .failure(1)
        .stderr_has("`docker compose logs` failed on")
        .stderr_has("no such service: n8n");
}

/// Send SIGINT (Ctrl-C) to a child after `after`, and collect what it printed.
fn interrupt_after(mut cmd: std::process::Command, after: std::time::Duration) -> Outcome {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    Outcome::from(out)
}

#[test]
fn monitor_and_followed_logs_stop_cleanly_on_ctrl_c() {
    let w = World::moto();
    let stack = support::stack_name("ctrlc");
    deploy_dev(&w, &stack);
    let mut monitor = w.cmd();
    monitor
        .args(["monitor", &stack, "--interval", "1s"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins());
    let out = interrupt_after(monitor, std::time::Duration::from_secs(4));
    out.success().stdout_has("stopped monitoring");
    assert!(
        out.stdout.contains("n8n "),
        "at least one round ran:\n{}",
        out.stdout
    );
    assert!(
        !w.home
            .path()
            .join("stacks")
            .join(format!("{stack}.lock"))
            .exists()
            || w.run(&["unlock", &stack]).stdout.contains("not locked"),
        "no lock left behind"
    );

    // The instance answers with no new lines (moto itself runs nothing: the proxy plays the
    // command's answer).
    let instance = w.state(&stack)["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({
        "CommandId": "c", "InstanceId": instance, "Status": "Success",
        "StandardOutputContent": "@@geusemaker-logs\n@@geusemaker-logs-exit=0\n",
        "StandardErrorContent": "", "ResponseCode": 0,
    });
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::json(&["\"CommandId\"", &instance], &body.to_string())],
    );
    let mut follow = w.cmd();
    follow
        .args(["logs", &stack, "--follow"])
        .env("AWS_ENDPOINT_URL", proxy.endpoint());
    interrupt_after(follow, std::time::Duration::from_secs(3))
        .success()
        .stderr_has("stopped following the logs");
}
