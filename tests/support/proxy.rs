//! A fault-injecting HTTP proxy in front of moto (loopback only): requests whose body contains
//! every substring of a rule get that rule's canned AWS error instead of being forwarded.
//! Everything else goes to moto unchanged. One request per connection, `Connection: close`.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

#[derive(Clone, Debug)]
pub struct Rule {
    /// All must occur in the (form-encoded or JSON) request body.
    pub body_contains: Vec<String>,
    pub status: u16,
    pub content_type: &'static str,
    pub response: String,
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
        }
    }
}

impl Rule {
    /// An error of a JSON-protocol service (SSM, EFS's REST aside): `{"__type": …}`.
    pub fn json_error(body_contains: &[&str], code: &str, message: &str) -> Rule {
        Rule {
            body_contains: body_contains.iter().map(|s| s.to_string()).collect(),
            status: 400,
            content_type: "application/x-amz-json-1.1",
            response: format!("{{\"__type\":\"{code}\",\"message\":\"{message}\"}}"),
        }
    }
}

pub struct FaultProxy {
    pub port: u16,
    pub hits: Arc<Mutex<Vec<String>>>,
}

impl FaultProxy {
    pub fn start(upstream: &str, rules: Vec<Rule>) -> FaultProxy {
        let upstream = upstream.trim_start_matches("http://").to_string();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let rules = Arc::new(rules);
        let h = hits.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, rules, hits) = (upstream.clone(), rules.clone(), h.clone());
                std::thread::spawn(move || {
                    let _ = handle(client, &upstream, &rules, &hits);
                });
            }
        });
        FaultProxy { port, hits }
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

    if let Some(rule) = rules
        .iter()
        .find(|r| r.body_contains.iter().all(|s| text.contains(s.as_str())))
    {
        hits.lock().unwrap().push(text.to_string());
        write!(
            client,
            "HTTP/1.1 {} Fault\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
            rule.status,
            rule.content_type,
            rule.response.len(),
            rule.response
        )?;
        return Ok(());
    }

    let mut up = TcpStream::connect(upstream)?;
    for line in &head {
        up.write_all(line.as_bytes())?;
    }
    up.write_all(b"Connection: close\r\n\r\n")?;
    up.write_all(&body)?;
    let mut response = Vec::new();
    up.read_to_end(&mut response)?;
    // Re-frame the headers with `Connection: close` so the client does not reuse the socket.
    let split = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| i + 4)
        .unwrap_or(response.len());
    let (resp_head, resp_body) = response.split_at(split);
    let resp_head = String::from_utf8_lossy(resp_head);
    let mut out = String::new();
    for line in resp_head.split("\r\n").filter(|l| !l.is_empty()) {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Connection: close\r\n\r\n");
    client.write_all(out.as_bytes())?;
    client.write_all(resp_body)?;
    Ok(())
}
