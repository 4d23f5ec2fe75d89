//! `ssm::` — SecureString parameters (secrets) and Run Command.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use rhai::plugin::*;
use rhai::{Array, CustomType, Dynamic, Engine, EvalAltResult, Map, TypeBuilder};

use super::follow::{BootFollower, Followed};
use super::opts::{decode, keys};
use super::{id_of, rt, usage_err, OptionKeys, Runtime};
use crate::state::Kind;

/// A secret value read from SSM. It prints as `Secret(name)`, cannot be stored in the state,
/// and gives its value only through `reveal()`.
#[derive(Clone, CustomType)]
#[rhai_type(name = "Secret", extra = Self::extras)]
pub struct Secret {
    #[rhai_type(readonly)]
    pub name: String,
    #[rhai_type(skip)]
    value: String,
}

impl Secret {
    pub fn new(name: &str, value: &str) -> Self {
        Secret {
            name: name.to_string(),
            value: value.to_string(),
        }
    }

    /// The value, for primitives that must hand it to AWS (never to the logs or the state).
    pub fn reveal(&self) -> &str {
        &self.value
    }

    fn extras(b: &mut TypeBuilder<Self>) {
        crate::cloud::display_fns(b);
        b.with_fn("reveal", |s: &mut Secret| s.value.clone());
        b.with_get("len", |s: &mut Secret| s.value.len() as i64);
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.name)
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({}, <redacted>)", self.name)
    }
}

pub fn types(engine: &mut Engine) {
    engine
        .build_type::<crate::cloud::ssm::Parameter>()
        .build_type::<crate::cloud::ssm::CommandResult>()
        .build_type::<Secret>();
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[
    OptionKeys {
        function: "ensure_secret",
        keys: keys::<SecretOptions>,
    },
    OptionKeys {
        function: "send_command",
        keys: keys::<SendOptions>,
    },
    OptionKeys {
        function: "command_result",
        keys: keys::<ResultOptions>,
    },
];

/// Relative names live under the stack's prefix: `n8n/key` → `/geusemaker/<stack>/n8n/key`.
fn full_name(rt: &Runtime, name: &str) -> Result<String, Box<EvalAltResult>> {
    if name.is_empty() || name.contains("//") || name.ends_with('/') {
        return Err(usage_err(format!("`{name}` is not a valid parameter name")));
    }
    Ok(if name.starts_with('/') {
        name.to_string()
    } else {
        format!("/geusemaker/{}/{name}", rt.stack)
    })
}

fn random_secret(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    rand::fill(&mut buf[..]);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
}

/// The options of `ssm::ensure_secret`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SecretOptions {
    #[serde(default = "default_secret_bytes")]
    bytes: i64,
    #[serde(default)]
    prefix: String,
}

fn default_secret_bytes() -> i64 {
    32
}

/// The options of `ssm::send_command`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SendOptions {
    /// Seconds to wait for the instance's SSM agent to register.
    #[serde(default)]
    wait_registered: i64,
}

/// The options of `ssm::command_result`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ResultOptions {
    timeout: Option<i64>,
    #[serde(default)]
    follow: bool,
}

#[export_module]
pub mod api {
    use crate::cloud::ssm::{CommandResult, Parameter};
    use crate::cloud::wait::{poll_until, Backoff, Poll};
    use crate::primitives::cloud_err;

