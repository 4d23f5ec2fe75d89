//! The binary with bad input of every kind, before any AWS call: clear message, non-zero
//! exit, no panic, nothing written.

use crate::support;
use support::World;

#[test]
fn help_and_version() {
    let w = World::offline();
    w.run(&["--help"])
        .success()
        .stdout_has("run")
        .stdout_has("Rhai");
    w.run(&["run", "--help"])
        .success()
        .stdout_has("--set")
        .stdout_has("--name");
    w.run(&["--version"])
        .success()
        .stdout_has(env!("CARGO_PKG_VERSION"));
}

#[test]
fn syntax_error_points_at_file_line_col_with_a_caret() {
    let w = World::offline();
    let r = w.recipe("broken.rhai", "let ok = 1;\nlet x = ok +;\n");
    let out = w.run(&["run", r.to_str().unwrap(), "--name", "syntax-err"]);
    out.failure(1)
        .stderr_has("error: syntax error")
        .stderr_has("broken.rhai:2:13")
        .stderr_has("2 | let x = ok +;")
        .stderr_has("  |             ^");
    assert!(
        !w.state_path("syntax-err").exists(),
        "a recipe that does not compile creates no state"
    );
}

#[test]
fn unknown_function_suggests_the_closest_primitive() {
    let w = World::offline();
    let r = w.recipe("typo.rhai", "let vpc = ec2::defualt_vpc();\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "typo-fn"])
        .failure(1)
        .stderr_has("unknown function `ec2::defualt_vpc")
        .stderr_has("typo.rhai:1:")
        .stderr_has("did you mean `ec2::default_vpc`?");
    assert!(
        !w.state_path("typo-fn").exists(),
        "a failed first run that created nothing leaves no state"
    );
}

#[test]
fn unknown_option_key_suggests_the_right_one() {
    let w = World::offline();
    let r = w.recipe(
        "opt.rhai",
        "let r = health::http(\"http://127.0.0.1:9/\", #{ timout_ms: 100 });\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", "bad-opt"])
        .failure(1)
        .stderr_has("health::http: unknown option `timout_ms`")
        .stderr_has("did you mean `timeout_ms`?")
        .stderr_has("opt.rhai:1:");
}

#[test]
fn bad_set_values_are_usage_errors() {
    let w = World::offline();
    w.run(&["run", "quickstart", "--name", "sets", "--set", "novalue"])
        .failure(2)
        .stderr_has("malformed --set `novalue`");
    w.run(&["run", "quickstart", "--name", "sets", "--set", "Instance=x"])
        .failure(2)
        .stderr_has("keys are lowercase");
    w.run(&[
        "run",
        "quickstart",
        "--name",
        "sets",
        "--set",
        "instance_typ=t3.large",
    ])
    .failure(2)
    .stderr_has("has no param `instance_typ`")
    .stderr_has("did you mean `instance_type`?");
    w.run(&[
        "run",
        "quickstart",
        "--name",
        "sets",
        "--set",
        "spot=1",
        "--set",
        "spot=0",
    ])
    .failure(2)
    .stderr_has("more than once");
    assert!(!w.state_path("sets").exists());
}

#[test]
fn a_set_value_of_the_wrong_type_is_an_error_at_the_param() {
    let w = World::offline();
    let r = w.recipe("typed.rhai", "let disk = param(\"disk_gb\", 30);\n");
    w.run(&[
        "run",
        r.to_str().unwrap(),
        "--name",
        "typed",
        "--set",
        "disk_gb=lots",
    ])
    .failure(1)
    .stderr_has("--set disk_gb=lots: expected an integer")
    .stderr_has("typed.rhai:1:");
}

#[test]
fn invalid_stack_names_are_refused_before_anything_runs() {
    let w = World::offline();
    for bad in [
        "My-Stack",
        "1abc",
        "a",
        "has_underscore",
        "../../etc",
        &"x".repeat(64),
    ] {
        w.run(&["run", "quickstart", "--name", bad])
            .failure(2)
            .stderr_has("invalid stack name");
    }
    assert!(
        !w.home.path().join("stacks").exists(),
        "nothing is written for an invalid name"
    );
}

