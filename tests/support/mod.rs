//! Test support: one moto server for the suite, a temp `$GEUSEMAKER_HOME` per test, the
//! real binary run with the endpoint and fake credentials, and SDK clients for assertions.

pub mod proxy;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

/// The moto server shared by every test of the suite, behind a proxy that answers the few
/// calls moto does not implement as AWS does (recorded answers, see [`moto_gaps`]).
pub struct Moto {
    /// Where the binary and the tests send AWS requests (the gap proxy).
    pub endpoint: String,
    /// moto itself.
    pub direct: String,
    _gaps: proxy::FaultProxy,
}

/// AWS calls moto 5.2.1 does not implement, answered as AWS does for a stack that has none of
/// the things asked about: AWS Backup's recovery points of a file system (none yet).
pub fn moto_gaps() -> Vec<proxy::Rule> {
    vec![proxy::Rule::rest_json(
        "GET /resources/",
        200,
        r#"{"RecoveryPoints":[]}"#,
    )]
}

/// Start moto (once) with the strict validation flags from shared/reference/moto-coverage.md.
/// A shell watchdog stops it when the test process exits, however it exits.
pub fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        let port = free_port();
        let server = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let script = format!(
            "{server} -H 127.0.0.1 -p {port} >\"${{TMPDIR:-/tmp}}/geusemaker-moto-{port}.log\" 2>&1 & m=$!\n\
             trap 'kill $m 2>/dev/null' EXIT\n\
             while kill -0 {parent} 2>/dev/null && kill -0 $m 2>/dev/null; do sleep 0.5; done",
            parent = std::process::id()
        );
        let child: Child = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_KEYPAIR_VALIDATION", "true")
            .stdin(Stdio::null())
            .spawn()
            .expect("start moto_server (run scripts/test.sh, which installs it)");
        std::mem::forget(child);
        let endpoint = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while http_get(port, "/moto-api/config").is_none() {
            assert!(Instant::now() < deadline, "moto_server did not start on port {port}");
            std::thread::sleep(Duration::from_millis(100));
        }
        let gaps = proxy::FaultProxy::start(&endpoint, moto_gaps());
        Moto {
            endpoint: gaps.endpoint(),
            direct: endpoint,
            _gaps: gaps,
        }
    })
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.starts_with("HTTP/1").then_some(out)
}

/// A unique, valid stack name.
pub fn stack_name(prefix: &str) -> String {
    format!("{prefix}-{:06x}", rand_u32() & 0xff_ffff)
}

fn rand_u32() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish() as u32
}

/// One test's world: a private state directory and the environment the binary runs with.
pub struct World {
    pub home: tempfile::TempDir,
    pub region: String,
    pub endpoint: Option<String>,
}

impl World {
    /// Against moto, in `us-east-1`.
    pub fn moto() -> World {
        World::new(Some(moto().endpoint.clone()))
    }

    /// No AWS at all (for tests that must fail before any call).
    pub fn offline() -> World {
        World::new(None)
    }

    fn new(endpoint: Option<String>) -> World {
        let home = tempfile::tempdir().unwrap();
        // Empty AWS config files: nothing from the developer's ~/.aws leaks in.
        std::fs::write(home.path().join("aws-config"), "").unwrap();
        std::fs::write(home.path().join("aws-credentials"), "").unwrap();
        World {
            home,
            region: "us-east-1".into(),
            endpoint,
        }
    }

    /// The binary with this world's environment; nothing inherited from the developer's AWS setup.
    pub fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("geusemaker").unwrap();
        for (k, _) in std::env::vars() {
            if k.starts_with("AWS_") || k.starts_with("GEUSEMAKER_") {
                c.env_remove(k);
            }
        }
        c.env("GEUSEMAKER_HOME", self.home.path())
            .env("NO_COLOR", "1")
            .env("AWS_CONFIG_FILE", self.home.path().join("aws-config"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                self.home.path().join("aws-credentials"),
            )
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", &self.region)
            // "Who am I on the internet" answered locally: the deployer is DEPLOYER_IP.
            .env("GEUSEMAKER_CHECKIP_URL", checkip_url())
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .stdin(Stdio::null());
        match &self.endpoint {
            Some(e) => c.env("AWS_ENDPOINT_URL", e),
            // A closed port: any AWS call fails fast instead of reaching the internet.
            None => c.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"),
        };
        c
    }

