//! Recipe errors rendered like a compiler's: `file:line:col`, the source line, a caret, a
//! hint, and the call frames from the recipe down to the failing primitive.

use std::fmt::Write as _;

use console::Style;
use rhai::{Dynamic, EvalAltResult, Map, ParseError, Position};

use super::sources::Sources;
use crate::primitives::{did_you_mean, CallSite};

/// A place in a script.
#[derive(Debug, Clone, PartialEq)]
pub struct Loc {
    pub source: String,
    pub line: usize,
    pub col: usize,
}

impl std::fmt::Display for Loc {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.source, self.line, self.col)
    }
}

/// One call on the way to the error: `function` was called at `at`.
#[derive(Debug, Clone, PartialEq)]
pub struct Frame {
    pub function: String,
    pub at: Loc,
}

/// A rendered-ready error.
#[derive(Debug, Clone, PartialEq)]
pub struct Diagnostic {
    pub message: String,
    pub hint: Option<String>,
    pub primary: Option<Loc>,
    /// Outermost (the recipe) first.
    pub frames: Vec<Frame>,
}

fn loc(source: &str, pos: Position) -> Option<Loc> {
    Some(Loc {
        source: source.to_string(),
        line: pos.line()?,
        col: pos.position().unwrap_or(1),
    })
}

/// A syntax error in `source`.
pub fn from_parse(err: &ParseError, source: &str) -> Diagnostic {
    Diagnostic {
        message: format!("syntax error: {}", err.err_type()),
        hint: None,
        primary: loc(source, err.position()),
        frames: Vec::new(),
    }
}

/// The `code` of the error map a primitive (or a recipe's `throw`) raised, through the calls
/// and imports it passed: e.g. `WaitTimeout`, `NotHealthy`, an AWS error code.
pub fn error_code(err: &EvalAltResult) -> Option<String> {
    match err {
        EvalAltResult::ErrorInFunctionCall(_, _, inner, _)
        | EvalAltResult::ErrorInModule(_, inner, _) => error_code(inner),
        EvalAltResult::ErrorRuntime(value, _) => value
            .read_lock::<rhai::Map>()?
            .get("code")?
            .clone()
            .into_string()
            .ok(),
        _ => None,
    }
}

/// A runtime (or module-load) error of a run whose top-level script is `root`.
/// `known_functions` feeds "did you mean" for unknown function names.
pub fn from_eval(
    err: &EvalAltResult,
    root: &str,
    sources: &Sources,
    known_functions: &[String],
    last_call: Option<&CallSite>,
) -> Diagnostic {
    let mut frames = Vec::new();
    let mut source = root.to_string();
    let mut e = err;
    loop {
        match e {
            EvalAltResult::ErrorInFunctionCall(name, fn_source, inner, pos) => {
                if let Some(at) = loc(&source, *pos) {
                    frames.push(Frame {
                        function: format!("{name}()"),
                        at,
                    });
                }
                if !fn_source.is_empty() {
                    source = fn_source.clone();
                }
                e = inner;
            }
            EvalAltResult::ErrorInModule(module, inner, pos) => {
                if let Some(at) = loc(&source, *pos) {
                    frames.push(Frame {
                        function: format!("import \"{module}\""),
                        at,
                    });
                }
                source = module.clone();
                e = inner;
            }
            _ => break,
        }
    }

    let (message, hint) = describe(e, known_functions);
    let mut primary = match e {
        EvalAltResult::ErrorParsing(_, pos) => loc(&source, *pos),
        other => loc(&source, other.position()),
    };
    // Primitive errors have no position of their own: they happened at the last primitive call.
    if primary.is_none() && matches!(e, EvalAltResult::ErrorRuntime(..)) {
        if let Some(call) = last_call {
            let src = call
                .source
                .clone()
                .filter(|s| !s.is_empty())
                .unwrap_or(source.clone());
            primary = loc(&src, call.position);
        }
    }
    // A property a handle does not have: the name is read at the caret (never from rhai's
    // message), and the handles' properties offer the one meant.
    let mut hint = hint;
    if let (EvalAltResult::ErrorDotExpr(..), Some(p), None) = (e, &primary, &hint) {
        let props: Vec<&str> = known_functions
            .iter()
            .filter_map(|f| f.strip_prefix("get$"))
            .collect();
        let at = sources.line(&p.source, p.line).map(|l| {
            l.chars()
                .skip(p.col.saturating_sub(1))
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect::<String>()
        });
        // Only a near miss is a hint: a name some other handle has is not one.
        if let Some(s) = at
            .filter(|name| !props.contains(&name.as_str()))
            .and_then(|name| did_you_mean(&name, props.iter().copied()))
        {
            hint = Some(format!(
                "did you mean `{s}`? (`geusemaker check` finds this before a run)"
            ));
        }
    }
    // The innermost call (usually a primitive) named from the source text at the caret.
    if let Some(p) = &primary {
        if let Some(name) = sources
            .line(&p.source, p.line)
            .and_then(|l| callee_at(&l, p.col))
        {
            frames.push(Frame {
                function: format!("{name}()"),
                at: p.clone(),
            });
        }
    }
    Diagnostic {
        message,
        hint,
        primary,
        frames,
    }
}

