//! The interactive deploy (`geusemaker deploy`, or `geusemaker` alone on a terminal), driven by
//! recipe headers: pick a tier (with its description and estimated monthly cost), name the
//! stack, answer the params the header marks `ask` (defaults shown, checked as typed, VPCs and
//! subnets offered from the account), read the summary with the cost estimate, confirm, run.
//! Without a terminal it never asks: a missing value is an error naming the `--set` to pass.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};

use super::meta::{self, ParamSpec, RecipeMeta};
use super::session::{load_recipe, make_plan, Failure, RunError, RunRequest};
use super::{embedded, recipes};
use crate::cloud::{Aws, Blocking};
use crate::public_ip;
use crate::state::{validate_stack_name, StateBackend};
use crate::suggest::did_you_mean;
use crate::ui::Ui;

/// A tier on offer: how `run` names it, its header, its planned monthly cost.
struct Tier {
    id: String,
    meta: RecipeMeta,
    monthly: Option<f64>,
}

fn tiers(req: &RunRequest) -> Vec<Tier> {
    let mut out = Vec::new();
    let mut ids: Vec<String> = embedded::RECIPES
        .iter()
        .map(|(n, _)| n.to_string())
        .collect();
    ids.extend(recipes::project_recipe_ids());
    for id in ids {
        let Ok(loaded) = load_recipe(&id) else {
            continue;
        };
        let Ok(Some(m)) = meta::parse(&loaded.text) else {
            continue;
        };
        if m.kind != "tier" {
            continue;
        }
        // Its own estimate, from a plan with the defaults (nothing is called or written).
        let plan_req = RunRequest {
            recipe: id.clone(),
            stack: "preview".into(),
            sets: Vec::new(),
            ..req.clone()
        };
        let monthly = make_plan(&plan_req, Ui::detect(true).silent(), false)
            .ok()
            .and_then(|p| p.cost_monthly);
        // A local file is listed by its path, beside the bundled tier of the same header
        // name (never in its place): picking `dev` always means the bundled one. A local file
        // identical to a bundled recipe (this repository's own) is that recipe.
        if embedded::recipe(&m.name).is_some_and(|t| t == loaded.text) && id != m.name {
            continue;
        }
        out.push(Tier {
            id,
            meta: m,
            monthly,
        });
    }
    out
}

/// Ask on stderr, read a line from stdin; `None` at end of input.
fn ask(prompt: &str) -> Option<String> {
    let mut e = std::io::stderr().lock();
    let _ = write!(e, "{prompt}");
    let _ = e.flush();
    let mut line = String::new();
    match std::io::stdin().lock().read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    }
}

fn aborted() -> RunError {
    RunError::Interrupted(Box::new(Failure::message(
        "deploy cancelled: nothing was created",
    )))
}

fn say(line: &str) {
    eprintln!("{line}");
}

