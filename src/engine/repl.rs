//! `geusemaker repl`: explore an AWS account, and prototype a recipe, with the same primitives.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rhai::{Dynamic, Engine, Scope, AST};
use rustyline::completion::{Completer, Pair};
use rustyline::error::ReadlineError;
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Editor, Helper};

use super::resolver::Resolver;
use super::session::RunError;
use super::sources::Sources;
use super::{build_engine, diag, known_functions};
use crate::cloud::AwsSettings;
use crate::primitives::{value, Params, Runtime, AREAS};
use crate::state::{Home, StackStore};
use crate::ui::Ui;

const META: &[(&str, &str)] = &[
    (
        ":help",
        ":help [name] — this list, or the documentation of a function",
    ),
    (
        ":functions",
        ":functions [module] — the modules, or a module's functions",
    ),
    (":vars", ":vars — the variables of this session"),
    (":load", ":load FILE — run a .rhai file in this session"),
    (
        ":save",
        ":save FILE — write this session's statements as a recipe",
    ),
    (":region", ":region — the AWS region in use"),
    (":quit", ":quit — leave (Ctrl-D too)"),
];

/// What completion knows: function names, and each variable's properties.
#[derive(Default)]
pub struct Completions {
    functions: Vec<String>,
    vars: Vec<(String, Vec<String>)>,
}

impl Completions {
    /// Candidates for the word that ends at `pos`: `(start, candidates)`.
    pub fn complete(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let head = &line[..pos];
        let start = head
            .rfind(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':' || c == '.'))
            .map(|i| i + 1)
            .unwrap_or(0);
        let word = &head[start..];
        if start == 0 && line.starts_with(':') {
            let c = META
                .iter()
                .map(|(m, _)| m.to_string())
                .filter(|m| m.starts_with(word))
                .collect();
            return (0, c);
        }
        if let Some((base, prefix)) = word.rsplit_once('.') {
            let props = self
                .vars
                .iter()
                .find(|(n, _)| n == base)
                .map(|(_, p)| p.clone())
                .unwrap_or_default();
            let c = props
                .into_iter()
                .filter(|p| p.starts_with(prefix))
                .collect();
            return (pos - prefix.len(), c);
        }
        let mut c: BTreeSet<String> = BTreeSet::new();
        for f in &self.functions {
            if f.starts_with(word) {
                c.insert(f.clone());
            }
            if let Some((module, _)) = f.split_once("::") {
                let m = format!("{module}::");
                if m.starts_with(word) && !word.contains("::") {
                    c.insert(m);
                }
            }
        }
        for (v, _) in &self.vars {
            if v.starts_with(word) {
                c.insert(v.clone());
            }
        }
        (start, c.into_iter().collect())
    }
}

struct ReplHelper(Arc<Mutex<Completions>>);

impl Completer for ReplHelper {
    type Candidate = Pair;
    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, c) = self.0.lock().unwrap().complete(line, pos);
        Ok((
            start,
            c.into_iter()
                .map(|s| Pair {
                    display: s.clone(),
                    replacement: s,
                })
                .collect(),
        ))
    }
}
impl Hinter for ReplHelper {
    type Hint = String;
}
impl Highlighter for ReplHelper {}
impl Validator for ReplHelper {}
impl Helper for ReplHelper {}

/// More to read before the input is complete: open brackets, or an unterminated string.
pub fn needs_more(text: &str) -> bool {
    let mut depth = 0i32;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in text.chars() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '"' | '`' => quote = Some(c),
            '(' | '[' | '{' => depth += 1,
            ')' | ']' | '}' => depth -= 1,
            _ => {}
        }
    }
    depth > 0 || quote.is_some()
}

/// The session: engine, scope, what was typed.
struct Repl {
    engine: Engine,
    scope: Scope<'static>,
    sources: Arc<Sources>,
    runtime: Arc<Runtime>,
    imports: Vec<String>,
    statements: Vec<String>,
    completions: Arc<Mutex<Completions>>,
    counter: usize,
    color: bool,
}

impl Repl {
    fn compile(&mut self, text: &str) -> Result<(AST, String), String> {
        self.counter += 1;
        let name = format!("<repl:{}>", self.counter);
        let full = format!(
            "{}{text}",
            self.imports
                .iter()
                .map(|i| format!("{i}\n"))
                .collect::<String>()
        );
        self.sources.insert(&name, &full, None);
        let mut ast = self
            .engine
            .compile_with_scope(&self.scope, &full)
            .map_err(|e| diag::render(&diag::from_parse(&e, &name), &self.sources, self.color))?;
        ast.set_source(name.as_str());
        Ok((ast, name))
    }

