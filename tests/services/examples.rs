//! The examples deployed against moto from a copied recipe, and recipes written for the old API.

use super::*;

fn copy_example(w: &World, example: &str) -> String {
    let text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("recipes/examples/{example}.rhai")),
    )
    .unwrap();
    // Copied out of the project: the stdlib comes from the binary, as for a user's copy.
    let p = w.recipe(&format!("{example}.rhai"), &text);
    p.to_str().unwrap().to_string()
}

/// The names of the services the deploy recorded in the stack's state.
fn recorded_services(state: &serde_json::Value) -> Vec<&str> {
    state["values"]["services"]
        .as_array()
        .expect("the deploy records its services")
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect()
}

fn ingress_ports(sdk: &support::Sdk, stack: &str) -> Vec<(i32, String)> {
    let mut rules = Vec::new();
    for g in sdk.stack_security_groups(stack) {
        if g.group_name().is_some_and(|n| n.ends_with("-efs")) {
            continue;
        }
        for p in g.ip_permissions() {
            for r in p.ip_ranges() {
                rules.push((p.from_port().unwrap(), r.cidr_ip().unwrap().to_string()));
            }
            for s in p.user_id_group_pairs() {
                rules.push((p.from_port().unwrap(), s.group_id().unwrap().to_string()));
            }
        }
    }
    rules.sort();
    rules
}

