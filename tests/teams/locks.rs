//! Runs that meet on shared state: the lock and its lease, takeovers, writes based on a stale
//! read, and runs that lose their lock or S3 midway.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// A recipe that creates one security group, then waits on a port nobody answers (for
/// `wait_secs`): a run that holds its lock while the test looks.
fn slow_recipe(w: &World, wait_secs: u32) -> String {
    let dead = support::free_port();
    w.recipe(
        "slow.rhai",
        &format!(
            "let sg = ec2::security_group(\"web\", ec2::default_vpc(), #{{}});\n\
             health::wait_until_healthy([#{{ name: \"x\", tcp: \"127.0.0.1:{dead}\", timeout_ms: 200 }}], #{{ timeout: {wait_secs}, interval: 1 }});\n"
        ),
    )
    .to_string_lossy()
    .into_owned()
}

/// The S3 backend of a process of our own, on moto, at `url` with a lease of `lease` seconds.
fn s3_backend(url: &str, lease: u64) -> geusemaker::state::StateBackend {
    use geusemaker::state::s3::{Connect, S3Settings, S3Url, S3};
    let endpoint = support::moto().endpoint.clone();
    let connect: Connect = Box::new(move || {
        let endpoint = endpoint.clone();
        Box::pin(async move {
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .load()
                .await
        })
    });
    let settings = S3Settings {
        url: S3Url::parse(url).unwrap(),
        region: None,
        lease: Duration::from_secs(lease),
        kms_key: None,
    };
    geusemaker::state::StateBackend::new(S3::new(settings, connect).unwrap())
}

/// Until the lease recorded in the lock object at `key` has run out (by this clock).
fn wait_for_lease_end(sdk: &Sdk, bucket: &str, key: &str) {
    let doc = object(sdk, bucket, key).expect("the lock object exists");
    let holder: serde_json::Value = serde_json::from_str(&doc).unwrap();
    let until: chrono::DateTime<chrono::Utc> =
        holder["lease_until"].as_str().unwrap().parse().unwrap();
    while chrono::Utc::now() < until + chrono::Duration::milliseconds(500) {
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_second_run_is_refused_naming_the_holder_and_a_killed_runs_lock_is_taken_over_after_its_lease()
{
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "lease");
    let url = format!("s3://{b}");
    let (a, other) = (machine(&url, "10s"), machine(&url, "10s"));
    let stack = support::stack_name("lease");
    let slow = slow_recipe(&a, 120);
    let mut child = a
        .cmd()
        .args(["run", &slow, "--name", &stack])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the run holds the lock and its group is in the shared ledger.
    let doc_key = format!("stacks/{stack}.json");
    let lock_key = format!("locks/{stack}.lock");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let doc = object(&sdk, &b, &doc_key).unwrap_or_default();
        if doc.contains("\"status\": \"created\"") {
            break;
        }
        assert!(Instant::now() < deadline, "the run never created its group");
        std::thread::sleep(Duration::from_millis(200));
    }
    let lock = objects(&sdk, &b)
        .into_iter()
        .find(|(k, _, _)| *k == lock_key)
        .expect("the lock object exists while the run lives");
    assert_eq!(lock.2.as_deref(), Some("AES256"), "the lock is encrypted");
    let holder: serde_json::Value = serde_json::from_str(&lock.1).unwrap();
    assert_eq!(holder["pid"], child.id());
    assert!(holder["lease_until"].is_string(), "{holder}");

    // The other machine is refused at once, told who holds the stack; nothing is created.
    let quick = quick_recipe(&other);
    let refused = other.run(&["run", &quick, "--name", &stack]);
    refused
        .failure(1)
        .stderr_has(&format!("stack `{stack}` is locked by"))
        .stderr_has(&format!("pid {}", child.id()))
        .stderr_has("lease until");
    assert_eq!(sdk.leftovers(&stack).security_groups.len(), 1);

    // Its lock is not removed without a confirmation, which needs a terminal or --yes.
    other
        .run(&["unlock", &stack])
        .failure(2)
        .stderr_has("whose lease still runs")
        .stderr_has("pass --yes");

    // The lease is renewed while the run lives: after more than a lease, still refused.
    std::thread::sleep(Duration::from_secs(11));
    other
        .run(&["run", &quick, "--name", &stack])
        .failure(1)
        .stderr_has(&format!("pid {}", child.id()));

    // SIGKILL: nothing releases the lock; once its lease ran out, the other machine takes it
    // over, says so, and its destroy finds the group from the killed run's ledger.
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().unwrap();
    wait_for_lease_end(&sdk, &b, &lock_key);
    other
        .run(&["destroy", &stack, "--yes"])
        .success()
        .stderr_has("lease ran out")
        .stderr_has("taking it over");
    let left = sdk.leftovers(&stack);
    assert!(left.is_empty(), "{left:?}");
    assert!(
        object(&sdk, &b, &lock_key).is_none(),
        "the lock is released at the end of the run"
    );
}

