//! `geusemaker cost <name>`: what the stack costs per hour and month, what it has cost so far,
//! and what it would cost on demand — each figure saying where it came from.
//!
//! The instance's spot price is the time-weighted average of the spot price history for its
//! type and zone over its uptime; the on-demand counterfactual comes from the Price List API
//! (cached, with a bundled fallback). Storage sizes are measured now; the load balancer and
//! CloudFront are list-price estimates.

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::{output, parse_time, Conn};
use crate::cloud::pricing::{
    on_demand_price, EFS_GB_MONTH_USD, FALLBACK_ON_DEMAND, GP3_GB_MONTH_USD, HOURS_PER_MONTH,
};
use crate::cloud::{Aws, AwsSettings};
use crate::config::Settings;
use crate::engine::RunError;
use crate::state::Kind;
use crate::state::{Home, ResourceStatus, StackState};
use crate::ui::Ui;

/// Load balancer list price: $0.0225/h plus about one LCU ($0.008/LCU-hour) of light traffic.
pub const ALB_USD_PER_HOUR: f64 = 0.0225 + 0.008;
/// CloudFront: $0.085 per GB to the internet (first 10 TB), plus about $0.50 of requests.
pub const CLOUDFRONT_USD_PER_GB: f64 = 0.085;
pub const CLOUDFRONT_REQUESTS_USD_MONTH: f64 = 0.5;
/// When there is no spot price history: spot usually runs at about 30% of on-demand.
pub const SPOT_GUESS_FRACTION: f64 = 0.3;

/// The average of a stepwise price over `[from, to)`: each change holds until the next; the
/// first known price also covers any time before it. `None` without any change.
pub fn time_weighted(
    changes: &[(DateTime<Utc>, f64)],
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Option<f64> {
    let mut sorted: Vec<(DateTime<Utc>, f64)> = changes.to_vec();
    sorted.sort_by_key(|c| c.0);
    let first = sorted.first()?;
    if to <= from {
        // No time has passed: the price in force at `from`.
        return Some(sorted.iter().rev().find(|c| c.0 <= from).unwrap_or(first).1);
    }
    let total = (to - from).num_milliseconds() as f64;
    let mut sum = 0.0;
    for (i, (at, price)) in sorted.iter().enumerate() {
        let start = if i == 0 { from } else { (*at).max(from) };
        let end = sorted.get(i + 1).map_or(to, |next| next.0.min(to));
        if end > start {
            sum += price * (end - start).num_milliseconds() as f64;
        }
    }
    Some(sum / total)
}

/// One priced item.
#[derive(Debug, Clone, Serialize)]
pub struct Line {
    pub item: String,
    pub usd_per_hour: f64,
    pub usd_per_month: f64,
    /// Where the figure came from.
    pub source: String,
    pub estimate: bool,
}

/// The price of the stack's instance now.
#[derive(Debug, Clone, Serialize)]
pub struct InstancePrice {
    pub id: String,
    pub instance_type: String,
    pub market: String,
    pub az: String,
    pub uptime_hours: f64,
    /// What it costs per hour now (the latest spot price, or on-demand).
    pub usd_per_hour: f64,
    /// Spot only: the time-weighted average over its uptime.
    pub average_usd_per_hour: Option<f64>,
    pub source: String,
    pub on_demand_usd_per_hour: f64,
    pub on_demand_source: String,
    pub estimate: bool,
}

/// The whole cost picture.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    pub stack: String,
    pub region: String,
    pub instance: Option<InstancePrice>,
    pub lines: Vec<Line>,
    pub usd_per_hour: f64,
    pub usd_per_month: f64,
    pub on_demand_usd_per_month: f64,
    pub savings_pct: f64,
    pub cost_to_date_usd: f64,
    pub since: String,
    pub notes: Vec<String>,
}

