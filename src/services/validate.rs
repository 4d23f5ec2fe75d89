//! A service list checked as a whole: names, ports, environment, volumes, limits, backups,
//! health checks and dependencies.

use super::*;

/// Check a decoded list: names, images, ports, secrets, volumes, health, dependencies.
pub fn validate(services: &[Service]) -> Result<(), ServiceError> {
    if services.is_empty() {
        return Err(ServiceError::new(
            "services",
            "the list is empty: a stack runs at least one service",
        ));
    }
    let names: Vec<&str> = services.iter().map(|s| s.name.as_str()).collect();
    let mut seen = BTreeSet::new();
    let mut host_ports: HashMap<u16, &str> = HashMap::new();
    let mut sources: Vec<(String, &str)> = Vec::new();
    for s in services {
        let at = format!("service `{}`", s.name);
        let at = at.as_str();
        if !valid_name(&s.name) {
            return Err(ServiceError::new(
                at,
                "a name is 1-32 lowercase letters, digits and `-`, starting with a letter",
            ));
        }
        if !seen.insert(s.name.as_str()) {
            return Err(ServiceError::new(at, "declared twice")
                .hint("service names are unique: remove or rename one of them"));
        }
        let text = serde_json::to_string(s).unwrap_or_default();
        if text.contains(boot::HEREDOC_DELIMITER) {
            return Err(ServiceError::new(
                at,
                format!(
                    "`{}` is reserved (it ends the files of the boot script)",
                    boot::HEREDOC_DELIMITER
                ),
            ));
        }
        boot::check_image(&s.image).map_err(|e| {
            ServiceError::new(at, e).hint("pin a release tag, e.g. `n8nio/n8n:2.1.0`, or a digest")
        })?;
        check_ports(at, s, &mut host_ports)?;
        check_env(at, s)?;
        check_volumes(at, s, &mut sources)?;
        if let Some(h) = &s.health {
            check_health(at, s, h)?;
        }
        check_depends_on(at, s, &names)?;
        check_limits(at, s)?;
        check_backup(at, s)?;
    }
    check_cycles(services)
}

/// Ports: real, unique on the instance, not one the instance itself uses.
fn check_ports<'a>(
    at: &str,
    s: &'a Service,
    host_ports: &mut HashMap<u16, &'a str>,
) -> Result<(), ServiceError> {
    for p in &s.ports {
        if p.port == 0 || p.host == Some(0) {
            return Err(ServiceError::new(at, "port 0 is not a port"));
        }
        if p.expose == Exposure::None {
            if p.host.is_some() {
                return Err(ServiceError::new(
                    at,
                    format!(
                        "port {} has `host` but `expose: \"none\"` publishes nothing",
                        p.port
                    ),
                ));
            }
            continue;
        }
        if let Some(why) = reserved_port(p.host_port()) {
            return Err(ServiceError::new(
                at,
                format!(
                    "host port {} is taken on the instance: {why}",
                    p.host_port()
                ),
            )
            .hint("publish it on another `host` port"));
        }
        if let Some(other) = host_ports.insert(p.host_port(), &s.name) {
            return Err(ServiceError::new(
                at,
                format!("host port {} is also published by `{other}`", p.host_port()),
            )
            .hint("give one of them another `host` port"));
        }
    }
    Ok(())
}

/// Environment and secrets: variable names, no variable both plain and secret.
fn check_env(at: &str, s: &Service) -> Result<(), ServiceError> {
    for (k, v) in &s.env {
        if !valid_env_name(k) {
            return Err(ServiceError::new(
                at,
                format!("`{k}` is not an environment variable name (UPPER_CASE)"),
            ));
        }
        if v.contains('\0') {
            return Err(ServiceError::new(
                at,
                format!("env `{k}` contains a NUL byte"),
            ));
        }
    }
    for (k, secret) in &s.secrets {
        if !valid_env_name(k) {
            return Err(ServiceError::new(
                at,
                format!("`{k}` is not an environment variable name (UPPER_CASE)"),
            ));
        }
        if s.env.contains_key(k) {
            return Err(ServiceError::new(
                at,
                format!("`{k}` is both in `env` and in `secrets`"),
            ));
        }
        if !valid_secret(secret) {
            return Err(ServiceError::new(
                at,
                format!(
                    "secret `{secret}` (for {k}) is not a secret name like `postgres/password`"
                ),
            ));
        }
    }
    Ok(())
}

