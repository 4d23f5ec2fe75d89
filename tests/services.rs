//! Services as data, end to end through the binary: every bundled tier and example renders a
//! compose file that parses back and validates against the Compose Specification's schema, user
//! data that passes shellcheck within EC2's 16 KiB; the examples deploy against moto from a
//! copied recipe with no Rust change; bad service maps fail with positioned errors before
//! anything is created.

use crate::support;

use std::collections::BTreeMap;
use std::path::Path;

use support::{heredoc, shellcheck, Outcome, World};

const EXAMPLES: [&str; 3] = ["lean", "open-webui", "n8n-pinned"];

/// The params that make the user data largest: many long model names, a long e-mail.
fn largest_params() -> Vec<String> {
    let models: Vec<String> = (0..12)
        .map(|i| format!("hf.co/some-organisation/a-rather-long-model-name-{i}:q4_k_m"))
        .collect();
    vec![
        format!("models={}", models.join(",")),
        format!(
            "owner_email={}@{}.example.com",
            "o".repeat(40),
            "d".repeat(40)
        ),
    ]
}

/// `run <recipe> --plan --show-user-data`: the boot script of the instance it would launch.
fn planned_user_data(w: &World, recipe: &str, sets: &[String]) -> String {
    let mut args = vec!["run", recipe, "--name", "ud", "--plan", "--show-user-data"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let out = w.run(&args);
    out.success();
    let start = out
        .stdout
        .find("#!/bin/bash\n")
        .unwrap_or_else(|| panic!("no user data printed:\n{}", out.stdout));
    let rest = &out.stdout[start..];
    let end = rest.find("\n\n`geusemaker policy").unwrap_or(rest.len());
    rest[..end].trim_end().to_string() + "\n"
}

/// Structural checks of a generated compose file; returns it parsed.
fn check_compose(name: &str, compose: &str, public: &[&str]) -> serde_yaml::Value {
    let doc: serde_yaml::Value = serde_yaml::from_str(compose).expect("compose file is YAML");
    let services = doc["services"].as_mapping().expect("services");
    for (svc_name, svc) in services {
        let svc_name = svc_name.as_str().unwrap();
        let image = svc["image"].as_str().unwrap();
        let tag = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("");
        assert!(
            image.contains('@') || (!tag.is_empty() && tag != "latest" && !tag.contains('/')),
            "{name}/{svc_name}: {image} is not pinned"
        );
        assert!(
            svc["mem_limit"].is_string(),
            "{name}/{svc_name}: memory limit"
        );
        assert_eq!(
            svc["logging"]["driver"].as_str(),
            Some("json-file"),
            "{name}/{svc_name}: log rotation"
        );
        assert!(svc["logging"]["options"]["max-size"].is_string());
        for p in svc["ports"].as_sequence().into_iter().flatten() {
            let p = p.as_str().unwrap();
            if !p.starts_with("127.0.0.1:") {
                assert!(
                    public.contains(&svc_name),
                    "{name}/{svc_name}: {p} is published on every interface but the service is not public"
                );
            }
        }
        // One env file per service, its own.
        if let Some(files) = svc["env_file"].as_sequence() {
            assert_eq!(files.len(), 1, "{name}/{svc_name}");
            assert_eq!(
                files[0].as_str().unwrap(),
                format!("/etc/geusemaker/env/{svc_name}.env"),
                "{name}/{svc_name}"
            );
        }
    }
    doc
}

/// The env files the boot script writes: file → the variables in it.
fn env_files(script: &str) -> BTreeMap<String, Vec<String>> {
    // Each file is written as `{`, one `  echo "VAR=$secret_N"` per variable, `} > 'path.tmp'`.
    let mut files = BTreeMap::new();
    let mut vars: Option<Vec<String>> = None;
    for line in script.lines() {
        if line == "{" {
            vars = Some(Vec::new());
        } else if let Some(rest) = line.strip_prefix("} > '") {
            let file = rest.trim_end_matches(".tmp'").to_string();
            files.insert(file, vars.take().expect("a block was opened"));
        } else if let (Some(v), Some(vars)) = (line.strip_prefix("  echo \""), vars.as_mut()) {
            let (var, value) = v.split_once('=').expect("VAR=value");
            assert!(
                value.starts_with("$secret_"),
                "{line}: only fetched secrets"
            );
            vars.push(var.to_string());
        }
    }
    files
}

#[test]
fn every_tier_and_example_renders_valid_compose_and_user_data() {
    let w = World::offline();
    let dir = w.home.path();
    let mut recipes: Vec<(String, String, Vec<&str>)> = ["dev", "automation", "gpu"]
        .into_iter()
        .map(|t| (t.to_string(), t.to_string(), vec!["n8n"]))
        .collect();
    for e in EXAMPLES {
        let public = if e == "open-webui" {
            vec!["n8n", "open-webui"]
        } else {
            vec!["n8n"]
        };
        recipes.push((e.to_string(), format!("recipes/examples/{e}.rhai"), public));
    }
    for (name, recipe, public) in &recipes {
        let script = planned_user_data(&w, recipe, &largest_params());
        // EC2 takes 16 KiB; larger scripts go gzipped (cloud-init unpacks them).
        let sent = geusemaker::boot::user_data_payload(&script).unwrap_or_else(|packed| {
            panic!(
                "{name}: user data is {} bytes ({packed} gzipped), over EC2's 16 KiB",
                script.len()
            )
        });
        assert!(sent.len() <= 16 * 1024);
        shellcheck(dir, name, &script);
        // Every step reports to the boot channel: each titled section is a `step`, the
        // reporter is in place before the first one, and the end says `done` (issue 19).
        let lines: Vec<&str> = script.lines().collect();
        let steps: Vec<usize> = (1..lines.len())
            .filter(|i| lines[*i].starts_with("step '"))
            .collect();
        assert!(steps.len() > 5, "{name}: {} steps", steps.len());
        for i in &steps {
            assert!(
                lines[i - 1].starts_with("# --- "),
                "{name}: a step is a titled section"
            );
        }
        for phase in [
            "step 'packages",
            "step 'EFS ",
            "step 'EBS data volume",
            "step 'pull the images'",
            "step 'start the stack'",
        ] {
            assert!(script.contains(phase), "{name}: no {phase}");
        }
        assert!(
            script.find("step 'pull the images'") < script.find("step 'start the stack'"),
            "{name}: the images are pulled (and reported) before the stack starts"
        );
        let reporter = script
            .find("boot_param='/geusemaker-boot/")
            .expect("a reporting boot");
        assert!(reporter < script.find("\nstep '").unwrap(), "{name}");
        assert!(
            script
                .trim_end()
                .ends_with("step \"finished\"\nreport \"done\""),
            "{name}"
        );
        let compose = heredoc(&script, "/opt/geusemaker/compose.yaml");
        support::validate_compose_schema(dir, name, compose);
        // Every image the stack runs is pulled by a reported pull of its own.
        let parsed: serde_yaml::Value = serde_yaml::from_str(compose).unwrap();
        for (svc, def) in parsed["services"].as_mapping().unwrap() {
            let image = def["image"].as_str().unwrap();
            assert!(
                lines
                    .iter()
                    .any(|l| l.starts_with("pull_image 'i")
                        && l.ends_with(&format!("' '{image}' &"))),
                "{name}: {svc:?}'s image {image} is not pulled on its own"
            );
        }
        let doc = check_compose(name, compose, public);

        // Secrets: each service's env file holds only what its map names.
        let files = env_files(&script);
        let services = doc["services"].as_mapping().unwrap();
        for (svc, def) in services {
            let svc = svc.as_str().unwrap();
            let file = format!("/etc/geusemaker/env/{svc}.env");
            if def["env_file"].is_null() {
                assert!(!files.contains_key(&file), "{name}/{svc}: unused env file");
                continue;
            }
            let vars = &files[&file];
            assert!(!vars.is_empty(), "{name}/{svc}");
            assert!(
                !vars.contains(&"N8N_OWNER_PASSWORD".to_string()),
                "{name}/{svc}: the owner's password is for the boot script only"
            );
        }
        let pg = &files["/etc/geusemaker/env/postgres.env"];
        assert_eq!(pg, &["POSTGRES_PASSWORD"], "{name}");
        if services.contains_key("ollama") {
            assert!(
                !files.contains_key("/etc/geusemaker/env/ollama.env"),
                "{name}: Ollama gets no secret"
            );
        }
        assert_eq!(
            files["/etc/geusemaker/boot.env"],
            ["N8N_OWNER_PASSWORD"],
            "{name}"
        );
        // The backup script follows the services.
        let backup = heredoc(&script, "/opt/geusemaker/backup.sh");
        assert!(backup.contains("pg_dump"), "{name}");
        assert_eq!(
            backup.contains("6333/snapshots"),
            services.contains_key("qdrant"),
            "{name}: a Qdrant snapshot exactly when the stack runs Qdrant"
        );
    }

    // The GPU tier gives Ollama the GPU; the others give nobody one.
    let gpu = planned_user_data(&w, "gpu", &[]);
    let doc: serde_yaml::Value =
        serde_yaml::from_str(heredoc(&gpu, "/opt/geusemaker/compose.yaml")).unwrap();
    assert_eq!(
        doc["services"]["ollama"]["deploy"]["resources"]["reservations"]["devices"][0]["driver"]
            .as_str(),
        Some("nvidia")
    );
    assert!(doc["services"]["n8n"]["deploy"].is_null());
    assert_eq!(
        doc["services"]["n8n"]["environment"]["N8N_SECURE_COOKIE"].as_str(),
        Some("true"),
        "HTTPS tiers use secure cookies"
    );
    let dev = planned_user_data(&w, "dev", &[]);
    assert!(!dev.contains("driver: nvidia"));

    // Image overrides are validated params.
    let pinned = planned_user_data(&w, "dev", &["images=n8nio/n8n:2.40.7".to_string()]);
    assert!(pinned.contains("image: n8nio/n8n:2.40.7"));
    assert!(
        pinned.contains("image: n8nio/runners:2.40.7"),
        "the runner follows n8n"
    );
    w.run(&[
        "run",
        "dev",
        "--name",
        "ud",
        "--plan",
        "--set",
        "images=n8nio/n8n:latest",
    ])
    .failure(2)
    .stderr_has("`n8nio/n8n:latest` names no version");
    w.run(&[
        "run",
        "dev",
        "--name",
        "ud",
        "--plan",
        "--set",
        "images=example/nothing:1.0",
    ])
    .failure(1)
    .stderr_has("no service runs example/nothing");
}

/// A copy of `recipe` with `from` replaced by `to`, written into the world.
fn edited(w: &World, recipe: &str, name: &str, from: &str, to: &str) -> std::path::PathBuf {
    let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(recipe)).unwrap();
    assert!(text.contains(from), "{recipe} lacks {from:?}");
    w.recipe(name, &text.replacen(from, to, 1))
}

