//! Following an instance's boot channel (`/geusemaker-boot/<stack>`) while the CLI waits for
//! it: the steps and pulls are printed as they pass, a reported failure becomes the wait's
//! error with the last lines of the boot log, and a boot's timeline is kept in the stack's
//! state. Used by `health::wait_until_healthy(…, #{ boot })` and
//! `ssm::command_result(…, #{ follow })` (an in-place update reports like a boot).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use rhai::EvalAltResult;

use super::{usage_err_hint, Runtime};
use crate::boot::{BootPull, BootReport};
use crate::cloud::Aws;

/// What is being followed, for the messages.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Followed {
    /// The instance's first boot: its timeline is kept in the stack's state.
    Boot,
    /// An in-place update of the services, through SSM Run Command.
    Update,
}

impl Followed {
    fn label(self) -> &'static str {
        match self {
            Followed::Boot => "boot",
            Followed::Update => "update",
        }
    }
    fn failed(self) -> &'static str {
        match self {
            Followed::Boot => "the instance's boot failed",
            Followed::Update => "the services update failed",
        }
    }
}

pub struct BootFollower {
    instance: String,
    parameter: String,
    what: Followed,
    /// Steps already printed.
    shown: usize,
    /// Pulls already printed as finished (their id: kind and name).
    pulls_shown: BTreeSet<(String, String)>,
    last: Option<BootReport>,
}

impl BootFollower {
    pub fn new(rt: &Runtime, instance: String, what: Followed) -> BootFollower {
        BootFollower {
            instance,
            parameter: crate::boot::channel_parameter(&rt.stack),
            what,
            shown: 0,
            pulls_shown: BTreeSet::new(),
            last: None,
        }
    }

    /// Read the channel once and print what passed; the wait's error when the instance
    /// reported a failure.
    pub fn poll(&mut self, rt: &Runtime) -> Option<Box<EvalAltResult>> {
        if rt.is_plan() {
            return None;
        }
        let aws = rt.aws().ok()?;
        let text = match aws.ssm.get(&self.parameter) {
            Ok(Some((_, text))) => text,
            _ => return None, // nothing reported yet (or not readable now): the checks decide
        };
        // Another run's report (an earlier boot, or none of this run's yet) is not this one.
        let report = BootReport::parse(&text)
            .ok()
            .filter(|r| r.run == rt.run_id)?;
        let label = self.what.label();
        for s in report.done.iter().skip(self.shown) {
            rt.ui.info(&format!("{label}: {} ({}s)", s.step, s.seconds));
        }
        self.shown = self.shown.max(report.done.len());
        for p in report.pulls.iter().filter(|p| p.state != "pulling") {
            if self.pulls_shown.insert((p.kind.clone(), p.name.clone())) {
                rt.ui.info(&format!("{label}: {}", pull_line(p)));
            }
        }
        let failed = report.failed().then(|| {
            let error = report.error.clone();
            let step = error
                .as_ref()
                .map_or(report.step.as_str(), |e| e.step.as_str());
            // Line 0: the script ended by `exit`, where bash does not know the line.
            let line = error
                .as_ref()
                .filter(|e| e.line > 0)
                .map(|e| format!(", line {}", e.line))
                .unwrap_or_default();
            usage_err_hint(
                format!("{} in step `{step}`{line}", self.what.failed()),
                log_tail(aws, &self.instance, BOOT_LOG),
            )
        });
        // A model that could not be pulled (after its retries) will not come: the services
        // that need it cannot become healthy, so the wait ends now.
        let failed = failed.or_else(|| {
            report
                .pulls
                .iter()
                .find(|p| p.kind == "model" && p.state == "failed")
                .map(|p| {
                    usage_err_hint(
                        format!("the instance could not pull model `{}`", p.name),
                        log_tail(aws, &self.instance, MODELS_LOG),
                    )
                })
        });
        self.last = Some(report);
        failed
    }

    /// What the instance is doing now, for a spinner: the step, and the pulls under way.
    pub fn now(&self) -> Option<String> {
        let r = self.last.as_ref().filter(|r| !r.failed())?;
        let pulling: Vec<&str> = r
            .pulls
            .iter()
            .filter(|p| p.state == "pulling")
            .map(|p| p.name.as_str())
            .collect();
        let mut now = format!("{}: {}", self.what.label(), r.step);
        if !pulling.is_empty() {
            now.push_str(&format!(", pulling {}", pulling.join(", ")));
        }
        Some(now)
    }

    /// The boot has reported its end (or its failure), or nothing of this run at all.
    pub fn settled(&self) -> bool {
        self.last
            .as_ref()
            .is_none_or(|r| r.finished() || r.failed())
    }

    /// The step the boot was in, when it has not finished.
    pub fn unfinished_step(&self) -> Option<&str> {
        self.last
            .as_ref()
            .filter(|r| !r.finished())
            .map(|r| r.step.as_str())
    }

    /// A boot's timeline, as far as it got, in the stack's state (`status` shows it), with the
    /// instance it is of.
    pub fn keep(&self, rt: &Runtime) {
        if self.what != Followed::Boot {
            return;
        }
        let Some(report) = &self.last else { return };
        let mut report = report.clone();
        report.on = Some(self.instance.clone());
        let json = serde_json::to_value(&report).expect("a boot report serializes");
        if let Ok(mut store) = rt.store() {
            let _ = store.update(|s| s.values.insert("boot".into(), json));
        }
    }
}

/// The instance's logs: its boot, and its model pulls.
const BOOT_LOG: &str = "/var/log/geusemaker-boot.log";
const MODELS_LOG: &str = "/var/log/geusemaker-models.log";

/// `image n8nio/n8n:2.41.3 pulled (512.0 MB, 31s)`.
pub fn pull_line(p: &BootPull) -> String {
    match p.state.as_str() {
        "done" => format!(
            "{} {} pulled ({}, {}s)",
            p.kind,
            p.name,
            crate::ui::bytes(p.bytes),
            p.seconds
        ),
        "failed" => format!("{} {} FAILED to pull after {}s", p.kind, p.name, p.seconds),
        other => format!("{} {} {other}", p.kind, p.name),
    }
}

/// The last lines of one of the instance's logs, through SSM (for the error of a failed boot).
fn log_tail(aws: &Aws, instance: &str, log: &str) -> String {
    let fallback = if log == BOOT_LOG {
        format!("the boot log is {log} on {instance} (`geusemaker logs --boot` prints it)")
    } else {
        format!("{log} on {instance} says why")
    };
    let Ok(id) = aws.ssm.send_command(
        instance,
        &[format!("echo @@boot-log; tail -n 20 {log}")],
        "geusemaker boot log",
    ) else {
        return fallback;
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match aws.ssm.command_result(&id, instance) {
            Ok(r) if matches!(r.status.as_str(), "Pending" | "InProgress" | "Delayed") => {}
            // Only the command's own output counts (an SSM that runs nothing answers empty).
            Ok(r) => {
                return match r.stdout.split_once("@@boot-log\n") {
                    Some((_, tail)) if !tail.trim().is_empty() => format!(
                        "the last lines of {log}:\n{}",
                        tail.trim_end()
                            .lines()
                            .map(crate::ui::printable)
                            .collect::<Vec<_>>()
                            .join("\n")
                    ),
                    _ => fallback,
                }
            }
            Err(_) => {}
        }
        std::thread::sleep(Duration::from_secs(2));
    }
    fallback
}
