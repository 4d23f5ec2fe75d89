//! Option maps checked strictly: unknown keys are errors with "did you mean", wrong types are
//! errors naming the key and the expected type.

use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::{did_you_mean, usage_err, usage_err_hint};

/// The options map of one primitive call.
pub struct Opts {
    func: &'static str,
    map: Map,
}

impl Opts {
    /// Check `map` against the keys `func` accepts.
    pub fn new(func: &'static str, map: Map, allowed: &[&str]) -> Result<Self, Box<EvalAltResult>> {
        for key in map.keys() {
            if !allowed.contains(&key.as_str()) {
                let msg = format!("{func}: unknown option `{key}`");
                return Err(match did_you_mean(key, allowed.iter().copied()) {
                    Some(s) => usage_err_hint(msg, format!("did you mean `{s}`?")),
                    None => usage_err_hint(msg, format!("{func} accepts: {}", allowed.join(", "))),
                });
            }
        }
        Ok(Opts { func, map })
    }

    pub fn empty(func: &'static str) -> Self {
        Opts {
            func,
            map: Map::new(),
        }
    }

    fn take(&mut self, key: &str) -> Option<Dynamic> {
        self.map.remove(key).filter(|v| !v.is_unit())
    }

    fn wrong(&self, key: &str, want: &str, got: &Dynamic) -> Box<EvalAltResult> {
        usage_err(format!(
            "{}: option `{key}` must be {want}, not {}",
            self.func,
            got.type_name()
        ))
    }

    pub fn str(&mut self, key: &str) -> Result<Option<String>, Box<EvalAltResult>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) if v.is_string() => Ok(Some(v.into_string().expect("is string"))),
            Some(v) => Err(self.wrong(key, "a string", &v)),
        }
    }

    /// A string option that must be one of `allowed` (refused with "did you mean").
    pub fn one_of(
        &mut self,
        key: &str,
        allowed: &[&str],
    ) -> Result<Option<String>, Box<EvalAltResult>> {
        let Some(v) = self.str(key)? else {
            return Ok(None);
        };
        if allowed.contains(&v.as_str()) {
            return Ok(Some(v));
        }
        let msg = format!(
            "{}: option `{key}` is `{v}`, not one of {}",
            self.func,
            allowed.join(", ")
        );
        Err(match did_you_mean(&v, allowed.iter().copied()) {
            Some(s) => usage_err_hint(msg, format!("did you mean `{s}`?")),
            None => usage_err(msg),
        })
    }

    pub fn req_str(&mut self, key: &str) -> Result<String, Box<EvalAltResult>> {
        self.str(key)?
            .ok_or_else(|| usage_err(format!("{}: option `{key}` is required", self.func)))
    }

    pub fn bool(&mut self, key: &str) -> Result<Option<bool>, Box<EvalAltResult>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_bool()
                .map(Some)
                .map_err(|_| self.wrong(key, "true or false", &v)),
        }
    }

    pub fn int(&mut self, key: &str) -> Result<Option<i64>, Box<EvalAltResult>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) => v
                .as_int()
                .map(Some)
                .map_err(|_| self.wrong(key, "an integer", &v)),
        }
    }

    pub fn array(&mut self, key: &str) -> Result<Option<Array>, Box<EvalAltResult>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) if v.is_array() => Ok(Some(v.into_array().expect("is array"))),
            Some(v) => Err(self.wrong(key, "an array", &v)),
        }
    }

    pub fn map(&mut self, key: &str) -> Result<Option<Map>, Box<EvalAltResult>> {
        match self.take(key) {
            None => Ok(None),
            Some(v) if v.is_map() => Ok(Some(v.cast::<Map>())),
            Some(v) => Err(self.wrong(key, "a map", &v)),
        }
    }

    /// Any value (the caller converts it, e.g. an id string or a typed handle).
    pub fn value(&mut self, key: &str) -> Option<Dynamic> {
        self.take(key)
    }

    pub fn func(&self) -> &'static str {
        self.func
    }
}

/// An HTTP header map (`#{ "X-Origin-Verify": secret }`): names are letters, digits and `-`;
/// values are strings or `Secret`s of letters, digits, `-` and `_`, at most 128 characters
/// (the load balancer's limit for a header it matches). Sorted by name.
pub fn header_pairs(func: &str, v: Dynamic) -> Result<Vec<(String, String)>, Box<EvalAltResult>> {
    let map = v.try_cast::<Map>().ok_or_else(|| {
        usage_err(format!(
            "{func}: headers are a map like #{{ \"X-Name\": value }}"
        ))
    })?;
    let mut out = Vec::new();
    for (name, value) in map {
        let name = name.to_string();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(usage_err(format!(
                "{func}: `{name}` is not an HTTP header name (letters, digits, -)"
            )));
        }
        let value = match value.clone().try_cast::<super::ssm::Secret>() {
            Some(s) => s.reveal().to_string(),
            None => value.into_string().map_err(|t| {
                usage_err(format!(
                    "{func}: header {name} is a string or a Secret, not {t}"
                ))
            })?,
        };
        // Letters, digits, `-` and `_` only: the load balancer reads `*` and `?` in a value it
        // matches as wildcards (a value of `*` would let every request through).
        if value.is_empty()
            || value.len() > 128
            || !value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(usage_err(format!(
                "{func}: header {name}: the value must be 1 to 128 letters, digits, - or _"
            )));
        }
        out.push((name, value));
    }
    out.sort();
    Ok(out)
}
