//! Where stack state lives: opening the backend the settings name, and
//! `geusemaker state show|push|pull`.

use std::time::Duration;

use crate::cloud::AwsSettings;
use crate::config::StateSettings;
use crate::engine::RunError;
use crate::state::s3::{S3Settings, S3Url, S3};
use crate::state::{validate_stack_name, Home, StackStore, StateBackend, StateError};
use crate::ui::Ui;

/// The shortest lease. A renewal starts a third of the lease before its end and its calls take
/// up to 5 s; a renewal that runs past the end is still safe (an If-Match write), only it
/// stops the run.
pub const MIN_LEASE: Duration = Duration::from_secs(10);
/// The longest: a killed run's lock blocks the stack that long.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// The backend `settings` name: the local directory, or an S3 bucket reached with `aws`'s
/// profile (credentials are only looked up when S3 is first used).
pub fn backend(settings: &StateSettings, aws: &AwsSettings) -> Result<StateBackend, RunError> {
    let url = settings.url.trim();
    if url.is_empty() || url == "local" {
        return Ok(StateBackend::local(Home::from_env()?));
    }
    let parsed = S3Url::parse(url).map_err(|e| {
        RunError::usage(format!(
            "{e}\n(the state location comes from {})",
            settings.from
        ))
    })?;
    let aws = AwsSettings {
        // The bucket's region is the state's (`state.region`, else the AWS chain), not the
        // stack's nor the settings' default for new stacks.
        region: None,
        default_region: None,
        ..aws.clone()
    };
    if !(MIN_LEASE..=MAX_LEASE).contains(&settings.lease) {
        return Err(RunError::usage(format!(
            "state.lease is {}: a lease is from {} to {} (a run renews it every third; another machine waits that long for a killed run's lock)",
            crate::config::fmt_duration(settings.lease),
            crate::config::fmt_duration(MIN_LEASE),
            crate::config::fmt_duration(MAX_LEASE)
        )));
    }
    let connect: crate::state::s3::Connect = Box::new(move || {
        let aws = aws.clone();
        Box::pin(async move { crate::cloud::sdk_config(&aws).await })
    });
    let s3 = S3::new(
        S3Settings {
            url: parsed,
            region: settings.region.clone(),
            lease: settings.lease,
            kms_key: settings.kms_key.clone(),
        },
        connect,
    )?;
    Ok(StateBackend::new(s3))
}

/// `geusemaker state show <stack>`: where its state lives, its version and its lock.
pub fn show(backend: &StateBackend, stack: &str, json: bool) -> Result<(), RunError> {
    validate_stack_name(stack).map_err(|e| RunError::usage(e.to_string()))?;
    let stored = backend.read(stack)?;
    let Some(stored) = stored else {
        return Err(RunError::usage_hint(
            format!("no stack named `{stack}` in {}", backend.describe()),
            "`geusemaker list` shows the stacks there; `--state` reads another place",
        ));
    };
    let location = backend.location(stack);
    let state = StackStore::parse_stored(&location, &stored)?;
    let holder = backend.holder(stack)?;
    let lock = match &holder {
        Some(h) if h.is_live() => format!("held by {h}"),
        Some(h) => format!("free (last held by {h})"),
        None => "free".to_string(),
    };
    let live = state.live_resources().count();
    if json {
        let doc = serde_json::json!({
            "stack": stack,
            "backend": backend.describe(),
            "location": location,
            "remote": backend.is_remote(),
            "version": stored.version,
            "bytes": stored.text.len(),
            "status": state.status.as_str(),
            "updated_at": state.updated_at.to_rfc3339(),
            "live_resources": live,
            "lock": holder.map(|h| serde_json::json!({
                "holder": h,
                "live": h.is_live(),
            })),
        });
        println!("{}", serde_json::to_string_pretty(&doc).expect("json"));
        return Ok(());
    }
    let rows = [
        ("Stack", stack.to_string()),
        ("Location", location),
        (
            "Backend",
            if backend.is_remote() {
                format!("{} (shared)", backend.describe())
            } else {
                format!("{} (this machine)", backend.describe())
            },
        ),
        ("Version", stored.version.clone()),
        (
            "Document",
            format!(
                "{} bytes, {}, updated {}, {live} live resources",
                stored.text.len(),
                state.status.as_str(),
                state.updated_at.format("%Y-%m-%d %H:%M:%SZ")
            ),
        ),
        ("Lock", lock),
    ];
    for (k, v) in rows {
        println!("{k:<9} {v}");
    }
    for n in backend.notices() {
        Ui::detect(false).warn(&n);
    }
    Ok(())
}

/// Which stacks to move.
pub enum Which {
    One(String),
    All,
}

/// `geusemaker state push`: move stacks from this machine to the team backend.
pub fn push(local: &StateBackend, team: &StateBackend, which: Which) -> Result<(), RunError> {
    move_stacks(local, team, which, "push")
}

