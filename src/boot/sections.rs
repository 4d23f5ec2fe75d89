//! The sections of a boot script: packages, mounts, secrets, files, images and models, the
//! n8n owner, snapshots and spot notices.

use super::*;

/// Packages: Docker, the pinned Compose plugin (refused unless its sha256 matches),
/// efs-utils, xfsprogs; Docker enabled. Downloads are retried.
pub fn packages() -> String {
    let arms: String = COMPOSE_SHA256
        .iter()
        .map(|(arch, sum)| format!("  {arch}) compose_sha256={sum} ;;\n"))
        .collect();
    format!(
        r#"# --- packages: Docker, Compose {COMPOSE_VERSION} (sha256-checked), EFS utils ---
retry dnf install -y docker amazon-efs-utils xfsprogs
arch="$(uname -m)"
case "$arch" in
{arms}  *) echo "no pinned Docker Compose for $arch" >&2; exit 1 ;;
esac
retry curl -fsSL -o /tmp/docker-compose \
  "https://github.com/docker/compose/releases/download/{COMPOSE_VERSION}/docker-compose-linux-${{arch}}"
echo "$compose_sha256  /tmp/docker-compose" | sha256sum --check --strict -
install -D -m 0755 /tmp/docker-compose /usr/local/lib/docker/cli-plugins/docker-compose
rm -f /tmp/docker-compose
systemctl enable --now docker
docker compose version
"#
    )
}

/// Mount an EFS file system with TLS, persistently (`_netdev` in fstab), retrying until the
/// mount target answers (it may become reachable a little after the instance boots).
pub fn efs_mount(fs_id: &str, mount_point: &str) -> Result<String, String> {
    if !fs_id.starts_with("fs-")
        || !fs_id[3..].chars().all(|c| c.is_ascii_alphanumeric())
        || fs_id.len() < 4
    {
        return Err(format!("`{fs_id}` is not an EFS file system id"));
    }
    check_path(mount_point)?;
    Ok(format!(
        r#"# --- EFS {fs_id} at {mount_point} (TLS, remounted at every boot) ---
mkdir -p '{mount_point}'
if ! grep -q '^{fs_id}:/ ' /etc/fstab; then
  echo '{fs_id}:/ {mount_point} efs _netdev,tls,noresvport 0 0' >> /etc/fstab
fi
for attempt in $(seq 1 30); do
  if mountpoint -q '{mount_point}' || mount '{mount_point}'; then
    break
  fi
  echo "EFS not reachable yet (attempt $attempt/30); retrying in 10s"
  sleep 10
done
mountpoint -q '{mount_point}' || {{ echo "EFS {fs_id} could not be mounted" >&2; exit 1; }}
"#
    ))
}

/// Wait for an EBS volume to be attached (it is attached after the instance starts), make an
/// XFS file system on it only if it has none (a re-attached volume keeps its data), and mount
/// it persistently by UUID. `volume` is a volume id (`vol-…`, found by its NVMe serial) or the
/// device name it is attached as (`/dev/sdf`; Amazon Linux links NVMe devices to that name).
pub fn ebs_mount(volume: &str, mount_point: &str) -> Result<String, String> {
    check_path(mount_point)?;
    let candidates = if let Some(rest) = volume.strip_prefix("vol-") {
        if rest.is_empty() || !rest.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(format!("`{volume}` is not an EBS volume id"));
        }
        format!("/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol{rest} /dev/sdf /dev/xvdf")
    } else if let Some(letter) = volume.strip_prefix("/dev/sd") {
        if letter.len() != 1 || !letter.chars().all(|c| ('f'..='p').contains(&c)) {
            return Err(format!(
                "`{volume}` is not a data device name (/dev/sdf … /dev/sdp)"
            ));
        }
        format!("/dev/sd{letter} /dev/xvd{letter}")
    } else {
        return Err(format!(
            "`{volume}` is neither a volume id (vol-…) nor a device (/dev/sdf)"
        ));
    };
    Ok(format!(
        r#"# --- EBS data volume ({volume}) at {mount_point} (kept across instances) ---
device=""
for attempt in $(seq 1 90); do
  for candidate in {candidates}; do
    if [ -b "$candidate" ]; then device="$(readlink -f "$candidate")"; break 2; fi
  done
  echo "waiting for the data volume to be attached (attempt $attempt/90)"
  sleep 10
done
[ -n "$device" ] || {{ echo "data volume {volume} never appeared" >&2; exit 1; }}
if ! blkid "$device" >/dev/null 2>&1; then
  mkfs.xfs -L gmdata "$device"
fi
uuid="$(blkid -s UUID -o value "$device")"
mkdir -p '{mount_point}'
if ! grep -q "UUID=$uuid" /etc/fstab; then
  echo "UUID=$uuid {mount_point} xfs defaults,nofail 0 2" >> /etc/fstab
fi
mountpoint -q '{mount_point}' || mount '{mount_point}'
"#
    ))
}