    /// Store `value` as a SecureString (overwriting). Relative names are placed under
    /// `/geusemaker/<stack>/`. The value never reaches the state file or the logs.
    ///
    /// ```rhai
    /// let p = ssm::put_secret("smtp/password", param("smtp_password"));
    /// ```
    #[rhai_fn(return_raw)]
    pub fn put_secret(
        ctx: NativeCallContext,
        name: &str,
        value: &str,
    ) -> Result<Parameter, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let full = full_name(&rt, name)?;
        let aws = rt.aws()?;
        let tags = rt.tags(name);
        let p = rt.create_recorded(
            Kind::Parameter,
            name,
            |_t| {
                aws.ssm
                    .put_secure(&full, value, true, &tags)
                    .map(|(p, _)| p)
            },
            |p: &Parameter| (p.name.clone(), BTreeMap::new()),
        )?;
        Ok(p)
    }

    /// A SecureString generated once per stack and kept: created with `bytes` random bytes
    /// (≥ 16, default 32, URL-safe base64, after an optional fixed `prefix` for systems with
    /// password rules) when missing, left untouched when present, so every redeploy reuses the
    /// same secret.
    ///
    /// ```rhai
    /// let key = ssm::ensure_secret("n8n/encryption_key", #{ bytes: 32 });
    /// ui::info(`n8n key in ${key.name}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ensure_secret(
        ctx: NativeCallContext,
        name: &str,
        options: Map,
    ) -> Result<Parameter, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let o: SecretOptions = decode("ssm::ensure_secret", options)?;
        let (bytes, prefix) = (o.bytes, o.prefix);
        if prefix.len() > 16
            || !prefix
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(usage_err(
                "ssm::ensure_secret: prefix is up to 16 letters, digits, - or _",
            ));
        }
        if !(16..=1024).contains(&bytes) {
            return Err(usage_err(
                "ssm::ensure_secret: bytes must be between 16 and 1024 (16 bytes = 128 bits)",
            ));
        }
        let full = full_name(&rt, name)?;
        let aws = rt.aws()?;
        // One the ledger knows is read; otherwise it is written straight away: PutParameter
        // without overwrite keeps a secret that exists after all (and returns it).
        if rt.ledger_id(Kind::Parameter, name)?.is_some() {
            if let Some((p, _)) = aws.ssm.get(&full).map_err(cloud_err)? {
                rt.adopt(Kind::Parameter, name, &p.name, BTreeMap::new())?;
                return Ok(p);
            }
        }
        let tags = rt.tags(name);
        rt.create_recorded(
            Kind::Parameter,
            name,
            |_t| {
                aws.ssm
                    .put_secure(
                        &full,
                        &format!("{prefix}{}", random_secret(bytes as usize)),
                        false,
                        &tags,
                    )
                    .map(|(p, _)| p)
            },
            |p: &Parameter| (p.name.clone(), BTreeMap::new()),
        )
    }

    /// Read a parameter's decrypted value as a `Secret` (prints as `Secret(name)`;
    /// `s.reveal()` gives the text).
    ///
    /// ```rhai
    /// let s = ssm::get_secret("n8n/encryption_key");
    /// print(s);            // Secret(/geusemaker/my-stack/n8n/encryption_key)
    /// ```
    #[rhai_fn(return_raw)]
    pub fn get_secret(ctx: NativeCallContext, name: &str) -> Result<Secret, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let full = full_name(&rt, name)?;
        match rt.aws()?.ssm.get(&full).map_err(cloud_err)? {
            Some((p, value)) => Ok(Secret {
                name: p.name,
                value,
            }),
            None => Err(super::super::usage_err_hint(
                format!("SSM parameter {full} does not exist"),
                "create it with ssm::ensure_secret or ssm::put_secret",
            )),
        }
    }

    /// Delete a parameter (by name or handle); `false` when it was already gone.
    ///
    /// ```rhai
    /// ssm::delete_parameter("smtp/password");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn delete_parameter(
        ctx: NativeCallContext,
        name: Dynamic,
    ) -> Result<bool, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let n = full_name(&rt, &id_of(&name, "a parameter name")?)?;
        let result = rt.aws()?.ssm.delete(&n);
        rt.settle_delete(Kind::Parameter, &n, result)
    }

    /// Run shell commands on an instance through SSM Run Command; returns the command id at
    /// once (fetch the result with `ssm::command_result`).
    ///
    /// ```rhai
    /// let id = ssm::send_command(vm, ["docker compose ps"]);
    /// let r = ssm::command_result(vm, id);
    /// print(r.stdout);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn send_command(
        ctx: NativeCallContext,
        instance: Dynamic,
        commands: Array,
    ) -> Result<String, Box<EvalAltResult>> {
        send_command_opts(ctx, instance, commands, Map::new())
    }

    /// Like `send_command(instance, commands)`, with `#{ wait_registered: seconds }`: an
    /// instance that has just started is not managed by SSM until its agent registers (AWS
    /// answers InvalidInstanceId meanwhile); the command is sent again for up to that long.
    ///
    /// ```rhai
    /// let id = ssm::send_command(vm, [script], #{ wait_registered: 300 });
    /// ```
    #[rhai_fn(name = "send_command", return_raw)]
    pub fn send_command_opts(
        ctx: NativeCallContext,
        instance: Dynamic,
        commands: Array,
        options: Map,
    ) -> Result<String, Box<EvalAltResult>> {
        let o: SendOptions = decode("ssm::send_command", options)?;
        let wait = Duration::from_secs(o.wait_registered.max(0) as u64);
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        let cmds = commands
            .into_iter()
            .map(|c| {
                c.into_string().map_err(|t| {
                    usage_err(format!("ssm::send_command: commands are strings, not {t}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if cmds.is_empty() {
            return Err(usage_err("ssm::send_command: no commands given"));
        }
        let aws = rt.aws()?;
        let comment = format!("geusemaker {} {}", rt.stack, rt.run_id);
        let deadline = std::time::Instant::now() + wait;
        loop {
            match aws.ssm.send_command(&id, &cmds, &comment) {
                Err(e) if e.code == "InvalidInstanceId" && std::time::Instant::now() < deadline => {
                    rt.ui
                        .info(&format!("{id}: waiting for its SSM agent to register"));
                    std::thread::sleep(Duration::from_secs(10));
                }
                other => return other.map_err(cloud_err),
            }
        }
    }

    /// Wait (up to 300 s) for a Run Command invocation to finish and return its status, exit
    /// code and output.
    ///
    /// ```rhai
    /// let r = ssm::command_result(vm, id);
    /// if r.exit_code != 0 { throw r.stderr; }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn command_result(
        ctx: NativeCallContext,
        instance: Dynamic,
        command_id: &str,
    ) -> Result<CommandResult, Box<EvalAltResult>> {
        command_result_opts(ctx, instance, command_id, Map::new())
    }

    /// Like `command_result(instance, id)`, with `#{ timeout: seconds }` (300): an update that
    /// pulls images may take longer. With `follow: true` the command is a reporting script
    /// (`userdata::script(…, #{ report: true })`): its steps and pulls are shown as they pass,
    /// and a step it reports failed is the error, named, with the last lines of its log.
    ///
    /// ```rhai
    /// let r = ssm::command_result(vm, id, #{ timeout: 1800, follow: true });
    /// ```
    #[rhai_fn(name = "command_result", return_raw)]
    pub fn command_result_opts(
        ctx: NativeCallContext,
        instance: Dynamic,
        command_id: &str,
        options: Map,
    ) -> Result<CommandResult, Box<EvalAltResult>> {
        let o: ResultOptions = decode("ssm::command_result", options)?;
        let timeout = o.timeout.unwrap_or(300).max(1) as u64;
        let follow = o.follow;
        let rt = rt(&ctx)?;
        let id = id_of(&instance, "an instance")?;
        let aws = rt.aws()?;
        let mut follower = follow.then(|| BootFollower::new(&rt, id.clone(), Followed::Update));
        // A step the script reports failed ends the wait at once.
        let mut failed = None;
        let result = rt.waiting(
            &format!("command {command_id} on {id}"),
            |tick| {
                poll_until(
                    "ssm",
                    &format!("command {command_id}"),
                    Backoff::new(Duration::from_secs(timeout)),
                    tick,
                    || {
                        let r = match aws.ssm.command_result(command_id, &id) {
                            Ok(r) => r,
                            // The invocation shows up a moment after SendCommand returns.
                            Err(e) if e.code == "InvocationDoesNotExist" => {
                                return Ok(Poll::Pending("queued".into()))
                            }
                            Err(e) => return Err(e),
                        };
                        let pending =
                            matches!(r.status.as_str(), "Pending" | "InProgress" | "Delayed");
                        let mut status = r.status.clone();
                        if let Some(f) = follower.as_mut() {
                            failed = f.poll(&rt);
                            if failed.is_some() {
                                // Ended by the script's own report, whatever SSM says yet.
                                let mut r = r;
                                r.status = "Failed".into();
                                return Ok(Poll::Ready(r));
                            }
                            if let Some(now) = f.now() {
                                status = format!("{status} · {now}");
                            }
                        }
                        Ok(if pending {
                            Poll::Pending(status)
                        } else {
                            Poll::Ready(r)
                        })
                    },
                )
            },
            |r| format!("{} (exit {})", r.status, r.exit_code),
        )?;
        match failed {
            Some(e) => Err(e),
            None => Ok(result),
        }
    }
}
