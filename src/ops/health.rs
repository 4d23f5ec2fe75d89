//! Service health over time: consecutive failures, latency thresholds, and the verdict that
//! triggers a rollback. Pure logic (fed [`HealthResult`]s), plus the record `monitor` keeps in
//! `$GEUSEMAKER_HOME/cache/health/<stack>.json` for `status` to show.

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::config::HealthSettings;
use crate::health::HealthResult;
use crate::state::{write_atomic, Home, StackState};

/// How a service is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Healthy,
    /// Slow (over `warn_ms`), or failing fewer times in a row than the threshold.
    Warning,
    /// Failing at least `failures` times in a row.
    Critical,
    /// Not checked (e.g. the instance is not running).
    #[default]
    Unknown,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Healthy => "healthy",
            Level::Warning => "warning",
            Level::Critical => "critical",
            Level::Unknown => "unknown",
        }
    }

    /// How it reads on screen.
    pub fn tone(self) -> crate::ui::Tone {
        use crate::ui::Tone;
        match self {
            Level::Healthy => Tone::Good,
            Level::Warning | Level::Unknown => Tone::Warn,
            Level::Critical => Tone::Bad,
        }
    }
}

/// What is known about one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct ServiceRecord {
    pub level: Level,
    pub consecutive_failures: u32,
    pub latency_ms: Option<i64>,
    pub error: Option<String>,
    pub checked_at: Option<DateTime<Utc>>,
}

/// Services and their records, judged against the thresholds.
#[derive(Debug, Clone)]
pub struct Tracker {
    pub settings: HealthSettings,
    pub services: BTreeMap<String, ServiceRecord>,
}

#[derive(Debug, Serialize, Deserialize, Default)]
struct RecordFile {
    updated_at: Option<DateTime<Utc>>,
    /// The instance the counts are about: a new instance starts from zero.
    instance_id: Option<String>,
    services: BTreeMap<String, ServiceRecord>,
}

fn record_path(home: &Home, stack: &str) -> PathBuf {
    home.cache_dir()
        .join("health")
        .join(format!("{stack}.json"))
}

impl Tracker {
    pub fn new(settings: HealthSettings) -> Tracker {
        Tracker {
            settings,
            services: BTreeMap::new(),
        }
    }

    /// The record `monitor` left for this stack's current instance (empty if none).
    pub fn load(home: &Home, state: &StackState, settings: HealthSettings) -> Tracker {
        let mut t = Tracker::new(settings);
        let file: RecordFile = std::fs::read_to_string(record_path(home, &state.stack))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default();
        if file.instance_id == super::output(state, "instance_id") {
            t.services = file.services;
        }
        t
    }

    /// Keep the record (best effort: it is a display aid, not state).
    pub fn save(&self, home: &Home, state: &StackState) {
        let path = record_path(home, &state.stack);
        let file = RecordFile {
            updated_at: Some(Utc::now()),
            instance_id: super::output(state, "instance_id"),
            services: self.services.clone(),
        };
        let written = path
            .parent()
            .map(|dir| std::fs::create_dir_all(dir).map_err(|e| e.to_string()))
            .unwrap_or(Ok(()))
            .and_then(|_| serde_json::to_vec_pretty(&file).map_err(|e| e.to_string()))
            .and_then(|bytes| write_atomic(&path, &bytes).map_err(|e| e.to_string()));
        if let Err(e) = written {
            tracing::debug!(error = %e, "health record not written");
        }
    }

    /// Forget the counts (after a rollback: a new instance starts clean).
    pub fn reset(&mut self) {
        self.services.clear();
    }

    /// Take one result into account; returns the service's level now.
    pub fn observe(&mut self, r: &HealthResult) -> Level {
        let s = &self.settings;
        let slow_failure = r.ok && r.latency_ms as u64 > s.critical_ms;
        let failed = !r.ok || slow_failure;
        let rec = self.services.entry(r.name.clone()).or_default();
        rec.consecutive_failures = if failed {
            rec.consecutive_failures + 1
        } else {
            0
        };
        rec.latency_ms = (r.ok || r.latency_ms > 0).then_some(r.latency_ms);
        rec.error = if slow_failure {
            Some(format!(
                "slow: {} ms (critical over {} ms)",
                r.latency_ms, s.critical_ms
            ))
        } else if !r.ok {
            Some(r.error.clone().unwrap_or_else(|| "failing".into()))
        } else if r.latency_ms as u64 > s.warn_ms {
            Some(format!(
                "slow: {} ms (warning over {} ms)",
                r.latency_ms, s.warn_ms
            ))
        } else {
            None
        };
        rec.checked_at = Some(Utc::now());
        rec.level = if rec.consecutive_failures >= s.failures {
            Level::Critical
        } else if rec.consecutive_failures > 0 || r.latency_ms as u64 > s.warn_ms {
            Level::Warning
        } else {
            Level::Healthy
        };
        rec.level
    }

