//! Plan mode and the IAM policy (issue 8): no AWS, no credentials, nothing written — and the
//! policy covers what a real run against moto calls.

use crate::support;

use std::collections::BTreeSet;

use support::{stand_ins, World};

/// The binary with no credentials, no region and no endpoint at all.
fn bare(w: &World) -> std::process::Command {
    let mut c = w.cmd();
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_REGION",
        "AWS_ENDPOINT_URL",
    ] {
        c.env_remove(k);
    }
    c
}

#[test]
fn a_plan_needs_no_aws_and_writes_nothing() {
    let w = World::offline();
    let out = bare(&w)
        .args(["run", "dev", "--name", "demo", "--plan"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    for needle in [
        "Plan for demo (<bundled>/recipes/dev.rhai, us-east-1): 12 resource(s) to create",
        "no spot price history: estimated at 30% of on-demand; on-demand $",
        "ec2:instance          app",
        "(known after apply)",
        "AWS actions it would call (",
        "    EC2:RunInstances",
        "    EFS:CreateFileSystem",
        // The health stage runs checks on the instance through SSM Run Command.
        "    SSM:SendCommand",
        "    SSM:GetCommandInvocation",
        "Plan: what stack demo would cost",
    ] {
        assert!(stdout.contains(needle), "missing `{needle}`:\n{stdout}");
    }
    assert!(
        !stdout.contains("is ready"),
        "a plan does not claim a deploy:\n{stdout}"
    );
    let written: Vec<_> = walk(w.home.path())
        .into_iter()
        .filter(|p| !p.ends_with("aws-config") && !p.ends_with("aws-credentials"))
        .collect();
    assert!(written.is_empty(), "a plan wrote {written:?}");

    // Bad params are refused before planning, like a run.
    let bad = bare(&w)
        .args([
            "run",
            "dev",
            "--name",
            "demo",
            "--plan",
            "--set",
            "spot=perhaps",
        ])
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("--set spot=perhaps: expected true or false")
    );
    // An on-demand plan says so, with no word of a spot estimate.
    let out = bare(&w)
        .args([
            "run",
            "dev",
            "--name",
            "demo",
            "--plan",
            "--set",
            "spot=false",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("/month with storage ($12.40); on-demand (fallback price)"),
        "{stdout}"
    );
    assert!(!stdout.contains("spot price"), "{stdout}");

    // The GPU tier plans its load balancer and CloudFront too.
    let out = bare(&w)
        .args([
            "run",
            "gpu",
            "--name",
            "lab",
            "--plan",
            "--region",
            "eu-west-1",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("Plan for lab (<bundled>/recipes/gpu.rhai, eu-west-1)"),
        "{stdout}"
    );
    assert!(stdout.contains("cloudfront:distribution  cdn"), "{stdout}");
    assert!(
        stdout.contains("CloudFront:CreateDistributionWithTags"),
        "{stdout}"
    );
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The IAM action of a logged SDK call, by AWS's naming (independent of the tool's table).
fn iam_action(call: &str) -> String {
    let (service, op) = call.split_once(':').unwrap();
    let prefix = match service {
        "EC2" => "ec2",
        "EFS" => "elasticfilesystem",
        "Elastic Load Balancing v2" => "elasticloadbalancing",
        "CloudFront" => "cloudfront",
        "SSM" => "ssm",
        "IAM" => "iam",
        "Pricing" => "pricing",
        "Backup" => "backup",
        "STS" => "sts",
        other => panic!("unexpected service {other}"),
    };
    let op = if op == "CreateDistributionWithTags" {
        "CreateDistribution"
    } else {
        op
    };
    format!("{prefix}:{op}")
}

#[test]
fn the_policy_covers_every_call_of_a_real_deploy_and_destroy() {
    let w = World::moto();
    let stack = support::stack_name("pol");
    let out = w
        .cmd()
        .args(["run", "dev", "--name", &stack, "--set", "health_timeout=30"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    w.run(&["destroy", &stack, "--yes", "--set", "delete_data=true"])
        .success();
    let log =
        std::fs::read_to_string(w.home.path().join("logs").join(format!("{stack}.log"))).unwrap();
    let called: BTreeSet<String> = log
        .lines()
        .filter_map(|l| l.split("call=").nth(1))
        .map(|c| iam_action(c.trim()))
        .collect();
    assert!(
        called.contains("ec2:RunInstances")
            && called.contains("elasticfilesystem:DeleteFileSystem"),
        "{called:?}"
    );

    let out = w.run(&["policy", "dev", "--name", &stack]);
    out.success();
    let doc: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(doc["Version"], "2012-10-17");
    let mut allowed = BTreeSet::new();
    for st in doc["Statement"].as_array().unwrap() {
        match &st["Action"] {
            serde_json::Value::String(a) => {
                allowed.insert(a.clone());
            }
            serde_json::Value::Array(a) => {
                allowed.extend(a.iter().map(|x| x.as_str().unwrap().to_string()))
            }
            other => panic!("{other}"),
        }
    }
    let missing: Vec<&String> = called.difference(&allowed).collect();
    assert!(missing.is_empty(), "the policy lacks {missing:?}");
    assert!(
        allowed.iter().all(|a| !a.contains('*')),
        "no wildcard actions: {allowed:?}"
    );
    assert!(
        allowed.contains("ec2:CreateTags"),
        "resources are tagged at creation"
    );
    let pass = doc["Statement"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["Action"] == "iam:PassRole")
        .unwrap();
    assert_eq!(pass["Resource"], format!("arn:aws:iam::*:role/{stack}-*"));
    // Least privilege: nothing for services the dev tier does not use.
    assert!(
        !allowed.iter().any(|a| a.starts_with("cloudfront:Create")),
        "{allowed:?}"
    );
}
