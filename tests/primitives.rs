//! Each primitive group exercised from small Rhai scripts through the binary, against moto
//! (and local stand-in servers where moto has no such service).

use crate::support;

use support::World;

/// Run `script` as a recipe on a fresh stack; returns the stack name.
fn run_ok(w: &World, prefix: &str, script: &str) -> (String, support::Outcome) {
    let stack = support::stack_name(prefix);
    let r = w.recipe(&format!("{stack}.rhai"), script);
    let out = w.run(&["run", r.to_str().unwrap(), "--name", &stack, "--yes"]);
    out.success();
    (stack, out)
}

#[test]
fn ssm_secrets_are_generated_once_and_never_stored() {
    let w = World::moto();
    let script = r#"
        let key = ssm::ensure_secret("n8n/encryption_key", #{ bytes: 32 });
        let s = ssm::get_secret("n8n/encryption_key");
        state::output("param", key.name);
        state::output("printed", `${s}`);
        state::output("len", s.len);
        state::set("first_value_hash", s.reveal().len());
        // Storing the secret itself is refused.
        let refused = false;
        try { state::set("leak", s); } catch (e) { refused = e.message.contains("refusing to store a secret"); }
        state::output("refused", refused);
        let p = ssm::put_secret("smtp/password", "hunter2-not-real");
        state::output("smtp_version", p.version);
    "#;
    let (stack, out) = run_ok(&w, "ssm", script);
    let s = w.state(&stack);
    let name = format!("/geusemaker/{stack}/n8n/encryption_key");
    assert_eq!(s["outputs"]["param"], name.as_str());
    assert_eq!(s["outputs"]["printed"], format!("Secret({name})"));
    assert_eq!(s["outputs"]["len"], 43, "32 random bytes, URL-safe base64");
    assert_eq!(s["outputs"]["refused"], true);

    let sdk = w.sdk();
    let p = sdk
        .block_on(
            sdk.ssm
                .get_parameter()
                .name(&name)
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    let p = p.parameter().unwrap();
    assert_eq!(p.r#type().unwrap().as_str(), "SecureString");
    let value = p.value().unwrap().to_string();
    let state_text = std::fs::read_to_string(w.state_path(&stack)).unwrap();
    assert!(
        !state_text.contains(&value),
        "secret value leaked into the state file"
    );
    assert!(!state_text.contains("hunter2-not-real"));
    assert!(
        !out.stdout.contains(&value) && !out.stderr.contains(&value),
        "secret value leaked into output"
    );

    // A second run keeps the generated secret.
    let r = w.recipe(
        "again.rhai",
        "ssm::ensure_secret(\"n8n/encryption_key\", #{ bytes: 32 });\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", &stack])
        .success();
    let p2 = sdk
        .block_on(
            sdk.ssm
                .get_parameter()
                .name(&name)
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    assert_eq!(p2.parameter().unwrap().value().unwrap(), value);
    let ledger = w.state(&stack)["resources"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "ssm:parameter")
        .count();
    assert_eq!(ledger, 2, "two parameters, each recorded once");
}

#[test]
fn key_pairs_save_the_private_key_privately() {
    let w = World::moto();
    let (stack, out) = run_ok(&w, "keys", "let k = ec2::key_pair(\"admin\");\nstate::output(\"path\", k.private_key_path);\nstate::output(\"name\", k.name);\n");
    let s = w.state(&stack);
    let path = std::path::PathBuf::from(s["outputs"]["path"].as_str().unwrap());
    assert!(path.starts_with(w.home.path().join("keys")));
    assert_eq!(support::file_mode(&path), 0o600);
    let key = std::fs::read_to_string(&path).unwrap();
    assert!(key.contains("PRIVATE KEY"), "{key}");
    assert!(!out.stdout.contains("PRIVATE KEY"));
    assert!(!std::fs::read_to_string(w.state_path(&stack))
        .unwrap()
        .contains("PRIVATE KEY"));
    // Re-run finds it; delete removes it and the file.
    let r = w.recipe(
        "del.rhai",
        "let k = ec2::key_pair(\"admin\");\nec2::delete_key_pair(k);\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", &stack])
        .success();
    assert!(!path.exists());
    let sdk = w.sdk();
    let found = sdk.block_on(
        sdk.ec2
            .describe_key_pairs()
            .key_names(format!("{stack}-admin"))
            .send(),
    );
    assert!(found.is_err(), "key pair deleted");
    let s = w.state(&stack);
    assert_eq!(s["resources"][0]["status"], "deleted");
}

#[test]
fn instances_launch_on_demand_wait_and_terminate() {
    let w = World::moto();
    let script = r#"
        let vpc = ec2::default_vpc();
        let subnet = ec2::subnets(vpc)[1];
        let ami = ec2::latest_al2023_ami();
        let vm = ec2::run_instance("worker", #{ image: ami, subnet: subnet, instance_type: "t3.small", root_volume_gb: 20,
            volumes: [ #{ device: "/dev/sdf", size_gb: 50, delete_on_termination: false } ] });
        vm = ec2::wait_until_running(vm, #{ timeout: 60 });
        state::output("id", vm.id);
        state::output("lifecycle", vm.lifecycle);
        state::output("state", vm.state);
        state::output("az", vm.az);
        state::output("subnet_az", subnet.az);
        state::output("ami_source", ami.source);
        ec2::terminate(vm);
        ec2::wait_until_terminated(vm);
        state::output("after", ec2::instance(vm.id).state);
    "#;
    let (stack, _) = run_ok(&w, "vm", script);
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["lifecycle"], "on-demand");
    assert_eq!(s["outputs"]["state"], "running");
    assert_eq!(s["outputs"]["az"], s["outputs"]["subnet_az"]);
    assert_eq!(s["outputs"]["ami_source"], "ssm");
    assert_eq!(s["outputs"]["after"], "terminated");
    let inst = s["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ec2:instance")
        .unwrap()
        .clone();
    assert_eq!(inst["status"], "deleted");
    // The data volume outlives the instance (DeleteOnTermination=false) and carries the tags.
    let sdk = w.sdk();
    let vols = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .filters(support::filter("tag:geusemaker:stack", &stack))
                .send(),
        )
        .unwrap();
    assert!(
        vols.volumes().iter().any(|v| v.size() == Some(50)),
        "{:?}",
        vols.volumes()
    );
}

#[test]
fn efs_lifecycle_and_spot_prices() {
    let w = World::moto();
    let script = r#"
        let vpc = ec2::default_vpc();
        let subnet = ec2::subnets(vpc)[0];
        let sg = ec2::security_group("nfs", vpc, #{});
        sg = ec2::allow_ingress(sg, [ #{ port: 2049, cidr: "172.31.0.0/16" } ]);
        sg = ec2::allow_ingress(sg, [ #{ port: 2049, cidr: "172.31.0.0/16" } ]);   // no duplicate
        state::output("rules", sg.ingress.len());
        let fs = efs::wait_available(efs::file_system("scratch"));
        let mt = efs::mount_target(fs, subnet, [sg]);
        let again = efs::mount_target(fs, subnet, [sg]);
        state::output("same_mt", mt.id == again.id);
        mt = efs::wait_mount_target(mt);
        state::output("mt_state", mt.state);
        efs::delete_mount_target(mt);
        state::output("mts_left", efs::mount_targets(fs).len());
        efs::delete_file_system(fs);
        ec2::delete_security_group(sg);
        let prices = ec2::spot_prices("t3.medium");
        state::output("price_rows", prices.len());
        state::output("price_positive", prices[0].usd_per_hour > 0.0);
    "#;
    let (stack, _) = run_ok(&w, "efs", script);
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["rules"], 1);
    assert_eq!(s["outputs"]["same_mt"], true);
    assert_eq!(s["outputs"]["mt_state"], "available");
    assert_eq!(s["outputs"]["mts_left"], 0);
    assert!(s["outputs"]["price_rows"].as_i64().unwrap() >= 1);
    assert_eq!(s["outputs"]["price_positive"], true);
    for r in s["resources"].as_array().unwrap() {
        assert_eq!(r["status"], "deleted", "{r}");
    }
}

#[test]
fn pricing_falls_back_when_the_api_is_missing_and_parses_a_real_answer() {
    let w = World::moto();
    // moto has no Pricing backend: the bundled table is used, and said so.
    let (stack, out) = run_ok(&w, "price", "let p = pricing::on_demand(\"t3.medium\");\nstate::output(\"source\", p.source);\nstate::output(\"usd\", p.usd_per_hour);\nstate::output(\"monthly\", pricing::monthly(p.usd_per_hour));\n");
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["source"], "fallback");
    assert_eq!(s["outputs"]["usd"], 0.0416);
    assert!((s["outputs"]["monthly"].as_f64().unwrap() - 30.368).abs() < 1e-9);
    assert!(
        out.stderr.contains("price of t3.medium") && out.stderr.contains("bundled"),
        "{}",
        out.stderr
    );

    // The Price List API answering (a stand-in serving a recorded response): parsed, then cached.
    let body = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pricing/get-products-t3-medium.json"
    ))
    .unwrap();
    let port = support::json_stub(body);
    let stack = support::stack_name("price-api");
    let r = w.recipe("api.rhai", "let a = pricing::on_demand(\"t3.medium\");\nlet b = pricing::on_demand(\"t3.medium\");\nstate::output(\"first\", a.source);\nstate::output(\"second\", b.source);\nstate::output(\"usd\", a.usd_per_hour);\n");
    let out = w
        .cmd()
        .args(["run", r.to_str().unwrap(), "--name", &stack])
        .env(
            "AWS_ENDPOINT_URL_PRICING",
            format!("http://127.0.0.1:{port}"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["first"], "api");
    assert_eq!(s["outputs"]["second"], "cache");
    assert_eq!(s["outputs"]["usd"], 0.0416);
    assert_eq!(
        support::file_mode(&w.home.path().join("cache/pricing.json")),
        0o600
    );
}

#[test]
fn health_checks_against_stand_in_services() {
    let w = World::offline();
    let up = support::http_stub(200, "{\"status\":\"ok\"}");
    let broken = support::http_stub(503, "starting");
    let closed = support::free_port();
    let script = format!(
        r#"
        let a = health::http("http://127.0.0.1:{up}/healthz", #{{ name: "n8n" }});
        let b = health::http("http://127.0.0.1:{up}/health", #{{ body: "\"ok\"" }});
        let c = health::http("http://127.0.0.1:{broken}/", #{{}});
        let d = health::tcp("127.0.0.1", {up}, #{{ name: "postgres" }});
        let e = health::tcp("127.0.0.1", {closed}, #{{ timeout_ms: 500 }});
        state::output("a", [a.ok, a.status, a.name]);
        state::output("b", b.ok);
        state::output("c", [c.ok, c.status, c.error]);
        state::output("d", d.ok);
        state::output("e", e.ok);
        let all = health::wait_until_healthy([
            #{{ name: "n8n", url: "http://127.0.0.1:{up}/healthz" }},
            #{{ name: "postgres", tcp: "127.0.0.1:{up}" }},
        ], #{{ timeout: 10, interval: 1 }});
        state::output("all", all.len());
        "#
    );
    let (stack, _) = run_ok(&w, "health", &script);
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["a"], serde_json::json!([true, 200, "n8n"]));
    assert_eq!(s["outputs"]["b"], true);
    assert_eq!(
        s["outputs"]["c"],
        serde_json::json!([false, 503, "HTTP 503, expected 200"])
    );
    assert_eq!(s["outputs"]["d"], true);
    assert_eq!(s["outputs"]["e"], false);
    assert_eq!(s["outputs"]["all"], 2);

    // Never healthy: the error names the failing check and its reason.
    let stack = support::stack_name("unhealthy");
    let r = w.recipe("never.rhai", &format!("health::wait_until_healthy([#{{ name: \"ollama\", url: \"http://127.0.0.1:{broken}/api/tags\" }}], #{{ timeout: 2, interval: 1 }});\n"));
    w.run(&["run", r.to_str().unwrap(), "--name", &stack])
        .failure(1)
        .stderr_has("not healthy after 2s: ollama")
        .stderr_has("HTTP 503")
        .stderr_has("never.rhai:1:");
}

#[test]
fn iam_profile_can_be_deleted_with_its_role() {
    let w = World::moto();
    let (stack, _) = run_ok(&w, "iam", "let p = iam::instance_profile(\"box\");\nstate::output(\"arn\", p.arn);\niam::delete_instance_profile(p);\n");
    let sdk = w.sdk();
    assert!(
        sdk.block_on(sdk.iam.get_role().role_name(format!("{stack}-box")).send())
            .is_err(),
        "role deleted"
    );
    assert!(sdk
        .block_on(
            sdk.iam
                .get_instance_profile()
                .instance_profile_name(format!("{stack}-box"))
                .send()
        )
        .is_err());
    assert_eq!(w.state(&stack)["resources"][0]["status"], "deleted");
}

#[test]
fn generated_user_data_passes_shellcheck() {
    let w = World::offline();
    let (stack, _) = run_ok(&w, "ud", "state::output(\"script\", userdata::script([userdata::efs_mount(\"fs-0123abcd\", \"/mnt/efs\"), \"echo ready\"]));\n");
    let script = w.state(&stack)["outputs"]["script"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(script.contains("fs-0123abcd:/ /mnt/efs efs _netdev,tls"));
    support::shellcheck(w.home.path(), "user-data", &script);

    // Values that would break out of the script are refused.
    let r = w.recipe(
        "inject.rhai",
        "userdata::efs_mount(\"fs-1; rm -rf /\", \"/mnt/efs\");\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", "inject"])
        .failure(1)
        .stderr_has("not an EFS file system id");
    let r = w.recipe(
        "inject2.rhai",
        "userdata::efs_mount(\"fs-0123abcd\", \"/mnt/$(reboot)\");\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", "inject"])
        .failure(1)
        .stderr_has("not a plain absolute path");
}

#[test]
fn run_command_sends_and_fetches_the_result() {
    // moto accepts Run Command and reports Success with empty output (nothing really runs).
    let w = World::moto();
    let script = r#"
        let vpc = ec2::default_vpc();
        let vm = ec2::run_instance("cmd", #{ image: ec2::latest_al2023_ami(), subnet: ec2::subnets(vpc)[0], instance_type: "t3.micro" });
        vm = ec2::wait_until_running(vm);
        let id = ssm::send_command(vm, ["docker compose ps", "uptime"]);
        let r = ssm::command_result(vm, id);
        state::output("status", r.status);
        state::output("exit", r.exit_code);
        state::output("id_matches", r.command_id == id);
        let refused = "";
        try { ssm::send_command(vm, []); } catch (e) { refused = e.message; }
        state::output("empty", refused);
    "#;
    let (stack, _) = run_ok(&w, "cmd", script);
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["status"], "Success");
    assert_eq!(s["outputs"]["exit"], 0);
    assert_eq!(s["outputs"]["id_matches"], true);
    assert_eq!(
        s["outputs"]["empty"],
        "ssm::send_command: no commands given"
    );
}

#[test]
fn parallel_steps_share_the_recipe_context_and_report_the_failing_step() {
    let w = World::offline();
    let ok = w.recipe(
        "par.rhai",
        r#"
fn double(x) { x * 2 }
let base = 20;
let r = parallel(#{ a: || double(base), b: || `${base}!`, c: || [1, 2, 3].len() });
print(`${r.a} ${r.b} ${r.c}`);
"#,
    );
    w.run(&["run", ok.to_str().unwrap(), "--name", "par"])
        .success()
        .stdout_has("40 20! 3");
    let bad = w.recipe(
        "parbad.rhai",
        "let r = parallel(#{\n    fine: || 1,\n    broken: || throw \"step failed\",\n});\n",
    );
    w.run(&["run", bad.to_str().unwrap(), "--name", "par"])
        .failure(1)
        .stderr_has("step failed")
        .stderr_has("parbad.rhai:3:");
    // A primitive failing in one step is shown at its own call, even when another step
    // calls primitives after it.
    let late = w.recipe(
        "parlate.rhai",
        "let r = parallel(#{\n    a: || ssm::ensure_secret(\"x\", #{ bytes: 2 }),\n    b: || { let n = 0; while n < 300000 { n += 1; } ui::info(\"late\"); ui::info(\"later\") },\n});\n",
    );
    w.run(&["run", late.to_str().unwrap(), "--name", "par"])
        .failure(1)
        .stderr_has("bytes must be between 16 and 1024")
        .stderr_has("parlate.rhai:2:")
        .stderr_has("ssm::ensure_secret");
    let not_closure = w.recipe("parnc.rhai", "parallel(#{ x: 1 });\n");
    w.run(&["run", not_closure.to_str().unwrap(), "--name", "par"])
        .failure(1)
        .stderr_has("parallel: `x` must be a closure");
}
