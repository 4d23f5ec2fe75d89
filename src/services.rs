//! The services that run on the instance, as data: a recipe declares them as Rhai maps
//! (`stdlib/services.rhai` has the defaults), [`decode`] turns them into typed [`Service`]s
//! and validates them, and [`compose_file`] renders any list as a Docker Compose file through
//! typed structs and serde — never a text template.
//!
//! Nothing here knows n8n or Ollama: which services run, their images, ports, environment and
//! health checks are the recipe's. The only service-specific knowledge is a safety rule:
//! databases whose storage must not be on NFS ([`NOT_ON_NFS`]).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::{self, Write as _};

use serde::de::{self, Deserializer};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use crate::boot::{self, Layout};
use crate::suggest::did_you_mean;

/// The memory limit of a service that sets none.
pub const DEFAULT_MEMORY: &str = "1g";

/// Docker's json-file log rotation on every service: at most `MAX_FILE` files of `MAX_SIZE`.
const LOG_MAX_SIZE: &str = "10m";
const LOG_MAX_FILE: &str = "3";

/// Images whose data directory must not live on NFS (EFS): `(repository, container path, why)`.
/// A volume at or below the path with an `efs:` source is refused.
pub const NOT_ON_NFS: &[(&str, &str, &str)] = &[
    (
        "postgres",
        "/var/lib/postgresql",
        "PostgreSQL's data directory on NFS risks corruption (locking and fsync over the network)",
    ),
    (
        "pgvector/pgvector",
        "/var/lib/postgresql",
        "PostgreSQL's data directory on NFS risks corruption (locking and fsync over the network)",
    ),
    (
        "qdrant/qdrant",
        "/qdrant/storage",
        "Qdrant does not support NFS for its storage",
    ),
];

/// How a port is reachable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Exposure {
    /// Published on the instance's interfaces: reachable from the tier's allowed clients or
    /// its load balancer (the security group decides who).
    Public,
    /// Published on the instance's loopback only (127.0.0.1): the instance and the compose
    /// network, never the outside.
    Internal,
    /// Not published: the compose network only.
    None,
}

/// One container port and how it is exposed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// The port inside the container.
    pub port: u16,
    /// The port on the instance (default: the same as `port`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<u16>,
    pub expose: Exposure,
}

impl Port {
    pub fn host_port(&self) -> u16 {
        self.host.unwrap_or(self.port)
    }
}

/// The service's health check: exactly one of `http` (a path), `tcp` or `exec` (a command run
/// in the container). It is the compose healthcheck and what geusemaker checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tcp: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    /// The container port checked by `http`/`tcp` (default: the service's first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// An HTTP check passes only when the body contains this.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u32,
    /// The compose healthcheck's command, for images that cannot run the default one (no
    /// curl or wget inside). Default: derived from `http`/`tcp`/`exec`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// Grace time after start before failures count (compose `start_period`), e.g. "30s".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_period: Option<String>,
}

fn default_timeout_ms() -> u32 {
    5_000
}

/// What the nightly backup takes of a service (to `<efs>/backups/<service>/`): the output of
/// `exec` run in the container (gzipped, named `<service>-<time><suffix>`), or an HTTP `post`
/// to the service that writes its own snapshot (into a volume on EFS).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Backup {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<String>,
    #[serde(default = "default_suffix")]
    pub suffix: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post: Option<String>,
}

fn default_suffix() -> String {
    ".gz".into()
}

/// One service of the stack, as a recipe declares it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub name: String,
    /// A pinned image (`name:tag` or `name@sha256:…`), never `:latest`.
    pub image: String,
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Non-secret environment.
    #[serde(default, deserialize_with = "scalar_map")]
    pub env: BTreeMap<String, String>,
    /// Environment variable → stack secret (an SSM SecureString generated once, e.g.
    /// `postgres/password`). Only this service's env file holds them.
    #[serde(default)]
    pub secrets: BTreeMap<String, String>,
    /// Container path → `efs:<dir>` (EFS, shared, elastic) or `data:<dir>` (the EBS data volume).
    #[serde(default)]
    pub volumes: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health: Option<Health>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Reserve the instance's NVIDIA GPUs for this service.
    #[serde(default)]
    pub gpu: bool,
    /// Memory limit (compose `mem_limit`, e.g. "2g"); [`DEFAULT_MEMORY`] when not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shm_size: Option<String>,
    /// `uid[:gid]` the container runs as; its volume directories are owned by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The container's command, replacing the image's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<Backup>,
}

