//! The release machinery, checked statically: the workflow (shellcheck on every `run:`
//! script), the Homebrew formula, the changelog, the Dockerfile.

use std::path::Path;

use super::*;

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
