//! `geusemaker check <recipe>`: everything that can be known without running a recipe —
//! its header, its syntax and that of every module it imports, calls to functions that do not
//! exist or with the wrong number of arguments, and params read but not declared — each
//! positioned like a compiler error. Exit status 1 when there is an error (for CI).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use rhai::{Expr, Position, AST};

use super::diag::{self, Diagnostic, Loc};
use super::meta::{self, RecipeMeta};
use super::resolver::Resolver;
use super::session::{load_recipe, RunError};
use super::sources::Sources;
use super::{build_engine, embedded, scan};
use crate::suggest::did_you_mean;
use crate::ui::Ui;

/// How bad a finding is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem, positioned.
#[derive(Debug, Clone)]
pub struct Finding {
    pub severity: Severity,
    pub diag: Diagnostic,
}

/// What `check` found.
pub struct Report {
    pub findings: Vec<Finding>,
    pub files: Vec<String>,
    pub sources: Arc<Sources>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .count()
    }
}

/// Functions script code can call: `namespace` ("" for global) → name → arities.
#[derive(Default)]
struct Known {
    fns: BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>,
    /// `ns::name` → its signatures, for hints.
    signatures: BTreeMap<String, Vec<String>>,
}

/// Parameters in a signature like `ec2::run_instance(name: &str, options: Map) -> Instance`.
fn arity(signature: &str) -> Option<usize> {
    let open = signature.find('(')?;
    let mut depth = 0i32;
    let mut count = 0usize;
    let mut any = false;
    for c in signature[open + 1..].chars() {
        match c {
            '(' | '<' | '[' => depth += 1,
            '>' | ']' => depth -= 1,
            ')' if depth == 0 => break,
            ')' => depth -= 1,
            ',' if depth == 0 => count += 1,
            c if !c.is_whitespace() => any = true,
            _ => {}
        }
    }
    Some(if any { count + 1 } else { 0 })
}

impl Known {
    fn from_engine(engine: &rhai::Engine) -> Known {
        let mut k = Known::default();
        for sig in engine.gen_fn_signatures(true) {
            let Some(head) = sig.split('(').next() else {
                continue;
            };
            let (ns, name) = head.trim().rsplit_once("::").unwrap_or(("", head.trim()));
            let Some(n) = arity(&sig) else { continue };
            k.signatures
                .entry(head.trim().to_string())
                .or_default()
                .push(sig.clone());
            k.fns
                .entry(ns.to_string())
                .or_default()
                .entry(name.to_string())
                .or_default()
                .insert(n);
        }
        k
    }
}

/// Functions a script defines: name → arities.
fn script_fns(ast: &AST) -> BTreeMap<String, BTreeSet<usize>> {
    let mut m: BTreeMap<String, BTreeSet<usize>> = BTreeMap::new();
    for f in ast.iter_functions() {
        m.entry(f.name.to_string())
            .or_default()
            .insert(f.params.len());
    }
    m
}

/// Built-ins the parser handles itself (not in the function metadata).
const KEYWORD_FNS: &[&str] = &[
    "type_of",
    "print",
    "debug",
    "Fn",
    "call",
    "curry",
    "is_def_fn",
    "is_def_var",
    "is_shared",
    "eval",
    "throw",
];

struct Checker {
    known: Known,
    /// Handle types and their properties (`vm.public_ipp` is caught here).
    schema: super::schema::Schema,
    sources: Arc<Sources>,
    resolver: Resolver,
    findings: Vec<Finding>,
    /// Display names already checked, with their functions.
    modules: BTreeMap<String, BTreeMap<String, BTreeSet<usize>>>,
    files: Vec<String>,
}

fn loc(source: &str, pos: Position) -> Option<Loc> {
    Some(Loc {
        source: source.to_string(),
        line: pos.line()?,
        col: pos.position().unwrap_or(1),
    })
}

impl Checker {
    fn push(
        &mut self,
        severity: Severity,
        source: &str,
        pos: Position,
        message: String,
        hint: Option<String>,
    ) {
        self.findings.push(Finding {
            severity,
            diag: Diagnostic {
                message,
                hint,
                primary: loc(source, pos),
                frames: Vec::new(),
            },
        });
    }

