//! `geusemaker monitor <name>`: check the stack every interval; roll back when a critical
//! service keeps failing, relaunch when the spot instance is interrupted.
//!
//! What a rollback does is the rollback recipe's business (terminate, check the data, record),
//! and the relaunch is the stack's own recipe with its last healthy params — so the spot/zone/
//! on-demand fallback rules of the tier apply, and the data volume and EFS are attached again.
//! The monitor holds no lock between rounds: a `run` in progress pauses it.

use std::time::{Duration, Instant};

use super::health::{Level, Tracker};
use super::status::{check_round, stack_checks};
use super::{output, Conn, LiveInstance};
use crate::cloud::{Aws, AwsSettings};
use crate::config::{fmt_duration, Settings};
use crate::engine::{RunError, RunRequest};
use crate::state::{RollbackTrigger, StackState, StackStatus, StackStore, StateBackend};
use crate::ui::Ui;

/// What `monitor` was asked to do.
#[derive(Debug, Clone)]
pub struct MonitorOptions {
    pub name: String,
    /// Between rounds (default: the `health.interval` setting).
    pub interval: Option<Duration>,
    /// Stop after this many rounds (default: until Ctrl-C).
    pub rounds: Option<u32>,
    pub no_rollback: bool,
    pub aws: AwsSettings,
}

/// Spot request status codes that mean AWS is taking the instance back.
pub const INTERRUPTION_CODES: &[&str] = &[
    "marked-for-termination",
    "marked-for-stop",
    "marked-for-hibernation",
    "instance-terminated-by-price",
    "instance-terminated-no-capacity",
    "instance-terminated-capacity-oversubscribed",
    "instance-terminated-launch-group-constraint",
    "instance-stopped-by-price",
    "instance-stopped-no-capacity",
    "instance-stopped-capacity-oversubscribed",
];

/// Instance states a spot instance is in once it is being (or has been) taken away.
const LOST_STATES: &[&str] = &["stopping", "stopped", "shutting-down", "terminated"];

/// Why the stack's spot instance counts as interrupted, if it does: its state (or state
/// reason), its spot request's status, or its disappearance.
pub fn interruption(
    live: &LiveInstance,
    recorded_market: Option<&str>,
    aws: Option<&Aws>,
) -> Option<String> {
    match live {
        LiveInstance::Present(i) if i.lifecycle == "spot" => {
            if LOST_STATES.contains(&i.state.as_str()) {
                return Some(format!(
                    "spot instance {} is {}{}",
                    i.id,
                    i.state,
                    i.state_reason
                        .as_deref()
                        .map(|r| format!(" ({r})"))
                        .unwrap_or_default()
                ));
            }
            let request = i.spot_request_id.as_deref()?;
            let code = aws?.ec2.spot_request_status(request).ok()??;
            INTERRUPTION_CODES
                .contains(&code.as_str())
                .then(|| format!("spot request {request} of {} is {code}", i.id))
        }
        LiveInstance::Gone(id) if recorded_market == Some("spot") => {
            Some(format!("spot instance {id} is gone"))
        }
        _ => None,
    }
}

/// The spot interruption notice the stack's running spot instance reported on its boot
/// channel (about two minutes before AWS takes it back), if there is one.
pub fn spot_notice(
    live: &LiveInstance,
    stack: &str,
    state: &StackState,
    aws: Option<&Aws>,
) -> Option<String> {
    let LiveInstance::Present(i) = live else {
        return None;
    };
    if i.lifecycle != "spot" || LOST_STATES.contains(&i.state.as_str()) {
        return None;
    }
    let (_, text) = aws?
        .ssm
        .get(&crate::boot::channel_parameter(stack))
        .ok()??;
    let report = crate::boot::BootReport::parse(&text).ok()?;
    // The notice of the boot that launched this instance: its run is on the instance's tag,
    // and its token is in that boot's script and in the stack's state only — credentials
    // taken from an earlier (replaced) instance cannot fake a notice for its successor.
    let launched_by = i.tags.get(crate::cloud::tags::RUN_TAG)?;
    let token = state
        .values
        .get(crate::boot::NOTICE_TOKENS)?
        .get(launched_by)?
        .as_str()?;
    if report.run != *launched_by || report.token.as_deref() != Some(token) {
        return None;
    }
    let notice = report.notice_for(&i.id)?;
    Some(format!(
        "spot interruption notice for {} (reported {}: {} at {})",
        i.id, report.at, notice.action, notice.time
    ))
}