    /// Mark a service unchecked (e.g. its instance is not running), keeping its counts.
    pub fn unknown(&mut self, name: &str, why: &str) {
        let rec = self.services.entry(name.to_string()).or_default();
        rec.level = Level::Unknown;
        rec.error = Some(why.to_string());
        rec.checked_at = Some(Utc::now());
    }

    /// The critical services (by the settings' list) that are critical now.
    pub fn rollback_reasons(&self) -> Vec<String> {
        self.settings
            .critical_services
            .iter()
            .filter_map(|name| {
                let rec = self.services.get(name)?;
                (rec.level == Level::Critical).then(|| {
                    format!(
                        "{name} failed {} checks in a row ({})",
                        rec.consecutive_failures,
                        rec.error.as_deref().unwrap_or("failing")
                    )
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(name: &str, ok: bool, ms: i64) -> HealthResult {
        HealthResult {
            name: name.into(),
            target: "http://x".into(),
            ok,
            status: if ok { 200 } else { 0 },
            latency_ms: ms,
            error: (!ok).then(|| "connection refused".to_string()),
        }
    }

    #[test]
    fn three_failures_in_a_row_are_critical_and_a_success_resets() {
        let mut t = Tracker::new(HealthSettings::default());
        assert_eq!(t.observe(&result("n8n", false, 0)), Level::Warning);
        assert_eq!(t.observe(&result("n8n", false, 0)), Level::Warning);
        assert!(t.rollback_reasons().is_empty());
        assert_eq!(t.observe(&result("n8n", false, 0)), Level::Critical);
        assert_eq!(
            t.rollback_reasons(),
            ["n8n failed 3 checks in a row (connection refused)"]
        );
        assert_eq!(t.observe(&result("n8n", true, 10)), Level::Healthy);
        assert_eq!(t.services["n8n"].consecutive_failures, 0);
        assert!(t.rollback_reasons().is_empty());
    }

    #[test]
    fn latency_thresholds_warn_then_count_as_failures() {
        let mut t = Tracker::new(HealthSettings::default());
        assert_eq!(t.observe(&result("postgres", true, 2500)), Level::Warning);
        assert_eq!(t.services["postgres"].consecutive_failures, 0);
        for _ in 0..2 {
            assert_eq!(t.observe(&result("postgres", true, 6000)), Level::Warning);
        }
        assert_eq!(t.observe(&result("postgres", true, 6000)), Level::Critical);
        assert_eq!(
            t.services["postgres"].error.as_deref(),
            Some("slow: 6000 ms (critical over 5000 ms)")
        );
    }

    #[test]
    fn only_critical_services_trigger_a_rollback() {
        let mut t = Tracker::new(HealthSettings::default());
        for _ in 0..5 {
            t.observe(&result("ollama", false, 0));
        }
        assert_eq!(t.services["ollama"].level, Level::Critical);
        assert!(
            t.rollback_reasons().is_empty(),
            "ollama is not a critical service by default"
        );
        t.settings.critical_services.push("ollama".into());
        assert_eq!(t.rollback_reasons().len(), 1);
    }

    #[test]
    fn the_record_belongs_to_one_instance() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        let mut state = StackState::new("demo");
        state.outputs.insert("instance_id".into(), "i-1".into());
        let mut t = Tracker::new(HealthSettings::default());
        t.observe(&result("n8n", false, 0));
        t.save(&home, &state);
        assert_eq!(
            Tracker::load(&home, &state, HealthSettings::default()).services["n8n"]
                .consecutive_failures,
            1
        );
        state.outputs.insert("instance_id".into(), "i-2".into());
        assert!(Tracker::load(&home, &state, HealthSettings::default())
            .services
            .is_empty());
    }
}
