//! The commands that change a stack: `run` (with its automatic rollback), `destroy`,
//! `rollback` (with its relaunch) and `unlock`.

use std::time::Instant;

use super::exec::Session;
use super::load::{
    compile, declares, is_teardown, load_recipe, parse_sets, prepare_params, region_from_params,
    Compiled,
};
use super::{Note, RunError, RunRequest, RunSummary, UsageError};
use crate::primitives::Params;
use crate::state::{
    validate_stack_name, HealthySnapshot, ResourceStatus, RollbackRecord, RollbackTrigger,
    StackState, StackStatus, StackStore, StateBackend, StateError,
};
use crate::ui::Ui;

pub fn require_existing(stack: &str) -> Result<(), RunError> {
    validate_stack_name(stack).map_err(|e| RunError::usage(e.to_string()))?;
    let backend = StateBackend::current()?;
    if backend.exists(stack)? {
        return Ok(());
    }
    Err(UsageError::UnknownStack {
        stack: stack.to_string(),
        place: backend.describe(),
        known: backend.names()?,
    }
    .into())
}

/// Ids of ledger entries created by `run_id` that are now deleted.
fn removed_by(state: &StackState, run_id: &str) -> Vec<String> {
    state
        .resources
        .iter()
        .filter(|r| r.run == run_id && r.status == ResourceStatus::Deleted)
        .filter_map(|r| r.id.clone())
        .collect()
}

fn record_rollback(store: &mut StackStore, record: RollbackRecord) -> Result<(), StateError> {
    store.update(|s| s.rollback_history.push(record))
}

/// Remove what run `run_id` created (data kept), with the bundled (or local) destroy recipe.
fn roll_back_run(
    session: &mut Session,
    run_id: &str,
    trigger: RollbackTrigger,
    original: &str,
) -> Result<Vec<Note>, RunError> {
    let destroy = compile(load_recipe("destroy")?)?;
    let ui = Ui::detect(true);
    let only = prepare_params(&destroy, parse_sets(&[format!("only_run={run_id}")])?)?;
    let rb = match session.exec(&destroy, only, &ui) {
        Ok(rb) => rb,
        // The clean-up could not reach AWS (credentials expired during the run): the run's
        // own failure is still the story; what it created stays in the ledger.
        Err(RunError::Preflight(e)) => {
            if let Some(store) = session.store.as_mut() {
                store.update(|s| s.status = StackStatus::Failed)?;
            }
            return Ok(vec![
                Note::Line(format!("automatic rollback could not reach AWS: {e}")),
                Note::Line(format!(
                    "what this run created remains (the ledger lists it): `geusemaker destroy {}` removes it once AWS answers",
                    session.stack
                )),
            ]);
        }
        Err(e) => return Err(e),
    };
    let removed = session
        .store
        .as_ref()
        .map(|s| removed_by(s.state(), run_id))
        .unwrap_or_default();
    let success = rb.error.is_none();
    if let Some(store) = session.store.as_mut() {
        record_rollback(
            store,
            RollbackRecord {
                at: Some(chrono::Utc::now().to_rfc3339()),
                trigger: Some(trigger.as_str().to_string()),
                run: Some(run_id.to_string()),
                resources_deleted: Some(removed.clone()),
                success: Some(success),
                error: Some(original.to_string()),
                ..RollbackRecord::default()
            },
        )?;
        store.update(|s| s.status = StackStatus::Failed)?;
    }
    Ok(match rb.error {
        None if removed.is_empty() => vec![Note::Line(
            "automatic rollback: this run had created nothing that needed removing".into(),
        )],
        None => vec![Note::Line(format!(
            "automatic rollback removed what this run created: {}",
            removed.join(", ")
        ))],
        Some(e) => vec![
            Note::Line("automatic rollback failed too:".into()),
            Note::Failure(Box::new(e)),
        ],
    })
}