/// On-demand price with where it came from; without AWS, the bundled table.
fn on_demand(aws: Option<&Aws>, home: &Home, region: &str, itype: &str) -> Option<(f64, String)> {
    match aws {
        Some(aws) => {
            match on_demand_price(aws.pricing.as_ref(), &home.cache_dir(), region, itype) {
                Ok(p) => Some((
                    p.usd_per_hour,
                    match p.source.as_str() {
                        "api" => "Price List API".to_string(),
                        "cache" => "Price List API (cached)".to_string(),
                        _ => p.note,
                    },
                )),
                Err(_) => None,
            }
        }
        None => FALLBACK_ON_DEMAND
            .iter()
            .find(|(t, _)| *t == itype)
            .map(|(_, usd)| {
                (
                    *usd,
                    "bundled us-east-1 list price (no AWS access)".to_string(),
                )
            }),
    }
}

/// The spot price over `[from, to)` in `az`: (current, average, source, estimate?).
fn spot(
    aws: Option<&Aws>,
    itype: &str,
    az: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    on_demand: Option<f64>,
) -> Option<(f64, f64, String, bool)> {
    let changes: Vec<(DateTime<Utc>, f64)> = aws
        .and_then(|a| a.ec2.spot_price_changes(itype, az, from.into()).ok())
        .unwrap_or_default()
        .into_iter()
        .filter_map(|p| Some((parse_time(&p.timestamp)?, p.usd_per_hour)))
        .collect();
    match time_weighted(&changes, from, to) {
        Some(avg) => {
            let now = changes.iter().max_by_key(|c| c.0).map_or(avg, |c| c.1);
            Some((
                now,
                avg,
                format!(
                    "spot price history in {az}, time-weighted over the uptime ({} price point{})",
                    changes.len(),
                    if changes.len() == 1 { "" } else { "s" }
                ),
                false,
            ))
        }
        None => on_demand.map(|od| {
            let guess = od * SPOT_GUESS_FRACTION;
            (
                guess,
                guess,
                format!(
                    "no spot price history for {az}: {}% of on-demand",
                    (SPOT_GUESS_FRACTION * 100.0) as i64
                ),
                true,
            )
        }),
    }
}

fn monthly(hourly: f64) -> f64 {
    hourly * HOURS_PER_MONTH
}

