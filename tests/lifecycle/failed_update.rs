//! Health-gated updates that fail: an unhealthy update in place or replacement is undone,
//! one that fails before its health gate at once, and one killed at any point is put right
//! by the next run.

use super::*;

#[test]
fn an_unhealthy_update_in_place_puts_the_previous_services_back() {
    let w = World::moto();
    let stack = support::stack_name("restore");
    rerun(&w, &stack, &[], &stand_ins(), None).success();
    let sdk = w.sdk();
    let vm = the_instance(&sdk, &stack);
    let id = vm.instance_id().unwrap().to_string();
    let fingerprint = instance_tag(&vm, "geusemaker:services").unwrap();

    let failing = support::stand_ins_with_n8n(support::http_stub(500, "down"));
    let out = rerun(&w, &stack, &["images=n8nio/n8n:2.40.7"], &failing, None);
    out.failure(1).stderr_has("the previous services are back");
    let sent = ssm_commands(&sdk, &stack);
    let update = sent
        .iter()
        .find(|c| c.contains("keep the running configuration"))
        .expect("the update was sent");
    let restore: Vec<&String> = sent
        .iter()
        .filter(|c| c.contains("the previous configuration back"))
        .collect();
    // One restore (an SDK retry of a send moto answered late may record it twice; the script
    // is the same and running it twice is harmless).
    assert!(!restore.is_empty(), "a restore command");
    assert!(
        restore.iter().all(|r| r == &restore[0]),
        "runs {:?}\n{}\n{}",
        w.state(&stack)["runs"],
        out.stdout,
        out.stderr
    );
    // The restore puts back what this update kept, not an older update's files.
    let kept = update
        .split("mv -f '")
        .nth(1)
        .and_then(|rest| rest.split("' '").nth(1))
        .and_then(|target| target.split('\'').next())
        .expect("the update keeps the files under a name of its own");
    assert!(
        kept.ends_with(".tar") && kept.contains("/var/lib/geusemaker/previous/"),
        "{kept}"
    );
    assert!(
        restore[0].contains(&format!("[ -f '{kept}' ]")),
        "{}",
        restore[0]
    );
    let dir = tempfile::tempdir().unwrap();
    support::shellcheck(dir.path(), "restore", restore[0]);
    let vm = the_instance(&sdk, &stack);
    assert_eq!(vm.instance_id(), Some(id.as_str()));
    assert_eq!(
        instance_tag(&vm, "geusemaker:services").as_deref(),
        Some(fingerprint.as_str()),
        "the instance still runs the previous services"
    );
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );

    // Once n8n is healthy again, the next run applies the change.
    rerun(&w, &stack, &["images=n8nio/n8n:2.40.7"], &stand_ins(), None)
        .success()
        .stdout_has("~ services: n8n: image");
}

#[test]
fn an_unhealthy_replacement_brings_the_old_instance_back_with_its_volume() {
    let w = World::moto();
    let stack = support::stack_name("putback");
    rerun(&w, &stack, &[], &stand_ins(), None).success();
    let sdk = w.sdk();
    let old = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();

    let failing = support::stand_ins_with_n8n(support::http_stub(500, "down"));
    let proxy =
        support::proxy::FaultProxy::start(&support::moto().endpoint, vec![spot_cannot_stop()]);
    let out = rerun(
        &w,
        &stack,
        &["instance_type=t3.large"],
        &failing,
        Some(&proxy.endpoint()),
    );
    out.failure(1).stderr_has("the data volume goes back to");
    assert_eq!(
        proxy.hit_count(),
        0,
        "StopInstances was not called on a spot instance"
    );
    let sent = ssm_commands(&sdk, &stack);
    let released = sent
        .iter()
        .position(|c| c.contains("stop the services and release the data volume"))
        .expect("the old instance released the volume");
    let resumed = sent
        .iter()
        .position(|c| c.contains("the data volume and the services back"))
        .expect("the old instance took it back and started its services");
    assert_ne!(released, resumed);
    let vm = the_instance(&sdk, &stack);
    assert_eq!(
        vm.instance_id(),
        Some(old.as_str()),
        "the old instance is back"
    );
    assert_eq!(
        vm.state().and_then(|s| s.name()).map(|n| n.as_str()),
        Some("running")
    );
    assert_eq!(vm.instance_type().map(|t| t.as_str()), Some("t3.medium"));
    assert_eq!(
        attached_to(&data_volume(&sdk, &stack)).as_deref(),
        Some(old.as_str())
    );
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );
}

