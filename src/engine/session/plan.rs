//! `run --plan`: on a new stack, the recipe against the recording backend (no AWS, no
//! credentials); on a live stack, against AWS read-only, as a diff.

use super::exec::Session;
use super::load::{compile, load_recipe, parse_sets, prepare_params, region_from_params};
use super::{RunError, RunRequest};
use crate::cloud::plan::is_planned;
use crate::cloud::AwsSettings;
use crate::primitives::Params;
use crate::state::{validate_stack_name, Kind, ResourceStatus};
use crate::ui::Ui;

/// The region a plan is made for: `--region`, config.toml, `AWS_REGION`/`AWS_DEFAULT_REGION`,
/// or us-east-1 (a plan reads no profile and needs no credentials).
fn plan_region(aws: &AwsSettings, params: &Params) -> String {
    aws.region
        .clone()
        .or_else(|| {
            params
                .raw("region")
                .filter(|r| !r.is_empty())
                .map(str::to_string)
        })
        .or_else(|| aws.default_region.clone())
        .or_else(|| std::env::var("AWS_REGION").ok().filter(|r| !r.is_empty()))
        .or_else(|| {
            std::env::var("AWS_DEFAULT_REGION")
                .ok()
                .filter(|r| !r.is_empty())
        })
        .unwrap_or_else(|| "us-east-1".into())
}

/// What a plan found.
pub struct Plan {
    pub stack: String,
    pub recipe: String,
    pub region: String,
    /// (kind, name, id) of every resource the recipe would create.
    pub resources: Vec<(Kind, String, String)>,
    /// Operations of the recipe's run, then of destroy's (when asked), in call order.
    pub calls: Vec<String>,
    pub destroy_calls: Vec<String>,
    /// The recipe's own monthly estimate (`state::set("cost", #{ monthly, … })`), if it made one.
    pub cost_monthly: Option<f64>,
    /// The user data of each instance the recipe would launch: (name, script).
    pub user_data: Vec<(String, String)>,
}

/// Run `req`'s recipe as a plan (and, with `with_destroy`, the destroy recipe after it, on the
/// planned resources). Nothing is written and no AWS call is made.
pub fn make_plan(req: &RunRequest, ui: Ui, with_destroy: bool) -> Result<Plan, RunError> {
    validate_stack_name(&req.stack).map_err(|e| RunError::usage(e.to_string()))?;
    let params = parse_sets(&req.sets)?.with_settings(req.param_settings.clone());
    let compiled = compile(load_recipe(&req.recipe)?)?;
    let params = prepare_params(&compiled, params)?;
    let region = plan_region(&req.aws, &params);
    let mut session = Session::planning(&req.stack, &region, ui.clone())?;
    let exec = session.exec(&compiled, params, &ui)?;
    if let Some(e) = exec.error {
        return Err(e
            .note("the plan stopped here: this is where a real run would fail too")
            .into());
    }
    let recorder = session.plan.clone().expect("a planning session records");
    let calls = recorder.calls();
    let resources = session
        .store
        .as_ref()
        .map(|s| {
            s.state()
                .resources
                .iter()
                .filter(|r| r.status == ResourceStatus::Created)
                .map(|r| (r.kind, r.name.clone(), r.id.clone().unwrap_or_default()))
                .collect()
        })
        .unwrap_or_default();
    let cost_monthly = session
        .store
        .as_ref()
        .and_then(|s| s.state().values.get("cost")?.get("monthly")?.as_f64());
    let mut destroy_calls = Vec::new();
    if with_destroy {
        let destroy = compile(load_recipe("destroy")?)?;
        let dparams = prepare_params(&destroy, parse_sets(&["delete_data=true".to_string()])?)?;
        let quiet = ui.clone().silent();
        let d = session.exec(&destroy, dparams, &quiet)?;
        if let Some(e) = d.error {
            return Err(e.note("planning the destroy recipe failed").into());
        }
        destroy_calls = recorder.calls()[calls.len()..].to_vec();
    }
    Ok(Plan {
        stack: req.stack.clone(),
        recipe: compiled.recipe.display.clone(),
        region,
        resources,
        calls,
        destroy_calls,
        cost_monthly,
        user_data: recorder.user_data(),
    })
}

/// What `run --plan` found on a live stack, for `--json`.
#[derive(serde::Serialize)]
struct LiveDiff<'a> {
    stack: &'a str,
    recipe: &'a str,
    region: Option<&'a str>,
    changes: &'a [crate::primitives::Change],
    /// The recipe ran to its end or to the confirmation of its changes: nothing left unseen.
    complete: bool,
    /// When not complete: the first AWS operation a real run would make that the plan could
    /// not show (a resource to create, a setting to change outside the diff).
    stops_before: Option<&'a str>,
}

