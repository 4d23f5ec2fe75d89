//! Command-line interface: the clap definitions (`args.rs`), and each command as a thin call into
//! the runtime (`dispatch`).

use crate::cloud::AwsSettings;
use crate::config::{ConfigError, Settings};
use crate::engine::{self, RunError, RunRequest};
use crate::ops;

/// `geusemaker --version`: the version, the commit it was built from and the build date
/// (embedded by build.rs).
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("GEUSEMAKER_COMMIT"),
    " ",
    env!("GEUSEMAKER_BUILD_DATE"),
    ")"
);

mod args;

pub use args::*;

fn aws_settings(region: Option<String>, profile: Option<String>, s: &Settings) -> AwsSettings {
    AwsSettings {
        region,
        profile: profile.or_else(|| s.profile()),
        default_region: s.region(),
        read_only: false,
    }
}

fn request(
    recipe: &str,
    name: String,
    aws: AwsArgs,
    keep_failed: bool,
    s: &Settings,
) -> RunRequest {
    RunRequest {
        recipe: recipe.to_string(),
        stack: name,
        sets: aws.sets,
        aws: aws_settings(aws.region, aws.profile, s),
        assume_yes: aws.yes,
        keep_failed: keep_failed || !s.auto_rollback(),
        param_settings: s.param_defaults(),
    }
}

fn settings() -> Result<Settings, RunError> {
    let home = crate::state::Home::from_env()?;
    Settings::load(&home).map_err(|e| {
        RunError::usage_hint(
            e.to_string(),
            "fix the file (or `geusemaker config set|unset KEY`); `geusemaker config list` shows the settings and their types",
        )
    })
}

