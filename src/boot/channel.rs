//! The boot channel: how a boot script reports its steps (an SSM parameter of the stack),
//! and the report the CLI reads back.

use super::*;

/// Where a boot script reports its progress: one SSM parameter of the stack
/// (`/geusemaker-boot/<stack>`), written with the instance role, read by the CLI.
#[derive(Debug, Clone, PartialEq)]
pub struct Channel {
    pub region: String,
    /// The parameter's name.
    pub parameter: String,
    /// The run whose boot this is (the CLI reads only its own run's reports).
    pub run: String,
}

/// The name of a stack's boot channel: outside `/geusemaker/<stack>/` — the path of the
/// stack's secrets, which instances may read — so no instance can read the channel (and learn
/// another boot's run id), and no inventory takes it for a secret.
pub fn channel_parameter(stack: &str) -> String {
    format!("/geusemaker-boot/{stack}")
}

/// Where a reporting script keeps the boot document's parts (root only, on the instance's
/// tmpfs), one directory per run: the image and model pulls report from the background, so
/// every write takes the directory's lock and sends the whole document. The run that reports
/// now is in `current`: a run that started later (an update after the boot) silences the
/// background reports of the earlier one.
pub const REPORT_DIR: &str = "/run/geusemaker-report";

/// SSM's limit on a standard parameter's value: a document over it drops its pulls, then its
/// steps done, rather than not being written at all.
pub const REPORT_LIMIT: usize = 4096;

/// The marker the spot notice timer leaves once it has reported: a notice is the instance's
/// last word on the channel, no later report overwrites it.
pub const SPOT_NOTICE_SENT: &str = "/run/geusemaker-spot-notice.sent";

