//! Distribution (issue 10): what `--version` says, completions and the man page, older state
//! files migrated forward, and the release machinery (workflow, Dockerfile, Homebrew formula,
//! changelog) checked for consistency — no Docker engine or GitHub runner here, so those are
//! checked statically (YAML structure, shellcheck on every `run:` script, COPY sources).

use crate::support;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::World;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

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

fn yaml(rel: &str) -> serde_yaml::Value {
    serde_yaml::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Every `run:` script of a workflow through shellcheck (as bash, GitHub's default shell),
/// with `${{ … }}` expressions replaced by a placeholder word.
fn shellcheck_runs(rel: &str) {
    let doc = yaml(rel);
    let expr = regex_lite::Regex::new(r"\$\{\{[^}]*\}\}").unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut checked = 0;
    for (job_name, job) in doc["jobs"].as_mapping().unwrap() {
        for (i, step) in job["steps"].as_sequence().unwrap().iter().enumerate() {
            let Some(script) = step["run"].as_str() else {
                continue;
            };
            let file = dir
                .path()
                .join(format!("{}-{i}.sh", job_name.as_str().unwrap()));
            let body = expr.replace_all(script, "GITHUB_EXPRESSION");
            std::fs::write(&file, format!("#!/usr/bin/env bash\nset -e\n{body}")).unwrap();
            let out = Command::new("shellcheck")
                .arg(&file)
                .output()
                .expect("shellcheck (scripts/test.sh installs it)");
            assert!(
                out.status.success(),
                "{rel} job {job_name:?} step {i}:\n{}\n{}",
                body,
                String::from_utf8_lossy(&out.stdout)
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "{rel} has run steps");
}

#[test]
fn the_release_workflow_builds_the_platforms_the_formula_installs() {
    let doc = yaml(".github/workflows/release.yml");
    let tags: Vec<&str> = doc["on"]["push"]["tags"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(tags, ["v*.*.*"]);
    let matrix = doc["jobs"]["build"]["strategy"]["matrix"]["include"]
        .as_sequence()
        .unwrap();
    let platforms: BTreeSet<&str> = matrix
        .iter()
        .map(|m| m["platform"].as_str().unwrap())
        .collect();
    let expected: BTreeSet<&str> = [
        "linux-x86_64",
        "linux-aarch64",
        "macos-x86_64",
        "macos-arm64",
    ]
    .into_iter()
    .collect();
    assert_eq!(platforms, expected);
    for m in matrix {
        let target = m["target"].as_str().unwrap();
        let platform = m["platform"].as_str().unwrap();
        if platform.starts_with("linux") {
            assert!(
                target.ends_with("-linux-musl"),
                "{platform}: static musl, not {target}"
            );
        }
    }
    // The formula asks for exactly these archives, each with its checksum placeholder.
    let formula = read("packaging/homebrew/geusemaker.rb");
    for p in &expected {
        assert!(
            formula.contains(&format!("geusemaker-@VERSION@-{p}.tar.gz")),
            "formula lacks {p}"
        );
        let placeholder = format!("@SHA256_{}@", p.to_uppercase().replace('-', "_"));
        assert!(
            formula.contains(&placeholder),
            "formula lacks {placeholder}"
        );
    }
    assert!(
        formula.contains("\"completions\""),
        "the formula installs completions"
    );
    assert!(formula.contains("\"man\""), "and the man page");
    // Pre-release tags publish as pre-releases; notes come from the changelog.
    let text = read(".github/workflows/release.yml");
    assert!(text.contains("*-rc*") && text.contains("--prerelease"));
    assert!(text.contains("scripts/changelog-notes.sh"));
    shellcheck_runs(".github/workflows/release.yml");
    shellcheck_runs(".github/workflows/ci.yml");
}

#[test]
fn the_formula_renders_from_a_checksum_file() {
    let dir = tempfile::tempdir().unwrap();
    let sums = dir.path().join("SHA256SUMS");
    let platforms = [
        "linux-x86_64",
        "linux-aarch64",
        "macos-x86_64",
        "macos-arm64",
    ];
    let mut text = String::new();
    for (i, p) in platforms.iter().enumerate() {
        text.push_str(&format!(
            "{}  geusemaker-1.2.3-{p}.tar.gz\n",
            format!("{i}").repeat(64)
        ));
    }
    std::fs::write(&sums, &text).unwrap();
    let run = |sums: &Path| {
        Command::new("bash")
            .arg(repo().join("scripts/render-formula.sh"))
            .args(["1.2.3", "acme/geusemaker"])
            .arg(sums)
            .output()
            .unwrap()
    };
    let out = run(&sums);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rb = String::from_utf8(out.stdout).unwrap();
    assert!(!rb.contains('@'), "a placeholder is left:\n{rb}");
    assert!(rb.contains("version \"1.2.3\""));
    assert!(rb.contains("https://github.com/acme/geusemaker/releases/download/v1.2.3/geusemaker-1.2.3-macos-arm64.tar.gz"));
    for i in 0..4 {
        assert!(rb.contains(&format!("sha256 \"{}\"", format!("{i}").repeat(64))));
    }
    // A platform without a checksum stops it.
    std::fs::write(&sums, text.lines().take(3).collect::<Vec<_>>().join("\n")).unwrap();
    let out = run(&sums);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no checksum for macos-arm64"));
}

#[test]
fn the_changelog_has_notes_for_this_version() {
    let notes = |v: &str| {
        Command::new("bash")
            .arg(repo().join("scripts/changelog-notes.sh"))
            .arg(v)
            .output()
            .unwrap()
    };
    let out = notes(env!("CARGO_PKG_VERSION"));
    assert!(
        out.status.success(),
        "CHANGELOG.md needs a section for this version"
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("### "), "{text}");
    assert!(
        !text.contains("## ["),
        "only this version's section:\n{text}"
    );
    assert!(!notes("0.0.0-none").status.success());
}

#[test]
fn the_dockerfile_builds_from_files_that_exist_into_a_small_runtime_image() {
    let text = read("Dockerfile");
    let ignored: Vec<String> = read(".dockerignore")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    const KNOWN: &[&str] = &[
        "FROM",
        "RUN",
        "COPY",
        "ADD",
        "ENV",
        "ARG",
        "WORKDIR",
        "USER",
        "ENTRYPOINT",
        "CMD",
        "LABEL",
        "EXPOSE",
        "VOLUME",
        "HEALTHCHECK",
        "SHELL",
        "STOPSIGNAL",
        "ONBUILD",
    ];
    let mut stages = Vec::new();
    let mut entrypoint = None;
    let mut logical = String::new();
    for raw in text.lines() {
        let line = raw.trim_end();
        if logical.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with('#')) {
            continue;
        }
        if let Some(cont) = line.strip_suffix('\\') {
            logical.push_str(cont);
            logical.push(' ');
            continue;
        }
        logical.push_str(line);
        let instr = std::mem::take(&mut logical);
        let mut words = instr.split_whitespace();
        let keyword = words.next().unwrap().to_ascii_uppercase();
        assert!(
            KNOWN.contains(&keyword.as_str()),
            "unknown instruction: {instr}"
        );
        let args: Vec<&str> = words.collect();
        match keyword.as_str() {
            "FROM" => {
                let image = args[0];
                assert!(
                    image.contains(':') && !image.ends_with(":latest"),
                    "pin base images: {image}"
                );
                stages.push(image.to_string());
            }
            "COPY" if !args[0].starts_with("--from") => {
                for src in &args[..args.len() - 1] {
                    assert!(repo().join(src).exists(), "COPY {src}: no such file");
                    assert!(
                        !ignored.iter().any(|i| i == src),
                        "COPY {src}, but .dockerignore excludes it"
                    );
                }
            }
            "ENTRYPOINT" => entrypoint = Some(args.join(" ")),
            _ => {}
        }
    }
    assert_eq!(
        stages.len(),
        2,
        "a build stage and a runtime stage: {stages:?}"
    );
    assert!(
        stages[1].contains("slim"),
        "a small runtime image: {}",
        stages[1]
    );
    assert!(text.contains("ca-certificates"));
    assert_eq!(entrypoint.as_deref(), Some("[\"geusemaker\"]"));
    // The build stage has everything build.rs and include_str! need.
    for needed in [
        "Cargo.toml",
        "Cargo.lock",
        "build.rs",
        "src",
        "recipes",
        "stdlib",
    ] {
        assert!(
            text.contains(&format!(" {needed}")),
            "the build stage lacks {needed}"
        );
    }
}

// ---- Linux packages and the supply chain (issue 22) -------------------------------------------

/// `[package.metadata.<table>]` of Cargo.toml.
fn package_metadata(table: &str) -> toml_edit::Item {
    let doc: toml_edit::DocumentMut = read("Cargo.toml").parse().unwrap();
    doc["package"]["metadata"][table].clone()
}

/// The repository's files a package source names: a file, or a `dir/*.ext` glob.
fn sources_of(pattern: &str) -> Vec<PathBuf> {
    match pattern.split_once("/*") {
        Some((dir, ext)) => {
            let mut found: Vec<PathBuf> = std::fs::read_dir(repo().join(dir))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.is_file() && p.to_string_lossy().ends_with(ext))
                .collect();
            found.sort();
            found
        }
        None => vec![repo().join(pattern)],
    }
}

/// What the release's `target/release/package/` holds: the files scripts/package-assets.sh
/// writes there.
fn generated_assets() -> BTreeSet<String> {
    let script = read("scripts/package-assets.sh");
    let re = regex_lite::Regex::new(r#"> "\$out/([^"]+)""#).unwrap();
    re.captures_iter(&script)
        .map(|c| c[1].to_string())
        .collect()
}

/// (source, destination) of every asset of a package, checked: the binary, a generated file,
/// or files of the repository that exist.
fn package_assets(table: &str) -> Vec<(String, String)> {
    let generated = generated_assets();
    let meta = package_metadata(table);
    let assets = meta["assets"]
        .as_array()
        .unwrap_or_else(|| panic!("{table}: no assets"));
    let mut out = Vec::new();
    for a in assets.iter() {
        if let toml_edit::Value::InlineTable(t) = a {
            if t.get("dir").and_then(|d| d.as_bool()) == Some(true) {
                // A directory the package owns: no source.
                assert!(t.get("source").is_none(), "{table}: {t}");
                let dest = t["dest"].as_str().unwrap().trim_start_matches('/');
                out.push((String::new(), dest.to_string()));
                continue;
            }
        }
        let (source, dest, mode) = match a {
            toml_edit::Value::Array(list) => {
                let f: Vec<&str> = list.iter().map(|v| v.as_str().unwrap()).collect();
                (f[0].to_string(), f[1].to_string(), f[2].to_string())
            }
            toml_edit::Value::InlineTable(t) => (
                t["source"].as_str().unwrap().to_string(),
                t["dest"].as_str().unwrap().to_string(),
                t["mode"].as_str().unwrap().to_string(),
            ),
            other => panic!("{table}: an asset is {other}"),
        };
        if source == "target/release/geusemaker" {
            assert_eq!(mode, "755", "{table}: the binary is executable");
        } else if let Some(name) = source.strip_prefix("target/release/package/") {
            assert!(
                generated.contains(name),
                "{table}: {source} is not generated by scripts/package-assets.sh ({generated:?})"
            );
            assert_eq!(mode, "644");
        } else {
            let files = sources_of(&source);
            assert!(!files.is_empty(), "{table}: {source} names no file");
            for f in files {
                assert!(f.exists(), "{table}: {} does not exist", f.display());
            }
            assert_eq!(mode, "644");
        }
        out.push((source, dest.trim_start_matches('/').to_string()));
    }
    out
}

#[test]
fn the_linux_packages_install_each_file_where_its_distribution_expects_it() {
    let deb = package_assets("deb");
    let rpm = package_assets("generate-rpm");
    let dest_of = |assets: &[(String, String)], source: &str| -> String {
        assets
            .iter()
            .find(|(s, _)| s == source)
            .unwrap_or_else(|| panic!("{source} is not packaged"))
            .1
            .clone()
    };
    // Where Debian and Fedora keep each kind of file (a trailing `/`: the file keeps its name).
    let expected = [
        (
            "target/release/geusemaker",
            "usr/bin/",
            "usr/bin/geusemaker",
        ),
        (
            "target/release/package/geusemaker.1.gz",
            "usr/share/man/man1/",
            "usr/share/man/man1/geusemaker.1.gz",
        ),
        (
            "target/release/package/geusemaker.bash",
            "usr/share/bash-completion/completions/geusemaker",
            "usr/share/bash-completion/completions/geusemaker",
        ),
        (
            "target/release/package/_geusemaker",
            "usr/share/zsh/vendor-completions/",
            "usr/share/zsh/site-functions/_geusemaker",
        ),
        (
            "target/release/package/geusemaker.fish",
            "usr/share/fish/vendor_completions.d/",
            "usr/share/fish/vendor_completions.d/geusemaker.fish",
        ),
        (
            "recipes/*.rhai",
            "usr/share/geusemaker/recipes/",
            "usr/share/geusemaker/recipes/",
        ),
        (
            "recipes/examples/*.rhai",
            "usr/share/geusemaker/recipes/examples/",
            "usr/share/geusemaker/recipes/examples/",
        ),
        (
            "stdlib/*.rhai",
            "usr/share/geusemaker/stdlib/",
            "usr/share/geusemaker/stdlib/",
        ),
    ];
    for (source, on_debian, on_fedora) in expected {
        assert_eq!(dest_of(&deb, source), on_debian, "deb: {source}");
        assert_eq!(dest_of(&rpm, source), on_fedora, "rpm: {source}");
    }
    // Every generated file, recipe and stdlib module is in both packages.
    for name in generated_assets() {
        let source = format!("target/release/package/{name}");
        dest_of(&deb, &source);
        dest_of(&rpm, &source);
    }
    let packaged: BTreeSet<PathBuf> = deb
        .iter()
        .filter(|(s, _)| s.ends_with(".rhai"))
        .flat_map(|(s, _)| sources_of(s))
        .collect();
    let mut shipped = BTreeSet::new();
    for dir in ["recipes", "recipes/examples", "stdlib"] {
        shipped.extend(sources_of(&format!("{dir}/*.rhai")));
    }
    assert_eq!(packaged, shipped, "every bundled recipe and stdlib module");
    let rpm_sources: BTreeSet<&str> = rpm.iter().map(|(s, _)| s.as_str()).collect();
    for (s, _) in &deb {
        assert!(rpm_sources.contains(s.as_str()), "the rpm lacks {s}");
    }
    // The license: the deb's copyright file and the rpm's license file are the repository's.
    assert_eq!(
        package_metadata("deb")["license-file"][0].as_str(),
        Some("LICENSE")
    );
    assert_eq!(
        dest_of(&rpm, "LICENSE"),
        "usr/share/licenses/geusemaker/LICENSE"
    );
    assert!(read("LICENSE").trim_start().starts_with("Apache License"));
    assert!(read("Cargo.toml").contains("license = \"Apache-2.0\""));
    // The rpm owns the directories it creates (removing it removes them).
    let owned: BTreeSet<&str> = rpm
        .iter()
        .filter(|(s, _)| s.is_empty())
        .map(|(_, d)| d.as_str())
        .collect();
    for (_, dest) in rpm.iter().filter(|(s, _)| !s.is_empty()) {
        let dir = match dest.strip_suffix('/') {
            Some(d) => d,
            None => dest.rsplit_once('/').unwrap().0,
        };
        if dir.contains("geusemaker") {
            assert!(owned.contains(dir), "the rpm does not own {dir}");
        }
    }
    // A static binary depends on no shared library, nor on a shell.
    assert_eq!(package_metadata("deb")["depends"].as_str(), Some(""));
    let rpm_meta = package_metadata("generate-rpm");
    assert_eq!(rpm_meta["auto-req"].as_str(), Some("no"));
    assert_eq!(rpm_meta["require-sh"].as_bool(), Some(false));
    let dir = tempfile::tempdir().unwrap();
    support::shellcheck(
        dir.path(),
        "package-assets",
        &read("scripts/package-assets.sh"),
    );
}

/// The step of `job` that uses the action `action` (`owner/name@`), if there is one.
fn step_using<'a>(job: &'a serde_yaml::Value, action: &str) -> Option<&'a serde_yaml::Value> {
    job["steps"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|s| s["uses"].as_str().is_some_and(|u| u.starts_with(action)))
}

/// The release builds the packages on the Linux runners, attests every file it publishes,
/// publishes the SBOM, and is stopped by a known-vulnerable dependency before it builds.
#[test]
fn the_release_packages_attests_and_audits_what_it_ships() {
    let doc = yaml(".github/workflows/release.yml");
    let jobs = &doc["jobs"];
    let deny_step = |job| step_using(job, "EmbarkStudios/cargo-deny-action@");
    let audit = deny_step(&jobs["audit"]).expect("the release runs cargo-deny");
    assert!(audit["with"]["command"]
        .as_str()
        .unwrap()
        .contains("advisories"));
    assert_eq!(
        jobs["build"]["needs"].as_str(),
        Some("audit"),
        "nothing is built before the audit"
    );
    let ci = yaml(".github/workflows/ci.yml");
    let ci_deny = deny_step(&ci["jobs"]["deny"]).expect("CI runs cargo-deny");
    assert!(ci_deny["with"]["command"]
        .as_str()
        .unwrap()
        .contains("advisories"));

    let steps = jobs["build"]["steps"].as_sequence().unwrap();
    let packages = steps
        .iter()
        .find(|s| s["run"].as_str().is_some_and(|r| r.contains("cargo deb")))
        .expect("a step builds the .deb");
    assert_eq!(packages["if"].as_str(), Some("runner.os == 'Linux'"));
    let run = packages["run"].as_str().unwrap();
    for needed in [
        "scripts/package-assets.sh \"target/${{ matrix.target }}/release\"\n",
        "cargo deb --no-build --no-strip --target \"${{ matrix.target }}\" --output dist/\n",
        "cargo generate-rpm --target \"${{ matrix.target }}\" --output dist/\n",
        "cargo install --locked cargo-deb@",
    ] {
        assert!(
            run.contains(needed),
            "the packaging step lacks {needed}:\n{run}"
        );
    }
    let upload = step_using(&jobs["build"], "actions/upload-artifact@").unwrap();
    let uploaded = upload["with"]["path"].as_str().unwrap();
    for kind in ["*.tar.gz", "*.deb", "*.rpm", "*.sha256"] {
        assert!(uploaded.contains(kind), "{kind} is not uploaded");
    }

    let release = &jobs["release"];
    assert_eq!(release["permissions"]["contents"].as_str(), Some("write"));
    assert_eq!(release["permissions"]["id-token"].as_str(), Some("write"));
    assert_eq!(
        release["permissions"]["attestations"].as_str(),
        Some("write")
    );
    assert_eq!(
        doc["permissions"]["contents"].as_str(),
        Some("read"),
        "write only where needed"
    );
    let rsteps = release["steps"].as_sequence().unwrap();
    let attest = step_using(release, "actions/attest-build-provenance@")
        .expect("the release attests its files");
    let subjects = attest["with"]["subject-path"].as_str().unwrap();
    let publish = rsteps
        .iter()
        .find(|s| {
            s["run"]
                .as_str()
                .is_some_and(|r| r.contains("gh release create"))
        })
        .unwrap()["run"]
        .as_str()
        .unwrap();
    for published in [
        "dist/*.tar.gz",
        "dist/*.deb",
        "dist/*.rpm",
        "dist/*.cdx.json",
        "dist/SHA256SUMS",
        "dist/geusemaker.rb",
    ] {
        assert!(publish.contains(published), "{published} is not published");
        assert!(
            subjects.contains(published),
            "{published} is published but not attested"
        );
    }
    let position = |needle: &str| {
        rsteps
            .iter()
            .position(|s| serde_yaml::to_string(s).unwrap().contains(needle))
            .unwrap_or_else(|| panic!("no step with {needle}"))
    };
    assert!(position("cargo cyclonedx") < position("attest-build-provenance"));
    assert!(
        position("attest-build-provenance") < position("gh release create"),
        "attested before it is published"
    );
    // The one command a user runs to verify a download.
    let readme = read("packaging/README.md");
    assert!(
        readme.contains("gh attestation verify"),
        "packaging/README.md shows the verification"
    );
    assert!(
        readme.contains("--signer-workflow <owner>/geusemaker/.github/workflows/release.yml"),
        "the verification names the workflow that must have built the file"
    );
    // The SBOM covers every release target and is in the checksums.
    let sbom = rsteps
        .iter()
        .find_map(|s| s["run"].as_str().filter(|r| r.contains("cargo cyclonedx")))
        .unwrap();
    assert!(sbom.contains("--target all"), "{sbom}");
    assert!(
        sbom.find(".cdx.json.sha256").expect("the SBOM's checksum")
            < sbom.find("> SHA256SUMS").expect("SHA256SUMS"),
        "{sbom}"
    );
}

/// A license expression (SPDX, with the old `/` for OR) satisfied by `allowed`.
fn license_allowed(expr: &str, allowed: &BTreeSet<String>) -> bool {
    let spaced = expr
        .replace('/', " OR ")
        .replace('(', " ( ")
        .replace(')', " ) ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    fn or(t: &[&str], i: &mut usize, allowed: &BTreeSet<String>) -> bool {
        let mut ok = and(t, i, allowed);
        while t.get(*i) == Some(&"OR") {
            *i += 1;
            ok |= and(t, i, allowed);
        }
        ok
    }
    fn and(t: &[&str], i: &mut usize, allowed: &BTreeSet<String>) -> bool {
        let mut ok = one(t, i, allowed);
        while t.get(*i) == Some(&"AND") {
            *i += 1;
            ok &= one(t, i, allowed);
        }
        ok
    }
    fn one(t: &[&str], i: &mut usize, allowed: &BTreeSet<String>) -> bool {
        if t[*i] == "(" {
            *i += 1;
            let ok = or(t, i, allowed);
            assert_eq!(t[*i], ")");
            *i += 1;
            return ok;
        }
        let mut id = t[*i].trim_end_matches('+').to_string();
        *i += 1;
        if t.get(*i) == Some(&"WITH") {
            id = format!("{id} WITH {}", t[*i + 1]);
            *i += 2;
        }
        allowed.contains(&id)
    }
    let mut i = 0;
    let ok = or(&tokens, &mut i, allowed);
    assert_eq!(i, tokens.len(), "`{expr}` parsed to its end");
    ok
}

/// deny.toml's license list lets every crate in the tree through (the workflows run
/// cargo-deny for real; this finds a new dependency's license before a release does).
#[test]
fn every_dependency_has_a_license_deny_toml_allows() {
    let deny: toml_edit::DocumentMut = read("deny.toml").parse().unwrap();
    let allowed: BTreeSet<String> = deny["licenses"]["allow"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    assert!(license_allowed("MIT OR Apache-2.0", &allowed));
    assert!(license_allowed(
        "(MIT OR Apache-2.0) AND Unicode-3.0",
        &allowed
    ));
    assert!(!license_allowed("GPL-3.0-only", &allowed));
    assert!(!license_allowed("MIT AND GPL-3.0-only", &allowed));
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--locked", "--offline"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut refused = Vec::new();
    for p in meta["packages"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        match p["license"].as_str() {
            Some(l) if license_allowed(l, &allowed) => {}
            other => refused.push(format!("{name} {}: {other:?}", p["version"])),
        }
    }
    assert!(
        refused.is_empty(),
        "licenses deny.toml does not allow: {refused:#?}"
    );
    // Advisories fail the check; sources are crates.io only.
    assert_eq!(deny["advisories"]["yanked"].as_str(), Some("deny"));
    assert_eq!(deny["sources"]["unknown-git"].as_str(), Some("deny"));
    assert_eq!(deny["sources"]["unknown-registry"].as_str(), Some("deny"));
}
