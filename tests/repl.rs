//! `geusemaker repl` driven through piped stdin: values, multi-line input, errors that do not
//! end the session, meta-commands, and `:save` producing a recipe `geusemaker run` accepts.

use crate::support;

use std::io::Write;
use std::process::Stdio;

use support::{Outcome, World};

fn repl(w: &World, args: &[&str], input: &str) -> Outcome {
    let mut child = w
        .cmd()
        .arg("repl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    Outcome::from(out)
}

#[test]
fn a_session_explores_survives_errors_and_saves_a_runnable_recipe() {
    let w = World::moto();
    let saved = w.home.path().join("saved.rhai");
    let input = format!(
        "let vpc = ec2::default_vpc();\nvpc.cidr\nlet zones = #{{\n  count: ec2::subnets(vpc)\n    .len()\n}};\nzones.count\nec2::defualt_vpc()\nlet after = \"still here\";\nafter\n:vars\n:help ec2::subnets\n:functions efs\n:region\n:bogus\nstate::output(\"zones\", zones.count);\n:save {}\n:quit\nnever_evaluated()\n",
        saved.display()
    );
    let out = repl(&w, &[], &input);
    out.success()
        .stdout_has("172.31.0.0/16")
        .stdout_has("\n6\n")
        .stdout_has("still here")
        .stdout_has("let vpc: Vpc")
        .stdout_has("ec2::subnets(vpc: any) -> array")
        .stdout_has("efs::file_systems")
        .stdout_has("us-east-1")
        .stdout_has("wrote");
    out.stderr_has("did you mean `ec2::default_vpc`?")
        .stderr_has("<repl:")
        .stderr_has("unknown command :bogus");
    // Without a stack, state and create primitives say what they need.
    out.stderr_has("needs a stack");
    assert!(
        !out.stderr.contains("never_evaluated"),
        ":quit ends the session"
    );
    assert!(
        w.home.path().join("repl_history").exists(),
        "history is kept"
    );

    // The saved statements run as a recipe.
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(
        text.contains("let vpc = ec2::default_vpc();") && text.contains("count: ec2::subnets(vpc)"),
        "{text}"
    );
    assert!(!text.contains("defualt"), "failed statements are not saved");
    w.run(&["run", saved.to_str().unwrap(), "--name", "from-repl"])
        .success();
}

#[test]
fn with_a_stack_creates_are_recorded_in_its_ledger() {
    let w = World::moto();
    let stack = support::stack_name("replstack");
    let out = repl(
        &w,
        &["--name", &stack],
        "let sg = ec2::security_group(\"lab\", ec2::default_vpc(), #{});\nsg.name\n",
    );
    out.success().stdout_has(&format!("{stack}-lab"));
    let state = w.state(&stack);
    assert_eq!(state["resources"][0]["kind"], "ec2:security-group");
    assert_eq!(w.sdk().leftovers(&stack).security_groups.len(), 1);
    w.run(&["destroy", &stack, "--yes"]).success();
    assert!(w.sdk().leftovers(&stack).is_empty());
}

#[test]
fn ctrl_c_cancels_a_running_call_without_leaving() {
    let w = World::offline();
    let closed = support::free_port();
    let mut child = w
        .cmd()
        .arg("repl")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(
        stdin,
        "health::wait_until_healthy([#{{ name: \"x\", tcp: \"127.0.0.1:{closed}\", timeout_ms: 200 }}], #{{ timeout: 60, interval: 1 }});\n\"still alive\""
    )
    .unwrap();
    drop(stdin);
    std::thread::sleep(std::time::Duration::from_millis(2500));
    std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let started = std::time::Instant::now();
    let out = child.wait_with_output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "the call stopped at once"
    );
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stdout.contains("still alive"),
        "the session went on: {stdout}"
    );
}

/// Tab completion needs a terminal: drive the REPL inside tmux (installed by scripts/test.sh).
#[test]
fn tab_completes_functions_and_properties_in_a_terminal() {
    use std::time::{Duration, Instant};
    let w = World::offline();
    let bin = assert_cmd::cargo::cargo_bin("geusemaker");
    let command = format!(
        "env GEUSEMAKER_HOME={} NO_COLOR=1 AWS_REGION=us-east-1 AWS_ENDPOINT_URL=http://127.0.0.1:9 {} repl",
        w.home.path().display(),
        bin.display()
    );
    let term = support::Tmux::start(
        "repl",
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")),
        &command,
        160,
        40,
    );
    // Type only once the editor waits at the n-th prompt (keys sent earlier may be flushed).
    let prompt = |n: usize| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while term.screen().matches("gm>").count() < n {
            assert!(
                Instant::now() < deadline,
                "prompt {n} never came:\n{}",
                term.screen()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        std::thread::sleep(Duration::from_millis(300));
    };
    prompt(1);
    // (No trailing `;`: tmux would read it as the end of its own command.)
    term.keys(&["let v = #{ cidr: \"10.0.0.0/16\" }", "Enter"]);
    prompt(2);
    term.keys(&["v.ci", "Tab"]);
    term.wait_for("v.cidr", 20);
    term.keys(&["Enter"]);
    term.wait_for("10.0.0.0/16", 20);
    prompt(3);
    term.keys(&["ec2::default_v", "Tab"]);
    term.wait_for("ec2::default_vpc", 20);
    // Ctrl-C cancels the line being typed; the session goes on.
    term.keys(&["C-c"]);
    prompt(4);
    term.keys(&["40 + 2", "Enter"]);
    term.wait_for("42", 20);
    prompt(5);
    term.keys(&["C-d"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while term.alive() {
        assert!(
            Instant::now() < deadline,
            "Ctrl-D did not leave:\n{}",
            term.screen()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