/// Volumes: plain container paths, `efs:`/`data:` sources of their own (no overlap with
/// another volume, no other service's backups), databases not on NFS.
fn check_volumes<'a>(
    at: &str,
    s: &'a Service,
    sources: &mut Vec<(String, &'a str)>,
) -> Result<(), ServiceError> {
    for (path, source) in &s.volumes {
        boot::check_path(path).map_err(|e| ServiceError::new(at, format!("volume {e}")))?;
        let Some((store, _)) = parse_source(source) else {
            return Err(ServiceError::new(
                at,
                format!("volume {path}: `{source}` is not `efs:<dir>` or `data:<dir>`"),
            ));
        };
        let (_, dir) = parse_source(source).expect("parsed above");
        if store == Store::Efs
            && (dir == "backups"
                || (dir.starts_with("backups/") && dir != format!("backups/{}", s.name)))
        {
            return Err(ServiceError::new(
                at,
                format!("volume {path}: `{source}` holds other services' backups"),
            )
            .hint(format!(
                "a service may mount only its own: `efs:backups/{}`",
                s.name
            )));
        }
        if let Some((other, other_source)) = sources.iter().find(|(_, o)| overlapping(o, source)) {
            return Err(ServiceError::new(
                at,
                format!("volume {path}: `{source}` overlaps `{other_source}` (of {other})"),
            )
            .hint("give every volume a directory of its own"));
        }
        sources.push((format!("`{}` {path}", s.name), source.as_str()));
        if store == Store::Efs {
            let repo = repository(&s.image);
            for (image, data_path, why) in NOT_ON_NFS {
                if repo == *image
                    && (path == data_path
                        || path.starts_with(&format!("{data_path}/"))
                        || data_path.starts_with(&format!("{path}/")))
                {
                    return Err(ServiceError::new(
                        at,
                        format!("volume {path} on EFS (`{source}`): {why}"),
                    )
                    .hint(format!("put it on the data volume: `data:{}`", s.name)));
                }
            }
        }
    }
    Ok(())
}

fn check_depends_on(at: &str, s: &Service, names: &[&str]) -> Result<(), ServiceError> {
    for d in &s.depends_on {
        if d == &s.name {
            return Err(ServiceError::new(at, "depends on itself"));
        }
        if !names.contains(&d.as_str()) {
            let e = ServiceError::new(
                at,
                format!("depends_on names `{d}`, which is not a service of the stack"),
            );
            return Err(match did_you_mean(d, names.iter().copied()) {
                Some(m) => e.hint(format!("did you mean `{m}`?")),
                None => e.hint(format!("the stack runs: {}", names.join(", "))),
            });
        }
    }
    Ok(())
}

/// Memory, shared memory, user, command.
fn check_limits(at: &str, s: &Service) -> Result<(), ServiceError> {
    for (what, v) in [("memory", &s.memory), ("shm_size", &s.shm_size)] {
        if let Some(v) = v {
            if !valid_size(v) {
                return Err(ServiceError::new(
                    at,
                    format!("{what} `{v}` is not a size like 512m or 2g"),
                ));
            }
        }
    }
    if let Some(m) = &s.memory {
        if size_bytes(m) < 6 * 1024 * 1024 {
            return Err(ServiceError::new(
                at,
                format!("memory `{m}` is below Docker's minimum of 6m"),
            ));
        }
    }
    if let Some(u) = &s.user {
        if !valid_user(u) {
            return Err(ServiceError::new(
                at,
                format!("user `{u}` is not `uid` or `uid:gid`"),
            ));
        }
    }
    if let Some(c) = &s.command {
        if c.is_empty() || c.iter().any(|a| a.contains('\0')) {
            return Err(ServiceError::new(
                at,
                "command must be a non-empty list of arguments",
            ));
        }
    }
    Ok(())
}

fn check_backup(at: &str, s: &Service) -> Result<(), ServiceError> {
    if let Some(b) = &s.backup {
        match (&b.exec, &b.post) {
            (Some(cmd), None) if shell_safe(cmd) => {}
            (Some(_), None) => {
                return Err(ServiceError::new(
                    at,
                    "backup.exec may not contain quotes, backslashes or newlines",
                ))
            }
            (None, Some(path)) if valid_path(path) => {
                if first_port(s).is_none() {
                    return Err(ServiceError::new(at, "backup.post needs a published port"));
                }
            }
            (None, Some(path)) => {
                return Err(ServiceError::new(
                    at,
                    format!("backup.post `{path}` is not an HTTP path"),
                ))
            }
            _ => {
                return Err(ServiceError::new(
                    at,
                    "backup takes exactly one of `exec` or `post`",
                ))
            }
        }
        if !b.suffix.starts_with('.')
            || !b.suffix[1..]
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.')
        {
            return Err(ServiceError::new(
                at,
                format!("backup.suffix `{}` is not like `.sql.gz`", b.suffix),
            ));
        }
    }
    Ok(())
}

