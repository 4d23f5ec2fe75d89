//! The recipe header: name, description, version and typed params, written as TOML in the
//! recipe's leading `//!` lines and read without running the recipe.
//!
//! ```rhai
//! //! [recipe]
//! //! name = "dev"
//! //! description = "The AI stack on one spot instance"
//! //! version = "1.0.0"
//! //!
//! //! [params]
//! //! instance_type = { type = "string", default = "t3.medium", pattern = '^[a-z0-9-]+\.[a-z0-9]+$', help = "EC2 instance type" }
//! //! spot          = { type = "bool", default = true, help = "spot first, on-demand as fallback" }
//!
//! let instance_type = param("instance_type");
//! ```
//!
//! `--set` values are checked against it before anything runs; `param("name")` then returns the
//! typed value (given, from config.toml, or the header's default).

use std::collections::BTreeMap;

use serde::Serialize;

use crate::kinds::ValueKind;

/// What a param holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ParamType {
    String,
    Int,
    Float,
    Bool,
    /// A list of strings (`--set models=a,b`).
    List,
}

impl ParamType {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "string" => Self::String,
            "int" => Self::Int,
            "float" => Self::Float,
            "bool" => Self::Bool,
            "list" => Self::List,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Int => "int",
            Self::Float => "float",
            Self::Bool => "bool",
            Self::List => "list",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Self::String => "a string",
            Self::Int => "an integer",
            Self::Float => "a number",
            Self::Bool => "true or false",
            Self::List => "a comma-separated list",
        }
    }
}

pub use crate::param_value::Value;

/// One declared param.
#[derive(Debug, Clone, Serialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ParamType,
    /// `None`: required.
    pub default: Option<Value>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub allowed: Vec<Value>,
    /// What the value means (`type = "cidr"`, or a list's `items = "instance_type"`): checked
    /// with a message in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<ValueKind>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    pub help: String,
    /// Asked for by the interactive `deploy` (required params always are).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ask: bool,
    /// Line of the declaration in the recipe file.
    #[serde(skip)]
    pub line: usize,
}

impl ParamSpec {
    /// The type as a header writes it: `string`, `cidr`, `list` …
    pub fn type_name(&self) -> String {
        match (self.ty, self.kind) {
            (ParamType::List, Some(k)) => format!("list of {}", k.as_str()),
            (_, Some(k)) => k.as_str().to_string(),
            (ty, None) => ty.as_str().to_string(),
        }
    }

    /// Check a value against the type's constraints.
    pub fn check(&self, v: &Value) -> Result<(), String> {
        if let Some(kind) = self.kind {
            // An empty string is the param's "not given" when that is its default.
            let unset = matches!(&self.default, Some(Value::String(d)) if d.is_empty());
            let texts: Vec<&str> = match v {
                Value::String(s) if s.is_empty() && unset => vec![],
                Value::String(s) => vec![s.as_str()],
                Value::List(l) => l.iter().map(String::as_str).collect(),
                _ => vec![],
            };
            for t in texts {
                kind.check(t).map_err(|e| match &e.suggestion {
                    Some(s) => format!("{e} (did you mean `{s}`?)"),
                    None => e.to_string(),
                })?;
            }
        }
        if !self.allowed.is_empty() && !self.allowed.contains(v) {
            let list: Vec<String> = self.allowed.iter().map(|a| a.to_string()).collect();
            return Err(format!("must be one of {}", list.join(", ")));
        }
        if let Some(p) = &self.pattern {
            let re = regex_lite::Regex::new(p).map_err(|e| format!("bad pattern: {e}"))?;
            let texts: Vec<&str> = match v {
                Value::String(s) => vec![s.as_str()],
                Value::List(l) => l.iter().map(String::as_str).collect(),
                _ => vec![],
            };
            if let Some(bad) = texts.iter().find(|t| !re.is_match(t)) {
                // A regular expression is not a message: the hint gives the param's help, and
                // `recipes show` the pattern.
                return Err(format!(
                    "`{bad}` is not in the form `{}` takes (the pattern in the recipe's header)",
                    self.name
                ));
            }
        }
        let n = match v {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        };
        if let (Some(n), Some(min)) = (n, self.min) {
            if n < min {
                return Err(format!("must be at least {min}"));
            }
        }
        if let (Some(n), Some(max)) = (n, self.max) {
            if n > max {
                return Err(format!("must be at most {max}"));
            }
        }
        Ok(())
    }