    /// Run the binary; returns (exit code, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> Outcome {
        let out = self.cmd().args(args).output().unwrap();
        Outcome::from(out)
    }

    /// Write a recipe into the world's directory and return its path.
    pub fn recipe(&self, name: &str, text: &str) -> PathBuf {
        let dir = self.home.path().join("recipes");
        std::fs::create_dir_all(&dir).unwrap();
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn state_path(&self, stack: &str) -> PathBuf {
        self.home
            .path()
            .join("stacks")
            .join(format!("{stack}.json"))
    }

    pub fn state(&self, stack: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(self.state_path(stack)).expect("state file exists");
        serde_json::from_str(&text).expect("state file is JSON")
    }

    pub fn sdk(&self) -> Sdk {
        Sdk::new(self.endpoint.as_deref().expect("moto world"), &self.region)
    }
}

#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl From<std::process::Output> for Outcome {
    fn from(out: std::process::Output) -> Self {
        Outcome {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Outcome {
    #[track_caller]
    pub fn success(&self) -> &Self {
        assert_eq!(
            self.code, 0,
            "expected success\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }

    #[track_caller]
    pub fn failure(&self, code: i32) -> &Self {
        assert_eq!(
            self.code, code,
            "expected exit {code}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        assert!(!self.stderr.contains("panicked"), "panic:\n{}", self.stderr);
        self
    }

    #[track_caller]
    pub fn stderr_has(&self, text: &str) -> &Self {
        assert!(
            self.stderr.contains(text),
            "stderr lacks {text:?}:\n{}",
            self.stderr
        );
        self
    }

    #[track_caller]
    pub fn stdout_has(&self, text: &str) -> &Self {
        assert!(
            self.stdout.contains(text),
            "stdout lacks {text:?}:\n{}",
            self.stdout
        );
        self
    }
}

/// Assert that `script` passes shellcheck (every severity; installed by scripts/test.sh).
#[track_caller]
pub fn shellcheck(dir: &Path, name: &str, script: &str) {
    let path = dir.join(format!("{name}.sh"));
    std::fs::write(&path, script).unwrap();
    let sc = Command::new("shellcheck")
        .arg("--severity=style")
        .arg(&path)
        .output()
        .expect("shellcheck is installed by scripts/test.sh");
    assert!(
        sc.status.success(),
        "{name}: shellcheck:\n{}\n{script}",
        String::from_utf8_lossy(&sc.stdout)
    );
}

/// The content of a file the boot script writes with `userdata::write_file` (a quoted heredoc).
pub fn heredoc<'a>(script: &'a str, path: &str) -> &'a str {
    let start = format!("cat > '{path}' <<'GEUSEMAKER_EOF'\n");
    let from = script
        .find(&start)
        .unwrap_or_else(|| panic!("{path} is not written by the boot script"))
        + start.len();
    let len = script[from..].find("\nGEUSEMAKER_EOF\n").unwrap();
    &script[from..from + len]
}

/// SDK clients pointed at moto, for checking what the binary did.
pub struct Sdk {
    pub rt: tokio::runtime::Runtime,
    pub ec2: aws_sdk_ec2::Client,
    pub efs: aws_sdk_efs::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub iam: aws_sdk_iam::Client,
    pub elb: aws_sdk_elasticloadbalancingv2::Client,
    pub s3: aws_sdk_s3::Client,
}

impl Sdk {
    pub fn new(endpoint: &str, region: &str) -> Sdk {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let conf = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(endpoint)
                .region(aws_config::Region::new(region.to_string()))
                .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                    "test", "test", None, None, "tests",
                ))
                .load(),
        );
        Sdk {
            ec2: aws_sdk_ec2::Client::new(&conf),
            efs: aws_sdk_efs::Client::new(&conf),
            ssm: aws_sdk_ssm::Client::new(&conf),
            iam: aws_sdk_iam::Client::new(&conf),
            elb: aws_sdk_elasticloadbalancingv2::Client::new(&conf),
            s3: aws_sdk_s3::Client::from_conf(
                aws_sdk_s3::config::Builder::from(&conf)
                    .force_path_style(true)
                    .build(),
            ),
            rt,
        }
    }

    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// An instance's user data, read back through the EC2 API.
    pub fn user_data(&self, instance: &str) -> String {
        let raw = self.user_data_payload(instance);
        if raw.starts_with(&[0x1f, 0x8b]) {
            // Large scripts go gzipped (cloud-init unpacks them).
            use std::io::Read as _;
            let mut script = String::new();
            flate2::read::GzDecoder::new(&raw[..])
                .read_to_string(&mut script)
                .unwrap();
            return script;
        }
        String::from_utf8(raw).unwrap()
    }

    /// A SecureString parameter's decrypted value.
    pub fn secret_value(&self, name: &str) -> String {
        self.block_on(
            self.ssm
                .get_parameter()
                .name(name)
                .with_decryption(true)
                .send(),
        )
        .unwrap()
        .parameter()
        .unwrap()
        .value()
        .unwrap()
        .to_string()
    }

    /// The bytes EC2 holds as the instance's user data (at most 16 KiB).
    pub fn user_data_payload(&self, instance: &str) -> Vec<u8> {
        use base64::Engine as _;
        let ud = self
            .block_on(
                self.ec2
                    .describe_instance_attribute()
                    .instance_id(instance)
                    .attribute(aws_sdk_ec2::types::InstanceAttributeName::UserData)
                    .send(),
            )
            .unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(ud.user_data().unwrap().value().unwrap())
            .unwrap()
    }

    /// Live (non-terminated) instances tagged with the stack.
    /// Write `doc` to the stack's boot channel, as its instance would (issue 19).
    pub fn write_boot_channel(&self, stack: &str, doc: &serde_json::Value) {
        self.block_on(
            self.ssm
                .put_parameter()
                .name(format!("/geusemaker-boot/{stack}"))
                .value(doc.to_string())
                .r#type(aws_sdk_ssm::types::ParameterType::String)
                .overwrite(true)
                .send(),
        )
        .unwrap();
    }

    pub fn stack_instances(&self, stack: &str) -> Vec<aws_sdk_ec2::types::Instance> {
        let out = self
            .block_on(
                self.ec2
                    .describe_instances()
                    .filters(filter("tag:geusemaker:stack", stack))
                    .filters(
                        aws_sdk_ec2::types::Filter::builder()
                            .name("instance-state-name")
                            .values("pending")
                            .values("running")
                            .build(),
                    )
                    .send(),
            )
            .unwrap();
        out.reservations()
            .iter()
            .flat_map(|r| r.instances().to_vec())
            .collect()
    }

    pub fn stack_security_groups(&self, stack: &str) -> Vec<aws_sdk_ec2::types::SecurityGroup> {
        self.block_on(
            self.ec2
                .describe_security_groups()
                .filters(filter("tag:geusemaker:stack", stack))
                .send(),
        )
        .unwrap()
        .security_groups()
        .to_vec()
    }
}

