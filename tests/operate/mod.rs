//! Living with a stack (issue 7): list, status, cost, monitor, logs and config, through the
//! binary against moto with local stand-ins for the services.

use crate::support;

use support::proxy::{FaultProxy, Rule};
use support::{stand_ins, Outcome, World};

mod logs;
mod monitor;
mod status;

fn run_with(w: &World, args: &[&str], endpoints: &str) -> Outcome {
    let out = w
        .cmd()
        .args(args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", endpoints)
        .output()
        .unwrap();
    Outcome::from(out)
}

fn deploy_dev(w: &World, stack: &str) {
    run_with(
        w,
        &[
            "run",
            "--name",
            stack,
            "--set",
            "health_timeout=30",
            "--set",
            "allowed_cidr=192.0.2.1/32",
        ],
        &stand_ins(),
    )
    .success();
}

fn json(out: &Outcome) -> serde_json::Value {
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", out.stdout))
}
