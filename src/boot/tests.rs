use super::*;

#[test]
fn images_must_be_pinned() {
    check_image("n8nio/n8n:1.64.0").unwrap();
    check_image(&format!("ghcr.io/org/x@sha256:{}", "a".repeat(64))).unwrap();
    assert!(check_image("busybox@whatever").is_err());
    assert!(check_image("n8nio/n8n:stable").is_err());
    assert!(check_image("n8nio/n8n:latest").is_err());
    assert!(check_image("n8nio/n8n").is_err());
    assert!(check_image("n8n; rm -rf /").is_err());
}

#[test]
fn values_that_could_escape_the_script_are_refused() {
    assert!(efs_mount("fs-1; reboot", "/mnt/efs").is_err());
    assert!(ebs_mount("vol-1$(id)", "/mnt/data").is_err());
    assert!(ssm_env("us-east-1", "/etc/x.env", &[("X".into(), "/a'b".into())]).is_err());
    assert!(ssm_env("us-east-1", "/etc/x.env", &[("lower".into(), "/a".into())]).is_err());
    assert!(write_file("/etc/x", "a\nGEUSEMAKER_EOF\nb", "0644").is_err());
    assert!(write_file("/etc/x", "ok", "777").is_err());
    assert!(ollama_pull(&["llama3; reboot".into()], &Layout::default()).is_err());
    assert!(pull_images(&["postgres:16.15'$(id)'".into()]).is_err());
    let channel = Channel {
        region: "us-east-1".into(),
        parameter: channel_parameter("demo"),
        run: "20261202T000000Z-abc123".into(),
    };
    assert!(spot_notices(&channel, "ab'; reboot").is_err());
}

/// Each run gets one notice token, kept in the state and carried by its boot's notice
/// script; the last ten runs' are kept.
#[test]
fn a_spot_notice_carries_its_runs_token() {
    use std::collections::BTreeSet;
    let mut values = std::collections::BTreeMap::new();
    let token = notice_token(&mut values, "20261202T000000Z-abc123");
    assert_eq!(token.len(), 32);
    assert!(token.chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(notice_token(&mut values, "20261202T000000Z-abc123"), token);
    assert_ne!(notice_token(&mut values, "20261202T000001Z-abc124"), token);
    for n in 2..20 {
        notice_token(&mut values, &format!("20261202T0000{n:02}Z-abc1{n:02}"));
    }
    let kept: BTreeSet<&str> = values[NOTICE_TOKENS]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let newest: BTreeSet<String> = (10..20)
        .map(|n| format!("20261202T0000{n:02}Z-abc1{n:02}"))
        .collect();
    assert_eq!(
        kept,
        newest.iter().map(String::as_str).collect(),
        "the ten newest runs' tokens"
    );
    let channel = Channel {
        region: "us-east-1".into(),
        parameter: channel_parameter("demo"),
        run: "20261202T000000Z-abc123".into(),
    };
    let section = spot_notices(&channel, &token).unwrap();
    assert!(
        section.contains(&format!("\"$notice\" '{token}')")),
        "{section}"
    );
}

#[test]
fn compose_is_installed_only_when_its_checksum_matches() {
    let p = packages();
    for (arch, sum) in COMPOSE_SHA256 {
        assert_eq!(sum.len(), 64);
        assert!(
            p.contains(&format!("{arch}) compose_sha256={sum} ;;")),
            "{p}"
        );
    }
    let check = p.find("sha256sum --check --strict").unwrap();
    let install = p.find("install -D -m 0755 /tmp/docker-compose").unwrap();
    assert!(check < install, "checked before it is installed");
    assert!(p.contains("retry dnf install"));
    assert!(p.contains("retry curl"));
}

#[test]
fn each_section_is_a_named_step() {
    let s = script(&[
        "# --- EFS fs-1 at /mnt/efs (TLS) ---\nmount /mnt/efs\n".into(),
        "echo untitled\n".into(),
        "# --- it's $(odd) ---\n".into(),
    ]);
    assert!(s.contains("# --- EFS fs-1 at /mnt/efs (TLS) ---\nstep 'EFS fs-1 at /mnt/efs (TLS)'\nmount /mnt/efs\n"), "{s}");
    assert!(s.contains("step 'it_s _(odd)'"), "{s}");
    assert!(s.contains("trap 'echo \"geusemaker boot FAILED in step: ${boot_step}"));
}

/// The reporting script, run with a stand-in `aws` that keeps what it is asked to write:
/// every step is reported in order with its seconds, the end says `done`, and a failing
/// command reports its step — each document a valid [`BootReport`] of the run.
#[test]
fn a_reporting_script_writes_each_step_to_its_channel() {
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let docs = dir.path().join("docs");
    let aws = bin.join("aws");
    std::fs::write(
        &aws,
        format!(
            "#!/bin/bash\nwhile [ $# -gt 0 ]; do [ \"$1\" = --value ] && printf '%s\\n' \"$2\" >> '{}'; shift; done\n",
            docs.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&aws, std::fs::Permissions::from_mode(0o755)).unwrap();
    let channel = Channel {
        region: "us-east-1".into(),
        parameter: channel_parameter("demo"),
        run: "20261202T000000Z-abc123".into(),
    };
    // A stand-in `docker`: pulls take a moment, `nope:1.0` cannot be pulled, an image's
    // size is 1.5 GB, and Ollama lists its one model at 2.0 GB.
    let docker = bin.join("docker");
    std::fs::write(
        &docker,
        r#"#!/bin/bash
case "$*" in
  "pull --quiet nope:1.0") exit 1 ;;
  pull*) sleep 0.2 ;;
  *"ollama pull slow:1") sleep 2 ;;
  "image inspect"*) echo 1500000000 ;;
  *"ollama list") printf 'NAME ID SIZE MODIFIED\nllama3.2:3b a80c 2.0 GB now\n' ;;
