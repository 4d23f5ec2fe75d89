//! What a run of the binary gave ([`Outcome`]) and checks of what it generates: shell scripts,
//! boot-script files, Compose files, file modes.

use std::path::Path;
use std::process::Command;

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

pub fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(p).unwrap().mode() & 0o777
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
