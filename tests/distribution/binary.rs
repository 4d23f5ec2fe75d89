//! What the binary itself carries: `--version`, shell completions, the man page, and older
//! state files migrated forward (newer ones refused).

use crate::support::World;

use super::*;

fn git_head() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(repo())
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[test]
fn version_names_the_release_the_commit_and_the_build_date() {
    let w = World::offline();
    for flag in ["--version", "-V"] {
        let out = w.run(&[flag]);
        out.success();
        let line = out.stdout.trim_end();
        let re = regex_lite::Regex::new(
            r"^geusemaker (\d+\.\d+\.\d+(?:-[0-9A-Za-z.]+)?) \(([0-9a-f]{12}|unknown) (\d{4})-(\d{2})-(\d{2})\)$",
        )
        .unwrap();
        let caps = re
            .captures(line)
            .unwrap_or_else(|| panic!("`{line}` is not `geusemaker X.Y.Z (commit date)`"));
        assert_eq!(&caps[1], env!("CARGO_PKG_VERSION"));
        let (year, month, day): (u32, u32, u32) = (
            caps[3].parse().unwrap(),
            caps[4].parse().unwrap(),
            caps[5].parse().unwrap(),
        );
        assert!(year >= 2025 && (1..=12).contains(&month) && (1..=31).contains(&day));
        // Built from this checkout: the commit is HEAD's (build.rs re-runs when HEAD moves).
        if std::env::var_os("GEUSEMAKER_COMMIT").is_none() {
            if let Some(head) = git_head() {
                assert_eq!(&caps[2], head, "the commit of this checkout");
            }
        }
    }
}

/// The commands a completion script or man page must know.
const COMMANDS: &[&str] = &[
    "run",
    "deploy",
    "destroy",
    "rollback",
    "repl",
    "eval",
    "list",
    "status",
    "monitor",
    "cost",
    "logs",
    "config",
    "recipes",
    "check",
    "policy",
    "completions",
    "man",
];

#[test]
fn completions_for_bash_zsh_and_fish_know_every_command() {
    let w = World::offline();
    let dir = tempfile::tempdir().unwrap();
    for (shell, checker) in [("bash", "bash"), ("zsh", "zsh"), ("fish", "fish")] {
        let out = w.run(&["completions", shell]);
        out.success();
        for c in COMMANDS {
            assert!(out.stdout.contains(c), "{shell} completions lack `{c}`");
        }
        // A syntax check by the shell itself where it is installed (bash always is).
        let file = dir.path().join(format!("geusemaker.{shell}"));
        std::fs::write(&file, &out.stdout).unwrap();
        match Command::new(checker).arg("-n").arg(&file).output() {
            Ok(o) => assert!(
                o.status.success(),
                "{shell} -n: {}",
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(_) => assert_ne!(shell, "bash", "bash is needed to check completions"),
        }
    }
    w.run(&["completions", "powershell-ish"])
        .failure(2)
        .stderr_has("possible values: bash, zsh, fish");
}

#[test]
fn the_man_page_is_roff_naming_every_command() {
    let out = World::offline().run(&["man"]);
    out.success();
    assert!(
        out.stdout.contains(".TH geusemaker 1"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
    assert!(out.stdout.contains(".SH NAME"));
    assert!(out.stdout.contains(env!("CARGO_PKG_VERSION")));
    for c in COMMANDS {
        assert!(
            out.stdout.contains(&format!("geusemaker\\-{c}")) || out.stdout.contains(c),
            "the man page lacks `{c}`"
        );
    }
}

fn put_fixture(w: &World, stack: &str, text: &str) -> PathBuf {
    let stacks = w.home.path().join("stacks");
    std::fs::create_dir_all(&stacks).unwrap();
    let path = stacks.join(format!("{stack}.json"));
    std::fs::write(&path, text).unwrap();
    path
}

/// A state file written by geusemaker 0.1 (format 1: params under `config`), captured from a
/// real dev deploy against moto, loads through the migration; the first write keeps the
/// original for going back to 0.1.
#[test]
fn a_format_1_state_file_is_migrated_and_the_original_kept() {
    let w = World::moto();
    let original = read("tests/fixtures/state-v1.json");
    let path = put_fixture(&w, "team-dev", &original);

    // Reading (list) migrates in memory only.
    let out = w.run(&["list", "--json"]);
    out.success().stdout_has("\"team-dev\"");
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        original,
        "untouched"
    );
    let status = w.run(&["status", "team-dev", "--json"]);
    status.success();

    // Writing (destroy: the resources it names are long gone from this moto) migrates.
    w.run(&["destroy", "team-dev", "--yes"]).success();
    let state = w.state("team-dev");
    assert_eq!(state["schema_version"], 2);
    // `params` are now destroy's own (every run records the params it ran with).
    assert_eq!(state["params"]["delete_data"], false);
    assert!(state.get("config").is_none(), "{state}");
    assert_eq!(state["status"], "destroyed");
    let old: serde_json::Value = serde_json::from_str(&original).unwrap();
    assert_eq!(
        state["resources"].as_array().unwrap().len(),
        old["resources"].as_array().unwrap().len(),
        "the ledger came through whole"
    );
    let kept = path.with_extension("json.v1");
    assert_eq!(std::fs::read_to_string(&kept).unwrap(), original);
    assert_eq!(support::file_mode(&kept), 0o600);
    // The kept copy is not a stack of its own.
    let list = w.run(&["list", "--json"]);
    list.success();
    assert!(!list.stdout.contains("json.v1"), "{}", list.stdout);
}

#[test]
fn a_state_file_newer_than_this_build_is_refused_and_left_alone() {
    let w = World::offline();
    let newer = read("tests/fixtures/state-v1.json").replacen(
        "\"schema_version\": 1",
        "\"schema_version\": 99",
        1,
    );
    let path = put_fixture(&w, "team-dev", &newer);
    w.run(&["destroy", "team-dev", "--yes"])
        .failure(1)
        .stderr_has("schema_version 99 is newer than this geusemaker understands")
        .stderr_has("upgrade geusemaker");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), newer);
}