/// Is another geusemaker run (here, or on another machine sharing the state) working on the
/// stack right now?
fn busy(backend: &StateBackend, stack: &str) -> Option<String> {
    let holder = backend.holder(stack).ok()??;
    holder.is_live().then(|| holder.to_string())
}

fn sleep_interruptibly(d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if crate::interrupt::requested() {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100).min(until - Instant::now()));
    }
    !crate::interrupt::requested()
}

fn roll_back(
    opts: &MonitorOptions,
    trigger: RollbackTrigger,
    why: &str,
    ui: &Ui,
) -> Result<(), RunError> {
    tracing::warn!(stack = %opts.name, trigger = trigger.as_str(), reason = why, "monitor: rolling back");
    ui.warn(&format!("{why}: rolling back (trigger {trigger})"));
    let req = RunRequest {
        recipe: "rollback".into(),
        stack: opts.name.clone(),
        sets: Vec::new(),
        aws: opts.aws.clone(),
        assume_yes: true,
        keep_failed: false,
        param_settings: Default::default(),
    };
    let started = Instant::now();
    crate::engine::rollback(req, trigger, Some(why)).map(|s| {
        tracing::info!(
            stack = %opts.name,
            run = %s.run_id,
            down_seconds = started.elapsed().as_secs(),
            "monitor: rollback finished"
        );
    })
}

/// `geusemaker monitor <name> [--interval 30s] [--rounds N] [--no-rollback]`.
pub fn monitor(opts: MonitorOptions, settings: &Settings) -> Result<(), RunError> {
    let opened = super::open(&opts.name)?;
    let home = opened.home;
    let mut health = settings.health();
    if let Some(i) = opts.interval {
        health.interval = i;
    }
    let auto = settings.auto_rollback() && !opts.no_rollback;
    let conn = Conn::for_stack(&opened.state, &opts.aws, settings)?;
    if let Err(e) = &conn.aws {
        return Err(RunError::failed(e.to_string()));
    }
    crate::interrupt::listen();
    let ui = Ui::detect(true);
    ui.line(&format!(
        "Monitoring {} every {}: {} after {} failed checks in a row of {} (warning over {} ms, failing over {} ms). Ctrl-C stops.",
        opts.name,
        fmt_duration(health.interval),
        if auto { "rollback" } else { "a warning (no rollback)" },
        health.failures,
        health.critical_services.join(" or "),
        health.warn_ms,
        health.critical_ms,
    ));
    let mut tracker = Tracker::load(&home, &opened.state, health.clone());
    let mut rounds = 0u32;
    let mut warned_no_rollback = false;
    loop {
        if crate::interrupt::requested() {
            break;
        }
        let Some(state) = StackStore::load(&opened.backend, &opts.name)? else {
            return Err(RunError::failed(format!(
                "stack `{}` was destroyed while being monitored",
                opts.name
            )));
        };
        if let Some(holder) = busy(&opened.backend, &opts.name) {
            ui.line(&format!("{}  paused: the stack is busy ({holder})", now()));
        } else if state.status == StackStatus::Failed && state.last_healthy.is_none() {
            return Err(RunError::failed_hint(
                format!(
                    "stack `{}` is failed and has no healthy deploy to go back to",
                    opts.name
                ),
                format!(
                    "`geusemaker status {0}`; run its recipe again to redeploy",
                    opts.name
                ),
            ));
        } else {
            let aws = conn.aws();
            let live = LiveInstance::of(&state, aws, None);
            let why = spot_notice(&live, &opts.name, &state, aws)
                .or_else(|| interruption(&live, output(&state, "market").as_deref(), aws));
            if let Some(why) = why {
                tracing::warn!(stack = %opts.name, reason = %why, "monitor: spot interruption");
                if auto {
                    roll_back(&opts, RollbackTrigger::SpotInterruption, &why, &ui)?;
                    tracker.reset();
                } else {
                    ui.warn(&format!("{why}; not relaunching (--no-rollback)"));
                }
            } else {
                match stack_checks(&state) {
                    Ok((checks, note)) => {
                        if let (Some(n), 0) = (note, rounds) {
                            ui.warn(&n);
                        }
                        check_round(&conn, &live, &checks, &mut tracker);
                        report_round(&ui, &opts.name, &checks, &tracker);
                        tracker.save(&home, &state);
                    }
                    Err(e) => {
                        return Err(RunError::failed(format!(
                            "the stack's recorded health checks are unusable: {e}"
                        )))
                    }
                }
                let reasons = tracker.rollback_reasons();
                if !reasons.is_empty() {
                    let why = reasons.join("; ");
                    if auto {
                        roll_back(&opts, RollbackTrigger::HealthCheckFailed, &why, &ui)?;
                        tracker.reset();
                    } else if !warned_no_rollback {
                        ui.warn(&format!("{why}: would roll back, but rollback is off"));
                        warned_no_rollback = true;
                    }
                } else {
                    warned_no_rollback = false;
                }
            }
        }
        rounds += 1;
        if opts.rounds.is_some_and(|n| rounds >= n) {
            break;
        }
        if !sleep_interruptibly(health.interval) {
            break;
        }
    }
    crate::interrupt::reset();
    ui.line(&format!(
        "stopped monitoring {} after {rounds} round(s)",
        opts.name
    ));
    Ok(())
}