/// What differs between two lists of services, one line per difference, in the order of
/// `new` (then the removed ones): `+ ollama`, `- crawl4ai`, `n8n: image n8nio/n8n:2.41.3 →
/// n8nio/n8n:2.42.0`, `n8n: env +N8N_LOG_LEVEL ~TZ`, `qdrant: memory, ports`. Secret values
/// never appear (only which variables changed).
pub fn diff(old: &[Service], new: &[Service]) -> Vec<String> {
    let mut out = Vec::new();
    for n in new {
        let Some(o) = old.iter().find(|o| o.name == n.name) else {
            out.push(format!("+ {} ({})", n.name, n.image));
            continue;
        };
        if o.image != n.image {
            out.push(format!("{}: image {} → {}", n.name, o.image, n.image));
        }
        for (what, a, b) in [("env", &o.env, &n.env), ("secrets", &o.secrets, &n.secrets)] {
            let mut marks = Vec::new();
            for k in b.keys() {
                match a.get(k) {
                    None => marks.push(format!("+{k}")),
                    Some(v) if Some(v) != b.get(k) => marks.push(format!("~{k}")),
                    Some(_) => {}
                }
            }
            marks.extend(
                a.keys()
                    .filter(|k| !b.contains_key(*k))
                    .map(|k| format!("-{k}")),
            );
            if !marks.is_empty() {
                out.push(format!("{}: {what} {}", n.name, marks.join(" ")));
            }
        }
        let rest = |s: &Service| {
            let mut v = serde_json::to_value(s).unwrap_or_default();
            if let Some(m) = v.as_object_mut() {
                for k in ["name", "image", "env", "secrets"] {
                    m.remove(k);
                }
            }
            v
        };
        let (a, b) = (rest(o), rest(n));
        let mut fields: Vec<&str> = Vec::new();
        if let (Some(a), Some(b)) = (a.as_object(), b.as_object()) {
            for k in a.keys().chain(b.keys()) {
                if a.get(k) != b.get(k) && !fields.contains(&k.as_str()) {
                    fields.push(k);
                }
            }
        }
        if !fields.is_empty() {
            out.push(format!("{}: {}", n.name, fields.join(", ")));
        }
    }
    for o in old.iter().filter(|o| !new.iter().any(|n| n.name == o.name)) {
        out.push(format!("- {}", o.name));
    }
    out
}

/// The keys each map accepts (checked before decoding, for "did you mean").
const SERVICE_KEYS: &[&str] = &[
    "name",
    "image",
    "ports",
    "env",
    "secrets",
    "volumes",
    "health",
    "depends_on",
    "gpu",
    "memory",
    "shm_size",
    "user",
    "command",
    "backup",
];
const PORT_KEYS: &[&str] = &["port", "host", "expose"];
const HEALTH_KEYS: &[&str] = &[
    "http",
    "tcp",
    "exec",
    "port",
    "body",
    "timeout_ms",
    "container",
    "start_period",
];
const BACKUP_KEYS: &[&str] = &["exec", "suffix", "post"];

/// Where a volume lives on the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    Efs,
    Data,
}

/// A volume source, parsed: `efs:n8n` → (Efs, "n8n").
pub fn parse_source(source: &str) -> Option<(Store, &str)> {
    let (store, dir) = source.split_once(':')?;
    let store = match store {
        "efs" => Store::Efs,
        "data" => Store::Data,
        _ => return None,
    };
    let ok = !dir.is_empty()
        && !dir.starts_with('/')
        && !dir.ends_with('/')
        && dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.".contains(c))
        && !dir
            .split('/')
            .any(|p| p.is_empty() || p == "." || p == "..");
    ok.then_some((store, dir))
}

/// What is wrong with a service list: where (`service `n8n``, `service #3`, `service `n8n`,
/// health`), what, and how to fix it when there is something to say.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{at}: {message}")]
pub struct ServiceError {
    pub at: String,
    pub message: String,
    pub hint: Option<String>,
}

impl ServiceError {
    fn new(at: impl Into<String>, message: impl Into<String>) -> Self {
        ServiceError {
            at: at.into(),
            message: message.into(),
            hint: None,
        }
    }

    fn hint(mut self, h: impl Into<String>) -> Self {
        self.hint = Some(h.into());
        self
    }
}

/// Decode and validate a list of service maps (as `serde_json` values, which is how Rhai maps
/// arrive through `rhai::serde`). Unknown keys are refused with "did you mean".
pub fn decode(items: &[serde_json::Value]) -> Result<Vec<Service>, ServiceError> {
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = item
            .get("name")
            .and_then(|n| n.as_str())
            .map(|n| format!("service `{n}`"))
            .unwrap_or_else(|| format!("service #{}", i + 1));
        let at = at.as_str();
        let map = item
            .as_object()
            .ok_or_else(|| ServiceError::new(at, "is not a map"))?;
        strict(at, map, SERVICE_KEYS)?;
        if let Some(ports) = map.get("ports").and_then(|p| p.as_array()) {
            for p in ports.iter().filter_map(|p| p.as_object()) {
                strict(&format!("{at}, ports"), p, PORT_KEYS)?;
            }
        }
        if let Some(h) = map.get("health").and_then(|h| h.as_object()) {
            strict(&format!("{at}, health"), h, HEALTH_KEYS)?;
        }
        if let Some(b) = map.get("backup").and_then(|b| b.as_object()) {
            strict(&format!("{at}, backup"), b, BACKUP_KEYS)?;
        }
        let svc: Service = serde_json::from_value(item.clone())
            .map_err(|e| ServiceError::new(at, e.to_string()))?;
        out.push(svc);
    }
    validate(&out)?;
    for s in &mut out {
        normalize(s);
    }
    Ok(out)
}

/// Fill in what defaults to something: published ports' `host`, the health check's `port`.
fn normalize(s: &mut Service) {
    for p in &mut s.ports {
        if p.expose != Exposure::None && p.host.is_none() {
            p.host = Some(p.port);
        }
    }
    let first = s.ports.first().map(|p| p.port);
    if let Some(h) = &mut s.health {
        if (h.http.is_some() || h.tcp) && h.port.is_none() {
            h.port = first;
        }
    }
}

fn strict(
    at: &str,
    map: &serde_json::Map<String, serde_json::Value>,
    keys: &[&str],
) -> Result<(), ServiceError> {
    for k in map.keys() {
        if !keys.contains(&k.as_str()) {
            let e = ServiceError::new(at, format!("unknown key `{k}`"));
            return Err(match did_you_mean(k, keys.iter().copied()) {
                Some(s) => e.hint(format!("did you mean `{s}`?")),
                None => e.hint(format!("a service map takes: {}", keys.join(", "))),
            });
        }
    }
    Ok(())
}