    /// A variable used where no `let` made it: a run's compile refuses it (the engine is
    /// strict about variables), so check does too. Only the first one is found.
    fn undefined_variable(&mut self, display: &str, text: &str) {
        let mut strict = super::parser();
        strict.set_strict_variables(true);
        // The namespaces a run knows (unknown ones are reported with their functions).
        for area in crate::primitives::AREAS {
            strict.register_static_module(area.name, rhai::Module::new().into());
        }
        if let Err(e) = strict.compile(text) {
            if let rhai::ParseErrorType::VariableUndefined(name) = e.err_type() {
                self.push(
                    Severity::Error,
                    display,
                    e.position(),
                    format!("undefined variable `{name}`"),
                    Some(format!("give it a value first (`let {name} = …;`); a function sees only its parameters")),
                );
            }
        }
    }

    /// Compile one file and everything it imports; returns its AST.
    fn file(&mut self, display: &str, text: &str) -> Option<AST> {
        self.files.push(display.to_string());
        let engine = super::parser();
        let mut ast = match engine.compile(text) {
            Ok(a) => a,
            Err(e) => {
                self.findings.push(Finding {
                    severity: Severity::Error,
                    diag: diag::from_parse(&e, display),
                });
                return None;
            }
        };
        ast.set_source(display);
        self.modules.insert(display.to_string(), script_fns(&ast));
        self.undefined_variable(display, text);

        // Imports: each must resolve and compile; remember alias → module functions.
        let mut aliases: BTreeMap<String, String> = BTreeMap::new();
        for scan::Import { path, alias, pos } in scan::imports(&ast) {
            match self.resolver.find(Some(display), &path) {
                Err(e) => self.push(Severity::Error, display, pos, e.message(), e.hint()),
                Ok(Some((name, mtext, file))) => {
                    if !self.modules.contains_key(&name) {
                        self.sources.insert(&name, &mtext, file);
                        self.file(&name, &mtext);
                    }
                    aliases.insert(alias, name);
                }
                Ok(None) => {
                    let stdlib: Vec<&str> = embedded::STDLIB.iter().map(|(n, _)| *n).collect();
                    let hint = match did_you_mean(&path, stdlib.iter().copied()) {
                        Some(s) => format!("did you mean \"{s}\"?"),
                        None => format!("modules come from the recipe's directory, a stdlib/ directory above it, or the bundled stdlib ({})", stdlib.join(", ")),
                    };
                    self.push(
                        Severity::Error,
                        display,
                        pos,
                        format!("no module \"{path}\" to import"),
                        Some(hint),
                    );
                }
            }
        }

        // Calls.
        let own = script_fns(&ast);
        for (call, pos) in scan::calls(&ast) {
            if call.is_operator_call()
                || !call
                    .name
                    .chars()
                    .next()
                    .is_some_and(|c| c.is_alphabetic() || c == '_')
            {
                continue;
            }
            let name = call.name.to_string();
            let n = call.args.len();
            if call.namespace.is_empty() {
                let known_here = own
                    .get(&name)
                    .or_else(|| self.known.fns.get("").and_then(|g| g.get(&name)));
                match known_here {
                    Some(arities) if arities.contains(&n) => {}
                    Some(arities) => {
                        let want: Vec<String> = arities.iter().map(|a| a.to_string()).collect();
                        self.push(
                            Severity::Error,
                            display,
                            pos,
                            format!("`{name}` takes {} argument(s), not {n}", want.join(" or ")),
                            None,
                        );
                    }
                    None if KEYWORD_FNS.contains(&name.as_str()) => {}
                    None => {
                        let candidates: Vec<&str> = own
                            .keys()
                            .map(String::as_str)
                            .chain(
                                self.known
                                    .fns
                                    .get("")
                                    .into_iter()
                                    .flat_map(|g| g.keys().map(String::as_str)),
                            )
                            .collect();
                        let hint =
                            did_you_mean(&name, candidates).map(|s| format!("did you mean `{s}`?"));
                        self.push(
                            Severity::Error,
                            display,
                            pos,
                            format!("unknown function `{name}`"),
                            hint,
                        );
                    }
                }
                continue;
            }
            let pos = call.namespace.position();
            let ns = call.namespace.root().to_string();
            let qualified = format!("{ns}::{name}");
            let (fns, what) = if let Some(module) = aliases.get(&ns) {
                (
                    self.modules.get(module).cloned(),
                    format!("module `{ns}` ({module})"),
                )
            } else if let Some(fns) = self.known.fns.get(&ns) {
                (Some(fns.clone()), format!("`{ns}::`"))
            } else {
                let mut names: Vec<String> = aliases.keys().cloned().collect();
                names.extend(self.known.fns.keys().filter(|k| !k.is_empty()).cloned());
                let hint = did_you_mean(&ns, names.iter().map(String::as_str))
                    .map(|s| format!("did you mean `{s}::`?"))
                    .or_else(|| Some(format!("import it first: import \"{ns}\" as {ns};")));
                self.push(
                    Severity::Error,
                    display,
                    pos,
                    format!("unknown module `{ns}` in `{qualified}`"),
                    hint,
                );
                continue;
            };
            let Some(fns) = fns else { continue };
            match fns.get(&name) {
                Some(arities) if arities.contains(&n) => {}
                Some(arities) => {
                    let want: Vec<String> = arities.iter().map(|a| a.to_string()).collect();
                    self.push(
                        Severity::Error,
                        display,
                        pos,
                        format!(
                            "`{qualified}` takes {} argument(s), not {n}",
                            want.join(" or ")
                        ),
                        Some(match self.known.signatures.get(&qualified) {
                            Some(sigs) => sigs.join("; "),
                            None => format!("see the definition of {qualified}"),
                        }),
                    );
                }
                None => {
                    let hint = did_you_mean(&name, fns.keys().map(String::as_str))
                        .map(|s| format!("did you mean `{ns}::{s}`?"));
                    self.push(
                        Severity::Error,
                        display,
                        pos,
                        format!("{what} has no function `{name}`"),
                        hint,
                    );
                }
            }
        }

        // Properties of the handles primitives return.
        let alias_names: BTreeSet<String> = aliases.keys().cloned().collect();
        for b in super::schema::bad_properties(&self.schema, &ast, &alias_names) {
            self.push(Severity::Error, display, b.pos, b.message, Some(b.hint));
        }
        Some(ast)
    }
}

