//! Pricing: on-demand hourly prices from the Price List API, cached for 15 minutes under the
//! state directory, with a bundled table when the API cannot be reached.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use aws_sdk_pricing::types::{Filter, FilterType};
use chrono::{DateTime, Duration, Utc};
use rhai::CustomType;
use serde::{Deserialize, Serialize};

use super::{Blocking, CloudError};

const SVC: &str = "pricing";

/// The Price List API answers from us-east-1 (and a few others) for every region.
pub const API_REGION: &str = "us-east-1";

/// How long a fetched price is trusted.
pub const CACHE_TTL_MINUTES: i64 = 15;

/// EFS Standard storage, USD per GB-month (us-east-1 list price).
pub const EFS_GB_MONTH_USD: f64 = 0.30;
/// gp3 EBS storage, USD per GB-month (us-east-1 list price).
pub const GP3_GB_MONTH_USD: f64 = 0.08;
/// Hours in the month used for estimates.
pub const HOURS_PER_MONTH: f64 = 730.0;

/// On-demand Linux prices (USD/hour, us-east-1 list prices) used when the API is unreachable.
pub const FALLBACK_ON_DEMAND: &[(&str, f64)] = &[
    ("t3.micro", 0.0104),
    ("t3.small", 0.0208),
    ("t3.medium", 0.0416),
    ("t3.large", 0.0832),
    ("t3.xlarge", 0.1664),
    ("t3.2xlarge", 0.3328),
    ("t3a.medium", 0.0376),
    ("t3a.large", 0.0752),
    ("m5.large", 0.096),
    ("m5.xlarge", 0.192),
    ("m5.2xlarge", 0.384),
    ("m6i.large", 0.096),
    ("m6i.xlarge", 0.192),
    ("c5.large", 0.085),
    ("c5.xlarge", 0.17),
    ("r5.large", 0.126),
    ("g4dn.xlarge", 0.526),
    ("g4dn.2xlarge", 0.752),
    ("g5.xlarge", 1.006),
    ("g5.2xlarge", 1.212),
    ("g6.xlarge", 0.8048),
    ("p3.2xlarge", 3.06),
];

/// An hourly price and where it came from.
#[derive(Debug, Clone, PartialEq, CustomType, serde::Serialize)]
#[rhai_type(name = "Price", extra = super::display_fns)]
pub struct Price {
    #[rhai_type(readonly)]
    pub instance_type: String,
    #[rhai_type(readonly)]
    pub region: String,
    #[rhai_type(readonly)]
    pub usd_per_hour: f64,
    /// `api`, `cache` or `fallback`.
    #[rhai_type(readonly)]
    pub source: String,
    /// Why a fallback was used (empty otherwise).
    #[rhai_type(readonly)]
    pub note: String,
}

impl fmt::Display for Price {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Price({} {} ${:.4}/h from {})",
            self.instance_type, self.region, self.usd_per_hour, self.source
        )
    }
}

/// The raw Price List call.
pub trait PricingApi: Send + Sync {
    /// `GetProducts` for AmazonEC2 with TERM_MATCH filters; returns the PriceList documents.
    fn get_products(&self, filters: &[(&str, &str)]) -> Result<Vec<String>, CloudError>;
}

/// [`PricingApi`] over aws-sdk-pricing.
pub struct SdkPricing {
    client: aws_sdk_pricing::Client,
    rt: Blocking,
}

impl SdkPricing {
    pub fn new(client: aws_sdk_pricing::Client, rt: Blocking) -> Self {
        SdkPricing { client, rt }
    }
}

impl PricingApi for SdkPricing {
    fn get_products(&self, filters: &[(&str, &str)]) -> Result<Vec<String>, CloudError> {
        let mut req = self
            .client
            .get_products()
            .service_code("AmazonEC2")
            .format_version("aws_v1")
            .max_results(10);
        for (field, value) in filters {
            req = req.filters(
                Filter::builder()
                    .r#type(FilterType::TermMatch)
                    .field(*field)
                    .value(*value)
                    .build()
                    .expect("filter has type, field and value"),
            );
        }
        let out = self.rt.call(SVC, "GetProducts", req.send())?;
        Ok(out.price_list().to_vec())
    }
}

/// The filters that select plain on-demand Linux for one type in one region.
pub fn on_demand_filters<'a>(
    region: &'a str,
    instance_type: &'a str,
) -> Vec<(&'static str, &'a str)> {
    vec![
        ("instanceType", instance_type),
        ("regionCode", region),
        ("operatingSystem", "Linux"),
        ("tenancy", "Shared"),
        ("preInstalledSw", "NA"),
        ("capacitystatus", "Used"),
        ("licenseModel", "No License required"),
    ]
}

