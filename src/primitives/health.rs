//! `health::` — HTTP and TCP checks, and waiting until a set of them passes.
//!
//! A check can run from here, or `on` an instance (through SSM Run Command, against the
//! instance's loopback) for services whose ports are closed to the outside. For tests against a
//! local AWS emulator, `GEUSEMAKER_HEALTH_ENDPOINTS="n8n=127.0.0.1:PORT,postgres=…"` sends each
//! named check to that address instead.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::{Array, CustomType, Dynamic, Engine, EvalAltResult, Map};

use super::follow::{BootFollower, Followed};
use super::opts::Opts;
use super::{health_err, id_of, rt, usage_err, Runtime};
use crate::cloud::{Aws, Blocking};

/// The environment variable that redirects named checks (see the module docs).
pub const ENDPOINTS_ENV: &str = "GEUSEMAKER_HEALTH_ENDPOINTS";

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq, CustomType, serde::Serialize)]
#[rhai_type(name = "HealthResult", extra = crate::cloud::display_fns)]
pub struct HealthResult {
    #[rhai_type(readonly)]
    pub name: String,
    /// The URL or `host:port` checked.
    #[rhai_type(readonly)]
    pub target: String,
    #[rhai_type(readonly)]
    pub ok: bool,
    /// HTTP status (0 for TCP checks and connection failures).
    #[rhai_type(readonly)]
    pub status: i64,
    #[rhai_type(readonly)]
    pub latency_ms: i64,
    #[rhai_type(readonly)]
    pub error: Option<String>,
}

impl fmt::Display for HealthResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.error {
            None => write!(f, "HealthResult({} ok {}ms)", self.name, self.latency_ms),
            Some(e) => write!(f, "HealthResult({} failing: {e})", self.name),
        }
    }
}

/// What to probe.
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// GET `url` (or POST `post` as JSON); the status must be `status` and the body must
    /// contain every text of `body`.
    Http {
        url: String,
        status: u16,
        body: Vec<String>,
        post: Option<serde_json::Value>,
    },
    Tcp {
        addr: String,
    },
    /// A command run in a compose service's container on the instance (`docker compose exec`);
    /// passes when it exits 0.
    Exec {
        service: String,
        command: String,
    },
    /// The health Docker reports for a compose service's container (its own healthcheck, e.g.
    /// `pg_isready`): passes when `healthy`. A port that accepts connections proves nothing —
    /// Docker's port proxy accepts while the server behind it is down.
    Container {
        service: String,
    },
}

/// What Docker's `{{json .State.Health}}` contains for a healthy container (the check on the
/// instance, and what a stand-in answers).
pub const CONTAINER_HEALTHY: &str = "\"Status\":\"healthy\"";

/// One check: a named probe with a timeout, run from here or on an instance.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub name: String,
    pub probe: Probe,
    pub timeout: Duration,
    /// Run on this instance (through SSM) instead of from here.
    pub on: Option<String>,
}

impl Check {
    /// What the check probes: a URL, `host:port`, or `service: command`.
    pub fn target(&self) -> String {
        match &self.probe {
            Probe::Http { url, .. } => url.clone(),
            Probe::Tcp { addr } => addr.clone(),
            Probe::Exec { service, command } => format!("{service}: {command}"),
            Probe::Container { service } => format!("{service}: container health"),
        }
    }

    fn failed(&self, error: impl Into<String>) -> HealthResult {
        HealthResult {
            name: self.name.clone(),
            target: self.target(),
            ok: false,
            status: 0,
            latency_ms: 0,
            error: Some(error.into()),
        }
    }

    /// Point the check at `addr` (`host:port`, plain HTTP), keeping the URL's path; it then
    /// runs from here.
    fn redirect(&mut self, addr: &str) {
        self.on = None;
        match &mut self.probe {
            Probe::Tcp { addr: a } => *a = addr.to_string(),
            // A stand-in for a container has no shell to run the command: it answers on a port.
            Probe::Exec { .. } => {
                self.probe = Probe::Tcp {
                    addr: addr.to_string(),
                }
            }
            // A stand-in answers what `docker inspect` would: the container's health as JSON.
            Probe::Container { .. } => {
                self.probe = Probe::Http {
                    url: format!("http://{addr}/"),
                    status: 200,
                    body: vec![CONTAINER_HEALTHY.to_string()],
                    post: None,
                }
            }
            Probe::Http { url, .. } => {
                let rest = url
                    .split_once("://")
                    .map(|(_, r)| r)
                    .unwrap_or(url.as_str());
                let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
                *url = format!("http://{addr}{path}");
            }
        }
    }
}

/// `GEUSEMAKER_HEALTH_ENDPOINTS`, parsed: service name → `host:port`.
pub fn endpoint_overrides(raw: Option<&str>) -> Result<HashMap<String, String>, String> {
    let mut map = HashMap::new();
    for item in raw
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        let (name, addr) = item
            .split_once('=')
            .ok_or_else(|| format!("{ENDPOINTS_ENV}: `{item}` is not name=host:port"))?;
        let valid_addr = addr
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
        if name.trim().is_empty() || !valid_addr {
            return Err(format!("{ENDPOINTS_ENV}: `{item}` is not name=host:port"));
        }
        map.insert(name.trim().to_string(), addr.trim().to_string());
    }
    Ok(map)
}

