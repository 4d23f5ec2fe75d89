//! Sharing recipes with integrity (issue 8): sources in geusemaker.toml, a lock with commits
//! and sha256 hashes, verification on run and check. Git sources are local bare repositories.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::{Outcome, World};

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

const TIER_V1: &str = r#"// The acme GPU-less tier: a plan-only example.
//! [recipe]
//! name = "edge-tier"
//! description = "Acme's tier: one instance behind our shared helper"
//! version = "1.0.0"
//!
//! [params]
//! size = { type = "string", default = "t3.small", help = "instance type" }

import "helpers" as helpers;   // a sibling file of the source
import "network" as network;   // the bundled stdlib

let net = network::discover("");
helpers::banner(param("size"));
"#;

const HELPERS: &str = "fn banner(size) { ui::info(`acme tier on ${size}`); }\n";

/// A bare repository with the tier at tag v1; returns (bare repo URL, work clone).
fn acme_repo(root: &Path) -> (String, PathBuf) {
    let bare = root.join("acme.git");
    std::fs::create_dir_all(&bare).unwrap();
    git(&bare, &["init", "--quiet", "--bare"]);
    let work = root.join("acme-work");
    std::fs::create_dir_all(&work).unwrap();
    git(&work, &["init", "--quiet"]);
    std::fs::write(work.join("edge-tier.rhai"), TIER_V1).unwrap();
    std::fs::write(work.join("helpers.rhai"), HELPERS).unwrap();
    git(&work, &["add", "."]);
    git(&work, &["commit", "--quiet", "-m", "v1"]);
    git(&work, &["tag", "v1"]);
    let url = format!("file://{}", bare.display());
    git(
        &work,
        &["push", "--quiet", &url, "HEAD:refs/heads/main", "v1"],
    );
    (url, work)
}

/// The binary in `dir`, with no AWS at all (sources and plans need none).
fn cmd_in(w: &World, dir: &Path) -> Command {
    let mut c = w.cmd();
    for k in [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
    ] {
        c.env_remove(k);
    }
    c.current_dir(dir);
    c
}

fn in_dir(w: &World, dir: &Path, args: &[&str]) -> Outcome {
    Outcome::from(cmd_in(w, dir).args(args).output().unwrap())
}

#[test]
fn a_git_source_is_locked_verified_and_updated() {
    let w = World::offline();
    let (url, work) = acme_repo(w.home.path());
    let project = w.home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();

    assert_added_at_a_pinned_rev_and_locked(&w, &project, &url);
    assert_source_recipes_listed_checked_and_runnable(&w, &project);

    let cached = w.home.path().join("cache/sources/acme");
    let commit_dir = std::fs::read_dir(&cached)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.file_name().unwrap().len() == 40)
        .unwrap();
    let evil = "fn banner(size) { ui::info(\"evil\"); }\n";
    assert_a_tampered_copy_never_runs(&w, &project, &commit_dir, evil);
    assert_a_forged_object_is_fetched_again(&w, &project, &cached, &commit_dir, evil);
    assert_a_fresh_machine_fetches_and_verifies(&w, &project, &cached);
    assert_the_lock_follows_only_when_asked(&w, &project, &work, &url);
    in_dir(&w, &project, &["recipes", "update", "acm"])
        .failure(2)
        .stderr_has("did you mean `acme`?");
}

/// `recipes add` needs a rev; with one, the commit and every file's hash are locked and the
/// source is recorded in geusemaker.toml.
fn assert_added_at_a_pinned_rev_and_locked(w: &World, project: &Path, url: &str) {
    in_dir(w, project, &["recipes", "add", "acme", url])
        .failure(2)
        .stderr_has("needs --rev");
    in_dir(w, project, &["recipes", "add", "acme", url, "--rev", "v1"])
        .success()
        .stdout_has("acme: commit ")
        .stdout_has("added edge-tier.rhai, helpers.rhai");
    let lock = std::fs::read_to_string(project.join("geusemaker.lock")).unwrap();
    assert!(
        lock.contains("rev = \"v1\"") && lock.contains("commit = \""),
        "{lock}"
    );
    assert!(lock.contains("\"helpers.rhai\" = \"sha256:"), "{lock}");
    assert!(std::fs::read_to_string(project.join("geusemaker.toml"))
        .unwrap()
        .contains("[sources.acme]"));
}