/// The USD hourly on-demand price in one PriceList document, if it has one.
pub fn parse_on_demand_usd(doc: &str) -> Option<f64> {
    let v: serde_json::Value = serde_json::from_str(doc).ok()?;
    let terms = v.get("terms")?.get("OnDemand")?.as_object()?;
    terms
        .values()
        .filter_map(|t| t.get("priceDimensions")?.as_object())
        .flat_map(|dims| dims.values())
        .filter(|d| {
            d.get("unit")
                .and_then(|u| u.as_str())
                .is_none_or(|u| u.starts_with("Hr"))
        })
        .filter_map(|d| {
            d.get("pricePerUnit")?
                .get("USD")?
                .as_str()?
                .parse::<f64>()
                .ok()
        })
        .find(|p| *p > 0.0)
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    #[serde(default)]
    entries: BTreeMap<String, CacheEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct CacheEntry {
    usd_per_hour: f64,
    fetched_at: DateTime<Utc>,
}

/// On-demand price: fresh cache → Price List API (then cached) → bundled table.
pub fn on_demand_price(
    api: &dyn PricingApi,
    cache_dir: &Path,
    region: &str,
    instance_type: &str,
) -> Result<Price, CloudError> {
    let key = format!("{region}/{instance_type}");
    let cache_path = cache_dir.join("pricing.json");
    let mut cache: CacheFile = std::fs::read_to_string(&cache_path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default();
    if let Some(e) = cache.entries.get(&key) {
        if Utc::now() - e.fetched_at < Duration::minutes(CACHE_TTL_MINUTES) {
            return Ok(Price {
                instance_type: instance_type.into(),
                region: region.into(),
                usd_per_hour: e.usd_per_hour,
                source: "cache".into(),
                note: String::new(),
            });
        }
    }
    let failure = match api.get_products(&on_demand_filters(region, instance_type)) {
        Ok(docs) => match docs.iter().find_map(|d| parse_on_demand_usd(d)) {
            Some(usd) => {
                cache.entries.insert(
                    key,
                    CacheEntry {
                        usd_per_hour: usd,
                        fetched_at: Utc::now(),
                    },
                );
                if let Ok(text) = serde_json::to_string_pretty(&cache) {
                    // A cache that cannot be written only costs a later API call.
                    if let Err(e) = crate::state::write_atomic(&cache_path, text.as_bytes()) {
                        tracing::debug!(error = %e, "pricing cache not written");
                    }
                }
                return Ok(Price {
                    instance_type: instance_type.into(),
                    region: region.into(),
                    usd_per_hour: usd,
                    source: "api".into(),
                    note: String::new(),
                });
            }
            None => format!(
                "the Price List API has no on-demand Linux price for {instance_type} in {region}"
            ),
        },
        // An endpoint without a Pricing API (e.g. a local emulator) answers with HTML.
        Err(e) if e.code == "Unhandled" => {
            "the Price List API is unreachable (the endpoint cannot answer it)".to_string()
        }
        Err(e) => format!(
            "the Price List API is unreachable ({}: {})",
            e.code,
            first_line(&e.message)
        ),
    };
    match FALLBACK_ON_DEMAND.iter().find(|(t, _)| *t == instance_type) {
        Some((_, usd)) => Ok(Price {
            instance_type: instance_type.into(),
            region: region.into(),
            usd_per_hour: *usd,
            source: "fallback".into(),
            note: format!("{failure}; using the bundled us-east-1 list price"),
        }),
        None => {
            let mut e = CloudError::new(
                SVC,
                "GetProducts",
                "PriceUnknown",
                format!("{failure}, and {instance_type} is not in the bundled price table"),
            );
            e.hint = Some("the estimate needs network access to the Price List API (pricing:GetProducts), or pick a common instance type".into());
            Err(e)
        }
    }
}

fn first_line(s: &str) -> &str {
    let line = s.lines().next().unwrap_or(s);
    &line[..line.len().min(160)]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    struct Canned {
        answer: Result<Vec<String>, CloudError>,
        calls: AtomicUsize,
    }
    impl PricingApi for Canned {
        fn get_products(&self, _f: &[(&str, &str)]) -> Result<Vec<String>, CloudError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.answer.clone()
        }
    }

    fn recorded() -> Vec<String> {
        let body = include_str!("../../tests/fixtures/pricing/get-products-t3-medium.json");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        v["PriceList"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn parses_the_recorded_response() {
        let docs = recorded();
        assert_eq!(
            docs.iter().find_map(|d| parse_on_demand_usd(d)),
            Some(0.0416)
        );
    }

    #[test]
    fn api_then_cache() {
        let dir = tempfile::tempdir().unwrap();
        let api = Canned {
            answer: Ok(recorded()),
            calls: AtomicUsize::new(0),
        };
        let p = on_demand_price(&api, dir.path(), "us-east-1", "t3.medium").unwrap();
        assert_eq!((p.source.as_str(), p.usd_per_hour), ("api", 0.0416));
        let p = on_demand_price(&api, dir.path(), "us-east-1", "t3.medium").unwrap();
        assert_eq!(p.source, "cache");
        assert_eq!(api.calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn stale_cache_is_refreshed() {
        let dir = tempfile::tempdir().unwrap();
        let old = Utc::now() - Duration::minutes(CACHE_TTL_MINUTES + 1);
        let cache = format!(
            r#"{{"entries":{{"us-east-1/t3.medium":{{"usd_per_hour":9.0,"fetched_at":"{}"}}}}}}"#,
            old.to_rfc3339()
        );
        std::fs::write(dir.path().join("pricing.json"), cache).unwrap();
        let api = Canned {
            answer: Ok(recorded()),
            calls: AtomicUsize::new(0),
        };
        let p = on_demand_price(&api, dir.path(), "us-east-1", "t3.medium").unwrap();
        assert_eq!((p.source.as_str(), p.usd_per_hour), ("api", 0.0416));
    }

    #[test]
    fn fallback_says_why_and_unknown_types_fail() {
        let dir = tempfile::tempdir().unwrap();
        let api = Canned {
            answer: Err(CloudError::new(
                "pricing",
                "GetProducts",
                "Unhandled",
                "HTTP 500",
            )),
            calls: AtomicUsize::new(0),
        };
        let p = on_demand_price(&api, dir.path(), "eu-west-1", "g4dn.xlarge").unwrap();
        assert_eq!((p.source.as_str(), p.usd_per_hour), ("fallback", 0.526));
        assert!(p.note.contains("unreachable"), "{}", p.note);
        let e = on_demand_price(&api, dir.path(), "eu-west-1", "x9.huge").unwrap_err();
        assert_eq!(e.code, "PriceUnknown");
    }
}
