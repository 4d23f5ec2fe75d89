//! `geusemaker status <name>`: the instance, the services' health, the load balancer and CDN,
//! the last rollback, and anything that has vanished.

use serde::Serialize;

use super::health::{Level, Tracker};
use super::{output, stack_services, Conn, LiveInstance, Missing};
use crate::cloud::AwsSettings;
use crate::config::Settings;
use crate::engine::RunError;
use crate::health::{run_checks, Check};
use crate::primitives::health::checks_from_json;
use crate::state::StackState;
use crate::ui::{Tone, Ui};

/// The checks the stack's recipe recorded (`state::set("health_checks", …)`), or n8n at the
/// stack's URL when it recorded none. The second value says which.
pub fn stack_checks(state: &StackState) -> Result<(Vec<Check>, Option<String>), String> {
    if let Some(v) = state.values.get("health_checks") {
        return checks_from_json(v).map(|c| (c, None));
    }
    let Some(url) = output(state, "n8n_url") else {
        return Ok((
            Vec::new(),
            Some("the recipe recorded no health checks".into()),
        ));
    };
    let fallback = serde_json::json!([{ "name": "n8n", "url": format!("{}/healthz", url.trim_end_matches('/')) }]);
    checks_from_json(&fallback).map(|c| {
        (
            c,
            Some("the recipe recorded no health checks (state::set(\"health_checks\", …)): checking n8n at its URL only".into()),
        )
    })
}

/// One round of the stack's checks, fed into `tracker`. Checks that run on the instance are
/// skipped (level unknown) when it is not running.
pub fn check_round(conn: &Conn, live: &LiveInstance, checks: &[Check], tracker: &mut Tracker) {
    let runnable: Vec<Check> = checks
        .iter()
        .filter(|c| c.on.is_none() || live.is_running())
        .cloned()
        .collect();
    for c in checks
        .iter()
        .filter(|c| c.on.is_some() && !live.is_running())
    {
        tracker.unknown(
            &c.name,
            &format!("not checked: the instance is {}", live.state()),
        );
    }
    for r in run_checks(&conn.blocking, conn.aws(), &runnable, None) {
        tracker.observe(&r);
    }
}

