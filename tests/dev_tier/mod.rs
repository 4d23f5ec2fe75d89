//! The dev tier end to end through the binary against moto, with the five services stood in
//! for by local servers (GEUSEMAKER_HEALTH_ENDPOINTS), and AWS faults injected by a proxy.

use crate::support;

use support::{stand_ins, Outcome, World};

mod capacity;
mod checks;
mod secure_deploy;

fn deploy(w: &World, stack: &str, endpoint: Option<&str>, sets: &[&str]) -> Outcome {
    let mut args = vec!["run", "dev", "--name", stack, "--set", "health_timeout=30"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let mut cmd = w.cmd();
    cmd.args(&args)
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins());
    if let Some(e) = endpoint {
        cmd.env("AWS_ENDPOINT_URL", e);
    }
    let out = cmd.output().unwrap();
    Outcome::from(out)
}

fn ledger_id(state: &serde_json::Value, kind: &str, name: &str) -> String {
    state["resources"]
        .as_array()
        .unwrap()
        .iter()
        .rev()
        .find(|r| r["kind"] == kind && r["name"] == name && r["status"] == "created")
        .unwrap_or_else(|| panic!("{kind} {name} not in the ledger"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}