/// Work out the stack's costs.
pub fn estimate(state: &StackState, conn: &Conn, home: &Home) -> CostReport {
    let aws = conn.aws();
    let now = Utc::now();
    let region = state
        .region
        .clone()
        .or_else(|| aws.map(|a| a.region.clone()))
        .unwrap_or_else(|| "us-east-1".into());
    let mut notes = Vec::new();
    if let Err(e) = &conn.aws {
        notes.push(format!(
            "no AWS access ({}): live figures are replaced by recorded ones",
            e.message
        ));
    }
    let mut lines = Vec::new();
    let mut on_demand_lines = 0.0;

    // ---- The instance now ----------------------------------------------------------------
    let live = super::LiveInstance::of(state, aws, conn.aws.as_ref().err());
    let instance = live
        .instance()
        .filter(|i| matches!(i.state.as_str(), "pending" | "running"))
        .map(|i| {
            let launched = i
                .launch_time
                .as_deref()
                .and_then(parse_time)
                .unwrap_or(state.created_at);
            let od = on_demand(aws, home, &region, &i.instance_type);
            let (od_usd, od_source) = od.clone().unwrap_or((
                0.0,
                "unknown: not in the Price List nor the bundled table".into(),
            ));
            let (usd, avg, source, estimate) = if i.lifecycle == "spot" {
                match spot(
                    aws,
                    &i.instance_type,
                    &i.az,
                    launched,
                    now,
                    od.as_ref().map(|o| o.0),
                ) {
                    Some((cur, avg, src, est)) => (cur, Some(avg), src, est),
                    None => (0.0, None, "unknown".into(), true),
                }
            } else {
                (od_usd, None, od_source.clone(), od.is_none())
            };
            InstancePrice {
                id: i.id.clone(),
                instance_type: i.instance_type.clone(),
                market: i.lifecycle.clone(),
                az: i.az.clone(),
                uptime_hours: hours(launched, now),
                usd_per_hour: usd,
                average_usd_per_hour: avg,
                source,
                on_demand_usd_per_hour: od_usd,
                on_demand_source: od_source,
                estimate,
            }
        });
    match (&instance, &live) {
        (Some(p), _) => {
            lines.push(Line {
                item: format!("instance {} ({} {})", p.id, p.instance_type, p.market),
                usd_per_hour: p.usd_per_hour,
                usd_per_month: monthly(p.usd_per_hour),
                source: p.source.clone(),
                estimate: p.estimate,
            });
            on_demand_lines += monthly(p.on_demand_usd_per_hour);
        }
        (None, super::LiveInstance::None) => {}
        (None, other) => notes.push(format!(
            "the instance is {}: it costs nothing now",
            other.state()
        )),
    }

    // ---- Storage -----------------------------------------------------------------------
    let mut storage_month = 0.0;
    if let Some(fs_id) = output(state, "file_system_id") {
        match aws.map(|a| a.efs.file_system(&fs_id)) {
            Some(Ok(fs)) => {
                let metered = fs.size_bytes as f64 / 1e9;
                // A new file system meters almost nothing; until it grows past the recipe's
                // expectation, the expectation is the better monthly figure.
                let expected = state
                    .params
                    .get("efs_gb_estimate")
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0);
                let (gb, basis) = if expected > metered {
                    (expected, format!("the recipe's efs_gb_estimate ({expected} GB; {metered:.2} GB metered now)"))
                } else {
                    (metered, "metered size now".to_string())
                };
                let m = gb * EFS_GB_MONTH_USD;
                storage_month += m;
                lines.push(Line {
                    item: format!("EFS {fs_id} ({gb:.2} GB)"),
                    usd_per_hour: m / HOURS_PER_MONTH,
                    usd_per_month: m,
                    source: format!("{basis} × ${EFS_GB_MONTH_USD}/GB-month (Standard)"),
                    estimate: true,
                });
            }
            Some(Err(e)) if e.is_not_found() => notes.push(format!("file system {fs_id} is gone")),
            _ => notes.push(format!("file system {fs_id}: size unknown")),
        }
    }
    let root_gb = state
        .params
        .get("root_volume_gb")
        .and_then(|v| v.as_f64())
        .unwrap_or(30.0);
    if instance.is_some() {
        let m = root_gb * GP3_GB_MONTH_USD;
        storage_month += m;
        lines.push(Line {
            item: format!("EBS root volume ({root_gb} GB gp3)"),
            usd_per_hour: m / HOURS_PER_MONTH,
            usd_per_month: m,
            source: format!("recipe param root_volume_gb × ${GP3_GB_MONTH_USD}/GB-month"),
            estimate: false,
        });
    }
    if let Some(vol_id) = output(state, "data_volume_id") {
        match aws.map(|a| a.ec2.volume(&vol_id)) {
            Some(Ok(v)) => {
                let m = v.size_gb as f64 * GP3_GB_MONTH_USD;
                storage_month += m;
                lines.push(Line {
                    item: format!(
                        "EBS data volume {vol_id} ({} GB {})",
                        v.size_gb, v.volume_type
                    ),
                    usd_per_hour: m / HOURS_PER_MONTH,
                    usd_per_month: m,
                    source: format!("provisioned size × ${GP3_GB_MONTH_USD}/GB-month"),
                    estimate: false,
                });
            }
            Some(Err(e)) if e.is_not_found() => notes.push(format!("data volume {vol_id} is gone")),
            _ => notes.push(format!("data volume {vol_id}: size unknown")),
        }
    }

    // ---- What sits in front ------------------------------------------------------------
    // (monthly cost, since when) of each edge item, for the cost to date.
    let mut edge: Vec<(f64, DateTime<Utc>)> = Vec::new();
    let lb_since = created_at(state, Kind::LoadBalancer)
        .filter(|_| output(state, "load_balancer_arn").is_some());
    if let Some(since) = lb_since {
        let m = monthly(ALB_USD_PER_HOUR);
        edge.push((m, since));
        lines.push(Line {
            item: "application load balancer".into(),
            usd_per_hour: ALB_USD_PER_HOUR,
            usd_per_month: m,
            source: "list price: $0.0225/h + about 1 LCU ($0.008/LCU-hour)".into(),
            estimate: true,
        });
    }
    let cdn_since =
        created_at(state, Kind::Distribution).filter(|_| output(state, "cloudfront_id").is_some());
    if let Some(since) = cdn_since {
        let gb = state
            .params
            .get("cdn_gb_estimate")
            .and_then(|v| v.as_f64())
            .unwrap_or(50.0);
        let m = gb * CLOUDFRONT_USD_PER_GB + CLOUDFRONT_REQUESTS_USD_MONTH;
        edge.push((m, since));
        lines.push(Line {
            item: format!("CloudFront ({gb} GB out per month)"),
            usd_per_hour: m / HOURS_PER_MONTH,
            usd_per_month: m,
            source: "list price: $0.085/GB out + requests; traffic is the recipe's cdn_gb_estimate"
                .into(),
            estimate: true,
        });
    }

    // ---- Cost to date ------------------------------------------------------------------
    let mut to_date = 0.0;
    for r in state
        .resources
        .iter()
        .filter(|r| r.kind == Kind::Instance && r.id.is_some())
    {
        let end = match (r.status, r.deleted_at) {
            (ResourceStatus::Created, _) => now,
            (ResourceStatus::Deleted, Some(at)) => at,
            (ResourceStatus::Deleted, None) => {
                notes.push(format!(
                    "instance {} has no recorded end: left out of the cost to date",
                    r.id.as_deref().unwrap_or("?")
                ));
                continue;
            }
            _ => continue,
        };
        let lived = hours(r.created_at, end);
        let current = instance.as_ref().filter(|p| Some(&p.id) == r.id.as_ref());
        let rate = match current {
            Some(p) => p.average_usd_per_hour.unwrap_or(p.usd_per_hour),
            None => {
                let itype = r
                    .attrs
                    .get("instance_type")
                    .cloned()
                    .or_else(|| instance.as_ref().map(|p| p.instance_type.clone()));
                let Some(itype) = itype else { continue };
                let od = on_demand(aws, home, &region, &itype).map(|o| o.0);
                match (
                    r.attrs.get("lifecycle").map(String::as_str),
                    r.attrs.get("az"),
                ) {
                    (Some("spot"), Some(az)) => {
                        spot(aws, &itype, az, r.created_at, end, od).map_or(0.0, |s| s.1)
                    }
                    _ => od.unwrap_or(0.0),
                }
            }
        };
        to_date += rate * lived;
    }
    let stack_hours = hours(state.created_at, now);
    to_date += storage_month / HOURS_PER_MONTH * stack_hours;
    for (item_month, since) in &edge {
        to_date += item_month / HOURS_PER_MONTH * hours(*since, now);
    }
    let edge_month: f64 = edge.iter().map(|e| e.0).sum();
    notes
        .push("storage and edge costs to date assume today's sizes since they were created".into());

    let usd_per_month: f64 = lines.iter().map(|l| l.usd_per_month).sum();
    let on_demand_usd_per_month = on_demand_lines + storage_month + edge_month;
    let savings_pct = if on_demand_usd_per_month > 0.0 && instance.is_some() {
        (1.0 - usd_per_month / on_demand_usd_per_month) * 100.0
    } else {
        0.0
    };
    CostReport {
        stack: state.stack.clone(),
        region,
        instance,
        usd_per_hour: lines.iter().map(|l| l.usd_per_hour).sum(),
        lines,
        usd_per_month,
        on_demand_usd_per_month,
        savings_pct,
        cost_to_date_usd: to_date,
        since: state.created_at.to_rfc3339(),
        notes,
    }
}