esac
"#,
    )
    .unwrap();
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    let state_dir = dir.path().join("report");
    let run_as = |channel: &Channel, sections: &[String]| {
        let script = script_reporting(sections, Some(channel)).unwrap();
        // The header's log redirection needs root and /var/log, the report's state /run:
        // the rest is what is tested.
        let script = script
            .replace(
                "exec > >(tee -a /var/log/geusemaker-boot.log | logger -t geusemaker -s 2>/dev/console) 2>&1\n",
                "",
            )
            .replace(REPORT_DIR, &state_dir.display().to_string())
            .replace("/var/log/geusemaker-models.log", "/dev/null")
            .replace("sleep 10", "sleep 0.1")
            .replace("sleep $((attempt * 10))", "sleep 0");
        let _ = std::fs::remove_file(&docs);
        let out = std::process::Command::new("bash")
            .arg("-c")
            .arg(&script)
            .env(
                "PATH",
                format!("{}:{}", bin.display(), std::env::var("PATH").unwrap()),
            )
            .output()
            .unwrap();
        let reports: Vec<BootReport> = std::fs::read_to_string(&docs)
            .unwrap()
            .lines()
            .map(|l| BootReport::parse(l).unwrap())
            .collect();
        (out.status.success(), reports)
    };
    let run = |sections: &[String]| run_as(&channel, sections);
    let (ok, reports) = run(&[
        "# --- packages ---\necho installing\n".into(),
        "# --- EFS fs-1 at /mnt/efs ---\necho mounting\n".into(),
    ]);
    assert!(ok);
    let last = reports.last().unwrap();
    assert!(last.finished() && last.run == channel.run, "{last:?}");
    let steps: Vec<&str> = last.done.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["packages", "EFS fs-1 at /mnt/efs"]);
    assert_eq!(last.step, "finished");
    assert!(reports
        .iter()
        .any(|r| r.step == "packages" && r.state == "running"));

    let (ok, reports) = run(&[
        "# --- packages ---\necho installing\n".into(),
        "# --- Docker images ---\nfalse\n".into(),
    ]);
    assert!(!ok, "a failed step still fails the boot");
    let last = reports.last().unwrap();
    assert!(last.failed(), "{last:?}");
    assert_eq!(last.error.as_ref().unwrap().step, "Docker images");
    assert_eq!(last.done.len(), 1);

    // `exit 1` (no ERR trap) and an unset variable report the failure too, once.
    for body in [
        "mountpoint -q /nowhere || { echo no >&2; exit 1; }",
        "echo \"$unset_var\"",
    ] {
        let (ok, reports) = run(&[format!("# --- EFS ---\n{body}\n")]);
        assert!(!ok);
        let failed: Vec<&BootReport> = reports.iter().filter(|r| r.failed()).collect();
        assert_eq!(failed.len(), 1, "{body}: {reports:?}");
        assert_eq!(failed[0].error.as_ref().unwrap().step, "EFS");
    }
    // A failure inside a command substitution or a subshell that the boot handles is not
    // the boot's failure.
    let (ok, reports) =
        run(&["# --- checks ---\nx=$(false; echo y)\necho \"$x\"\n( false ) || true\n".into()]);
    assert!(ok);
    assert!(reports.iter().all(|r| !r.failed()), "{reports:?}");
    assert!(reports.last().unwrap().finished());

    // The images come in parallel, each reported with its size; the models after them, in
    // the background, reported as they arrive (after the boot's `done`).
    let images = ["postgres:16.15".to_string(), "n8nio/n8n:2.41.3".into()];
    let (ok, _) = run(&[
        pull_images(&images).unwrap(),
        ollama_pull(&["llama3.2:3b".into()], &Layout::default()).unwrap(),
    ]);
    assert!(ok);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let last = loop {
        let last = std::fs::read_to_string(&docs)
            .unwrap()
            .lines()
            .map(|l| BootReport::parse(l).unwrap())
            .next_back()
            .unwrap();
        if last.pulls.len() == 3 && last.pulls[2].state == "done" {
            break last;
        }
        assert!(std::time::Instant::now() < deadline, "{last:?}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(last.finished(), "{last:?}");
    let pulls: Vec<(&str, &str, &str, u64)> = last
        .pulls
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str(), p.state.as_str(), p.bytes))
        .collect();
    assert_eq!(
        pulls,
        [
            ("image", "postgres:16.15", "done", 1_500_000_000),
            ("image", "n8nio/n8n:2.41.3", "done", 1_500_000_000),
            ("model", "llama3.2:3b", "done", 2_000_000_000),
        ]
    );
    let steps: Vec<&str> = last.done.iter().map(|s| s.step.as_str()).collect();
    assert_eq!(steps, ["pull the images", "Ollama models (background)"]);

    // One image that cannot be pulled fails the step, named, after the others finished.
    let (ok, reports) = run(&[pull_images(&["nope:1.0".into(), "postgres:16.15".into()]).unwrap()]);
    assert!(!ok);
    let last = reports.last().unwrap();
    assert!(last.failed(), "{last:?}");
    assert_eq!(last.error.as_ref().unwrap().step, "pull the images");
    let states: Vec<&str> = last.pulls.iter().map(|p| p.state.as_str()).collect();
    assert_eq!(states, ["failed", "done"]);

    // A later run (an update) silences the background reports of the boot before it: a
    // model still pulling from the boot never writes its run over the update's.
    let (ok, _) = run(&[ollama_pull(&["slow:1".into()], &Layout::default()).unwrap()]);
    assert!(ok);
    let update = Channel {
        run: "20261202T010000Z-def456".into(),
        ..channel.clone()
    };
    let (ok, _) = run_as(&update, &["# --- start the stack ---\necho up\n".into()]);
    assert!(ok);
    std::thread::sleep(std::time::Duration::from_secs(3));
    let after: Vec<BootReport> = std::fs::read_to_string(&docs)
        .unwrap()
        .lines()
        .map(|l| BootReport::parse(l).unwrap())
        .collect();
    assert!(after.iter().all(|r| r.run == update.run), "{after:?}");
    assert!(after.last().unwrap().finished());

    // A document over SSM's 4 KB drops its pulls, then its steps, rather than not arriving.
    let many: Vec<String> = (0..60)
        .map(|n| format!("registry.example.com/team/image-number-{n}:1.0"))
        .collect();
    let (ok, reports) = run(&[pull_images(&many).unwrap()]);
    assert!(ok);
    assert!(reports
        .iter()
        .all(|r| serde_json::to_string(r).unwrap().len() <= REPORT_LIMIT));
    let last = reports.last().unwrap();
    assert!(last.finished() && last.pulls.is_empty(), "{last:?}");
    assert_eq!(last.done.len(), 1);

    // What an instance writes is not trusted with the deployer's terminal.
    let evil = BootReport::parse(
        r#"{"run":"r","step":"x\u001b]0;owned\u0007","state":"running","at":"t","done":[{"step":"\u001b[2J","seconds":1}]}"#,
    )
    .unwrap();
    assert_eq!(evil.step, "x?]0;owned?");
    assert_eq!(evil.done[0].step, "?[2J");
}

