//! Recipe parameters: `--set key=value` on the command line, `param("key", default)` in the
//! recipe. Values take the type of the default.

use std::collections::BTreeMap;
use std::sync::Mutex;

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult};

use super::{rt, usage_err, usage_err_hint};

/// A malformed `--set`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ParamError {
    #[error("malformed --set `{0}`: expected key=value (e.g. --set instance_type=t3.large)")]
    Malformed(String),
    #[error(
        "malformed --set `{0}`: keys are lowercase letters, digits and `_`, starting with a letter"
    )]
    BadKey(String),
    #[error("--set `{0}` is given more than once")]
    Duplicate(String),
}

/// The `--set` values of a run, and what the recipe made of them.
#[derive(Debug, Default)]
pub struct Params {
    given: BTreeMap<String, String>,
    /// Values from config.toml: below `--set`, above the recipe's defaults.
    settings: BTreeMap<String, String>,
    /// The typed values of the params the recipe's header declares (already resolved).
    declared: BTreeMap<String, crate::param_value::Value>,
    /// The recipe has a header (its params are `declared`, possibly none).
    header: bool,
    resolved: Mutex<BTreeMap<String, serde_json::Value>>,
}

impl Params {
    /// Parse `key=value` pairs.
    pub fn parse<S: AsRef<str>>(sets: &[S]) -> Result<Self, ParamError> {
        let mut given = BTreeMap::new();
        for raw in sets {
            let raw = raw.as_ref();
            let (key, value) = raw
                .split_once('=')
                .ok_or_else(|| ParamError::Malformed(raw.to_string()))?;
            let key = key.trim();
            let valid = key.chars().next().is_some_and(|c| c.is_ascii_lowercase())
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
            if !valid {
                return Err(ParamError::BadKey(raw.to_string()));
            }
            if given.insert(key.to_string(), value.to_string()).is_some() {
                return Err(ParamError::Duplicate(key.to_string()));
            }
        }
        Ok(Params {
            given,
            settings: BTreeMap::new(),
            declared: BTreeMap::new(),
            header: false,
            resolved: Mutex::default(),
        })
    }

    /// The header's params, resolved (see `engine::meta::resolve`): `param(name)` returns them.
    pub fn with_declared(mut self, declared: BTreeMap<String, crate::param_value::Value>) -> Self {
        self.declared = declared;
        self.header = true;
        self
    }

    /// Every param the header declares, typed, as one map (`params()`).
    pub fn all(&self) -> Result<rhai::Map, Box<EvalAltResult>> {
        if !self.header {
            return Err(usage_err_hint(
                "params(): this recipe has no header declaring its params",
                "declare them in a `//! [params]` header (docs/recipes.md), or read each with param(\"name\", default)",
            ));
        }
        let mut map = rhai::Map::new();
        for name in self.declared.keys() {
            map.insert(name.into(), self.get(name, None)?);
        }
        Ok(map)
    }

    /// The config.toml values given to this run.
    pub fn settings(&self) -> &BTreeMap<String, String> {
        &self.settings
    }

    /// The `--set` values.
    pub fn given_map(&self) -> &BTreeMap<String, String> {
        &self.given
    }

    /// Add the settings' values for params not given with `--set`.
    pub fn with_settings(mut self, settings: BTreeMap<String, String>) -> Self {
        self.settings = settings;
        self
    }

    /// The raw `--set` text for `name`, if given.
    pub fn raw(&self, name: &str) -> Option<&str> {
        self.given.get(name).map(String::as_str)
    }

    pub fn given(&self) -> impl Iterator<Item = &str> {
        self.given.keys().map(String::as_str)
    }

    /// The values the recipe used (given or default), for the state's `config`.
    pub fn resolved(&self) -> BTreeMap<String, serde_json::Value> {
        self.resolved.lock().unwrap().clone()
    }

    /// The value of `name`, converted to the type of `default`.
    pub fn get(&self, name: &str, default: Option<Dynamic>) -> Result<Dynamic, Box<EvalAltResult>> {
        if let Some(v) = self.declared.get(name) {
            let value = v.to_dynamic();
            if let Ok(json) = serde_json::to_value(v) {
                self.resolved.lock().unwrap().insert(name.to_string(), json);
            }
            return Ok(value);
        }
        let value = match (self.given.get(name), self.settings.get(name), &default) {
            (None, Some(raw), Some(d)) => Some(convert(name, raw, d).map_err(|_| {
                usage_err_hint(
                    format!("config.toml gives param `{name}` the value `{raw}`, which does not fit the recipe's default `{d}`"),
                    "fix it with `geusemaker config set` (or override it with --set)",
                )
            })?),
            (None, Some(raw), None) => Some(Dynamic::from(raw.clone())),
            _ => None,
        };
        let value = match (self.given.get(name), value.map_or(default, Some)) {
            (None, Some(d)) => d,
            (None, None) => {
                return Err(usage_err_hint(
                    format!("the recipe needs param `{name}`"),
                    format!("pass it with --set {name}=VALUE"),
                ))
            }
            (Some(raw), Some(d)) => convert(name, raw, &d)?,
            (Some(raw), None) => Dynamic::from(raw.clone()),
        };
        if let Ok(json) = serde_json::to_value(&value) {
            self.resolved.lock().unwrap().insert(name.to_string(), json);
        }
        Ok(value)
    }
}

