//! `stacks()` and `stack(name)`: the stacks in the state directory (global functions).

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::{rt, state_err, usage_err_hint};
use crate::state::{ResourceStatus, StackStore};

pub fn module() -> rhai::Module {
    exported_module!(api)
}

fn summary(s: &crate::state::StackState) -> Map {
    let mut m = Map::new();
    m.insert("name".into(), s.stack.clone().into());
    m.insert("status".into(), s.status.as_str().into());
    m.insert(
        "region".into(),
        s.region.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    m.insert(
        "recipe".into(),
        s.recipe.clone().map(Dynamic::from).unwrap_or(Dynamic::UNIT),
    );
    let live = s
        .resources
        .iter()
        .filter(|r| r.status == ResourceStatus::Created)
        .count() as i64;
    m.insert("resources".into(), live.into());
    m.insert("updated_at".into(), s.updated_at.to_rfc3339().into());
    m
}

#[export_module]
pub mod api {
    /// Every stack in the state directory: `#{ name, status, region, recipe, resources, updated_at }`.
    ///
    /// ```rhai
    /// stacks()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stacks(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let mut names: Vec<String> = std::fs::read_dir(rt.home.stacks_dir())
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                let stem = p.file_stem()?.to_string_lossy().to_string();
                (p.extension()? == "json").then_some(stem)
            })
            .collect();
        names.sort();
        let mut out = Array::new();
        for n in names {
            if let Some(s) = StackStore::load(&rt.home, &n).map_err(state_err)? {
                out.push(Dynamic::from_map(super::summary(&s)));
            }
        }
        Ok(out)
    }

    /// One stack's state (outputs, ledger, runs, rollbacks) as a map; secrets are never in it.
    ///
    /// ```rhai
    /// stack("my-stack").outputs.n8n_url
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stack(ctx: NativeCallContext, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        match StackStore::load(&rt.home, name).map_err(state_err)? {
            Some(s) => rhai::serde::to_dynamic(&s).map_err(|e| {
                usage_err_hint(
                    e.to_string(),
                    "the state file may be from a newer geusemaker",
                )
            }),
            None => Err(usage_err_hint(
                format!("no stack named `{name}`"),
                "stacks() lists the known ones",
            )),
        }
    }
}