/// Checks as recipes record them (`state::set("health_checks", checks)`), with
/// `GEUSEMAKER_HEALTH_ENDPOINTS` applied.
pub fn checks_from_json(value: &serde_json::Value) -> Result<Vec<Check>, String> {
    let items = value
        .as_array()
        .ok_or("health_checks is not a list of checks")?;
    let ov = endpoint_overrides(std::env::var(ENDPOINTS_ENV).ok().as_deref())?;
    items
        .iter()
        .map(|item| {
            let map = rhai::serde::to_dynamic(item)
                .ok()
                .and_then(|d| d.try_cast::<Map>())
                .ok_or_else(|| format!("health check {item} is not a map"))?;
            if map.contains_key("post") {
                // A stored check never sends a secret (the state file is not trusted with that).
                return Err(format!(
                    "health check {item}: `post` checks run during a deploy only"
                ));
            }
            check_from_map(map)
                .map(|c| with_override(c, &ov))
                .map_err(|e| e.to_string())
        })
        .collect()
}

fn overrides() -> Result<HashMap<String, String>, Box<EvalAltResult>> {
    endpoint_overrides(std::env::var(ENDPOINTS_ENV).ok().as_deref()).map_err(usage_err)
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::limited(3))
            .user_agent(concat!("geusemaker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds")
    })
}

/// The client for `post` checks: no redirects.
fn post_client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("geusemaker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds")
    })
}

/// Run one check from here (never fails: a failure is a result with `ok == false`).
pub async fn run_check(check: &Check) -> HealthResult {
    let start = Instant::now();
    let ms = |s: Instant| s.elapsed().as_millis() as i64;
    let (status, error) = match &check.probe {
        Probe::Http {
            url,
            status,
            body,
            post,
        } => {
            let outcome = async {
                let req = match post {
                    // Never re-sent elsewhere: a redirect would carry the body (a password).
                    Some(json) => post_client()
                        .post(url)
                        .header(reqwest::header::CONTENT_TYPE, "application/json")
                        .body(json.to_string()),
                    None => client().get(url),
                };
                let resp = req
                    .timeout(check.timeout)
                    .send()
                    .await
                    .map_err(|e| (0, describe(&e)))?;
                let code = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                if code != *status {
                    return Err((code as i64, format!("HTTP {code}, expected {status}")));
                }
                if let Some(b) = body.iter().find(|b| !text.contains(b.as_str())) {
                    return Err((code as i64, format!("body does not contain {b:?}")));
                }
                Ok(code as i64)
            }
            .await;
            match outcome {
                Ok(code) => (code, None),
                Err((code, e)) => (code, Some(e)),
            }
        }
        Probe::Tcp { addr } => {
            let r =
                tokio::time::timeout(check.timeout, tokio::net::TcpStream::connect(addr.as_str()))
                    .await;
            let error = match r {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!(
                    "no connection within {}ms",
                    check.timeout.as_millis()
                )),
            };
            (0, error)
        }
        Probe::Exec { .. } | Probe::Container { .. } => (
            0,
            Some("a container check runs on an instance (`on`)".to_string()),
        ),
    };
    HealthResult {
        name: check.name.clone(),
        target: check.target(),
        ok: error.is_none(),
        status,
        latency_ms: ms(start),
        error,
    }
}

fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        "connection refused or unreachable".into()
    } else {
        e.to_string()
    }
}

/// Run every check concurrently from here; results in the order of `checks`.
pub async fn run_all(checks: &[Check]) -> Vec<HealthResult> {
    let mut set = tokio::task::JoinSet::new();
    for (i, c) in checks.iter().cloned().enumerate() {
        set.spawn(async move { (i, run_check(&c).await) });
    }
    let mut out: Vec<Option<HealthResult>> = vec![None; checks.len()];
    while let Some(joined) = set.join_next().await {
        if let Ok((i, r)) = joined {
            out[i] = Some(r);
        }
    }
    out.into_iter()
        .zip(checks)
        .map(|(r, c)| r.unwrap_or_else(|| c.failed("check panicked")))
        .collect()
}

