//! `geusemaker eval '<expr>'`: one expression against the account, with the recipes'
//! primitives, printed as a table or as JSON. No stack: create primitives refuse to run.

use std::sync::Arc;

use rhai::Dynamic;

use super::resolver::Resolver;
use super::session::{Failure, RunError};
use super::sources::Sources;
use super::{build_engine, diag, known_functions};
use crate::cloud::AwsSettings;
use crate::primitives::{value, Params, Runtime};
use crate::state::Home;
use crate::ui::Ui;

/// Evaluate `expr`; returns what to print on stdout.
pub fn eval(expr: &str, json: bool, aws: AwsSettings) -> Result<String, RunError> {
    const NAME: &str = "<eval>";
    let home = Home::from_env()?;
    let ui = Ui::detect(false).with_stdout_reserved();
    let sources = Arc::new(Sources::default());
    sources.insert(NAME, expr, None);
    let cwd = std::env::current_dir().ok();
    let mut engine = build_engine(
        ui.clone(),
        Some(Resolver::new(cwd.as_deref(), sources.clone())),
    );
    let mut ast = engine.compile(expr).map_err(|e| {
        RunError::from(Failure::recipe(diag::from_parse(&e, NAME), sources.clone()))
    })?;
    ast.set_source(NAME);
    let run_id = format!("eval-{:06x}", rand::random::<u32>() & 0xff_ffff);
    let runtime = Arc::new(
        Runtime::new(
            "eval",
            &run_id,
            NAME,
            home,
            ui,
            Params::default(),
            aws,
            None,
        )
        .map_err(|e| RunError::failed(format!("cannot start the async runtime: {e}")))?,
    );
    crate::interrupt::listen();
    engine.set_default_tag(Dynamic::from(runtime.clone()));
    let result = engine.eval_ast::<Dynamic>(&ast);
    engine.set_default_tag(Dynamic::UNIT);
    match result {
        Ok(v) if json => {
            Ok(serde_json::to_string_pretty(&value::to_json(&v)).expect("JSON serializes") + "\n")
        }
        Ok(v) if v.is_unit() => Ok(String::new()),
        Ok(v) => Ok(value::render(&v) + "\n"),
        Err(_) if runtime.preflight_failed().is_some() => Err(RunError::Preflight(
            runtime.preflight_failed().expect("checked"),
        )),
        Err(e) => {
            let known = known_functions(&engine, Some(&ast));
            let last = runtime.last_call();
            Err(RunError::from(Failure::recipe(
                diag::from_eval(&e, NAME, &sources, &known, last.as_ref()),
                sources.clone(),
            )))
        }
    }
}