#[derive(Debug, Serialize)]
struct InstanceView {
    id: String,
    state: String,
    instance_type: Option<String>,
    market: Option<String>,
    az: Option<String>,
    public_ip: Option<String>,
    private_ip: Option<String>,
    launch_time: Option<String>,
    state_reason: Option<String>,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct ServiceView {
    name: String,
    target: String,
    status: Level,
    latency_ms: Option<i64>,
    consecutive_failures: u32,
    error: Option<String>,
}

#[derive(Debug, Serialize)]
struct LoadBalancerView {
    arn: String,
    dns: Option<String>,
    target_state: String,
    target_reason: String,
}

#[derive(Debug, Serialize)]
struct CdnView {
    id: String,
    domain: Option<String>,
    status: String,
    enabled: Option<bool>,
}

#[derive(Debug, Serialize)]
struct Report {
    name: String,
    tier: String,
    status: String,
    region: Option<String>,
    recipe: Option<String>,
    created_at: String,
    url: Option<String>,
    instance: Option<InstanceView>,
    services: Vec<ServiceView>,
    health_note: Option<String>,
    load_balancer: Option<LoadBalancerView>,
    cloudfront: Option<CdnView>,
    last_rollback: Option<crate::state::RollbackRecord>,
    missing: Vec<Missing>,
    missing_error: Option<String>,
    /// Where AWS differs from what the last healthy run applied.
    drift: Vec<String>,
    /// The last boot's timeline, as the instance reported it (`values.boot`).
    #[serde(skip_serializing_if = "Option::is_none")]
    boot: Option<crate::boot::BootReport>,
    aws_error: Option<String>,
}

/// `packages 40s · EFS 3s · Docker images 77s`, and where it stopped when it did not finish.
fn boot_line(b: &crate::boot::BootReport) -> String {
    let mut line = b
        .done
        .iter()
        .map(|s| format!("{} {}s", s.step, s.seconds))
        .collect::<Vec<_>>()
        .join(" · ");
    let total: u64 = b.done.iter().fold(0, |t, s| t.saturating_add(s.seconds));
    match (b.failed(), b.finished()) {
        (true, _) => line.push_str(&format!(" — FAILED in {}", b.step)),
        (_, true) => line.push_str(&format!(" ({total}s in all)")),
        _ => line.push_str(&format!(" — then {} (reported {})", b.step, b.at)),
    }
    line
}

/// `6 images, 3.1 GB (longest n8nio/n8n:2.41.3, 41s) · model llama3.2:3b 2.0 GB in 95s`:
/// the images came in parallel, so the longest is their time; the models one by one.
fn pulls_line(b: &crate::boot::BootReport) -> Option<String> {
    let images: Vec<&crate::boot::BootPull> =
        b.pulls.iter().filter(|p| p.kind == "image").collect();
    let mut parts = Vec::new();
    if !images.is_empty() {
        let bytes = images.iter().fold(0u64, |t, p| t.saturating_add(p.bytes));
        let longest = images.iter().max_by_key(|p| p.seconds).expect("not empty");
        let not_done = images.iter().filter(|p| p.state != "done").count();
        parts.push(format!(
            "{} image{}, {} (longest {}, {}s){}",
            images.len(),
            if images.len() == 1 { "" } else { "s" },
            crate::ui::bytes(bytes),
            longest.name,
            longest.seconds,
            if not_done > 0 {
                format!(", {not_done} not pulled")
            } else {
                String::new()
            }
        ));
    }
    for m in b.pulls.iter().filter(|p| p.kind == "model") {
        parts.push(match m.state.as_str() {
            "done" => format!(
                "model {} {} in {}s",
                m.name,
                crate::ui::bytes(m.bytes),
                m.seconds
            ),
            state => format!("model {} {state}", m.name),
        });
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

fn instance_view(state: &StackState, live: &LiveInstance) -> Option<InstanceView> {
    let base = |id: String, st: &str, error: Option<String>| InstanceView {
        id,
        state: st.into(),
        instance_type: None,
        market: output(state, "market"),
        az: None,
        public_ip: None,
        private_ip: None,
        launch_time: None,
        state_reason: None,
        error,
    };
    match live {
        LiveInstance::None => None,
        LiveInstance::Present(i) => Some(InstanceView {
            id: i.id.clone(),
            state: i.state.clone(),
            instance_type: Some(i.instance_type.clone()),
            market: Some(i.lifecycle.clone()),
            az: Some(i.az.clone()),
            public_ip: i.public_ip.clone(),
            private_ip: i.private_ip.clone(),
            launch_time: i.launch_time.clone(),
            state_reason: i.state_reason.clone(),
            error: None,
        }),
        LiveInstance::Gone(id) => Some(base(
            id.clone(),
            "gone",
            Some("AWS no longer knows this instance".into()),
        )),
        LiveInstance::Unknown(id, why) => Some(base(id.clone(), "unknown", Some(why.clone()))),
    }
}

fn gather(
    state: &StackState,
    conn: &Conn,
    settings: &Settings,
    home: &crate::state::Home,
) -> Report {
    let aws = conn.aws();
    let live = LiveInstance::of(state, aws, conn.aws.as_ref().err());

    let mut tracker = Tracker::load(home, state, settings.health());
    let destroyed = state.status == crate::state::StackStatus::Destroyed;
    let (services, health_note) = match stack_checks(state) {
        // Whatever answers at a destroyed stack's old addresses is not the stack.
        _ if destroyed => (
            Vec::new(),
            Some("the stack is destroyed: no service is checked".to_string()),
        ),
        Ok((checks, note)) => {
            check_round(conn, &live, &checks, &mut tracker);
            let views = checks
                .iter()
                .map(|c| {
                    let rec = tracker.services.get(&c.name).cloned().unwrap_or_default();
                    ServiceView {
                        name: c.name.clone(),
                        target: c.target()
                            + if c.on.is_some() {
                                " (on the instance)"
                            } else {
                                ""
                            },
                        status: rec.level,
                        latency_ms: rec.latency_ms,
                        consecutive_failures: rec.consecutive_failures,
                        error: rec.error,
                    }
                })
                .collect::<Vec<_>>();
            // Services the deploy recorded that declare no health check: listed, not checked.
            let unchecked: Vec<ServiceView> = stack_services(state)
                .into_iter()
                .filter(|name| !views.iter().any(|v| &v.name == name))
                .map(|name| ServiceView {
                    name,
                    target: "-".into(),
                    status: Level::Unknown,
                    latency_ms: None,
                    consecutive_failures: 0,
                    error: Some("no health check declared".into()),
                })
                .collect();
            (views.into_iter().chain(unchecked).collect(), note)
        }
        Err(e) => (
            Vec::new(),
            Some(format!("the recorded health checks are unusable: {e}")),
        ),
    };

    let load_balancer = output(state, "target_group_arn").map(|tg| {
        let (target_state, target_reason) = match (aws, live.instance()) {
            (Some(aws), Some(i)) => match aws.elb.target_health(&tg, &i.id) {
                Ok(Some((s, r))) => (s, r),
                Ok(None) => ("unregistered".into(), "the instance is not a target".into()),
                Err(e) if e.is_not_found() => ("missing".into(), "the target group is gone".into()),
                Err(e) => ("unknown".into(), e.code),
            },
            (Some(_), None) => ("-".into(), format!("the instance is {}", live.state())),
            (None, _) => ("unknown".into(), "no AWS connection".into()),
        };
        LoadBalancerView {
            arn: output(state, "load_balancer_arn").unwrap_or_default(),
            dns: output(state, "load_balancer_dns"),
            target_state,
            target_reason,
        }
    });

    let cloudfront =
        output(state, "cloudfront_id").map(|id| match aws.map(|a| a.cloudfront.get(&id)) {
            Some(Ok(Some(d))) => CdnView {
                id,
                domain: Some(d.domain),
                status: d.status,
                enabled: Some(d.enabled),
            },
            Some(Ok(None)) => CdnView {
                id,
                domain: output(state, "cloudfront_domain"),
                status: "missing".into(),
                enabled: None,
            },
            Some(Err(e)) => CdnView {
                id,
                domain: output(state, "cloudfront_domain"),
                status: format!("unknown ({})", e.code),
                enabled: None,
            },
            None => CdnView {
                id,
                domain: output(state, "cloudfront_domain"),
                status: "unknown".into(),
                enabled: None,
            },
        });

    let (missing, missing_error) = match aws.map(|a| super::missing_resources(a, state)) {
        Some(Ok(m)) => (m, None),
        Some(Err(e)) => (Vec::new(), Some(format!("{}: {}", e.code, e.message))),
        None => (Vec::new(), None),
    };

    let drift = match (aws, live.instance()) {
        (Some(aws), Some(i)) if !destroyed && i.state == "running" => drift(state, aws, i),
        _ => Vec::new(),
    };

    Report {
        name: state.stack.clone(),
        tier: super::tier(state),
        status: state.status.as_str().into(),
        region: state.region.clone(),
        recipe: state.recipe.clone(),
        created_at: state.created_at.to_rfc3339(),
        url: output(state, "n8n_url"),
        instance: instance_view(state, &live),
        services,
        health_note,
        load_balancer,
        cloudfront,
        last_rollback: state.rollback_history.last().cloned(),
        missing,
        missing_error,
        drift,
        // The timeline of the instance running now: one launched since without a reporting
        // boot has none.
        boot: state
            .values
            .get("boot")
            .and_then(|v| serde_json::from_value::<crate::boot::BootReport>(v.clone()).ok())
            .filter(|b| match (&b.on, &live) {
                (Some(on), LiveInstance::Present(i)) => *on == i.id,
                _ => true,
            }),
        aws_error: conn.aws.as_ref().err().map(|e| e.to_string()),
    }
}

/// Where the live instance and the stack's security groups differ from what the last healthy
/// run applied (see [`crate::state::applied`]).
fn drift(
    state: &StackState,
    aws: &crate::cloud::Aws,
    live: &crate::cloud::ec2::Instance,
) -> Vec<String> {
    use crate::state::applied::{self, Applied, Observed};
    let Some(applied) = state
        .values
        .get(applied::KEY)
        .and_then(|v| serde_json::from_value::<Applied>(v.clone()).ok())
    else {
        return Vec::new();
    };
    let mut unreadable = Vec::new();
    let groups = applied
        .groups
        .iter()
        .filter_map(|g| match aws.ec2.security_group(&g.id) {
            Ok(sg) => Some((g, Some(sg.ingress.iter().map(|r| r.to_string()).collect()))),
            Err(e) if e.is_not_found() => Some((g, None)),
            Err(e) => {
                unreadable.push(format!("security group {}: {}", g.name, e.code));
                None
            }
        })
        .collect();
    let now = Observed {
        instance_id: &live.id,
        instance_type: &live.instance_type,
        image_id: &live.image_id,
        services: live.tags.get("geusemaker:services").map(String::as_str),
        groups,
    };
    let mut out = applied::drift(&applied, &now);
    out.extend(
        unreadable
            .into_iter()
            .map(|u| format!("{u} (could not be read)")),
    );
    out
}

fn render(r: &Report, ui: &Ui) {
    let now = chrono::Utc::now();
    let age = super::parse_time(&r.created_at)
        .map(|t| super::fmt_age(t, now))
        .unwrap_or_default();
    ui.line(&format!(
        "Stack {} · {} tier · {} · {} · created {age} ago",
        r.name,
        r.tier,
        r.status,
        r.region.as_deref().unwrap_or("no region yet"),
    ));
    if let Some(e) = &r.aws_error {
        ui.warn(&format!("no AWS access, live figures are unknown: {e}"));
    }
    if let Some(url) = &r.url {
        ui.line(&format!("URL       {url}"));
    }
    match &r.instance {
        None => ui.line("Instance  none recorded"),
        Some(i) => {
            let st = ui.tone(
                &i.state,
                if i.state == "running" {
                    Tone::Good
                } else {
                    Tone::Bad
                },
            );
            let mut line = format!("Instance  {} {st}", i.id);
            if let (Some(t), Some(m), Some(az)) = (&i.instance_type, &i.market, &i.az) {
                line.push_str(&format!(" · {t} {m} in {az}"));
            }
            if let Some(ip) = i.public_ip.as_ref().or(i.private_ip.as_ref()) {
                line.push_str(&format!(" · {ip}"));
            }
            match i.launch_time.as_deref().and_then(super::parse_time) {
                Some(t) if i.state == "running" => {
                    line.push_str(&format!(" · up {}", super::fmt_age(t, now)))
                }
                _ => {}
            }
            ui.line(&line);
            if let Some(reason) = &i.state_reason {
                ui.line(&format!("          state reason: {reason}"));
            }
            if let Some(e) = &i.error {
                ui.line(&format!("          {e}"));
            }
        }
    }
    if let Some(b) = &r.boot {
        ui.line(&format!("Boot      {}", boot_line(b)));
        if let Some(p) = pulls_line(b) {
            ui.line(&format!("Pulled    {p}"));
        }
    }
    if !r.services.is_empty() {
        ui.line("");
        let rows: Vec<Vec<String>> = r
            .services
            .iter()
            .map(|s| {
                vec![
                    s.name.clone(),
                    format!(
                        "{}{}",
                        ui.mark(s.status.tone()),
                        ui.tone(s.status.as_str(), s.status.tone())
                    ),
                    s.latency_ms.map_or("-".into(), |ms| format!("{ms} ms")),
                    s.consecutive_failures.to_string(),
                    s.error.clone().unwrap_or_default(),
                ]
            })
            .collect();
        ui.table(
            &["SERVICE", "STATUS", "LATENCY", "FAILURES", "DETAIL"].map(String::from),
            &rows,
        );
    }
    if let Some(n) = &r.health_note {
        ui.line(&format!("note: {n}"));
    }
    if let Some(lb) = &r.load_balancer {
        ui.line("");
        ui.line(&format!(
            "Load balancer  {} · target {} {}",
            lb.dns.as_deref().unwrap_or(&lb.arn),
            lb.target_state,
            if lb.target_reason.is_empty() {
                String::new()
            } else {
                format!("({})", lb.target_reason)
            }
        ));
    }
    if let Some(cdn) = &r.cloudfront {
        ui.line(&format!(
            "CloudFront     {} · {}{}",
            cdn.domain.as_deref().unwrap_or(&cdn.id),
            cdn.status,
            match cdn.enabled {
                Some(false) => " (disabled)",
                _ => "",
            }
        ));
    }
    ui.line("");
    match &r.last_rollback {
        None => ui.line("Last rollback  none"),
        Some(rb) => {
            ui.line(&format!(
                "Last rollback  {} · trigger {} · {}{}",
                rb.at.as_deref().unwrap_or("?"),
                rb.trigger.as_deref().unwrap_or("?"),
                if rb.success.unwrap_or(false) {
                    "succeeded".to_string()
                } else {
                    format!(
                        "failed: {}",
                        rb.error.as_deref().unwrap_or("see the stack's log")
                    )
                },
                rb.down_seconds
                    .map(|s| format!(" · down at most {s} s"))
                    .unwrap_or_default(),
            ));
            if let Some(reason) = &rb.reason {
                ui.line(&format!(
                    "               why: {}",
                    crate::ui::printable(reason)
                ));
            }
        }
    }
    if !r.missing.is_empty() {
        ui.line("");
        ui.line(&ui.tone(
            &format!(
                "Missing: {} resource(s) in the ledger are gone from AWS",
                r.missing.len()
            ),
            Tone::Bad,
        ));
        for m in &r.missing {
            ui.line(&format!("    {} {} ({})", m.kind, m.id, m.name));
        }
        ui.line(&format!(
            "    `geusemaker run <recipe> --name {0}` recreates them; `geusemaker destroy {0}` cleans up",
            r.name
        ));
    }
    if let Some(e) = &r.missing_error {
        ui.warn(&format!("could not check which resources still exist: {e}"));
    }
    if !r.drift.is_empty() {
        ui.line("");
        ui.line(&ui.tone(
            "Drift: AWS differs from what the last run applied",
            Tone::Bad,
        ));
        for d in &r.drift {
            ui.line(&format!("    {d}"));
        }
        ui.line(&format!(
            "    `geusemaker run <recipe> --name {} --plan` shows what a run changes back",
            r.name
        ));
    }
}

/// `geusemaker status <name> [--json]`.
pub fn status(
    name: &str,
    json: bool,
    flags: &AwsSettings,
    settings: &Settings,
) -> Result<(), RunError> {
    let opened = super::open(name)?;
    let conn = Conn::for_stack(&opened.state, flags, settings)?;
    let report = gather(&opened.state, &conn, settings, &opened.home);
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).expect("the report serializes")
        );
    } else {
        render(&report, &Ui::detect(false));
    }
    Ok(())
}
