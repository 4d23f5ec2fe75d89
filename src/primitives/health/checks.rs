//! Checks from option maps: `health::http`, `health::tcp`, a container's exec, and the maps a
//! stack stores — each checked before anything runs.

use std::time::Duration;

use rhai::{Dynamic, EvalAltResult, Map};

use super::super::opts::decode;
use super::super::{id_of, usage_err};
use crate::health::{endpoint_overrides, with_override, Check, Probe, ENDPOINTS_ENV};

/// A check as a map gives it: the keys of `health::wait_until_healthy`'s checks (and of a
/// stack's stored checks); `health::http` and `health::tcp` take some of them.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct CheckSpec {
    name: Option<String>,
    url: Option<String>,
    tcp: Option<String>,
    exec: Option<String>,
    #[serde(default)]
    container_health: bool,
    status: Option<i64>,
    /// One text, or a list of texts that must all be in the body.
    body: Option<Dynamic>,
    post: Option<Dynamic>,
    timeout_ms: Option<i64>,
    on: Option<Dynamic>,
}

/// `health::http`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct HttpOptions {
    status: Option<i64>,
    body: Option<Dynamic>,
    post: Option<Dynamic>,
    timeout_ms: Option<i64>,
    name: Option<String>,
    on: Option<Dynamic>,
}

impl From<HttpOptions> for CheckSpec {
    fn from(o: HttpOptions) -> Self {
        CheckSpec {
            status: o.status,
            body: o.body,
            post: o.post,
            timeout_ms: o.timeout_ms,
            name: o.name,
            on: o.on,
            ..CheckSpec::default()
        }
    }
}

/// `health::tcp`'s options.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TcpOptions {
    timeout_ms: Option<i64>,
    name: Option<String>,
    on: Option<Dynamic>,
}

impl From<TcpOptions> for CheckSpec {
    fn from(o: TcpOptions) -> Self {
        CheckSpec {
            timeout_ms: o.timeout_ms,
            name: o.name,
            on: o.on,
            ..CheckSpec::default()
        }
    }
}

pub(super) fn timeout_of(
    func: &str,
    ms: Option<i64>,
    default_ms: i64,
) -> Result<Duration, Box<EvalAltResult>> {
    let ms = ms.unwrap_or(default_ms);
    if !(1..=120_000).contains(&ms) {
        return Err(usage_err(format!("{func}: timeout_ms must be 1..120000")));
    }
    Ok(Duration::from_millis(ms as u64))
}

pub(super) fn safe_for_shell(func: &str, what: &str, v: &str) -> Result<(), Box<EvalAltResult>> {
    if v.contains(['\'', '\n', '\\']) {
        return Err(usage_err(format!(
            "{func}: {what} may not contain quotes, backslashes or newlines"
        )));
    }
    Ok(())
}

pub(super) fn http_check(
    func: &'static str,
    url: &str,
    o: CheckSpec,
) -> Result<Check, Box<EvalAltResult>> {
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return Err(usage_err(format!("{func}: `{url}` is not an http(s) URL")));
    }
    safe_for_shell(func, "a URL", url)?;
    let status = o.status.unwrap_or(200);
    // One text, or a list of texts that must all be in the body.
    let body: Vec<String> = match o.body {
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
    let post = match o.post {
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
    let on = o.on.map(|v| id_of(&v, "an instance")).transpose()?;
    if post.is_some() && on.is_some() {
        // The request would travel in an SSM command, secrets included.
        return Err(usage_err(format!(
            "{func}: a `post` check runs from here, not `on` an instance"
        )));
    }
    Ok(Check {
        name: o.name.unwrap_or_else(|| url.to_string()),
        probe: Probe::Http {
            url: url.to_string(),
            status: u16::try_from(status)
                .map_err(|_| usage_err(format!("{func}: bad status {status}")))?,
            body,
            post,
        },
        timeout: timeout_of(func, o.timeout_ms, 5_000)?,
        on,
    })
}

pub(super) fn tcp_check(
    func: &'static str,
    addr: String,
    o: CheckSpec,
) -> Result<Check, Box<EvalAltResult>> {
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
        name: o.name.unwrap_or_else(|| addr.clone()),
        probe: Probe::Tcp { addr },
        timeout: timeout_of(func, o.timeout_ms, 3_000)?,
        on: o.on.map(|v| id_of(&v, "an instance")).transpose()?,
    })
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

/// A check from a map: `#{ name, url, status, body, timeout_ms, on }`,
/// `#{ name, tcp: "host:port", timeout_ms, on }` or `#{ name, exec: "command", timeout_ms, on }`
/// (run in the compose service `name` on instance `on`).
pub fn check_from_map(map: Map) -> Result<Check, Box<EvalAltResult>> {
    const F: &str = "health::wait_until_healthy";
    let mut o: CheckSpec = decode(F, map)?;
    let (url, tcp, exec) = (o.url.take(), o.tcp.take(), o.exec.take());
    match (url, tcp, exec, o.container_health) {
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
pub(super) fn exec_check(
    func: &'static str,
    command: Option<String>,
    o: CheckSpec,
) -> Result<Check, Box<EvalAltResult>> {
    if let Some(c) = &command {
        safe_for_shell(func, "a command", c)?;
    }
    let service = o.name.ok_or_else(|| {
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
    let on =
        o.on.map(|v| id_of(&v, "an instance"))
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
        timeout: timeout_of(func, o.timeout_ms, 5_000)?,
        on: Some(on),
    })
}
