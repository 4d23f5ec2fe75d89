//! `geusemaker logs <name>`: the services' Docker Compose logs, fetched from the instance through
//! SSM Run Command (no SSH, no open port), coloured per service; `--follow` polls until Ctrl-C.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use console::Style;

use super::{output, stack_services, Conn, LiveInstance};
use crate::boot::Layout;
use crate::cloud::{Aws, AwsSettings, CloudError};
use crate::config::Settings;
use crate::engine::error::UsageError;
use crate::engine::RunError;
use crate::state::StackState;
use crate::suggest::did_you_mean;

/// SSM returns at most 24,000 characters of output; ask for less so nothing is cut silently.
const MAX_LINES: usize = 300;

/// SSM keeps the first 24,000 characters of the output: the lines are cut to fit below it, so
/// the end marker always arrives.
const MAX_BYTES: usize = 20_000;

/// How often `--follow` asks again.
const FOLLOW_EVERY: Duration = Duration::from_secs(5);

/// The first line the log command prints: an answer without it did not come from the command
/// (an SSM that runs nothing — a local emulator — answers "Success" with no output).
const BEGIN: &str = "@@geusemaker-logs";
/// The last line: `@@geusemaker-logs-exit=N`, compose's exit code.
const END: &str = "@@geusemaker-logs-exit=";

/// The shell command that prints the logs (`since`: a compose `--since` value), between the
/// two marker lines.
pub fn command(service: Option<&str>, since: &str) -> String {
    let dir = Layout::default().stack_dir;
    format!(
        "rc=0; out=$(docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' logs --no-color --timestamps --tail {MAX_LINES} --since '{since}'{} 2>&1) || rc=$?; echo '{BEGIN}'; printf '%s\\n' \"$out\" | tail -n {MAX_LINES} | tail -c {MAX_BYTES}; echo \"{END}$rc\"",
        service.map(|s| format!(" '{s}'")).unwrap_or_default()
    )
}

/// The stack's instance, when it is running (the logs are there); why not otherwise.
fn running_instance(name: &str, state: &StackState, aws: &Aws) -> Result<String, RunError> {
    let live = LiveInstance::of(state, Some(aws), None);
    Ok(match &live {
        LiveInstance::Present(i) if i.state == "running" => i.id.clone(),
        LiveInstance::Present(i) => {
            return Err(RunError::failed_hint(
                format!("instance {} is {}: there are no logs to fetch", i.id, i.state),
                format!("`geusemaker status {name}` shows the stack; `geusemaker rollback {name}` relaunches it"),
            ))
        }
        LiveInstance::Gone(id) => {
            return Err(RunError::failed_hint(
                format!("instance {id} no longer exists"),
                format!("`geusemaker rollback {name}` relaunches the stack (its data is kept)"),
            ))
        }
        LiveInstance::Unknown(id, why) => {
            return Err(RunError::failed(format!("cannot describe instance {id}: {why}")))
        }
        LiveInstance::None => {
            return Err(RunError::failed(format!(
                "stack `{name}` has no instance recorded ({})",
                output(state, "market").map_or("no deploy finished".to_string(), |_| "its outputs lack instance_id".into())
            )))
        }
    })
}

/// The shell command that prints the end of the instance's boot log, between the markers.
pub fn boot_command() -> String {
    format!(
        "rc=0; out=$(tail -n {MAX_LINES} '{BOOT_LOG}' 2>&1) || rc=$?; echo '{BEGIN}'; printf '%s\\n' \"$out\" | tail -c {MAX_BYTES}; echo \"{END}$rc\""
    )
}

/// Where the boot script logs (see `boot::SCRIPT_HEADER`).
const BOOT_LOG: &str = "/var/log/geusemaker-boot.log";

