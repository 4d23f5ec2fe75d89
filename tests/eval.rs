//! `geusemaker eval`: one-shot account queries with the recipes' primitives.

use crate::support;

use support::World;

#[test]
fn json_output_parses_and_matches_the_account() {
    let w = World::moto();
    let out = w.run(&["eval", "--json", "ec2::vpcs()"]);
    out.success();
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("stdout is JSON");
    let sdk = w.sdk();
    let default = sdk
        .block_on(
            sdk.ec2
                .describe_vpcs()
                .filters(support::filter("is-default", "true"))
                .send(),
        )
        .unwrap();
    let id = default.vpcs()[0].vpc_id().unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == id && x["is_default"] == true),
        "{v}"
    );

    let out = w.run(&[
        "eval",
        "--json",
        "#{ vpc: ec2::default_vpc(), subnets: ec2::subnets(ec2::default_vpc()).len() }",
    ]);
    let v: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    assert_eq!(v["vpc"]["id"], id);
    assert_eq!(v["subnets"], 6);
}

#[test]
fn handles_print_as_tables() {
    let w = World::moto();
    let out = w.run(&["eval", "ec2::subnets(ec2::default_vpc())"]);
    out.success()
        .stdout_has("ID")
        .stdout_has("AZ")
        .stdout_has("us-east-1a")
        .stdout_has("(6 items)");
    let out = w.run(&["eval", "ec2::default_vpc()"]);
    out.success()
        .stdout_has("PROPERTY")
        .stdout_has("cidr")
        .stdout_has("172.31.0.0/16");
}

#[test]
fn stacks_are_listed_and_readable() {
    let w = World::moto();
    let r = w.recipe("tiny.rhai", "state::output(\"answer\", 42);\n");
    w.run(&["run", r.to_str().unwrap(), "--name", "tiny-one"])
        .success();
    let out = w.run(&["eval", "--json", "stacks()"]);
    let v: serde_json::Value = serde_json::from_str(&out.success().stdout).unwrap();
    assert_eq!(v[0]["name"], "tiny-one");
    assert_eq!(v[0]["status"], "running");
    w.run(&["eval", "stack(\"tiny-one\").outputs.answer"])
        .success()
        .stdout_has("42");
    w.run(&["eval", "stack(\"nope\")"])
        .failure(1)
        .stderr_has("no stack named `nope`");
}

#[test]
fn errors_render_like_recipe_errors_and_creates_need_a_stack() {
    let w = World::moto();
    w.run(&["eval", "ec2::defualt_vpc()"])
        .failure(1)
        .stderr_has("<eval>:1:")
        .stderr_has("did you mean `ec2::default_vpc`?");
    w.run(&["eval", "1 +"])
        .failure(1)
        .stderr_has("syntax error");
    // `eval` has no --name to give: it says where creates belong instead.
    let out = w.run(&["eval", "ec2::key_pair(\"x\")"]);
    out.failure(1)
        .stderr_has("needs a stack, and `eval` runs without one")
        .stderr_has("geusemaker repl --name <stack>");
    assert!(
        !out.stderr.contains("run the recipe with --name"),
        "{}",
        out.stderr
    );
    w.run(&["eval", "ec2::instances(#{ stat: \"running\" })"])
        .failure(1)
        .stderr_has("did you mean `state`?");
    // A property a handle lacks, at run time: positioned, with the one meant.
    w.run(&["eval", "ec2::default_vpc().cidrr"])
        .failure(1)
        .stderr_has("<eval>:1:20")
        .stderr_has("did you mean `cidr`?");
    // A property another handle has is no near miss: no hint that names it back.
    let out = w.run(&["eval", "ec2::default_vpc().tags"]);
    out.failure(1);
    assert!(
        !out.stderr.contains("did you mean `tags`"),
        "{}",
        out.stderr
    );
    // A state EC2 does not have is an error, not an empty answer.
    w.run(&["eval", "ec2::instances(#{ state: \"runing\" })"])
        .failure(1)
        .stderr_has("option `state` is `runing`, not one of pending, running")
        .stderr_has("did you mean `running`?");
    assert!(w.sdk().leftovers("eval").is_empty());
}