/// Run the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    use std::io::IsTerminal;
    let command = match cli.command {
        Some(c) => c,
        None if std::io::stdin().is_terminal() && std::io::stderr().is_terminal() => {
            Command::Deploy {
                recipe: None,
                name: None,
                aws: AwsArgs {
                    region: None,
                    profile: None,
                    yes: false,
                    sets: Vec::new(),
                },
            }
        }
        None => {
            use clap::CommandFactory;
            let _ = Cli::command().print_help();
            eprintln!("\nerror: no command given (without a terminal `geusemaker` does not ask)");
            return 2;
        }
    };
    let needs_settings = !matches!(
        command,
        Command::Docs { .. }
            | Command::Completions { .. }
            | Command::Man
            | Command::Config { .. }
            | Command::Recipes { .. }
            | Command::Check { .. }
    );
    let s = if needs_settings {
        match settings() {
            Ok(s) => s,
            Err(e) => return report(&e),
        }
    } else {
        Settings::default()
    };
    crate::ui::set_prefs(s.ui());
    let state_flag = cli.state;
    let (chosen, team) = if needs_settings {
        match state_backend(&s, state_flag.as_deref(), profile_of(&command)) {
            Ok((chosen, b)) => {
                crate::state::backend::select(b.clone());
                (Some(chosen), Some(b))
            }
            Err(e) => return report(&e),
        }
    } else {
        (None, None)
    };
    let result = match command {
        Command::Deploy { recipe, name, aws } => {
            let req = request(&s.tier(), name.clone().unwrap_or_default(), aws, false, &s);
            engine::deploy::deploy(req, recipe, name)
        }
        Command::Run(a) => {
            let recipe = a.recipe.clone().unwrap_or_else(|| s.tier());
            let (plan, show, json) = (a.plan, a.show_user_data, a.json);
            let req = request(&recipe, a.name, a.aws, a.keep_failed, &s);
            if plan {
                engine::session::plan(req, show, json)
            } else {
                engine::run(req).map(|_| ())
            }
        }
        Command::Policy { recipe, name, sets } => {
            let req = RunRequest {
                recipe,
                stack: name.clone().unwrap_or_else(|| "policy".into()),
                sets,
                aws: aws_settings(None, None, &s),
                assume_yes: true,
                keep_failed: false,
                param_settings: s.param_defaults(),
            };
            engine::session::make_plan(&req, crate::ui::Ui::detect(true).silent(), true).map(|p| {
                let mut ops = p.calls.clone();
                ops.extend(p.destroy_calls.iter().cloned());
                ops.extend(
                    crate::cloud::policy::PREFLIGHT_OPERATIONS
                        .iter()
                        .chain(crate::cloud::policy::UPDATE_OPERATIONS)
                        .map(|o| o.to_string()),
                );
                let mut doc = crate::cloud::policy::document(&ops, name.as_deref());
                // A team's state bucket is part of every command's work.
                if let Some(url) = chosen
                    .as_ref()
                    .and_then(|c| crate::state::s3::S3Url::parse(&c.url).ok())
                {
                    let kms = chosen.as_ref().and_then(|c| c.kms_key.as_deref());
                    if let Some(list) = doc["Statement"].as_array_mut() {
                        list.extend(crate::cloud::policy::state_statements(
                            &url.bucket,
                            &url.prefix,
                            kms,
                        ));
                    }
                }
                println!(
                    "{}",
                    serde_json::to_string_pretty(&doc).expect("policy serializes")
                );
            })
        }
        Command::Destroy(a) => {
            engine::destroy(request("destroy", a.name, a.aws, true, &s)).map(|_| ())
        }
        Command::Rollback { stack, trigger } => engine::rollback(
            request("rollback", stack.name, stack.aws, false, &s),
            trigger.into(),
            None,
        )
        .map(|_| ()),
        Command::List { json, conn } => {
            ops::list::list(json, &aws_settings(conn.region, conn.profile, &s), &s)
        }
        Command::Status { name, json, conn } => ops::status::status(
            &name,
            json,
            &aws_settings(conn.region, conn.profile, &s),
            &s,
        ),
        Command::Monitor {
            name,
            interval,
            rounds,
            no_rollback,
            conn,
        } => ops::monitor::monitor(
            ops::monitor::MonitorOptions {
                name,
                interval,
                rounds,
                no_rollback,
                aws: aws_settings(conn.region, conn.profile, &s),
            },
            &s,
        ),
        Command::Cost { name, json, conn } => ops::cost::cost(
            &name,
            json,
            &aws_settings(conn.region, conn.profile, &s),
            &s,
        ),
        Command::Logs {
            name,
            boot: true,
            conn,
            ..
        } => ops::logs::boot_log(&name, &aws_settings(conn.region, conn.profile, &s), &s),
        Command::Logs {
            name,
            service,
            follow,
            since,
            conn,
            ..
        } => ops::logs::logs(
            &name,
            service.as_deref(),
            follow,
            &since,
            &aws_settings(conn.region, conn.profile, &s),
            &s,
        ),
        Command::Config { action } => config_command(action),
        Command::Check { recipes } => engine::check::run(&recipes),
        Command::Recipes { action } => match action {
            RecipesAction::List { json } => engine::recipes::list(json),
            RecipesAction::Show { recipe, json } => engine::recipes::show(&recipe, json),
            RecipesAction::Add { name, source, rev } => {
                engine::recipes::add(&name, &source, rev.as_deref())
            }
            RecipesAction::Update { names } => engine::recipes::update(&names),
            RecipesAction::Copy { name, dir, force } => engine::recipes::copy(&name, &dir, force)
                .map(|files| {
                    for f in &files {
                        println!("wrote {}", f.display());
                    }
                    println!(
                        "run it with: geusemaker run {} --name my-stack",
                        files[0].display()
                    );
                }),
        },
        Command::Unlock { name, yes } => engine::unlock(&name, yes).map(|msg| println!("{msg}")),
        Command::State { action } => state_command(action, team),
        Command::Repl {
            name,
            region,
            profile,
        } => {
            if let Some(n) = &name {
                if let Err(e) = crate::state::validate_stack_name(n) {
                    return report(&RunError::usage(e.to_string()));
                }
            }
            engine::repl::repl(engine::repl::ReplOptions {
                aws: aws_settings(region, profile, &s),
                stack: name,
            })
        }
        Command::Eval {
            expr,
            json,
            region,
            profile,
        } => engine::eval::eval(&expr, json, aws_settings(region, profile, &s))
            .map(|out| print!("{out}")),
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let shell = match shell {
                CompletionShell::Bash => clap_complete::Shell::Bash,
                CompletionShell::Zsh => clap_complete::Shell::Zsh,
                CompletionShell::Fish => clap_complete::Shell::Fish,
            };
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "geusemaker", &mut script);
            return print_generated("the completion script", &script);
        }
        Command::Man => {
            use clap::CommandFactory;
            let mut page = Vec::new();
            if let Err(e) = clap_mangen::Man::new(Cli::command()).render(&mut page) {
                eprintln!("error: rendering the man page: {e}");
                return 1;
            }
            return print_generated("the man page", &page);
        }
        Command::Docs { out } => {
            return match engine::docs::write(&out) {
                Ok(files) => {
                    for f in files {
                        println!("wrote {}", f.display());
                    }
                    0
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    1
                }
            }
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => report(&e),
    }
}

