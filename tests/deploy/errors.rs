//! What stops a run and how it says so: a second concurrent run, AWS errors with their position,
//! a refused launch, missing credentials or region, params checked for meaning; and `--region`.

use std::time::{Duration, Instant};

use super::*;

#[test]
fn a_second_concurrent_run_on_the_same_stack_is_refused_at_once() {
    let w = World::moto();
    let stack = support::stack_name("lock");
    // A recipe that holds the stack for a while: it waits on a port nobody listens on.
    let port = support::free_port();
    let slow = w.recipe(
        "slow.rhai",
        &format!("health::wait_until_healthy([#{{ name: \"nothing\", tcp: \"127.0.0.1:{port}\", timeout_ms: 200 }}], #{{ timeout: 20, interval: 1 }});\n"),
    );
    let mut first = w
        .cmd()
        .args(["run", slow.to_str().unwrap(), "--name", &stack])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lock = w.home.path().join("stacks").join(format!("{stack}.lock"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::fs::read_to_string(&lock)
        .map(|s| s.is_empty())
        .unwrap_or(true)
    {
        assert!(Instant::now() < deadline, "first run never took the lock");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = w.run(&["run", slow.to_str().unwrap(), "--name", &stack]);
    out.failure(1)
        .stderr_has(&format!("stack `{stack}` is locked by pid {}", first.id()))
        .stderr_has("only one run per stack");
    first.kill().unwrap();
    first.wait().unwrap();
    // The OS released the dead run's lock: the stack is usable again.
    let quick = w.recipe("quick.rhai", "ui::success(\"got the lock\");\n");
    w.run(&["run", quick.to_str().unwrap(), "--name", &stack])
        .success()
        .stdout_has("got the lock");
}

#[test]
fn aws_errors_show_code_hint_position_and_the_stdlib_frame() {
    let w = World::moto();
    let stack = support::stack_name("awserr");
    let r = w.recipe(
        "bad-sg.rhai",
        "import \"storage\" as storage;\nlet vpc = ec2::default_vpc();\nlet sg = storage::nfs_security_group(\"efs\", vpc, \"sg-00000000000000000\");\n",
    );
    let out = w.run(&["run", r.to_str().unwrap(), "--name", &stack]);
    out.failure(1)
        .stderr_has("AWS ec2:AuthorizeSecurityGroupIngress failed: InvalidGroup.NotFound")
        .stderr_has("hint:")
        .stderr_has("stdlib/storage.rhai:")
        .stderr_has("call stack (outermost first):")
        .stderr_has("bad-sg.rhai:3:")
        .stderr_has("ec2::security_group()");
    // What the failed run did create is in the ledger, so it can be cleaned up.
    let state = w.state(&stack);
    assert_eq!(state["status"], "failed");
    assert!(state["runs"][0]["outcome"]
        .as_str()
        .unwrap()
        .starts_with("failed: AWS ec2:AuthorizeSecurityGroupIngress"));
    assert_eq!(state["resources"][0]["kind"], "ec2:security-group");
}

#[test]
fn invalid_instance_type_is_an_actionable_error_at_the_launch() {
    let w = World::moto();
    let stack = support::stack_name("badtype");
    let out = w.run(&[
        "run",
        "quickstart",
        "--name",
        &stack,
        "--set",
        // Well formed (the header's check passes it), but no such type: AWS says so.
        "instance_type=t9.large",
    ]);
    out.failure(1)
        .stderr_has("RunInstances failed: InvalidInstanceType")
        .stderr_has("recipes/quickstart.rhai:")
        .stderr_has("ec2::run_instance");
    let state = w.state(&stack);
    let launch = state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["kind"] == "ec2:instance")
        .unwrap();
    assert_eq!(
        launch["status"], "failed",
        "a refused launch is recorded as failed, not pending"
    );
    assert!(w.sdk().stack_instances(&stack).is_empty());
}

/// The preflight (issue 18): without credentials or a region a run stops before its first AWS
/// call with one short message saying how to fix it — no SDK log lines, no position inside the
/// stdlib, exit 2 — and leaves no trace: no new stack, and an existing one exactly as it was.
#[test]
fn missing_credentials_and_region_stop_the_run_before_anything() {
    let w = World::moto();
    let no_credentials = |args: &[&str]| {
        w.cmd()
            .args(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };
    let out = no_credentials(&["run", "quickstart", "--name", "nocreds"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("error: no AWS credentials found\n"),
        "{stderr}"
    );
    for fix in [
        "AWS_ACCESS_KEY_ID",
        "--profile",
        "aws configure",
        "aws sso login",
    ] {
        assert!(stderr.contains(fix), "names the fix {fix}: {stderr}");
    }
    assert!(!stderr.contains("WARN"), "no SDK log lines: {stderr}");
    assert!(
        !stderr.contains(".rhai:"),
        "no position in a recipe: {stderr}"
    );
    assert!(
        !w.home.path().join("stacks/nocreds.json").exists(),
        "nothing recorded"
    );
    let list = w.run(&["list"]);
    assert!(!list.stdout.contains("nocreds"), "{}", list.stdout);

    let out = w
        .cmd()
        .args(["run", "quickstart", "--name", "noregion"])
        .env_remove("AWS_REGION")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: no AWS region") || stderr.contains("\nerror: no AWS region"),
        "{stderr}"
    );
    assert!(stderr.contains("--region us-east-1"), "{stderr}");
    assert!(!w.home.path().join("stacks/noregion.json").exists());

    // With -v the SDK's own reasons are there for whoever wants them.
    let out = no_credentials(&["-v", "run", "quickstart", "--name", "nocreds"]);
    assert_eq!(out.status.code(), Some(2));

    // An existing stack is left exactly as it was: no failed run, no status change.
    let stack = support::stack_name("pre");
    let r = w.recipe(
        "sg.rhai",
        "let vpc = ec2::default_vpc();\nec2::security_group(\"app\", vpc, #{});\n",
    );
    let r = r.to_str().unwrap();
    w.run(&["run", r, "--name", &stack]).success();
    let file = w.home.path().join("stacks").join(format!("{stack}.json"));
    let before = std::fs::read_to_string(&file).unwrap();
    let out = no_credentials(&["run", r, "--name", &stack]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let out = no_credentials(&["destroy", &stack, "--yes"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
    let status = w.run(&["list"]);
    assert!(status.stdout.contains("running"), "{}", status.stdout);
}

/// Params are checked for meaning before anything is created (issue 18): a range with a byte
/// over 255 or a prefix over 32, a misspelt instance type — each refused in words (never a
/// regular expression), exit 2, no stack recorded, no AWS call. config.toml values are checked
/// the same way, and those a run uses are shown with their source.
#[test]
fn params_and_settings_are_checked_for_meaning_before_anything_is_created() {
    let w = World::moto();
    for (set, words) in [
        (
            "allowed_cidr=999.1.1.1/32",
            "999 is not an address byte (each of the four is 0–255)",
        ),
        (
            "allowed_cidr=10.0.0.0/33",
            "the prefix length must be 0–32, not 33",
        ),
        (
            "instance_type=t3.larg",
            "`larg` is not an EC2 instance size",
        ),
        ("owner_email=admin", "is not an email address"),
        ("images=n8nio/n8n", "names no version"),
    ] {
        let out = w.run(&["run", "dev", "--name", "typed", "--set", set]);
        out.failure(2).stderr_has(words);
        assert!(
            !out.stderr.contains("^"),
            "no regular expression: {}",
            out.stderr
        );
        assert!(
            !w.state_path("typed").exists(),
            "nothing recorded for {set}"
        );
    }
    assert!(w.sdk().leftovers("typed").is_empty());
    let out = w.run(&[
        "run",
        "dev",
        "--name",
        "typed",
        "--set",
        "instance_type=t3.larg",
    ]);
    out.stderr_has("did you mean `t3.large`?");

    // config.toml: a misspelt type is refused where it is written, and at every run.
    w.run(&["config", "set", "deploy.instance_type", "t3.larg"])
        .failure(2)
        .stderr_has("did you mean `t3.large`?");
    std::fs::write(
        w.home.path().join("config.toml"),
        "[deploy]\ninstance_type = \"t3.larg\"\n",
    )
    .unwrap();
    w.run(&["run", "dev", "--name", "typed", "--plan"])
        .failure(2)
        .stderr_has("config.toml:2:17: deploy.instance_type: `t3.larg`")
        .stderr_has("geusemaker config set|unset KEY");
    // … and the way out works on that very file.
    w.run(&["config", "unset", "deploy.instance_type"])
        .success();
    w.run(&["run", "dev", "--name", "typed", "--plan"])
        .success();
    // A valid one applies to a recipe that takes the param — in plain sight, with its source.
    std::fs::write(
        w.home.path().join("config.toml"),
        "[deploy]\ninstance_type = \"t3.large\"\nspot = true\n",
    )
    .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    w.run(&[
        "run",
        root.join("recipes/examples/lean.rhai").to_str().unwrap(),
        "--name",
        "typed",
        "--plan",
        "--set",
        "allowed_cidr=198.51.100.0/24",
    ])
    .success()
    .stdout_has("params not from the recipe: allowed_cidr = 198.51.100.0/24 (--set), instance_type = t3.large (config.toml deploy.instance_type), spot = true (config.toml deploy.spot)");
}

#[test]
fn region_flag_selects_another_region() {
    let w = World::moto();
    let stack = support::stack_name("west");
    let r = w.recipe("where.rhai", "let vpc = ec2::default_vpc();\nlet n = ec2::subnets(vpc).len();\nstate::output(\"subnets\", n);\nstate::output(\"region\", state::region());\n");
    w.run(&[
        "run",
        r.to_str().unwrap(),
        "--name",
        &stack,
        "--region",
        "us-west-2",
    ])
    .success();
    let s = w.state(&stack);
    assert_eq!(s["outputs"]["region"], "us-west-2");
    assert_eq!(
        s["outputs"]["subnets"], 4,
        "moto's us-west-2 has 4 default subnets"
    );
}
