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

mod header;
pub use header::{parse, HeaderError};

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
