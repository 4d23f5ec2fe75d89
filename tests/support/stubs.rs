//! Local HTTP stand-ins for what only exists on a real instance or on the internet: the
//! services of the AI stack, n8n's login, the checkip service, flaky and gated servers.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// A tiny HTTP server on loopback answering every request with `status` and `body`;
/// stands in for a service that only exists on a real instance.
pub fn http_stub(status: u16, body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || serve_one(stream, status, body.as_bytes(), "text/plain"));
        }
    });
    port
}

/// The public address the checkip stand-in gives the deployer (a documentation address).
pub const DEPLOYER_IP: &str = "203.0.113.9";

/// The checkip stand-in every run of the binary asks (one per test binary).
pub fn checkip_url() -> String {
    static PORT: std::sync::OnceLock<u16> = std::sync::OnceLock::new();
    let port = *PORT.get_or_init(|| http_stub(200, "203.0.113.9\n"));
    format!("http://127.0.0.1:{port}/")
}

/// Like [`http_stub`] with a JSON body and content type (for AWS JSON protocols).
pub fn json_stub(body: String) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let body: &'static str = Box::leak(body.into_boxed_str());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                serve_one(stream, 200, body.as_bytes(), "application/x-amz-json-1.1")
            });
        }
    });
    port
}

/// An n8n stand-in: every GET answers 200 (health, readiness); `POST /rest/login` answers
/// `login_status` and its bodies are kept (returned) for the test to read.
pub fn n8n_stub(login_status: u16) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let logins = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = logins.clone();
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            let seen = seen.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut len = 0usize;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                let status = if request.starts_with("POST /rest/login ") {
                    seen.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&body).into_owned());
                    login_status
                } else {
                    200
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
            });
        }
    });
    (port, logins)
}

fn serve_one(mut stream: TcpStream, status: u16, body: &[u8], content_type: &str) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut len = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            len = v.trim().parse().unwrap_or(0);
        }
        if line == "\r\n" {
            break;
        }
    }
    let mut discard = vec![0u8; len];
    let _ = reader.read_exact(&mut discard);
    let _ = write!(
        stream,
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(body);
}

/// An HTTP stand-in that answers 503 to its first `fail_first` requests, then 200.
pub fn flaky_stub(fail_first: usize) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let status = if n < fail_first { 503 } else { 200 };
            std::thread::spawn(move || serve_one(stream, status, b"flaky", "text/plain"));
        }
    });
    port
}

/// A stand-in that answers 503 until its gate is opened, then 200: a service that comes up
/// when the test says so.
#[derive(Clone, Default)]
pub struct Gate {
    open: std::sync::Arc<std::sync::atomic::AtomicBool>,
    ok_served: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Gate {
    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    /// How many 200s it has answered.
    pub fn ok_served(&self) -> usize {
        self.ok_served.load(std::sync::atomic::Ordering::SeqCst)
    }
}

pub fn gated_stub() -> (u16, Gate) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let gate = Gate::default();
    let g = gate.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let status = if g.open.load(std::sync::atomic::Ordering::SeqCst) {
                200
            } else {
                503
            };
            let g = g.clone();
            std::thread::spawn(move || {
                serve_one(stream, status, b"gated", "text/plain");
                if status == 200 {
                    g.ok_served
                        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    (port, gate)
}

/// What `docker inspect --format '{{json .State.Health}}'` prints for a healthy container.
pub const CONTAINER_HEALTHY_JSON: &str = "{\"Status\":\"healthy\",\"FailingStreak\":0,\"Log\":[]}";

/// … and for one whose healthcheck fails (a stopped server behind a port that still accepts).
pub const CONTAINER_UNHEALTHY_JSON: &str =
    "{\"Status\":\"unhealthy\",\"FailingStreak\":4,\"Log\":[]}";

/// Local stand-ins for the five services of the AI stack; the value for
/// GEUSEMAKER_HEALTH_ENDPOINTS.
pub fn stand_ins() -> String {
    stand_ins_with_n8n(http_stub(200, "ok"))
}

/// [`stand_ins`] with n8n answered by the server on `n8n` (e.g. a [`flaky_stub`]).
pub fn stand_ins_with_n8n(n8n: u16) -> String {
    // Ollama lists the tiers' default models (GET /api/tags); PostgreSQL's stand-in answers what
    // `docker inspect` says of a healthy container; n8n's also takes the owner's login.
    let ollama = http_stub(
        200,
        "{\"models\":[{\"name\":\"llama3.2:3b\",\"model\":\"llama3.2:3b\"},{\"name\":\"llama3.1:8b\",\"model\":\"llama3.1:8b\"}]}",
    );
    let qdrant = http_stub(200, "healthz check passed");
    let crawl4ai = http_stub(200, "{\"status\":\"ok\"}");
    let postgres = http_stub(200, CONTAINER_HEALTHY_JSON);
    format!("n8n=127.0.0.1:{n8n},n8n-login=127.0.0.1:{n8n},ollama=127.0.0.1:{ollama},qdrant=127.0.0.1:{qdrant},crawl4ai=127.0.0.1:{crawl4ai},postgres=127.0.0.1:{postgres}")
}