#[test]
fn open_webui_example_deploys_and_is_checked_everywhere() {
    let w = World::moto();
    let stack = support::stack_name("webui");
    let recipe = copy_example(&w, "open-webui");
    let webui = support::http_stub(200, "{\"status\":true}");
    let stand_ins = format!("{},open-webui=127.0.0.1:{webui}", support::stand_ins());
    let out = deploy(&w, &recipe, &stack, &stand_ins, &[]);
    out.success().stdout_has("open-webui");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains("open-webui") && l.contains("healthy")),
        "{}",
        out.stdout
    );

    // The security group: n8n and Open WebUI from the allowed range, nothing else.
    let sdk = w.sdk();
    assert_eq!(
        ingress_ports(&sdk, &stack),
        [
            (5678, "198.51.100.7/32".to_string()),
            (8080, "198.51.100.7/32".to_string())
        ]
    );

    // Recorded for status, monitor and logs.
    let state = w.state(&stack);
    let names = recorded_services(&state);
    assert!(names.contains(&"open-webui"), "{names:?}");
    let checks = state["values"]["health_checks"].as_array().unwrap();
    let webui_check = checks
        .iter()
        .find(|c| c["name"] == "open-webui")
        .expect("Open WebUI is health-checked");
    assert!(
        webui_check["url"]
            .as_str()
            .unwrap()
            .ends_with(":8080/health"),
        "a public service is checked from here: {webui_check}"
    );
    assert!(webui_check.get("on").is_none());
    let pg = checks.iter().find(|c| c["name"] == "postgres").unwrap();
    assert_eq!(
        pg["container_health"], true,
        "PostgreSQL through the health Docker reports (its pg_isready healthcheck): {pg}"
    );
    assert!(pg.get("tcp").is_none(), "never a bare TCP connect");

    let status = w
        .cmd()
        .args(["status", &stack, "--json"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", &stand_ins)
        .output()
        .unwrap();
    let status = Outcome::from(status);
    status.success();
    let s: serde_json::Value = serde_json::from_str(&status.stdout).unwrap();
    assert!(
        s["services"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["name"] == "open-webui" && v["status"] == "healthy"),
        "{}",
        status.stdout
    );

    // The service name is taken (moto then runs nothing: that is said, not "no lines").
    w.run(&["logs", &stack, "--service", "open-webui", "--since", "5m"])
        .failure(1)
        .stderr_has("did not run the log command");
    w.run(&["logs", &stack, "--service", "open-webu"])
        .failure(2)
        .stderr_has("did you mean `open-webui`?");
}

#[test]
fn lean_example_runs_only_n8n_and_postgres() {
    let w = World::moto();
    let stack = support::stack_name("lean");
    let recipe = copy_example(&w, "lean");
    let out = deploy(&w, &recipe, &stack, &support::stand_ins(), &[]);
    out.success();
    let sdk = w.sdk();
    let inst = sdk.stack_instances(&stack);
    assert_eq!(inst.len(), 1);
    assert_eq!(
        inst[0].instance_type().map(|t| t.as_str()),
        Some("t3.small")
    );
    assert_ne!(
        inst[0].instance_lifecycle().map(|l| l.as_str()),
        Some("spot"),
        "on-demand"
    );
    assert_eq!(
        ingress_ports(&sdk, &stack),
        [(5678, "198.51.100.7/32".to_string())]
    );
    let state = w.state(&stack);
    let names = recorded_services(&state);
    assert_eq!(names, ["postgres", "n8n", "n8n-runner"]);
    // Secrets only for what runs: no Crawl4AI token.
    let params: Vec<String> = sdk.leftovers(&stack).parameters;
    assert!(params.iter().all(|p| !p.contains("crawl4ai")), "{params:?}");

    let ud = sdk.user_data(inst[0].instance_id().unwrap());
    let backup = heredoc(&ud, "/opt/geusemaker/backup.sh");
    assert!(backup.contains("pg_dump"));
    assert!(!backup.contains("qdrant"), "no Qdrant snapshot: {backup}");
    assert!(!ud.contains("ollama"), "no Ollama, no model pulls");
    w.run(&["logs", &stack, "--service", "ollama"])
        .failure(2)
        .stderr_has("runs postgres, n8n, n8n-runner");
}

#[test]
fn n8n_pinned_example_sets_the_version_and_the_webhook_url() {
    let w = World::moto();
    let stack = support::stack_name("pinned");
    let recipe = copy_example(&w, "n8n-pinned");
    deploy(
        &w,
        &recipe,
        &stack,
        &support::stand_ins(),
        &[
            "n8n_version=2.40.7",
            "webhook_url=https://hooks.example.com/",
        ],
    )
    .success();
    let sdk = w.sdk();
    let inst = sdk.stack_instances(&stack);
    let ud = sdk.user_data(inst[0].instance_id().unwrap());
    let doc: serde_yaml::Value =
        serde_yaml::from_str(heredoc(&ud, "/opt/geusemaker/compose.yaml")).unwrap();
    assert_eq!(
        doc["services"]["n8n"]["image"].as_str(),
        Some("n8nio/n8n:2.40.7")
    );
    assert_eq!(
        doc["services"]["n8n-runner"]["image"].as_str(),
        Some("n8nio/runners:2.40.7")
    );
    assert_eq!(
        doc["services"]["n8n"]["environment"]["WEBHOOK_URL"].as_str(),
        Some("https://hooks.example.com/")
    );
}

/// A tier written before services were data (no services section, `gpu: true` in the launch
/// params, the old stdlib signatures) still runs: the default services, Ollama on the GPU.
#[test]
fn recipes_written_for_the_old_api_still_run() {
    let w = World::offline();
    let mut text =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/gpu.rhai"))
            .unwrap();
    let services = text.find("// ---- What runs on the instance").unwrap();
    let network = text.find("ui::stage(\"Network\");").unwrap();
    text.replace_range(services..network, "");
    for (new, old) in [
        (
            "security::groups(net.vpc, #{ services: svcs, load_balancer: alb_sg, front_door: \"n8n\", ssh_cidr: ssh_cidr })",
            "security::groups(net.vpc, alb_sg, ssh_cidr)",
        ),
        ("tier::foundation(svcs)", "tier::foundation()"),
        ("services: svcs,", "gpu: true,"),
        (
            "tier::health_gate(app, app_p, #{ timeout: health_timeout, interval: 15 }, || {\n    elb::register(front.target_group, app.vm, services::port_of(svcs, \"n8n\"));\n    elb::wait_active(front.lb);\n    cloudfront::wait_deployed(cdn, #{ timeout: cdn_timeout });\n    elb::wait_target_healthy(front.target_group, app.vm, #{ timeout: health_timeout });\n});",
            "health::wait_until_healthy(services::health_checks(app.vm, url), #{ timeout: health_timeout, interval: 15 });",
        ),
        ("pinned_image: image_id != \"\",", ""),
        (
            "svcs = services::with_n8n_url(svcs, `https://${cdn.domain}`);",
            "",
        ),
        (
            "edge::load_balancer(net, #{\n    group: alb_sg, https: origin_https, certificate_arn: certificate_arn,\n    origin_secret: origin_secret,   // n8n answers only requests that came through CloudFront\n})",
            "edge::load_balancer(net, alb_sg, origin_https, certificate_arn, origin_secret)",
        ),
        (
            "tier::launch_app(#{ net: net, subnets: subnets, groups: sgs, base: base, params: app_p })",
            "tier::launch_app(net, subnets, sgs, base, app_p)",
        ),
        (
            "tier::finish(#{\n    url: url, app: app, base: base, results: results, params: app_p,\n    extra_monthly: #{",
            "tier::finish(url, app, base, results, app_p, #{",
        ),
        ("    },\n});", "});"),
        (
            "edge::cdn_options(front.lb, #{\n    origin_secret: origin_secret,   // the load balancer answers only requests carrying it\n    allowed_cidr: allowed_cidr,     // CloudFront has no security group: a viewer filter admits these\n    origin_domain: origin_domain,   // \"\": HTTP to the load balancer's own name\n})",
            "edge::cdn_options(front.lb, origin_secret, allowed_cidr, origin_domain)",
        ),
    ] {
        assert!(text.contains(new), "gpu.rhai lacks {new}");
        text = text.replace(new, old);
    }
    assert!(!text.contains("svcs"), "every use of the new API replaced");
    let recipe = w.recipe("old-gpu.rhai", &text);
    let script = planned_user_data(&w, recipe.to_str().unwrap(), &[]);
    let doc: serde_yaml::Value =
        serde_yaml::from_str(heredoc(&script, "/opt/geusemaker/compose.yaml")).unwrap();
    assert_eq!(
        doc["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"]
            .as_str(),
        Some("nvidia")
    );
    assert_eq!(doc["services"].as_mapping().unwrap().len(), 6);
}

/// The shared steps' positional forms, from before they took option maps, still run: the dev
/// tier written with them plans the same deploy, and the inner steps' old forms (`launch_any`,
/// `report::cost`, `report::success`, `update_app`) answer as their map forms do.
#[test]
fn the_shared_steps_positional_forms_still_run() {
    let w = World::offline();
    let dev = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/dev.rhai");
    let mut text = std::fs::read_to_string(&dev).unwrap();
    for (new, old) in [
        (
            "tier::network(vpc_id, #{ services: svcs, clients: allowed_cidr, ssh_cidr: ssh_cidr })",
            "tier::network(vpc_id, svcs, allowed_cidr, ssh_cidr)",
        ),
        (
            "tier::launch_app(#{ net: net, subnets: subnets, groups: sgs, base: base, params: app_p })",
            "tier::launch_app(net, subnets, sgs, base, app_p)",
        ),
        (
            "tier::finish(#{ url: url, app: app, base: base, results: results, params: app_p });",
            "tier::finish(url, app, base, results, app_p, #{});",
        ),
    ] {
        assert!(text.contains(new), "dev.rhai lacks {new}");
        text = text.replace(new, old);
    }
    text.push_str(
        r#"
import "report" as report;
let prices = report::prices(app.vm);
let given = report::cost(app.vm, prices, 30, 50, 1, #{ extra: 1.0 });
let looked_up = report::cost(app.vm, 30, 50, 1, #{ extra: 1.0 });
let mapped = report::cost(app.vm, #{ root_gb: 30, data_gb: 50, efs_gb: 1, extra_monthly: #{ extra: 1.0 } });
ui::info(`old cost forms agree: ${given.monthly == mapped.monthly && looked_up.monthly == mapped.monthly}`);
report::success("old-success-form", url, results, base.secrets, given, "us-east-1");
let spec = #{ image: app_p.image, instance_type: "t3.small", security_groups: [sgs.app] };
let extra = instance::launch_any("extra", spec, ["t3.small", "t3.medium"], subnets, false, true);
ui::info(`old launch form: ${extra.vm.instance_type} ${extra.market}`);
let kept = tier::update_app(net, subnets, sgs, base, app_p, ["t3.medium"], spec, #{ kind: "", services: false, changes: [], old: (), fingerprint: "fp" });
ui::info(`old update form: ${kept.vm.instance_type} ${kept.update.fingerprint}`);
"#,
    );
    let recipe = w.recipe("old-dev.rhai", &text);
    let out = w.run(&[
        "run",
        recipe.to_str().unwrap(),
        "--name",
        "old-forms",
        "--plan",
        "--set",
        "allowed_cidr=198.51.100.7/32",
    ]);
    out.success()
        .stdout_has("Plan: what stack old-success-form would cost")
        .stdout_has("old cost forms agree: true")
        .stdout_has("old launch form: t3.small on-demand")
        .stdout_has("old update form: t3.medium fp");
    let new = w.run(&[
        "run",
        dev.to_str().unwrap(),
        "--name",
        "new-forms",
        "--plan",
        "--set",
        "allowed_cidr=198.51.100.7/32",
    ]);
    new.success();
    let planned = |o: &Outcome| {
        o.stdout
            .lines()
            .find(|l| l.contains("resource(s) to create"))
            .map(|l| l.split(": ").last().unwrap().to_string())
    };
    // The old-form recipe plans the dev tier's resources, plus the extra instance.
    assert_eq!(
        planned(&new).as_deref(),
        Some("12 resource(s) to create"),
        "{}",
        new.stdout
    );
    assert_eq!(
        planned(&out).as_deref(),
        Some("13 resource(s) to create"),
        "{}",
        out.stdout
    );
}