/// What the account offers for `vpc_id` / `subnet_id`: (value, description).
fn discovered(
    p: &ParamSpec,
    aws: Option<&Aws>,
    chosen: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let Some(aws) = aws else { return Vec::new() };
    match p.name.as_str() {
        "vpc_id" => aws
            .ec2
            .vpcs()
            .map(|v| {
                v.into_iter()
                    .map(|v| {
                        let d =
                            format!("{}{}", v.cidr, if v.is_default { " (default)" } else { "" });
                        (v.id, d)
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "subnet_id" => {
            let vpc = match chosen.get("vpc_id").filter(|v| !v.is_empty()) {
                Some(v) => v.clone(),
                None => match aws.ec2.default_vpc() {
                    Ok(v) => v.id,
                    Err(_) => return Vec::new(),
                },
            };
            aws.ec2
                .subnets(Some(&vpc))
                .map(|s| {
                    s.into_iter()
                        .map(|s| (s.id, format!("{} {}", s.az, s.cidr)))
                        .collect()
                })
                .unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn shown(v: &meta::Value) -> String {
    match v {
        meta::Value::String(s) if s.is_empty() => "none".into(),
        meta::Value::List(l) if l.is_empty() => "none".into(),
        other => other.to_string(),
    }
}

/// Ask for one param until the answer passes its checks; returns the raw text to `--set`, or
/// `None` to keep the default.
fn ask_param(
    p: &ParamSpec,
    current: Option<&str>,
    offers: &[(String, String)],
) -> Result<Option<String>, RunError> {
    let default = current
        .map(str::to_string)
        .or_else(|| p.default.as_ref().map(shown));
    let type_name = p.type_name();
    say(&format!(
        "  {} — {}",
        p.name,
        if p.help.is_empty() {
            &type_name
        } else {
            &p.help
        }
    ));
    for (i, (id, d)) in offers.iter().enumerate() {
        say(&format!("      {}) {id}  {d}", i + 1));
    }
    loop {
        let prompt = match &default {
            Some(d) => format!("    {} [{d}]: ", p.name),
            None => format!("    {} (required): ", p.name),
        };
        let answer = ask(&prompt).ok_or_else(aborted)?;
        if answer.is_empty() {
            if default.is_some() {
                return Ok(current.map(str::to_string));
            }
            say("    a value is needed");
            continue;
        }
        let text = match answer.parse::<usize>() {
            Ok(n) if n >= 1 && n <= offers.len() => offers[n - 1].0.clone(),
            _ => answer,
        };
        match p.parse(&text) {
            Ok(_) => return Ok(Some(text)),
            Err(e) => say(&format!("    {e}; try again")),
        }
    }
}

fn usd(v: f64) -> String {
    format!("${v:.2}")
}

/// `geusemaker deploy [recipe] [--name N] [--set …]`.
pub fn deploy(
    mut req: RunRequest,
    recipe: Option<String>,
    name: Option<String>,
) -> Result<(), RunError> {
    let tty = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !tty {
        // Never prompt: this is `run`, and what is missing is an error naming the flag.
        let name = name.ok_or_else(|| {
            RunError::usage("--name NAME is needed: there is no terminal to ask for it")
        })?;
        req.recipe = recipe.unwrap_or(req.recipe);
        req.stack = name;
        return super::run(req).map(|_| ());
    }

    // 1. The tier.
    let recipe_id = match recipe {
        Some(r) => r,
        None => {
            say("Tiers (estimated monthly cost with the defaults; spot prices estimated):");
            let tiers = tiers(&req);
            for (i, t) in tiers.iter().enumerate() {
                say(&format!(
                    "  {}) {:<12} {:>12}  {}",
                    i + 1,
                    t.id,
                    t.monthly.map_or("-".into(), |m| format!("~{}/mo", usd(m))),
                    t.meta.description
                ));
            }
            let default = tiers
                .iter()
                .position(|t| t.id == req.recipe || t.meta.name == req.recipe)
                .unwrap_or(0);
            loop {
                let a = ask(&format!("Tier [{}]: ", tiers[default].id)).ok_or_else(aborted)?;
                if a.is_empty() {
                    break tiers[default].id.clone();
                }
                if let Ok(n) = a.parse::<usize>() {
                    if n >= 1 && n <= tiers.len() {
                        break tiers[n - 1].id.clone();
                    }
                }
                if let Some(t) = tiers.iter().find(|t| t.id == a || t.meta.name == a) {
                    break t.id.clone();
                }
                let hint = did_you_mean(&a, tiers.iter().map(|t| t.id.as_str()))
                    .map(|s| format!(" (did you mean {s}?)"))
                    .unwrap_or_default();
                say(&format!("  no tier `{a}`{hint}; a number or a name"));
            }
        }
    };
    // A damaged header is rendered like any recipe error (file:line:col, caret).
    let (display, m) = recipes::header_of(&recipe_id)?;
    let m = m.ok_or_else(|| {
        RunError::usage(format!(
            "{display} has no header to ask from; run it with `geusemaker run {recipe_id} --name … --set …`"
        ))
    })?;

    // 2. The stack's name.
    let backend = StateBackend::current()?;
    let stack = match name {
        Some(n) => n,
        None => loop {
            let n = ask("Stack name (lowercase letters, digits, -): ").ok_or_else(aborted)?;
            match validate_stack_name(&n) {
                Ok(()) if backend.exists(&n)? => {
                    say(&format!("  `{n}` exists: this deploy updates it"));
                    break n;
                }
                Ok(()) => break n,
                Err(e) => say(&format!("  {e}")),
            }
        },
    };
    validate_stack_name(&stack).map_err(|e| RunError::usage(e.to_string()))?;

    // 3. The params worth asking (and the required ones), unless given with --set.
    let given: BTreeMap<String, String> = req
        .sets
        .iter()
        .filter_map(|s| {
            s.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let blocking = Blocking::new().ok();
    let aws = blocking
        .as_ref()
        .and_then(|b| Aws::connect(&req.aws, b).ok());
    let mut chosen: BTreeMap<String, String> = BTreeMap::new();
    let to_ask: Vec<&ParamSpec> = m
        .params
        .iter()
        .filter(|p| (p.ask || p.default.is_none()) && !given.contains_key(&p.name))
        .collect();
    if !to_ask.is_empty() {
        say(&format!(
            "Settings for {} (Enter keeps the value in brackets):",
            m.name
        ));
    }
    // Who may connect: offered as this machine's public address (Enter takes it).
    let mine = blocking
        .as_ref()
        .filter(|_| to_ask.iter().any(|p| p.name == "allowed_cidr"))
        .and_then(|b| b.block_on(public_ip::detect_cached()).ok())
        .map(|ip| format!("{ip}/32"));
    for p in to_ask {
        let offers = discovered(p, aws.as_ref(), &chosen);
        let mut current = req.param_settings.get(&p.name).map(String::as_str);
        if p.name == "allowed_cidr" && current.is_none() {
            if let Some(m) = &mine {
                say(&format!("  (this machine's public address is {m})"));
                current = Some(m.as_str());
            }
        }
        if let Some(v) = ask_param(p, current, &offers)? {
            chosen.insert(p.name.clone(), v);
        }
    }
    let mut sets = req.sets.clone();
    sets.extend(chosen.iter().map(|(k, v)| format!("{k}={v}")));

    // 4. The summary: every value, and what the plan says it costs.
    let run_req = RunRequest {
        recipe: recipe_id.clone(),
        stack: stack.clone(),
        sets,
        ..req.clone()
    };
    let plan = make_plan(&run_req, Ui::detect(true).silent(), false)?;
    let mut answers = given.clone();
    answers.extend(chosen.clone());
    let values = meta::resolve(&m, &answers, &req.param_settings).map_err(RunError::usage)?;
    say("");
    say(&format!(
        "Deploy {} as stack `{stack}` in {}:",
        m.name, plan.region
    ));
    for (k, v) in &values {
        let changed = m.param(k).and_then(|p| p.default.as_ref()) != Some(v);
        say(&format!(
            "  {}{k} = {}",
            if changed { "* " } else { "  " },
            shown(v)
        ));
    }
    say(&format!(
        "  {} resource(s) to create; about {} per month (estimate)",
        plan.resources.len(),
        plan.cost_monthly.map_or("an unknown amount".into(), usd)
    ));
    let yes = ask("Proceed? [y/N] ").ok_or_else(aborted)?;
    if !matches!(yes.to_ascii_lowercase().as_str(), "y" | "yes") {
        return Err(aborted());
    }
    // 5. Run it.
    super::run(RunRequest {
        assume_yes: true,
        ..run_req
    })
    .map(|_| ())
}
