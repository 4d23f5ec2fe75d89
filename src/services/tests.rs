use super::*;
use serde_json::json;

fn base() -> serde_json::Value {
    json!([
        {
            "name": "db", "image": "postgres:17.2",
            "ports": [{ "port": 5432, "expose": "internal" }],
            "secrets": { "POSTGRES_PASSWORD": "postgres/password" },
            "volumes": { "/var/lib/postgresql/data": "data:postgres" },
            "health": { "exec": "pg_isready -U app" },
        },
        {
            "name": "app", "image": "example/app:1.2.3",
            "ports": [{ "port": 8080, "expose": "public" }],
            "env": { "PORT": 8080, "DEBUG": false, "GREETING": "cost: $5" },
            "secrets": { "DB_PASSWORD": "postgres/password" },
            "volumes": { "/data": "efs:app" },
            "health": { "http": "/healthz" },
            "depends_on": ["db"], "user": "1000:1000", "memory": "2g",
        },
    ])
}

fn decode_json(v: serde_json::Value) -> Result<Vec<Service>, ServiceError> {
    decode(v.as_array().unwrap())
}

fn with(edit: impl FnOnce(&mut serde_json::Value)) -> Result<Vec<Service>, ServiceError> {
    let mut v = base();
    edit(&mut v);
    decode_json(v)
}

#[test]
fn a_valid_list_renders_ports_env_files_and_limits() {
    let svcs = decode_json(base()).unwrap();
    let layout = Layout::default();
    let text = compose_file(&svcs, &layout).unwrap();
    let y: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).unwrap();
    let names: Vec<&str> = y["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, ["db", "app"], "the recipe's order");
    assert_eq!(
        y["services"]["db"]["ports"][0].as_str(),
        Some("127.0.0.1:5432:5432")
    );
    assert_eq!(y["services"]["app"]["ports"][0].as_str(), Some("8080:8080"));
    assert_eq!(
        y["services"]["app"]["environment"]["PORT"].as_str(),
        Some("8080")
    );
    assert_eq!(
        y["services"]["app"]["environment"]["GREETING"].as_str(),
        Some("cost: $$5")
    );
    assert_eq!(
        y["services"]["app"]["env_file"][0].as_str(),
        Some("/etc/geusemaker/env/app.env")
    );
    assert_eq!(
        y["services"]["app"]["depends_on"]["db"]["condition"].as_str(),
        Some("service_healthy")
    );
    assert_eq!(
        y["services"]["db"]["mem_limit"].as_str(),
        Some(DEFAULT_MEMORY)
    );
    assert_eq!(y["services"]["app"]["mem_limit"].as_str(), Some("2g"));
    assert_eq!(
        y["services"]["app"]["logging"]["options"]["max-size"].as_str(),
        Some("10m")
    );
    assert_eq!(
        y["services"]["app"]["volumes"][0].as_str(),
        Some("/mnt/efs/app:/data")
    );
    assert!(y["services"]["app"]["deploy"].is_null());
    assert!(
        !text.contains("POSTGRES_PASSWORD:"),
        "secrets stay in env files"
    );
}

#[test]
fn unknown_keys_are_refused_with_a_suggestion() {
    let e = with(|v| v[1]["imgae"] = json!("x")).unwrap_err();
    assert_eq!(e.to_string(), "service `app`: unknown key `imgae`");
    assert_eq!(e.hint.as_deref(), Some("did you mean `image`?"));
    let e = with(|v| v[0]["health"]["exce"] = json!("x")).unwrap_err();
    assert!(e.to_string().contains("health"), "{e}");
    assert_eq!(e.hint.as_deref(), Some("did you mean `exec`?"));
    let e = with(|v| v[1]["ports"][0]["expos"] = json!("public")).unwrap_err();
    assert_eq!(e.hint.as_deref(), Some("did you mean `expose`?"));
}

