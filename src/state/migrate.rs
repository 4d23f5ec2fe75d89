//! Older state files brought forward. A state file names its format in `schema_version`; each
//! step here takes a document of one version to the next, as JSON, so a file written by any
//! earlier release loads. The first write after a migration keeps the original next to it
//! (`stacks/<name>.json.v<N>`), so going back to the release that wrote it stays possible.
//!
//! Format history:
//! - 1 (0.1.x): the recipe params of the last run under `config`.
//! - 2 (0.2.0): they are under `params` — `config` now means `config.toml` everywhere else.

use serde_json::Value;

/// The format this build reads and writes.
pub const SCHEMA_VERSION: u32 = 2;

/// The oldest format this build can bring forward.
pub const OLDEST_SUPPORTED: u32 = 1;

/// Bring `doc` (of format `from`) to [`SCHEMA_VERSION`], one step at a time.
pub fn forward(doc: &mut Value, from: u32) -> Result<(), String> {
    if from < OLDEST_SUPPORTED {
        return Err(format!(
            "schema_version {from} is older than this geusemaker can read (oldest: {OLDEST_SUPPORTED})"
        ));
    }
    let obj = doc
        .as_object_mut()
        .ok_or_else(|| "a state file is a JSON object".to_string())?;
    for version in from..SCHEMA_VERSION {
        match version {
            1 => {
                // 1 → 2: `config` (the last run's recipe params) is called `params`.
                if let Some(params) = obj.remove("config") {
                    obj.insert("params".into(), params);
                }
            }
            _ => unreachable!("a migration step for every version below SCHEMA_VERSION"),
        }
        obj.insert("schema_version".into(), Value::from(version + 1));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn version_1_params_move_from_config() {
        let mut doc = json!({ "schema_version": 1, "config": { "instance_type": "t3.large" } });
        forward(&mut doc, 1).unwrap();
        assert_eq!(doc["schema_version"], 2);
        assert_eq!(doc["params"]["instance_type"], "t3.large");
        assert!(doc.get("config").is_none());
    }

    #[test]
    fn the_current_version_is_left_alone() {
        let mut doc = json!({ "schema_version": SCHEMA_VERSION, "params": { "a": 1 } });
        let before = doc.clone();
        forward(&mut doc, SCHEMA_VERSION).unwrap();
        assert_eq!(doc, before);
    }

    #[test]
    fn versions_before_the_oldest_are_refused() {
        let mut doc = json!({ "schema_version": 0 });
        let e = forward(&mut doc, 0).unwrap_err();
        assert!(e.contains("older than this geusemaker can read"), "{e}");
    }
}
