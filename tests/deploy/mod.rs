//! End to end through the binary against moto: the quickstart recipe creates a VPC-discovered
//! security group, an encrypted EFS with a mount target and a tagged spot instance; the state
//! lists each resource; re-runs converge; a second concurrent run is refused.

use crate::support;

use support::{Outcome, World};

mod errors;
mod quickstart;

/// `run recipes/quickstart.rhai` for `stack`, n8n open to 203.0.113.7/32.
fn quickstart(w: &World, stack: &str) -> Outcome {
    w.run(&[
        "run",
        "recipes/quickstart.rhai",
        "--name",
        stack,
        "--set",
        "allowed_cidr=203.0.113.7/32",
    ])
}
