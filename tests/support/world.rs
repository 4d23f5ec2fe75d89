//! The moto server the suite shares, and a test's world: its own `$GEUSEMAKER_HOME`, the
//! binary run in it, the state it leaves.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use assert_cmd::cargo::CommandCargoExt;

use super::{checkip_url, proxy, Outcome, Sdk};

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