/// The shell commands that run `checks` on an instance; each prints one line
/// `GMCHECK <index> <status> <latency_ms> <ok|fail>`.
pub fn remote_script(checks: &[Check]) -> Vec<String> {
    let mut cmds = vec!["now_ms() { date +%s%3N; }".to_string()];
    for (i, c) in checks.iter().enumerate() {
        let secs = c.timeout.as_secs().max(1);
        let line = match &c.probe {
            Probe::Http {
                url, status, body, ..
            } => {
                let body_check: String = body
                    .iter()
                    .map(|b| format!(" && grep -qF -- '{b}' /tmp/gm-health-{i}"))
                    .collect();
                format!(
                    "t=$(now_ms); code=$(curl -s -o /tmp/gm-health-{i} -w '%{{http_code}}' --max-time {secs} '{url}' || true); \
                     if [ \"$code\" = '{status}' ]{body_check}; then r=ok; else r=fail; fi; \
                     echo \"GMCHECK {i} ${{code:-0}} $(( $(now_ms) - t )) $r\""
                )
            }
            Probe::Tcp { addr } => {
                let (h, p) = addr.rsplit_once(':').unwrap_or((addr.as_str(), "0"));
                format!(
                    "t=$(now_ms); if timeout {secs} bash -c ':> /dev/tcp/{h}/{p}' 2>/dev/null; then r=ok; else r=fail; fi; \
                     echo \"GMCHECK {i} 0 $(( $(now_ms) - t )) $r\""
                )
            }
            Probe::Exec { service, command } => {
                let dir = crate::boot::Layout::default().stack_dir;
                format!(
                    "t=$(now_ms); if timeout {secs} docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' exec -T '{service}' sh -c '{command}' >/dev/null 2>&1; then r=ok; else r=fail; fi; \
                     echo \"GMCHECK {i} 0 $(( $(now_ms) - t )) $r\""
                )
            }
            Probe::Container { service } => {
                let dir = crate::boot::Layout::default().stack_dir;
                format!(
                    "t=$(now_ms); c=$(docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' ps -q '{service}' 2>/dev/null || true); \
                     if [ -n \"$c\" ] && docker inspect --format '{{{{json .State.Health}}}}' \"$c\" 2>/dev/null | grep -qF -- '{CONTAINER_HEALTHY}'; then r=ok; else r=fail; fi; \
                     echo \"GMCHECK {i} 0 $(( $(now_ms) - t )) $r\""
                )
            }
        };
        cmds.push(line);
    }
    cmds
}

/// Read the `GMCHECK` lines of [`remote_script`]'s output.
pub fn parse_remote(output: &str, checks: &[Check]) -> Vec<HealthResult> {
    let mut results: Vec<HealthResult> = checks
        .iter()
        .map(|c| c.failed("no result from the instance"))
        .collect();
    for line in output.lines() {
        let mut f = line.split_whitespace();
        if f.next() != Some("GMCHECK") {
            continue;
        }
        let (Some(i), Some(status), Some(ms), Some(verdict)) = (
            f.next().and_then(|v| v.parse::<usize>().ok()),
            f.next().and_then(|v| v.parse::<i64>().ok()),
            f.next().and_then(|v| v.parse::<i64>().ok()),
            f.next(),
        ) else {
            continue;
        };
        let Some(slot) = results.get_mut(i) else {
            continue;
        };
        slot.status = status;
        slot.latency_ms = ms;
        slot.ok = verdict == "ok";
        slot.error = match (slot.ok, &checks[i].probe) {
            (true, _) => None,
            (false, Probe::Http { status: want, .. }) if status != *want as i64 => {
                Some(if status == 0 {
                    "connection failed".into()
                } else {
                    format!("HTTP {status}, expected {want}")
                })
            }
            (false, Probe::Http { .. }) => Some("body did not match".into()),
            (false, Probe::Tcp { .. }) => Some("connection failed".into()),
            (false, Probe::Exec { .. }) => Some("the command failed".into()),
            (false, Probe::Container { .. }) => {
                Some("the container is not healthy (docker's own healthcheck)".into())
            }
        };
    }
    results
}

/// Run checks on one instance through SSM Run Command.
fn run_remote(aws: Option<&Aws>, instance: &str, checks: &[Check]) -> Vec<HealthResult> {
    let Some(aws) = aws else {
        return checks
            .iter()
            .map(|c| c.failed("no AWS connection"))
            .collect();
    };
    let id = match aws
        .ssm
        .send_command(instance, &remote_script(checks), "geusemaker health")
    {
        Ok(id) => id,
        Err(e) if e.code.contains("InvalidInstanceId") => {
            return checks
                .iter()
                .map(|c| c.failed("SSM agent on the instance not registered yet"))
                .collect()
        }
        Err(e) => {
            return checks
                .iter()
                .map(|c| c.failed(format!("SSM: {}", e.code)))
                .collect()
        }
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match aws.ssm.command_result(&id, instance) {
            Ok(r) if !matches!(r.status.as_str(), "Pending" | "InProgress" | "Delayed") => {
                return parse_remote(&r.stdout, checks);
            }
            Ok(_) | Err(_) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_secs(2))
            }
            Ok(r) => {
                return checks
                    .iter()
                    .map(|c| c.failed(format!("SSM command still {}", r.status)))
                    .collect()
            }
            Err(e) => {
                return checks
                    .iter()
                    .map(|c| c.failed(format!("SSM: {}", e.code)))
                    .collect()
            }
        }
    }
}

/// How long a deploy whose services are healthy waits for the boot to report its end.
const BOOT_SETTLE: Duration = Duration::from_secs(120);

/// Once the services answer, the rest of the boot followed to its end (up to [`BOOT_SETTLE`],
/// within the wait's deadline): a failure reported meanwhile is the wait's error; a boot still
/// not finished then is a warning.
fn settle(
    rt: &Runtime,
    f: &mut BootFollower,
    waiting: &crate::ui::Waiting,
    interval: Duration,
    deadline: Instant,
) -> Result<(), Box<EvalAltResult>> {
    let until = (Instant::now() + BOOT_SETTLE).min(deadline);
    loop {
        // Read again first: the report may have come since this round's read.
        if let Some(failed) = f.poll(rt) {
            return Err(failed);
        }
        if f.settled() {
            return Ok(());
        }
        let now = Instant::now();
        if now >= until || crate::interrupt::requested() {
            if let Some(step) = f.unfinished_step() {
                rt.ui.warn(&format!(
                    "the services are healthy, but the boot had not finished (step `{step}`): `geusemaker logs --boot` shows how it ended"
                ));
            }
            return Ok(());
        }
        waiting.update(
            &format!(
                "all healthy · {}",
                f.now().unwrap_or_else(|| "boot finishing".into())
            ),
            until - now,
        );
        std::thread::sleep(interval.min(until - now));
    }
}