/// Accept strings, numbers and booleans as environment values (`N8N_PORT: 5678`).
fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        F(f64),
        B(bool),
    }
    let raw = BTreeMap::<String, Scalar>::deserialize(d).map_err(|_| {
        de::Error::custom("`env` must map variable names to strings, numbers or booleans")
    })?;
    Ok(raw
        .into_iter()
        .map(|(k, v)| {
            let v = match v {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            };
            (k, v)
        })
        .collect())
}

fn valid_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && n.len() <= 32
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

fn valid_env_name(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_')
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

fn valid_secret(n: &str) -> bool {
    let mut chars = n.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "/_.-".contains(c))
        && !n.ends_with('/')
        && !n.contains("//")
}

/// A size like `512m`, `2g` (compose's byte units).
fn valid_size(s: &str) -> bool {
    let digits = s.trim_end_matches(['b', 'k', 'm', 'g']);
    !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit())
        && s.len() - digits.len() <= 1
        && digits != "0"
}

/// The bytes of a valid size.
fn size_bytes(s: &str) -> u64 {
    let digits = s.trim_end_matches(['b', 'k', 'm', 'g']);
    let n: u64 = digits.parse().unwrap_or(0);
    n.saturating_mul(match &s[digits.len()..] {
        "k" => 1 << 10,
        "m" => 1 << 20,
        "g" => 1 << 30,
        _ => 1,
    })
}

/// A duration like `30s`, `2m`, `1m30s`.
fn valid_duration(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| c.is_ascii_digit() || "hms".contains(c))
        && s.chars().next().is_some_and(|c| c.is_ascii_digit())
        && s.chars().last().is_some_and(|c| "hms".contains(c))
}

fn valid_user(u: &str) -> bool {
    let part = |p: &str| !p.is_empty() && p.len() <= 10 && p.chars().all(|c| c.is_ascii_digit());
    match u.split_once(':') {
        Some((a, b)) => part(a) && part(b),
        None => part(u),
    }
}

/// Text run by a shell inside single quotes: no quote, backslash or newline.
fn shell_safe(s: &str) -> bool {
    !s.is_empty() && !s.contains(['\'', '\\', '\n', '\r', '\0'])
}

/// An HTTP path: `/` then URL-safe characters.
fn valid_path(p: &str) -> bool {
    p.starts_with('/')
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-_.~?=&%".contains(c))
}

/// The repository part of an image reference: `docker.io/library/postgres:17.2` → `postgres`.
pub fn repository(image: &str) -> &str {
    let no_digest = image.split('@').next().unwrap_or(image);
    // A tag is after the last ':' that comes after the last '/'.
    let slash = no_digest.rfind('/').map_or(0, |i| i + 1);
    let no_tag = match no_digest[slash..].rfind(':') {
        Some(i) => &no_digest[..slash + i],
        None => no_digest,
    };
    let no_registry = match no_tag.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            rest
        }
        _ => no_tag,
    };
    no_registry.strip_prefix("library/").unwrap_or(no_registry)
}

/// Check a decoded list: names, images, ports, secrets, volumes, health, dependencies.
pub fn validate(services: &[Service]) -> Result<(), ServiceError> {
    if services.is_empty() {
        return Err(ServiceError::new(
            "services",
            "the list is empty: a stack runs at least one service",
        ));
    }
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut host_ports: HashMap<u16, &str> = HashMap::new();
    let mut sources: Vec<(String, &str)> = Vec::new();
    for s in services {
        let at = format!("service `{}`", s.name);
        let at = at.as_str();
        if !valid_name(&s.name) {
            return Err(ServiceError::new(
                at,
                "a name is 1-32 lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(ServiceError::new(at, "declared twice")
                .hint("service names are unique: remove or rename one of them"));
        }
        let text = serde_json::to_string(s).unwrap_or_default();
        if text.contains(boot::HEREDOC_DELIMITER) {
            return Err(ServiceError::new(
                at,
                format!(
                    "`{}` is reserved (it ends the files of the boot script)",
                    boot::HEREDOC_DELIMITER
                ),
            ));
        }
        boot::check_image(&s.image).map_err(|e| {
            ServiceError::new(at, e).hint("pin a release tag, e.g. `n8nio/n8n:2.1.0`, or a digest")
        })?;
        check_ports(at, s, &mut host_ports)?;
        check_env(at, s)?;
        check_volumes(at, s, &mut sources)?;
        if let Some(h) = &s.health {
            check_health(at, s, h)?;
        }
        check_depends_on(at, s, &names)?;
        check_limits(at, s)?;
        check_backup(at, s)?;
    }
    check_cycles(services)
}

/// Ports: real, unique on the instance, not one the instance itself uses.
fn check_ports<'a>(
    at: &str,
    s: &'a Service,
    host_ports: &mut HashMap<u16, &'a str>,
) -> Result<(), ServiceError> {
    for p in &s.ports {
        if p.port == 0 || p.host == Some(0) {
            return Err(ServiceError::new(at, "port 0 is not a port"));
        }
        if p.expose == Exposure::None {
            if p.host.is_some() {
                return Err(ServiceError::new(
                    at,
                    format!(
                        "port {} has `host` but `expose: \"none\"` publishes nothing",
                        p.port
                    ),
                ));
            }
            continue;
        }
        if let Some(why) = reserved_port(p.host_port()) {
            return Err(ServiceError::new(
                at,
                format!(
                    "host port {} is taken on the instance: {why}",
                    p.host_port()
                ),
            )
            .hint("publish it on another `host` port"));
        }
        if let Some(other) = host_ports.insert(p.host_port(), &s.name) {
            return Err(ServiceError::new(
                at,
                format!("host port {} is also published by `{other}`", p.host_port()),
            )
            .hint("give one of them another `host` port"));
        }
    }
    Ok(())
}