/// `ec2::run_instance` from `    let vm = ec2::run_instance(#{…})` at the column of `ec2`.
fn callee_at(line: &str, col: usize) -> Option<String> {
    let chars: Vec<char> = line.chars().collect();
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    let mut start = col.checked_sub(1)?.min(chars.len());
    // Rhai points at the function name; include its `module::` prefix.
    while start > 0 && is_name(chars[start - 1]) {
        start -= 1;
    }
    let name: String = chars[start..].iter().take_while(|c| is_name(**c)).collect();
    let after: String = chars[start + name.chars().count()..].iter().collect();
    (!name.is_empty() && after.trim_start().starts_with('(')).then_some(name)
}

fn describe(e: &EvalAltResult, known: &[String]) -> (String, Option<String>) {
    match e {
        EvalAltResult::ErrorRuntime(value, _) => describe_value(value),
        EvalAltResult::ErrorFunctionNotFound(sig, _) => {
            let name = sig.split(" (").next().unwrap_or(sig).trim();
            let hint = did_you_mean(name, known.iter().map(String::as_str))
                .map(|s| format!("did you mean `{s}`?"))
                .or_else(|| {
                    if name.contains("::") {
                        Some("see docs/primitives.md for the functions each module has".into())
                    } else {
                        None
                    }
                });
            (format!("unknown function `{sig}`"), hint)
        }
        EvalAltResult::ErrorModuleNotFound(m, _) => (
            format!("cannot find module \"{m}\""),
            Some("imports look in the recipe's directory, then the nearest stdlib/ above it, then the bundled stdlib".into()),
        ),
        EvalAltResult::ErrorParsing(p, _) => (format!("syntax error: {p}"), None),
        EvalAltResult::ErrorTooManyOperations(_) => (
            "the recipe ran too many operations (an endless loop?)".into(),
            Some("recipes run in a sandbox with an operations limit; waits belong in primitives like ec2::wait_until_running".into()),
        ),
        EvalAltResult::ErrorStackOverflow(_) => ("calls nested too deeply (endless recursion?)".into(), None),
        EvalAltResult::ErrorDataTooLarge(what, _) => (
            format!(
                "{what} grew past the sandbox's limits (arrays {} items, maps {} entries, strings {} bytes)",
                super::limits::MAX_ARRAY_SIZE,
                super::limits::MAX_MAP_SIZE,
                super::limits::MAX_STRING_SIZE
            ),
            Some("an endless loop? recipes hold far less than this".to_string()),
        ),
        EvalAltResult::ErrorTerminated(_, _) => ("interrupted".into(), None),
        other => {
            let text = other.to_string();
            let text = match text.rfind(" (line ") {
                Some(i) if text.ends_with(')') => text[..i].to_string(),
                _ => text,
            };
            (text, None)
        }
    }
}

