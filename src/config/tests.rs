use super::*;

fn parse(text: &str) -> Result<Settings, ConfigError> {
    Settings::parse(Path::new("config.toml"), text)
}

#[test]
fn defaults_apply_without_a_file() {
    let s = parse("").unwrap();
    let h = s.health();
    assert_eq!(h.interval, Duration::from_secs(30));
    assert_eq!((h.failures, h.warn_ms, h.critical_ms), (3, 2000, 5000));
    assert_eq!(h.critical_services, ["n8n", "postgres"]);
    assert!(s.auto_rollback());
    assert_eq!(s.tier(), "dev");
    assert_eq!(s.region(), None);
    assert!(s.param_defaults().is_empty());
}

#[test]
fn file_values_override_defaults() {
    let s = parse(
        "# mine\n[aws]\nregion = \"eu-west-1\"\n[health]\ninterval = \"1m30s\"\nfailures = 5\ncritical_services = [\"n8n\"]\n[deploy]\nspot = false\ninstance_type = \"t3.large\"\n[monitor]\nauto_rollback = false\n",
    )
    .unwrap();
    assert_eq!(s.region().as_deref(), Some("eu-west-1"));
    assert_eq!(s.health().interval, Duration::from_secs(90));
    assert_eq!(s.health().failures, 5);
    assert_eq!(s.health().critical_services, ["n8n"]);
    assert!(!s.auto_rollback());
    assert_eq!(
        s.param_defaults().into_iter().collect::<Vec<_>>(),
        [
            ("instance_type".to_string(), "t3.large".to_string()),
            ("spot".to_string(), "false".to_string())
        ]
    );
    let (v, set) = s.get("health.failures").unwrap();
    assert_eq!((v, set), (Some(Value::Int(5)), true));
    let (v, set) = s.get("health.warn_ms").unwrap();
    assert_eq!((v, set), (Some(Value::Int(2000)), false));
}

#[test]
fn errors_name_the_line_and_column() {
    let e = parse("[health]\nfailures = \"three\"\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "config.toml:2:12: health.failures: expected an integer from 1 to 100"
    );
    let e = parse("[health]\ninterval = 30\nfailurs = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with(
            "config.toml:3:1: unknown setting `health.failurs` (did you mean `health.failures`?)"
        ),
        "{e}"
    );
    let e = parse("[helth]\n").unwrap_err().to_string();
    assert!(
        e.starts_with("config.toml:1:2: unknown section [helth] (did you mean [health]?)"),
        "{e}"
    );
    let e = parse("[aws]\nregion = \n").unwrap_err().to_string();
    assert!(e.starts_with("config.toml:2:"), "{e}");
    assert!(e.contains("not valid TOML"), "{e}");
    let e = parse("region = \"x\"\n").unwrap_err().to_string();
    assert!(e.contains("`region` must be a section"), "{e}");
    let e = parse("[health]\ninterval = \"soon\"\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("config.toml:2:12: health.interval: `soon`"),
        "{e}"
    );
}

#[test]
fn durations_parse_and_print() {
    for (text, secs) in [
        ("30s", 30),
        ("5m", 300),
        ("1h30m", 5400),
        ("90", 90),
        ("2h", 7200),
    ] {
        assert_eq!(
            parse_duration(text).unwrap(),
            Duration::from_secs(secs),
            "{text}"
        );
    }
    for bad in ["", "0", "0s", "5x", "m", "10m5"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
    assert_eq!(fmt_duration(Duration::from_secs(90)), "1m30s");
    assert_eq!(fmt_duration(Duration::from_secs(3600)), "1h");
    assert_eq!(fmt_duration(Duration::from_secs(3660)), "1h1m");
}

#[test]
fn set_and_unset_keep_comments() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    std::fs::write(
        Settings::path_in(&home),
        "# my settings\n[aws]\nregion = \"us-west-2\" # home\n",
    )
    .unwrap();
    let s = write(&home, "health.failures", Some("4")).unwrap();
    assert_eq!(s.health().failures, 4);
    let s = write(&home, "health.critical_services", Some("n8n, ollama")).unwrap();
    assert_eq!(s.health().critical_services, ["n8n", "ollama"]);
    let text = std::fs::read_to_string(Settings::path_in(&home)).unwrap();
    assert!(
        text.starts_with("# my settings\n[aws]\nregion = \"us-west-2\" # home\n"),
        "{text}"
    );
    let s = write(&home, "aws.region", None).unwrap();
    assert_eq!(s.region(), None);
    assert!(write(&home, "health.failures", Some("zero")).is_err());
    let e = write(&home, "health.failure", Some("2"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `health.failures`"), "{e}");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(Settings::path_in(&home))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn the_state_location_comes_from_the_flag_then_the_project_then_config_toml() {
    let user = parse("[state]\nurl = \"s3://mine/x\"\nlease = \"5m\"\n").unwrap();
    let project = Settings::parse_project(
        Path::new("geusemaker.toml"),
        "[sources.team]\npath = \"../r\"\n\n[state]\nurl = \"s3://team/y\"\nregion = \"eu-west-1\"\n",
    )
    .unwrap();
    let none = Settings::default().state(None, None);
    assert_eq!(none.url, "local");
    assert_eq!(none.lease, Duration::from_secs(120));
    let mine = user.state(None, None);
    assert_eq!(
        (mine.url.as_str(), mine.lease),
        ("s3://mine/x", Duration::from_secs(300))
    );
    let team = user.state(Some(&project), None);
    assert_eq!(team.url, "s3://team/y");
    assert_eq!(team.from, "geusemaker.toml");
    assert_eq!(team.region.as_deref(), Some("eu-west-1"));
    // A personal key is never used on the team's bucket.
    let keyed = parse("[state]\nurl = \"s3://mine/x\"\nkms_key = \"alias/mine\"\n").unwrap();
    assert_eq!(
        keyed.state(None, None).kms_key.as_deref(),
        Some("alias/mine")
    );
    assert_eq!(keyed.state(Some(&project), None).kms_key, None);
    assert_eq!(keyed.state(None, Some("s3://other/z")).kms_key, None);
    assert_eq!(
        keyed.state(None, Some("s3://mine/x")).kms_key.as_deref(),
        Some("alias/mine")
    );
    assert_eq!(
        team.lease,
        Duration::from_secs(300),
        "keys the project leaves out come from config.toml"
    );
    let flag = user.state(Some(&project), Some("local"));
    assert_eq!(flag.url, "local");
    // The project's other sections are the recipe sources', not settings; its [state] is
    // checked like config.toml.
    let e = Settings::parse_project(Path::new("geusemaker.toml"), "[state]\nurl = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("geusemaker.toml:2:7: state.url: expected a string"),
        "{e}"
    );
    let e = Settings::parse_project(Path::new("geusemaker.toml"), "[state]\nlaese = \"1m\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("did you mean `state.lease`?"), "{e}");
}
