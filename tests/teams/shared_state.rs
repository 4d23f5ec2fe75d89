//! One bucket, many machines: a stack deployed from one is listed, shown and destroyed from
//! another; push and pull; a project's geusemaker.toml; a bad or unreachable location.

use crate::support::stand_ins;

use super::*;

#[test]
fn a_stack_deployed_from_one_machine_is_listed_shown_and_destroyed_from_another() {
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "team");
    let url = format!("s3://{b}/geusemaker");
    let (a, other) = (machine(&url, "2m"), machine(&url, "2m"));
    let stack = support::stack_name("shared");

    let out = a
        .cmd()
        .args(["run", "dev", "--name", &stack, "--set", "health_timeout=30"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .output()
        .unwrap();
    let out = Outcome::from(out);
    out.success()
        .stdout_has(&format!("state: s3://{b}/geusemaker/stacks/{stack}.json"));
    // The moto bucket keeps no versions: said, with the command that turns them on.
    out.stderr_has("does not keep versions");
    for w in [&a, &other] {
        assert!(
            !w.state_path(&stack).exists(),
            "no local copy of a shared stack"
        );
    }

    // What is in the bucket: the document (encrypted, no secret in it), and no lock left.
    let all = objects(&sdk, &b);
    let doc_key = format!("geusemaker/stacks/{stack}.json");
    let keys: Vec<&str> = all.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(keys, vec![doc_key.as_str()], "only the document stays");
    for (key, _, sse) in &all {
        assert_eq!(sse.as_deref(), Some("AES256"), "{key} is encrypted");
    }
    let params = sdk
        .block_on(
            sdk.ssm
                .get_parameters_by_path()
                .path(format!("/geusemaker/{stack}/"))
                .recursive(true)
                .with_decryption(true)
                .send(),
        )
        .unwrap();
    let secrets: Vec<&str> = params
        .parameters()
        .iter()
        .filter(|p| p.r#type().map(|t| t.as_str()) == Some("SecureString"))
        .filter_map(|p| p.value())
        .collect();
    assert!(secrets.len() >= 3, "the dev tier keeps its secrets in SSM");
    for (key, body, _) in &all {
        for s in &secrets {
            assert!(!body.contains(s), "a secret value is in {key}");
        }
    }
    let state: serde_json::Value = serde_json::from_str(&all[0].1).unwrap();
    assert_eq!(state["status"], "running");

    // The other machine lists it, shows it, sees where it lives, and destroys it.
    other
        .run(&["list"])
        .success()
        .stdout_has(&stack)
        .stdout_has("running");
    other.run(&["status", &stack]).success().stdout_has(&stack);
    other
        .run(&["state", "show", &stack])
        .success()
        .stdout_has(&format!("s3://{b}/geusemaker/stacks/{stack}.json"))
        .stdout_has("(shared)")
        .stdout_has("Lock      free");
    other
        .run(&["destroy", &stack, "--yes", "--set", "delete_data=true"])
        .success();
    let left = sdk.leftovers(&stack);
    assert!(
        left.is_empty(),
        "destroyed from the other machine: {left:?}"
    );
    // Nothing remains: no document either, for anyone.
    assert!(objects(&sdk, &b).is_empty(), "{:?}", objects(&sdk, &b));
    assert!(!a.run(&["list"]).success().stdout.contains(&stack));
}

#[test]
fn push_then_pull_round_trips_a_stack_exactly_leaving_one_copy() {
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "move");
    let url = format!("s3://{b}/team");
    let laptop = World::moto();
    let colleague = machine(&url, "2m");
    let stack = support::stack_name("moved");
    let quick = quick_recipe(&laptop);
    laptop
        .run(&["run", &quick, "--name", &stack])
        .success()
        .stdout_has(&format!("state: {}", laptop.state_path(&stack).display()));
    let original = std::fs::read(laptop.state_path(&stack)).unwrap();

    laptop
        .run(&["state", "push", &stack, "--state", &url])
        .success()
        .stdout_has(&format!(
            "moved `{stack}` to s3://{b}/team/stacks/{stack}.json"
        ));
    assert!(
        !laptop.state_path(&stack).exists(),
        "no second live copy here"
    );
    let key = format!("team/stacks/{stack}.json");
    assert_eq!(
        object(&sdk, &b, &key).expect("pushed").into_bytes(),
        original
    );
    assert!(
        laptop.run(&["list"]).stdout.contains("no stacks"),
        "the laptop's own list is empty"
    );
    colleague.run(&["list"]).success().stdout_has(&stack);
    colleague
        .run(&["state", "show", &stack, "--json"])
        .success()
        .stdout_has(&format!("\"location\": \"s3://{b}/{key}\""));

    // Pulled back: the same bytes here, nothing left in S3.
    laptop
        .run(&["state", "pull", &stack, "--state", &url])
        .success();
    assert_eq!(std::fs::read(laptop.state_path(&stack)).unwrap(), original);
    assert!(object(&sdk, &b, &key).is_none(), "pulled: gone from S3");

    let put = |body: Vec<u8>| {
        sdk.block_on(
            sdk.s3
                .put_object()
                .bucket(&b)
                .key(&key)
                .body(body.into())
                .send(),
        )
        .unwrap();
    };
    // A push that stopped between its copy and the removal here is finished by the next one.
    put(original.clone());
    laptop
        .run(&["state", "push", "--all", "--state", &url])
        .success();
    assert!(!laptop.state_path(&stack).exists());
    assert_eq!(object(&sdk, &b, &key).unwrap().into_bytes(), original);
    laptop
        .run(&["state", "pull", "--all", "--state", &url])
        .success();
    // A different stack of the same name there: refused, both stay as they were.
    let mut other_doc = original.clone();
    other_doc.extend_from_slice(b"\n");
    put(other_doc.clone());
    laptop
        .run(&["state", "push", &stack, "--state", &url])
        .failure(1)
        .stderr_has("a different stack of that name is already there");
    assert_eq!(std::fs::read(laptop.state_path(&stack)).unwrap(), original);
    assert_eq!(object(&sdk, &b, &key).unwrap().into_bytes(), other_doc);
    sdk.block_on(sdk.s3.delete_object().bucket(&b).key(&key).send())
        .unwrap();

    // With no team backend, there is nowhere to push.
    laptop
        .run(&["state", "push", &stack])
        .failure(2)
        .stderr_has("no team backend");
    // The laptop's stack still works (and is destroyed) locally.
    laptop
        .run(&["destroy", &stack, "--yes", "--state", "local"])
        .success();
    assert!(sdk.leftovers(&stack).is_empty());
}

#[test]
fn a_projects_geusemaker_toml_points_every_member_at_the_team_bucket() {
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "proj");
    // This team keeps versions of its state: nothing to warn about.
    sdk.block_on(
        sdk.s3
            .put_bucket_versioning()
            .bucket(&b)
            .versioning_configuration(
                aws_sdk_s3::types::VersioningConfiguration::builder()
                    .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send(),
    )
    .unwrap();
    let w = World::moto();
    let project = tempfile::tempdir().unwrap();
    std::fs::write(
        project.path().join("geusemaker.toml"),
        format!("# the team's state\n[state]\nurl = \"s3://{b}/ops\"\n"),
    )
    .unwrap();
    let stack = support::stack_name("proj");
    let quick = quick_recipe(&w);
    let out = w
        .cmd()
        .current_dir(project.path())
        .args(["run", &quick, "--name", &stack])
        .output()
        .unwrap();
    let out = Outcome::from(out);
    out.success()
        .stdout_has(&format!("state: s3://{b}/ops/stacks/{stack}.json"));
    assert!(!out.stderr.contains("keep versions"), "{}", out.stderr);
    assert!(!w.state_path(&stack).exists());
    // --state (or GEUSEMAKER_STATE) wins over the project.
    let out = w
        .cmd()
        .current_dir(project.path())
        .args(["list", "--state", "local"])
        .output()
        .unwrap();
    let out = Outcome::from(out);
    out.success();
    assert!(!out.stdout.contains(&stack), "{}", out.stdout);
    // A misspelt key in the project's [state] is refused with its position.
    std::fs::write(
        project.path().join("geusemaker.toml"),
        format!("[state]\nulr = \"s3://{b}/ops\"\n"),
    )
    .unwrap();
    let out = w
        .cmd()
        .current_dir(project.path())
        .args(["list"])
        .output()
        .unwrap();
    Outcome::from(out)
        .failure(2)
        .stderr_has("geusemaker.toml:2:1")
        .stderr_has("did you mean `state.url`");
    // Clean up through the team backend.
    let out = w
        .cmd()
        .args([
            "destroy",
            &stack,
            "--yes",
            "--state",
            &format!("s3://{b}/ops"),
        ])
        .output()
        .unwrap();
    Outcome::from(out).success();
    assert!(sdk.leftovers(&stack).is_empty());
}

#[test]
fn a_bad_or_unreachable_state_location_stops_before_anything_is_created() {
    let w = World::moto();
    let stack = support::stack_name("badurl");
    let quick = quick_recipe(&w);
    w.run(&["list", "--state", "s3://Bad_Bucket/x"])
        .failure(2)
        .stderr_has("invalid state location `s3://Bad_Bucket/x`")
        .stderr_has("hint: use `local` or `s3://BUCKET/PREFIX`");
    w.run(&["list", "--state", "ftp://team/x"])
        .failure(2)
        .stderr_has("does not start with s3://");
    let out = w.run(&[
        "run",
        &quick,
        "--name",
        &stack,
        "--state",
        "s3://no-such-team-bucket/x",
    ]);
    out.failure(1)
        .stderr_has("NoSuchBucket")
        .stderr_has("create the bucket");
    assert!(w.sdk().leftovers(&stack).is_empty(), "nothing was created");
    assert!(!w.state_path(&stack).exists());
    // No credentials: said as such, before anything is asked of EC2.
    let out = w
        .cmd()
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .args([
            "run",
            &quick,
            "--name",
            &stack,
            "--state",
            "s3://any-team-bucket/x",
        ])
        .output()
        .unwrap();
    Outcome::from(out)
        .failure(1)
        .stderr_has("no usable AWS credentials")
        .stderr_has("--profile");
    assert!(w.sdk().leftovers(&stack).is_empty(), "nothing was created");
    // A lease too short to be renewed safely is refused before anything is asked of S3.
    std::fs::write(
        w.home.path().join("config.toml"),
        "[state]\nlease = \"5s\"\n",
    )
    .unwrap();
    w.run(&["list", "--state", "s3://any-team-bucket/x"])
        .failure(2)
        .stderr_has("state.lease is 5s: a lease is from 10s to 1h");
}