/// `report`, a `step` that reports and `pulled`: after each step, and as each image or model
/// is pulled, the boot document — the run, the step now, the steps done with their seconds,
/// the pulls with their sizes, and on a failure the failing step and line — is written to
/// the channel (a failed write never stops the boot).
pub(super) fn reporter(c: &Channel) -> Result<String, String> {
    check_token("region", &c.region, "-")?;
    check_path(&c.parameter)?;
    check_token("run id", &c.run, "-")?;
    Ok(format!(
        r#"boot_param='{param}'
boot_run='{run}'
boot_region='{region}'
boot_dir='{REPORT_DIR}/{run}'
boot_lock='{REPORT_DIR}/lock'
mkdir -p '{REPORT_DIR}'
chmod 0700 '{REPORT_DIR}'
# This run reports from here on: an earlier run's background pulls fall silent.
(
  flock 7
  find '{REPORT_DIR}' -mindepth 1 -maxdepth 1 -type d -exec rm -rf {{}} +
  mkdir -p "$boot_dir/pulls"
  printf 'start' > "$boot_dir/step"
  printf 'running' > "$boot_dir/state"
  : > "$boot_dir/done"
  : > "$boot_dir/error"
  printf '%s' "$boot_run" > '{REPORT_DIR}/current'
) 7>>"$boot_lock"
step_started=$(date +%s)
# The boot document (docs/operate.md): {{"run", "step", "state": running|done|failed, "at",
# "done": [{{"step", "seconds"}}], "pulls": [{{"kind", "name", "state", "bytes", "seconds"}}], "error"}}.
boot_doc() {{
  printf '{{"run":"%s","step":"%s","state":"%s","at":"%s","done":[%s],"pulls":[%s]%s}}' \
    "$boot_run" "$(cat "$boot_dir/step")" "$(cat "$boot_dir/state")" "$(date -u +%FT%TZ)" \
    "$1" "$2" "$(cat "$boot_dir/error")"
}}
# With the lock held: is this run the one reporting?
boot_current() {{
  [ "$(cat '{REPORT_DIR}/current' 2>/dev/null)" = "$boot_run" ]
}}
# With the lock held.
send_report() {{
  local steps pulls doc
  # A spot interruption notice is the instance's last word on the channel.
  [ ! -e '{SPOT_NOTICE_SENT}' ] || return 0
  steps=$(paste -sd, "$boot_dir/done")
  pulls=$(cat "$boot_dir"/pulls/* 2>/dev/null | paste -sd, -) || pulls=""
  doc=$(boot_doc "$steps" "$pulls")
  # SSM keeps {REPORT_LIMIT} bytes in a standard parameter: the pulls go first, then the steps done.
  [ "${{#doc}}" -le {REPORT_LIMIT} ] || doc=$(boot_doc "$steps" "")
  [ "${{#doc}}" -le {REPORT_LIMIT} ] || doc=$(boot_doc "" "")
  AWS_MAX_ATTEMPTS=3 aws --cli-connect-timeout 5 --cli-read-timeout 10 ssm put-parameter \
    --region "$boot_region" --name "$boot_param" --type String --overwrite --value "$doc" \
    >/dev/null 2>&1
}}
# `report STATE [ERROR]`: the boot is running, done or failed (ERROR: the error member).
report() {{
  (
    flock 7
    boot_current || exit 0
    printf '%s' "$1" > "$boot_dir/state"
    [ -z "${{2:-}}" ] || printf '%s' "$2" > "$boot_dir/error"
    send_report
  ) 7>>"$boot_lock" || echo "geusemaker: could not report the boot" >&2
}}
step() {{
  local now
  now=$(date +%s)
  echo "geusemaker step: $1"
  (
    flock 7
    boot_current || exit 0
    if [ "$boot_step" != "start" ]; then
      printf '{{"step":"%s","seconds":%d}}\n' "$boot_step" "$((now - step_started))" >> "$boot_dir/done"
    fi
    printf '%s' "$1" > "$boot_dir/step"
    send_report
  ) 7>>"$boot_lock" || echo "geusemaker: could not report the boot step" >&2
  boot_step="$1"
  step_started=$now
}}
# `pulled ID KIND NAME STATE [BYTES SECONDS]`: pull ID (an image or a model, NAME) is pulling,
# done or failed. A `pulling` report never overwrites how the pull ended (it may be sent from
# the background, and arrive late).
pulled() {{
  echo "geusemaker pull: $2 $3 $4"
  (
    flock 7
    boot_current || exit 0
    [ "$4" != "pulling" ] || [ ! -e "$boot_dir/pulls/$1" ] || exit 0
    printf '{{"kind":"%s","name":"%s","state":"%s","bytes":%d,"seconds":%d}}\n' \
      "$2" "$3" "$4" "${{5:-0}}" "${{6:-0}}" > "$boot_dir/pulls/$1"
    send_report
  ) 7>>"$boot_lock" || echo "geusemaker: could not report the pull" >&2
}}
boot_reported_failure=""
boot_failed() {{
  # Only the boot itself fails the boot: not a subshell or command substitution (set -E
  # hands them the trap), and only once.
  [ "$BASHPID" = "$$" ] || return 0
  [ -z "$boot_reported_failure" ] || return 0
  boot_reported_failure=1
  echo "geusemaker boot FAILED in step: ${{boot_step}} (line $1)" >&2
  report "failed" "$(printf ',"error":{{"step":"%s","line":%d}}' "$boot_step" "$1")"
}}
trap 'boot_failed "${{LINENO}}"' ERR
# `exit 1` and an unset variable end the boot without the ERR trap: the exit reports them
# (without a line: bash does not know it there).
boot_exit() {{
  [ "$1" -eq 0 ] || boot_failed 0
}}
trap 'boot_exit "$?"' EXIT
report "running"
"#,
        param = c.parameter,
        run = c.run,
        region = c.region,
    ))
}

/// The boot document a reporting script writes to its channel.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BootReport {
    pub run: String,
    /// The step now (the failing one when `state` is `failed`).
    pub step: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// When the instance wrote it (UTC, RFC 3339).
    pub at: String,
    /// The steps done, in order, with their seconds.
    #[serde(default)]
    pub done: Vec<BootStep>,
    /// The images and models pulled, pulling or failed, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pulls: Vec<BootPull>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<BootError>,
    /// The instance the boot ran on (set by the CLI when it keeps the timeline).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on: Option<String>,
    /// With `state: "notice"`: the instance that got a spot interruption notice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// AWS's notice (`{"action": "terminate", "time": "…"}`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notice: Option<SpotNotice>,
    /// With a notice: the token the boot script of the instance's run carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct SpotNotice {
    pub action: String,
    pub time: String,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BootStep {
    pub step: String,
    pub seconds: u64,
}

/// One image or model pull of a boot.
#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BootPull {
    /// `image` or `model`.
    pub kind: String,
    pub name: String,
    /// `pulling`, `done` or `failed`.
    pub state: String,
    /// Its size once pulled (an image's size on disk, a model's as Ollama lists it).
    #[serde(default)]
    pub bytes: u64,
    #[serde(default)]
    pub seconds: u64,
}

#[derive(Debug, Clone, PartialEq, serde::Deserialize, serde::Serialize)]
pub struct BootError {
    pub step: String,
    pub line: u64,
}

impl BootReport {
    /// Read a report as the instance wrote it — the instance is not trusted with the
    /// deployer's terminal: no control characters, short names, a bounded list.
    pub fn parse(text: &str) -> Result<BootReport, String> {
        let mut r: BootReport =
            serde_json::from_str(text).map_err(|e| format!("not a boot report: {e}"))?;
        let clean = |s: &mut String| {
            *s = crate::ui::printable(s).chars().take(160).collect();
        };
        for s in [&mut r.run, &mut r.step, &mut r.state, &mut r.at] {
            clean(s);
        }
        r.done.truncate(200);
        for d in &mut r.done {
            clean(&mut d.step);
            d.seconds = d.seconds.min(7 * 24 * 3600); // a week: nothing a boot takes
        }
        r.pulls.truncate(100);
        for p in &mut r.pulls {
            clean(&mut p.kind);
            clean(&mut p.name);
            clean(&mut p.state);
            p.seconds = p.seconds.min(7 * 24 * 3600);
        }
        if let Some(e) = &mut r.error {
            clean(&mut e.step);
        }
        r.on = None; // the CLI says which instance a timeline is of, not the instance

        if let Some(i) = &mut r.instance {
            clean(i);
        }
        if let Some(t) = &mut r.token {
            clean(t);
        }
        if let Some(n) = &mut r.notice {
            clean(&mut n.action);
            clean(&mut n.time);
        }
        Ok(r)
    }
    pub fn failed(&self) -> bool {
        self.state == "failed"
    }
    pub fn finished(&self) -> bool {
        self.state == "done"
    }
    /// The spot interruption notice of `instance`, if this report is one.
    pub fn notice_for(&self, instance: &str) -> Option<&SpotNotice> {
        (self.state == "notice" && self.instance.as_deref() == Some(instance))
            .then_some(self.notice.as_ref())
            .flatten()
    }
}
