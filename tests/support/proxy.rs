//! A fault-injecting HTTP proxy in front of moto (loopback only): requests whose body contains
//! every substring of a rule get that rule's canned AWS error instead of being forwarded.
//! Everything else goes to moto — after an optional latency (or answered after a fixed service
//! time), unless a seeded share of requests
//! is answered with a protocol-correct throttling error first (EC2 query XML, query
//! `ErrorResponse` XML, JSON `__type`, REST `x-amzn-ErrorType`), or has its response lost (the
//! request reaches moto, the client gets a 503). One request per connection, `Connection: close`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Rule {
    /// All must occur in the (form-encoded or JSON) request body.
    pub body_contains: Vec<String>,
    /// Must occur in the request line (`PUT /2015-02-01/file-systems/…/backup-policy HTTP/1.1`),
    /// for REST APIs whose requests have no body to tell them apart.
    pub request_line: Option<String>,
    /// Extra response headers (e.g. an `ETag` a later request must send back).
    pub headers: Vec<(String, String)>,
    pub status: u16,
    pub content_type: &'static str,
    pub response: String,
    /// Answer only the first this many matching requests (the rest go to moto).
    pub times: Option<usize>,
    used: Arc<std::sync::atomic::AtomicUsize>,
}

impl Rule {
    /// An EC2 (query protocol) error.
    pub fn ec2_error(body_contains: &[&str], code: &str, message: &str) -> Rule {
        Rule {
            body_contains: body_contains.iter().map(|s| s.to_string()).collect(),
            status: 400,
            content_type: "text/xml",
            response: format!(
                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"
            ),
            times: None,
            request_line: None,
            headers: Vec::new(),
            used: Arc::default(),
        }
    }

    /// The same rule for the first `n` matching requests only.
    pub fn first(mut self, n: usize) -> Rule {
        self.times = Some(n);
        self
    }

    fn matches(&self, request_line: &str, body: &str) -> bool {
        self.body_contains.iter().all(|s| body.contains(s.as_str()))
            && self
                .request_line
                .as_deref()
                .is_none_or(|l| request_line.contains(l))
            && self
                .times
                .is_none_or(|n| self.used.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < n)
    }
}

impl Rule {
    /// A recorded answer of a REST-JSON API (EFS) to requests whose request line contains
    /// `request_line`: for calls moto does not implement, answered as AWS does.
    pub fn rest_json(request_line: &str, status: u16, response: &str) -> Rule {
        Rule {
            body_contains: Vec::new(),
            request_line: Some(request_line.to_string()),
            headers: Vec::new(),
            status,
            content_type: "application/json",
            response: response.to_string(),
            times: None,
            used: Arc::default(),
        }
    }

    /// A recorded answer of a REST-XML API (CloudFront) to requests whose request line
    /// contains `request_line`.
    pub fn rest_xml(request_line: &str, status: u16, response: &str) -> Rule {
        Rule {
            content_type: "text/xml",
            ..Rule::rest_json(request_line, status, response)
        }
    }

    /// The same rule, answering with this header too.
    pub fn header(mut self, name: &str, value: &str) -> Rule {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    /// A successful answer of a JSON-protocol service (SSM) to requests whose body contains
    /// all of `body_contains`.
    pub fn json(body_contains: &[&str], response: &str) -> Rule {
        Rule {
            body_contains: body_contains.iter().map(|s| s.to_string()).collect(),
            status: 200,
            content_type: "application/x-amz-json-1.1",
            response: response.to_string(),
            times: None,
            request_line: None,
            headers: Vec::new(),
            used: Arc::default(),
        }
    }

    /// An error of a JSON-protocol service (SSM, EFS's REST aside): `{"__type": …}`.
    pub fn json_error(body_contains: &[&str], code: &str, message: &str) -> Rule {
        Rule {
            body_contains: body_contains.iter().map(|s| s.to_string()).collect(),
            status: 400,
            content_type: "application/x-amz-json-1.1",
            response: format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}"),
            times: None,
            request_line: None,
            headers: Vec::new(),
            used: Arc::default(),
        }
    }
}

pub struct FaultProxy {
    pub port: u16,
    /// When the proxy started: [`Stats::times`] count from here.
    pub started: std::time::Instant,
    pub hits: Arc<Mutex<Vec<String>>>,
    pub stats: Arc<Mutex<Stats>>,
}