/// The state backend the flag, the project's geusemaker.toml and config.toml name.
fn state_backend(
    s: &Settings,
    flag: Option<&str>,
    profile: Option<String>,
) -> Result<(crate::config::StateSettings, crate::state::StateBackend), RunError> {
    let cwd = std::env::current_dir().unwrap_or_default();
    let project = Settings::discover_project(&cwd).map_err(|e| match e {
        ConfigError::State(s) => RunError::State(s),
        other => RunError::usage(other.to_string()),
    })?;
    let chosen = s.state(project.as_ref(), flag);
    let backend = ops::state::backend(&chosen, &aws_settings(None, profile, s))?;
    Ok((chosen, backend))
}

/// The `--profile` of a command that has one: the state bucket is reached as the same user.
fn profile_of(command: &Command) -> Option<String> {
    match command {
        Command::Run(a) => a.aws.profile.clone(),
        Command::Deploy { aws, .. } => aws.profile.clone(),
        Command::Destroy(a) | Command::Rollback { stack: a, .. } => a.aws.profile.clone(),
        Command::List { conn, .. }
        | Command::Status { conn, .. }
        | Command::Monitor { conn, .. }
        | Command::Cost { conn, .. }
        | Command::Logs { conn, .. } => conn.profile.clone(),
        Command::Repl { profile, .. } | Command::Eval { profile, .. } => profile.clone(),
        _ => None,
    }
}

fn state_command(
    action: StateAction,
    team: Option<crate::state::StateBackend>,
) -> Result<(), RunError> {
    use ops::state::Which;
    let team = match team {
        Some(t) => t,
        None => crate::state::StateBackend::current()?,
    };
    let local = || -> Result<_, RunError> {
        Ok(crate::state::StateBackend::local(
            crate::state::Home::from_env()?,
        ))
    };
    let which = |name: Option<String>, all: bool| match (name, all) {
        (Some(n), _) => Which::One(n),
        (None, _) => Which::All,
    };
    match action {
        StateAction::Show { name, json } => ops::state::show(&team, &name, json),
        StateAction::Push { name, all } => ops::state::push(&local()?, &team, which(name, all)),
        StateAction::Pull { name, all } => ops::state::pull(&local()?, &team, which(name, all)),
    }
}

fn config_command(action: ConfigAction) -> Result<(), RunError> {
    let home = crate::state::Home::from_env()?;
    let fail = |e: ConfigError| match e {
        ConfigError::State(s) => RunError::State(s),
        other => RunError::usage(other.to_string()),
    };
    match action {
        ConfigAction::Path => println!("{}", Settings::path_in(&home).display()),
        ConfigAction::List { json } => {
            let s = Settings::load(&home).map_err(fail)?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&s.to_json()).expect("settings serialize")
                );
                return Ok(());
            }
            let rows: Vec<Vec<String>> = s
                .list()
                .into_iter()
                .map(|(k, v, set)| {
                    vec![
                        k.key.to_string(),
                        v.map_or("-".into(), |v| v.to_string()),
                        if set { "config.toml" } else { "default" }.to_string(),
                        k.help.to_string(),
                    ]
                })
                .collect();
            crate::ui::Ui::detect(false).table(
                &["KEY", "VALUE", "FROM", "WHAT IT DOES"].map(String::from),
                &rows,
            );
        }
        ConfigAction::Get { key } => {
            let s = Settings::load(&home).map_err(fail)?;
            match s.get(&key).map_err(fail)? {
                (Some(v), _) => println!("{v}"),
                (None, _) => println!("(not set)"),
            }
        }
        ConfigAction::Set { key, value } => {
            let s = crate::config::write(&home, &key, Some(&value)).map_err(fail)?;
            let (v, _) = s.get(&key).map_err(fail)?;
            println!(
                "{key} = {} ({})",
                v.map_or("-".into(), |v| v.to_string()),
                s.path().display()
            );
        }
        ConfigAction::Unset { key } => {
            let s = crate::config::write(&home, &key, None).map_err(fail)?;
            let (v, _) = s.get(&key).map_err(fail)?;
            println!(
                "{key} unset; now {}",
                v.map_or("not set".into(), |v| format!("{v} (default)"))
            );
        }
    }
    Ok(())
}

fn report(e: &RunError) -> i32 {
    match e {
        // The error with its position, and what became of the stack (painted on a terminal).
        RunError::Recipe(f) | RunError::Interrupted(f) => {
            eprint!("{}", f.render(crate::engine::diag::stderr_color()))
        }
        RunError::Preflight(p) => eprint!("{}", p.render()),
        RunError::Usage(_) | RunError::State(_) => eprintln!("error: {e}"),
    }
    e.exit_code()
}