    /// Command-line text (`--set name=TEXT`) as a checked value.
    pub fn parse(&self, raw: &str) -> Result<Value, String> {
        let want = || format!("expected {}", self.ty.describe());
        let v = match self.ty {
            ParamType::String => Value::String(raw.to_string()),
            ParamType::Int => Value::Int(raw.trim().parse().map_err(|_| want())?),
            ParamType::Float => Value::Float(raw.trim().parse().map_err(|_| want())?),
            ParamType::Bool => match raw.trim().to_ascii_lowercase().as_str() {
                "true" | "yes" | "on" | "1" => Value::Bool(true),
                "false" | "no" | "off" | "0" => Value::Bool(false),
                _ => return Err(want()),
            },
            ParamType::List => Value::List(
                raw.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect(),
            ),
        };
        self.check(&v)?;
        Ok(v)
    }
}

/// The header of a recipe.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RecipeMeta {
    pub name: String,
    pub description: String,
    pub version: String,
    /// `tier` (deploys a stack: offered by the interactive `deploy`) or `maintenance`.
    pub kind: String,
    pub params: Vec<ParamSpec>,
}

impl RecipeMeta {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }
}

/// A problem in the header, at a line and column of the recipe file.
#[derive(Debug, Clone, PartialEq)]
pub struct HeaderError {
    pub line: usize,
    pub col: usize,
    pub message: String,
}

/// The `//!` lines at the top of `text` (after blank lines and `//` comments), as TOML, and
/// the file line of the first one. A `//!` line anywhere after that block would be silently
/// ignored, so it is an error.
fn header_text(text: &str) -> Result<Option<(String, usize)>, HeaderError> {
    let mut out = String::new();
    let mut first = None;
    let mut ended: Option<usize> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim_start();
        if i == 0 && t.starts_with("#!") {
            continue; // a shebang line
        }
        match (t.strip_prefix("//!"), ended) {
            (Some(_), Some(after)) => {
                return Err(HeaderError {
                    line: i + 1,
                    col: line.len() - t.len() + 1,
                    message: format!(
                        "recipe header: `//!` lines must be one block at the top of the file; this one comes after the code on line {after} and would be ignored (move the header above the first import: only blank lines and `//` comments may precede it)"
                    ),
                })
            }
            (Some(rest), None) => {
                first.get_or_insert(i + 1);
                out.push_str(rest.strip_prefix(' ').unwrap_or(rest));
                out.push('\n');
            }
            (None, None) if first.is_some() || !(t.is_empty() || t.starts_with("//")) => {
                ended = Some(i + 1)
            }
            _ => {}
        }
    }
    Ok(first.map(|f| (out, f)))
}

fn to_value(ty: ParamType, v: &toml_edit::Value) -> Result<Value, String> {
    let want = || format!("expected {}", ty.describe());
    Ok(match ty {
        ParamType::String => Value::String(v.as_str().ok_or_else(want)?.to_string()),
        ParamType::Int => Value::Int(v.as_integer().ok_or_else(want)?),
        ParamType::Float => Value::Float(
            v.as_float()
                .or_else(|| v.as_integer().map(|i| i as f64))
                .ok_or_else(want)?,
        ),
        ParamType::Bool => Value::Bool(v.as_bool().ok_or_else(want)?),
        ParamType::List => Value::List(
            v.as_array()
                .ok_or_else(want)?
                .iter()
                .map(|x| x.as_str().map(str::to_string).ok_or_else(want))
                .collect::<Result<_, _>>()?,
        ),
    })
}

const PARAM_KEYS: &[&str] = &[
    "type", "items", "default", "allowed", "pattern", "min", "max", "help", "required", "ask",
];

