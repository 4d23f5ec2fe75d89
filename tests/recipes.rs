//! Recipe authoring (issue 8): headers, `recipes list|show|copy`, `check`.

use crate::support;

use support::{stand_ins, World};

const BAD_CALLS: &str = r#"//! [recipe]
//! name = "bad"
//! description = "calls that cannot work"
//! version = "0.1.0"
//!
//! [params]
//! size = { type = "int", default = 1 }
import "network" as network;
import "netwrk" as nope;
let vpc = ec2::default_vpc(1);
let x = ec2::run_instanse("a", #{});
let y = network::discovr("");
let z = param("sise");
let s = param("size");
foo(1);
let q = s3::bucket("b");
"#;

#[test]
fn check_accepts_the_bundled_recipes_and_positions_every_problem() {
    let w = World::offline();
    w.run(&[
        "check",
        "dev",
        "automation",
        "gpu",
        "quickstart",
        "destroy",
        "rollback",
    ])
    .success()
    .stdout_has("recipes/dev.rhai: ok (9 files checked)")
    .stdout_has("recipes/gpu.rhai: ok");
    w.run(&[
        "check",
        "recipes/examples/lean.rhai",
        "recipes/examples/open-webui.rhai",
        "recipes/examples/n8n-pinned.rhai",
    ])
    .success()
    .stdout_has("lean.rhai: ok");

    let bad = w.recipe("bad.rhai", BAD_CALLS);
    let out = w.run(&["check", bad.to_str().unwrap()]);
    out.failure(1);
    let e = &out.stderr;
    let at = |line: usize, col: usize| format!("bad.rhai:{line}:{col}");
    for (needle, line, col) in [
        ("no module \"netwrk\" to import", 9, 1),
        ("`ec2::default_vpc` takes 0 argument(s), not 1", 10, 11),
        ("`ec2::` has no function `run_instanse`", 11, 9),
        (
            "module `network` (<bundled>/stdlib/network.rhai) has no function `discovr`",
            12,
            9,
        ),
        ("param `sise` is not declared in the recipe header", 13, 9),
        ("unknown function `foo`", 15, 1),
        ("unknown module `s3` in `s3::bucket`", 16, 9),
    ] {
        let i = e
            .find(needle)
            .unwrap_or_else(|| panic!("missing `{needle}` in:\n{e}"));
        let after = &e[i..];
        assert!(
            after
                .lines()
                .nth(1)
                .is_some_and(|l| l.ends_with(&at(line, col))),
            "`{needle}` should point at {}:\n{e}",
            at(line, col)
        );
    }
    assert!(e.contains("did you mean \"network\"?"), "{e}");
    assert!(e.contains("did you mean `ec2::run_instance`?"), "{e}");
    assert!(e.contains("did you mean `network::discover`?"), "{e}");
    assert!(e.contains("did you mean `size`?"), "{e}");
    assert!(e.contains("7 error(s)"), "{e}");

    // A syntax error, and a header problem, each at its place.
    let syntax = w.recipe("syntax.rhai", "let a = 1;\nlet b = ;\n");
    w.run(&["check", syntax.to_str().unwrap()])
        .failure(1)
        .stderr_has("syntax.rhai:2:9");
    let header = w.recipe(
        "header.rhai",
        "//! [recipe]\n//! name = \"h\"\n//! description = \"\"\n//! version = \"1\"\nlet a = 1;\n",
    );
    w.run(&["check", header.to_str().unwrap()])
        .failure(1)
        .stderr_has("version `1` is not MAJOR.MINOR.PATCH")
        .stderr_has("header.rhai:4:15");
    // A property the handle does not have: found by check, positioned, with the one meant.
    let typo = w.recipe(
        "typo.rhai",
        "let vm = ec2::run_instance(\"app\", #{});\nvm = ec2::wait_until_running(vm);\nprint(vm.public_ipp);\n",
    );
    w.run(&["check", typo.to_str().unwrap()])
        .failure(1)
        .stderr_has("`Instance` has no property `public_ipp`")
        .stderr_has("typo.rhai:3:10")
        .stderr_has("did you mean `public_ip`?");
    // A header after an import would be ignored: `check` and `run` both refuse it, and the
    // run records nothing.
    let late = w.recipe(
        "late.rhai",
        "import \"teardown\" as t;\n//! [recipe]\n//! name = \"late\"\n//! description = \"\"\n//! version = \"1.0.0\"\nlet a = 1;\n",
    );
    w.run(&["check", late.to_str().unwrap()])
        .failure(1)
        .stderr_has("`//!` lines must be one block at the top of the file")
        .stderr_has("late.rhai:2:1");
    w.run(&["run", late.to_str().unwrap(), "--name", "late"])
        .failure(1)
        .stderr_has("late.rhai:2:1");
    assert!(!w.state_path("late").exists());
    // A module with a syntax error is reported in that module's file.
    w.recipe("broken.rhai", "fn f( { }\n");
    let importer = w.recipe("uses.rhai", "import \"broken\" as b;\nb::f();\n");
    w.run(&["check", importer.to_str().unwrap()])
        .failure(1)
        .stderr_has("broken.rhai:1:");
    w.run(&["check", "nosuch"])
        .failure(2)
        .stderr_has("no recipe `nosuch`");
}

#[test]
fn recipes_list_and_show_read_headers() {
    let w = World::offline();
    w.run(&["recipes", "list"])
        .success()
        .stdout_has("dev         1.0.0    bundled")
        .stdout_has("gpu");
    let out = w.run(&["recipes", "show", "dev", "--json"]);
    out.success();
    let m: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(m["name"], "dev");
    let it = m["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "instance_type")
        .unwrap();
    assert_eq!(it["type"], "string");
    assert_eq!(it["kind"], "instance_type");
    assert_eq!(it["default"], "t3.medium");
    w.run(&["recipes", "show", "gpu"])
        .success()
        .stdout_has("gpu 1.0.0")
        .stdout_has("cdn_gb_estimate");
    let plain = w.recipe("plain.rhai", "let a = param(\"a\", 1);\n");
    w.run(&["recipes", "show", plain.to_str().unwrap()])
        .failure(2)
        .stderr_has("has no header");
}

#[test]
fn set_values_are_checked_against_the_header_before_anything_runs() {
    let w = World::offline();
    w.run(&["run", "dev", "--name", "demo", "--set", "root_volume_gb=0"])
        .failure(2)
        .stderr_has("--set root_volume_gb=0: must be at least 1");
    w.run(&["run", "dev", "--name", "demo", "--set", "spot=maybe"])
        .failure(2)
        .stderr_has("--set spot=maybe: expected true or false");
    w.run(&[
        "run",
        "dev",
        "--name",
        "demo",
        "--set",
        "instance_typ=t3.large",
    ])
    .failure(2)
    .stderr_has("did you mean `instance_type`?");
    w.run(&["run", "rollback", "--name", "demo", "--set", "trigger=oops"])
        .failure(2)
        .stderr_has("must be one of manual, health_check_failed");
    let required = w.recipe(
        "needs.rhai",
        "//! [recipe]\n//! name = \"needs\"\n//! description = \"\"\n//! version = \"1.0.0\"\n//! [params]\n//! cidr = { type = \"string\", required = true, help = \"who may connect\" }\nlet c = param(\"cidr\");\nprint(c);\n",
    );
    w.run(&["run", required.to_str().unwrap(), "--name", "demo"])
        .failure(2)
        .stderr_has("the recipe needs param `cidr` (who may connect): pass --set cidr=VALUE");
    assert!(!w.state_path("demo").exists(), "nothing ran");
}

const PARAMS_AT_ONCE: &str = "//! [recipe]
//! name = \"at-once\"
//! description = \"every param in one map\"
//! version = \"1.0.0\"
//! [params]
//! instance_type = { type = \"instance_type\", default = \"t3.medium\", help = \"x\" }
//! disk_gb = { type = \"int\", default = 30, min = 1, help = \"x\" }
//! spot = { type = \"bool\", default = true, help = \"x\" }
//! models = { type = \"list\", default = [\"a\"], help = \"x\" }
let p = params();
let more = p + #{ disk_gb: p.disk_gb + 1 };
print(`${p.instance_type} ${more.disk_gb} ${p.spot} ${p.models.len()} ${type_of(p.disk_gb)}`);
";

#[test]
fn params_gives_the_header_at_once_typed_and_check_knows_its_names() {
    let w = World::offline();
    let r = w.recipe("at-once.rhai", PARAMS_AT_ONCE);
    let r = r.to_str().unwrap();
    // Every declared param is read (no "declared but never read"), typed as the header says.
    w.run(&["check", r])
        .success()
        .stdout_has("at-once.rhai: ok");
    w.run(&["run", r, "--name", "at-once", "--set", "disk_gb=40"])
        .success()
        .stdout_has("t3.medium 41 true 1 i64");
    assert_eq!(w.state("at-once")["params"]["disk_gb"], 40);
    // A name the header does not declare is found before anything runs.
    let typo = w.recipe(
        "typo.rhai",
        &PARAMS_AT_ONCE.replace("${p.spot}", "${p.spott}"),
    );
    let out = w.run(&["check", typo.to_str().unwrap()]);
    out.failure(1)
        .stderr_has("`params()` has no property `spott`")
        .stderr_has("typo.rhai:12:")
        .stderr_has("did you mean `spot`?");
    // A variable that is not there (a param once read into one) is found as a run finds it.
    let stale = w.recipe(
        "stale.rhai",
        &PARAMS_AT_ONCE.replace("${p.instance_type}", "${instance_type}"),
    );
    w.run(&["check", stale.to_str().unwrap()])
        .failure(1)
        .stderr_has("undefined variable `instance_type`")
        .stderr_has("stale.rhai:12:");
    // Without a header there is nothing to read at once: said by check, and by run.
    let bare = w.recipe("bare.rhai", "let p = params();\nprint(p.x);\n");
    w.run(&["check", bare.to_str().unwrap()])
        .failure(1)
        .stderr_has("params() reads the params a recipe header declares, and this recipe has none");
    w.run(&["run", bare.to_str().unwrap(), "--name", "bare"])
        .failure(1)
        .stderr_has("params(): this recipe has no header declaring its params");
    assert!(
        !w.state_path("bare").exists(),
        "a failed first run leaves no state"
    );
}

#[test]
fn a_copied_recipe_runs_and_its_edits_take_effect() {
    let w = World::moto();
    let dir = w.home.path().join("team");
    let out = w.run(&["recipes", "copy", "dev", dir.to_str().unwrap()]);
    out.success()
        .stdout_has("dev.rhai")
        .stdout_has("stdlib/tier.rhai")
        .stdout_has("run it with: geusemaker run");
    w.run(&["recipes", "copy", "dev", dir.to_str().unwrap()])
        .failure(2)
        .stderr_has("would overwrite");
    // The team's edit: a bigger default instance, and a stdlib tweak the recipe picks up.
    let recipe = dir.join("dev.rhai");
    let text = std::fs::read_to_string(&recipe).unwrap();
    std::fs::write(
        &recipe,
        text.replace("default = \"t3.medium\"", "default = \"t3.large\""),
    )
    .unwrap();
    let report = dir.join("stdlib/report.rhai");
    let text = std::fs::read_to_string(&report).unwrap();
    std::fs::write(
        &report,
        text.replace(
            "ui::stage(`Stack ${stack} is ready`);",
            "ui::stage(`Team stack ${stack} is ready`);",
        ),
    )
    .unwrap();
    w.run(&["check", recipe.to_str().unwrap()]).success();

    let stack = support::stack_name("copy");
    let out = w
        .cmd()
        .args([
            "run",
            recipe.to_str().unwrap(),
            "--name",
            &stack,
            "--set",
            "health_timeout=30",
        ])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(&format!("Team stack {stack} is ready")),
        "{stdout}"
    );
    let inst = w.sdk().stack_instances(&stack);
    assert_eq!(
        inst[0].instance_type().map(|t| t.as_str()),
        Some("t3.large")
    );
}

#[test]
fn without_a_terminal_deploy_never_asks() {
    let w = World::offline();
    let out = w.run(&[]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no command given"), "{}", out.stderr);
    w.run(&["deploy", "dev"])
        .failure(2)
        .stderr_has("--name NAME is needed: there is no terminal to ask for it");
    let required = w.recipe(
        "needs.rhai",
        "//! [recipe]\n//! name = \"needs\"\n//! description = \"\"\n//! version = \"1.0.0\"\n//! [params]\n//! cidr = { type = \"string\", required = true, help = \"who may connect\" }\nlet c = param(\"cidr\");\n",
    );
    w.run(&["deploy", required.to_str().unwrap(), "--name", "demo"])
        .failure(2)
        .stderr_has("pass --set cidr=VALUE");
}

/// The interactive deploy in a real terminal (tmux), against moto.
/// `recipes list` names every recipe as `run` takes it (issue 18): a local file by its path,
/// with its header name beside; a bare header name gets a hint, not a silent miss.
#[test]
fn recipes_list_names_what_run_takes() {
    let w = World::offline();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let lean = std::fs::read_to_string(root.join("recipes/examples/lean.rhai")).unwrap();
    w.recipe("lean.rhai", &lean);
    let in_home = |args: &[&str]| {
        support::Outcome::from(
            w.cmd()
                .current_dir(w.home.path())
                .args(args)
                .output()
                .unwrap(),
        )
    };
    let out = in_home(&["recipes", "list"]);
    out.success()
        .stdout_has("recipes/lean.rhai")
        .stdout_has("local, named `lean`");
    let out = in_home(&["recipes", "list", "--json"]);
    out.success();
    let listed: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"recipes/lean.rhai") && ids.contains(&"dev"),
        "{ids:?}"
    );
    for id in ids
        .iter()
        .filter(|i| ["dev", "recipes/lean.rhai"].contains(i))
    {
        in_home(&["run", id, "--name", "demo", "--plan"])
            .success()
            .stdout_has("Plan for demo");
    }
    in_home(&["run", "lean", "--name", "demo", "--plan"])
        .failure(2)
        .stderr_has("a local recipe is named `lean`: run it as `recipes/lean.rhai`");
    // A bundled recipe is not named as if it were a file in the working directory.
    in_home(&["run", "dev", "--name", "demo", "--plan"])
        .success()
        .stdout_has("(<bundled>/recipes/dev.rhai, ");
}

