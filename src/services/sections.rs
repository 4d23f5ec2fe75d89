//! Boot script sections that follow the service list: env files, public URLs, start-up,
//! backups.

use super::validate::first_port;
use super::*;

/// The env files: one per service with secrets, holding only its own (`secrets` maps a stack
/// secret name, like `postgres/password`, to its SSM parameter name).
pub fn env_files(
    region: &str,
    services: &[Service],
    secrets: &BTreeMap<String, String>,
    layout: &Layout,
) -> Result<String, ServiceError> {
    let mut files = Vec::new();
    for s in services {
        let Some(path) = s.env_file(layout) else {
            continue;
        };
        let mut vars = Vec::new();
        for (var, secret) in &s.secrets {
            let param = secrets.get(secret).ok_or_else(|| {
                ServiceError::new(
                    format!("service `{}`", s.name),
                    format!("secret `{secret}` (for {var}) is not among the stack's secrets"),
                )
                .hint("make it with ssm::ensure_secret, or let services::secrets(svcs) make every secret the services name")
            })?;
            vars.push((var.clone(), param.clone()));
        }
        files.push((path, vars));
    }
    if files.is_empty() {
        return Ok(String::new());
    }
    boot::ssm_env_files(region, &files).map_err(|e| ServiceError::new("secrets", e))
}

/// At boot, before the stack starts: the variables `vars` of service `name`'s env file set to
/// the URL users reach it by on this instance's public address —
/// `http://<public address>:<its first public port>/` — read from the instance metadata
/// (IMDSv2). For a tier without a load balancer, whose address is known only once the
/// instance runs (n8n's `WEBHOOK_URL`, `N8N_EDITOR_BASE_URL`). Nothing is written when the
/// instance has no public address.
pub fn public_url_env(
    services: &[Service],
    name: &str,
    vars: &[String],
    layout: &Layout,
) -> Result<String, ServiceError> {
    validate(services)?;
    let at = format!("service `{name}`");
    let s = services
        .iter()
        .find(|s| s.name == name)
        .ok_or_else(|| ServiceError::new(&at, "not in the stack"))?;
    let port = s
        .ports
        .iter()
        .find(|p| p.expose == Exposure::Public)
        .ok_or_else(|| ServiceError::new(&at, "publishes no public port"))?
        .host_port();
    let file = s.env_file(layout).ok_or_else(|| {
        ServiceError::new(&at, "has no env file (only services with secrets have one)")
    })?;
    let mut lines = String::new();
    for v in vars {
        if !valid_env_name(v) {
            return Err(ServiceError::new(
                &at,
                format!("`{v}` is not an environment variable name (UPPER_CASE)"),
            ));
        }
        if s.env.contains_key(v) {
            return Err(ServiceError::new(
                &at,
                format!("{v} is set in its env already; one value only"),
            ));
        }
        let _ = writeln!(lines, "    echo \"{v}=http://$public_ip:{port}/\"");
    }
    Ok(format!(
        r#"# --- {name}'s public URL (this instance's public address) ---
imds_token="$(retry curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 300' http://169.254.169.254/latest/api/token)"
public_ip="$(curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" http://169.254.169.254/latest/meta-data/public-ipv4 || true)"
if [ -n "$public_ip" ]; then
  umask 077
  {{
{lines}  }} >> '{file}'
  umask 022
fi
"#
    ))
}

/// Where the boot script puts Docker's systemd drop-in.
pub const DOCKER_DROP_IN_DIR: &str = "/etc/systemd/system/docker.service.d";

/// The volumes' directories (owned by the service's `user` when it has one), Docker made to
/// wait for the mounts the services use (at every later boot), then the images pulled (retried)
/// and the stack started from `<stack_dir>/compose.yaml`.
pub fn start(services: &[Service], layout: &Layout) -> Result<String, ServiceError> {
    start_from(services, layout, "compose.yaml")
}