#[test]
fn a_replacement_killed_at_any_point_is_put_right_by_the_next_run() {
    let w = World::moto();
    let ins = stand_ins();
    // The requests a whole replacement makes, from a reference run's summary.
    let reference = support::stack_name("swapref");
    rerun(&w, &reference, &[], &ins, None).success();
    let whole = rerun(&w, &reference, &["instance_type=t3.large"], &ins, None);
    whole.success();
    let requests: usize = whole
        .stdout
        .split(" AWS requests")
        .next()
        .and_then(|s| s.rsplit(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no request count in the run summary:\n{}", whole.stdout));
    assert!(requests > 20, "{requests} requests");

    let stack = support::stack_name("swapkill");
    rerun(&w, &stack, &[], &ins, None).success();
    let sdk = w.sdk();
    let volume = data_volume(&sdk, &stack).volume_id().unwrap().to_string();
    let fs = w.state(&stack)["outputs"]["file_system_id"].clone();
    // Kill points spread over the replacement's requests; each crash is followed by a run to
    // the same type, and the next crash goes back the other way.
    let points: Vec<usize> = (0..6).map(|i| 12 + i * (requests - 14) / 5).collect();
    let mut recovered = 0;
    for (n, k) in points.into_iter().enumerate() {
        let target = if n % 2 == 0 { "t3.large" } else { "t3.medium" };
        let set = format!("instance_type={target}");
        let mut cmd = w.cmd();
        cmd.args([
            "run",
            "dev",
            "--name",
            &stack,
            "--set",
            "health_timeout=20",
            "--set",
            "allowed_cidr=192.0.2.1/32",
            "--set",
            &set,
        ])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", &ins)
        .env("GEUSEMAKER_TEST_KILL_AFTER_RESPONSES", k.to_string());
        let killed = Outcome::from(cmd.output().unwrap());
        assert_eq!(
            killed.code, -1,
            "k={k}: expected death by SIGKILL\n{}\n{}",
            killed.stdout, killed.stderr
        );

        let again = rerun(&w, &stack, &[&set], &ins, None);
        again.success();
        if again
            .stderr
            .contains("an earlier run stopped in the middle")
        {
            recovered += 1;
        }
        let vm = the_instance(&sdk, &stack);
        let id = vm.instance_id().unwrap().to_string();
        assert_eq!(
            vm.instance_type().map(|t| t.as_str()),
            Some(target),
            "k={k}"
        );
        let v = data_volume(&sdk, &stack);
        assert_eq!(
            v.volume_id(),
            Some(volume.as_str()),
            "k={k}: the same data volume"
        );
        assert_eq!(
            attached_to(&v).as_deref(),
            Some(id.as_str()),
            "k={k}: attached to the live instance"
        );
        let state = w.state(&stack);
        assert_eq!(
            state["outputs"]["file_system_id"], fs,
            "k={k}: the same EFS"
        );
        assert_eq!(
            state["values"]["update_in_progress"],
            serde_json::Value::Null,
            "k={k}"
        );
    }
    assert!(
        recovered >= 2,
        "the kills land inside replacements ({recovered} recovered)"
    );
}

#[test]
fn an_update_that_fails_before_its_health_gate_is_undone_at_once() {
    let w = World::moto();
    let ins = stand_ins();

    // The update script fails on the instance: the previous services are put back at once.
    let stack = support::stack_name("scriptfail");
    rerun(&w, &stack, &[], &ins, None).success();
    let sdk = w.sdk();
    let vm = the_instance(&sdk, &stack);
    let id = vm.instance_id().unwrap().to_string();
    let fingerprint = instance_tag(&vm, "geusemaker:services").unwrap();
    let failed = support::proxy::Rule::json(
        &["\"CommandId\""],
        r#"{"CommandId":"c","InstanceId":"i","Status":"Failed","StatusDetails":"Failed","ResponseCode":1,"StandardOutputContent":"","StandardErrorContent":""}"#,
    )
    .first(1);
    let proxy = support::proxy::FaultProxy::start(&support::moto().endpoint, vec![failed]);
    rerun(
        &w,
        &stack,
        &["images=n8nio/n8n:2.40.7"],
        &ins,
        Some(&proxy.endpoint()),
    )
    .failure(1)
    .stderr_has("the services update failed on")
    .stderr_has("the previous services are back");
    assert!(ssm_commands(&sdk, &stack)
        .iter()
        .any(|c| c.contains("the previous configuration back")));
    let vm = the_instance(&sdk, &stack);
    assert_eq!(vm.instance_id(), Some(id.as_str()), "the same instance");
    assert_eq!(
        instance_tag(&vm, "geusemaker:services").as_deref(),
        Some(fingerprint.as_str())
    );
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );

    // The data volume cannot be attached to the new instance: the old one gets it back.
    let stack = support::stack_name("attachfail");
    rerun(&w, &stack, &[], &ins, None).success();
    let old = the_instance(&sdk, &stack)
        .instance_id()
        .unwrap()
        .to_string();
    let refused = support::proxy::Rule::ec2_error(
        &["Action=AttachVolume"],
        "VolumeInUse",
        "the volume is attached to another instance",
    )
    .first(1);
    let proxy = support::proxy::FaultProxy::start(
        &support::moto().endpoint,
        vec![refused, spot_cannot_stop()],
    );
    rerun(
        &w,
        &stack,
        &["instance_type=t3.large"],
        &ins,
        Some(&proxy.endpoint()),
    )
    .failure(1)
    .stderr_has("the data volume goes back to");
    let vm = the_instance(&sdk, &stack);
    assert_eq!(
        vm.instance_id(),
        Some(old.as_str()),
        "the old instance serves again"
    );
    assert_eq!(
        attached_to(&data_volume(&sdk, &stack)).as_deref(),
        Some(old.as_str())
    );
    assert!(ssm_commands(&sdk, &stack)
        .iter()
        .any(|c| c.contains("the data volume and the services back")));
    assert_eq!(
        w.state(&stack)["values"]["update_in_progress"],
        serde_json::Value::Null
    );
}