/// A local file whose header says `name = "dev"` is offered beside the bundled tier, by its
/// path — it never silently takes the bundled tier's place (issue 18).
#[test]
fn a_local_tier_named_like_a_bundled_one_does_not_replace_it() {
    let w = World::offline();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dev = std::fs::read_to_string(root.join("recipes/dev.rhai"))
        .unwrap()
        .replacen("//! description = \"", "//! description = \"IMPOSTOR ", 1);
    w.recipe("mine.rhai", &dev);
    let bin = assert_cmd::cargo::cargo_bin("geusemaker");
    let command = format!(
        "env GEUSEMAKER_HOME={home} NO_COLOR=1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
         GEUSEMAKER_CHECKIP_URL={checkip} {bin}; sleep 30",
        home = w.home.path().display(),
        checkip = support::checkip_url(),
        bin = bin.display()
    );
    let term = support::Tmux::start("impostor", w.home.path(), &command, 200, 60);
    let menu = term.wait_for("Tier [dev]:", 60);
    assert!(menu.contains(") dev "), "the bundled tier stays:\n{menu}");
    assert!(
        menu.contains("recipes/mine.rhai") && menu.contains("IMPOSTOR"),
        "the local one is offered by its path:\n{menu}"
    );
}

#[test]
fn the_interactive_deploy_asks_from_the_header_and_runs() {
    let w = World::moto();
    let bin = assert_cmd::cargo::cargo_bin("geusemaker");
    let stack = support::stack_name("ask");
    let command = format!(
        "env GEUSEMAKER_HOME={home} NO_COLOR=1 AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
         AWS_CONFIG_FILE={home}/aws-config AWS_SHARED_CREDENTIALS_FILE={home}/aws-credentials AWS_EC2_METADATA_DISABLED=true \
         AWS_ENDPOINT_URL={endpoint} GEUSEMAKER_HEALTH_ENDPOINTS={ends} GEUSEMAKER_CHECKIP_URL={checkip} {bin}; sleep 30",
        home = w.home.path().display(),
        endpoint = support::moto().endpoint,
        ends = stand_ins(),
        checkip = support::checkip_url(),
        bin = bin.display()
    );
    let term = support::Tmux::start("deploy", w.home.path(), &command, 200, 60);
    let menu = term.wait_for("Tier [dev]:", 30);
    assert!(
        menu.contains(") dev ") && menu.contains("/mo"),
        "tiers with their cost:\n{menu}"
    );
    assert!(
        !menu.contains("destroy"),
        "maintenance recipes are not tiers:\n{menu}"
    );
    let send = |keys: &str| term.line(keys);
    send("dev");
    term.wait_for("Stack name", 10);
    send(&stack);
    term.wait_for("instance_type [t3.medium]:", 10);
    send("t3.large");
    term.wait_for("spot [true]:", 10);
    send("");
    // Who may connect: the deployer's own address is offered (Enter would take it).
    let s = term.wait_for(&format!("allowed_cidr [{}/32]:", support::DEPLOYER_IP), 10);
    assert!(
        s.contains("this machine's public address is 203.0.113.9/32"),
        "{s}"
    );
    send("10.0.0.0/99");
    term.wait_for("try again", 10);
    send("198.51.100.0/24");
    term.wait_for("vpc_id [none]:", 10);
    let s = term.screen();
    assert!(
        s.contains("1) vpc-") && s.contains("(default)"),
        "VPCs offered:\n{s}"
    );
    send("1");
    let s = term.wait_for("subnet_id [none]:", 10);
    assert!(s.contains("us-east-1a"), "subnets offered:\n{s}");
    send("");
    term.wait_for("models [llama3.2:3b]:", 10);
    send("");
    term.wait_for("owner_email [admin@example.com]:", 10);
    send("");
    let s = term.wait_for("Proceed? [y/N]", 20);
    assert!(s.contains(&format!("Deploy dev as stack `{stack}`")), "{s}");
    assert!(
        s.contains("* instance_type = t3.large") && s.contains("per month (estimate)"),
        "{s}"
    );
    send("y");
    term.wait_for(" ok run ", 60);
    drop(term);
    let state = w.state(&stack);
    assert_eq!(state["params"]["instance_type"], "t3.large");
    assert_eq!(state["params"]["allowed_cidr"], "198.51.100.0/24");
    assert!(state["params"]["vpc_id"]
        .as_str()
        .unwrap()
        .starts_with("vpc-"));
    assert_eq!(state["status"], "running");
}