/// [`start`] from another compose file of the stack directory (`compose.setup.yaml`: see
/// [`compose_file_holding`]).
pub fn start_from(
    services: &[Service],
    layout: &Layout,
    file: &str,
) -> Result<String, ServiceError> {
    validate(services)?;
    if !(file.ends_with(".yaml")
        && file
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        && !file.starts_with('.'))
    {
        return Err(ServiceError::new(
            "file",
            format!("`{file}` is not a compose file name in the stack directory (like compose.setup.yaml)"),
        ));
    }
    for p in [&layout.efs_dir, &layout.data_dir, &layout.stack_dir] {
        boot::check_path(p).map_err(|e| ServiceError::new("layout", e))?;
    }
    let dir = &layout.stack_dir;
    let mut out = String::from("# --- start the stack ---\n");
    let mut dirs: Vec<String> = Vec::new();
    let mut owned: Vec<(String, String)> = Vec::new();
    for s in services {
        for source in s.volumes.values() {
            let d = host_dir(source, layout).expect("validated");
            if !dirs.contains(&d) {
                dirs.push(d.clone());
            }
            if let Some(u) = &s.user {
                let owner = if u.contains(':') {
                    u.clone()
                } else {
                    format!("{u}:{u}")
                };
                owned.push((owner, d));
            }
        }
    }
    if !dirs.is_empty() {
        let list: Vec<String> = dirs.iter().map(|d| format!("'{d}'")).collect();
        let _ = writeln!(out, "mkdir -p {}", list.join(" "));
    }
    for (owner, d) in owned {
        let _ = writeln!(out, "chown -R {owner} '{d}'");
    }
    // After a reboot Docker must not start before the storage is mounted: a container started
    // on an empty mount point would initialise a new, empty database over the real one.
    let mounts: Vec<&str> = [(&layout.efs_dir, "efs:"), (&layout.data_dir, "data:")]
        .into_iter()
        .filter(|(_, prefix)| {
            services
                .iter()
                .any(|s| s.volumes.values().any(|v| v.starts_with(prefix)))
        })
        .map(|(d, _)| d.as_str())
        .collect();
    if !mounts.is_empty() {
        let _ = writeln!(
            out,
            "mkdir -p {DOCKER_DROP_IN_DIR}\nprintf '[Unit]\\nRequiresMountsFor=%s\\n' '{}' > {DOCKER_DROP_IN_DIR}/geusemaker-mounts.conf\nsystemctl daemon-reload",
            mounts.join(" ")
        );
    }
    let compose = format!("docker compose --project-directory '{dir}' -f '{dir}/{file}'");
    let _ = writeln!(
        out,
        "retry {compose} pull --quiet\n{compose} up -d --remove-orphans"
    );
    Ok(out)
}

/// A daily systemd timer backing up every service that declares `backup` to
/// `<efs>/backups/<service>/`, keeping `keep_days` days. Empty when no service has one.
pub fn backups(
    services: &[Service],
    layout: &Layout,
    keep_days: u32,
) -> Result<String, ServiceError> {
    validate(services)?;
    for p in [&layout.efs_dir, &layout.stack_dir] {
        boot::check_path(p).map_err(|e| ServiceError::new("layout", e))?;
    }
    if !(1..=365).contains(&keep_days) {
        return Err(ServiceError::new("backups", "keep_days must be 1..365"));
    }
    let (efs, dir) = (&layout.efs_dir, &layout.stack_dir);
    let mut steps = String::new();
    let mut names = Vec::new();
    for s in services {
        let Some(b) = &s.backup else { continue };
        let target = format!("{efs}/backups/{}", s.name);
        let name = &s.name;
        names.push(name.as_str());
        let _ = writeln!(steps, "mkdir -p '{target}'");
        // A failed step is reported and the others still run; a dump is named only once it is
        // complete, so a half-written file never looks like a backup.
        if let Some(cmd) = &b.exec {
            let suffix = &b.suffix;
            let file = format!("'{target}/{name}-'\"$stamp\"'{suffix}'");
            let _ = writeln!(
                steps,
                "if docker compose --project-directory '{dir}' -f '{dir}/compose.yaml' exec -T '{name}' sh -c '{cmd}' | gzip > {file}.partial; then\n  mv {file}.partial {file}\nelse\n  rm -f {file}.partial\n  echo \"backup of {name} failed\" >&2\n  failed=1\nfi"
            );
        }
        if let Some(path) = &b.post {
            let (_, host) = first_port(s).expect("validated: backup.post has a port");
            let _ = writeln!(
                steps,
                "if ! curl -fsS -X POST 'http://127.0.0.1:{host}{path}' > /dev/null; then\n  echo \"backup of {name} failed\" >&2\n  failed=1\nfi"
            );
        }
        let _ = writeln!(steps, "find '{target}' -type f -mtime +{keep_days} -delete");
    }
    if names.is_empty() {
        return Ok(String::new());
    }
    let script = format!(
        "#!/bin/bash\n# Daily backups to EFS of: {} (installed by geusemaker).\nset -euo pipefail\numask 077\nstamp=\"$(date -u +%Y%m%dT%H%M%SZ)\"\nfailed=0\n{steps}exit \"$failed\"\n",
        names.join(", ")
    );
    let service = format!(
        "[Unit]\nDescription=geusemaker backups to EFS\nAfter=docker.service\n\n[Service]\nType=oneshot\nExecStart={dir}/backup.sh\n"
    );
    let timer = "[Unit]\nDescription=daily geusemaker backups\n\n[Timer]\nOnCalendar=daily\nRandomizedDelaySec=1h\nPersistent=true\n\n[Install]\nWantedBy=timers.target\n";
    let wrap = |r: Result<String, String>| r.map_err(|e| ServiceError::new("backups", e));
    let mut out = format!("# --- backups to EFS, daily: {} ---\n", names.join(", "));
    out.push_str(&wrap(boot::write_file(
        &format!("{dir}/backup.sh"),
        &script,
        "0750",
    ))?);
    out.push_str(&wrap(boot::write_file(
        "/etc/systemd/system/geusemaker-backup.service",
        &service,
        "0644",
    ))?);
    out.push_str(&wrap(boot::write_file(
        "/etc/systemd/system/geusemaker-backup.timer",
        timer,
        "0644",
    ))?);
    out.push_str("systemctl daemon-reload\nsystemctl enable --now geusemaker-backup.timer\n");
    Ok(out)
}