pub fn filter(name: &str, value: &str) -> aws_sdk_ec2::types::Filter {
    aws_sdk_ec2::types::Filter::builder()
        .name(name)
        .values(value)
        .build()
}

/// Tag value by key.
pub fn tag<'a>(tags: &'a [aws_sdk_ec2::types::Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(|t| t.value())
}

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

pub fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().mode() & 0o777
}

/// Everything in AWS that belongs to `stack`, by kind: what destroy must leave empty.
#[derive(Debug, Default, PartialEq)]
pub struct Leftovers {
    pub instances: Vec<String>,
    pub security_groups: Vec<String>,
    pub volumes: Vec<String>,
    pub key_pairs: Vec<String>,
    pub file_systems: Vec<String>,
    pub parameters: Vec<String>,
    pub roles: Vec<String>,
    pub profiles: Vec<String>,
}

impl Leftovers {
    pub fn non_data(&self) -> Vec<String> {
        [
            &self.instances,
            &self.security_groups,
            &self.key_pairs,
            &self.roles,
            &self.profiles,
        ]
        .into_iter()
        .flatten()
        .cloned()
        .collect()
    }

    pub fn is_empty(&self) -> bool {
        self.non_data().is_empty()
            && self.volumes.is_empty()
            && self.file_systems.is_empty()
            && self.parameters.is_empty()
    }
}

