//! The integration suite: one test binary, one module per area, one moto server for the run
//! (`support::moto`, started on first use, stopped when the binary exits). Every test runs the
//! real `geusemaker` binary; each works in its own `$GEUSEMAKER_HOME` and names its stacks
//! uniquely (`support::stack_name`), so the tests of every module share moto without meeting.
//!
//! `cargo test --test main <module>::` runs one area, e.g. `cargo test --test main teams::`.
//! A new file in `tests/` must be declared below: `every_test_file_is_a_module` checks it.

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

/// Cargo builds only this file's binary (`autotests = false`): a test file that no `mod` line
/// names would never be compiled, let alone run.
#[test]
fn every_test_file_is_a_module() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let main = std::fs::read_to_string(dir.join("main.rs")).unwrap();
    let declared: Vec<&str> = main
        .lines()
        .filter_map(|l| l.strip_prefix("mod ")?.strip_suffix(';'))
        .collect();
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|name| name != "main")
        .collect();
    files.sort();
    let missing: Vec<&String> = files
        .iter()
        .filter(|f| !declared.contains(&f.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "tests/{missing:?}.rs not declared in tests/main.rs"
    );
    assert!(files.len() >= 18, "only {} test files found", files.len());
}
