//! Reading the header: the `//!` block as TOML, checked key by key into a [`RecipeMeta`], with
//! each problem at its line and column in the recipe file.

use crate::kinds::ValueKind;

use super::*;

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

/// Where the header's TOML sits in the recipe file: turns an offset in the TOML into a
/// [`HeaderError`] at the file's line and column.
struct Located<'a> {
    text: &'a str,
    toml: &'a str,
    first: usize,
}

impl Located<'_> {
    fn at(&self, offset: usize, message: String) -> HeaderError {
        let (line, col) = crate::config::line_col(self.toml, offset);
        let (line, col) = (line - 1, col - 1);
        // The file line, and the column after the `//! ` prefix.
        let file_line = self.text.lines().nth(self.first - 1 + line).unwrap_or("");
        let prefix = file_line.len() - file_line.trim_start().len()
            + 3
            + usize::from(file_line.trim_start()[3..].starts_with(' '));
        HeaderError {
            line: self.first + line,
            col: prefix + col + 1,
            message,
        }
    }
}

fn span_of(item: Option<&toml_edit::Item>) -> usize {
    item.and_then(|i| i.span()).map_or(0, |s| s.start)
}

/// Read the header of `text`: `Ok(None)` when there is none.
pub fn parse(text: &str) -> Result<Option<RecipeMeta>, HeaderError> {
    let Some((toml, first)) = header_text(text)? else {
        return Ok(None);
    };
    let loc = Located {
        text,
        toml: &toml,
        first,
    };
    let doc = toml_edit::Document::parse(toml.as_str()).map_err(|e| {
        loc.at(
            e.span().map_or(0, |s| s.start),
            format!(
                "recipe header: not valid TOML: {}",
                e.message().lines().next().unwrap_or("")
            ),
        )
    })?;
    let root = doc.as_table();
    for (k, _) in root.iter() {
        if k != "recipe" && k != "params" {
            let off = root.key(k).and_then(|k| k.span()).map_or(0, |s| s.start);
            return Err(loc.at(
                off,
                format!(
                    "recipe header: unknown section [{k}] (the header has [recipe] and [params])"
                ),
            ));
        }
    }
    let mut meta = recipe_section(&loc, root)?;
    if let Some(params) = root.get("params") {
        let table = params.as_table_like().ok_or_else(|| {
            loc.at(
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
                return Err(loc.at(
                    key_off,
                    format!("param `{name}`: expected {{ type = …, default = …, help = … }}"),
                ));
            };
            meta.params.push(param_spec(&loc, name, key_off, spec)?);
        }
    }
    Ok(Some(meta))
}

/// `[recipe]`: name, description, MAJOR.MINOR.PATCH version, and kind.
fn recipe_section(loc: &Located, root: &toml_edit::Table) -> Result<RecipeMeta, HeaderError> {
    let mut meta = RecipeMeta {
        kind: "tier".into(),
        ..RecipeMeta::default()
    };
    let recipe = root
        .get("recipe")
        .and_then(|r| r.as_table_like())
        .ok_or_else(|| {
            loc.at(
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
                return Err(loc.at(
                    off,
                    "recipe header: `kind` is \"tier\" or \"maintenance\"".into(),
                ))
            }
            ("name" | "description" | "version", None) => {
                return Err(loc.at(off, format!("recipe header: `{k}` must be a string")))
            }
            _ => {
                let mut msg = format!("recipe header: unknown key `{k}` in [recipe]");
                if let Some(s) =
                    crate::suggest::did_you_mean(k, ["name", "description", "version", "kind"])
                {
                    msg.push_str(&format!(" (did you mean `{s}`?)"));
                }
                return Err(loc.at(off, msg));
            }
        }
    }
    if meta.name.is_empty() {
        return Err(loc.at(
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
        return Err(loc.at(
            off,
            format!(
                "recipe header: version `{}` is not MAJOR.MINOR.PATCH",
                meta.version
            ),
        ));
    }
    Ok(meta)
}

/// One param of `[params]`: its type, and a default (or `required`) that the type accepts.
fn param_spec(
    loc: &Located,
    name: &str,
    key_off: usize,
    spec: &dyn toml_edit::TableLike,
) -> Result<ParamSpec, HeaderError> {
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
            return Err(loc.at(off, msg));
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
            return Err(loc.at(
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
                return Err(loc.at(
                    value_at("items"),
                    format!("param `{name}`: items must be one of {}", kinds()),
                ))
            }
            _ => {
                return Err(loc.at(
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
        min: field("min").and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))),
        max: field("max").and_then(|v| v.as_float().or_else(|| v.as_integer().map(|i| i as f64))),
        help: field("help")
            .and_then(|v| v.as_str())
            .unwrap_or("")
            .to_string(),
        ask: field("ask").and_then(|v| v.as_bool()).unwrap_or(false),
        line: loc.at(key_off, String::new()).line,
    };
    if let Some(pat) = &p.pattern {
        if let Err(e) = regex_lite::Regex::new(pat) {
            return Err(loc.at(
                value_at("pattern"),
                format!("param `{name}`: bad pattern: {e}"),
            ));
        }
    }
    if let Some(a) = field("allowed") {
        let items = a.as_array().ok_or_else(|| {
            loc.at(
                value_at("allowed"),
                format!("param `{name}`: allowed must be a list"),
            )
        })?;
        for item in items.iter() {
            p.allowed.push(to_value(ty, item).map_err(|e| {
                loc.at(
                    value_at("allowed"),
                    format!("param `{name}`: allowed value {item}: {e}"),
                )
            })?);
        }
    }
    let required = field("required").and_then(|v| v.as_bool()).unwrap_or(false);
    match (field("default"), required) {
        (Some(_), true) => {
            return Err(loc.at(
                value_at("required"),
                format!("param `{name}`: a required param has no default"),
            ))
        }
        (Some(d), false) => {
            let v = to_value(ty, d).map_err(|e| {
                loc.at(value_at("default"), format!("param `{name}`: default: {e}"))
            })?;
            // Set first: an empty default is what makes "" acceptable to a kind.
            p.default = Some(v.clone());
            p.check(&v).map_err(|e| {
                loc.at(
                    value_at("default"),
                    format!("param `{name}`: default {v}: {e}"),
                )
            })?;
        }
        (None, true) => {}
        (None, false) => {
            return Err(loc.at(
                key_off,
                format!("param `{name}`: give a default, or `required = true`"),
            ))
        }
    }
    Ok(p)
}