/// `geusemaker state pull`: move stacks from the team backend to this machine.
pub fn pull(local: &StateBackend, team: &StateBackend, which: Which) -> Result<(), RunError> {
    move_stacks(team, local, which, "pull")
}

fn move_stacks(
    from: &StateBackend,
    to: &StateBackend,
    which: Which,
    verb: &str,
) -> Result<(), RunError> {
    if !to.is_remote() && !from.is_remote() {
        return Err(RunError::usage_hint(
            format!("no team backend: `state {verb}` moves stacks between this machine and S3"),
            "set `[state] url = \"s3://BUCKET/PREFIX\"` in geusemaker.toml (or pass --state s3://…); docs/teams.md",
        ));
    }
    let ui = Ui::detect(false);
    let names = match which {
        Which::One(n) => {
            validate_stack_name(&n).map_err(|e| RunError::usage(e.to_string()))?;
            vec![n]
        }
        Which::All => from.names()?,
    };
    if names.is_empty() {
        ui.line(&format!(
            "no stacks in {}: nothing to {verb}",
            from.describe()
        ));
        return Ok(());
    }
    for n in to.notices() {
        ui.warn(&n);
    }
    let mut failed = Vec::new();
    for name in &names {
        match move_one(from, to, name, verb) {
            Ok(()) => ui.success(&format!(
                "moved `{name}` to {} (from {})",
                to.location(name),
                from.describe()
            )),
            Err(e) => {
                ui.warn(&format!("`{name}` not moved: {e}"));
                failed.push(name.clone());
            }
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(RunError::failed(format!(
            "{} of {} stacks not moved ({}); the lines above say where each one is",
            failed.len(),
            names.len(),
            failed.join(", ")
        )))
    }
}

/// Move one stack with both locks held: write it where it goes (refused if a document is
/// there), read it back, then remove the source (refused if it changed meanwhile).
fn move_one(
    from: &StateBackend,
    to: &StateBackend,
    stack: &str,
    verb: &str,
) -> Result<(), StateError> {
    let run = format!("{verb}-{}", chrono::Utc::now().format("%Y%m%d%H%M%S"));
    let command = format!("state {verb}");
    let _to_lock = to.lock(stack, &run, &command)?;
    let _from_lock = from.lock(stack, &run, &command)?;
    let Some(stored) = from.read(stack)? else {
        return Err(StateError::Remote {
            location: from.location(stack),
            action: "read the stack",
            message: "no such stack".into(),
            hint: Some(format!(
                "`geusemaker list` shows the stacks in {}",
                from.describe()
            )),
        });
    };
    // A damaged document is not moved: it is said where it is.
    StackStore::parse_stored(&from.location(stack), &stored)?;
    let already = to.read(stack)?;
    let copied = match already {
        // A move that stopped between the copy and the removal of the source: the copy is
        // there, byte for byte; only the source is left to remove.
        Some(there) if there.text == stored.text => None,
        Some(_) => {
            return Err(StateError::Remote {
                location: to.location(stack),
                action: "create the stack",
                message: "a different stack of that name is already there".into(),
                hint: Some("compare the two with `geusemaker state show NAME` (and --state); remove one with `geusemaker destroy` before moving".into()),
            })
        }
        None => Some(to.write(stack, stored.text.as_bytes(), &None)?),
    };
    // The copy, read back before anything is removed.
    let verified = match to.read(stack) {
        Ok(Some(back)) if back.text == stored.text => Ok(()),
        Ok(_) => Err(StateError::Remote {
            location: to.location(stack),
            action: "verify the copy",
            message: "what was read back differs from what was written".into(),
            hint: None,
        }),
        Err(e) => Err(e),
    };
    if let Err(e) = verified {
        return Err(undo_copy(to, stack, copied.as_deref(), e));
    }
    match from.remove(stack, &stored.version) {
        Ok(()) => Ok(()),
        Err(e) => match from.read(stack) {
            // The removal reached the store though its answer did not: moved.
            Ok(None) => Ok(()),
            // The source is still there (as it was, or changed meanwhile): the copy goes
            // again, one copy stays.
            Ok(Some(_)) => Err(undo_copy(to, stack, copied.as_deref(), e)),
            _ => Err(StateError::Remote {
                location: from.location(stack),
                action: "remove the source",
                message: format!("{e}; the stack is now at {} too: run the same command again to finish the move", to.location(stack)),
                hint: None,
            }),
        },
    }
}

/// Remove the copy a move wrote (`version`), after `cause` stopped the move; the error says
/// what is where.
fn undo_copy(
    to: &StateBackend,
    stack: &str,
    version: Option<&str>,
    cause: StateError,
) -> StateError {
    let Some(version) = version else {
        return cause;
    };
    match to.remove(stack, version) {
        Ok(()) => cause,
        Err(undo) => StateError::Remote {
            location: to.location(stack),
            action: "undo the copy",
            message: format!("{cause}; the copy could not be removed either ({undo}): the stack is in both places; run the same command again to finish the move"),
            hint: None,
        },
    }
}