/// `geusemaker run`: validate everything that can be validated before touching AWS, take the
/// stack's lock, run the recipe, and on failure remove what the run created (unless
/// `keep_failed`).
pub fn run(req: RunRequest) -> Result<RunSummary, RunError> {
    validate_stack_name(&req.stack).map_err(|e| RunError::usage(e.to_string()))?;
    let params = parse_sets(&req.sets)?.with_settings(req.param_settings.clone());
    let compiled = compile(load_recipe(&req.recipe)?)?;
    let params = prepare_params(&compiled, params)?;
    let mut aws = req.aws.clone();
    region_from_params(&mut aws, &params)?;
    // Destroy always asks: without a terminal to ask on, say so before anything is read or
    // recorded (not after printing the inventory, as a failed run).
    if compiled.recipe.source_id == "destroy" && !Ui::detect(req.assume_yes).can_confirm() {
        return Err(RunError::usage_hint(
            format!(
                "no terminal to confirm on: pass --yes to destroy stack `{}`",
                req.stack
            ),
            format!("geusemaker destroy {} --yes", req.stack),
        ));
    }

    let mut session = Session::open(
        &req.stack,
        aws,
        req.assume_yes,
        &format!("run {}", req.recipe),
    )?;
    let ui = session.ui.clone();
    let exec = session.exec(&compiled, params, &ui)?;
    let summary = exec.summary();

    let Some(error) = exec.error.clone() else {
        if session.store.is_none() {
            ui.success(&format!(
                "run {} finished: {summary}; the stack's state was removed",
                exec.run_id
            ));
        } else {
            let changed = match exec.changes.len() {
                0 => String::new(),
                n => format!("; {n} change(s) to what existed"),
            };
            match (exec.created, exec.deleted, changed.is_empty()) {
                (0, 0, true) => {
                    ui.info("nothing changed: every resource already was what the recipe says")
                }
                (0, 0, false) => {
                    let mut what: Vec<&str> = Vec::new();
                    for c in &exec.changes {
                        if !what.contains(&c.resource.as_str()) {
                            what.push(&c.resource);
                        }
                    }
                    ui.info(&format!(
                        "{} change(s) to what existed: {}",
                        exec.changes.len(),
                        what.join(", ")
                    ))
                }
                (c, 0, _) => ui.info(&format!("{c} resource(s) created by this run{changed}")),
                (0, d, _) => ui.info(&format!("{d} resource(s) deleted by this run{changed}")),
                (c, d, _) => ui.info(&format!(
                    "{c} resource(s) created and {d} deleted by this run{changed}"
                )),
            }
            ui.success(&format!("run {} finished: {summary}", exec.run_id));
            ui.info(&format!("state: {}", session.state_location()));
        }
        return Ok(RunSummary {
            run_id: exec.run_id,
            api_calls: exec.api_calls,
            attempts: exec.attempts,
        });
    };

    let run_id = exec.run_id.clone();
    if exec.interrupted {
        crate::interrupt::reset();
        let mut failure = error.note(format!("run {run_id} interrupted after {summary}"));
        if exec.created > 0 {
            // No count here: the clean-up keeps the data (destroy says what it removes).
            let offer = "Roll back what this run created (its data is kept)?".to_string();
            if !req.assume_yes && ui.confirm(&offer).unwrap_or(false) {
                failure = failure.notes(roll_back_run(
                    &mut session,
                    &run_id,
                    RollbackTrigger::Interrupted,
                    "interrupted",
                )?);
            } else {
                failure = failure.note(format!(
                    "nothing was rolled back: `geusemaker rollback {0}` or `geusemaker destroy {0}` removes it, `geusemaker run {1} --name {0}` continues",
                    req.stack, req.recipe
                ));
            }
        }
        return Err(RunError::Interrupted(Box::new(failure)));
    }
    if session.discard_if_empty()? {
        return Err(error
            .note(format!(
                "run {run_id} failed after {summary}; nothing was created"
            ))
            .into());
    }
    let mut failure = error.note(format!("run {run_id} failed after {summary}"));
    if exec.created > 0 && !req.keep_failed && !is_teardown(&compiled) {
        // The failure's code (a field of the error, not its words) says which.
        let trigger = match exec.code.as_deref() {
            Some("WaitTimeout" | "NotHealthy") => RollbackTrigger::Timeout,
            _ => RollbackTrigger::RunFailed,
        };
        let first_line = exec.failure.clone().unwrap_or_default();
        ui.warn("run failed: removing what it created; its data is kept (--keep-failed keeps everything)");
        failure = failure.notes(roll_back_run(&mut session, &run_id, trigger, &first_line)?);
    } else if exec.created > 0 && req.keep_failed {
        failure = failure.note(format!(
            "--keep-failed: the {} resource(s) this run created were kept for debugging; `geusemaker destroy {}` removes them",
            exec.created, req.stack
        ));
    }
    Err(failure
        .note(format!(
            "state: {} (the ledger lists every resource)",
            session.state_location()
        ))
        .into())
}

