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

impl fmt::Display for Exposure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Exposure::Public => "public",
            Exposure::Internal => "internal",
            Exposure::None => "none",
        })
    }
}

mod compose;
mod sections;
#[cfg(test)]
mod tests;
mod validate;

pub use compose::{compose_file, compose_file_holding};
pub use sections::*;
pub use validate::validate;