impl Sdk {
    pub fn leftovers(&self, stack: &str) -> Leftovers {
        let tag = filter("tag:geusemaker:stack", stack);
        let instances = self
            .stack_instances(stack)
            .iter()
            .filter_map(|i| i.instance_id().map(str::to_string))
            .collect();
        let security_groups = self
            .stack_security_groups(stack)
            .iter()
            .filter_map(|g| g.group_id().map(str::to_string))
            .collect();
        let vols = self
            .block_on(self.ec2.describe_volumes().filters(tag.clone()).send())
            .unwrap();
        let volumes = vols
            .volumes()
            .iter()
            .filter_map(|v| v.volume_id().map(str::to_string))
            .collect();
        let keys = self
            .block_on(self.ec2.describe_key_pairs().filters(tag).send())
            .unwrap();
        let key_pairs = keys
            .key_pairs()
            .iter()
            .filter_map(|k| k.key_name().map(str::to_string))
            .collect();
        // Every page: a test binary's moto holds more file systems than one page.
        let mut all = Vec::new();
        let mut marker: Option<String> = None;
        loop {
            let page = self
                .block_on(
                    self.efs
                        .describe_file_systems()
                        .set_marker(marker.clone())
                        .send(),
                )
                .unwrap();
            all.extend(page.file_systems().iter().cloned());
            marker = page.next_marker().map(str::to_string);
            if marker.is_none() {
                break;
            }
        }
        let file_systems = all
            .iter()
            .filter(|f| {
                f.tags()
                    .iter()
                    .any(|t| t.key() == "geusemaker:stack" && t.value() == stack)
            })
            .map(|f| f.file_system_id().to_string())
            .collect();
        let params = self
            .block_on(
                self.ssm
                    .get_parameters_by_path()
                    .path(format!("/geusemaker/{stack}/"))
                    .recursive(true)
                    .send(),
            )
            .unwrap();
        let parameters = params
            .parameters()
            .iter()
            .filter_map(|p| p.name().map(str::to_string))
            .collect();
        let roles = self.block_on(self.iam.list_roles().send()).unwrap();
        let roles = roles
            .roles()
            .iter()
            .map(|r| r.role_name().to_string())
            .filter(|n| n.starts_with(&format!("{stack}-")))
            .collect();
        let profiles = self
            .block_on(self.iam.list_instance_profiles().send())
            .unwrap();
        let profiles = profiles
            .instance_profiles()
            .iter()
            .map(|p| p.instance_profile_name().to_string())
            .filter(|n| n.starts_with(&format!("{stack}-")))
            .collect();
        Leftovers {
            instances,
            security_groups,
            volumes,
            key_pairs,
            file_systems,
            parameters,
            roles,
            profiles,
        }
    }
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

/// Request an ACM certificate from moto (a raw JSON-protocol call: the tool itself never
/// creates certificates) and return its ARN.
pub fn acm_certificate(endpoint: &str, domain: &str) -> String {
    let addr = endpoint.trim_start_matches("http://");
    let body = format!("{{\"DomainName\":\"{domain}\"}}");
    let mut s = TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/x-amz-json-1.1\r\nX-Amz-Target: CertificateManager.RequestCertificate\r\n\
         Authorization: AWS4-HMAC-SHA256 Credential=test/20260101/us-east-1/acm/aws4_request, SignedHeaders=host, Signature=0\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let json = &out[out.find("\r\n\r\n").unwrap() + 4..];
    let v: serde_json::Value = serde_json::from_str(json).unwrap();
    v["CertificateArn"].as_str().unwrap().to_string()
}

/// A program in a real terminal: a tmux session on a private socket (tmux is installed by
/// scripts/test.sh). The server is killed when this is dropped.
pub struct Tmux {
    socket: String,
    session: &'static str,
}

impl Tmux {
    /// Start `command` (a shell command line) in `cwd`, in a `width`×`height` terminal.
    pub fn start(name: &str, cwd: &Path, command: &str, width: u16, height: u16) -> Tmux {
        let t = Tmux {
            socket: format!("gm{name}-{}", std::process::id()),
            session: "s",
        };
        let (w, h, dir) = (
            width.to_string(),
            height.to_string(),
            cwd.to_string_lossy().to_string(),
        );
        t.run(&[
            "new-session",
            "-d",
            "-s",
            t.session,
            "-x",
            &w,
            "-y",
            &h,
            "-c",
            &dir,
            command,
        ]);
        t
    }