fn run_round(rt: &Runtime, checks: &[Check]) -> Vec<HealthResult> {
    if rt.is_plan() {
        // A plan probes nothing: every service counts as answering. The calls a real round
        // makes are recorded all the same (the IAM policy is made from them).
        if let Ok(aws) = rt.aws() {
            let mut asked = std::collections::BTreeSet::new();
            for on in checks.iter().filter_map(|c| c.on.as_deref()) {
                if asked.insert(on) {
                    let _ = aws
                        .ssm
                        .send_command(on, &[], "geusemaker health")
                        .and_then(|id| aws.ssm.command_result(&id, on));
                }
            }
            let posts = checks
                .iter()
                .any(|c| matches!(c.probe, Probe::Http { post: Some(_), .. }));
            if posts {
                let _ = aws.ssm.get(&format!("/geusemaker/{}/", rt.stack));
            }
        }
        return checks
            .iter()
            .map(|c| HealthResult {
                name: c.name.clone(),
                target: c.target(),
                ok: true,
                status: 200,
                latency_ms: 0,
                error: None,
            })
            .collect();
    }
    let needs_aws = checks
        .iter()
        .any(|c| c.on.is_some() || matches!(c.probe, Probe::Http { post: Some(_), .. }));
    let aws = if needs_aws { rt.aws().ok() } else { None };
    run_checks(
        &rt.blocking,
        aws,
        checks,
        Some(&format!("/geusemaker/{}/", rt.stack)),
    )
}

/// One round of `checks`: those from here concurrently, those `on` an instance through one SSM
/// command per instance. Results in the order of `checks`; a check never errors, it fails.
/// `secrets_under` is the only parameter path `post` checks may read (`/geusemaker/<stack>/`);
/// `None` outside a run.
pub fn run_checks(
    blocking: &Blocking,
    aws: Option<&Aws>,
    checks: &[Check],
    secrets_under: Option<&str>,
) -> Vec<HealthResult> {
    let mut results: Vec<Option<HealthResult>> = vec![None; checks.len()];
    let mut local: Vec<(usize, Check)> = Vec::new();
    let from_here: Vec<(usize, Check)> = checks
        .iter()
        .cloned()
        .enumerate()
        .filter(|(_, c)| c.on.is_none())
        .collect();
    let (idx, list): (Vec<usize>, Vec<Check>) = from_here.into_iter().unzip();
    for (i, resolved) in idx.into_iter().zip(resolve_posts(aws, secrets_under, list)) {
        match resolved {
            Ok(c) => local.push((i, c)),
            Err(failed) => results[i] = Some(failed),
        }
    }
    let local_results = blocking.block_on(run_all(
        &local.iter().map(|(_, c)| c.clone()).collect::<Vec<_>>(),
    ));
    for ((i, _), r) in local.iter().zip(local_results) {
        results[*i] = Some(r);
    }
    let mut by_instance: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, c) in checks.iter().enumerate() {
        if let Some(on) = &c.on {
            by_instance.entry(on.as_str()).or_default().push(i);
        }
    }
    for (instance, idx) in by_instance {
        let subset: Vec<Check> = idx.iter().map(|i| checks[*i].clone()).collect();
        for (i, r) in idx.iter().zip(run_remote(aws, instance, &subset)) {
            results[*i] = Some(r);
        }
    }
    results
        .into_iter()
        .zip(checks)
        .map(|(r, c)| r.unwrap_or_else(|| c.failed("not run")))
        .collect()
}

fn timeout_of(o: &mut Opts, default_ms: i64) -> Result<Duration, Box<EvalAltResult>> {
    let ms = o.int("timeout_ms")?.unwrap_or(default_ms);
    if !(1..=120_000).contains(&ms) {
        return Err(usage_err(format!(
            "{}: timeout_ms must be 1..120000",
            o.func()
        )));
    }
    Ok(Duration::from_millis(ms as u64))
}

fn safe_for_shell(func: &str, what: &str, v: &str) -> Result<(), Box<EvalAltResult>> {
    if v.contains(['\'', '\n', '\\']) {
        return Err(usage_err(format!(
            "{func}: {what} may not contain quotes, backslashes or newlines"
        )));
    }
    Ok(())
}

