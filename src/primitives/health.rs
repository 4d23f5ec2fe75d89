//! `health::` — HTTP and TCP checks, and waiting until a set of them passes.

use std::fmt;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use rhai::plugin::*;
use rhai::{Array, CustomType, Dynamic, Engine, EvalAltResult, Map};

use super::opts::Opts;
use super::{rt, usage_err, usage_err_hint};

/// The outcome of one check.
#[derive(Debug, Clone, CustomType)]
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

/// One check to run.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    Http {
        name: String,
        url: String,
        status: u16,
        body: Option<String>,
        timeout: Duration,
    },
    Tcp {
        name: String,
        addr: String,
        timeout: Duration,
    },
}

impl Check {
    fn name(&self) -> &str {
        match self {
            Check::Http { name, .. } | Check::Tcp { name, .. } => name,
        }
    }
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

/// Run one check (never fails: a failure is a result with `ok == false`).
pub async fn run_check(check: &Check) -> HealthResult {
    let start = Instant::now();
    let ms = |s: Instant| s.elapsed().as_millis() as i64;
    match check {
        Check::Http {
            name,
            url,
            status,
            body,
            timeout,
        } => {
            let outcome = async {
                let resp = client()
                    .get(url)
                    .timeout(*timeout)
                    .send()
                    .await
                    .map_err(|e| (0, describe(&e)))?;
                let code = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                if code != *status {
                    return Err((code as i64, format!("HTTP {code}, expected {status}")));
                }
                if let Some(b) = body {
                    if !text.contains(b.as_str()) {
                        return Err((code as i64, format!("body does not contain {b:?}")));
                    }
                }
                Ok(code as i64)
            }
            .await;
            match outcome {
                Ok(code) => HealthResult {
                    name: name.clone(),
                    target: url.clone(),
                    ok: true,
                    status: code,
                    latency_ms: ms(start),
                    error: None,
                },
                Err((code, e)) => HealthResult {
                    name: name.clone(),
                    target: url.clone(),
                    ok: false,
                    status: code,
                    latency_ms: ms(start),
                    error: Some(e),
                },
            }
        }
        Check::Tcp {
            name,
            addr,
            timeout,
        } => {
            let r =
                tokio::time::timeout(*timeout, tokio::net::TcpStream::connect(addr.as_str())).await;
            let error = match r {
                Ok(Ok(_)) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no connection within {}ms", timeout.as_millis())),
            };
            HealthResult {
                name: name.clone(),
                target: addr.clone(),
                ok: error.is_none(),
                status: 0,
                latency_ms: ms(start),
                error,
            }
        }
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

fn http_check(func: &'static str, url: &str, mut o: Opts) -> Result<Check, Box<EvalAltResult>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage_err(format!("{func}: `{url}` is not an http(s) URL")));
    }
    let status = o.int("status")?.unwrap_or(200);
    Ok(Check::Http {
        name: o.str("name")?.unwrap_or_else(|| url.to_string()),
        url: url.to_string(),
        status: u16::try_from(status)
            .map_err(|_| usage_err(format!("{func}: bad status {status}")))?,
        body: o.str("body")?,
        timeout: timeout_of(&mut o, 5_000)?,
    })
}

fn tcp_check(func: &'static str, addr: String, mut o: Opts) -> Result<Check, Box<EvalAltResult>> {
    if addr
        .rsplit_once(':')
        .is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())
    {
        return Err(usage_err(format!("{func}: `{addr}` is not host:port")));
    }
    Ok(Check::Tcp {
        name: o.str("name")?.unwrap_or_else(|| addr.clone()),
        addr,
        timeout: timeout_of(&mut o, 3_000)?,
    })
}

/// A check from a map: `#{ name, url, status, body, timeout_ms }` or `#{ name, tcp: "host:port", timeout_ms }`.
fn check_from_map(map: Map) -> Result<Check, Box<EvalAltResult>> {
    const F: &str = "health::wait_until_healthy";
    let mut o = Opts::new(
        F,
        map,
        &["name", "url", "tcp", "status", "body", "timeout_ms"],
    )?;
    match (o.str("url")?, o.str("tcp")?) {
        (Some(url), None) => http_check(F, &url, o),
        (None, Some(addr)) => tcp_check(F, addr, o),
        _ => Err(usage_err(format!(
            "{F}: each check needs exactly one of `url` or `tcp`"
        ))),
    }
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
    /// contains that text. Options: `status`, `body`, `timeout_ms` (5000), `name`.
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
                &["status", "body", "timeout_ms", "name"],
            )?,
        )?;
        Ok(rt.blocking.block_on(run_check(&check)))
    }

    /// Open a TCP connection to `host:port`. Options: `timeout_ms` (3000), `name`.
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
            Opts::new("health::tcp", options, &["timeout_ms", "name"])?,
        )?;
        Ok(rt.blocking.block_on(run_check(&check)))
    }

    /// Run all `checks` (maps: `#{ name, url, status, body, timeout_ms }` or
    /// `#{ name, tcp: "host:port" }`) every `interval` seconds (5) until every one passes or
    /// `timeout` seconds (600) have passed; returns the final results. The error on timeout
    /// names each failing check and its last error.
    ///
    /// ```rhai
    /// let results = health::wait_until_healthy([
    ///     #{ name: "n8n", url: `http://${ip}:5678/healthz` },
    ///     #{ name: "postgres", tcp: `${ip}:5432` },
    /// ], #{ timeout: 600 });
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
            &["timeout", "interval"],
        )?;
        let timeout = Duration::from_secs(o.int("timeout")?.unwrap_or(600).max(1) as u64);
        let interval = Duration::from_secs(o.int("interval")?.unwrap_or(5).max(1) as u64);
        let checks = checks
            .into_iter()
            .map(|c| {
                c.try_cast::<Map>()
                    .ok_or_else(|| usage_err("health::wait_until_healthy: each check is a map"))
                    .and_then(check_from_map)
            })
            .collect::<Result<Vec<_>, _>>()?;
        if checks.is_empty() {
            return Err(usage_err("health::wait_until_healthy: no checks given"));
        }
        let waiting = rt.ui.wait(&format!("{} services healthy", checks.len()));
        let deadline = Instant::now() + timeout;
        loop {
            let round = Instant::now();
            let results: Vec<HealthResult> = rt.blocking.block_on(run_all(&checks));
            let failing: Vec<&HealthResult> = results.iter().filter(|r| !r.ok).collect();
            if failing.is_empty() {
                rt.add_wait(waiting.done("all healthy"));
                return Ok(results.into_iter().map(Dynamic::from).collect());
            }
            let now = Instant::now();
            if now >= deadline {
                rt.add_wait(waiting.failed());
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
                return Err(usage_err_hint(
                    format!("not healthy after {}s: {detail}", timeout.as_secs()),
                    "check the instance's boot log (cloud-init) and `docker compose ps` via SSM; the run can be repeated",
                ));
            }
            let names: Vec<&str> = failing.iter().map(|r| r.name.as_str()).collect();
            waiting.update(
                &format!(
                    "{}/{} healthy, waiting for {}",
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

/// Run every check concurrently; results in the order of `checks`.
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
        .map(|(r, c)| {
            r.unwrap_or_else(|| HealthResult {
                name: c.name().to_string(),
                target: String::new(),
                ok: false,
                status: 0,
                latency_ms: 0,
                error: Some("check panicked".into()),
            })
        })
        .collect()
}
