//! The health probe engine: HTTP, TCP and container checks, run from here or `on` an instance
//! (through SSM Run Command, against the instance's loopback) for services whose ports are
//! closed to the outside. Recipes reach it through `health::` (`primitives/health.rs`); `status`
//! and `monitor` call it directly. For tests against a local AWS emulator,
//! `GEUSEMAKER_HEALTH_ENDPOINTS="n8n=127.0.0.1:PORT,postgres=…"` sends each named check to that
//! address instead.

use std::collections::HashMap;
use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rhai::CustomType;

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

    pub fn failed(&self, error: impl Into<String>) -> HealthResult {
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
        return fail_all(checks, "no AWS connection");
    };
    let id = match aws
        .ssm
        .send_command(instance, &remote_script(checks), "geusemaker health")
    {
        Ok(id) => id,
        Err(e) if e.code.contains("InvalidInstanceId") => {
            return fail_all(checks, "SSM agent on the instance not registered yet")
        }
        Err(e) => return fail_all(checks, format!("SSM: {}", e.code)),
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
            Ok(r) => return fail_all(checks, format!("SSM command still {}", r.status)),
            Err(e) => return fail_all(checks, format!("SSM: {}", e.code)),
        }
    }
}

/// Every check failed for one reason.
fn fail_all(checks: &[Check], why: impl std::fmt::Display) -> Vec<HealthResult> {
    checks.iter().map(|c| c.failed(why.to_string())).collect()
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
pub fn resolve_posts(
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

/// Apply `GEUSEMAKER_HEALTH_ENDPOINTS` to a check.
pub fn with_override(mut c: Check, o: &HashMap<String, String>) -> Check {
    if let Some(addr) = o.get(&c.name) {
        c.redirect(addr);
    }
    c
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
}