/// Environment and secrets: variable names, no variable both plain and secret.
fn check_env(at: &str, s: &Service) -> Result<(), ServiceError> {
    for (k, v) in &s.env {
        if !valid_env_name(k) {
            return Err(ServiceError::new(
                at,
                format!("`{k}` is not an environment variable name (UPPER_CASE)"),
            ));
        }
        if v.contains('\0') {
            return Err(ServiceError::new(
                at,
                format!("env `{k}` contains a NUL byte"),
            ));
        }
    }
    for (k, secret) in &s.secrets {
        if !valid_env_name(k) {
            return Err(ServiceError::new(
                at,
                format!("`{k}` is not an environment variable name (UPPER_CASE)"),
            ));
        }
        if s.env.contains_key(k) {
            return Err(ServiceError::new(
                at,
                format!("`{k}` is both in `env` and in `secrets`"),
            ));
        }
        if !valid_secret(secret) {
            return Err(ServiceError::new(
                at,
                format!(
                    "secret `{secret}` (for {k}) is not a secret name like `postgres/password`"
                ),
            ));
        }
    }
    Ok(())
}

/// Volumes: plain container paths, `efs:`/`data:` sources of their own (no overlap with
/// another volume, no other service's backups), databases not on NFS.
fn check_volumes<'a>(
    at: &str,
    s: &'a Service,
    sources: &mut Vec<(String, &'a str)>,
) -> Result<(), ServiceError> {
    for (path, source) in &s.volumes {
        boot::check_path(path).map_err(|e| ServiceError::new(at, format!("volume {e}")))?;
        let Some((store, _)) = parse_source(source) else {
            return Err(ServiceError::new(
                at,
                format!("volume {path}: `{source}` is not `efs:<dir>` or `data:<dir>`"),
            ));
        };
        let (_, dir) = parse_source(source).expect("parsed above");
        if store == Store::Efs
            && (dir == "backups"
                || (dir.starts_with("backups/") && dir != format!("backups/{}", s.name)))
        {
            return Err(ServiceError::new(
                at,
                format!("volume {path}: `{source}` holds other services' backups"),
            )
            .hint(format!(
                "a service may mount only its own: `efs:backups/{}`",
                s.name
            )));
        }
        if let Some((other, other_source)) = sources.iter().find(|(_, o)| overlapping(o, source)) {
            return Err(ServiceError::new(
                at,
                format!("volume {path}: `{source}` overlaps `{other_source}` (of {other})"),
            )
            .hint("give every volume a directory of its own"));
        }
        sources.push((format!("`{}` {path}", s.name), source.as_str()));
        if store == Store::Efs {
            let repo = repository(&s.image);
            for (image, data_path, why) in NOT_ON_NFS {
                if repo == *image
                    && (path == data_path
                        || path.starts_with(&format!("{data_path}/"))
                        || data_path.starts_with(&format!("{path}/")))
                {
                    return Err(ServiceError::new(
                        at,
                        format!("volume {path} on EFS (`{source}`): {why}"),
                    )
                    .hint(format!("put it on the data volume: `data:{}`", s.name)));
                }
            }
        }
    }
    Ok(())
}

fn check_depends_on(at: &str, s: &Service, names: &[&str]) -> Result<(), ServiceError> {
    for d in &s.depends_on {
        if d == &s.name {
            return Err(ServiceError::new(at, "depends on itself"));
        }
        if !names.contains(&d.as_str()) {
            let e = ServiceError::new(
                at,
                format!("depends_on names `{d}`, which is not a service of the stack"),
            );
            return Err(match did_you_mean(d, names.iter().copied()) {
                Some(m) => e.hint(format!("did you mean `{m}`?")),
                None => e.hint(format!("the stack runs: {}", names.join(", "))),
            });
        }
    }
    Ok(())
}

/// Memory, shared memory, user, command.
fn check_limits(at: &str, s: &Service) -> Result<(), ServiceError> {
    for (what, v) in [("memory", &s.memory), ("shm_size", &s.shm_size)] {
        if let Some(v) = v {
            if !valid_size(v) {
                return Err(ServiceError::new(
                    at,
                    format!("{what} `{v}` is not a size like 512m or 2g"),
                ));
            }
        }
    }
    if let Some(m) = &s.memory {
        if size_bytes(m) < 6 * 1024 * 1024 {
            return Err(ServiceError::new(
                at,
                format!("memory `{m}` is below Docker's minimum of 6m"),
            ));
        }
    }
    if let Some(u) = &s.user {
        if !valid_user(u) {
            return Err(ServiceError::new(
                at,
                format!("user `{u}` is not `uid` or `uid:gid`"),
            ));
        }
    }
    if let Some(c) = &s.command {
        if c.is_empty() || c.iter().any(|a| a.contains('\0')) {
            return Err(ServiceError::new(
                at,
                "command must be a non-empty list of arguments",
            ));
        }
    }
    Ok(())
}