#[test]
fn bad_lists_are_refused_with_the_service_named() {
    type Edit = Box<dyn FnOnce(&mut serde_json::Value)>;
    let cases: Vec<(Edit, &str)> = vec![
        (
            Box::new(|v| v[1]["image"] = json!("example/app:latest")),
            "pinned",
        ),
        (Box::new(|v| v[1]["image"] = json!("example/app")), "pinned"),
        (Box::new(|v| v[1]["name"] = json!("db")), "declared twice"),
        (
            Box::new(|v| v[1]["ports"][0]["port"] = json!(5432)),
            "host port 5432 is also published by `db`",
        ),
        (
            Box::new(|v| v[1]["depends_on"] = json!(["dbb"])),
            "depends_on names `dbb`",
        ),
        (Box::new(|v| v[0]["depends_on"] = json!(["app"])), "cycle"),
        (
            Box::new(|v| v[0]["volumes"] = json!({ "/var/lib/postgresql/data": "efs:pg" })),
            "NFS",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/data": "s3:bucket" })),
            "is not `efs:<dir>`",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/data": "efs:../etc" })),
            "is not `efs:<dir>`",
        ),
        (
            Box::new(|v| v[1]["ports"][0]["expose"] = json!("world")),
            "unknown variant",
        ),
        (
            Box::new(|v| v[1]["env"]["lower"] = json!("x")),
            "not an environment variable name",
        ),
        (
            Box::new(|v| v[1]["secrets"]["PORT"] = json!("a/b")),
            "both in `env` and in `secrets`",
        ),
        (
            Box::new(|v| v[1]["health"] = json!({ "http": "/x", "tcp": true })),
            "exactly one",
        ),
        (
            Box::new(|v| v[1]["health"] = json!({ "http": "/x", "port": 9 })),
            "not one of the service's ports",
        ),
        (
            Box::new(|v| v[0]["health"] = json!({ "exec": "echo 'x'" })),
            "quotes",
        ),
        (Box::new(|v| v[1]["memory"] = json!("lots")), "not a size"),
        (Box::new(|v| v[1]["user"] = json!("root")), "not `uid`"),
        (Box::new(|v| v[1]["name"] = json!("App")), "lowercase"),
        (Box::new(|v| v[1]["ports"][0]["host"] = json!(22)), "SSH"),
        (
            Box::new(|v| v[1]["ports"][0]["host"] = json!(20100)),
            "TLS tunnels",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/data": "data:postgres" })),
            "overlaps",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/a": "efs:x", "/b": "efs:x/y" })),
            "overlaps",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/dumps": "efs:backups" })),
            "other services' backups",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/dumps": "efs:backups/db" })),
            "other services' backups",
        ),
        (
            Box::new(|v| v[1]["volumes"] = json!({ "/var//data": "efs:app" })),
            "plain absolute path",
        ),
        (
            Box::new(|v| v[1]["env"]["X"] = json!("a\nGEUSEMAKER_EOF\nb")),
            "reserved",
        ),
        (Box::new(|v| v[1]["memory"] = json!("1k")), "minimum"),
    ];
    for (edit, want) in cases {
        let e = with(edit).unwrap_err();
        assert!(e.to_string().contains(want), "{e} (wanted {want})");
    }
    let e = decode_json(json!([])).unwrap_err();
    assert!(e.to_string().contains("empty"));
}

#[test]
fn qdrant_storage_on_efs_is_refused_with_the_reason() {
    let e = decode_json(json!([{
        "name": "qdrant", "image": "qdrant/qdrant:v1.16.0",
        "volumes": { "/qdrant/storage": "efs:qdrant" },
    }]))
    .unwrap_err();
    assert!(e.to_string().contains("Qdrant does not support NFS"), "{e}");
    assert_eq!(
        e.hint.as_deref(),
        Some("put it on the data volume: `data:qdrant`")
    );
    // Snapshots on EFS are fine.
    decode_json(json!([{
        "name": "qdrant", "image": "qdrant/qdrant:v1.16.0",
        "volumes": { "/qdrant/storage": "data:qdrant", "/qdrant/snapshots": "efs:backups/qdrant" },
    }]))
    .unwrap();
}

#[test]
fn repositories_are_found_behind_registries_and_tags() {
    assert_eq!(repository("postgres:17.2"), "postgres");
    assert_eq!(repository("docker.io/library/postgres:17.2"), "postgres");
    assert_eq!(repository("qdrant/qdrant:v1.16.0"), "qdrant/qdrant");
    assert_eq!(
        repository("localhost:5000/qdrant/qdrant:v1"),
        "qdrant/qdrant"
    );
    assert_eq!(repository("ghcr.io/x/y@sha256:abc"), "x/y");
}

