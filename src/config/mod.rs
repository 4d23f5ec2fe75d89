//! User settings: `$GEUSEMAKER_HOME/config.toml`, read and written by `geusemaker config`.
//!
//! Precedence, highest first: command-line flags and `--set`, then these settings, then the
//! recipe's own defaults. Every key is declared in [`KEYS`] with its type and help, so an
//! unknown key or a value of the wrong type is an error naming the file, line and column.
//!
//! ```toml
//! [aws]
//! region = "eu-west-1"
//!
//! [health]
//! interval = "30s"
//! failures = 3
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::state::{write_atomic, Home, StateError};

mod keys;
#[cfg(test)]
mod tests;

pub use keys::*;

/// Where stack state lives, as the settings say (see [`Settings::state`]).
#[derive(Debug, Clone, PartialEq)]
pub struct StateSettings {
    /// `local` or `s3://bucket/prefix`.
    pub url: String,
    /// Which file or flag gave the URL.
    pub from: String,
    pub region: Option<String>,
    pub lease: Duration,
    pub kms_key: Option<String>,
}

/// A project's file: its `[state]` section is read here (the rest is the recipe sources').
pub const PROJECT_FILE: &str = "geusemaker.toml";

/// Why the settings could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    State(#[from] StateError),
}

/// The settings in effect: the file's values over the defaults.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    values: BTreeMap<&'static str, Value>,
    path: PathBuf,
}

fn spec(key: &str) -> Result<&'static Key, ConfigError> {
    KEYS.iter().find(|k| k.key == key).ok_or_else(|| {
        let mut msg = format!("no setting `{key}`");
        match crate::suggest::did_you_mean(key, KEYS.iter().map(|k| k.key)) {
            Some(s) => msg.push_str(&format!("\nhint: did you mean `{s}`?")),
            None => msg.push_str("\nhint: `geusemaker config list` shows every setting"),
        }
        ConfigError::Usage(msg)
    })
}

/// The setting that gives recipe param `param` its value (`deploy.<param>`).
pub fn param_key(param: &str) -> String {
    format!("deploy.{param}")
}

/// A refused value in words, with the value meant when one is close.
fn kind_message(e: &crate::kinds::KindError) -> String {
    match &e.suggestion {
        Some(s) => format!("{e} (did you mean `{s}`?)"),
        None => e.to_string(),
    }
}

/// A TOML value as a setting of `kind`.
fn from_toml(kind: Kind, v: &toml_edit::Value) -> Result<Value, String> {
    let want = || format!("expected {}", kind.describe());
    match kind {
        Kind::Str => v
            .as_str()
            .map(|s| Value::Str(s.to_string()))
            .ok_or_else(want),
        Kind::Of(k) => {
            let text = v.as_str().ok_or_else(want)?;
            k.check(text).map_err(|e| kind_message(&e))?;
            Ok(Value::Str(text.to_string()))
        }
        Kind::Bool => v.as_bool().map(Value::Bool).ok_or_else(want),
        Kind::Int(lo, hi) => match v.as_integer() {
            Some(i) if (lo..=hi).contains(&i) => Ok(Value::Int(i)),
            _ => Err(want()),
        },
        Kind::Duration => match (v.as_str(), v.as_integer()) {
            (Some(s), _) => parse_duration(s).map(Value::Duration),
            (None, Some(i)) if i > 0 => Ok(Value::Duration(Duration::from_secs(i as u64))),
            _ => Err(want()),
        },
        Kind::List => v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .map(|x| x.as_str().map(str::to_string))
                    .collect::<Option<Vec<_>>>()
            })
            .map(Value::List)
            .ok_or_else(want),
    }
}

