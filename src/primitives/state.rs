//! `state::` — values kept with the stack, outputs, status, and the resource ledger.

use rhai::plugin::*;
use rhai::{Array, Dynamic, Engine, EvalAltResult, Map};

use super::opts::{decode, keys};
use super::ssm::Secret;
use super::{rt, state_err, usage_err, usage_err_hint, OptionKeys};
use crate::state::{HealthySnapshot, RollbackRecord, RollbackTrigger, StackStatus, StateError};

pub fn types(_engine: &mut Engine) {}

pub fn module() -> rhai::Module {
    exported_module!(api)
}

/// The functions whose options are decoded into a struct (listed in the reference).
pub const OPTIONS: &[OptionKeys] = &[OptionKeys {
    function: "applied",
    keys: keys::<AppliedOptions>,
}];

/// Only plain data goes into the state file, and never a secret.
fn to_json(func: &str, key: &str, v: &Dynamic) -> Result<serde_json::Value, Box<EvalAltResult>> {
    fn check(func: &str, key: &str, v: &Dynamic) -> Result<(), Box<EvalAltResult>> {
        if v.is::<Secret>() {
            return Err(state_err(StateError::SecretValue {
                key: key.to_string(),
            }));
        }
        if let Some(a) = v.read_lock::<Array>() {
            return a.iter().try_for_each(|x| check(func, key, x));
        }
        if let Some(m) = v.read_lock::<Map>() {
            return m.values().try_for_each(|x| check(func, key, x));
        }
        if v.is_unit() || v.is_bool() || v.is_int() || v.is_float() || v.is_string() || v.is_char()
        {
            return Ok(());
        }
        Err(usage_err_hint(
            format!("{func}: `{key}` is a {}, and only strings, numbers, booleans, arrays and maps can be stored", v.type_name()),
            "store an id instead of the handle, e.g. `vm.id`",
        ))
    }
    check(func, key, v)?;
    serde_json::to_value(v).map_err(|e| usage_err(format!("{func}: cannot store `{key}`: {e}")))
}

/// Add `at` (now, RFC 3339) to a record.
fn stamp_now(json: &mut serde_json::Value) {
    if let Some(obj) = json.as_object_mut() {
        obj.insert(
            "at".into(),
            serde_json::Value::String(chrono::Utc::now().to_rfc3339()),
        );
    }
}

/// Apply one change to the stack's state and persist it.
fn store_entry<T>(
    ctx: &NativeCallContext,
    change: impl FnOnce(&mut crate::state::StackState) -> T,
) -> Result<(), Box<EvalAltResult>> {
    let rt = rt(ctx)?;
    let mut store = rt.store()?;
    store.update(change).map(|_| ()).map_err(state_err)
}

/// A record the recipe gave, as the stack keeps it (see `HealthySnapshot`, `RollbackRecord`).
fn typed_record<T: From<serde_json::Map<String, serde_json::Value>>>(json: serde_json::Value) -> T {
    match json {
        serde_json::Value::Object(map) => T::from(map),
        _ => T::from(serde_json::Map::new()),
    }
}

fn from_json(v: &serde_json::Value) -> Dynamic {
    rhai::serde::to_dynamic(v).unwrap_or(Dynamic::UNIT)
}

/// What `state::applied` records.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AppliedOptions {
    instance: Option<Dynamic>,
    #[serde(default)]
    groups: Array,
    services: Option<String>,
}