/// When the first live resource of `kind` was created.
fn created_at(state: &StackState, kind: Kind) -> Option<DateTime<Utc>> {
    state
        .resources
        .iter()
        .filter(|r| r.kind == kind && r.status == ResourceStatus::Created)
        .map(|r| r.created_at)
        .min()
}

/// Dollars with the precision the amount needs: `$0.00001`, `$0.0416`, `$36.77`.
fn usd(v: f64) -> String {
    match v.abs() {
        a if a == 0.0 || a >= 1.0 => format!("${v:.2}"),
        a if a < 0.01 => format!("${v:.5}"),
        _ => format!("${v:.4}"),
    }
}

fn render(r: &CostReport, ui: &Ui) {
    ui.line(&format!(
        "Cost of {} ({}) — `~` marks an estimate",
        r.stack, r.region
    ));
    if let Some(i) = &r.instance {
        ui.line(&format!(
            "Instance {} {} {} in {}, up {:.1} h",
            i.id, i.instance_type, i.market, i.az, i.uptime_hours
        ));
        if let Some(avg) = i.average_usd_per_hour {
            ui.line(&format!(
                "    spot now {}/h, average {}/h over the uptime",
                usd(i.usd_per_hour),
                usd(avg)
            ));
        }
        ui.line(&format!(
            "    on-demand {}/h ({})",
            usd(i.on_demand_usd_per_hour),
            i.on_demand_source
        ));
    }
    ui.line("");
    let rows: Vec<Vec<String>> = r
        .lines
        .iter()
        .map(|l| {
            let mark = if l.estimate { "~" } else { "" };
            vec![
                l.item.clone(),
                format!("{mark}{}/h", usd(l.usd_per_hour)),
                format!("{mark}{}", usd(l.usd_per_month)),
                l.source.clone(),
            ]
        })
        .collect();
    ui.table(
        &["ITEM", "HOURLY", "MONTHLY", "SOURCE"].map(String::from),
        &rows,
    );
    ui.line("");
    ui.line(&format!("Hourly rate       {}/h", usd(r.usd_per_hour)));
    ui.line(&format!(
        "Monthly estimate  ~{} ({} h/month)",
        usd(r.usd_per_month),
        HOURS_PER_MONTH
    ));
    ui.line(&format!(
        "On-demand         ~{}/month → savings {:.0}%",
        usd(r.on_demand_usd_per_month),
        r.savings_pct
    ));
    ui.line(&format!(
        "Cost to date      ~{} since {}",
        usd(r.cost_to_date_usd),
        r.since.split('T').next().unwrap_or(&r.since)
    ));
    for n in &r.notes {
        ui.line(&format!("note: {n}"));
    }
}