/// `run --plan` on a stack that has live resources: the recipe runs against AWS with reads
/// only (a copy of the state in memory, no lock, health not probed) and stops where it would
/// first change something; the diff is what it found. `None` when the stack is not live.
fn plan_live(req: &RunRequest, json: bool) -> Result<Option<()>, RunError> {
    validate_stack_name(&req.stack).map_err(|e| RunError::usage(e.to_string()))?;
    let mut ui = Ui::detect(true);
    if json {
        ui = ui.with_stdout_reserved();
    }
    let params = parse_sets(&req.sets)?.with_settings(req.param_settings.clone());
    let compiled = compile(load_recipe(&req.recipe)?)?;
    let params = prepare_params(&compiled, params)?;
    let mut aws = req.aws.clone();
    region_from_params(&mut aws, &params)?;
    let Some(mut session) = Session::diffing(&req.stack, &aws, ui.clone())? else {
        return Ok(None);
    };
    ui.stage(&format!(
        "Plan: {} on live stack {} — AWS is only read, nothing is changed",
        req.recipe, req.stack
    ));
    let exec = session.exec(&compiled, params, &ui)?;
    let complete = exec.diff_finished || exec.error.is_none();
    if let (Some(e), false) = (&exec.error, complete) {
        if exec.refused_write.is_none() {
            return Err(e
                .clone()
                .note("the plan stopped here: this is where a real run would fail too")
                .into());
        }
    }
    let region = session.state().region.clone();
    if json {
        let doc = LiveDiff {
            stack: &req.stack,
            recipe: &compiled.recipe.display,
            region: region.as_deref(),
            changes: &exec.changes,
            complete,
            stops_before: if complete {
                None
            } else {
                exec.refused_write.as_deref()
            },
        };
        println!(
            "{}",
            serde_json::to_string_pretty(&doc).expect("a diff serializes")
        );
        return Ok(Some(()));
    }
    ui.stage(&format!("Plan for live stack {}", req.stack));
    if exec.changes.is_empty() && complete {
        ui.line("no changes: the running stack is what the recipe says");
    } else {
        for c in &exec.changes {
            ui.change(&c.to_string());
        }
    }
    if !complete {
        ui.warn(&format!(
            "the plan stops before {}: the recipe would next change something the diff cannot show yet (a new resource, or a setting outside it); the changes above come first",
            exec.refused_write.as_deref().unwrap_or("an AWS write")
        ));
    }
    ui.line(&format!(
        "`geusemaker run {} --name {}` applies it (asking first on a terminal).",
        req.recipe, req.stack
    ));
    Ok(Some(()))
}

/// `geusemaker run <recipe> --name x --plan`: the recipe's own output, then what it would
/// create and call. On a live stack: the diff between the recipe and AWS ([`plan_live`]).
pub fn plan(req: RunRequest, show_user_data: bool, json: bool) -> Result<(), RunError> {
    if plan_live(&req, json)?.is_some() {
        return Ok(());
    }
    let ui = Ui::detect(true);
    ui.stage(&format!(
        "Plan: {} on stack {} — no AWS calls, no credentials, nothing written",
        req.recipe, req.stack
    ));
    let p = make_plan(&req, ui.clone(), false)?;
    ui.stage(&format!(
        "Plan for {} ({}, {}): {} resource(s) to create",
        p.stack,
        p.recipe,
        p.region,
        p.resources.len()
    ));
    let rows: Vec<Vec<String>> = p
        .resources
        .iter()
        .map(|(k, n, id)| {
            vec![
                k.to_string(),
                n.clone(),
                if is_planned(id) {
                    "(known after apply)".into()
                } else {
                    id.clone()
                },
            ]
        })
        .collect();
    ui.table(&["KIND", "NAME", "ID"].map(String::from), &rows);
    let mut counts: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for c in &p.calls {
        *counts.entry(c.as_str()).or_default() += 1;
    }
    ui.line("");
    ui.line(&format!(
        "AWS actions it would call ({} requests, {} distinct):",
        p.calls.len(),
        counts.len()
    ));
    for (op, n) in counts {
        ui.line(&format!(
            "    {op}{}",
            if n > 1 {
                format!(" ×{n}")
            } else {
                String::new()
            }
        ));
    }
    if show_user_data {
        for (name, script) in &p.user_data {
            ui.line("");
            ui.line(&format!(
                "User data of instance {name} ({} bytes):",
                script.len()
            ));
            println!("{script}");
        }
    } else if !p.user_data.is_empty() {
        ui.line("");
        ui.line("`--show-user-data` prints each instance's boot script (with its compose file).");
    }
    ui.line("");
    ui.line(&format!(
        "`geusemaker policy {} --name {}` prints the IAM policy for these actions (and destroy's); \
         `geusemaker run {} --name {}` applies it.",
        req.recipe, p.stack, req.recipe, p.stack
    ));
    Ok(())
}