/// Random faults, seeded so a failing test can be replayed.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Operations (as in [`Stats::log`], e.g. `RunInstances`) whose first response is lost.
    pub lose_first: Vec<&'static str>,
    /// Added to every request before it goes to moto (moto's own work comes on top).
    pub latency: std::time::Duration,
    /// A service time instead: every answer leaves this long after its request arrived (or
    /// when moto answers, if that is later). moto's work happens inside it, as a remote
    /// service's would — moto handles requests one at a time (Python's GIL), which added
    /// latency would turn into a penalty on concurrency that AWS does not have.
    pub answer_after: std::time::Duration,
    /// Share of requests answered with a throttling error before reaching moto.
    pub throttle: f64,
    /// Share of requests whose response is lost after moto handled them.
    pub lose: f64,
    pub seed: u64,
}

/// What the proxy did.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: u64,
    pub throttled: u64,
    pub lost: u64,
    /// `(operation, outcome)` in arrival order.
    pub log: Vec<(String, &'static str)>,
    /// When each request arrived and when its answer left (since the proxy started).
    pub times: Vec<(String, std::time::Duration, std::time::Duration)>,
    /// Every request as it arrived: (request line, body).
    pub seen: Vec<(String, String)>,
}

fn roll(seed: u64, n: u64) -> f64 {
    // splitmix64: a fixed sequence per seed.
    let mut z = seed.wrapping_add(n.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// The operation a request asks for: `Action=` (query), `X-Amz-Target` (JSON), or method + path.
fn operation(head: &[String], body: &str) -> String {
    if let Some(a) = body.split('&').find_map(|kv| kv.strip_prefix("Action=")) {
        return a.to_string();
    }
    for h in head {
        if let Some(v) = h.to_ascii_lowercase().strip_prefix("x-amz-target:") {
            return v.trim().rsplit('.').next().unwrap_or("").to_string();
        }
    }
    head.first()
        .map(|l| l.trim().to_string())
        .unwrap_or_default()
}

/// A throttling answer in the request's own protocol: (status, extra header, content type, body).
fn throttling(head: &[String], body: &str) -> (u16, String, &'static str, String) {
    fault(head, body, false)
}

/// An AWS error in the request's own protocol: throttling, or (`unavailable`) a 503.
fn fault(head: &[String], body: &str, unavailable: bool) -> (u16, String, &'static str, String) {
    let is_json = head
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("x-amz-target:"));
    let path = head
        .first()
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("/");
    let (ec2_code, code, status) = if unavailable {
        ("Unavailable", "ServiceUnavailable", 503)
    } else {
        ("RequestLimitExceeded", "Throttling", 400)
    };
    if body.contains("Action=") && body.contains("Version=2016-11-15") {
        (
            503,
            String::new(),
            "text/xml",
            format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Response><Errors><Error><Code>{ec2_code}</Code><Message>fault proxy</Message></Error></Errors><RequestID>fault-proxy</RequestID></Response>"),
        )
    } else if body.contains("Action=") || path.starts_with("/2020-05-31/") {
        (
            status,
            String::new(),
            "text/xml",
            format!("<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code><Message>fault proxy</Message></Error><RequestId>fault-proxy</RequestId></ErrorResponse>"),
        )
    } else if is_json {
        let t = if unavailable {
            "ServiceUnavailableException"
        } else {
            "ThrottlingException"
        };
        (
            status,
            String::new(),
            "application/x-amz-json-1.1",
            format!("{{\"__type\":\"{t}\",\"message\":\"fault proxy\"}}"),
        )
    } else {
        let t = if unavailable {
            "ServiceUnavailableException"
        } else {
            "ThrottlingException"
        };
        (
            if unavailable { 503 } else { 429 },
            format!("x-amzn-ErrorType: {t}\r\n"),
            "application/json",
            "{\"message\":\"fault proxy\"}".into(),
        )
    }
}

impl FaultProxy {
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        Self::start_with(upstream, rules, Faults::default())
    }

    /// A proxy with rules and random faults.
    pub fn start_with(upstream: &str, rules: Vec<Rule>, faults: Faults) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let stats = Arc::new(Mutex::new(Stats::default()));
        let t0 = std::time::Instant::now();
        let rules = Arc::new(rules);
        let (h, st) = (hits.clone(), stats.clone());
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, rules, hits, stats, faults) = (
                    upstream.clone(),
                    rules.clone(),
                    h.clone(),
                    st.clone(),
                    faults.clone(),
                );
                std::thread::spawn(move || {
                    let arrived = t0.elapsed();
                    let mut op = String::new();
                    let _ = handle(client, &upstream, &rules, &hits, &stats, &faults, &mut op);
                    stats
                        .lock()
                        .unwrap()
                        .times
                        .push((op, arrived, t0.elapsed()));
                });
            }
        });
        FaultProxy {
            port,
            started: t0,
            hits,
            stats,
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats.lock().unwrap().clone()
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn hit_count(&self) -> usize {
        self.hits.lock().unwrap().len()
    }
}