/// `geusemaker cost <name> [--json]`.
pub fn cost(
    name: &str,
    json: bool,
    flags: &AwsSettings,
    settings: &Settings,
) -> Result<(), RunError> {
    let opened = super::open(name)?;
    let conn = Conn::for_stack(&opened.state, flags, settings)?;
    let report = estimate(&opened.state, &conn, &opened.home);
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

/// Hours from `from` to `to` (0 when `to` is earlier), to the millisecond: a stack listed
/// within a second of its deploy has cost something already.
pub fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 3_600_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        parse_time(s).unwrap()
    }

    #[test]
    fn spot_price_is_weighted_by_how_long_each_price_held() {
        let changes = [
            (t("2026-01-01T00:00:00Z"), 0.010),
            (t("2026-01-01T06:00:00Z"), 0.020),
            (t("2026-01-01T09:00:00Z"), 0.040),
        ];
        // 3 h at 0.010, 3 h at 0.020, 3 h at 0.040 from 03:00 to 12:00.
        let avg = time_weighted(
            &changes,
            t("2026-01-01T03:00:00Z"),
            t("2026-01-01T12:00:00Z"),
        )
        .unwrap();
        assert!((avg - (0.010 + 0.020 + 0.040) / 3.0).abs() < 1e-9, "{avg}");
        // Changes after the window do not count; a price from before the window holds.
        let avg = time_weighted(
            &changes,
            t("2026-01-01T01:00:00Z"),
            t("2026-01-01T02:00:00Z"),
        )
        .unwrap();
        assert!((avg - 0.010).abs() < 1e-9);
        // The first known price covers time before it.
        let avg = time_weighted(
            &changes[1..],
            t("2026-01-01T05:00:00Z"),
            t("2026-01-01T07:00:00Z"),
        )
        .unwrap();
        assert!((avg - 0.020).abs() < 1e-9);
        assert_eq!(
            time_weighted(&[], t("2026-01-01T00:00:00Z"), t("2026-01-02T00:00:00Z")),
            None
        );
        assert_eq!(
            time_weighted(
                &changes,
                t("2026-01-01T07:00:00Z"),
                t("2026-01-01T07:00:00Z")
            ),
            Some(0.020)
        );
        assert!((hours(t("2026-01-01T00:00:00Z"), t("2026-01-01T01:30:00Z")) - 1.5).abs() < 1e-9);
    }
}