#[test]
fn large_scripts_are_sent_gzipped_and_come_back_intact() {
    use std::io::Read as _;
    let small = "#!/bin/bash\necho hi\n";
    assert_eq!(user_data_payload(small).unwrap(), small.as_bytes());
    let big = format!(
        "#!/bin/bash\n{}",
        "echo 'a line of the boot script'\n".repeat(800)
    );
    assert!(big.len() > USER_DATA_LIMIT);
    let packed = user_data_payload(&big).unwrap();
    assert_eq!(
        &packed[..2],
        &[0x1f, 0x8b],
        "gzip magic: cloud-init unpacks it"
    );
    assert!(packed.len() <= USER_DATA_LIMIT);
    let mut back = String::new();
    flate2::read::GzDecoder::new(&packed[..])
        .read_to_string(&mut back)
        .unwrap();
    assert_eq!(back, big);
    assert_eq!(user_data_payload(&big).unwrap(), packed, "deterministic");
    // Random text does not compress: refused with the size it would have had.
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let noise: String = (0..40_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b'!' + (x % 90) as u8)
        })
        .collect();
    assert!(user_data_payload(&noise).unwrap_err() > USER_DATA_LIMIT);
}

#[test]
fn ebs_mount_finds_the_nvme_device_by_volume_serial() {
    let s = ebs_mount("vol-0abc123", "/mnt/data").unwrap();
    assert!(s.contains("nvme-Amazon_Elastic_Block_Store_vol0abc123"));
    assert!(
        s.contains("if ! blkid"),
        "never reformats a volume that has a file system"
    );
}