/// The README's first example is one a newcomer can paste and run: against moto it launches
/// its instance, and destroy removes what it made.
#[test]
fn the_readme_example_runs_as_pasted() {
    let w = World::moto();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let block = readme.split("```rhai\n").nth(1).expect("a rhai example");
    let code = &block[..block.find("```").unwrap()];
    let r = w.recipe("readme.rhai", code);
    let stack = support::stack_name("readme");
    w.run(&["run", r.to_str().unwrap(), "--name", &stack])
        .success()
        .stdout_has("resource(s) created by this run");
    assert_eq!(w.sdk().stack_instances(&stack).len(), 1);
    w.run(&["destroy", &stack, "--yes", "--set", "delete_data=true"])
        .success();
    assert!(
        w.sdk().leftovers(&stack).is_empty(),
        "{:?}",
        w.sdk().leftovers(&stack)
    );
}

/// Every `rhai` example in the README and docs/ (the generated reference aside: its examples
/// are fragments of one call) passes `geusemaker check`.
#[test]
fn every_rhai_example_in_the_docs_passes_check() {
    let w = World::offline();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut docs = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "md") && !p.ends_with("primitives.md") {
            docs.push(p);
        }
    }
    let mut files = Vec::new();
    for doc in &docs {
        let text = std::fs::read_to_string(doc).unwrap();
        let name = doc.file_stem().unwrap().to_string_lossy().into_owned();
        for (i, block) in text.split("```rhai\n").skip(1).enumerate() {
            let code = &block[..block.find("```").expect("a closed code block")];
            files.push(w.recipe(&format!("{name}-{}.rhai", i + 1), code));
        }
    }
    assert!(files.len() >= 5, "examples found: {}", files.len());
    let mut args = vec!["check".to_string()];
    args.extend(files.iter().map(|f| f.to_string_lossy().into_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = w.run(&args);
    out.success();
    assert_eq!(
        out.stdout.matches(": ok").count(),
        files.len(),
        "{}",
        out.stdout
    );
}