fn now() -> String {
    chrono::Local::now().format("%H:%M:%S").to_string()
}

/// One line per round, and a line per service that is not healthy; every check goes to the
/// stack's log file.
fn report_round(ui: &Ui, stack: &str, checks: &[crate::health::Check], t: &Tracker) {
    let mut parts = Vec::new();
    for c in checks {
        let Some(rec) = t.services.get(&c.name) else {
            continue;
        };
        tracing::info!(
            stack,
            service = %c.name,
            level = rec.level.as_str(),
            latency_ms = rec.latency_ms.unwrap_or(-1),
            consecutive_failures = rec.consecutive_failures,
            error = rec.error.as_deref().unwrap_or(""),
            "health check"
        );
        let tone = rec.level.tone();
        let text = match (rec.level, rec.latency_ms) {
            (Level::Healthy, Some(ms)) => format!("{} {ms}ms", c.name),
            (level, _) => format!(
                "{} {}{}",
                c.name,
                level.as_str(),
                if rec.consecutive_failures > 0 {
                    format!(" ×{}", rec.consecutive_failures)
                } else {
                    String::new()
                }
            ),
        };
        parts.push(format!("{}{}", ui.mark(tone), ui.tone(&text, tone)));
    }
    ui.line(&format!("{}  {}", now(), parts.join(" · ")));
    for c in checks {
        if let Some(rec) = t.services.get(&c.name) {
            if rec.level != Level::Healthy {
                if let Some(e) = &rec.error {
                    ui.line(&format!("          {}: {e}", c.name));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::ec2::Instance;

    fn spot(state: &str, reason: Option<&str>) -> LiveInstance {
        LiveInstance::Present(Box::new(Instance {
            id: "i-1".into(),
            name: "app".into(),
            state: state.into(),
            instance_type: "t3.medium".into(),
            az: "us-east-1a".into(),
            subnet_id: String::new(),
            vpc_id: String::new(),
            image_id: String::new(),
            private_ip: None,
            public_ip: None,
            public_dns: None,
            lifecycle: "spot".into(),
            imdsv2_required: true,
            instance_profile_arn: None,
            launch_time: None,
            state_reason: reason.map(str::to_string),
            spot_request_id: None,
            security_groups: Vec::new(),
            tags: Default::default(),
        }))
    }

    #[test]
    fn a_spot_instance_taken_away_is_an_interruption() {
        assert_eq!(
            interruption(&spot("running", None), Some("spot"), None),
            None
        );
        assert_eq!(
            interruption(
                &spot("terminated", Some("Server.SpotInstanceTermination")),
                Some("spot"),
                None
            )
            .as_deref(),
            Some("spot instance i-1 is terminated (Server.SpotInstanceTermination)")
        );
        assert!(interruption(&spot("stopping", None), Some("spot"), None).is_some());
        assert_eq!(
            interruption(&LiveInstance::Gone("i-9".into()), Some("spot"), None).as_deref(),
            Some("spot instance i-9 is gone")
        );
        assert_eq!(
            interruption(&LiveInstance::Gone("i-9".into()), Some("on-demand"), None),
            None
        );
    }
}