#[test]
fn bad_service_maps_fail_positioned_and_create_nothing() {
    let w = World::moto();
    let sdk = w.sdk();
    let marker = "svcs = services::check(svcs);";
    let cases = [
        (
            "unknown-key",
            "svcs[0].imgae = \"postgres:16.15\";\nsvcs = services::check(svcs);",
            "unknown key `imgae`",
            "did you mean `image`?",
        ),
        (
            "dup-port",
            "svcs[services::index(svcs, \"qdrant\")].ports[0].port = 5432;\nsvcs = services::check(svcs);",
            "host port 5432 is also published by `postgres`",
            "give one of them another `host` port",
        ),
        (
            "latest",
            "svcs[services::index(svcs, \"ollama\")].image = \"ollama/ollama:latest\";\nsvcs = services::check(svcs);",
            "must be pinned",
            "pin a release tag",
        ),
        (
            "qdrant-efs",
            "svcs[services::index(svcs, \"qdrant\")].volumes[\"/qdrant/storage\"] = \"efs:qdrant\";\nsvcs = services::check(svcs);",
            "Qdrant does not support NFS",
            "data:qdrant",
        ),
        (
            "depends",
            "svcs[services::index(svcs, \"n8n\")].depends_on = [\"postgress\"];\nsvcs = services::check(svcs);",
            "depends_on names `postgress`",
            "did you mean `postgres`?",
        ),
    ];
    for (case, code, message, hint) in cases {
        let stack = support::stack_name(case);
        let recipe = edited(
            &w,
            "recipes/dev.rhai",
            &format!("{case}.rhai"),
            marker,
            code,
        );
        let out = w
            .cmd()
            .args(["run", recipe.to_str().unwrap(), "--name", &stack])
            .args(["--set", "allowed_cidr=198.51.100.7/32"])
            .output()
            .unwrap();
        let out = Outcome::from(out);
        out.failure(1)
            .stderr_has(message)
            .stderr_has(hint)
            .stderr_has(&format!("{case}.rhai:"))
            .stderr_has("^");
        assert!(
            sdk.leftovers(&stack).is_empty(),
            "{case}: {:?}",
            sdk.leftovers(&stack)
        );
        if w.state_path(&stack).exists() {
            let state = w.state(&stack);
            assert!(
                state["resources"].as_array().is_none_or(|r| r.is_empty()),
                "{case}: {}",
                state["resources"]
            );
        }
    }
}

fn deploy(w: &World, recipe: &str, stack: &str, stand_ins: &str, sets: &[&str]) -> Outcome {
    let mut cmd = w.cmd();
    cmd.args(["run", recipe, "--name", stack, "--set", "health_timeout=30"])
        .args(["--set", "allowed_cidr=198.51.100.7/32"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins);
    for s in sets {
        cmd.args(["--set", s]);
    }
    Outcome::from(cmd.output().unwrap())
}

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
