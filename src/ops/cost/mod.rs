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
use crate::cloud::pricing::{EFS_GB_MONTH_USD, GP3_GB_MONTH_USD, HOURS_PER_MONTH};
use crate::cloud::{Aws, AwsSettings};
use crate::config::Settings;
use crate::engine::RunError;
use crate::state::Kind;
use crate::state::{Home, ResourceStatus, StackState};
use crate::ui::Ui;

mod prices;
pub use prices::{
    hours, time_weighted, ALB_USD_PER_HOUR, CLOUDFRONT_REQUESTS_USD_MONTH, CLOUDFRONT_USD_PER_GB,
    SPOT_GUESS_FRACTION,
};
use prices::{monthly, on_demand, spot};

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

/// Work out the stack's costs: the instance now, the storage, what sits in front of it, and
/// the cost to date.
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

    let live = super::LiveInstance::of(state, aws, conn.aws.as_ref().err());
    let instance = live
        .instance()
        .filter(|i| matches!(i.state.as_str(), "pending" | "running"))
        .map(|i| instance_price(i, state, aws, home, &region, now));
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
    let storage_month = storage(state, aws, instance.is_some(), &mut lines, &mut notes);
    let edge = edge(state, &mut lines);
    let mut to_date = instances_to_date(
        state,
        aws,
        home,
        &region,
        instance.as_ref(),
        now,
        &mut notes,
    );
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

/// What the running instance `i` costs: its spot price (time-weighted over its uptime) or
/// on-demand price, beside the on-demand price it would cost.
fn instance_price(
    i: &crate::cloud::ec2::Instance,
    state: &StackState,
    aws: Option<&Aws>,
    home: &Home,
    region: &str,
    now: DateTime<Utc>,
) -> InstancePrice {
    let launched = i
        .launch_time
        .as_deref()
        .and_then(parse_time)
        .unwrap_or(state.created_at);
    let od = on_demand(aws, home, region, &i.instance_type);
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
}

/// The storage lines (EFS as metered or as the recipe expects, the root volume while an
/// instance runs, the data volume); returns their monthly sum.
fn storage(
    state: &StackState,
    aws: Option<&Aws>,
    instance_runs: bool,
    lines: &mut Vec<Line>,
    notes: &mut Vec<String>,
) -> f64 {
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
    if instance_runs {
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
    storage_month
}

/// The load balancer and CloudFront lines, from their list prices; returns each one's
/// (monthly cost, since when), for the cost to date.
fn edge(state: &StackState, lines: &mut Vec<Line>) -> Vec<(f64, DateTime<Utc>)> {
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
    edge
}

/// What the stack's instances have cost so far: each one's rate (the running one's average,
/// an earlier one's from its recorded type, market and zone) over its life.
fn instances_to_date(
    state: &StackState,
    aws: Option<&Aws>,
    home: &Home,
    region: &str,
    instance: Option<&InstancePrice>,
    now: DateTime<Utc>,
    notes: &mut Vec<String>,
) -> f64 {
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
        let current = instance.filter(|p| Some(&p.id) == r.id.as_ref());
        let rate = match current {
            Some(p) => p.average_usd_per_hour.unwrap_or(p.usd_per_hour),
            None => {
                let itype = r
                    .attrs
                    .get("instance_type")
                    .cloned()
                    .or_else(|| instance.map(|p| p.instance_type.clone()));
                let Some(itype) = itype else { continue };
                let od = on_demand(aws, home, region, &itype).map(|o| o.0);
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
    to_date
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
