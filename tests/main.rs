//! The integration suite: one test binary, one module per area, one moto server for the run
//! (`support::moto`, started on first use, stopped when the binary exits). Every test runs the
//! real `geusemaker` binary; each works in its own `$GEUSEMAKER_HOME` and names its stacks
//! uniquely (`support::stack_name`), so the tests of every module share moto without meeting.
//!
//! `cargo test --test main <module>::` runs one area, e.g. `cargo test --test main teams::`.
//! A new file in `tests/` must be declared below, and a new file in a module directory
//! (`tests/<name>/mod.rs`) in that directory's `mod.rs`: `every_test_file_is_a_module` checks it.

mod support;

mod bench_deploy;
mod cli;
mod deploy;
mod dev_tier;
mod distribution;
mod eval;
mod lifecycle;
mod operate;
mod plan;
mod primitives;
mod recipes;
mod repl;
mod resilience;
mod security;
mod services;
mod sharing;
mod teams;
mod tiers;

use std::path::Path;

/// Cargo builds only this file's binary (`autotests = false`): a test file that no `mod` line
/// names would never be compiled, let alone run. A module split into a directory
/// (`tests/<name>/mod.rs`) must be declared here too, and each `.rs` file in it declared in its
/// `mod.rs`.
#[test]
fn every_test_file_is_a_module() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    let modules = check_declared(root, Path::new("tests"), "main.rs", &mut missing);
    assert!(missing.is_empty(), "not declared: {missing:#?}");
    assert!(modules >= 18, "only {modules} test modules found");
}

/// Adds to `missing` each `.rs` file of `root/dir` and each module directory in it (one with a
/// `mod.rs`) that `dir/<declarer>` has no `mod <name>;` line for, then checks each module
/// directory's `mod.rs` the same way. A directory without `mod.rs` may hold no `.rs` file.
/// Returns how many modules `dir` holds.
fn check_declared(root: &Path, dir: &Path, declarer: &str, missing: &mut Vec<String>) -> usize {
    let text = std::fs::read_to_string(root.join(dir).join(declarer)).unwrap();
    let declared: Vec<&str> = text
        .lines()
        .map(|l| l.strip_prefix("pub ").unwrap_or(l))
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut modules = 0;
    for entry in std::fs::read_dir(root.join(dir)).unwrap() {
        let path = dir.join(entry.unwrap().file_name());
        let name = if root.join(&path).is_dir() {
            if !root.join(&path).join("mod.rs").exists() {
                let stray = std::fs::read_dir(root.join(&path))
                    .unwrap()
                    .map(|e| e.unwrap().path())
                    .find(|p| p.extension().is_some_and(|x| x == "rs"));
                assert!(stray.is_none(), "{stray:?}: its directory has no mod.rs");
                continue;
            }
            check_declared(root, &path, "mod.rs", missing);
            path.file_name().unwrap()
        } else if path.extension().is_some_and(|x| x == "rs") && !path.ends_with(declarer) {
            path.file_stem().unwrap()
        } else {
            continue;
        };
        modules += 1;
        let name = name.to_string_lossy();
        if !declared.contains(&name.as_ref()) {
            missing.push(format!(
                "{} (no `mod {name};` in {})",
                path.display(),
                dir.join(declarer).display()
            ));
        }
    }
    modules
}