fn check_backup(at: &str, s: &Service) -> Result<(), ServiceError> {
    if let Some(b) = &s.backup {
        match (&b.exec, &b.post) {
            (Some(cmd), None) if shell_safe(cmd) => {}
            (Some(_), None) => {
                return Err(ServiceError::new(
                    at,
                    "backup.exec may not contain quotes, backslashes or newlines",
                ))
            }
            (None, Some(path)) if valid_path(path) => {
                if first_port(s).is_none() {
                    return Err(ServiceError::new(at, "backup.post needs a published port"));
                }
            }
            (None, Some(path)) => {
                return Err(ServiceError::new(
                    at,
                    format!("backup.post `{path}` is not an HTTP path"),
                ))
            }
            _ => {
                return Err(ServiceError::new(
                    at,
                    "backup takes exactly one of `exec` or `post`",
                ))
            }
        }
        if !b.suffix.starts_with('.')
            || !b.suffix[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return Err(ServiceError::new(
                at,
                format!("backup.suffix `{}` is not like `.sql.gz`", b.suffix),
            ));
        }
    }
    Ok(())
}

/// Host ports the instance itself uses.
fn reserved_port(port: u16) -> Option<&'static str> {
    match port {
        22 => Some("SSH (opened only with ssh_cidr)"),
        20049..=21049 => Some("amazon-efs-utils' TLS tunnels to EFS"),
        _ => None,
    }
}

/// Two volume sources that would share files: the same directory, or one inside the other.
fn overlapping(a: &str, b: &str) -> bool {
    let (Some((sa, da)), Some((sb, db))) = (parse_source(a), parse_source(b)) else {
        return false;
    };
    sa == sb && (da == db || da.starts_with(&format!("{db}/")) || db.starts_with(&format!("{da}/")))
}

/// The first published port's (container port, host port), if any.
fn first_port(s: &Service) -> Option<(u16, u16)> {
    s.ports
        .iter()
        .find(|p| p.expose != Exposure::None)
        .map(|p| (p.port, p.host_port()))
}