/// Errors thrown by primitives are maps (`kind`, `code`, `message`, `hint`, …); a recipe's
/// own `throw "text"` is a string.
fn describe_value(v: &Dynamic) -> (String, Option<String>) {
    if let Some(m) = v.read_lock::<Map>() {
        let get = |k: &str| m.get(k).filter(|v| !v.is_unit()).map(|v| v.to_string());
        let message = get("message").unwrap_or_else(|| v.to_string());
        let hint = get("hint");
        let text = match (
            get("kind").as_deref(),
            get("service"),
            get("operation"),
            get("code"),
        ) {
            (Some("aws"), Some(svc), Some(op), Some(code)) => {
                format!("AWS {svc}:{op} failed: {code}: {message}")
            }
            _ => message,
        };
        return (text, hint);
    }
    (v.to_string(), None)
}

/// Whether what goes to stderr is painted: a terminal that takes colours, and no `NO_COLOR`.
pub fn stderr_color() -> bool {
    console::colors_enabled_stderr() && std::env::var_os("NO_COLOR").is_none()
}

/// The text shown to the user.
pub fn render(d: &Diagnostic, sources: &Sources, color: bool) -> String {
    render_as(d, sources, color, false)
}

/// [`render`], as a warning (`check`'s findings that do not fail it).
pub fn render_warning(d: &Diagnostic, sources: &Sources, color: bool) -> String {
    render_as(d, sources, color, true)
}

fn render_as(d: &Diagnostic, sources: &Sources, color: bool, warning: bool) -> String {
    let paint = |s: Style, t: &str| {
        if color {
            s.apply_to(t).to_string()
        } else {
            t.to_string()
        }
    };
    let blue = Style::new().blue().bold();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {}",
        if warning {
            paint(Style::new().yellow().bold(), "warning:")
        } else {
            paint(Style::new().red().bold(), "error:")
        },
        paint(Style::new().bold(), &d.message)
    );
    if let Some(p) = &d.primary {
        let gutter = p.line.to_string().len();
        let _ = writeln!(
            out,
            "{}{} {p}",
            " ".repeat(gutter),
            paint(blue.clone(), "-->")
        );
        if let Some(line) = sources.line(&p.source, p.line) {
            let bar = paint(blue.clone(), "|");
            let _ = writeln!(out, "{} {bar}", " ".repeat(gutter));
            let _ = writeln!(
                out,
                "{} {bar} {line}",
                paint(blue.clone(), &p.line.to_string())
            );
            // Keep tabs so the caret lines up under the source.
            let lead: String = line
                .chars()
                .take(p.col.saturating_sub(1))
                .map(|c| if c == '\t' { '\t' } else { ' ' })
                .collect();
            let _ = writeln!(
                out,
                "{} {bar} {lead}{}",
                " ".repeat(gutter),
                paint(Style::new().red().bold(), "^")
            );
        }
    }
    if let Some(h) = &d.hint {
        let _ = writeln!(out, "{} {h}", paint(Style::new().cyan().bold(), "hint:"));
    }
    if d.frames.len() > 1 || d.frames.iter().any(|f| Some(&f.at) != d.primary.as_ref()) {
        let _ = writeln!(out, "call stack (outermost first):");
        for f in &d.frames {
            let _ = writeln!(out, "  {}  {}", f.at, f.function);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callee_is_read_at_the_caret() {
        assert_eq!(
            callee_at("let vm = ec2::run_instance(x);", 10).as_deref(),
            Some("ec2::run_instance")
        );
        assert_eq!(callee_at("let vm = x;", 10), None);
        assert_eq!(callee_at("", 3), None);
    }

    #[test]
    fn renders_position_line_and_caret() {
        let sources = Sources::default();
        sources.insert("r.rhai", "let a = 1;\nlet b = oops(a);\n", None);
        let d = Diagnostic {
            message: "unknown function `oops (i64)`".into(),
            hint: Some("did you mean `ops`?".into()),
            primary: Some(Loc {
                source: "r.rhai".into(),
                line: 2,
                col: 9,
            }),
            frames: vec![],
        };
        let text = render(&d, &sources, false);
        assert_eq!(
            text,
            "error: unknown function `oops (i64)`\n --> r.rhai:2:9\n  |\n2 | let b = oops(a);\n  |         ^\nhint: did you mean `ops`?\n"
        );
    }
}
