//! The deploy critical-path benchmark (issue 9), run by `scripts/bench.sh deploy`, and the same
//! for the two ways a re-run changes a live stack (issue 17: an update of the services in place,
//! a replacement of the instance), run by `scripts/bench.sh update` — they print figures and
//! assert nothing about time. Ignored in the test suite.
//!
//! The dev deploy runs against moto behind the fault proxy, which answers every request 100 ms
//! after it arrived (a service time, with moto's own work inside it); `BENCH_LATENCY=added`
//! adds the 100 ms before moto instead, so moto's one-request-at-a-time work comes on top.
//! The lower bound is the longest chain of requests the deploy made in which each request
//! needed an earlier one's answer, times 100 ms. What needs what is [`NEEDS`] — a model of the
//! AWS API, not of geusemaker: a request that nothing needs (a lookup before a create, a wait
//! before an attach that could have been sent) adds wall time but not bound, so it shows up
//! in the ratio. The chain is computed from the proxy's log: a request's depth is one more than
//! the deepest request it needs that was answered before it was sent.

use crate::support;

use std::time::{Duration, Instant};

use support::proxy::{FaultProxy, Faults};
use support::{stand_ins, World};

/// For each operation (as the proxy logs it; a prefix for EFS's REST paths), the operations
/// whose answers it needs.
const NEEDS: &[(&str, &[&str])] = &[
    // The groups go into the VPC: its id comes from DescribeVpcs (or a subnet).
    ("CreateSecurityGroup", &["DescribeVpcs", "DescribeSubnets"]),
    (
        "AuthorizeSecurityGroupIngress",
        &["CreateSecurityGroup", "DescribeSecurityGroups"],
    ),
    // IAM: the role and the profile exist before the role goes into the profile.
    (
        "AddRoleToInstanceProfile",
        &[
            "CreateRole",
            "CreateInstanceProfile",
            "GetRole",
            "GetInstanceProfile",
        ],
    ),
    ("AttachRolePolicy", &["CreateRole", "GetRole"]),
    ("PutRolePolicy", &["CreateRole", "GetRole"]),
    // A secret is generated only when reading it found none.
    ("putparameter", &["getparameter"]),
    (
        "POST /2015-02-01/file-systems",
        &["GET /2015-02-01/file-systems"],
    ),
    // The launch needs the subnet, the image, the group, the profile with its role, the EFS id
    // (in the boot script) and the secrets the instance reads when it boots.
    (
        "RunInstances",
        &[
            "DescribeSubnets",
            "getparameter",
            "putparameter",
            "CreateSecurityGroup",
            "DescribeSecurityGroups",
            "AddRoleToInstanceProfile",
            "GetInstanceProfile",
            "POST /2015-02-01/file-systems",
            "GET /2015-02-01/file-systems",
        ],
    ),
    // Everything in the instance's zone, and the wait for it, follows the launch.
    ("DescribeInstances", &["RunInstances"]),
    ("CreateVolume", &["RunInstances"]),
    (
        "DescribeVolumes",
        &["CreateVolume", "AttachVolume", "DetachVolume"],
    ),
    (
        "AttachVolume",
        &[
            "CreateVolume",
            "DescribeVolumes",
            "DescribeInstances",
            "DetachVolume",
        ],
    ),
    (
        "GET /2015-02-01/mount-targets",
        &["RunInstances", "POST /2015-02-01/mount-targets"],
    ),
    (
        "POST /2015-02-01/mount-targets",
        &[
            "RunInstances",
            "POST /2015-02-01/file-systems",
            "GET /2015-02-01/file-systems",
            "CreateSecurityGroup",
        ],
    ),
    ("DescribeSpotPriceHistory", &["RunInstances"]),
    ("getproducts", &["RunInstances"]),
    // Updates. The data is copied before it can change: a snapshot before the services change,
    // and (a replacement) only once the old instance has stopped writing — stopped, or its
    // services stopped through SSM (a spot instance) — and before the volume moves.
    ("StopInstances", &["DescribeInstances"]),
    (
        "CreateSnapshot",
        &["DescribeVolumes", "StopInstances", "getcommandinvocation"],
    ),
    ("DescribeSnapshots", &["CreateSnapshot"]),
    ("DeleteSnapshot", &["DescribeSnapshots", "CreateSnapshot"]),
    (
        "DetachVolume",
        &[
            "StopInstances",
            "DescribeVolumes",
            "getcommandinvocation",
            "CreateSnapshot",
        ],
    ),
    (
        "sendcommand",
        &["CreateSnapshot", "DescribeInstances", "getparameter"],
    ),
    ("getcommandinvocation", &["sendcommand"]),
    ("CreateTags", &["getcommandinvocation"]),
    (
        "ModifyInstanceAttribute",
        &["StopInstances", "DescribeInstances"],
    ),
    (
        "StartInstances",
        &["ModifyInstanceAttribute", "AttachVolume"],
    ),
    // The old instance goes once the new one has the data (and passed the health gate).
    ("TerminateInstances", &["AttachVolume", "DescribeVolumes"]),
];

fn op_is(op: &str, name: &str) -> bool {
    op == name
        || op.starts_with(&format!("{name}?"))
        || op.starts_with(&format!("{name} "))
        || op.starts_with(&format!("{name}/"))
}