/// Command-line text (`config set KEY TEXT`) as a TOML value of `kind`.
fn toml_from_text(kind: Kind, text: &str) -> Result<toml_edit::Value, String> {
    let want = || format!("`{text}` is not {}", kind.describe());
    Ok(match kind {
        Kind::Str => text.into(),
        Kind::Of(k) => {
            k.check(text).map_err(|e| kind_message(&e))?;
            text.into()
        }
        Kind::Bool => match text.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => true.into(),
            "false" | "no" | "off" | "0" => false.into(),
            _ => return Err(want()),
        },
        Kind::Int(lo, hi) => match text.trim().parse::<i64>() {
            Ok(i) if (lo..=hi).contains(&i) => i.into(),
            _ => return Err(want()),
        },
        Kind::Duration => {
            let d = parse_duration(text)?;
            fmt_duration(d).into()
        }
        Kind::List => {
            let items: toml_edit::Array = text
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .collect();
            items.into()
        }
    })
}

/// The 1-based line and column of byte `offset` in `text` (for positioned TOML errors).
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

impl Settings {
    /// `config.toml` under the state directory.
    pub fn path_in(home: &Home) -> PathBuf {
        home.root().join("config.toml")
    }

    /// Read the settings; a missing file means every default.
    pub fn load(home: &Home) -> Result<Settings, ConfigError> {
        let path = Self::path_in(home);
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Settings {
                values: BTreeMap::new(),
                path,
            }),
            Err(e) => Err(StateError::io(&path, e).into()),
        }
    }

    /// Parse and check `text` (the contents of `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        Self::parse_sections(path, text, None)
    }

    /// The `[state]` section of a project's `geusemaker.toml` (the rest of that file is the
    /// recipe sources'), checked like `config.toml`. A team commits it; it wins over the
    /// user's `config.toml`.
    pub fn parse_project(path: &Path, text: &str) -> Result<Settings, ConfigError> {
        Self::parse_sections(path, text, Some("state"))
    }

    /// The project settings of the nearest `geusemaker.toml` at or above `dir`, if any.
    pub fn discover_project(dir: &Path) -> Result<Option<Settings>, ConfigError> {
        let Some(file) = dir
            .ancestors()
            .map(|d| d.join(PROJECT_FILE))
            .find(|f| f.is_file())
        else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(&file).map_err(|e| StateError::io(&file, e))?;
        Self::parse_project(&file, &text).map(Some)
    }

    fn parse_sections(
        path: &Path,
        text: &str,
        only: Option<&str>,
    ) -> Result<Settings, ConfigError> {
        let invalid = |offset: usize, message: String| {
            let (line, column) = line_col(text, offset);
            ConfigError::Invalid {
                path: path.to_path_buf(),
                line,
                column,
                message,
            }
        };
        let doc = toml_edit::Document::parse(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            let message = e
                .message()
                .lines()
                .next()
                .unwrap_or("not valid TOML")
                .to_string();
            invalid(offset, format!("not valid TOML: {message}"))
        })?;
        let mut values = BTreeMap::new();
        for (section, item) in doc.as_table().iter() {
            if only.is_some_and(|o| o != section) {
                continue;
            }
            let offset = doc
                .as_table()
                .key(section)
                .and_then(|k| k.span())
                .map_or(0, |s| s.start);
            let sections: Vec<&str> = {
                let mut s: Vec<&str> = KEYS
                    .iter()
                    .filter_map(|k| k.key.split_once('.').map(|p| p.0))
                    .collect();
                s.dedup();
                s
            };
            let Some(table) = item.as_table_like() else {
                return Err(invalid(
                    offset,
                    format!(
                        "`{section}` must be a section ([{section}]); settings are grouped as {}",
                        sections.join(", ")
                    ),
                ));
            };
            if !sections.contains(&section) {
                let mut msg = format!("unknown section [{section}]");
                match crate::suggest::did_you_mean(section, sections.iter().copied()) {
                    Some(s) => msg.push_str(&format!(" (did you mean [{s}]?)")),
                    None => msg.push_str(&format!(" (sections: {})", sections.join(", "))),
                }
                return Err(invalid(offset, msg));
            }
            for (name, value) in table.iter() {
                let full = format!("{section}.{name}");
                let key_offset = table
                    .key(name)
                    .and_then(|k| k.span())
                    .or_else(|| value.span())
                    .unwrap_or(offset..offset)
                    .start;
                let Some(spec) = KEYS.iter().find(|k| k.key == full) else {
                    let mut msg = format!("unknown setting `{full}`");
                    if let Some(s) = crate::suggest::did_you_mean(&full, KEYS.iter().map(|k| k.key))
                    {
                        msg.push_str(&format!(" (did you mean `{s}`?)"));
                    }
                    return Err(invalid(key_offset, msg));
                };
                let parsed = value
                    .as_value()
                    .ok_or_else(|| format!("expected {}", spec.kind.describe()))
                    .and_then(|v| from_toml(spec.kind, v))
                    .map_err(|m| {
                        let at = value.span().map_or(key_offset, |s| s.start);
                        invalid(at, format!("{full}: {m}"))
                    })?;
                values.insert(spec.key, parsed);
            }
        }
        Ok(Settings {
            values,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The value in effect for `key` and whether it came from the file.
    pub fn get(&self, key: &str) -> Result<(Option<Value>, bool), ConfigError> {
        let spec = spec(key)?;
        if let Some(v) = self.values.get(spec.key) {
            return Ok((Some(v.clone()), true));
        }
        let default = spec.default.map(|d| {
            let v: toml_edit::Value = d.parse().expect("defaults are valid TOML");
            from_toml(spec.kind, &v).expect("defaults have their key's type")
        });
        Ok((default, false))
    }

    fn value(&self, key: &str) -> Option<Value> {
        self.get(key).ok().and_then(|(v, _)| v)
    }

    fn string(&self, key: &str) -> Option<String> {
        match self.value(key) {
            Some(Value::Str(s)) if !s.is_empty() => Some(s),
            _ => None,
        }
    }

    fn flag(&self, key: &str) -> bool {
        matches!(self.value(key), Some(Value::Bool(true)))
    }

    fn int(&self, key: &str) -> i64 {
        match self.value(key) {
            Some(Value::Int(i)) => i,
            _ => unreachable!("{key} is an integer setting with a default"),
        }
    }

    pub fn region(&self) -> Option<String> {
        self.string("aws.region")
    }
    pub fn profile(&self) -> Option<String> {
        self.string("aws.profile")
    }
    pub fn tier(&self) -> String {
        self.string("deploy.tier").unwrap_or_else(|| "dev".into())
    }
    pub fn auto_rollback(&self) -> bool {
        self.flag("monitor.auto_rollback")
    }

    /// Recipe params these settings supply (lower priority than `--set`), each from the
    /// setting [`param_key`] names.
    pub fn param_defaults(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if let Some(t) = self.string(&param_key("instance_type")) {
            out.insert("instance_type".into(), t);
        }
        if let Some(Value::Bool(b)) = self.value(&param_key("spot")) {
            out.insert("spot".into(), b.to_string());
        }
        out
    }

    pub fn health(&self) -> HealthSettings {
        HealthSettings {
            interval: match self.value("health.interval") {
                Some(Value::Duration(d)) => d,
                _ => Duration::from_secs(30),
            },
            failures: self.int("health.failures") as u32,
            warn_ms: self.int("health.warn_ms") as u64,
            critical_ms: self.int("health.critical_ms") as u64,
            critical_services: match self.value("health.critical_services") {
                Some(Value::List(l)) => l,
                _ => vec!["n8n".into(), "postgres".into()],
            },
        }
    }

    /// Where stack state lives: `flag` (`--state`, `GEUSEMAKER_STATE`) over `project`'s
    /// `[state]` over these settings. The bucket's `region` and `kms_key` come from the file
    /// that names the URL in effect; `lease` from the project, then these settings.
    pub fn state(&self, project: Option<&Settings>, flag: Option<&str>) -> StateSettings {
        let pick = |key: &str| {
            project
                .and_then(|p| p.values.get(key).cloned())
                .or_else(|| self.value(key))
        };
        let url_of = |s: &Settings| match s.values.get("state.url") {
            Some(Value::Str(u)) => Some(u.clone()),
            _ => None,
        };
        let (url, from) = match flag.filter(|f| !f.is_empty()) {
            Some(f) => (f.to_string(), "--state / GEUSEMAKER_STATE".to_string()),
            None => match project.and_then(|p| url_of(p).map(|u| (u, p))) {
                Some((u, p)) => (u, p.path.display().to_string()),
                None => (
                    url_of(self).unwrap_or_else(|| "local".into()),
                    self.path.display().to_string(),
                ),
            },
        };
        // The bucket's region and key belong to the bucket: they come from the file that names
        // that URL, never from another (a personal key must not encrypt a team's objects).
        let same = |a: &str| match (
            crate::state::s3::S3Url::parse(a),
            crate::state::s3::S3Url::parse(&url),
        ) {
            (Ok(x), Ok(y)) => x == y,
            _ => a == url,
        };
        let owner = [project, Some(self)]
            .into_iter()
            .flatten()
            .find(|s| url_of(s).is_some_and(|u| same(&u)));
        let own = |key: &str| match owner.and_then(|s| s.values.get(key)) {
            Some(Value::Str(v)) if !v.trim().is_empty() => Some(v.clone()),
            _ => None,
        };
        StateSettings {
            region: own("state.region"),
            kms_key: own("state.kms_key"),
            url,
            from,
            lease: match pick("state.lease") {
                Some(Value::Duration(d)) => d,
                _ => Duration::from_secs(120),
            },
        }
    }

    pub fn ui(&self) -> crate::ui::Prefs {
        crate::ui::Prefs {
            emoji: self.flag("ui.emoji"),
            color: self.flag("ui.color"),
            compact: self.flag("ui.compact"),
        }
    }

    /// Every key: value in effect, whether it is set in the file, and help.
    pub fn list(&self) -> Vec<(&'static Key, Option<Value>, bool)> {
        KEYS.iter()
            .map(|k| {
                let (v, set) = self.get(k.key).expect("every listed key is known");
                (k, v, set)
            })
            .collect()
    }

    /// As JSON: `{ key: value }` for the values in effect.
    pub fn to_json(&self) -> serde_json::Value {
        let mut m = serde_json::Map::new();
        for (k, v, _) in self.list() {
            m.insert(
                k.key.into(),
                v.map_or(serde_json::Value::Null, |v| v.to_json()),
            );
        }
        m.into()
    }
}

/// Thresholds for `status` and `monitor`.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthSettings {
    pub interval: Duration,
    pub failures: u32,
    pub warn_ms: u64,
    pub critical_ms: u64,
    pub critical_services: Vec<String>,
}