fn http_check(func: &'static str, url: &str, mut o: Opts) -> Result<Check, Box<EvalAltResult>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage_err(format!("{func}: `{url}` is not an http(s) URL")));
    }
    safe_for_shell(func, "a URL", url)?;
    let status = o.int("status")?.unwrap_or(200);
    // One text, or a list of texts that must all be in the body.
    let body: Vec<String> = match o.value("body") {
        None => Vec::new(),
        Some(v) if v.is_array() => v
            .into_array()
            .unwrap_or_default()
            .into_iter()
            .map(|b| {
                b.into_string()
                    .map_err(|t| usage_err(format!("{func}: `body` texts are strings, not {t}")))
            })
            .collect::<Result<_, _>>()?,
        Some(v) => vec![v
            .into_string()
            .map_err(|t| usage_err(format!("{func}: `body` is a string or a list, not {t}")))?],
    };
    for b in &body {
        safe_for_shell(func, "`body`", b)?;
    }
    let post = match o.value("post") {
        None => None,
        Some(v) => {
            let json: serde_json::Value = rhai::serde::from_dynamic(&v)
                .map_err(|e| usage_err(format!("{func}: `post` is a map sent as JSON: {e}")))?;
            if !json.is_object() {
                return Err(usage_err(format!("{func}: `post` is a map sent as JSON")));
            }
            Some(json)
        }
    };
    let on = o
        .value("on")
        .map(|v| id_of(&v, "an instance"))
        .transpose()?;
    if post.is_some() && on.is_some() {
        // The request would travel in an SSM command, secrets included.
        return Err(usage_err(format!(
            "{func}: a `post` check runs from here, not `on` an instance"
        )));
    }
    Ok(Check {
        name: o.str("name")?.unwrap_or_else(|| url.to_string()),
        probe: Probe::Http {
            url: url.to_string(),
            status: u16::try_from(status)
                .map_err(|_| usage_err(format!("{func}: bad status {status}")))?,
            body,
            post,
        },
        timeout: timeout_of(&mut o, 5_000)?,
        on,
    })
}

/// `post` with every `{ "secret": "<SSM parameter>" }` replaced by the parameter's value,
/// read by `read` at check time (the stack keeps the name only).
pub fn with_secrets(
    json: &serde_json::Value,
    read: &dyn Fn(&str) -> Result<String, String>,
) -> Result<serde_json::Value, String> {
    use serde_json::Value;
    Ok(match json {
        Value::Object(m) if m.len() == 1 && m.get("secret").is_some_and(Value::is_string) => {
            Value::String(read(m["secret"].as_str().unwrap_or_default())?)
        }
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, v)| Ok((k.clone(), with_secrets(v, read)?)))
                .collect::<Result<_, String>>()?,
        ),
        Value::Array(a) => Value::Array(
            a.iter()
                .map(|v| with_secrets(v, read))
                .collect::<Result<_, _>>()?,
        ),
        other => other.clone(),
    })
}

/// The checks with their `post` secrets read from SSM; a check whose secret cannot be read
/// comes back as its failure.
fn resolve_posts(
    aws: Option<&Aws>,
    secrets_under: Option<&str>,
    checks: Vec<Check>,
) -> Vec<Result<Check, HealthResult>> {
    checks
        .into_iter()
        .map(|mut c| {
            if let Probe::Http {
                post: Some(json), ..
            } = &mut c.probe
            {
                let read = |name: &str| -> Result<String, String> {
                    // Only the running stack's own parameters: a check cannot send anything else.
                    let under = secrets_under.ok_or("secrets are read during a run only")?;
                    if !name.starts_with(under) || name.contains("..") {
                        return Err(format!(
                            "secret {name} is not one of this stack's ({under}…)"
                        ));
                    }
                    let aws = aws.ok_or("reading its secret needs AWS")?;
                    match aws.ssm.get(name) {
                        Ok(Some((_, value))) => Ok(value),
                        Ok(None) => Err(format!("secret {name} does not exist")),
                        Err(e) => Err(format!("secret {name}: {}", e.code)),
                    }
                };
                match with_secrets(json, &read) {
                    Ok(resolved) => *json = resolved,
                    Err(e) => return Err(c.failed(e)),
                }
            }
            Ok(c)
        })
        .collect()
}

fn tcp_check(func: &'static str, addr: String, mut o: Opts) -> Result<Check, Box<EvalAltResult>> {
    let valid = addr.rsplit_once(':').is_some_and(|(h, p)| {
        !h.is_empty()
            && p.parse::<u16>().is_ok()
            && h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
    });
    if !valid {
        return Err(usage_err(format!("{func}: `{addr}` is not host:port")));
    }
    Ok(Check {
        name: o.str("name")?.unwrap_or_else(|| addr.clone()),
        probe: Probe::Tcp { addr },
        timeout: timeout_of(&mut o, 3_000)?,
        on: o
            .value("on")
            .map(|v| id_of(&v, "an instance"))
            .transpose()?,
    })
}

const CHECK_KEYS: &[&str] = &[
    "name",
    "url",
    "tcp",
    "exec",
    "container_health",
    "status",
    "body",
    "post",
    "timeout_ms",
    "on",
];

/// A check from a map: `#{ name, url, status, body, timeout_ms, on }`,
/// `#{ name, tcp: "host:port", timeout_ms, on }` or `#{ name, exec: "command", timeout_ms, on }`
/// (run in the compose service `name` on instance `on`).
pub fn check_from_map(map: Map) -> Result<Check, Box<EvalAltResult>> {
    const F: &str = "health::wait_until_healthy";
    let mut o = Opts::new(F, map, CHECK_KEYS)?;
    let container = o.bool("container_health")?.unwrap_or(false);
    match (o.str("url")?, o.str("tcp")?, o.str("exec")?, container) {
        (Some(url), None, None, false) => http_check(F, &url, o),
        (None, Some(addr), None, false) => tcp_check(F, addr, o),
        (None, None, Some(cmd), false) => exec_check(F, Some(cmd), o),
        (None, None, None, true) => exec_check(F, None, o),
        _ => Err(usage_err(format!(
            "{F}: each check needs exactly one of `url`, `tcp`, `exec` or `container_health: true`"
        ))),
    }
}

