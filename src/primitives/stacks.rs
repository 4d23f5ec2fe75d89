//! `stacks()` and `stack(name)`: the stacks in the state directory (global functions).

use rhai::plugin::*;
use rhai::{Array, Dynamic, EvalAltResult, Map};

use super::{rt, state_err, usage_err_hint};
use crate::state::{ResourceStatus, StackStore, StateBackend};

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The stack's instance as AWS sees it now: its state, `gone`, or `unknown` (no AWS access).
fn live_instance(rt: &super::Runtime, s: &crate::state::StackState) -> Dynamic {
    let Some(id) = s.outputs.get("instance_id").and_then(|v| v.as_str()) else {
        return Dynamic::UNIT;
    };
    let aws = match rt.aws() {
        Ok(a) if s.region.as_deref().is_none_or(|r| r == a.region) => a,
        _ => return "unknown".into(),
    };
    match aws.ec2.instance(id) {
        Ok(i) => i.state.into(),
        Err(e) if e.is_not_found() => "gone".into(),
        Err(_) => "unknown".into(),
    }
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
    /// Every stack in the state directory: `#{ name, status, region, recipe, resources,
    /// updated_at, instance }` — `instance` is the live state of its instance in AWS
    /// (`running`, `gone`, `unknown` without AWS access, `()` when it has none).
    ///
    /// ```rhai
    /// stacks()
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stacks(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let mut out = Array::new();
        let backend = StateBackend::current().map_err(state_err)?;
        for n in backend.names().map_err(state_err)? {
            if let Some(s) = StackStore::load(&backend, &n).map_err(state_err)? {
                let mut m = super::summary(&s);
                m.insert("instance".into(), super::live_instance(&rt, &s));
                out.push(Dynamic::from_map(m));
            }
        }
        Ok(out)
    }

    /// One stack's state (outputs, ledger, runs, rollbacks) as a map, with `live_instance`
    /// (its instance's state in AWS now); secrets are never in it.
    ///
    /// ```rhai
    /// stack("my-stack").outputs.n8n_url
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stack(ctx: NativeCallContext, name: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        rt(&ctx)?;
        let backend = StateBackend::current().map_err(state_err)?;
        match StackStore::load(&backend, name).map_err(state_err)? {
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
