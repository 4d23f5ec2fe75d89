//! Looking at stacks: `list`, `status` and `cost` (also of vanished resources, unknown stacks
//! and damaged state), and `config`.

use super::*;

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