/// `geusemaker logs <stack> --boot`: the last lines of the instance's boot log, through SSM.
pub fn boot_log(name: &str, flags: &AwsSettings, settings: &Settings) -> Result<(), RunError> {
    let opened = super::open(name)?;
    let state = &opened.state;
    let conn = Conn::for_stack(state, flags, settings)?;
    let aws = conn
        .aws
        .as_ref()
        .map_err(|e| RunError::failed(e.to_string()))?;
    let instance = running_instance(name, state, aws)?;
    let out = run_on(aws, &instance, &boot_command()).map_err(|e| explain(e, &instance))?;
    for line in unwrap_output(&out, &instance, "tail")? {
        println!("{}", crate::ui::printable(line));
    }
    Ok(())
}

/// What the command printed: the log lines, once its markers show it ran and compose
/// succeeded.
fn unwrap_output<'a>(out: &'a str, instance: &str, what: &str) -> Result<Vec<&'a str>, RunError> {
    let mut lines: Vec<&str> = out.lines().collect();
    if lines.first() != Some(&BEGIN) {
        return Err(RunError::failed_hint(
            format!("instance {instance} did not run the log command: SSM answered without its output"),
            "the SSM agent may not be running commands (a local emulator such as moto runs nothing); \
             `geusemaker status` shows the instance",
        ));
    }
    lines.remove(0);
    match lines.last().and_then(|l| l.strip_prefix(END)) {
        Some("0") => {
            lines.pop();
            Ok(lines)
        }
        Some(code) => Err(RunError::failed(format!(
            "`{what}` failed on {instance} (exit {code}):\n{}",
            lines[..lines.len() - 1].join("\n")
        ))),
        // The end marker was cut off (SSM keeps the first 24,000 characters).
        None => {
            eprintln!("warning: the output was cut by SSM: the newest lines may be missing");
            Ok(lines)
        }
    }
}

/// A compose log line: `service-1  | 2026-01-01T00:00:00.000000000Z message`.
pub struct LogLine<'a> {
    pub service: &'a str,
    pub timestamp: Option<&'a str>,
    pub text: &'a str,
}

pub fn parse_line(line: &str) -> LogLine<'_> {
    let Some((prefix, rest)) = line.split_once(" | ").or_else(|| line.split_once("| ")) else {
        return LogLine {
            service: "",
            timestamp: None,
            text: line,
        };
    };
    let container = prefix.trim();
    // `geusemaker-n8n-1` or `n8n-1` → `n8n`.
    let service = container
        .rsplit_once('-')
        .filter(|(_, n)| n.chars().all(|c| c.is_ascii_digit()))
        .map_or(container, |(s, _)| s);
    let service = service.strip_prefix("geusemaker-").unwrap_or(service);
    let (timestamp, text) = match rest.split_once(' ') {
        Some((ts, text)) if ts.len() >= 20 && ts.as_bytes()[4] == b'-' && ts.contains('T') => {
            (Some(ts), text)
        }
        _ => (None, rest),
    };
    LogLine {
        service,
        timestamp,
        text,
    }
}

/// A colour per service name, the same on every run.
fn style_for(service: &str) -> Style {
    let palette = [
        Style::new().magenta(),
        Style::new().cyan(),
        Style::new().blue(),
        Style::new().green(),
        Style::new().yellow(),
        Style::new().red(),
    ];
    let h = service
        .bytes()
        .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
    palette[h % palette.len()].clone()
}

/// A line for the terminal: `service | text`, the service coloured when `color`.
pub fn render(line: &LogLine<'_>, color: bool, width: usize) -> String {
    if line.service.is_empty() {
        return line.text.to_string();
    }
    let name = format!("{:width$}", line.service);
    let name = if color {
        style_for(line.service)
            .force_styling(true)
            .apply_to(name)
            .to_string()
    } else {
        name
    };
    format!("{name} | {}", line.text)
}

