//! `logs` through SSM, and Ctrl-C stopping `monitor` and followed logs cleanly.

use super::*;

#[test]
fn logs_are_fetched_through_ssm() {
    let w = World::moto();
    let stack = support::stack_name("logs");
    deploy_dev(&w, &stack);
    let instance = w.state(&stack)["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();

    // moto runs nothing and answers "Success" with no output: that is not "no log lines".
    w.run(&["logs", &stack, "--service", "n8n", "--since", "5m"])
        .failure(1)
        .stderr_has(&format!("instance {instance} did not run the log command"));
    let sdk = w.sdk();
    let commands = sdk
        .block_on(sdk.ssm.list_commands().instance_id(&instance).send())
        .unwrap();
    let sent: Vec<String> = commands
        .commands()
        .iter()
        .filter(|c| c.comment() == Some("geusemaker logs"))
        .flat_map(|c| {
            c.parameters()
                .and_then(|p| p.get("commands"))
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert!(
        sent[0]
            .contains("compose.yaml' logs --no-color --timestamps --tail 300 --since '5m' 'n8n'"),
        "{}",
        sent[0]
    );

    w.run(&["logs", &stack, "--service", "n8m"])
        .failure(2)
        .stderr_has("did you mean `n8n`?");
    w.run(&["logs", &stack, "--since", "soon"])
        .failure(2)
        .stderr_has("--since");

    // An instance whose SSM agent has not registered: AWS answers InvalidInstanceId.
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::json_error(
            &["geusemaker logs"],
            "InvalidInstanceId",
            "Instances not in a valid state for account",
        )],
    );
    let out = w
        .cmd()
        .args(["logs", &stack])
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("instance {instance} is not managed by SSM yet")),
        "{stderr}"
    );
    assert!(stderr.contains("hint: the SSM agent registers"), "{stderr}");
    assert_eq!(proxy.hit_count(), 1);

    // What the command prints on a real instance, played by the proxy: its markers, then the
    // lines (none, some, or compose's failure).
    let answer = |output: &str| {
        let body = serde_json::json!({
            "CommandId": "c", "InstanceId": instance, "Status": "Success",
            "StandardOutputContent": output, "StandardErrorContent": "", "ResponseCode": 0,
        });
        FaultProxy::start(
            &support::moto().endpoint,
            vec![Rule::json(&["\"CommandId\"", &instance], &body.to_string())],
        )
    };
    let logs_via = |proxy: &FaultProxy| {
        support::Outcome::from(
            w.cmd()
                .args(["logs", &stack, "--service", "n8n", "--since", "5m"])
                .env("AWS_ENDPOINT_URL", proxy.endpoint())
                .output()
                .unwrap(),
        )
    };
    let proxy = answer("@@geusemaker-logs\n@@geusemaker-logs-exit=0\n");
    logs_via(&proxy)
        .success()
        .stderr_has("no log lines from n8n in the last 5m");
    let proxy = answer(
        "@@geusemaker-logs\ngeusemaker-n8n-1  | 2026-01-01T10:00:00Z Editor is now accessible\n@@geusemaker-logs-exit=0\n",
    );
    logs_via(&proxy)
        .success()
        .stdout_has("n8n        | Editor is now accessible");
    // The boot log (issue 19): its last lines, through the same kind of command.
    let proxy = answer("@@geusemaker-logs\ngeusemaker step: packages\ngeusemaker boot FAILED in step: packages (line 40)\n@@geusemaker-logs-exit=0\n");
    support::Outcome::from(
        w.cmd()
            .args(["logs", &stack, "--boot"])
            .env("AWS_ENDPOINT_URL", proxy.endpoint())
            .output()
            .unwrap(),
    )
    .success()
    .stdout_has("geusemaker step: packages\ngeusemaker boot FAILED in step: packages (line 40)");
    // What went to the instance is the boot log's tail (the proxy only played the answer).
    let commands = sdk
        .block_on(sdk.ssm.list_commands().instance_id(&instance).send())
        .unwrap();
    assert!(
        commands.commands().iter().any(|c| c
            .parameters()
            .and_then(|p| p.get("commands"))
            .is_some_and(|c| c
                .iter()
                .any(|c| c.contains("tail -n 300 '/var/log/geusemaker-boot.log'")))),
        "{commands:?}"
    );
    w.run(&["logs", &stack, "--boot", "--service", "n8n"])
        .failure(2);
    let proxy = answer("@@geusemaker-logs\nno such service: n8n\n@@geusemaker-logs-exit=1\n");
    logs_via(&proxy)
        .failure(1)
        .stderr_has("`docker compose logs` failed on")
        .stderr_has("no such service: n8n");
}

/// Send SIGINT (Ctrl-C) to a child after `after`, and collect what it printed.
fn interrupt_after(mut cmd: std::process::Command, after: std::time::Duration) -> Outcome {
    use std::process::Stdio;
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    Outcome::from(out)
}

#[test]
fn monitor_and_followed_logs_stop_cleanly_on_ctrl_c() {
    let w = World::moto();
    let stack = support::stack_name("ctrlc");
    deploy_dev(&w, &stack);
    let mut monitor = w.cmd();
    monitor
        .args(["monitor", &stack, "--interval", "1s"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins());
    let out = interrupt_after(monitor, std::time::Duration::from_secs(4));
    out.success().stdout_has("stopped monitoring");
    assert!(
        out.stdout.contains("n8n "),
        "at least one round ran:\n{}",
        out.stdout
    );
    assert!(
        !w.home
            .path()
            .join("stacks")
            .join(format!("{stack}.lock"))
            .exists()
            || w.run(&["unlock", &stack]).stdout.contains("not locked"),
        "no lock left behind"
    );

    // The instance answers with no new lines (moto itself runs nothing: the proxy plays the
    // command's answer).
    let instance = w.state(&stack)["outputs"]["instance_id"]
        .as_str()
        .unwrap()
        .to_string();
    let body = serde_json::json!({
        "CommandId": "c", "InstanceId": instance, "Status": "Success",
        "StandardOutputContent": "@@geusemaker-logs\n@@geusemaker-logs-exit=0\n",
        "StandardErrorContent": "", "ResponseCode": 0,
    });
    let proxy = FaultProxy::start(
        &support::moto().endpoint,
        vec![Rule::json(&["\"CommandId\"", &instance], &body.to_string())],
    );
    let mut follow = w.cmd();
    follow
        .args(["logs", &stack, "--follow"])
        .env("AWS_ENDPOINT_URL", proxy.endpoint());
    interrupt_after(follow, std::time::Duration::from_secs(3))
        .success()
        .stderr_has("stopped following the logs");
}