fn check_health(at: &str, s: &Service, h: &Health) -> Result<(), ServiceError> {
    let kinds = [h.http.is_some(), h.tcp, h.exec.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(ServiceError::new(
            at,
            "health takes exactly one of `http` (a path), `tcp: true` or `exec` (a command)",
        ));
    }
    if !(1..=120_000).contains(&h.timeout_ms) {
        return Err(ServiceError::new(at, "health.timeout_ms must be 1..120000"));
    }
    if let Some(p) = &h.http {
        if !valid_path(p) {
            return Err(ServiceError::new(
                at,
                format!("health.http `{p}` is not an HTTP path like /healthz"),
            ));
        }
    }
    if let Some(c) = &h.exec {
        if !shell_safe(c) {
            return Err(ServiceError::new(
                at,
                "health.exec may not contain quotes, backslashes or newlines",
            ));
        }
    }
    if let Some(b) = &h.body {
        if !shell_safe(b) || h.http.is_none() {
            return Err(ServiceError::new(
                at,
                "health.body goes with `http` and may not contain quotes, backslashes or newlines",
            ));
        }
    }
    if let Some(c) = &h.container {
        if c.trim().is_empty() || c.contains('\0') {
            return Err(ServiceError::new(
                at,
                "health.container is an empty command",
            ));
        }
    }
    if let Some(sp) = &h.start_period {
        if !valid_duration(sp) {
            return Err(ServiceError::new(
                at,
                format!("health.start_period `{sp}` is not a duration like 30s"),
            ));
        }
    }
    if h.http.is_some() || h.tcp {
        let port = h.port.or_else(|| s.ports.first().map(|p| p.port));
        match port {
            None => {
                return Err(ServiceError::new(
                    at,
                    "an http or tcp health check needs a port: the service has none",
                ))
            }
            Some(p) if !s.ports.iter().any(|x| x.port == p) => {
                return Err(ServiceError::new(
                    at,
                    format!("health.port {p} is not one of the service's ports"),
                ))
            }
            Some(p)
                if s.ports
                    .iter()
                    .any(|x| x.port == p && x.expose == Exposure::None) =>
            {
                return Err(ServiceError::new(
                    at,
                    format!("health checks port {p}, which is not published (`expose: \"none\"`)"),
                )
                .hint("publish it as \"internal\", or check with `exec`"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_cycles(services: &[Service]) -> Result<(), ServiceError> {
    let by_name: HashMap<&str, &Service> = services.iter().map(|s| (s.name.as_str(), s)).collect();
    // 0 = unvisited, 1 = on the path, 2 = done.
    fn visit<'a>(
        n: &'a str,
        by_name: &HashMap<&'a str, &'a Service>,
        mark: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), ServiceError> {
        match mark.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                path.push(n);
                return Err(ServiceError::new(
                    format!("service `{n}`"),
                    format!("depends_on forms a cycle: {}", path.join(" → ")),
                ));
            }
            _ => {}
        }
        mark.insert(n, 1);
        path.push(n);
        for d in &by_name[n].depends_on {
            visit(d, by_name, mark, path)?;
        }
        path.pop();
        mark.insert(n, 2);
        Ok(())
    }
    let mut mark = HashMap::new();
    for s in services {
        visit(&s.name, &by_name, &mut mark, &mut Vec::new())?;
    }
    Ok(())
}

impl Service {
    /// The resolved health check: the container port it probes and the compose command.
    pub fn health_port(&self) -> Option<&Port> {
        let h = self.health.as_ref()?;
        let p = h.port.or_else(|| self.ports.first().map(|p| p.port))?;
        self.ports.iter().find(|x| x.port == p)
    }

    /// The compose healthcheck command (`CMD-SHELL`).
    pub fn container_check(&self) -> Option<String> {
        let h = self.health.as_ref()?;
        if let Some(c) = &h.container {
            return Some(c.clone());
        }
        if let Some(c) = &h.exec {
            return Some(c.clone());
        }
        let port = self.health_port()?.port;
        if let Some(path) = &h.http {
            let url = format!("http://127.0.0.1:{port}{path}");
            return Some(format!(
                "wget -q -O /dev/null '{url}' || curl -fsS -o /dev/null '{url}' || exit 1"
            ));
        }
        Some(format!("bash -c ':> /dev/tcp/127.0.0.1/{port}' || exit 1"))
    }

    /// The root-only env file holding this service's secrets (None when it has none).
    pub fn env_file(&self, layout: &Layout) -> Option<String> {
        (!self.secrets.is_empty()).then(|| format!("{}/{}.env", layout.env_dir, self.name))
    }
}

/// The directory on the instance behind a volume source.
pub fn host_dir(source: &str, layout: &Layout) -> Option<String> {
    let (store, dir) = parse_source(source)?;
    let base = match store {
        Store::Efs => &layout.efs_dir,
        Store::Data => &layout.data_dir,
    };
    Some(format!("{base}/{dir}"))
}

// ---- The compose file, as typed structs ---------------------------------------------------

/// A map that keeps its insertion order when serialized (services in the recipe's order).
struct Ordered<V>(Vec<(String, V)>);

impl<V: Serialize> Serialize for Ordered<V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

#[derive(Serialize)]
struct ComposeFile {
    name: String,
    services: Ordered<ComposeService>,
}

#[derive(Serialize)]
struct ComposeService {
    image: String,
    restart: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    command: Option<Vec<String>>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env_file: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    ports: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    depends_on: BTreeMap<String, DependsOn>,
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck: Option<HealthCheck>,
    mem_limit: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    shm_size: Option<String>,
    logging: Logging,
    #[serde(skip_serializing_if = "Option::is_none")]
    deploy: Option<Deploy>,
}

#[derive(Serialize)]
struct DependsOn {
    condition: &'static str,
}

#[derive(Serialize)]
struct HealthCheck {
    test: Vec<String>,
    interval: &'static str,
    timeout: String,
    retries: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    start_period: Option<String>,
}

#[derive(Serialize)]
struct Logging {
    driver: &'static str,
    options: BTreeMap<&'static str, &'static str>,
}

#[derive(Serialize)]
struct Deploy {
    resources: Resources,
}

#[derive(Serialize)]
struct Resources {
    reservations: Reservations,
}

#[derive(Serialize)]
struct Reservations {
    devices: Vec<Device>,
}

#[derive(Serialize)]
struct Device {
    driver: &'static str,
    count: &'static str,
    capabilities: Vec<&'static str>,
}

/// Compose interpolates `$`: a literal one is written `$$`.
fn literal(s: &str) -> String {
    s.replace('$', "$$")
}

/// Render the compose file for `services` (validated first).
pub fn compose_file(services: &[Service], layout: &Layout) -> Result<String, ServiceError> {
    compose_file_holding(services, layout, &[])
}

/// [`compose_file`] with the public ports of the services named in `hold` bound to the
/// instance's loopback: the file a service starts from while it is not ready for the outside
/// (n8n until its owner exists).
pub fn compose_file_holding(
    services: &[Service],
    layout: &Layout,
    hold: &[String],
) -> Result<String, ServiceError> {
    validate(services)?;
    for h in hold {
        if !services.iter().any(|s| &s.name == h) {
            return Err(ServiceError::new(
                "hold",
                format!("no service `{h}` to hold back"),
            ));
        }
    }
    for p in [&layout.efs_dir, &layout.data_dir, &layout.env_dir] {
        boot::check_path(p).map_err(|e| ServiceError::new("layout", e))?;
    }
    let healthy: BTreeSet<&str> = services
        .iter()
        .filter(|s| s.health.is_some())
        .map(|s| s.name.as_str())
        .collect();
    let mut out = Vec::new();
    for s in services {
        let ports = s
            .ports
            .iter()
            .filter_map(|p| match p.expose {
                Exposure::Public if hold.contains(&s.name) => {
                    Some(format!("127.0.0.1:{}:{}", p.host_port(), p.port))
                }
                Exposure::Public => Some(format!("{}:{}", p.host_port(), p.port)),
                Exposure::Internal => Some(format!("127.0.0.1:{}:{}", p.host_port(), p.port)),
                Exposure::None => None,
            })
            .collect();
        let volumes = s
            .volumes
            .iter()
            .map(|(path, source)| {
                let dir = host_dir(source, layout).expect("validated");
                format!("{dir}:{path}")
            })
            .collect();
        let healthcheck = s.container_check().map(|cmd| {
            let h = s.health.as_ref().expect("a check has health");
            HealthCheck {
                test: vec!["CMD-SHELL".into(), literal(&cmd)],
                interval: "15s",
                timeout: format!("{}s", h.timeout_ms.div_ceil(1000).max(1)),
                retries: 8,
                start_period: h.start_period.clone(),
            }
        });
        let depends_on = s
            .depends_on
            .iter()
            .map(|d| {
                let condition = if healthy.contains(d.as_str()) {
                    "service_healthy"
                } else {
                    "service_started"
                };
                (d.clone(), DependsOn { condition })
            })
            .collect();
        out.push((
            s.name.clone(),
            ComposeService {
                image: s.image.clone(),
                restart: "unless-stopped",
                user: s.user.clone(),
                command: s
                    .command
                    .as_ref()
                    .map(|c| c.iter().map(|a| literal(a)).collect()),
                environment: s.env.iter().map(|(k, v)| (k.clone(), literal(v))).collect(),
                env_file: s.env_file(layout).into_iter().collect(),
                ports,
                volumes,
                depends_on,
                healthcheck,
                mem_limit: s.memory.clone().unwrap_or_else(|| DEFAULT_MEMORY.into()),
                shm_size: s.shm_size.clone(),
                logging: Logging {
                    driver: "json-file",
                    options: BTreeMap::from([
                        ("max-size", LOG_MAX_SIZE),
                        ("max-file", LOG_MAX_FILE),
                    ]),
                },
                deploy: s.gpu.then(|| Deploy {
                    resources: Resources {
                        reservations: Reservations {
                            devices: vec![Device {
                                driver: "nvidia",
                                count: "all",
                                capabilities: vec!["gpu"],
                            }],
                        },
                    },
                }),
            },
        ));
    }
    let file = ComposeFile {
        name: "geusemaker".into(),
        services: Ordered(out),
    };
    let yaml = serde_yaml_ng::to_string(&file)
        .map_err(|e| ServiceError::new("compose file", e.to_string()))?;
    Ok(format!(
        "# Generated by geusemaker from the recipe's services. Data: {} (EFS), {} (EBS data volume).\n{yaml}",
        layout.efs_dir, layout.data_dir
    ))
}

// ---- Boot script sections that follow the service list -------------------------------------

/// The env files: one per service with secrets, holding only its own (`secrets` maps a stack
/// secret name, like `postgres/password`, to its SSM parameter name).
pub fn env_files(
    region: &str,
    services: &[Service],
    secrets: &BTreeMap<String, String>,
    layout: &Layout,
) -> Result<String, ServiceError> {
    let mut files = Vec::new();
    for s in services {
        let Some(path) = s.env_file(layout) else {
            continue;
        };
        let mut vars = Vec::new();
        for (var, secret) in &s.secrets {
            let param = secrets.get(secret).ok_or_else(|| {
                ServiceError::new(
                    format!("service `{}`", s.name),
                    format!("secret `{secret}` (for {var}) is not among the stack's secrets"),
                )
                .hint("make it with ssm::ensure_secret, or let services::secrets(svcs) make every secret the services name")
            })?;
            vars.push((var.clone(), param.clone()));
        }
        files.push((path, vars));
    }
    if files.is_empty() {
        return Ok(String::new());
    }
    boot::ssm_env_files(region, &files).map_err(|e| ServiceError::new("secrets", e))
}

/// At boot, before the stack starts: the variables `vars` of service `name`'s env file set to
/// the URL users reach it by on this instance's public address —
/// `http://<public address>:<its first public port>/` — read from the instance metadata
/// (IMDSv2). For a tier without a load balancer, whose address is known only once the
/// instance runs (n8n's `WEBHOOK_URL`, `N8N_EDITOR_BASE_URL`). Nothing is written when the
/// instance has no public address.
pub fn public_url_env(
    services: &[Service],
    name: &str,
    vars: &[String],
    layout: &Layout,
) -> Result<String, ServiceError> {
    validate(services)?;
    let at = format!("service `{name}`");
    let s = services
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ServiceError::new(&at, "not in the stack"))?;
    let port = s
        .ports
        .iter()
        .find(|p| p.expose == Exposure::Public)
        .ok_or_else(|| ServiceError::new(&at, "publishes no public port"))?
        .host_port();
    let file = s.env_file(layout).ok_or_else(|| {
        ServiceError::new(&at, "has no env file (only services with secrets have one)")
    })?;
    let mut lines = String::new();
    for v in vars {
        if !valid_env_name(v) {
            return Err(ServiceError::new(
                &at,
                format!("`{v}` is not an environment variable name (UPPER_CASE)"),
            ));
        }
        if s.env.contains_key(v) {
            return Err(ServiceError::new(
                &at,
                format!("{v} is set in its env already; one value only"),
            ));
        }
        let _ = writeln!(lines, "    echo \"{v}=http://$public_ip:{port}/\"");
    }
    Ok(format!(
        r#"# --- {name}'s public URL (this instance's public address) ---
imds_token="$(retry curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)"
public_ip="$(curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" http://169.254.169.254/latest/meta-data/public-ipv4 || true)"
if [ -n "$public_ip" ]; then
  umask 077
  {{
{lines}  }} >> '{file}'
  umask 022
fi
"#
    ))
}

/// Where the boot script puts Docker's systemd drop-in.
pub const DOCKER_DROP_IN_DIR: &str = "/etc/systemd/system/docker.service.d";

/// The volumes' directories (owned by the service's `user` when it has one), Docker made to
/// wait for the mounts the services use (at every later boot), then the images pulled (retried)
/// and the stack started from `<stack_dir>/compose.yaml`.
pub fn start(services: &[Service], layout: &Layout) -> Result<String, ServiceError> {
    start_from(services, layout, "compose.yaml")
}

/// [`start`] from another compose file of the stack directory (`compose.setup.yaml`: see
/// [`compose_file_holding`]).
pub fn start_from(
    services: &[Service],
    layout: &Layout,
    file: &str,
) -> Result<String, ServiceError> {
    validate(services)?;
    if !(file.ends_with(".yaml")
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !file.starts_with('.'))
    {
        return Err(ServiceError::new(
            "file",
            format!("`{file}` is not a compose file name in the stack directory (like compose.setup.yaml)"),
        ));
    }
    for p in [&layout.efs_dir, &layout.data_dir, &layout.stack_dir] {
        boot::check_path(p).map_err(|e| ServiceError::new("layout", e))?;
    }
    let dir = &layout.stack_dir;
    let mut out = String::from("# --- start the stack ---\n");
    let mut dirs: Vec<String> = Vec::new();
    let mut owned: Vec<(String, String)> = Vec::new();
    for s in services {
        for source in s.volumes.values() {
            let d = host_dir(source, layout).expect("validated");
            if !dirs.contains(&d) {
                dirs.push(d.clone());
            }
            if let Some(u) = &s.user {
                let owner = if u.contains(':') {
                    u.clone()
                } else {
                    format!("{u}:{u}")
                };
                owned.push((owner, d));
            }
        }
    }
    if !dirs.is_empty() {
        let list: Vec<String> = dirs.iter().map(|d| format!("'{d}'")).collect();
        let _ = writeln!(out, "mkdir -p {}", list.join(" "));
    }
    for (owner, d) in owned {
        let _ = writeln!(out, "chown -R {owner} '{d}'");
    }
    // After a reboot Docker must not start before the storage is mounted: a container started
    // on an empty mount point would initialise a new, empty database over the real one.
    let mounts: Vec<&str> = [(&layout.efs_dir, "efs:"), (&layout.data_dir, "data:")]
        .into_iter()
        .filter(|(_, prefix)| {
            services
                .iter()
                .any(|s| s.volumes.values().any(|v| v.starts_with(prefix)))
        })
        .map(|(d, _)| d.as_str())
        .collect();
    if !mounts.is_empty() {
        let _ = writeln!(
            out,
            "mkdir -p {DOCKER_DROP_IN_DIR}\nprintf '[Unit]\\nRequiresMountsFor=%s\\n' '{}' > {DOCKER_DROP_IN_DIR}/geusemaker-mounts.conf\nsystemctl daemon-reload",
            mounts.join(" ")
        );
    }
    let compose = format!("docker compose --project-directory '{dir}' -f '{dir}/{file}'");
    let _ = writeln!(
        out,
        "retry {compose} pull --quiet\n{compose} up -d --remove-orphans"
    );
    Ok(out)
}

/// A daily systemd timer backing up every service that declares `backup` to
/// `<efs>/backups/<service>/`, keeping `keep_days` days. Empty when no service has one.
pub fn backups(
    services: &[Service],
    layout: &Layout,
    keep_days: u32,
) -> Result<String, ServiceError> {
    validate(services)?;
    for p in [&layout.efs_dir, &layout.stack_dir] {
        boot::check_path(p).map_err(|e| ServiceError::new("layout", e))?;
    }
    if !(1..=365).contains(&keep_days) {
        return Err(ServiceError::new("backups", "keep_days must be 1..365"));
    }
    let (efs, dir) = (&layout.efs_dir, &layout.stack_dir);
    let mut steps = String::new();
    let mut names = Vec::new();
    for s in services {
        let Some(b) = &s.backup else { continue };
        let target = format!("{efs}/backups/{}", s.name);
        let name = &s.name;
        names.push(name.as_str());
        let _ = writeln!(steps, "mkdir -p '{target}'");
        // A failed step is reported and the others still run; a dump is named only once it is
        // complete, so a half-written file never looks like a backup.
        if let Some(cmd) = &b.exec {
            let suffix = &b.suffix;
            let file = format!("'{target}/{name}-'\"$stamp\"'{suffix}'");
            let _ = writeln!(
                steps,
                "if docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' exec -T '{name}' sh -c '{cmd}' | gzip > {file}.partial; then\n  mv {file}.partial {file}\nelse\n  rm -f {file}.partial\n  echo \"backup of {name} failed\" >&2\n  failed=1\nfi"
            );
        }
        if let Some(path) = &b.post {
            let (_, host) = first_port(s).expect("validated: backup.post has a port");
            let _ = writeln!(
                steps,
                "if ! curl -fsS -X POST 'http://127.0.0.1:{host}{path}' > /dev/null; then\n  echo \"backup of {name} failed\" >&2\n  failed=1\nfi"
            );
        }
        let _ = writeln!(steps, "find '{target}' -type f -mtime +{keep_days} -delete");
    }
    if names.is_empty() {
        return Ok(String::new());
    }
    let script = format!(
        "#!/bin/bash\n# Daily backups to EFS of: {} (installed by geusemaker).\nset -euo pipefail\numask 077\nstamp=\"$(date -u +%Y%m%dT%H%M%SZ)\"\nfailed=0\n{steps}exit \"$failed\"\n",
        names.join(", ")
    );
    let service = format!(
        "[Unit]\nDescription=geusemaker backups to EFS\nAfter=docker.service\n\n[Service]\nType=oneshot\nExecStart={dir}/backup.sh\n"
    );
    let timer = "[Unit]\nDescription=daily geusemaker backups\n\n[Timer]\nOnCalendar=daily\nRandomizedDelaySec=1h\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";
    let wrap = |r: Result<String, String>| r.map_err(|e| ServiceError::new("backups", e));
    let mut out = format!("# --- backups to EFS, daily: {} ---\n", names.join(", "));
    out.push_str(&wrap(boot::write_file(
        &format!("{dir}/backup.sh"),
        &script,
        "0750",
    ))?);
    out.push_str(&wrap(boot::write_file(
        "/etc/systemd/system/geusemaker-backup.service",
        &service,
        "0644",
    ))?);
    out.push_str(&wrap(boot::write_file(
        "/etc/systemd/system/geusemaker-backup.timer",
        timer,
        "0644",
    ))?);
    out.push_str("systemctl daemon-reload\nsystemctl enable --now geusemaker-backup.timer\n");
    Ok(out)
}

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exposure::Public => "public",
            Exposure::Internal => "internal",
            Exposure::None => "none",
        })
    }
}

#[cfg(test)]
mod tests {
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
}