impl Default for HealthSettings {
    fn default() -> Self {
        Settings::default().health()
    }
}

/// Set (`Some`) or remove (`None`) one key in `config.toml`, keeping the file's comments and
/// layout. Returns the value now in effect.
pub fn write(home: &Home, key: &str, text: Option<&str>) -> Result<Settings, ConfigError> {
    let spec = spec(key)?;
    // Refuse to edit a file that is not TOML: the user's text is never rewritten blind. A
    // value that fails its check is what `set` and `unset` are for, so only the result has to
    // be valid.
    let path = Settings::path_in(home);
    let raw = std::fs::read_to_string(&path).unwrap_or_default();
    let mut doc: toml_edit::DocumentMut = raw.parse().map_err(|e: toml_edit::TomlError| {
        ConfigError::Usage(format!("{}: {}", path.display(), e.message()))
    })?;
    let (section, name) = spec.key.split_once('.').expect("keys are section.name");
    match text {
        Some(t) => {
            let value = toml_from_text(spec.kind, t)
                .map_err(|m| ConfigError::Usage(format!("{key}: {m}")))?;
            if !doc.contains_table(section) {
                doc.insert(section, toml_edit::Item::Table(toml_edit::Table::new()));
            }
            doc[section][name] = toml_edit::Item::Value(value);
        }
        None => {
            if let Some(t) = doc.get_mut(section).and_then(|t| t.as_table_like_mut()) {
                t.remove(name);
            }
        }
    }
    home.ensure()?;
    let out = doc.to_string();
    let settings = Settings::parse(&path, &out)?;
    write_atomic(&path, out.as_bytes())?;
    Ok(settings)
}
