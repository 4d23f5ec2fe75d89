//! `geusemaker list`: every stack in the state directory, with its instance as AWS sees it now
//! and what it has cost so far.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{output, Conn, LiveInstance};
use crate::cloud::AwsSettings;
use crate::config::Settings;
use crate::engine::RunError;
use crate::state::{Home, StackStore, StateBackend};
use crate::ui::{Tone, Ui};

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    tier: Option<String>,
    status: String,
    region: Option<String>,
    created_at: Option<String>,
    age: Option<String>,
    instance_id: Option<String>,
    instance_state: Option<String>,
    market: Option<String>,
    url: Option<String>,
    cost_to_date_usd: Option<f64>,
    /// Why the stack could not be read (a damaged state file).
    error: Option<String>,
}

/// `geusemaker list [--json]`.
pub fn list(json: bool, flags: &AwsSettings, settings: &Settings) -> Result<(), RunError> {
    let home = Home::from_env()?;
    let backend = StateBackend::current()?;
    let now = chrono::Utc::now();
    // One connection per region, shared by its stacks.
    let mut conns: BTreeMap<Option<String>, Conn> = BTreeMap::new();
    let mut rows = Vec::new();
    // One listing, then every document at once (in parallel from S3).
    let names = backend.names()?;
    let documents = backend.read_many(&names);
    for (name, stored) in names.into_iter().zip(documents) {
        let parsed = stored.and_then(|s| {
            s.map(|s| StackStore::parse_stored(&backend.location(&name), &s))
                .transpose()
        });
        let state = match parsed {
            Ok(Some(s)) => s,
            Ok(None) => continue,
            Err(e) => {
                rows.push(Row {
                    name,
                    tier: None,
                    status: "unreadable".into(),
                    region: None,
                    created_at: None,
                    age: None,
                    instance_id: None,
                    instance_state: None,
                    market: None,
                    url: None,
                    cost_to_date_usd: None,
                    error: Some(e.to_string()),
                });
                continue;
            }
        };
        let key = state.region.clone();
        if !conns.contains_key(&key) {
            let region_flags = AwsSettings {
                region: None,
                ..flags.clone()
            };
            conns.insert(
                key.clone(),
                Conn::for_stack(&state, &region_flags, settings)?,
            );
        }
        let conn = &conns[&key];
        let live = LiveInstance::of(&state, conn.aws(), conn.aws.as_ref().err());
        let has_resources = state.live_resources().next().is_some();
        let cost =
            has_resources.then(|| super::cost::estimate(&state, conn, &home).cost_to_date_usd);
        rows.push(Row {
            tier: Some(super::tier(&state)),
            status: state.status.as_str().into(),
            region: state.region.clone(),
            created_at: Some(state.created_at.to_rfc3339()),
            age: Some(super::fmt_age(state.created_at, now)),
            instance_id: output(&state, "instance_id"),
            instance_state: match &live {
                LiveInstance::None => None,
                other => Some(other.state()),
            },
            market: live
                .instance()
                .map(|i| i.lifecycle.clone())
                .or_else(|| output(&state, "market")),
            url: output(&state, "n8n_url"),
            cost_to_date_usd: cost,
            error: None,
            name,
        });
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&rows).expect("rows serialize")
        );
        return Ok(());
    }
    let ui = Ui::detect(false);
    if rows.is_empty() {
        ui.line(&format!(
            "no stacks in {} yet; deploy one with `geusemaker run dev --name NAME`",
            backend.describe()
        ));
        return Ok(());
    }
    let dash = || "-".to_string();
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let instance = match (&r.instance_state, &r.market) {
                (Some(st), Some(m)) => format!("{m} {st}"),
                (Some(st), None) => st.clone(),
                _ => dash(),
            };
            let tone = match r.instance_state.as_deref() {
                Some("running") => Tone::Good,
                Some("gone" | "terminated" | "stopped") => Tone::Bad,
                Some(_) => Tone::Warn,
                None => Tone::Plain,
            };
            vec![
                r.name.clone(),
                r.tier.clone().unwrap_or_else(dash),
                r.status.clone(),
                r.region.clone().unwrap_or_else(dash),
                r.age.clone().unwrap_or_else(dash),
                ui.tone(&instance, tone),
                r.url.clone().unwrap_or_else(dash),
                r.cost_to_date_usd
                    .map_or_else(dash, |c| format!("~${c:.2}")),
            ]
        })
        .collect();
    ui.table(
        &[
            "NAME",
            "TIER",
            "STATUS",
            "REGION",
            "AGE",
            "INSTANCE",
            "URL",
            "COST TO DATE",
        ]
        .map(String::from),
        &table,
    );
    for r in rows.iter().filter(|r| r.error.is_some()) {
        ui.warn(&format!(
            "{}: {}",
            r.name,
            r.error.as_deref().unwrap_or_default()
        ));
    }
    Ok(())
}
