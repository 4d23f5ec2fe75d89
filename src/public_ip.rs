//! This machine's public IPv4 address as the internet sees it: the default of "who may
//! connect" is the deployer alone (`<address>/32`), never the whole internet.
//!
//! Asked of AWS's checkip service (one line: the caller's address). People behind a proxy
//! whose egress differs, and tests, point [`CHECKIP_URL_ENV`] at another service that answers
//! the same way.

use std::net::Ipv4Addr;
use std::sync::OnceLock;
use std::time::Duration;

/// Overrides the address service (an `http(s)://` URL answering with one IPv4 address).
pub const CHECKIP_URL_ENV: &str = "GEUSEMAKER_CHECKIP_URL";
/// AWS's own "what is my IP" service.
pub const DEFAULT_CHECKIP_URL: &str = "https://checkip.amazonaws.com/";

/// Why the address could not be found.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error("could not ask {url} for this machine's public address: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered HTTP {status} instead of this machine's public address")]
    Status { url: String, status: u16 },
    #[error("{url} answered `{answer}`, not an IPv4 address")]
    NotAnAddress { url: String, answer: String },
    #[error("{url}: the address service must be https:// (plain http only on this machine)")]
    NotHttps { url: String },
}

/// The service to ask: [`CHECKIP_URL_ENV`] or [`DEFAULT_CHECKIP_URL`].
pub fn checkip_url() -> String {
    std::env::var(CHECKIP_URL_ENV)
        .ok()
        .filter(|u| !u.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_CHECKIP_URL.to_string())
}

fn client() -> &'static reqwest::Client {
    static CLIENT: OnceLock<reqwest::Client> = OnceLock::new();
    CLIENT.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("geusemaker/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("HTTP client builds")
    })
}

/// This machine's public IPv4 address, asked of [`checkip_url`]. Over HTTPS (an answer over
/// plain HTTP could be forged on the way and let a stranger in): plain HTTP only to this
/// machine itself (a local stand-in).
pub async fn detect() -> Result<Ipv4Addr, DetectError> {
    let url = checkip_url();
    let local = [
        "http://127.0.0.1:",
        "http://127.0.0.1/",
        "http://localhost:",
        "http://localhost/",
    ];
    if !url.starts_with("https://") && !local.iter().any(|p| url.starts_with(p)) {
        return Err(DetectError::NotHttps { url });
    }
    let unreachable = |e: reqwest::Error| DetectError::Unreachable {
        url: url.clone(),
        reason: if e.is_timeout() {
            "timed out".into()
        } else if e.is_connect() {
            "no connection".into()
        } else {
            e.to_string()
        },
    };
    let resp = client().get(&url).send().await.map_err(unreachable)?;
    let status = resp.status().as_u16();
    if status != 200 {
        return Err(DetectError::Status { url, status });
    }
    let text = resp.text().await.map_err(unreachable)?;
    parse(&text).ok_or_else(|| DetectError::NotAnAddress {
        url,
        answer: text.trim().chars().take(60).collect(),
    })
}

/// [`detect`], asked once per process (a run may need it in several places).
pub async fn detect_cached() -> Result<Ipv4Addr, DetectError> {
    static FOUND: OnceLock<Ipv4Addr> = OnceLock::new();
    if let Some(ip) = FOUND.get() {
        return Ok(*ip);
    }
    let ip = detect().await?;
    Ok(*FOUND.get_or_init(|| ip))
}

/// The address in the service's answer (one line, surrounding space allowed).
pub fn parse(answer: &str) -> Option<Ipv4Addr> {
    let ip: Ipv4Addr = answer.trim().parse().ok()?;
    // A private, loopback or otherwise unroutable answer is not how the internet sees us.
    let unroutable = ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1]);
    (!unroutable).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_one_ipv4_address() {
        assert_eq!(parse("203.0.113.7\n"), Some(Ipv4Addr::new(203, 0, 113, 7)));
        assert_eq!(parse("2001:db8::1"), None);
        assert_eq!(parse("<html>captive portal</html>"), None);
        assert_eq!(parse(""), None);
        assert_eq!(parse("10.1.2.3"), None, "private");
        assert_eq!(parse("100.64.0.1"), None, "carrier-grade NAT");
        assert_eq!(parse("127.0.0.1"), None);
    }
}