fn run_on(aws: &Aws, instance: &str, script: &str) -> Result<String, CloudError> {
    let id = aws
        .ssm
        .send_command(instance, &[script.to_string()], "geusemaker logs")?;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let r = aws.ssm.command_result(&id, instance);
        match r {
            Ok(r) if matches!(r.status.as_str(), "Pending" | "InProgress" | "Delayed") => {}
            Ok(r) if r.status == "Success" => return Ok(r.stdout),
            Ok(r) => {
                return Err(CloudError::new(
                    "ssm",
                    "GetCommandInvocation",
                    &r.status,
                    format!("the log command ended {}: {}", r.status, r.stderr.trim()),
                ))
            }
            // The invocation may not exist for a moment after SendCommand.
            Err(e) if e.code == "InvocationDoesNotExist" => {}
            Err(e) => return Err(e),
        }
        if Instant::now() >= deadline {
            return Err(CloudError::new(
                "ssm",
                "GetCommandInvocation",
                "Timeout",
                "the log command did not finish within 60 s",
            ));
        }
        if crate::interrupt::requested() {
            return Ok(String::new());
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

fn explain(e: CloudError, instance: &str) -> RunError {
    if e.code.contains("InvalidInstanceId") {
        return RunError::failed_hint(
            format!("instance {instance} is not managed by SSM yet, so its logs cannot be fetched"),
            "the SSM agent registers a minute or two after boot (the instance needs its instance \
             profile and outbound HTTPS); try again shortly, or check `geusemaker status`",
        );
    }
    RunError::failed(format!("fetching the logs failed: {e}"))
}

/// `geusemaker logs <name> [--service S] [--follow] [--since 10m]`.
pub fn logs(
    name: &str,
    service: Option<&str>,
    follow: bool,
    since: &str,
    flags: &AwsSettings,
    settings: &Settings,
) -> Result<(), RunError> {
    crate::config::parse_duration(since).map_err(|e| RunError::usage(format!("--since: {e}")))?;
    let opened = super::open(name)?;
    let state = &opened.state;
    let services = stack_services(state);
    if let Some(s) = service {
        if !services.is_empty() && !services.iter().any(|x| x == s) {
            return Err(RunError::Usage(UsageError::Invalid {
                message: format!("--service {s}: stack {name} runs {}", services.join(", ")),
                hint: did_you_mean(s, services.iter().map(String::as_str))
                    .map(|m| format!("did you mean `{m}`?")),
            }));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        {
            return Err(RunError::usage(format!(
                "--service {s}: not a service name"
            )));
        }
    }
    let conn = Conn::for_stack(state, flags, settings)?;
    let aws = conn
        .aws
        .as_ref()
        .map_err(|e| RunError::failed(e.to_string()))?;
    let instance = running_instance(name, state, aws)?;

    crate::interrupt::listen();
    let color = console::colors_enabled() && std::env::var_os("NO_COLOR").is_none();
    let width = services.iter().map(|s| s.len()).max().unwrap_or(8);
    let mut since_arg = since.to_string();
    // Lines already shown at the newest timestamp (a poll asks again from that second).
    let mut seen_at_edge: HashSet<String> = HashSet::new();
    let mut printed_any = false;
    loop {
        let out = run_on(aws, &instance, &command(service, &since_arg))
            .map_err(|e| explain(e, &instance))?;
        let mut newest: Option<String> = None;
        let mut at_newest: HashSet<String> = HashSet::new();
        if crate::interrupt::requested() {
            eprintln!("stopped following the logs");
            return Ok(());
        }
        for raw in unwrap_output(&out, &instance, "docker compose logs")?
            .into_iter()
            .filter(|l| !l.trim().is_empty())
        {
            if seen_at_edge.contains(raw) {
                continue;
            }
            let clean = crate::ui::printable(raw); // the instance is not trusted with this terminal
            let line = parse_line(&clean);
            if let Some(ts) = line.timestamp {
                match newest.as_deref() {
                    Some(n) if ts < n => {}
                    Some(n) if ts == n => {
                        at_newest.insert(raw.to_string());
                    }
                    _ => {
                        newest = Some(ts.to_string());
                        at_newest = HashSet::from([raw.to_string()]);
                    }
                }
            }
            println!("{}", render(&line, color, width));
            printed_any = true;
        }
        if !follow {
            if !printed_any {
                eprintln!(
                    "no log lines from {} in the last {since}",
                    service.unwrap_or("the services")
                );
            }
            return Ok(());
        }
        if let Some(n) = newest {
            // Whole seconds are what compose takes reliably; the edge set removes repeats.
            since_arg = n
                .split('.')
                .next()
                .unwrap_or(&n)
                .trim_end_matches('Z')
                .to_string()
                + "Z";
            seen_at_edge.extend(at_newest);
        }
        let until = Instant::now() + FOLLOW_EVERY;
        while Instant::now() < until {
            if crate::interrupt::requested() {
                eprintln!("stopped following the logs");
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_names_the_project_the_window_and_the_service() {
        let c = command(Some("n8n"), "10m");
        assert!(c.starts_with("rc=0; out=$(docker compose --project-directory '/opt/geusemaker' -f '/opt/geusemaker/compose.yaml' logs --no-color --timestamps --tail 300 --since '10m' 'n8n'"), "{c}");
        assert!(
            c.ends_with("| tail -n 300 | tail -c 20000; echo \"@@geusemaker-logs-exit=$rc\""),
            "{c}"
        );
        assert!(!command(None, "1h").contains("'n8n'"));
    }

    #[test]
    fn only_an_answer_from_the_command_counts() {
        let lines = unwrap_output(
            "@@geusemaker-logs\nn8n-1 | a\n@@geusemaker-logs-exit=0\n",
            "i-1",
            "docker compose logs",
        )
        .unwrap();
        assert_eq!(lines, ["n8n-1 | a"]);
        assert!(unwrap_output(
            "@@geusemaker-logs\n@@geusemaker-logs-exit=0\n",
            "i-1",
            "docker compose logs"
        )
        .unwrap()
        .is_empty());
        let e = unwrap_output("", "i-1", "docker compose logs")
            .unwrap_err()
            .to_string();
        assert!(e.contains("did not run the log command"), "{e}");
        let e = unwrap_output(
            "@@geusemaker-logs\nno such service\n@@geusemaker-logs-exit=1\n",
            "i-1",
            "docker compose logs",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("`docker compose logs` failed on i-1 (exit 1):\nno such service"),
            "{e}"
        );
    }

    /// The command is valid POSIX shell (SSM runs it with sh).
    #[test]
    fn the_command_passes_shellcheck() {
        let script = format!(
            "#!/bin/sh\n{}\n{}\n",
            command(Some("n8n"), "10m"),
            boot_command()
        );
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("logs.sh");
        std::fs::write(&f, script).unwrap();
        let out = std::process::Command::new("shellcheck")
            .arg(&f)
            .output()
            .expect("shellcheck (scripts/test.sh installs it)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }

    #[test]
    fn compose_lines_are_split_into_service_time_and_text() {
        let l = parse_line(
            "geusemaker-n8n-1  | 2026-01-01T10:00:00.123456789Z Editor is now accessible",
        );
        assert_eq!(l.service, "n8n");
        assert_eq!(l.timestamp, Some("2026-01-01T10:00:00.123456789Z"));
        assert_eq!(l.text, "Editor is now accessible");
        let l = parse_line("postgres-1 | 2026-01-01T10:00:01Z LOG:  database system is ready");
        assert_eq!(
            (l.service, l.text),
            ("postgres", "LOG:  database system is ready")
        );
        let l = parse_line("no prefix here");
        assert_eq!(
            (l.service, l.timestamp, l.text),
            ("", None, "no prefix here")
        );
        assert_eq!(
            render(&parse_line("qdrant-1 | hello"), false, 8),
            "qdrant   | hello"
        );
        assert!(render(&parse_line("qdrant-1 | hello"), true, 8).contains("\u{1b}["));
    }
}