#[test]
fn a_write_based_on_a_stale_read_is_refused_not_lost() {
    use geusemaker::state::StateError;
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "race");
    // Two writers (two processes' backends) read the same version of one document.
    let url = format!("s3://{b}/p");
    let (one, two) = (s3_backend(&url, 60), s3_backend(&url, 60));
    let v0 = one.write("race", b"{\"n\":0}", &None).unwrap();
    assert!(
        matches!(
            two.write("race", b"{\"n\":9}", &None),
            Err(StateError::Conflict { .. })
        ),
        "a second create of the same stack is refused"
    );
    let seen_by_one = one.read("race").unwrap().unwrap();
    let seen_by_two = two.read("race").unwrap().unwrap();
    assert_eq!(seen_by_one.version, v0);
    assert_eq!(seen_by_two.version, v0);
    let v1 = one
        .write("race", b"{\"n\":1}", &Some(seen_by_one.version))
        .unwrap();
    let e = two
        .write("race", b"{\"n\":2}", &Some(seen_by_two.version.clone()))
        .unwrap_err();
    assert!(matches!(e, StateError::Conflict { .. }), "{e}");
    assert!(e.to_string().contains("nothing was overwritten"), "{e}");
    // The first writer's change is there, not lost; the second writes after reading it.
    let now = two.read("race").unwrap().unwrap();
    assert_eq!(now.text, "{\"n\":1}");
    assert_eq!(now.version, v1);
    two.write("race", b"{\"n\":2}", &Some(now.version)).unwrap();
    assert!(
        two.remove("race", &v1).is_err(),
        "a remove based on a stale read is refused"
    );
    assert_eq!(one.read("race").unwrap().unwrap().text, "{\"n\":2}");

    // Locks: one holder at a time; a released lock can be taken again.
    let held = one.lock("race", "r1", "test").unwrap();
    let e = two.lock("race", "r2", "test").unwrap_err();
    assert!(e.to_string().contains("run r1"), "{e}");
    held.check().unwrap();
    drop(held);
    let again = two.lock("race", "r2", "test").unwrap();
    assert!(again.previous_holder().is_none(), "released cleanly");

    // `unlock` removes the lock it showed, and only that one.
    let shown = one.holder("race").unwrap().expect("r2 holds it");
    assert_eq!(shown.run, "r2");
    drop(again);
    let third = one.lock("race", "r3", "test").unwrap();
    let e = two.break_lock("race", Some(&shown)).unwrap_err();
    assert!(e.to_string().contains("changed after it was shown"), "{e}");
    assert_eq!(one.holder("race").unwrap().unwrap().run, "r3", "kept");
    let now = two.holder("race").unwrap().unwrap();
    two.break_lock("race", Some(&now)).unwrap();
    assert!(one.holder("race").unwrap().is_none(), "removed");
    drop(third);
}

#[test]
fn a_lock_taken_over_stops_the_run_that_lost_it_before_it_writes_again() {
    use geusemaker::state::{StackStore, StateError};
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "lost");
    let url = format!("s3://{b}");
    let (one, two) = (s3_backend(&url, 6), s3_backend(&url, 6));
    let mut first = StackStore::open(&one, "lost", "r1", "test").unwrap();
    first
        .update(|s| s.outputs.insert("who".into(), "r1".into()))
        .unwrap();
    // Another machine decides the lease ran out (a paused laptop) and takes the lock over:
    // the lock object is replaced under the first run.
    let lock_key = "locks/lost.lock";
    let forged = serde_json::json!({
        "pid": 1, "host": "other", "run": "r2", "command": "run",
        "since": "2026-01-01T00:00:00Z", "lease_until": "2999-01-01T00:00:00Z"
    });
    sdk.block_on(
        sdk.s3
            .put_object()
            .bucket(&b)
            .key(lock_key)
            .body(forged.to_string().into_bytes().into())
            .send(),
    )
    .unwrap();
    // Within a lease the first run's renewal finds it: its next write is refused, and the
    // document keeps what it had.
    let deadline = Instant::now() + Duration::from_secs(20);
    let e = loop {
        match first.update(|s| s.outputs.insert("who".into(), "late".into())) {
            Err(e) => break e,
            Ok(_) => {
                assert!(Instant::now() < deadline, "the lost lock was never noticed");
                std::thread::sleep(Duration::from_millis(300));
            }
        }
    };
    // (A write may have landed before the renewal noticed; none lands after.)
    assert!(matches!(e, StateError::LockLost { .. }), "{e}");
    assert!(e.to_string().contains("run r2"), "{e}");
    let before = two.read("lost").unwrap().unwrap().text;
    assert!(first
        .update(|s| s.outputs.insert("who".into(), "later".into()))
        .is_err());
    assert_eq!(two.read("lost").unwrap().unwrap().text, before);
    drop(first);
    assert!(
        object(&sdk, &b, lock_key)
            .unwrap()
            .contains("\"run\":\"r2\""),
        "the run that lost the lock does not remove the new holder's"
    );
}