/// `geusemaker destroy <name>`: the destroy recipe on an existing stack.
pub fn destroy(mut req: RunRequest) -> Result<RunSummary, RunError> {
    require_existing(&req.stack)?;
    req.recipe = "destroy".into();
    req.keep_failed = true;
    run(req)
}

/// The recipe and params that relaunch a `last_healthy` snapshot: its recipe, its params (those
/// the recipe still declares), its image — checked like any run's.
fn relaunch_of(snapshot: &HealthySnapshot) -> Result<(Compiled, Params), RunError> {
    // (A snapshot from before recipes were recorded was the dev tier's.)
    let recipe_id = snapshot.recipe.as_deref().unwrap_or("dev");
    let mut relaunch_sets: Vec<String> = snapshot
        .params
        .iter()
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k}={s}"),
            serde_json::Value::Array(a) => format!(
                "{k}={}",
                a.iter()
                    .map(|x| x
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| x.to_string()))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            other => format!("{k}={other}"),
        })
        .collect();
    let compiled = compile(load_recipe(recipe_id)?)?;
    // A param the recipe no longer declares (it changed since the snapshot) is left out.
    relaunch_sets.retain(|kv| {
        let key = kv.split_once('=').map_or(kv.as_str(), |(k, _)| k);
        declares(&compiled, key)
    });
    if let Some(image) = &snapshot.image_id {
        if declares(&compiled, "image_id") {
            relaunch_sets.retain(|s| !s.starts_with("image_id="));
            relaunch_sets.push(format!("image_id={image}"));
        }
    }
    let params = prepare_params(&compiled, parse_sets(&relaunch_sets)?)?;
    Ok((compiled, params))
}

/// `geusemaker rollback <name>`: the rollback recipe, then — when the stack has a last-healthy
/// snapshot — the snapshot's recipe with its params, all under one lock.
///
/// `reason`: what made `monitor` roll back (a spot interruption notice, failing checks), kept
/// in the rollback's record.
pub fn rollback(
    req: RunRequest,
    trigger: RollbackTrigger,
    reason: Option<&str>,
) -> Result<RunSummary, RunError> {
    require_existing(&req.stack)?;
    // What the relaunch will run is checked before the rollback terminates anything: a
    // snapshot whose params its recipe now refuses would leave the stack without an instance.
    let backend = StateBackend::current()?;
    if let Some(snapshot) = StackStore::load(&backend, &req.stack)?.and_then(|s| s.last_healthy) {
        relaunch_of(&snapshot).map_err(|e| {
            RunError::usage(format!(
                "the last healthy deploy cannot be relaunched as it was recorded, so nothing was rolled back:\n{e}"
            ))
        })?;
    }
    let mut sets = req.sets.clone();
    sets.push(format!("trigger={trigger}"));
    let compiled = compile(load_recipe("rollback")?)?;
    let params = prepare_params(&compiled, parse_sets(&sets)?)?;
    let mut session = Session::open(&req.stack, req.aws.clone(), req.assume_yes, "rollback")?;
    let ui = session.ui.clone();
    // The stack is down from the rollback's first step (the instance terminated) until the
    // relaunch is healthy: counted to the relaunch's end, an upper bound.
    let started = Instant::now();
    let exec = session.exec(&compiled, params, &ui)?;
    if let Some(e) = &exec.error {
        return Err(e
            .clone()
            .note(format!(
                "rollback {} failed after {}",
                exec.run_id,
                exec.summary()
            ))
            .into());
    }
    let snapshot = session.state().last_healthy.clone();
    let relaunch = session.state().status == StackStatus::RollingBack;
    let Some(snapshot) = snapshot.filter(|_| relaunch) else {
        ui.success(&format!(
            "rollback {} finished: {}",
            exec.run_id,
            exec.summary()
        ));
        return Ok(RunSummary {
            run_id: exec.run_id,
            api_calls: exec.api_calls,
            attempts: exec.attempts,
        });
    };

    let (compiled, relaunch_params) = relaunch_of(&snapshot)?;
    ui.stage(&format!(
        "Relaunching the last healthy deploy ({})",
        compiled.recipe.display
    ));
    let relaunch = session.exec(&compiled, relaunch_params, &ui)?;
    let down = started.elapsed().as_secs();
    let store = session.store_mut();
    store.update(|s| {
        if let Some(last) = s.rollback_history.last_mut() {
            // (Set here by geusemaker: a recipe's own value under these names is replaced.)
            for key in ["relaunch_run", "success", "reason", "down_seconds", "error"] {
                last.recorded.remove(key);
            }
            last.relaunch_run = Some(relaunch.run_id.clone());
            last.success = Some(relaunch.error.is_none());
            if let Some(r) = reason {
                last.reason = Some(r.to_string());
            }
            match &relaunch.failure {
                None => last.down_seconds = Some(down),
                Some(f) => last.error = Some(f.clone()),
            }
        }
    })?;
    match relaunch.error {
        None => {
            ui.success(&format!(
                "rolled back and relaunched: {}",
                relaunch.summary()
            ));
            ui.info(&format!(
                "the stack was down at most {down} s (from the instance's termination to the relaunch's end)"
            ));
            Ok(RunSummary {
                run_id: relaunch.run_id,
                api_calls: relaunch.api_calls,
                attempts: relaunch.attempts,
            })
        }
        Some(e) => Err(e
            .note("the relaunch after rollback failed; the data is kept")
            .into()),
    }
}