#[export_module]
pub mod api {
    /// A value stored with the stack by an earlier `state::set` (or `()` when absent).
    ///
    /// ```rhai
    /// let first_deploy = state::get("first_deploy");
    /// ```
    #[rhai_fn(name = "get", return_raw)]
    pub fn get(ctx: NativeCallContext, key: &str) -> Result<Dynamic, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let store = rt.store()?;
        Ok(store
            .state()
            .values
            .get(key)
            .map(from_json)
            .unwrap_or(Dynamic::UNIT))
    }

    /// A stored value, or `default` when absent.
    ///
    /// ```rhai
    /// let runs = state::get("deploy_count", 0);
    /// ```
    #[rhai_fn(name = "get", return_raw)]
    pub fn get_or(
        ctx: NativeCallContext,
        key: &str,
        default: Dynamic,
    ) -> Result<Dynamic, Box<EvalAltResult>> {
        let v = get(ctx, key)?;
        Ok(if v.is_unit() { default } else { v })
    }

    /// Store a value with the stack (strings, numbers, booleans, arrays, maps; never secrets).
    ///
    /// ```rhai
    /// state::set("deploy_count", state::get("deploy_count", 0) + 1);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set(
        ctx: NativeCallContext,
        key: &str,
        value: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        let json = to_json("state::set", key, &value)?;
        store_entry(&ctx, |s| s.values.insert(key.to_string(), json))
    }

    /// Record an output of the stack (shown by `status`, e.g. URLs and ids).
    ///
    /// ```rhai
    /// state::output("n8n_url", `http://${vm.public_ip}:5678`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn output(
        ctx: NativeCallContext,
        key: &str,
        value: Dynamic,
    ) -> Result<(), Box<EvalAltResult>> {
        let json = to_json("state::output", key, &value)?;
        store_entry(&ctx, |s| s.outputs.insert(key.to_string(), json))
    }

    /// The stack's outputs as a map.
    ///
    /// ```rhai
    /// print(state::outputs().n8n_url);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn outputs(ctx: NativeCallContext) -> Result<Map, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let store = rt.store()?;
        Ok(store
            .state()
            .outputs
            .iter()
            .map(|(k, v)| (k.into(), from_json(v)))
            .collect())
    }

    /// The stack's status: creating, running, updating, rolling_back, destroying, failed, destroyed.
    ///
    /// ```rhai
    /// if state::status() == "running" { ui::info("updating a running stack"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn status(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        Ok(rt(&ctx)?.store()?.state().status.as_str().to_string())
    }

    /// Set the stack's status (the run sets `running` on success unless the recipe chose one).
    ///
    /// ```rhai
    /// state::set_status("destroyed");
    /// ```
    #[rhai_fn(return_raw)]
    pub fn set_status(ctx: NativeCallContext, status: &str) -> Result<(), Box<EvalAltResult>> {
        let s = StackStatus::parse(status).ok_or_else(|| {
            let all: Vec<&str> = StackStatus::ALL.iter().map(|s| s.as_str()).collect();
            usage_err(format!(
                "state::set_status: `{status}` is not one of {}",
                all.join(", ")
            ))
        })?;
        let rt = rt(&ctx)?;
        let mut store = rt.store()?;
        store.update(|st| st.status = s).map_err(state_err)
    }

    /// Record what this run applied — the instance, the fingerprint of its services, the
    /// security groups with their rules — for `status` to compare with AWS (drift: a rule added
    /// by hand, a type changed in the console). `what`: `instance` (an Instance), `groups`
    /// (SecurityGroups as `ec2::set_ingress` returned them), `services` (the fingerprint).
    ///
    /// ```rhai
    /// state::applied(#{ instance: vm, groups: [sgs.app, sgs.efs], services: fp });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn applied(ctx: NativeCallContext, what: Map) -> Result<(), Box<EvalAltResult>> {
        const F: &str = "state::applied";
        let o: AppliedOptions = decode(F, what)?;
        let vm = o
            .instance
            .and_then(|v| v.try_cast::<crate::cloud::ec2::Instance>())
            .ok_or_else(|| usage_err(format!("{F}: `instance` must be an Instance")))?;
        let mut groups = Vec::new();
        for g in o.groups {
            let sg = g
                .try_cast::<crate::cloud::ec2::SecurityGroup>()
                .ok_or_else(|| usage_err(format!("{F}: `groups` holds SecurityGroups")))?;
            groups.push(crate::state::applied::AppliedGroup {
                id: sg.id.clone(),
                name: sg.name.clone(),
                rules: sg.ingress.iter().map(|r| r.to_string()).collect(),
            });
        }
        let record = crate::state::applied::Applied {
            instance_id: vm.id,
            instance_type: vm.instance_type,
            image_id: vm.image_id,
            services: o.services,
            groups,
        };
        let json = serde_json::to_value(&record).expect("plain data serializes");
        store_entry(&ctx, |s| {
            s.values
                .insert(crate::state::applied::KEY.to_string(), json)
        })
    }

    /// Record the stack as healthy now: `snapshot` (plain data: instance id, AMI, type,
    /// health results, …), plus the recipe, its params and the run, becomes the stack's
    /// last-healthy snapshot, which rollback relaunches from.
    ///
    /// ```rhai
    /// state::mark_healthy(#{ instance_id: vm.id, image: ami.id, instance_type: vm.instance_type });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn mark_healthy(ctx: NativeCallContext, snapshot: Map) -> Result<(), Box<EvalAltResult>> {
        let mut json = to_json(
            "state::mark_healthy",
            "snapshot",
            &Dynamic::from_map(snapshot),
        )?;
        stamp_now(&mut json);
        let mut snapshot: HealthySnapshot = typed_record(json);
        // What rollback needs is geusemaker's to say: a recipe's own value under one of these
        // names is not kept beside it.
        for host_owned in ["recipe", "params", "run"] {
            snapshot.recorded.remove(host_owned);
        }
        let rt = rt(&ctx)?;
        // What rollback needs to relaunch exactly this deploy.
        snapshot.recipe = Some(rt.recipe.clone());
        snapshot.params = rt.params.resolved();
        snapshot.run = Some(rt.run_id.clone());
        let mut store = rt.store()?;
        store
            .update(|s| s.last_healthy = Some(snapshot))
            .map_err(state_err)
    }

    /// The last-healthy snapshot (or `()` when the stack was never healthy).
    ///
    /// ```rhai
    /// let snap = state::last_healthy();
    /// ```
    #[rhai_fn(return_raw)]
    pub fn last_healthy(ctx: NativeCallContext) -> Result<Dynamic, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let store = rt.store()?;
        Ok(store
            .state()
            .last_healthy
            .as_ref()
            .map(|snap| from_json(&serde_json::to_value(snap).unwrap_or_default()))
            .unwrap_or(Dynamic::UNIT))
    }

    /// Bring the ledger in line with AWS before tearing down: every intent whose id was never
    /// recorded (a crash, a lost response) is looked up by its token, name or tags and either
    /// completed or marked failed; resources that carry the stack's tag (or live under its
    /// SSM path) but are missing from the ledger are added. Returns the counts
    /// `#{ resolved, gone, found, unknown }`.
    ///
    /// ```rhai
    /// let r = state::reconcile();
    /// if r.found > 0 { ui::warn(`${r.found} resources were missing from the ledger`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn reconcile(ctx: NativeCallContext) -> Result<Map, Box<EvalAltResult>> {
        use crate::state::ResourceStatus;
        let rt = rt(&ctx)?;
        let aws = rt.aws()?;
        let region = rt.region()?;
        let ledger = rt.store()?.state().resources.clone();
        let (mut resolved, mut gone, mut unknown) = (0i64, 0i64, 0i64);
        for (idx, r) in ledger.iter().enumerate() {
            if r.status != ResourceStatus::Intent || r.region != region {
                continue;
            }
            match crate::inventory::resolve_intent(aws, &rt.stack, r, &ledger) {
                Ok(Some(id)) => {
                    rt.store()?
                        .finish_create(idx, &id, Default::default())
                        .map_err(state_err)?;
                    rt.ui.info(&format!(
                        "ledger: {} {} was created as {id} (its id had not been recorded)",
                        r.kind, r.name
                    ));
                    resolved += 1;
                }
                Ok(None) => {
                    rt.store()?
                        .fail_create(idx, "not found in AWS: the create never happened")
                        .map_err(state_err)?;
                    gone += 1;
                }
                Err(e) if e.code == "UnknownKind" => unknown += 1,
                Err(e) => return Err(super::super::cloud_err(e)),
            }
        }
        let ledger = rt.store()?.state().resources.clone();
        let mut found = 0i64;
        for f in crate::inventory::tagged(aws, &rt.stack).map_err(super::super::cloud_err)? {
            let known = ledger.iter().any(|r| {
                r.kind == f.kind
                    && r.id.as_deref() == Some(f.id.as_str())
                    && r.status == ResourceStatus::Created
            });
            if !known {
                rt.store()?
                    .adopt(f.kind, &f.name, &region, &f.id, f.attrs.clone())
                    .map_err(state_err)?;
                rt.ui.info(&format!(
                    "ledger: found {} {} ({}) by its tags",
                    f.kind, f.name, f.id
                ));
                found += 1;
            }
        }
        let mut m = Map::new();
        m.insert("resolved".into(), resolved.into());
        m.insert("gone".into(), gone.into());
        m.insert("found".into(), found.into());
        m.insert("unknown".into(), unknown.into());
        Ok(m)
    }

    /// Remove the stack's state file at the end of a successful run (after a destroy that left
    /// nothing behind).
    ///
    /// ```rhai
    /// state::forget();
    /// ```
    #[rhai_fn(return_raw)]
    pub fn forget(ctx: NativeCallContext) -> Result<(), Box<EvalAltResult>> {
        rt(&ctx)?.request_forget();
        Ok(())
    }

    /// Append a rollback record (`trigger`: manual | health_check_failed | timeout |
    /// spot_interruption | run_failed; `resources_deleted`; `success`; `error`); the time is
    /// added.
    ///
    /// ```rhai
    /// state::record_rollback(#{ trigger: "manual", resources_deleted: [vm.id], success: true });
    /// ```
    #[rhai_fn(return_raw)]
    pub fn record_rollback(ctx: NativeCallContext, record: Map) -> Result<(), Box<EvalAltResult>> {
        let trigger = record
            .get("trigger")
            .map(|t| t.to_string())
            .unwrap_or_default();
        if RollbackTrigger::parse(&trigger).is_none() {
            let all: Vec<&str> = RollbackTrigger::ALL.iter().map(|t| t.as_str()).collect();
            return Err(usage_err(format!(
                "state::record_rollback: trigger must be one of {}",
                all.join(", ")
            )));
        }
        let mut json = to_json(
            "state::record_rollback",
            "record",
            &Dynamic::from_map(record),
        )?;
        stamp_now(&mut json);
        let record: RollbackRecord = typed_record(json);
        let rt = rt(&ctx)?;
        let mut store = rt.store()?;
        store
            .update(|s| s.rollback_history.push(record))
            .map_err(state_err)
    }

    /// The resource ledger: every resource this stack created or meant to create, as maps
    /// `#{ kind, name, id, status, region, run, token }` in creation order.
    ///
    /// ```rhai
    /// for r in state::ledger() { print(`${r.kind} ${r.name} ${r.id} ${r.status}`); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn ledger(ctx: NativeCallContext) -> Result<Array, Box<EvalAltResult>> {
        let rt = rt(&ctx)?;
        let store = rt.store()?;
        Ok(store
            .state()
            .resources
            .iter()
            .map(|r| from_json(&serde_json::to_value(r).unwrap_or_default()))
            .collect())
    }

    /// The stack name (`--name`).
    ///
    /// ```rhai
    /// ui::info(`deploying ${state::stack()}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn stack(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        Ok(rt(&ctx)?.stack.clone())
    }

    /// This run's id (also the `geusemaker:run` tag on what it creates).
    ///
    /// ```rhai
    /// ui::info(`run ${state::run_id()}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn run_id(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        Ok(rt(&ctx)?.run_id.clone())
    }

    /// True while the recipe runs as a plan (`geusemaker run --plan`): nothing is created,
    /// ids are "known after apply", and services are not probed. Recipes can word their
    /// report accordingly.
    ///
    /// ```rhai
    /// if state::is_plan() { ui::info("a plan: nothing was created"); }
    /// ```
    #[rhai_fn(return_raw)]
    pub fn is_plan(ctx: NativeCallContext) -> Result<bool, Box<EvalAltResult>> {
        Ok(rt(&ctx)?.is_plan())
    }

    /// The AWS region of this run.
    ///
    /// ```rhai
    /// ui::info(`region ${state::region()}`);
    /// ```
    #[rhai_fn(return_raw)]
    pub fn region(ctx: NativeCallContext) -> Result<String, Box<EvalAltResult>> {
        rt(&ctx)?.region()
    }
}
