//! Where the figures come from: the list prices of what sits in front, the Price List API's
//! on-demand price (cached, with a bundled fallback), the spot price history averaged over
//! time, and hours between two instants.

use chrono::{DateTime, Utc};

use crate::cloud::pricing::{on_demand_price, FALLBACK_ON_DEMAND, HOURS_PER_MONTH};
use crate::cloud::Aws;
use crate::ops::parse_time;
use crate::state::Home;

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

/// On-demand price with where it came from; without AWS, the bundled table.
pub(super) fn on_demand(
    aws: Option<&Aws>,
    home: &Home,
    region: &str,
    itype: &str,
) -> Option<(f64, String)> {
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
pub(super) fn spot(
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

pub(super) fn monthly(hourly: f64) -> f64 {
    hourly * HOURS_PER_MONTH
}

/// Hours from `from` to `to` (0 when `to` is earlier), to the millisecond: a stack listed
/// within a second of its deploy has cost something already.
pub fn hours(from: DateTime<Utc>, to: DateTime<Utc>) -> f64 {
    (to - from).num_milliseconds().max(0) as f64 / 3_600_000.0
}
