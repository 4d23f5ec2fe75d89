//! The deploy critical-path benchmark (issue 9), run by `scripts/bench.sh deploy` — it prints
//! figures and asserts nothing about time. Ignored in the test suite.
//!
//! The dev deploy runs against moto behind the fault proxy with 100 ms added to every request.
//! The lower bound is the longest chain of requests that each need the previous one's answer,
//! times 100 ms. For the dev tier that chain is (every other request can run beside it):
//!
//!   DescribeVpcs → CreateSecurityGroup (app, in that VPC) → RunInstances (needs the group)
//!   → CreateVolume (in the zone the instance landed in) → DescribeVolumes (available)
//!   → AttachVolume → DescribeVolumes (attached)
//!
//! The IAM profile (CreateRole ∥ CreateInstanceProfile → AddRoleToInstanceProfile), the secrets
//! (GetParameter → PutParameter), EFS (CreateFileSystem → … → CreateMountTarget →
//! DescribeMountTargets, after RunInstances) and the price lookups are all shorter.

mod support;

use std::time::{Duration, Instant};

use support::proxy::{FaultProxy, Faults};
use support::{stand_ins, World};

const CHAIN: &[&str] = &[
    "DescribeVpcs",
    "CreateSecurityGroup",
    "RunInstances",
    "CreateVolume",
    "DescribeVolumes",
    "AttachVolume",
    "DescribeVolumes",
];

#[test]
#[ignore = "a benchmark: scripts/bench.sh deploy"]
fn deploy_critical_path() {
    let latency = Duration::from_millis(100);
    let w = World::moto();
    let proxy = FaultProxy::start_with(
        &support::moto().endpoint,
        vec![],
        Faults {
            latency,
            ..Faults::default()
        },
    );
    // Warm moto up first: its first request to each service builds that backend (seconds).
    let warm = w
        .cmd()
        .args([
            "run",
            "dev",
            "--name",
            &support::stack_name("warm"),
            "--set",
            "health_timeout=60",
        ])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins())
        .output()
        .unwrap();
    assert!(
        warm.status.success(),
        "{}",
        String::from_utf8_lossy(&warm.stderr)
    );
    let stack = support::stack_name("bench");
    let started = Instant::now();
    let out = w
        .cmd()
        .args(["run", "dev", "--name", &stack, "--set", "health_timeout=60"])
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
    // The chain's requests, in order, as the deploy made them.
    let mut at = 0;
    for (op, _) in &stats.log {
        if at < CHAIN.len() && op == CHAIN[at] {
            at += 1;
        }
    }
    let chain_seen = at == CHAIN.len();
    let bound = latency * CHAIN.len() as u32;
    let summary = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains(" ok run "))
        .unwrap_or("")
        .trim()
        .to_string();
    println!(
        "deploy critical path (dev tier, moto behind the proxy, +{} ms per request)",
        latency.as_millis()
    );
    println!("  AWS requests           {}", stats.requests);
    println!("  wall time              {:.2} s", wall.as_secs_f64());
    println!(
        "  longest chain          {} requests{}",
        CHAIN.len(),
        if chain_seen {
            ""
        } else {
            " (NOT all seen in order!)"
        }
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
                "    {:>6} ms → {:>6} ms  {op}",
                a.as_millis(),
                d.as_millis()
            );
        }
    }
}