/// Read the header of `text`: `Ok(None)` when there is none.
pub fn parse(text: &str) -> Result<Option<RecipeMeta>, HeaderError> {
    let Some((toml, first)) = header_text(text)? else {
        return Ok(None);
    };
    let at = |offset: usize, message: String| {
        let (line, col) = crate::config::line_col(&toml, offset);
        let (line, col) = (line - 1, col - 1);
        // The file line, and the column after the `//! ` prefix.
        let file_line = text.lines().nth(first - 1 + line).unwrap_or("");
        let prefix = file_line.len() - file_line.trim_start().len()
            + 3
            + usize::from(file_line.trim_start()[3..].starts_with(' '));
        HeaderError {
            line: first + line,
            col: prefix + col + 1,
            message,
        }
    };
    let doc = toml_edit::Document::parse(toml.as_str()).map_err(|e| {
        at(
            e.span().map_or(0, |s| s.start),
            format!(
                "recipe header: not valid TOML: {}",
                e.message().lines().next().unwrap_or("")
            ),
        )
    })?;
    let root = doc.as_table();
    let span_of =
        |item: Option<&toml_edit::Item>| item.and_then(|i| i.span()).map_or(0, |s| s.start);
    for (k, _) in root.iter() {
        if k != "recipe" && k != "params" {
            let off = root.key(k).and_then(|k| k.span()).map_or(0, |s| s.start);
            return Err(at(
                off,
                format!(
                    "recipe header: unknown section [{k}] (the header has [recipe] and [params])"
                ),
            ));
        }
    }
    let mut meta = RecipeMeta {
        kind: "tier".into(),
        ..RecipeMeta::default()
    };
    let recipe = root
        .get("recipe")
        .and_then(|r| r.as_table_like())
        .ok_or_else(|| {
            at(
                0,
                "recipe header: no [recipe] section with name, description and version".into(),
            )
        })?;
    for (k, v) in recipe.iter() {
        let text = v.as_str().map(str::to_string);
        let off = recipe.key(k).and_then(|k| k.span()).map_or(0, |s| s.start);
        match (k, text) {
            ("name", Some(t)) => meta.name = t,
            ("description", Some(t)) => meta.description = t,
            ("version", Some(t)) => meta.version = t,
            ("kind", Some(t)) if t == "tier" || t == "maintenance" => meta.kind = t,
            ("kind", _) => {
                return Err(at(
                    off,
                    "recipe header: `kind` is \"tier\" or \"maintenance\"".into(),
                ))
            }
            ("name" | "description" | "version", None) => {
                return Err(at(off, format!("recipe header: `{k}` must be a string")))
            }
            _ => {
                let mut msg = format!("recipe header: unknown key `{k}` in [recipe]");
                if let Some(s) =
                    crate::suggest::did_you_mean(k, ["name", "description", "version", "kind"])
                {
                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                }
                return Err(at(off, msg));
            }
        }
    }
    if meta.name.is_empty() {
        return Err(at(
            span_of(root.get("recipe")),
            "recipe header: [recipe] needs a `name`".into(),
        ));
    }
    let version_ok = meta.version.split('.').count() == 3
        && meta
            .version
            .split('.')
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
    if !version_ok {
        let off = recipe
            .get("version")
            .and_then(|v| v.span())
            .map_or(0, |s| s.start);
        return Err(at(
            off,
            format!(
                "recipe header: version `{}` is not MAJOR.MINOR.PATCH",
                meta.version
            ),
        ));
    }
    if let Some(params) = root.get("params") {
        let table = params.as_table_like().ok_or_else(|| {
            at(
                span_of(Some(params)),
                "recipe header: [params] must be a table".into(),
            )
        })?;
        for (name, item) in table.iter() {
            let key_off = table
                .key(name)
                .and_then(|k| k.span())
                .map_or(0, |s| s.start);
            let Some(spec) = item.as_table_like() else {
                return Err(at(
                    key_off,
                    format!("param `{name}`: expected {{ type = …, default = …, help = … }}"),
                ));
            };
            for (k, v) in spec.iter() {
                if !PARAM_KEYS.contains(&k) {
                    let mut msg = format!("param `{name}`: unknown key `{k}`");
                    if let Some(s) = crate::suggest::did_you_mean(k, PARAM_KEYS.iter().copied()) {
                        msg.push_str(&format!(" (did you mean `{s}`?)"));
                    }
                    let off = spec
                        .key(k)
                        .and_then(|k| k.span())
                        .or_else(|| v.span())
                        .map_or(key_off, |s| s.start);
                    return Err(at(off, msg));
                }
            }
            let value_at = |k: &str| {
                spec.get(k)
                    .and_then(|v| v.span())
                    .map_or(key_off, |s| s.start)
            };
            let ty_text = spec.get("type").and_then(|t| t.as_str()).unwrap_or("");
            let kinds = || {
                ValueKind::ALL
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            };
            let (ty, mut kind) = match (ParamType::parse(ty_text), ValueKind::parse(ty_text)) {
                (Some(ty), _) => (ty, None),
                (None, Some(k)) => (ParamType::String, Some(k)),
                (None, None) => {
                    let mut msg = format!(
                        "param `{name}`: type must be string, int, float, bool, list, or one of {}",
                        kinds()
                    );
                    let names = ["string", "int", "float", "bool", "list"]
                        .into_iter()
                        .chain(ValueKind::ALL.iter().map(|k| k.as_str()));
                    if let Some(s) = crate::suggest::did_you_mean(ty_text, names) {
                        msg.push_str(&format!(" (did you mean `{s}`?)"));
                    }
                    return Err(at(
                        if spec.contains_key("type") {
                            value_at("type")
                        } else {
                            key_off
                        },
                        msg,
                    ));
                }
            };
            if let Some(items) = spec.get("items") {
                let text = items.as_str().unwrap_or("");
                match (ty, ValueKind::parse(text)) {
                    (ParamType::List, Some(k)) => kind = Some(k),
                    (ParamType::List, None) => {
                        return Err(at(
                            value_at("items"),
                            format!("param `{name}`: items must be one of {}", kinds()),
                        ))
                    }
                    _ => {
                        return Err(at(
                            value_at("items"),
                            format!("param `{name}`: `items` is for a list (type = \"list\")"),
                        ))
                    }
                }
            }
            let field = |k: &str| spec.get(k).and_then(|i| i.as_value());
            let mut p = ParamSpec {
                name: name.to_string(),
                ty,
                kind,
                default: None,
                allowed: Vec::new(),
                pattern: field("pattern")
                    .and_then(|v| v.as_str())
                    .map(str::to_string),
                min: field("min")
                    .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))),
                max: field("max")
                    .and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))),
                help: field("help")
                    .and_then(|v| v.as_str())
                    .unwrap_or("")
                    .to_string(),
                ask: field("ask").and_then(|v| v.as_bool()).unwrap_or(false),
                line: at(key_off, String::new()).line,
            };
            if let Some(pat) = &p.pattern {
                if let Err(e) = regex_lite::Regex::new(pat) {
                    return Err(at(
                        value_at("pattern"),
                        format!("param `{name}`: bad pattern: {e}"),
                    ));
                }
            }
            if let Some(a) = field("allowed") {
                let items = a.as_array().ok_or_else(|| {
                    at(
                        value_at("allowed"),
                        format!("param `{name}`: allowed must be a list"),
                    )
                })?;
                for item in items.iter() {
                    p.allowed.push(to_value(ty, item).map_err(|e| {
                        at(
                            value_at("allowed"),
                            format!("param `{name}`: allowed value {item}: {e}"),
                        )
                    })?);
                }
            }
            let required = field("required").and_then(|v| v.as_bool()).unwrap_or(false);
            match (field("default"), required) {
                (Some(_), true) => {
                    return Err(at(
                        value_at("required"),
                        format!("param `{name}`: a required param has no default"),
                    ))
                }
                (Some(d), false) => {
                    let v = to_value(ty, d).map_err(|e| {
                        at(value_at("default"), format!("param `{name}`: default: {e}"))
                    })?;
                    // Set first: an empty default is what makes "" acceptable to a kind.
                    p.default = Some(v.clone());
                    p.check(&v).map_err(|e| {
                        at(
                            value_at("default"),
                            format!("param `{name}`: default {v}: {e}"),
                        )
                    })?;
                }
                (None, true) => {}
                (None, false) => {
                    return Err(at(
                        key_off,
                        format!("param `{name}`: give a default, or `required = true`"),
                    ))
                }
            }
            meta.params.push(p);
        }
    }
    Ok(Some(meta))
}