    /// A tmux command on this socket.
    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new("tmux")
            .args(["-L", &self.socket])
            .args(args)
            .output()
            .expect("tmux is installed by scripts/test.sh")
    }

    /// Send keys (tmux key names, e.g. "Enter", "C-c") to the session.
    pub fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", self.session];
        args.extend_from_slice(keys);
        self.run(&args);
    }

    /// Type `text` literally, then Enter.
    pub fn line(&self, text: &str) {
        self.run(&["send-keys", "-t", self.session, "-l", text]);
        self.keys(&["Enter"]);
    }

    /// What the terminal shows, with up to 200 lines of scrollback.
    pub fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-S", "-200", "-t", self.session]);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Wait (up to `secs`) until the screen shows `text`, and a moment more for the program to
    /// settle; returns the screen.
    pub fn wait_for(&self, text: &str, secs: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.screen();
            if s.contains(text) {
                std::thread::sleep(Duration::from_millis(200));
                return s;
            }
            assert!(
                Instant::now() < deadline,
                "never saw {text:?} on screen:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Is the program still running?
    pub fn alive(&self) -> bool {
        self.run(&["has-session", "-t", self.session])
            .status
            .success()
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// Validate against the vendored Compose Specification schema (PyYAML + jsonschema).
pub fn validate_compose_schema(dir: &Path, name: &str, compose: &str) {
    let path = dir.join(format!("{name}.compose.yaml"));
    std::fs::write(&path, compose).unwrap();
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/validate_compose.py"
        ))
        .arg(&path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{name}: the compose file violates the Compose Specification:\n{}{}\n{compose}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A policy document as IAM returns it (URL-encoded), decoded.
pub fn url_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// An EC2 tag.
pub fn ec2_tag(key: &str, value: &str) -> aws_sdk_ec2::types::Tag {
    aws_sdk_ec2::types::Tag::builder()
        .key(key)
        .value(value)
        .build()
}

/// The stack's app instance as every tier launches it: spot, IMDSv2 required (no credentials
/// for a request without a session token), the stack's instance profile, tagged with its stack.
pub fn assert_spot_app_instance(i: &aws_sdk_ec2::types::Instance, stack: &str) {
    assert_eq!(i.instance_lifecycle().map(|l| l.as_str()), Some("spot"));
    assert_eq!(
        i.metadata_options()
            .and_then(|m| m.http_tokens())
            .map(|t| t.as_str()),
        Some("required")
    );
    assert!(i
        .iam_instance_profile()
        .and_then(|p| p.arn())
        .unwrap()
        .ends_with(&format!("/{stack}-app")));
    assert_eq!(tag(i.tags(), "geusemaker:stack"), Some(stack));
}