    /// Run one complete input; prints its value or its error. Never ends the session.
    fn run(&mut self, text: &str) -> bool {
        let (ast, name) = match self.compile(text) {
            Ok(x) => x,
            Err(e) => {
                eprint!("{e}");
                return false;
            }
        };
        let result = self
            .engine
            .eval_ast_with_scope::<Dynamic>(&mut self.scope, &ast);
        crate::interrupt::reset();
        match result {
            Ok(v) => {
                if !v.is_unit() {
                    println!("{}", value::render(&v));
                }
                let trimmed = text.trim();
                if trimmed.starts_with("import ") {
                    self.imports.push(trimmed.to_string());
                } else if trimmed.ends_with(';') || trimmed.ends_with('}') {
                    self.statements.push(trimmed.to_string());
                }
                self.refresh_completions();
                true
            }
            Err(e) => {
                let known = known_functions(&self.engine, Some(&ast));
                let last = self.runtime.last_call();
                eprint!(
                    "{}",
                    diag::render(
                        &diag::from_eval(&e, &name, &self.sources, &known, last.as_ref()),
                        &self.sources,
                        self.color
                    )
                );
                false
            }
        }
    }

    fn refresh_completions(&self) {
        let vars = self
            .scope
            .iter()
            .map(|(n, _, v)| {
                let props = match value::to_json(&v) {
                    serde_json::Value::Object(o) => o.keys().cloned().collect(),
                    _ => Vec::new(),
                };
                (n.to_string(), props)
            })
            .collect();
        self.completions.lock().unwrap().vars = vars;
    }

    fn meta(&mut self, line: &str) -> bool {
        let mut words = line.split_whitespace();
        let cmd = words.next().unwrap_or("");
        let arg = words.next();
        match cmd {
            ":quit" | ":q" | ":exit" => return false,
            ":help" => match arg {
                None => {
                    println!("Type Rhai statements or expressions; lists print as tables.");
                    for (_, h) in META {
                        println!("  {h}");
                    }
                }
                Some(name) => println!("{}", help_for(&self.engine, name)),
            },
            ":functions" => {
                let all = known_functions(&self.engine, None);
                match arg {
                    None => {
                        for area in AREAS {
                            println!("  {}::  {}", area.name, area.doc);
                        }
                    }
                    Some(m) => {
                        let m = m.trim_end_matches(':');
                        for f in all.iter().filter(|f| f.starts_with(&format!("{m}::"))) {
                            println!("  {f}");
                        }
                    }
                }
            }
            ":vars" => {
                for (n, constant, v) in self.scope.iter() {
                    let kind = if constant { "const" } else { "let" };
                    let shown = serde_json::to_string(&value::to_json(&v)).unwrap_or_default();
                    let shown = if shown.len() > 70 {
                        format!("{}…", &shown[..70])
                    } else {
                        shown
                    };
                    println!(
                        "  {kind} {n}: {} = {shown}",
                        v.type_name().rsplit("::").next().unwrap_or("")
                    );
                }
            }
            ":region" => match self.runtime.region() {
                Ok(r) => println!("{r}"),
                Err(_) => eprintln!("no region: pass --region or set AWS_REGION"),
            },
            ":load" => match arg.map(|p| std::fs::read_to_string(p).map(|t| (p, t))) {
                Some(Ok((p, text))) => {
                    if self.run(&text) {
                        println!("loaded {p}");
                    }
                }
                Some(Err(e)) => eprintln!("cannot read: {e}"),
                None => eprintln!("usage: :load FILE"),
            },
            ":save" => match arg {
                Some(p) => match save(Path::new(p), &self.imports, &self.statements) {
                    Ok(n) => println!(
                        "wrote {p} ({n} statements); run it with `geusemaker run {p} --name STACK`"
                    ),
                    Err(e) => eprintln!("cannot write {p}: {e}"),
                },
                None => eprintln!("usage: :save FILE"),
            },
            other => {
                let names: Vec<&str> = META.iter().map(|(m, _)| *m).collect();
                match crate::suggest::did_you_mean(other, names.iter().copied()) {
                    Some(s) => eprintln!("unknown command {other}; did you mean {s}?"),
                    None => eprintln!("unknown command {other}; :help lists them"),
                }
            }
        }
        true
    }
}