fn convert(name: &str, raw: &str, default: &Dynamic) -> Result<Dynamic, Box<EvalAltResult>> {
    let bad = |want: &str| usage_err(format!("--set {name}={raw}: expected {want}"));
    if default.is_int() {
        raw.trim()
            .parse::<i64>()
            .map(Dynamic::from)
            .map_err(|_| bad("an integer"))
    } else if default.is_float() {
        raw.trim()
            .parse::<f64>()
            .map(Dynamic::from)
            .map_err(|_| bad("a number"))
    } else if default.is_bool() {
        match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true.into()),
            "false" | "no" | "off" | "0" => Ok(false.into()),
            _ => Err(bad("true or false")),
        }
    } else if default.is_array() {
        let items: Array = raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Dynamic::from(s.to_string()))
            .collect();
        Ok(items.into())
    } else {
        Ok(Dynamic::from(raw.to_string()))
    }
}

#[export_module]
pub mod api {
    /// The value of recipe parameter `name` from `--set name=VALUE`, or `default`.
    /// The value takes the type of the default: `--set disk_gb=80` is an integer when the
    /// default is, `true/false/yes/no` for booleans, comma-separated for arrays.
    ///
    /// ```rhai
    /// let instance_type = param("instance_type", "t3.medium");
    /// let spot = param("spot", true);
    /// let models = param("models", ["llama3.2:3b"]);
    /// ```
    #[rhai_fn(name = "param", return_raw)]
    pub fn param_default(
        ctx: NativeCallContext,
        name: &str,
        default: Dynamic,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        rt(&ctx)?.params.get(name, Some(default))
    }

    /// The value of a required recipe parameter (an error naming `--set name=…` when absent).
    ///
    /// ```rhai
    /// let cidr = param("allowed_cidr");
    /// ```
    #[rhai_fn(name = "param", return_raw)]
    pub fn param_required(
        ctx: NativeCallContext,
        name: &str,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        rt(&ctx)?.params.get(name, None)
    }

    /// Every param the recipe's header declares, resolved and typed, as one map: read them as
    /// `p.instance_type`. `geusemaker check` refuses a name the header does not declare
    /// (`p.instance_typ`) where `p` is only ever assigned `params()`.
    ///
    /// ```rhai
    /// let p = params();
    /// ui::info(`launching a ${p.instance_type}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn params(ctx: NativeCallContext) -> Result<rhai::Map, Box<EvalAltResult>> {
        rt(&ctx)?.params.all()
    }
}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        let p = Params::parse(&["a=1", "b_2=x=y", "c="]).unwrap();
        assert_eq!(p.given().collect::<Vec<_>>(), ["a", "b_2", "c"]);
        assert_eq!(
            Params::parse(&["novalue"]).unwrap_err(),
            ParamError::Malformed("novalue".into())
        );
        assert_eq!(
            Params::parse(&["Bad=1"]).unwrap_err(),
            ParamError::BadKey("Bad=1".into())
        );
        assert_eq!(
            Params::parse(&["=1"]).unwrap_err(),
            ParamError::BadKey("=1".into())
        );
        assert_eq!(
            Params::parse(&["a=1", "a=2"]).unwrap_err(),
            ParamError::Duplicate("a".into())
        );
    }

    #[test]
    fn converts_to_the_default_type() {
        let p = Params::parse(&["n=42", "f=0.5", "b=yes", "l=x, y", "s=hi", "bad=abc"]).unwrap();
        assert_eq!(p.get("n", Some(1i64.into())).unwrap().as_int().unwrap(), 42);
        assert_eq!(
            p.get("f", Some(1.0f64.into())).unwrap().as_float().unwrap(),
            0.5
        );
        assert!(p.get("b", Some(false.into())).unwrap().as_bool().unwrap());
        assert_eq!(
            p.get("l", Some(Dynamic::from(Array::new())))
                .unwrap()
                .into_array()
                .unwrap()
                .len(),
            2
        );
        assert_eq!(
            p.get("s", Some("x".into())).unwrap().into_string().unwrap(),
            "hi"
        );
        assert_eq!(
            p.get("missing", Some(7i64.into()))
                .unwrap()
                .as_int()
                .unwrap(),
            7
        );
        assert!(p.get("bad", Some(1i64.into())).is_err());
        assert!(p.get("missing", None).is_err());
        assert_eq!(p.resolved()["n"], serde_json::json!(42));
    }
}