#[test]
fn gpu_and_healthchecks_render() {
    let svcs = decode_json(json!([
        { "name": "ollama", "image": "ollama/ollama:0.13.0", "gpu": true,
          "ports": [{ "port": 11434, "expose": "internal" }],
          "health": { "http": "/api/version", "container": "ollama list" } },
        { "name": "qdrant", "image": "qdrant/qdrant:v1.16.0",
          "ports": [{ "port": 6333, "expose": "internal" }, { "port": 6335, "expose": "none" }],
          "health": { "tcp": true } },
    ]))
    .unwrap();
    let y: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(&compose_file(&svcs, &Layout::default()).unwrap()).unwrap();
    let o = &y["services"]["ollama"];
    assert_eq!(
        o["deploy"]["resources"]["reservations"]["devices"][0]["driver"].as_str(),
        Some("nvidia")
    );
    assert_eq!(o["healthcheck"]["test"][1].as_str(), Some("ollama list"));
    let q = &y["services"]["qdrant"];
    assert_eq!(
        q["ports"].as_sequence().unwrap().len(),
        1,
        "expose none publishes nothing"
    );
    assert_eq!(
        q["healthcheck"]["test"][1].as_str(),
        Some("bash -c ':> /dev/tcp/127.0.0.1/6333' || exit 1")
    );
}

#[test]
fn docker_waits_for_the_mounts_its_services_use() {
    let layout = Layout::default();
    let both = start(&decode_json(base()).unwrap(), &layout).unwrap();
    assert!(
        both.contains("RequiresMountsFor=%s\\n' '/mnt/efs /mnt/data' > /etc/systemd/system/docker.service.d/geusemaker-mounts.conf"),
        "{both}"
    );
    let drop_in = both.find("geusemaker-mounts.conf").unwrap();
    assert!(
        drop_in < both.find(" up -d").unwrap(),
        "the drop-in is in place before the stack starts"
    );
    assert!(both.contains("retry docker compose"), "pulls are retried");
    // Only the mounts in use: a stack without EFS volumes does not wait for EFS.
    let data_only = with(|v| {
        v[1]["volumes"] = json!({});
    })
    .unwrap();
    let s = start(&data_only, &layout).unwrap();
    assert!(s.contains("RequiresMountsFor=%s\\n' '/mnt/data'"), "{s}");
    let none = with(|v| {
        v[0]["volumes"] = json!({});
        v[1]["volumes"] = json!({});
    })
    .unwrap();
    assert!(!start(&none, &layout).unwrap().contains("RequiresMountsFor"));
}

#[test]
fn the_key_lists_match_the_structs() {
    // Every field of a fully populated service is an accepted key, and no key is extra.
    let full = Service {
        name: "a".into(),
        image: "a:1".into(),
        ports: vec![Port {
            port: 1,
            host: Some(2),
            expose: Exposure::Public,
        }],
        env: BTreeMap::new(),
        secrets: BTreeMap::new(),
        volumes: BTreeMap::new(),
        health: Some(Health {
            http: Some("/".into()),
            tcp: true,
            exec: Some("x".into()),
            port: Some(1),
            body: Some("x".into()),
            timeout_ms: 1,
            container: Some("x".into()),
            start_period: Some("1s".into()),
        }),
        depends_on: vec![],
        gpu: true,
        memory: Some("1g".into()),
        shm_size: Some("1g".into()),
        user: Some("1".into()),
        command: Some(vec!["x".into()]),
        backup: Some(Backup {
            exec: Some("x".into()),
            suffix: ".gz".into(),
            post: Some("/".into()),
        }),
    };
    let v = serde_json::to_value(&full).unwrap();
    let keys = |v: &serde_json::Value| -> Vec<String> {
        let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    let sorted = |k: &[&str]| -> Vec<String> {
        let mut k: Vec<String> = k.iter().map(|s| s.to_string()).collect();
        k.sort();
        k
    };
    assert_eq!(keys(&v), sorted(SERVICE_KEYS));
    assert_eq!(keys(&v["ports"][0]), sorted(PORT_KEYS));
    assert_eq!(keys(&v["health"]), sorted(HEALTH_KEYS));
    assert_eq!(keys(&v["backup"]), sorted(BACKUP_KEYS));
}