/// A check in the compose service `name`'s container on instance `on`: `command` run there, or
/// (`None`) the health Docker reports for it.
fn exec_check(
    func: &'static str,
    command: Option<String>,
    mut o: Opts,
) -> Result<Check, Box<EvalAltResult>> {
    if let Some(c) = &command {
        safe_for_shell(func, "a command", c)?;
    }
    let service = o.str("name")?.ok_or_else(|| {
        usage_err(format!(
            "{func}: a container check (`exec`, `container_health`) needs the service's `name`"
        ))
    })?;
    if !service
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(usage_err(format!(
            "{func}: `{service}` is not a service name"
        )));
    }
    let on = o
        .value("on")
        .map(|v| id_of(&v, "an instance"))
        .transpose()?
        .ok_or_else(|| {
            usage_err(format!(
                "{func}: a container check runs in a container on an instance: give `on`"
            ))
        })?;
    Ok(Check {
        name: service.clone(),
        probe: match command {
            Some(command) => Probe::Exec { service, command },
            None => Probe::Container { service },
        },
        timeout: timeout_of(&mut o, 5_000)?,
        on: Some(on),
    })
}

/// Apply `GEUSEMAKER_HEALTH_ENDPOINTS` to a check.
fn with_override(mut c: Check, o: &HashMap<String, String>) -> Check {
    if let Some(addr) = o.get(&c.name) {
        c.redirect(addr);
    }
    c
}