/// The source's recipes are listed, checked and runnable (as a plan: no AWS here), and a
/// project recipe can import a module of the source.
fn assert_source_recipes_listed_checked_and_runnable(w: &World, project: &Path) {
    in_dir(w, project, &["recipes", "list"])
        .success()
        .stdout_has("acme/edge-tier")
        .stdout_has("acme@v1 (");
    in_dir(w, project, &["check", "acme/edge-tier"])
        .success()
        .stdout_has("acme/edge-tier.rhai: ok");
    in_dir(
        w,
        project,
        &["run", "acme/edge-tier", "--name", "edge", "--plan"],
    )
    .success()
    .stdout_has("acme tier on t3.small");
    // A project recipe importing a module of the source.
    std::fs::write(
        project.join("mine.rhai"),
        "import \"acme/helpers\" as acme;\nacme::banner(\"m5.large\");\n",
    )
    .unwrap();
    in_dir(
        w,
        project,
        &["run", "mine.rhai", "--name", "mine", "--plan"],
    )
    .success()
    .stdout_has("acme tier on m5.large");
}

/// Someone edits the fetched copy (issue 18): it is never trusted as it is. Every use verifies
/// it against the locked commit's git objects and checks it out again; the tampered code never
/// runs, and `recipes update` never locks it.
fn assert_a_tampered_copy_never_runs(w: &World, project: &Path, commit_dir: &Path, evil: &str) {
    let lock_before = std::fs::read_to_string(project.join("geusemaker.lock")).unwrap();
    std::fs::write(commit_dir.join("helpers.rhai"), evil).unwrap();
    let out = in_dir(
        w,
        project,
        &["run", "mine.rhai", "--name", "mine", "--plan"],
    );
    out.success()
        .stdout_has("acme tier on m5.large")
        .stderr_has("the cached copy of helpers.rhai differs from commit")
        .stderr_has("checked out again from its git objects");
    assert!(!out.stdout.contains("evil"), "{}", out.stdout);
    assert_ne!(
        std::fs::read_to_string(commit_dir.join("helpers.rhai")).unwrap(),
        evil
    );
    std::fs::write(commit_dir.join("helpers.rhai"), evil).unwrap();
    in_dir(w, project, &["recipes", "update", "acme"]).success();
    assert_eq!(
        std::fs::read_to_string(project.join("geusemaker.lock")).unwrap(),
        lock_before,
        "update reads the commit's files from git, not from the tampered cache"
    );
    std::fs::write(commit_dir.join("helpers.rhai"), evil).unwrap();
    in_dir(w, project, &["check", "mine.rhai"])
        .success()
        .stderr_has("checked out again");
}

/// The object store itself changed (a blob rewritten under its own name): caught by its
/// hash, and the source is fetched again from its origin.
fn assert_a_forged_object_is_fetched_again(
    w: &World,
    project: &Path,
    cached: &Path,
    commit_dir: &Path,
    evil: &str,
) {
    let repo = cached.join("repo.git");
    // A clone packs its objects: unpack them, so one can be rewritten in place.
    let packs = repo.join("objects/pack");
    for entry in std::fs::read_dir(&packs).unwrap().flatten() {
        let p = entry.path();
        if p.extension().is_some_and(|e| e == "pack") {
            let aside = w.home.path().join("aside.pack");
            std::fs::rename(&p, &aside).unwrap();
            std::fs::remove_file(p.with_extension("idx")).unwrap();
            let status = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(["unpack-objects", "-q"])
                .stdin(std::fs::File::open(&aside).unwrap())
                .status()
                .unwrap();
            assert!(status.success());
        }
    }
    let commit = commit_dir
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let out = Command::new("git")
        .arg("-C")
        .arg(&repo)
        .args(["rev-parse", &format!("{commit}:helpers.rhai")])
        .output()
        .unwrap();
    let blob = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let loose = repo.join("objects").join(&blob[..2]).join(&blob[2..]);
    assert!(loose.exists(), "{}", loose.display());
    {
        let forged = {
            use std::io::Write;
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(format!("blob {}\0{evil}", evil.len()).as_bytes())
                .unwrap();
            e.finish().unwrap()
        };
        let mut perms = std::fs::metadata(&loose).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perms.set_readonly(false);
        std::fs::set_permissions(&loose, perms).unwrap();
        std::fs::write(&loose, forged).unwrap();
        std::fs::write(commit_dir.join("helpers.rhai"), evil).unwrap();
        let out = in_dir(
            w,
            project,
            &["run", "mine.rhai", "--name", "mine", "--plan"],
        );
        out.success()
            .stdout_has("acme tier on m5.large")
            .stderr_has("does not hash to its id")
            .stderr_has("fetching it again");
    }
}