/// A run whose lease ran out unrenewed (a laptop asleep: here its renewals are switched off)
/// and whose lock another machine took over: at its next step it creates nothing more, and
/// says why. Its own check of the lease stops it, not the conditional write (which would say
/// "changed since it was read").
#[test]
fn a_run_resumed_after_its_lock_was_taken_over_creates_nothing_more() {
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "pause");
    let url = format!("s3://{b}");
    let (a, other) = (machine(&url, "10s"), machine(&url, "10s"));
    let stack = support::stack_name("pause");
    let port = support::free_port();
    let recipe = a.recipe(
        "two.rhai",
        &format!(
            "ec2::security_group(\"web\", ec2::default_vpc(), #{{}});\n\
             health::wait_until_healthy([#{{ name: \"gate\", tcp: \"127.0.0.1:{port}\", timeout_ms: 200 }}], #{{ timeout: 120, interval: 1 }});\n\
             ec2::security_group(\"late\", ec2::default_vpc(), #{{}});\n"
        ),
    );
    let child = a
        .cmd()
        .env("GEUSEMAKER_TEST_NO_LEASE_RENEWAL", "1")
        .args(["run", recipe.to_str().unwrap(), "--name", &stack])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let doc_key = format!("stacks/{stack}.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !object(&sdk, &b, &doc_key)
        .unwrap_or_default()
        .contains("\"status\": \"created\"")
    {
        assert!(Instant::now() < deadline, "the run never created its group");
        std::thread::sleep(Duration::from_millis(200));
    }
    wait_for_lease_end(&sdk, &b, &format!("locks/{stack}.lock"));
    // Another machine takes the lock over, works on the stack, and releases it.
    let quick = quick_recipe(&other);
    other
        .run(&["run", &quick, "--name", &stack])
        .success()
        .stderr_has("lease ran out")
        .stderr_has("taking it over");
    // The first run's gate opens: its next step would create a group.
    let gate = std::net::TcpListener::bind(("127.0.0.1", port)).unwrap();
    std::thread::spawn(move || for _ in gate.incoming() {});
    let out = Outcome::from(child.wait_with_output().unwrap());
    out.failure(1)
        .stderr_has(&format!("the lock of stack `{stack}` was lost"));
    let groups = sdk.leftovers(&stack).security_groups;
    assert_eq!(
        groups.len(),
        1,
        "the resumed run created nothing: {groups:?}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&object(&sdk, &b, &doc_key).unwrap()).unwrap();
    assert!(
        !doc.to_string().contains("\"late\""),
        "not even an intent of the resumed run was written"
    );
    other.run(&["destroy", &stack, "--yes"]).success();
    assert!(sdk.leftovers(&stack).is_empty());
}

/// S3 stops taking the stack's writes in the middle of a run: the run stops before the create
/// whose intent could not be recorded (nothing after it is created), and the next run, with S3
/// back, finds everything the first one made.
#[test]
fn a_run_that_loses_s3_midway_creates_nothing_more_and_the_next_run_finds_everything() {
    use support::proxy::{FaultProxy, Rule};
    let sdk = World::moto().sdk();
    let b = bucket(&sdk, "flaky");
    let url = format!("s3://{b}");
    let w = machine(&url, "2m");
    let stack = support::stack_name("flaky");
    let recipe = w.recipe(
        "three.rhai",
        "ec2::security_group(\"web\", ec2::default_vpc(), #{});\n\
         ec2::security_group(\"db\", ec2::default_vpc(), #{});\n\
         ec2::security_group(\"cache\", ec2::default_vpc(), #{});\n",
    );
    // Every write of the document that records the second group fails, as S3 does when it is
    // unavailable (the SDK retries, then gives up).
    let mut unavailable = Rule::rest_xml(
        &format!("PUT /{b}/stacks/{stack}.json"),
        503,
        "<Error><Code>ServiceUnavailable</Code><Message>Please reduce your request rate.</Message></Error>",
    );
    unavailable.body_contains = vec!["\"name\": \"db\"".into()];
    let s3 = FaultProxy::start(&support::moto().direct, vec![unavailable]);
    let out = w
        .cmd()
        .env("AWS_ENDPOINT_URL_S3", s3.endpoint())
        .args([
            "run",
            recipe.to_str().unwrap(),
            "--name",
            &stack,
            "--keep-failed",
        ])
        .output()
        .unwrap();
    let out = Outcome::from(out);
    out.failure(1).stderr_has("cannot write");
    assert!(
        s3.hit_count() >= 1,
        "the write of the intent reached S3 and failed"
    );
    let groups = sdk.leftovers(&stack).security_groups;
    assert_eq!(
        groups.len(),
        1,
        "only the group recorded before S3 failed exists: {groups:?}"
    );
    // With S3 back, the ledger finds it (another machine could do this too).
    let doc = object(&sdk, &b, &format!("stacks/{stack}.json")).expect("the document stays");
    assert!(doc.contains(&groups[0]), "the first group is in the ledger");
    assert!(!doc.contains("\"db\"") && !doc.contains("\"cache\""));
    w.run(&["destroy", &stack, "--yes"]).success();
    assert!(sdk.leftovers(&stack).is_empty());
}