fn handle(
    mut client: TcpStream,
    upstream: &str,
    rules: &[Rule],
    hits: &Mutex<Vec<String>>,
    stats: &Mutex<Stats>,
    faults: &Faults,
    op_out: &mut String,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut head = Vec::new();
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        if line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if lower.starts_with("connection:") {
            continue;
        }
        head.push(line);
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body)?;
    let text = String::from_utf8_lossy(&body);

    let request_line = head.first().map(String::as_str).unwrap_or_default();
    stats
        .lock()
        .unwrap()
        .seen
        .push((request_line.trim_end().to_string(), text.to_string()));
    if let Some(rule) = rules.iter().find(|r| r.matches(request_line, &text)) {
        hits.lock().unwrap().push(text.to_string());
        let extra: String = rule
            .headers
            .iter()
            .map(|(k, v)| format!("{k}: {v}\r\n"))
            .collect();
        write!(
            client,
            "HTTP/1.1 {} Fault\r\n{extra}Content-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            rule.status,
            rule.content_type,
            rule.response.len(),
            rule.response
        )?;
        return Ok(());
    }

    let deadline = std::time::Instant::now() + faults.answer_after;
    let at_deadline = || {
        if let Some(left) = deadline.checked_duration_since(std::time::Instant::now()) {
            std::thread::sleep(left);
        }
    };
    let op = operation(&head, &text);
    op_out.clone_from(&op);
    let n = {
        let mut s = stats.lock().unwrap();
        s.requests += 1;
        s.requests
    };
    if !faults.latency.is_zero() {
        std::thread::sleep(faults.latency);
    }
    if roll(faults.seed, 2 * n) < faults.throttle {
        let (status, extra, ctype, body) = throttling(&head, &text);
        {
            let mut s = stats.lock().unwrap();
            s.throttled += 1;
            s.log.push((op, "throttled"));
        }
        at_deadline();
        write!(
            client,
            "HTTP/1.1 {status} Throttled\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    let first_of_op = faults.lose_first.iter().any(|o| op.contains(o))
        && !stats.lock().unwrap().log.iter().any(|(o, _)| *o == op);
    let lose = first_of_op || roll(faults.seed, 2 * n + 1) < faults.lose;

    let mut up = TcpStream::connect(upstream)?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    // Read moto's answer by its Content-Length: a server that keeps the connection open
    // despite `Connection: close` must not stall the client until its timeout.
    let mut response = Vec::new();
    {
        let mut upr = BufReader::new(&mut up);
        let mut body_len: Option<usize> = None;
        loop {
            let mut line = String::new();
            if upr.read_line(&mut line)? == 0 {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                body_len = v.trim().parse().ok();
            }
            response.extend_from_slice(line.as_bytes());
            if line == "\r\n" {
                break;
            }
        }
        match body_len {
            Some(n) => {
                let mut body = vec![0u8; n];
                upr.read_exact(&mut body)?;
                response.extend_from_slice(&body);
            }
            None => {
                upr.read_to_end(&mut response)?;
            }
        }
    }
    {
        let mut s = stats.lock().unwrap();
        if lose {
            s.lost += 1;
        }
        s.log.push((op, if lose { "lost" } else { "ok" }));
    }
    at_deadline();
    if lose {
        // moto did the work; the client only hears "unavailable".
        let (status, extra, ctype, body) = fault(&head, &text, true);
        write!(
            client,
            "HTTP/1.1 {status} Unavailable\r\n{extra}Content-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        return Ok(());
    }
    // Re-frame the headers with `Connection: close` so the client does not reuse the socket.
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(response.len());
    let (resp_head, resp_body) = response.split_at(split);
    let resp_body = moto_fixup(request_line, resp_body);
    let resp_head = String::from_utf8_lossy(resp_head);
    let mut out = String::new();
    for line in resp_head.split("\r\n").filter(|l| !l.is_empty()) {
        let lower = line.to_ascii_lowercase();
        if !lower.starts_with("connection:") && !lower.starts_with("content-length:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str(&format!("Content-Length: {}\r\n", resp_body.len()));
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(&resp_body)?;
    Ok(())
}

/// moto 5.2.1 answers S3 GetBucketVersioning with the root element
/// `GetBucketVersioningResponse`; S3 (and the SDK's parser) use `VersioningConfiguration`.
/// The answer is moto's own (its status included), under the right name.
fn moto_fixup(request_line: &str, body: &[u8]) -> Vec<u8> {
    if request_line.starts_with("GET ") && request_line.contains("?versioning") {
        return String::from_utf8_lossy(body)
            .replace("GetBucketVersioningResponse", "VersioningConfiguration")
            .into_bytes();
    }
    body.to_vec()
}