/// What `check` calls the map `params()` returns, in its findings.
const PARAMS_TYPE: &str = "params()";

/// Where the recipe calls `params()` (every declared param read at once).
fn params_calls(ast: &AST) -> Vec<Position> {
    if ast.iter_functions().any(|f| f.name == "params") {
        return Vec::new(); // the recipe's own `params`
    }
    scan::calls(ast)
        .into_iter()
        .filter(|(c, _)| c.name == "params" && c.namespace.is_empty() && c.args.is_empty())
        .map(|(_, pos)| pos)
        .collect()
}

/// `param("x", …)` calls: name, whether a default is given, and where.
fn param_calls(ast: &AST) -> Vec<(String, usize, Position)> {
    scan::calls(ast)
        .into_iter()
        .filter(|(c, _)| c.name == "param" && c.namespace.is_empty())
        .filter_map(|(c, pos)| match c.args.first() {
            Some(Expr::StringConstant(s, _)) => Some((s.to_string(), c.args.len(), pos)),
            _ => None,
        })
        .collect()
}

fn params(checker: &mut Checker, display: &str, ast: &AST, meta: Option<&RecipeMeta>) {
    let used = param_calls(ast);
    let all_at_once = params_calls(ast);
    let Some(m) = meta else {
        if let Some(pos) = all_at_once.first() {
            checker.push(
                Severity::Error,
                display,
                *pos,
                "params() reads the params a recipe header declares, and this recipe has none"
                    .into(),
                Some(
                    "add `//! [recipe]` and `//! [params]` lines at the top (docs/recipes.md), or read each with param(\"name\", default)"
                        .into(),
                ),
            );
        }
        if !used.is_empty() {
            checker.push(
                Severity::Warning,
                display,
                Position::new(1, 1),
                "no recipe header: its params are not declared, so --set is checked by name only"
                    .into(),
                Some(
                    "add `//! [recipe]` and `//! [params]` lines at the top (docs/recipes.md)"
                        .into(),
                ),
            );
        }
        return;
    };
    for (name, nargs, pos) in &used {
        match m.param(name) {
            None => {
                let hint = did_you_mean(name, m.params.iter().map(|p| p.name.as_str()))
                    .map(|s| format!("did you mean `{s}`?"))
                    .or_else(|| Some(format!("declare it in the header: //! {name} = {{ type = \"string\", default = \"\", help = \"…\" }}")));
                checker.push(
                    Severity::Error,
                    display,
                    *pos,
                    format!("param `{name}` is not declared in the recipe header"),
                    hint,
                );
            }
            Some(_) if *nargs > 1 => checker.push(
                Severity::Warning,
                display,
                *pos,
                format!(
                    "param `{name}` has its default in the header; the one given here is ignored"
                ),
                Some(format!("write param(\"{name}\")")),
            ),
            Some(_) => {}
        }
    }
    for p in &m.params {
        if all_at_once.is_empty() && !used.iter().any(|(n, _, _)| n == &p.name) {
            checker.push(
                Severity::Warning,
                display,
                Position::new(p.line as u16, 5),
                format!("param `{}` is declared but never read", p.name),
                None,
            );
        }
    }
}