pub fn types(engine: &mut Engine) {
    engine.build_type::<HealthResult>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

#[export_module]
pub mod api {
    /// GET `url` and check the status (200 unless `status`) and, with `body`, that the body
    /// contains that text (or each text of a list). Options: `status`, `body`, `timeout_ms`
    /// (5000), `name`, `on` (an instance: run the check there, through SSM, e.g. against
    /// `http://127.0.0.1:…`), `post` (a map sent as JSON instead of a GET, from here only;
    /// `#{ secret: "/geusemaker/<stack>/…" }` inside it is replaced by that stack parameter's
    /// value when the check runs, and redirects are not followed).
    ///
    /// ```rhai
    /// let r = health::http("http://10.0.0.5:5678/healthz", #{ timeout_ms: 5000 });
    /// if r.ok { ui::success(`n8n answers in ${r.latency_ms} ms`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn http(
        ctx: NativeCallContext,
        url: &str,
        options: Map,
    ) -> Result<HealthResult, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let check = http_check(
            "health::http",
            url,
            Opts::new(
                "health::http",
                options,
                &["status", "body", "post", "timeout_ms", "name", "on"],
            )?,
        )?;
        let check = with_override(check, &overrides()?);
        Ok(run_round(&rt, &[check]).remove(0))
    }

    /// Open a TCP connection to `host:port`. Options: `timeout_ms` (3000), `name`, `on`.
    ///
    /// ```rhai
    /// let r = health::tcp("10.0.0.5", 5432, #{ name: "postgres" });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn tcp(
        ctx: NativeCallContext,
        host: &str,
        port: i64,
        options: Map,
    ) -> Result<HealthResult, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let check = tcp_check(
            "health::tcp",
            format!("{host}:{port}"),
            Opts::new("health::tcp", options, &["timeout_ms", "name", "on"])?,
        )?;
        let check = with_override(check, &overrides()?);
        Ok(run_round(&rt, &[check]).remove(0))
    }

    /// Run all `checks` (maps: `#{ name, url, status, body, timeout_ms, on }` or
    /// `#{ name, tcp: "host:port", timeout_ms, on }`) every `interval` seconds (5) until every
    /// one passes or `timeout` seconds (600) have passed; returns the final results. The error
    /// on timeout names each failing check and its last error. Checks whose `name` appears in
    /// `GEUSEMAKER_HEALTH_ENDPOINTS` go to the address given there.
    ///
    /// With `boot: vm` (an instance launched by this run with a reporting boot script,
    /// `userdata::script(…, #{ report: true })`) the wait follows the instance's boot channel:
    /// each boot step is shown with its time as it passes, a failed step ends the wait at once
    /// with the step and the last lines of the boot log, and the boot's timeline is kept in the
    /// stack's state (`boot`, shown by `status`).
    ///
    /// ```rhai
    /// let results = health::wait_until_healthy([
    ///     #{ name: "n8n", url: `http://${vm.public_ip}:5678/healthz` },
    ///     #{ name: "postgres", tcp: "127.0.0.1:5432", on: vm },
    /// ], #{ timeout: 600, boot: vm });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn wait_until_healthy(
        ctx: NativeCallContext,
        checks: Array,
        options: Map,
    ) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let mut o = Opts::new(
            "health::wait_until_healthy",
            options,
            &["timeout", "interval", "boot"],
        )?;
        let timeout = Duration::from_secs(o.int("timeout")?.unwrap_or(600).max(1) as u64);
        let interval = Duration::from_secs(o.int("interval")?.unwrap_or(5).max(1) as u64);
        // Only an instance this run launched has a boot of this run to follow (a report that
        // claims this run's id for any other is not believed).
        let boot = match o.value("boot") {
            Some(vm) if !vm.is_unit() => Some(id_of(&vm, "an instance")?),
            _ => None,
        };
        let boot = match boot {
            Some(id) if rt.is_plan() || rt.created_this_run(&id)? => Some(id),
            _ => None,
        };
        let mut follow = boot.map(|instance| BootFollower::new(&rt, instance, Followed::Boot));
        let ov = overrides()?;
        let checks = checks
            .into_iter()
            .map(|c| {
                c.try_cast::<Map>()
                    .ok_or_else(|| usage_err("health::wait_until_healthy: each check is a map"))
                    .and_then(check_from_map)
            })
            .map(|c| c.map(|c| with_override(c, &ov)))
            .collect::<Result<Vec<_>, _>>()?;
        if checks.is_empty() {
            return Err(usage_err("health::wait_until_healthy: no checks given"));
        }
        let waiting = rt.ui.wait(&format!("{} services healthy", checks.len()));
        let deadline = Instant::now() + timeout;
        loop {
            if crate::interrupt::requested() {
                rt.add_wait(waiting.failed());
                return Err(usage_err("interrupted by Ctrl-C"));
            }
            let round = Instant::now();
            if let Some(f) = follow.as_mut() {
                if let Some(failed) = f.poll(&rt) {
                    rt.add_wait(waiting.failed());
                    f.keep(&rt);
                    return Err(failed);
                }
            }
            let results = run_round(&rt, &checks);
            let failing: Vec<&HealthResult> = results.iter().filter(|r| !r.ok).collect();
            if failing.is_empty() {
                if let Some(f) = follow.as_mut() {
                    // The boot's last steps (backups, snapshots) run after the services
                    // answer: a failure there is this deploy's too.
                    if let Err(failed) = settle(&rt, f, &waiting, interval, deadline) {
                        rt.add_wait(waiting.failed());
                        f.keep(&rt);
                        return Err(failed);
                    }
                    f.keep(&rt);
                }
                rt.add_wait(waiting.done("all healthy"));
                return Ok(results.into_iter().map(Dynamic::from).collect());
            }
            let now = Instant::now();
            if now >= deadline {
                rt.add_wait(waiting.failed());
                if let Some(f) = follow.as_mut() {
                    f.keep(&rt);
                }
                let detail = failing
                    .iter()
                    .map(|r| {
                        format!(
                            "{} ({}): {}",
                            r.name,
                            r.target,
                            r.error.as_deref().unwrap_or("failing")
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(health_err(
                    format!("not healthy after {}s: {detail}", timeout.as_secs()),
                    "check the instance's boot log (/var/log/geusemaker-boot.log) and `docker compose ps` via SSM; the run can be repeated",
                ));
            }
            let names: Vec<&str> = failing.iter().map(|r| r.name.as_str()).collect();
            let boot = follow
                .as_ref()
                .and_then(BootFollower::now)
                .map(|n| format!(" · {n}"))
                .unwrap_or_default();
            waiting.update(
                &format!(
                    "{}/{} healthy, waiting for {}{boot}",
                    results.len() - failing.len(),
                    results.len(),
                    names.join(", ")
                ),
                deadline - now,
            );
            std::thread::sleep(interval.saturating_sub(round.elapsed()).min(deadline - now));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(name: &str, url: &str) -> Check {
        Check {
            name: name.into(),
            probe: Probe::Http {
                url: url.into(),
                status: 200,
                body: Vec::new(),
                post: None,
            },
            timeout: Duration::from_secs(5),
            on: Some("i-1".into()),
        }
    }

    #[test]
    fn overrides_parse_and_redirect_keeping_the_path() {
        let o = endpoint_overrides(Some("n8n=127.0.0.1:4000, postgres=127.0.0.1:4001")).unwrap();
        let c = with_override(http("n8n", "https://d111.cloudfront.net/healthz"), &o);
        assert_eq!(
            c.probe,
            Probe::Http {
                url: "http://127.0.0.1:4000/healthz".into(),
                status: 200,
                body: Vec::new(),
                post: None,
            }
        );
        assert_eq!(c.on, None, "an overridden check runs from here");
        let t = Check {
            name: "postgres".into(),
            probe: Probe::Tcp {
                addr: "127.0.0.1:5432".into(),
            },
            timeout: Duration::from_secs(3),
            on: Some("i-1".into()),
        };
        assert_eq!(
            with_override(t, &o).probe,
            Probe::Tcp {
                addr: "127.0.0.1:4001".into()
            }
        );
        assert!(endpoint_overrides(Some("n8n")).is_err());
        assert!(endpoint_overrides(Some("n8n=localhost")).is_err());
        assert!(endpoint_overrides(None).unwrap().is_empty());
    }

    #[test]
    fn remote_output_is_parsed_per_check() {
        let checks = vec![
            http("n8n", "http://127.0.0.1:5678/healthz"),
            http("ollama", "http://127.0.0.1:11434/api/tags"),
            Check {
                name: "postgres".into(),
                probe: Probe::Tcp {
                    addr: "127.0.0.1:5432".into(),
                },
                timeout: Duration::from_secs(3),
                on: Some("i-1".into()),
            },
        ];
        let script = remote_script(&checks);
        assert_eq!(script.len(), 4);
        assert!(script[1].contains("curl -s -o /tmp/gm-health-0"));
        assert!(script[3].contains("/dev/tcp/127.0.0.1/5432"));
        let out = "noise\nGMCHECK 0 200 12 ok\nGMCHECK 1 503 40 fail\n";
        let r = parse_remote(out, &checks);
        assert!(r[0].ok && r[0].status == 200 && r[0].latency_ms == 12);
        assert!(!r[1].ok);
        assert_eq!(r[1].error.as_deref(), Some("HTTP 503, expected 200"));
        assert_eq!(r[2].error.as_deref(), Some("no result from the instance"));
        assert!(parse_remote("", &checks).iter().all(|r| !r.ok));
    }

    #[test]
    fn container_health_is_read_from_docker_and_stood_in_by_its_json() {
        let c = check_from_map(rhai::Map::from_iter([
            ("name".into(), "postgres".into()),
            ("container_health".into(), true.into()),
            ("on".into(), "i-1".into()),
        ]))
        .unwrap();
        assert_eq!(
            c.probe,
            Probe::Container {
                service: "postgres".into()
            }
        );
        let script = remote_script(std::slice::from_ref(&c));
        assert!(script[1].contains("ps -q 'postgres'"), "{}", script[1]);
        assert!(script[1].contains("docker inspect --format '{{json .State.Health}}'"));
        assert!(script[1].contains(CONTAINER_HEALTHY));
        let r = parse_remote("GMCHECK 0 0 30 fail\n", std::slice::from_ref(&c));
        assert!(r[0].error.as_deref().unwrap().contains("not healthy"));
        // A stand-in answers Docker's JSON: "unhealthy" must not pass for "healthy".
        let o = endpoint_overrides(Some("postgres=127.0.0.1:4001")).unwrap();
        let Probe::Http { body, .. } = with_override(c, &o).probe else {
            panic!("redirected to HTTP");
        };
        assert!(!"{\"Status\":\"unhealthy\"}".contains(body[0].as_str()));
        assert!("{\"Status\":\"healthy\"}".contains(body[0].as_str()));
    }

    #[test]
    fn post_checks_read_their_secrets_at_check_time_and_never_run_remotely() {
        let json = serde_json::json!({
            "emailOrLdapLoginId": "ops@example.com",
            "password": { "secret": "/geusemaker/s/n8n/owner_password" },
        });
        let read = |name: &str| -> Result<String, String> {
            assert_eq!(name, "/geusemaker/s/n8n/owner_password");
            Ok("Gm1-value".into())
        };
        assert_eq!(
            with_secrets(&json, &read).unwrap(),
            serde_json::json!({ "emailOrLdapLoginId": "ops@example.com", "password": "Gm1-value" })
        );
        let missing = |_: &str| -> Result<String, String> { Err("secret x does not exist".into()) };
        assert!(with_secrets(&json, &missing).is_err());
        let remote = check_from_map(rhai::Map::from_iter([
            ("url".into(), "http://127.0.0.1:5678/rest/login".into()),
            ("post".into(), rhai::Dynamic::from_map(rhai::Map::new())),
            ("on".into(), "i-1".into()),
        ]));
        assert!(
            remote.is_err(),
            "a POST with secrets never travels in an SSM command"
        );
        let many = check_from_map(rhai::Map::from_iter([
            ("url".into(), "http://127.0.0.1:11434/api/tags".into()),
            (
                "body".into(),
                rhai::Dynamic::from_array(vec!["llama3.2:3b".into(), "nomic-embed-text".into()]),
            ),
            ("on".into(), "i-1".into()),
        ]))
        .unwrap();
        let script = remote_script(&[many]);
        assert!(
            script[1].contains("grep -qF -- 'llama3.2:3b'")
                && script[1].contains("grep -qF -- 'nomic-embed-text'"),
            "every model must be listed: {}",
            script[1]
        );
    }

    #[test]
    fn a_post_check_reads_only_its_own_stacks_parameters_and_is_never_stored() {
        let mut m = rhai::Map::new();
        m.insert("url".into(), "http://127.0.0.1:9/rest/login".into());
        let mut post = rhai::Map::new();
        let mut secret = rhai::Map::new();
        secret.insert(
            "secret".into(),
            "/geusemaker/other/n8n/owner_password".into(),
        );
        post.insert("password".into(), rhai::Dynamic::from_map(secret));
        m.insert("post".into(), rhai::Dynamic::from_map(post));
        let check = check_from_map(m).unwrap();
        let resolved = resolve_posts(None, Some("/geusemaker/mine/"), vec![check.clone()]);
        let failed = resolved.into_iter().next().unwrap().unwrap_err();
        assert!(
            failed.error.unwrap().contains("not one of this stack's"),
            "another stack's secret is refused before AWS is asked"
        );
        let outside_a_run = resolve_posts(None, None, vec![check]);
        assert!(outside_a_run[0].is_err());
        let stored = serde_json::json!([{ "url": "http://127.0.0.1:9/", "post": {} }]);
        assert!(checks_from_json(&stored)
            .unwrap_err()
            .contains("deploy only"));
    }
}