/// The documentation of functions named `name` (with or without module).
fn help_for(engine: &Engine, name: &str) -> String {
    let meta: serde_json::Value = match engine
        .gen_fn_metadata_to_json(false)
        .ok()
        .and_then(|j| serde_json::from_str(&j).ok())
    {
        Some(m) => m,
        None => return "no documentation available".into(),
    };
    let (module, fname) = name
        .split_once("::")
        .map(|(m, f)| (Some(m), f))
        .unwrap_or((None, name));
    let funcs: Vec<&serde_json::Value> = match module {
        Some(m) => meta["modules"][m]["functions"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
        None => meta["functions"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default(),
    };
    let mut out = String::new();
    for f in funcs.iter().filter(|f| f["name"] == fname) {
        out.push_str(&super::docs::signature(f, module));
        out.push('\n');
        for block in f["docComments"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|d| d.as_str())
        {
            for l in block.lines() {
                let l = l.trim_start().trim_start_matches("///");
                out.push_str(&format!("  {}\n", l.strip_prefix(' ').unwrap_or(l)));
            }
        }
    }
    if out.is_empty() {
        format!("no function `{name}`; :functions lists the modules")
    } else {
        out.trim_end().to_string()
    }
}

/// Write the session as a recipe.
pub fn save(path: &Path, imports: &[String], statements: &[String]) -> std::io::Result<usize> {
    let mut text = String::from("// Saved from `geusemaker repl`.\n\n");
    for i in imports {
        text.push_str(i);
        text.push('\n');
    }
    if !imports.is_empty() {
        text.push('\n');
    }
    for s in statements {
        text.push_str(s);
        text.push('\n');
    }
    std::fs::write(path, text)?;
    Ok(statements.len())
}

/// What `geusemaker repl` was asked for.
pub struct ReplOptions {
    pub aws: AwsSettings,
    /// With a stack, create primitives work (and the stack is locked while the session lasts).
    pub stack: Option<String>,
}

pub fn repl(opts: ReplOptions) -> Result<(), RunError> {
    let color = console::colors_enabled_stderr() && std::env::var_os("NO_COLOR").is_none();
    let home = Home::from_env()?;
    let ui = Ui::detect(false);
    let run_id = format!("repl-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let store = match &opts.stack {
        Some(s) => Some(StackStore::open(
            &crate::state::StateBackend::current()?,
            s,
            &run_id,
            "repl",
        )?),
        None => None,
    };
    let sources = Arc::new(Sources::default());
    let cwd = std::env::current_dir().ok();
    let mut engine = build_engine(
        ui.clone(),
        Some(Resolver::new(cwd.as_deref(), sources.clone())),
    );
    let stack_name = opts.stack.clone().unwrap_or_else(|| "repl".into());
    let runtime = Arc::new(
        Runtime::new(
            &stack_name,
            &run_id,
            "<repl>",
            home.clone(),
            ui,
            Params::default(),
            opts.aws,
            store,
        )
        .map_err(|e| RunError::failed(format!("cannot start the async runtime: {e}")))?,
    );
    crate::interrupt::listen();
    engine.set_default_tag(Dynamic::from(runtime.clone()));
    let completions = Arc::new(Mutex::new(Completions {
        functions: known_functions(&engine, None),
        vars: Vec::new(),
    }));

    let mut editor: Editor<ReplHelper, rustyline::history::DefaultHistory> = Editor::new()
        .map_err(|e| RunError::failed(format!("cannot start the line editor: {e}")))?;
    editor.set_helper(Some(ReplHelper(completions.clone())));
    let history: PathBuf = home.root().join("repl_history");
    let _ = home.ensure();
    let _ = editor.load_history(&history);

    let mut repl = Repl {
        engine,
        scope: Scope::new(),
        sources,
        runtime,
        imports: Vec::new(),
        statements: Vec::new(),
        completions,
        counter: 0,
        color,
    };
    println!(
        "geusemaker repl {} — {}. :help for commands, Tab completes, Ctrl-D leaves.",
        env!("CARGO_PKG_VERSION"),
        match &opts.stack {
            Some(s) => format!("stack {s} (creates are recorded in its ledger)"),
            None => "no stack: read-only exploration (repl --name STACK to create resources)"
                .to_string(),
        }
    );
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "gm> " } else { "... " };
        match editor.readline(prompt) {
            Ok(line) => {
                if buffer.is_empty() && line.trim().is_empty() {
                    continue;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if needs_more(&buffer) {
                    continue;
                }
                let input = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(input.trim_end());
                let trimmed = input.trim();
                if trimmed.starts_with(':') {
                    if !repl.meta(trimmed) {
                        break;
                    }
                } else {
                    repl.run(trimmed);
                }
            }
            // Ctrl-C at the prompt cancels the line being typed.
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                crate::interrupt::reset();
            }
            Err(ReadlineError::Eof) => break,
            Err(e) => return Err(RunError::failed(e.to_string())),
        }
    }
    let _ = editor.save_history(&history);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_line_input_waits_for_balanced_brackets_and_strings() {
        assert!(needs_more("let m = #{\n"));
        assert!(needs_more("f(1,\n"));
        assert!(needs_more("let s = `multi\n"));
        assert!(!needs_more("let m = #{ a: \"}\" };\n"));
        assert!(!needs_more("ec2::vpcs()\n"));
    }

    #[test]
    fn completion_of_modules_functions_vars_and_properties() {
        let c = Completions {
            functions: vec![
                "ec2::default_vpc".into(),
                "ec2::delete_volume".into(),
                "efs::file_system".into(),
                "stacks".into(),
            ],
            vars: vec![(
                "vpc".into(),
                vec!["id".into(), "cidr".into(), "is_default".into()],
            )],
        };
        assert_eq!(
            c.complete("ec", 2),
            (
                0,
                vec![
                    "ec2::".to_string(),
                    "ec2::default_vpc".into(),
                    "ec2::delete_volume".into()
                ]
            )
        );
        assert_eq!(
            c.complete("let x = ec2::de", 15).1,
            ["ec2::default_vpc", "ec2::delete_volume"]
        );
        assert_eq!(
            c.complete("print(vpc.ci", 12),
            (10, vec!["cidr".to_string()])
        );
        assert_eq!(c.complete("v", 1).1, ["vpc"]);
        assert_eq!(c.complete(":fu", 3).1, [":functions"]);
    }
}
