//! Secure by default (issue 16), end to end through the binary against moto: who may connect
//! when nobody says, what a re-run takes away, what the instance and its role may do, what
//! the boot script guarantees (n8n published only with an owner, Docker after the mounts, a
//! checked Compose, retries), and health checks that a stopped server cannot pass.

use crate::support;

use support::{heredoc, n8n_stub, stand_ins_with_n8n, Outcome, World, DEPLOYER_IP};

mod access;
mod dev_deploy;

fn run(w: &World, args: &[&str], endpoints: &str) -> Outcome {
    Outcome::from(
        w.cmd()
            .args(args)
            .env("GEUSEMAKER_HEALTH_ENDPOINTS", endpoints)
            .output()
            .unwrap(),
    )
}

/// Every CIDR any of the stack's groups admits, as `port from cidr`.
fn open_ranges(w: &World, stack: &str) -> Vec<String> {
    let mut out = Vec::new();
    for g in w.sdk().stack_security_groups(stack) {
        for p in g.ip_permissions() {
            for r in p.ip_ranges() {
                out.push(format!(
                    "{} {}:{} from {}",
                    g.group_name().unwrap(),
                    p.from_port().unwrap_or(-1),
                    p.to_port().unwrap_or(-1),
                    r.cidr_ip().unwrap()
                ));
            }
            assert!(
                p.ipv6_ranges().is_empty(),
                "no IPv6 range is ever opened: {p:?}"
            );
        }
    }
    out.sort();
    out
}
