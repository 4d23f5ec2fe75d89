//! Destroy, rollback, automatic rollback, crash safety and lock hygiene, re-runs that update a
//! live stack (and updates that fail), and the boot channel, through the binary against moto.

use crate::support;

use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{stand_ins, Outcome, World};

mod boot_channel;
mod destroy;
mod failed_update;
mod rollback;
mod update;

fn run(w: &World, args: &[&str], extra_env: &[(&str, &str)]) -> Outcome {
    let mut cmd = w.cmd();
    cmd.args(args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    Outcome::from(out)
}

fn deploy_dev(w: &World, stack: &str) -> Outcome {
    run(
        w,
        &[
            "run",
            "dev",
            "--name",
            stack,
            "--set",
            "health_timeout=30",
            "--set",
            "allowed_cidr=192.0.2.1/32",
        ],
        &[],
    )
}

/// `run dev` on `stack` with `sets` (after the common ones), through `endpoint` when given,
/// with `stand_ins` answering for the services.
fn rerun(
    w: &World,
    stack: &str,
    sets: &[&str],
    stand_ins: &str,
    endpoint: Option<&str>,
) -> Outcome {
    let mut args = vec!["run", "dev", "--name", stack, "--set", "health_timeout=20"];
    if !sets.iter().any(|s| s.starts_with("allowed_cidr=")) {
        args.extend(["--set", "allowed_cidr=192.0.2.1/32"]);
    }
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let mut cmd = w.cmd();
    cmd.args(&args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins);
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    Outcome::from(cmd.output().unwrap())
}

/// The scripts a stack's runs sent through SSM Run Command (their comment is `geusemaker
/// <stack> <run>`), oldest first. moto 5.2.1 attributes every command to every instance it was
/// ever sent to (its SendCommand answers list them all), so commands are told apart by stack,
/// not by instance.
fn ssm_commands(sdk: &support::Sdk, stack: &str) -> Vec<String> {
    let prefix = format!("geusemaker {stack} ");
    let mut scripts = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let out = sdk
            .block_on(sdk.ssm.list_commands().set_next_token(token.clone()).send())
            .unwrap();
        scripts.extend(
            out.commands()
                .iter()
                .filter(|c| c.comment().is_some_and(|m| m.starts_with(&prefix)))
                .flat_map(|c| {
                    c.parameters()
                        .and_then(|p| p.get("commands"))
                        .cloned()
                        .unwrap_or_default()
                }),
        );
        token = out.next_token().map(str::to_string);
        if token.is_none() {
            return scripts;
        }
    }
}

fn instance_tag(i: &aws_sdk_ec2::types::Instance, key: &str) -> Option<String> {
    support::tag(i.tags(), key).map(str::to_string)
}

fn data_volume(sdk: &support::Sdk, stack: &str) -> aws_sdk_ec2::types::Volume {
    let out = sdk
        .block_on(
            sdk.ec2
                .describe_volumes()
                .filters(support::filter("tag:Name", &format!("{stack}-data")))
                .send(),
        )
        .unwrap();
    assert_eq!(out.volumes().len(), 1, "one data volume");
    out.volumes()[0].clone()
}

fn attached_to(v: &aws_sdk_ec2::types::Volume) -> Option<String> {
    v.attachments()
        .first()
        .and_then(|a| a.instance_id())
        .map(str::to_string)
}

/// The stack's one instance that is not terminated (stopped ones count: an old instance left
/// stopped would be a second one).
fn the_instance(sdk: &support::Sdk, stack: &str) -> aws_sdk_ec2::types::Instance {
    let out = sdk
        .block_on(
            sdk.ec2
                .describe_instances()
                .filters(support::filter("tag:geusemaker:stack", stack))
                .filters(
                    aws_sdk_ec2::types::Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .values("stopping")
                        .values("stopped")
                        .build(),
                )
                .send(),
        )
        .unwrap();
    let live: Vec<_> = out
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .cloned()
        .collect();
    assert_eq!(
        live.len(),
        1,
        "exactly one instance not terminated: {:?}",
        live.iter()
            .map(|i| (i.instance_id(), i.state()))
            .collect::<Vec<_>>()
    );
    live[0].clone()
}

/// AWS refuses to stop an instance of a one-time spot request; the proxy answers so.
fn spot_cannot_stop() -> support::proxy::Rule {
    support::proxy::Rule::ec2_error(
        &["Action=StopInstances"],
        "UnsupportedOperation",
        "You can't stop the Spot Instance because it is associated with a one-time Spot Instance request.",
    )
}