/// `geusemaker unlock <name>`: clear a lock whose holder is gone. A shared (S3) lock is
/// removed after a confirmation, its holder named: the holder may be alive on another machine.
pub fn unlock(stack: &str, assume_yes: bool) -> Result<String, RunError> {
    validate_stack_name(stack).map_err(|e| RunError::usage(e.to_string()))?;
    let backend = StateBackend::current()?;
    match backend.lock(stack, "unlock", "unlock") {
        Ok(lock) => {
            let msg = match lock.previous_holder() {
                Some(h) => format!(
                    "stack `{stack}` was not locked; cleared the record of a run that died ({h})"
                ),
                None => format!("stack `{stack}` is not locked"),
            };
            Ok(msg)
        }
        Err(StateError::Locked { mut holder, .. }) if backend.is_remote() => {
            // A shared lock's holder may be alive on another machine: the user decides.
            let mut shown = backend.holder(stack)?;
            // No readable holder: released meanwhile (and maybe taken again), or a damaged
            // lock object.
            if shown.is_none() {
                match backend.lock(stack, "unlock", "unlock") {
                    Ok(_free) => {
                        return Ok(format!(
                            "stack `{stack}` is not locked (its run just ended)"
                        ))
                    }
                    Err(StateError::Locked { holder: now, .. }) => {
                        holder = now;
                        shown = backend.holder(stack)?;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            let question = match &shown {
                Some(h) if h.is_live() => format!("stack `{stack}` is locked by {h}, whose lease still runs: that run may be alive on {}. Remove its lock anyway (the run stops at its first write after its next renewal)?", h.host),
                Some(h) => format!("stack `{stack}` is locked by {h}, whose lease ran out. Remove the lock?"),
                None => format!("stack `{stack}` is locked by {holder}. Remove the lock?"),
            };
            if !Ui::detect(assume_yes)
                .confirm(&question)
                .map_err(RunError::usage)?
            {
                return Err(RunError::usage(format!("the lock of `{stack}` was kept")));
            }
            backend.break_lock(stack, shown.as_ref())?;
            Ok(format!("removed the lock of `{stack}` held by {holder}"))
        }
        Err(StateError::Locked { holder, .. }) => match backend.holder(stack)? {
            Some(h) if h.is_alive_here() => Err(RunError::usage_hint(
                format!("stack `{stack}` is locked by a live process: {holder}"),
                format!(
                    "wait for it, or stop it (kill {}) and run unlock again",
                    h.pid
                ),
            )),
            _ => {
                backend.break_lock(stack, None)?;
                Ok(format!(
                    "removed the lock of `{stack}` held by {holder}, which is not running here"
                ))
            }
        },
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use crate::engine::{embedded, meta};
    use crate::state::RollbackTrigger;

    /// The rollback recipe takes exactly the triggers a record may carry.
    #[test]
    fn the_rollback_recipe_takes_every_trigger() {
        let text = embedded::recipe("rollback").expect("bundled");
        let header = meta::parse(text).unwrap().expect("a header");
        let allowed: Vec<String> = header
            .param("trigger")
            .expect("a trigger param")
            .allowed
            .iter()
            .map(|v| v.to_string())
            .collect();
        let all: Vec<String> = RollbackTrigger::ALL
            .iter()
            .map(|t| t.as_str().to_string())
            .collect();
        assert_eq!(allowed, all);
        for t in RollbackTrigger::ALL {
            assert_eq!(RollbackTrigger::parse(t.as_str()), Some(t));
        }
        assert_eq!(RollbackTrigger::parse("Timeout"), None);
    }
}