#[test]
fn unknown_recipe_names_the_bundled_ones() {
    let w = World::offline();
    w.run(&["run", "quikstart", "--name", "nope"])
        .failure(2)
        .stderr_has("no recipe `quikstart`")
        .stderr_has("did you mean `quickstart`?");
}

#[test]
fn corrupt_state_file_is_reported_and_left_untouched() {
    let w = World::offline();
    let stacks = w.home.path().join("stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    let path = stacks.join("damaged.json");
    let garbage = "{\n  \"stack\": \"damaged\",\n  \"resources\": [ oops ]\n}\n";
    std::fs::write(&path, garbage).unwrap();
    w.run(&["run", "quickstart", "--name", "damaged"])
        .failure(1)
        .stderr_has("damaged.json:3:")
        .stderr_has("the state file is not valid")
        .stderr_has("nothing was changed");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), garbage);
}

#[test]
fn sandbox_stops_runaway_recipes_and_has_no_eval() {
    let w = World::offline();
    let r = w.recipe("loop.rhai", "let i = 0;\nloop { i += 1; }\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "runaway"])
        .failure(1)
        .stderr_has("too many operations")
        .stderr_has("loop.rhai:");
    // Data that grows without end is stopped by the sandbox's size limits, with a position.
    let r = w.recipe("grow.rhai", "let a = [];\nloop { a.push(1); }\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "grows"])
        .failure(1)
        .stderr_has("grew past the sandbox's limits (arrays 10000 items")
        .stderr_has("grow.rhai:2:");
    let r = w.recipe("eval.rhai", "eval(\"40 + 2\");\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "evil"])
        .failure(1)
        .stderr_has("eval.rhai:1:");
    let r = w.recipe("import.rhai", "import \"../../etc/passwd\" as p;\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "escape"])
        .failure(1)
        .stderr_has("cannot find module");
}

#[test]
fn thrown_errors_show_the_recipe_position_and_the_call_stack() {
    let w = World::offline();
    w.recipe(
        "helpers.rhai",
        "fn check(x) {\n    if x > 1 { throw `too big: ${x}`; }\n    x\n}\n",
    );
    let r = w.recipe(
        "main.rhai",
        "import \"helpers\" as h;\nlet v = h::check(5);\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", "thrown"])
        .failure(1)
        .stderr_has("error: too big: 5")
        .stderr_has("helpers.rhai:2:")
        .stderr_has("call stack (outermost first):")
        .stderr_has("main.rhai:2:");
}

#[test]
fn recipes_that_touch_no_aws_need_no_credentials() {
    let w = World::offline();
    let r = w.recipe(
        "local.rhai",
        "ui::stage(\"Local\");\nlet n = param(\"count\", 2);\nstate::set(\"count\", n * 2);\nstate::output(\"answer\", 42);\nui::success(`count is ${n}`);\n",
    );
    let out = w.run(&[
        "run",
        r.to_str().unwrap(),
        "--name",
        "local",
        "--set",
        "count=5",
    ]);
    out.success()
        .stdout_has("==> Local")
        .stdout_has("count is 5")
        .stdout_has("0 AWS requests");
    let s = w.state("local");
    assert_eq!(s["status"], "running");
    assert_eq!(s["values"]["count"], 10);
    assert_eq!(s["outputs"]["answer"], 42);
    assert_eq!(s["params"]["count"], 5);
    assert_eq!(support::file_mode(&w.state_path("local")), 0o600);
}

#[test]
fn confirm_without_a_terminal_needs_yes() {
    let w = World::offline();
    let r = w.recipe(
        "ask.rhai",
        "if ui::confirm(\"Proceed?\") { ui::success(\"went ahead\"); }\n",
    );
    w.run(&["run", r.to_str().unwrap(), "--name", "ask"])
        .failure(1)
        .stderr_has("without a terminal; pass --yes");
    w.run(&["run", r.to_str().unwrap(), "--name", "ask", "--yes"])
        .success()
        .stdout_has("went ahead");
}