/// A fresh machine (no cache): the locked commit is fetched again, and verifies — by several
/// runs at once too (parallel CI jobs share the cache).
fn assert_a_fresh_machine_fetches_and_verifies(w: &World, project: &Path, cached: &Path) {
    std::fs::remove_dir_all(cached).unwrap();
    let parallel: Vec<_> = (0..4)
        .map(|i| {
            cmd_in(w, project)
                .args(["run", "mine.rhai", "--name", &format!("par{i}"), "--plan"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in parallel {
        Outcome::from(child.wait_with_output().unwrap())
            .success()
            .stdout_has("acme tier on m5.large");
    }
    std::fs::remove_dir_all(cached).unwrap();
    in_dir(
        w,
        project,
        &["run", "mine.rhai", "--name", "mine", "--plan"],
    )
    .success()
    .stdout_has("acme tier on m5.large");
}

/// v2 moves on; the lock only follows when asked.
fn assert_the_lock_follows_only_when_asked(w: &World, project: &Path, work: &Path, url: &str) {
    std::fs::write(
        work.join("helpers.rhai"),
        "fn banner(size) { ui::info(`acme v2 on ${size}`); }\n",
    )
    .unwrap();
    git(work, &["commit", "--quiet", "-am", "v2"]);
    git(work, &["tag", "v2"]);
    git(
        work,
        &["push", "--quiet", url, "HEAD:refs/heads/main", "v2"],
    );
    let toml = project.join("geusemaker.toml");
    std::fs::write(
        &toml,
        std::fs::read_to_string(&toml)
            .unwrap()
            .replace("\"v1\"", "\"v2\""),
    )
    .unwrap();
    in_dir(
        w,
        project,
        &["run", "mine.rhai", "--name", "mine", "--plan"],
    )
    .failure(1)
    .stderr_has("differs from geusemaker.lock");
    in_dir(w, project, &["recipes", "update"])
        .success()
        .stdout_has("acme: commit ")
        .stdout_has("changed helpers.rhai");
    in_dir(
        w,
        project,
        &["run", "mine.rhai", "--name", "mine", "--plan"],
    )
    .success()
    .stdout_has("acme v2 on m5.large");
}

#[test]
fn a_directory_source_is_verified_too() {
    let w = World::offline();
    let team = w.home.path().join("team");
    std::fs::create_dir_all(&team).unwrap();
    std::fs::write(team.join("helpers.rhai"), HELPERS).unwrap();
    let project = w.home.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    in_dir(&w, &project, &["recipes", "add", "team", "../team"])
        .success()
        .stdout_has("added helpers.rhai");
    let lock = std::fs::read_to_string(project.join("geusemaker.lock")).unwrap();
    assert!(lock.contains("path = \"../team\""), "{lock}");
    std::fs::write(
        project.join("mine.rhai"),
        "import \"team/helpers\" as t;\nt::banner(\"x\");\n",
    )
    .unwrap();
    in_dir(
        &w,
        &project,
        &["run", "mine.rhai", "--name", "mine", "--plan"],
    )
    .success();
    std::fs::write(team.join("helpers.rhai"), "fn banner(size) { }\n").unwrap();
    in_dir(&w, &project, &["check", "mine.rhai"])
        .failure(1)
        .stderr_has("team/helpers.rhai does not match geusemaker.lock");
    // A malformed project file is named with its line.
    std::fs::write(project.join("geusemaker.toml"), "[sources.team]\npath = \n").unwrap();
    in_dir(&w, &project, &["check", "mine.rhai"])
        .failure(2)
        .stderr_has("geusemaker.toml:2:");
}