/// Check `recipe` (a file or a bundled name).
pub fn check(recipe: &str) -> Result<Report, RunError> {
    let loaded = load_recipe(recipe)?;
    let sources = Arc::new(Sources::default());
    sources.insert(&loaded.display, &loaded.text, loaded.path.clone());
    let engine = build_engine(Ui::detect(true), None);
    let mut checker = Checker {
        known: Known::from_engine(&engine),
        schema: super::schema::Schema::from_engine(&engine),
        sources: sources.clone(),
        resolver: Resolver::new(loaded.dir.as_deref(), sources.clone()),
        findings: Vec::new(),
        modules: BTreeMap::new(),
        files: Vec::new(),
    };
    let header = match meta::parse(&loaded.text) {
        Ok(m) => m,
        Err(e) => {
            checker.findings.push(Finding {
                severity: Severity::Error,
                diag: Diagnostic {
                    message: e.message,
                    hint: None,
                    primary: Some(Loc {
                        source: loaded.display.clone(),
                        line: e.line,
                        col: e.col,
                    }),
                    frames: Vec::new(),
                },
            });
            None
        }
    };
    let header_failed = !checker.findings.is_empty();
    if let Some(m) = &header {
        // `params()` returns the header's params: reading one it does not declare is an error.
        checker.schema.props.insert(
            PARAMS_TYPE.into(),
            m.params.iter().map(|p| p.name.clone()).collect(),
        );
        checker
            .schema
            .returns
            .insert((String::new(), "params".into(), 0), PARAMS_TYPE.into());
    }
    if let Some(ast) = checker.file(&loaded.display, &loaded.text) {
        if !header_failed {
            params(&mut checker, &loaded.display, &ast, header.as_ref());
        }
    }
    Ok(Report {
        findings: checker.findings,
        files: checker.files,
        sources,
    })
}

/// `geusemaker check <recipe>…`: print the findings; the exit code is 1 on any error.
pub fn run(recipes: &[String]) -> Result<(), RunError> {
    let color = console::colors_enabled_stderr() && std::env::var_os("NO_COLOR").is_none();
    let mut failed = 0;
    for r in recipes {
        let report = check(r)?;
        for f in &report.findings {
            let text = match f.severity {
                Severity::Error => diag::render(&f.diag, &report.sources, color),
                Severity::Warning => diag::render_warning(&f.diag, &report.sources, color),
            };
            eprint!("{text}");
        }
        let warnings = report.findings.len() - report.errors();
        let summary = format!(
            "{}: {} ({} file{} checked{})",
            report.files.first().map(String::as_str).unwrap_or(r),
            if report.errors() == 0 {
                "ok".to_string()
            } else {
                format!("{} error(s)", report.errors())
            },
            report.files.len(),
            if report.files.len() == 1 { "" } else { "s" },
            if warnings > 0 {
                format!(", {warnings} warning(s)")
            } else {
                String::new()
            }
        );
        if report.errors() == 0 {
            println!("{summary}");
        } else {
            eprintln!("{summary}");
            failed += 1;
        }
    }
    if failed > 0 {
        return Err(RunError::failed(format!(
            "{failed} of {} recipe(s) have errors",
            recipes.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arity_is_read_from_signatures() {
        assert_eq!(
            arity("ec2::run_instance(name: &str, options: Map) -> Instance"),
            Some(2)
        );
        assert_eq!(arity("ec2::default_vpc() -> Vpc"), Some(0));
        assert_eq!(arity("f(a: Array, b: HashMap<String, i64>) -> ()"), Some(2));
        assert_eq!(arity("no parens"), None);
    }

    #[test]
    fn every_bundled_recipe_checks_clean() {
        for (name, _) in embedded::RECIPES {
            let r = check(name).unwrap();
            let errors: Vec<String> = r
                .findings
                .iter()
                .map(|f| {
                    format!(
                        "{:?} {} at {:?}",
                        f.severity, f.diag.message, f.diag.primary
                    )
                })
                .collect();
            assert!(errors.is_empty(), "{name}: {errors:#?}");
        }
        let dev = check("dev").unwrap();
        assert!(
            dev.files
                .contains(&"<bundled>/stdlib/tier.rhai".to_string()),
            "{:?}",
            dev.files
        );
    }
}