/// Fetch SSM SecureString parameters with the instance role into a root-only env file:
/// `(VARIABLE, parameter name)` pairs. Retries while the instance credentials appear.
pub fn ssm_env(region: &str, env_file: &str, vars: &[(String, String)]) -> Result<String, String> {
    ssm_env_files(region, &[(env_file.to_string(), vars.to_vec())])
}

/// [`ssm_env`] for several files at once (one fetch helper): `(path, pairs)` per file.
pub fn ssm_env_files(
    region: &str,
    files: &[(String, Vec<(String, String)>)],
) -> Result<String, String> {
    check_token("region", region, "-")?;
    let mut body = String::new();
    let mut n = 0;
    let mut fetched: Vec<String> = Vec::new();
    for (env_file, vars) in files {
        check_path(env_file)?;
        // Fetch into variables first: a failed fetch in an assignment stops the script (set -e),
        // where one inside `echo "$(…)"` would silently write an empty secret.
        let mut fetches = String::new();
        let mut lines = String::new();
        for (var, param) in vars {
            if !(var.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                && var
                    .chars()
                    .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            {
                return Err(format!(
                    "`{var}` is not an environment variable name (UPPER_CASE)"
                ));
            }
            check_token("SSM parameter name", param, "/-_.")?;
            if !param.starts_with('/') {
                return Err(format!("`{param}` is not an absolute SSM parameter name"));
            }
            // Each parameter is fetched once, however many files hold it.
            let slot = match fetched.iter().position(|p| p == param) {
                Some(i) => i,
                None => {
                    let _ = writeln!(fetches, "secret_{n}=\"$(fetch_param '{param}')\"");
                    fetched.push(param.clone());
                    n += 1;
                    n - 1
                }
            };
            let _ = writeln!(lines, "  echo \"{var}=$secret_{slot}\"");
        }
        let dir = env_file
            .rsplit_once('/')
            .map(|(d, _)| d)
            .filter(|d| !d.is_empty())
            .unwrap_or("/");
        let _ = write!(
            body,
            "{fetches}mkdir -p '{dir}'\n{{\n{lines}}} > '{env_file}.tmp'\nmv '{env_file}.tmp' '{env_file}'\n"
        );
    }
    Ok(format!(
        r#"# --- secrets: fetched from SSM with the instance role, never in user data ---
fetch_param() {{
  local value attempt
  for attempt in $(seq 1 30); do
    if value="$(aws ssm get-parameter --region '{region}' --name "$1" --with-decryption --query Parameter.Value --output text)"; then
      printf '%s' "$value"
      return 0
    fi
    echo "SSM parameter $1 not readable yet (attempt $attempt/30)" >&2
    sleep 10
  done
  return 1
}}
umask 077
{body}umask 022
"#
    ))
}

/// Write a file through a quoted heredoc (no expansion). The content may not contain the
/// delimiter line.
pub fn write_file(path: &str, content: &str, mode: &str) -> Result<String, String> {
    check_path(path)?;
    if !(mode.len() == 4 && mode.starts_with('0') && mode.chars().all(|c| ('0'..='7').contains(&c)))
    {
        return Err(format!("`{mode}` is not an octal file mode like 0644"));
    }
    const DELIM: &str = HEREDOC_DELIMITER;
    if content.lines().any(|l| l.trim() == DELIM) {
        return Err(format!("content may not contain a line `{DELIM}`"));
    }
    let dir = path
        .rsplit_once('/')
        .map(|(d, _)| d)
        .filter(|d| !d.is_empty())
        .unwrap_or("/");
    let body = content.strip_suffix('\n').unwrap_or(content);
    Ok(format!(
        "# --- file {path} ---\nmkdir -p '{dir}'\ncat > '{path}' <<'{DELIM}'\n{body}\n{DELIM}\nchmod {mode} '{path}'\n"
    ))
}

/// The images pulled, all at once, before the stack starts: each reported (`pulled`) with
/// its size on disk and its seconds, so a deploy shows them as they arrive. Compose's own
/// pull afterwards finds them there.
pub fn pull_images(images: &[String]) -> Result<String, String> {
    let mut unique: Vec<&String> = Vec::new();
    for i in images {
        check_image(i)?;
        if !unique.contains(&i) {
            unique.push(i);
        }
    }
    if unique.is_empty() {
        return Ok(String::new());
    }
    let mut out = String::from(
        r#"# --- pull the images ---
pull_image() {
  local started bytes
  started=$(date +%s)
  pulled "$1" image "$2" pulling &
  if retry docker pull --quiet "$2"; then
    bytes=$(docker image inspect --format '{{.Size}}' "$2") || bytes=0
    pulled "$1" image "$2" "done" "$bytes" "$(($(date +%s) - started))"
  else
    pulled "$1" image "$2" failed 0 "$(($(date +%s) - started))"
    return 1
  fi
}
pulls=()
"#,
    );
    for (n, image) in unique.iter().enumerate() {
        let _ = writeln!(
            out,
            "pull_image 'i{:02}' '{image}' &\npulls+=(\"$!\")",
            n + 1
        );
    }
    out.push_str(
        r#"pull_failed=0
for pid in "${pulls[@]}"; do
  wait "$pid" || pull_failed=1
done
if [ "$pull_failed" -ne 0 ]; then
  echo "an image could not be pulled (see above)" >&2
  false
fi
"#,
    );
    Ok(out)
}

/// Pull Ollama models once Ollama answers, in the background (the stack is usable before
/// large models finish downloading; the deploy's health check waits for them): each reported
/// (`pulled`) with its size as Ollama lists it and its seconds.
pub fn ollama_pull(models: &[String], layout: &Layout) -> Result<String, String> {
    check_path(&layout.stack_dir)?;
    for m in models {
        check_token("Ollama model name", m, ".:/_-")?;
    }
    if models.is_empty() {
        return Ok(String::new());
    }
    let dir = &layout.stack_dir;
    let list = models
        .iter()
        .map(|m| format!("'{m}'"))
        .collect::<Vec<_>>()
        .join(" ");
    // Ollama lists sizes in decimal units ("2.0 GB").
    Ok(format!(
        r#"# --- Ollama models (background) ---
(
  ollama() {{
    docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' exec -T ollama ollama "$@"
  }}
  for attempt in $(seq 1 60); do
    if ollama list >/dev/null 2>&1; then break; fi
    echo "waiting for ollama (attempt $attempt/60)"
    sleep 10
  done
  models=({list})
  n=0
  for model in "${{models[@]}}"; do
    n=$((n + 1))
    id=$(printf 'm%02d' "$n")
    started=$(date +%s)
    pulled "$id" model "$model" pulling
    if retry ollama pull "$model"; then
      bytes=$(ollama list | awk -v m="$model" '($1 == m || $1 == m ":latest") && !n {{ n = $3; u = $4 }} END {{ f = 1; if (u == "KB") f = 1e3; if (u == "MB") f = 1e6; if (u == "GB") f = 1e9; if (u == "TB") f = 1e12; printf "%.0f\n", n * f }}') || bytes=0
      pulled "$id" model "$model" "done" "${{bytes:-0}}" "$(($(date +%s) - started))"
    else
      echo "pull of $model failed"
      pulled "$id" model "$model" failed 0 "$(($(date +%s) - started))"
    fi
  done
  # Not holding an update's lock (fd 9) while the models download.
) 9>&- >> /var/log/geusemaker-models.log 2>&1 &
"#
    ))
}

/// Create n8n's owner account (n8n asks for one on the first visit otherwise), with the
/// password from the boot env file's `N8N_OWNER_PASSWORD`, through n8n on the instance's
/// `port`, once n8n is ready (database connected and migrated): a systemd unit that runs at
/// every boot until it has succeeded once ([`N8N_OWNER_DONE`]). The boot waits for it: its
/// step's time is the owner's setup, and a failed setup fails the boot, named. An n8n
/// that already has an owner (data from an earlier instance) is recognised by a login with the
/// stack's password, or by n8n reporting its owner set up.
///
/// With `publish`, n8n was started from `compose.setup.yaml` (bound to the loopback) and is
/// published — the stack restarted from `compose.yaml` — only once it has an owner, so no one
/// else can claim it in between; the boot env file (the password) is removed then. Fails
/// closed: when there is no owner n8n stays on the loopback and the deploy's checks fail.
pub fn n8n_owner(email: &str, port: u16, layout: &Layout, publish: bool) -> Result<String, String> {
    check_token("e-mail address", email, "@.+-_")?;
    if email.matches('@').count() != 1 {
        return Err(format!("`{email}` is not an e-mail address"));
    }
    check_path(&layout.env_file)?;
    check_path(&layout.stack_dir)?;
    let env = &layout.env_file;
    let dir = &layout.stack_dir;
    let base = format!("http://127.0.0.1:{port}");
    let publish_step = if publish {
        format!(
            "docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' up -d\necho \"n8n published\"\n"
        )
    } else {
        String::new()
    };
    let script = format!(
        r#"#!/bin/bash
# n8n's owner account{also} (installed by geusemaker). A boot-time unit runs it at every
# boot until it has succeeded once: a reboot before then, or an instance whose first boot
# was cut short, finishes the job.
set -euo pipefail
exec >> /var/log/geusemaker-n8n-owner.log 2>&1
echo "n8n owner: $(date -u +%FT%TZ)"
ready=""
for attempt in $(seq 1 90); do
  if curl -fsS {base}/healthz/readiness >/dev/null 2>&1; then ready=1; break; fi
  echo "waiting for n8n (attempt $attempt/90)"
  sleep 10
done
if [ -z "$ready" ]; then
  echo "n8n never became ready: it stays on 127.0.0.1" >&2
  exit 1
fi
# Published only once n8n has an owner: the setup succeeds, or (data from an earlier
# instance, never published without one) the owner logs in with the stack's password, or
# n8n itself says its owner is set up (the owner may have changed the password). Anything
# else fails closed.
password="$(sed -n 's/^N8N_OWNER_PASSWORD=//p' '{env}')"
if printf '{{"email":"%s","firstName":"Owner","lastName":"GeuseMaker","password":"%s"}}' '{email}' "$password" |
  curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- {base}/rest/owner/setup >/dev/null; then
  echo "n8n owner created"
elif printf '{{"emailOrLdapLoginId":"%s","password":"%s"}}' '{email}' "$password" |
  curl -fsS -X POST -H 'Content-Type: application/json' --data-binary @- {base}/rest/login >/dev/null; then
  echo "n8n already has its owner ({email})"
elif curl -fsS {base}/rest/settings | grep -q '"showSetupOnFirstLoad":false'; then
  echo "n8n already has an owner (the stack's password no longer logs in: changed in n8n?)"
else
  echo "n8n owner setup failed and n8n reports no owner: n8n stays on 127.0.0.1" >&2
  exit 1
fi
rm -f '{env}'
{publish_step}mkdir -p "$(dirname '{N8N_OWNER_DONE}')"
touch '{N8N_OWNER_DONE}'
"#,
        also = if publish { ", then n8n published" } else { "" },
    );
    let unit = format!(
        "[Unit]\nDescription=geusemaker: n8n's owner account{}\nAfter=docker.service network-online.target\nWants=network-online.target\nConditionPathExists=!{N8N_OWNER_DONE}\n\n[Service]\nType=oneshot\nExecStart={N8N_OWNER_SCRIPT}\nTimeoutStartSec=20min\n\n[Install]\nWantedBy=multi-user.target\n",
        if publish { ", then n8n published" } else { "" }
    );
    let mut out = String::from(
        "# --- n8n owner account, then n8n published (a boot-time unit, until it succeeds) ---\n",
    );
    out.push_str(&write_file(N8N_OWNER_SCRIPT, &script, "0750")?);
    out.push_str(&write_file(
        "/etc/systemd/system/geusemaker-n8n-owner.service",
        &unit,
        "0644",
    )?);
    // Waited for: the step's time is the owner's setup, and a setup that fails is the boot's
    // failure, named at once (the unit still tries again at the next boot).
    out.push_str(
        r#"systemctl daemon-reload
systemctl enable geusemaker-n8n-owner.service
if ! systemctl start geusemaker-n8n-owner.service; then
  tail -n 20 /var/log/geusemaker-n8n-owner.log >&2 || true
  echo "n8n's owner account could not be set up: n8n stays on 127.0.0.1" >&2
  false
fi
"#,
    );
    Ok(out)
}

/// The n8n owner script, and the marker it leaves once it has succeeded.
pub const N8N_OWNER_SCRIPT: &str = "/usr/local/sbin/geusemaker-n8n-owner";
pub const N8N_OWNER_DONE: &str = "/var/lib/geusemaker/n8n-owner.done";

/// Where the daily snapshot script lives on the instance.
pub const SNAPSHOT_SCRIPT: &str = "/usr/local/sbin/geusemaker-snapshot";

/// A daily EBS snapshot of the stack's data volume (the one tagged `Name=<volume_name>` and
/// `geusemaker:stack=<stack>`), taken from the instance with its own role, tagged with the
/// stack; snapshots older than `keep_days` are deleted. Snapshots live outside the volume and
/// its zone: they survive losing both. Crash-consistent (PostgreSQL and Qdrant recover from
/// their logs); the nightly dumps on EFS are the logical copy.
pub fn data_snapshots(
    region: &str,
    stack: &str,
    volume_name: &str,
    keep_days: u32,
) -> Result<String, String> {
    check_token("region", region, "-")?;
    check_token("stack name", stack, "-")?;
    check_token("volume name", volume_name, "-")?;
    if !(1..=365).contains(&keep_days) {
        return Err("keep_days must be 1..365".into());
    }
    let script = format!(
        r#"#!/bin/bash
# Daily snapshot of {stack}'s data volume, old ones pruned (installed by geusemaker).
set -euo pipefail
region='{region}'
vol="$(aws ec2 describe-volumes --region "$region" \
  --filters 'Name=tag:Name,Values={volume_name}' 'Name=tag:geusemaker:stack,Values={stack}' \
  --query 'Volumes[0].VolumeId' --output text)"
if [ -z "$vol" ] || [ "$vol" = None ]; then
  echo "no data volume {volume_name} found" >&2
  exit 1
fi
sync
aws ec2 create-snapshot --region "$region" --volume-id "$vol" \
  --description 'geusemaker {stack} daily snapshot of {volume_name}' \
  --tag-specifications 'ResourceType=snapshot,Tags=[{{Key=geusemaker:stack,Value={stack}}},{{Key=geusemaker:snapshot,Value=daily}},{{Key=Name,Value={volume_name}-daily}}]' \
  --query SnapshotId --output text
cutoff="$(date -u -d '-{keep_days} days' +%Y-%m-%dT%H:%M:%S)"
old="$(aws ec2 describe-snapshots --region "$region" --owner-ids self \
  --filters 'Name=tag:geusemaker:stack,Values={stack}' 'Name=tag:geusemaker:snapshot,Values=daily' \
  --query "Snapshots[?StartTime<'$cutoff'].SnapshotId" --output text)"
for snap in $old; do
  aws ec2 delete-snapshot --region "$region" --snapshot-id "$snap"
  echo "pruned $snap"
done
"#
    );
    let service = "[Unit]\nDescription=geusemaker daily snapshot of the data volume\nAfter=network-online.target\nWants=network-online.target\n\n[Service]\nType=oneshot\nExecStart=/usr/local/sbin/geusemaker-snapshot\n";
    let timer = "[Unit]\nDescription=daily geusemaker data volume snapshot\n\n[Timer]\nOnCalendar=daily\nRandomizedDelaySec=1h\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";
    let mut out = format!("# --- data volume snapshots, daily, {keep_days} days kept ---\n");
    out.push_str(&write_file(SNAPSHOT_SCRIPT, &script, "0750")?);
    out.push_str(&write_file(
        "/etc/systemd/system/geusemaker-snapshot.service",
        service,
        "0644",
    )?);
    out.push_str(&write_file(
        "/etc/systemd/system/geusemaker-snapshot.timer",
        timer,
        "0644",
    )?);
    out.push_str("systemctl daemon-reload\nsystemctl enable --now geusemaker-snapshot.timer\n");
    Ok(out)
}

/// Where the spot-notice watcher lives on the instance.
pub const SPOT_NOTICE_SCRIPT: &str = "/usr/local/sbin/geusemaker-spot-notice";

/// A timer (every 10 s) that asks the instance metadata for a spot interruption notice
/// (`spot/instance-action`, there about two minutes before AWS takes the instance) and, once
/// one appears, reports it on the boot channel — `state: "notice"`, the instance, AWS's
/// `{"action", "time"}` — so `monitor` starts the replacement before the instance is gone.
/// Harmless on an on-demand instance (the metadata never has a notice).
pub fn spot_notices(c: &Channel, token: &str) -> Result<String, String> {
    check_token("notice token", token, "")?;
    check_token("region", &c.region, "-")?;
    check_path(&c.parameter)?;
    check_token("run id", &c.run, "-")?;
    let script = format!(
        r#"#!/bin/bash
# Reports a spot interruption notice on the stack's boot channel, once (installed by geusemaker).
set -euo pipefail
sent='{SPOT_NOTICE_SENT}'
[ -e "$sent" ] && exit 0
imds=http://169.254.169.254/latest
token=$(curl -fsS -X PUT "$imds/api/token" -H 'X-aws-ec2-metadata-token-ttl-seconds: 60') || exit 0
notice=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/spot/instance-action") || exit 0
instance=$(curl -fsS -H "X-aws-ec2-metadata-token: $token" "$imds/meta-data/instance-id")
# AWS's notice is {{"action": "...", "time": "..."}}: only those characters go into the report.
case "$notice" in
  *[!A-Za-z0-9:{{}}\",.\ _-]*) echo "unexpected notice: not reported" >&2; exit 1 ;;
esac
doc=$(printf '{{"run":"%s","step":"spot interruption notice","state":"notice","at":"%s","done":[],"instance":"%s","notice":%s,"token":"%s"}}' \
  '{run}' "$(date -u +%FT%TZ)" "$instance" "$notice" '{token}')
# The boot's own reports (a model still pulling) take this lock too, and write nothing after
# it; each holds it for seconds at most, and the notice does not wait longer than 20.
mkdir -p '{REPORT_DIR}'
exec 7>>'{REPORT_DIR}/lock'
flock -w 20 7 || echo "the report lock is busy: reporting without it" >&2
AWS_MAX_ATTEMPTS=3 aws --cli-connect-timeout 5 --cli-read-timeout 10 ssm put-parameter \
  --region '{region}' --name '{param}' --type String --overwrite --value "$doc" >/dev/null
touch "$sent"
echo "spot interruption notice reported: $notice"
"#,
        run = c.run,
        region = c.region,
        param = c.parameter,
    );
    let service = format!("[Unit]\nDescription=geusemaker spot interruption notice\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart={SPOT_NOTICE_SCRIPT}\n");
    let timer = "[Unit]\nDescription=geusemaker: look for a spot interruption notice every 10 s\n\n[Timer]\nOnBootSec=20s\nOnUnitActiveSec=10s\nAccuracySec=1s\n\n[Install]\nWantedBy=timers.target\n";
    let mut out =
        String::from("# --- spot interruption notices, reported on the boot channel ---\n");
    out.push_str(&write_file(SPOT_NOTICE_SCRIPT, &script, "0750")?);
    out.push_str(&write_file(
        "/etc/systemd/system/geusemaker-spot-notice.service",
        &service,
        "0644",
    )?);
    out.push_str(&write_file(
        "/etc/systemd/system/geusemaker-spot-notice.timer",
        timer,
        "0644",
    )?);
    out.push_str("systemctl daemon-reload\nsystemctl enable --now geusemaker-spot-notice.timer\n");
    Ok(out)
}

/// Where the stack's state keeps each run's spot notice token (run id → token).
pub const NOTICE_TOKENS: &str = "spot_notice_tokens";

/// The spot notice token of run `run` in the stack's `values`: made once per run (a random
/// 128-bit hex string), the last 10 runs' kept — an instance launched by any of them may
/// still run.
pub fn notice_token(
    values: &mut std::collections::BTreeMap<String, serde_json::Value>,
    run: &str,
) -> String {
    let tokens = values
        .entry(NOTICE_TOKENS.to_string())
        .or_insert_with(|| serde_json::json!({}));
    if !tokens.is_object() {
        *tokens = serde_json::json!({});
    }
    let map = tokens.as_object_mut().expect("an object");
    if let Some(t) = map.get(run).and_then(|t| t.as_str()) {
        return t.to_string();
    }
    let mut bytes = [0u8; 16];
    rand::fill(&mut bytes[..]);
    let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    map.insert(run.to_string(), token.clone().into());
    // Run ids sort by time: the oldest go first (whatever order the map keeps).
    while map.len() > 10 {
        let oldest = map.keys().min().cloned().expect("not empty");
        map.shift_remove(&oldest);
    }
    token
}