/// Host ports the instance itself uses.
fn reserved_port(port: u16) -> Option<&'static str> {
    match port {
        22 => Some("SSH (opened only with ssh_cidr)"),
        20049..=21049 => Some("amazon-efs-utils' TLS tunnels to EFS"),
        _ => None,
    }
}

/// Two volume sources that would share files: the same directory, or one inside the other.
fn overlapping(a: &str, b: &str) -> bool {
    let (Some((sa, da)), Some((sb, db))) = (parse_source(a), parse_source(b)) else {
        return false;
    };
    sa == sb && (da == db || da.starts_with(&format!("{db}/")) || db.starts_with(&format!("{da}/")))
}

/// The first published port's (container port, host port), if any.
pub(super) fn first_port(s: &Service) -> Option<(u16, u16)> {
    s.ports
        .iter()
        .find(|p| p.expose != Exposure::None)
        .map(|p| (p.port, p.host_port()))
}

fn check_health(at: &str, s: &Service, h: &Health) -> Result<(), ServiceError> {
    let kinds = [h.http.is_some(), h.tcp, h.exec.is_some()];
    if kinds.iter().filter(|k| **k).count() != 1 {
        return Err(ServiceError::new(
            at,
            "health takes exactly one of `http` (a path), `tcp: true` or `exec` (a command)",
        ));
    }
    if !(1..=120_000).contains(&h.timeout_ms) {
        return Err(ServiceError::new(at, "health.timeout_ms must be 1..120000"));
    }
    if let Some(p) = &h.http {
        if !valid_path(p) {
            return Err(ServiceError::new(
                at,
                format!("health.http `{p}` is not an HTTP path like /healthz"),
            ));
        }
    }
    if let Some(c) = &h.exec {
        if !shell_safe(c) {
            return Err(ServiceError::new(
                at,
                "health.exec may not contain quotes, backslashes or newlines",
            ));
        }
    }
    if let Some(b) = &h.body {
        if !shell_safe(b) || h.http.is_none() {
            return Err(ServiceError::new(
                at,
                "health.body goes with `http` and may not contain quotes, backslashes or newlines",
            ));
        }
    }
    if let Some(c) = &h.container {
        if c.trim().is_empty() || c.contains('\0') {
            return Err(ServiceError::new(
                at,
                "health.container is an empty command",
            ));
        }
    }
    if let Some(sp) = &h.start_period {
        if !valid_duration(sp) {
            return Err(ServiceError::new(
                at,
                format!("health.start_period `{sp}` is not a duration like 30s"),
            ));
        }
    }
    if h.http.is_some() || h.tcp {
        let port = h.port.or_else(|| s.ports.first().map(|p| p.port));
        match port {
            None => {
                return Err(ServiceError::new(
                    at,
                    "an http or tcp health check needs a port: the service has none",
                ))
            }
            Some(p) if !s.ports.iter().any(|x| x.port == p) => {
                return Err(ServiceError::new(
                    at,
                    format!("health.port {p} is not one of the service's ports"),
                ))
            }
            Some(p)
                if s.ports
                    .iter()
                    .any(|x| x.port == p && x.expose == Exposure::None) =>
            {
                return Err(ServiceError::new(
                    at,
                    format!("health checks port {p}, which is not published (`expose: \"none\"`)"),
                )
                .hint("publish it as \"internal\", or check with `exec`"))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

fn check_cycles(services: &[Service]) -> Result<(), ServiceError> {
    let by_name: HashMap<&str, &Service> = services.iter().map(|s| (s.name.as_str(), s)).collect();
    // 0 = unvisited, 1 = on the path, 2 = done.
    fn visit<'a>(
        n: &'a str,
        by_name: &HashMap<&'a str, &'a Service>,
        mark: &mut HashMap<&'a str, u8>,
        path: &mut Vec<&'a str>,
    ) -> Result<(), ServiceError> {
        match mark.get(n) {
            Some(2) => return Ok(()),
            Some(1) => {
                path.push(n);
                return Err(ServiceError::new(
                    format!("service `{n}`"),
                    format!("depends_on forms a cycle: {}", path.join(" → ")),
                ));
            }
            _ => {}
        }
        mark.insert(n, 1);
        path.push(n);
        for d in &by_name[n].depends_on {
            visit(d, by_name, mark, path)?;
        }
        path.pop();
        mark.insert(n, 2);
        Ok(())
    }
    let mut mark = HashMap::new();
    for s in services {
        visit(&s.name, &by_name, &mut mark, &mut Vec::new())?;
    }
    Ok(())
}