/// Typed values for every header param: `--set` (given), then config.toml (`settings`),
/// then the default. Errors name the flag (or the setting) and what was expected.
pub fn resolve(
    meta: &RecipeMeta,
    given: &BTreeMap<String, String>,
    settings: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Value>, String> {
    let mut out = BTreeMap::new();
    for p in &meta.params {
        let hint = if p.help.is_empty() {
            String::new()
        } else {
            format!("\nhint: {}: {}", p.name, p.help)
        };
        let v = if let Some(raw) = given.get(&p.name) {
            p.parse(raw)
                .map_err(|e| format!("--set {}={raw}: {e}{hint}", p.name))?
        } else if let Some(raw) = settings.get(&p.name) {
            p.parse(raw)
                .map_err(|e| format!("config.toml sets param `{}` to `{raw}`: {e}", p.name))?
        } else if let Some(d) = &p.default {
            d.clone()
        } else {
            let help = if p.help.is_empty() {
                String::new()
            } else {
                format!(" ({})", p.help)
            };
            return Err(format!(
                "the recipe needs param `{}`{help}: pass --set {}=VALUE",
                p.name, p.name
            ));
        };
        out.insert(p.name.clone(), v);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"// a recipe
//! [recipe]
//! name = "demo"
//! description = "A demo"
//! version = "1.2.3"
//!
//! [params]
//! instance_type = { type = "string", default = "t3.medium", pattern = '^[a-z0-9-]+\.[a-z0-9]+$', help = "EC2 type" }
//! disk_gb = { type = "int", default = 30, min = 8, max = 16384 }
//! tier = { type = "string", default = "dev", allowed = ["dev", "gpu"] }
//! models = { type = "list", default = ["llama3.2:3b"] }
//! cidr = { type = "string", required = true, help = "who may connect" }

let t = param("instance_type");
"#;

    #[test]
    fn the_header_is_read_with_types_and_constraints() {
        let m = parse(GOOD).unwrap().unwrap();
        assert_eq!((m.name.as_str(), m.version.as_str()), ("demo", "1.2.3"));
        assert_eq!(m.params.len(), 5);
        let t = m.param("instance_type").unwrap();
        assert_eq!(t.line, 8);
        assert_eq!(
            t.parse("t3.large").unwrap(),
            Value::String("t3.large".into())
        );
        assert_eq!(
            t.parse("large").unwrap_err(),
            "`large` is not in the form `instance_type` takes (the pattern in the recipe's header)",
            "a pattern's refusal is words, not the regular expression"
        );
        let d = m.param("disk_gb").unwrap();
        assert_eq!(d.parse("80").unwrap(), Value::Int(80));
        assert_eq!(d.parse("eighty").unwrap_err(), "expected an integer");
        assert_eq!(d.parse("4").unwrap_err(), "must be at least 8");
        assert_eq!(
            m.param("tier").unwrap().parse("prod").unwrap_err(),
            "must be one of dev, gpu"
        );
        assert_eq!(
            m.param("models").unwrap().parse("a, b").unwrap(),
            Value::List(vec!["a".into(), "b".into()])
        );
        assert!(m.param("cidr").unwrap().default.is_none());
        assert_eq!(parse("let a = 1;\n").unwrap().map(|m| m.name), None);
    }

    #[test]
    fn resolve_layers_set_over_settings_over_defaults() {
        let m = parse(GOOD).unwrap().unwrap();
        let given = BTreeMap::from([("cidr".to_string(), "10.0.0.0/8".to_string())]);
        let settings = BTreeMap::from([("instance_type".to_string(), "t3.large".to_string())]);
        let v = resolve(&m, &given, &settings).unwrap();
        assert_eq!(v["instance_type"], Value::String("t3.large".into()));
        assert_eq!(v["disk_gb"], Value::Int(30));
        let e = resolve(&m, &BTreeMap::new(), &settings).unwrap_err();
        assert_eq!(
            e,
            "the recipe needs param `cidr` (who may connect): pass --set cidr=VALUE"
        );
        let bad = BTreeMap::from([
            ("cidr".to_string(), "x".to_string()),
            ("disk_gb".to_string(), "2".to_string()),
        ]);
        assert_eq!(
            resolve(&m, &bad, &settings).unwrap_err(),
            "--set disk_gb=2: must be at least 8"
        );
        let bad = BTreeMap::from([
            ("cidr".to_string(), "x".to_string()),
            ("instance_type".to_string(), "big".to_string()),
        ]);
        assert_eq!(
            resolve(&m, &bad, &settings).unwrap_err(),
            "--set instance_type=big: `big` is not in the form `instance_type` takes (the pattern in the recipe's header)\nhint: instance_type: EC2 type"
        );
    }

    #[test]
    fn kinds_check_meaning_and_accept_an_empty_default() {
        let m = parse(
            "//! [recipe]\n//! name = \"k\"\n//! version = \"1.0.0\"\n//! [params]\n\
             //! cidr = { type = \"cidr\", default = \"\" }\n\
             //! office = { type = \"cidr\", required = true }\n\
             //! types = { type = \"list\", items = \"instance_type\", default = [] }\n",
        )
        .unwrap()
        .unwrap();
        let cidr = m.param("cidr").unwrap();
        assert_eq!(cidr.type_name(), "cidr");
        assert!(cidr.parse("").is_ok(), "the default's \"\" means not given");
        assert_eq!(
            cidr.parse("10.0.0.0/33").unwrap_err(),
            "`10.0.0.0/33`: the prefix length must be 0–32, not 33"
        );
        assert!(
            m.param("office").unwrap().parse("").is_err(),
            "required: no empty value"
        );
        let types = m.param("types").unwrap();
        assert_eq!(types.type_name(), "list of instance_type");
        assert!(types.parse("t3.small,g5.xlarge").is_ok());
        assert!(types
            .parse("t3.small,t3.larg")
            .unwrap_err()
            .contains("(did you mean `t3.large`?)"));
        let e = parse("//! [recipe]\n//! name = \"k\"\n//! version = \"1.0.0\"\n//! [params]\n//! a = { type = \"cidrr\", default = \"\" }\n").unwrap_err();
        assert!(e.message.contains("did you mean `cidr`?"), "{e:?}");
        let e = parse("//! [recipe]\n//! name = \"k\"\n//! version = \"1.0.0\"\n//! [params]\n//! a = { type = \"string\", items = \"cidr\", default = \"\" }\n").unwrap_err();
        assert!(e.message.contains("`items` is for a list"), "{e:?}");
    }

    #[test]
    fn header_problems_point_at_the_file_line_and_column() {
        let e = parse("//! [recipe]\n//! name = \"x\"\n//! version = \"1.0\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (3, 15));
        assert!(e.message.contains("not MAJOR.MINOR.PATCH"), "{e:?}");
        let e = parse("//! [recipe]\n//! name = \"x\"\n//! version = \"1.0.0\"\n//! [params]\n//! a = { type = \"int\", default = \"x\" }\n").unwrap_err();
        assert_eq!((e.line, e.col), (5, 35));
        assert_eq!(e.message, "param `a`: default: expected an integer");
        let e = parse("//! [recipe]\n//! name = \"x\"\n//! version = \"1.0.0\"\n//! [params]\n//! a = { type = \"int\", defualt = 1 }\n").unwrap_err();
        assert!(e.message.contains("did you mean `default`"), "{e:?}");
        assert_eq!(e.line, 5);
        let e = parse("//! [recipe]\n//! name = \"x\"\n//! version = \"1.0.0\"\n//! [params]\n//! a = { type = \"text\", default = \"\" }\n").unwrap_err();
        assert!(e.message.contains("type must be"), "{e:?}");
        // A header after code would be ignored: it is an error at its first line.
        let e =
            parse("import \"teardown\" as t;\n//! [recipe]\n//! name = \"late\"\n").unwrap_err();
        assert_eq!((e.line, e.col), (2, 1));
        assert!(e.message.contains("must be one block at the top"), "{e:?}");
        let e = parse("//! [recipe]\n//! name = \"x\"\n\n//! version = \"1.0.0\"\n").unwrap_err();
        assert_eq!(e.line, 4, "a header split by a blank line: {e:?}");
        let e = parse("//! [recipe\n").unwrap_err();
        assert_eq!(e.line, 1);
        assert!(e.message.contains("not valid TOML"));
        let e = parse("//! [recipe]\n//! name = \"x\"\n//! version = \"1.0.0\"\n//! [params]\n//! a = { type = \"string\" }\n").unwrap_err();
        assert!(e.message.contains("give a default, or `required = true`"));
    }
}