/// The longest chain of needed requests in `times` (operation, sent, answered): its requests.
fn longest_chain(times: &[(String, Duration, Duration)]) -> Vec<String> {
    let mut order: Vec<usize> = (0..times.len()).collect();
    order.sort_by_key(|&i| times[i].1);
    let mut depth = vec![1usize; times.len()];
    let mut prev: Vec<Option<usize>> = vec![None; times.len()];
    for &b in &order {
        let (op, sent, _) = &times[b];
        let needs = NEEDS
            .iter()
            .find(|(name, _)| op_is(op, name))
            .map(|(_, n)| *n)
            .unwrap_or(&[]);
        for &a in &order {
            let (aop, _, answered) = &times[a];
            if a != b
                && answered <= sent
                && needs.iter().any(|n| op_is(aop, n))
                && depth[a] + 1 > depth[b]
            {
                depth[b] = depth[a] + 1;
                prev[b] = Some(a);
            }
        }
    }
    let Some(mut at) = (0..times.len()).max_by_key(|&i| (depth[i], std::cmp::Reverse(times[i].1)))
    else {
        return Vec::new();
    };
    let mut chain = vec![times[at].0.clone()];
    while let Some(p) = prev[at] {
        chain.push(times[p].0.clone());
        at = p;
    }
    chain.reverse();
    chain
}

/// Run `args` (a `run` of the dev tier) through a fresh 100 ms proxy and print its figures
/// under `title`. `added`: the latency is added before moto instead of a service time.
fn measure(w: &World, title: &str, args: &[&str], added: bool) {
    let latency = Duration::from_millis(100);
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![],
        if added {
            Faults {
                latency,
                ..Faults::default()
            }
        } else {
            Faults {
                answer_after: latency,
                ..Faults::default()
            }
        },
    );
    let started = Instant::now();
    let out = w
        .cmd()
        .args(args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .output()
        .unwrap();
    let wall = started.elapsed();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats = proxy.stats();
    let chain = longest_chain(&stats.times);
    let short = |op: &str| {
        op.split(" HTTP/")
            .next()
            .unwrap_or(op)
            .split('?')
            .next()
            .unwrap_or(op)
            .to_string()
    };
    let bound = latency * chain.len() as u32;
    let first_sent = stats.times.iter().map(|t| t.1).min().unwrap_or_default();
    let last_answer = stats.times.iter().map(|t| t.2).max().unwrap_or_default();
    let launched = started.saturating_duration_since(proxy.started);
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(" ok run "))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "{title} (moto behind the proxy: {})",
        if added {
            format!(
                "+{} ms before each request reaches moto",
                latency.as_millis()
            )
        } else {
            format!(
                "each request answered {} ms after it arrived",
                latency.as_millis()
            )
        }
    );
    println!("  AWS requests           {}", stats.requests);
    println!("  wall time              {:.2} s", wall.as_secs_f64());
    println!(
        "    before the first request {:.0} ms, AWS {:.0} ms, after the last answer {:.0} ms",
        (first_sent.saturating_sub(launched)).as_secs_f64() * 1000.0,
        (last_answer.saturating_sub(first_sent)).as_secs_f64() * 1000.0,
        (wall.saturating_sub(last_answer.saturating_sub(launched))).as_secs_f64() * 1000.0,
    );
    println!(
        "  longest chain          {} requests: {}",
        chain.len(),
        chain
            .iter()
            .map(|op| short(op))
            .collect::<Vec<_>>()
            .join(" → ")
    );
    println!("  lower bound            {:.2} s", bound.as_secs_f64());
    println!(
        "  wall / bound           {:.2}x (goal ≤ 1.25x)",
        wall.as_secs_f64() / bound.as_secs_f64()
    );
    println!(
        "  serial requests × 100 ms  {:.2} s",
        (latency * stats.requests as u32).as_secs_f64()
    );
    println!("  run summary            {summary}");
    if std::env::var_os("BENCH_TIMELINE").is_some() {
        let mut times = stats.times.clone();
        times.sort_by_key(|t| t.1);
        for (op, a, d) in times {
            println!(
                "    {:>6} ms → {:>6} ms  {}",
                a.saturating_sub(launched).as_millis(),
                d.saturating_sub(launched).as_millis(),
                short(&op)
            );
        }
    }
}

fn dev(stack: &str, sets: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["run", "dev", "--name", stack, "--set", "health_timeout=60"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    for s in sets {
        args.push("--set".into());
        args.push(s.to_string());
    }
    args
}

fn deploy_directly(w: &World, stack: &str) {
    let out = w
        .cmd()
        .args(dev(stack, &[]))
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
#[ignore = "a benchmark: scripts/bench.sh deploy"]
fn deploy_critical_path() {
    let added = std::env::var("BENCH_LATENCY").is_ok_and(|v| v == "added");
    let w = World::moto();
    // Warm moto up first: its first request to each service builds that backend (seconds).
    deploy_directly(&w, &support::stack_name("warm"));
    let stack = support::stack_name("bench");
    let args = dev(&stack, &[]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    measure(&w, "deploy critical path (dev tier)", &args, added);
}

#[test]
#[ignore = "a benchmark: scripts/bench.sh update"]
fn update_critical_paths() {
    let added = std::env::var("BENCH_LATENCY").is_ok_and(|v| v == "added");
    let w = World::moto();
    deploy_directly(&w, &support::stack_name("warm"));
    let stack = support::stack_name("bench");
    deploy_directly(&w, &stack);
    let args = dev(&stack, &["images=n8nio/n8n:2.40.7"]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    measure(
        &w,
        "update in place critical path (dev tier, a new n8n image through SSM)",
        &args,
        added,
    );
    println!();
    let args = dev(
        &stack,
        &["images=n8nio/n8n:2.40.7", "instance_type=t3.large"],
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    measure(
        &w,
        "replacement critical path (dev tier, spot t3.medium → t3.large, the data volume moved)",
        &args,
        added,
    );
}
