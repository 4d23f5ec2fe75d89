//! What the tiers and examples render: valid compose files and user data that passes shellcheck
//! within 16 KiB; bad service maps fail positioned before anything is created.

use std::collections::BTreeMap;

use crate::support::shellcheck;

use super::*;

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
