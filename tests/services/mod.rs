//! Services as data, end to end through the binary: every bundled tier and example renders a
//! compose file that parses back and validates against the Compose Specification's schema, user
//! data that passes shellcheck within EC2's 16 KiB; the examples deploy against moto from a
//! copied recipe with no Rust change; bad service maps fail with positioned errors before
//! anything is created.

use crate::support;

use std::path::Path;

use support::{heredoc, Outcome, World};

mod examples;
mod render;

/// `run <recipe> --plan --show-user-data`: the boot script of the instance it would launch.
fn planned_user_data(w: &World, recipe: &str, sets: &[String]) -> String {
    let mut args = vec!["run", recipe, "--name", "ud", "--plan", "--show-user-data"];
    for s in sets {
        args.push("--set");
        args.push(s);
    }
    let out = w.run(&args);
    out.success();
    let start = out
        .stdout
        .find("#!/bin/bash\n")
        .unwrap_or_else(|| panic!("no user data printed:\n{}", out.stdout));
    let rest = &out.stdout[start..];
    let end = rest.find("\n\n`geusemaker policy").unwrap_or(rest.len());
    rest[..end].trim_end().to_string() + "\n"
}

fn deploy(w: &World, recipe: &str, stack: &str, stand_ins: &str, sets: &[&str]) -> Outcome {
    let mut cmd = w.cmd();
    cmd.args(["run", recipe, "--name", stack, "--set", "health_timeout=30"])
        .args(["--set", "allowed_cidr=198.51.100.7/32"])
        .env("GEUSEMAKER_HEALTH_ENDPOINTS", stand_ins);
    for s in sets {
        cmd.args(["--set", s]);
    }
    Outcome::from(cmd.output().unwrap())
}
