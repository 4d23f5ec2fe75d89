//! Command-line interface: clap definitions only; each command is a thin call into the runtime.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

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

#[derive(Debug, Parser)]
#[command(
    name = "geusemaker",
    version = VERSION,
    about = "Stand up a private AI stack on AWS from readable Rhai recipes",
    long_about = "GeuseMaker runs deployment recipes (Rhai scripts) that call typed AWS primitives.\n\
                  Credentials and region come from the standard AWS chain (environment, ~/.aws, SSO);\n\
                  AWS_ENDPOINT_URL points it at a local emulator such as moto.",
    after_help = "Examples:\n  geusemaker run dev --name my-stack --set allowed_cidr=203.0.113.7/32\n  geusemaker destroy my-stack"
)]
pub struct Cli {
    /// More log output on stderr (-v info, -vv debug, -vvv trace including the AWS SDK).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,

    /// Where stack state lives: `local` ($GEUSEMAKER_HOME) or `s3://BUCKET/PREFIX`, shared by a
    /// team (default: `[state] url` in the project's geusemaker.toml, then in config.toml).
    #[arg(long, global = true, env = "GEUSEMAKER_STATE", value_name = "URL")]
    pub state: Option<String>,

    /// Without a command, on a terminal: the interactive deploy (see `deploy`).
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe against a stack (creating or converging it).
    Run(RunArgs),
    /// Interactive deploy from the recipes' headers: pick a tier, name the stack, answer its
    /// params (VPCs and subnets offered), read the cost estimate, confirm. Without a terminal
    /// it asks nothing and is `run`.
    Deploy {
        /// A recipe (default: chosen from the tiers on offer).
        recipe: Option<String>,
        /// The stack (default: asked).
        #[arg(long, short = 'n')]
        name: Option<String>,
        #[command(flatten)]
        aws: AwsArgs,
    },
    /// Delete a stack's resources (the bundled destroy recipe); data is kept unless --set delete_data=true.
    Destroy(StackArgs),
    /// Put a stack back to its last healthy deploy (the bundled rollback recipe).
    Rollback {
        #[command(flatten)]
        stack: StackArgs,
        /// Why: recorded in the stack's rollback history.
        #[arg(long, value_enum, default_value_t = Trigger::Manual)]
        trigger: Trigger,
    },
    /// Explore an AWS account (and prototype a recipe) with the recipes' primitives.
    Repl {
        /// A stack to work on: create primitives then work and are recorded in its ledger.
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// AWS region (default: AWS_REGION or the profile's region).
        #[arg(long)]
        region: Option<String>,
        /// AWS profile from ~/.aws/config.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Evaluate one expression against the account and print the result (a table, or JSON).
    Eval {
        /// A Rhai expression, e.g. 'ec2::vpcs()' or 'stacks()'.
        expr: String,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// AWS region (default: AWS_REGION or the profile's region).
        #[arg(long)]
        region: Option<String>,
        /// AWS profile from ~/.aws/config.
        #[arg(long)]
        profile: Option<String>,
    },
    /// Every stack: tier, status, region, age, instance, URL, cost to date.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// A stack's instance, services' health, load balancer, CDN, last rollback, missing resources.
    Status {
        /// The stack.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Check a stack's services every interval; roll back when n8n or PostgreSQL keep failing,
    /// relaunch when the spot instance is interrupted. Ctrl-C stops.
    Monitor {
        /// The stack.
        name: String,
        /// Time between checks, e.g. 30s, 1m (default: the `health.interval` setting, 30s).
        #[arg(long, value_parser = parse_interval)]
        interval: Option<std::time::Duration>,
        /// Stop after this many rounds (default: until Ctrl-C).
        #[arg(long)]
        rounds: Option<u32>,
        /// Report critical services and interruptions, but do not roll back or relaunch.
        #[arg(long)]
        no_rollback: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// What a stack costs: hourly rate, monthly estimate, cost to date, savings against on-demand.
    Cost {
        /// The stack.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// The services' Docker Compose logs from the instance, through SSM.
    Logs {
        /// The stack.
        name: String,
        /// One service: n8n, ollama, qdrant, crawl4ai or postgres.
        #[arg(long, short = 's')]
        service: Option<String>,
        /// Keep fetching new lines until Ctrl-C.
        #[arg(long, short = 'f')]
        follow: bool,
        /// How far back to start, e.g. 10m, 1h.
        #[arg(long, default_value = "10m")]
        since: String,
        /// The instance's boot log (/var/log/geusemaker-boot.log) instead of the services'.
        #[arg(long, conflicts_with_all = ["service", "follow"])]
        boot: bool,
        #[command(flatten)]
        conn: ConnArgs,
    },
    /// Recipes: the ones you can run, their params, a copy of a bundled one to edit.
    Recipes {
        #[command(subcommand)]
        action: RecipesAction,
    },
    /// Check recipes without running them: header, syntax, imports, unknown functions, arity,
    /// params. Exit status 1 on any error (for CI).
    Check {
        /// Recipe files or bundled recipe names.
        #[arg(required = true)]
        recipes: Vec<String>,
    },
    /// The least-privilege IAM policy (JSON) for running a recipe and destroying what it made.
    Policy {
        /// A recipe file or a bundled recipe name.
        recipe: String,
        /// Scope iam:PassRole to this stack's roles (default: any role, passed to EC2 only).
        #[arg(long, short = 'n')]
        name: Option<String>,
        /// Recipe params that change what it creates (repeatable).
        #[arg(long = "set", value_name = "KEY=VALUE")]
        sets: Vec<String>,
    },
    /// Read and change user settings ($GEUSEMAKER_HOME/config.toml).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Release a stack's lock left by a process that is gone (a shared lock after a
    /// confirmation naming its holder).
    Unlock {
        /// The stack.
        name: String,
        /// Answer yes to the confirmation (required without a terminal).
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Where stack state lives; move stacks between this machine and the team's S3 bucket.
    State {
        #[command(subcommand)]
        action: StateAction,
    },
    /// Write the primitives reference (Markdown) and Rhai editor definitions (.d.rhai).
    Docs {
        /// Output directory.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
    },
    /// Print a shell completion script, e.g. `geusemaker completions bash > /etc/bash_completion.d/geusemaker`.
    Completions {
        /// The shell.
        shell: CompletionShell,
    },
    /// Print the man page (roff), e.g. `geusemaker man > /usr/local/share/man/man1/geusemaker.1`.
    Man,
}

/// Write generated text to stdout; a reader that stops early (`| head`) is not an error.
fn print_generated(what: &str, bytes: &[u8]) -> i32 {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Ok(()) => 0,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => 0,
        Err(e) => {
            eprintln!("error: writing {what}: {e}");
            1
        }
    }
}

/// Shells `completions` writes for.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum CompletionShell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Debug, Subcommand)]
pub enum RecipesAction {
    /// Bundled recipes, and those in ./recipes and . (files with a header).
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// A recipe's name, version, description and params (type, default, checks, help).
    Show {
        /// A recipe file or a bundled recipe name.
        recipe: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add a shared recipe source to the project (geusemaker.toml), fetch it and lock it.
    Add {
        /// What imports call it: `import "NAME/gpu-tier"`.
        name: String,
        /// A git repository URL (https://…, git@…, file://…) or a directory.
        source: String,
        /// The tag or commit of a git source.
        #[arg(long)]
        rev: Option<String>,
    },
    /// Fetch the project's sources again (tags may have moved) and rewrite geusemaker.lock.
    Update {
        /// Only these sources (default: all).
        names: Vec<String>,
    },
    /// Copy a bundled recipe, and the stdlib modules it imports, into a directory to edit.
    Copy {
        /// A bundled recipe: dev, automation, gpu, quickstart, destroy, rollback.
        name: String,
        /// Where to write it (default: the current directory).
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Replace files that exist.
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum StateAction {
    /// Where a stack's state lives: its document's location and version, its lock's holder.
    Show {
        /// The stack.
        name: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Move stacks from this machine to the team backend (`[state] url` or --state): written
    /// there, read back, then removed here, with both locks held.
    Push {
        /// The stack.
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Every stack on this machine.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
    /// Move stacks from the team backend back to this machine.
    Pull {
        /// The stack.
        #[arg(required_unless_present = "all")]
        name: Option<String>,
        /// Every stack in the team backend.
        #[arg(long, conflicts_with = "name")]
        all: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Every setting: its value, where it comes from, what it does.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The value of one setting, e.g. `health.interval`.
    Get { key: String },
    /// Set one setting, e.g. `geusemaker config set aws.region eu-west-1`.
    Set { key: String, value: String },
    /// Remove one setting (back to its default).
    Unset { key: String },
    /// Where the settings file is.
    Path,
}

/// Flags of the commands that read a stack from AWS.
#[derive(Debug, Args)]
pub struct ConnArgs {
    /// AWS region (default: the stack's region).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config.
    #[arg(long)]
    pub profile: Option<String>,
}

fn parse_interval(s: &str) -> Result<std::time::Duration, String> {
    crate::config::parse_duration(s)
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Trigger {
    Manual,
    HealthCheckFailed,
    Timeout,
    SpotInterruption,
}

impl Trigger {
    fn as_str(self) -> &'static str {
        match self {
            Trigger::Manual => "manual",
            Trigger::HealthCheckFailed => "health_check_failed",
            Trigger::Timeout => "timeout",
            Trigger::SpotInterruption => "spot_interruption",
        }
    }
}

/// Flags every command that talks to AWS takes.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// AWS region (default: the stack's region, AWS_REGION, or the profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config.
    #[arg(long)]
    pub profile: Option<String>,
    /// Answer yes to confirmations (required for confirmations without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Set a recipe param (repeatable): --set instance_type=t3.large
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A recipe file (recipes/dev.rhai) or the name of a bundled recipe (dev); default: the
    /// `deploy.tier` setting (dev).
    pub recipe: Option<String>,
    /// The stack: 2-63 characters, lowercase letters, digits and `-`, starting with a letter.
    #[arg(long, short = 'n')]
    pub name: String,
    /// Keep what a failed run created (no automatic rollback), for debugging.
    #[arg(long)]
    pub keep_failed: bool,
    /// Show what the recipe would create and call, without AWS calls or credentials; nothing
    /// is written.
    #[arg(long)]
    pub plan: bool,
    /// With --plan: print each instance's user data (the boot script, with the compose file).
    #[arg(long, requires = "plan")]
    pub show_user_data: bool,
    /// With --plan on a live stack: the diff as JSON on stdout.
    #[arg(long, requires = "plan")]
    pub json: bool,
    #[command(flatten)]
    pub aws: AwsArgs,
}

#[derive(Debug, Args)]
pub struct StackArgs {
    /// The stack.
    pub name: String,
    #[command(flatten)]
    pub aws: AwsArgs,
}

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
            trigger.as_str(),
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
        // Rendered diagnostics and run reports: they carry their own `error:` line (painted on
        // a terminal).
        RunError::Recipe(text) | RunError::Interrupted(text) => {
            eprint!("{text}");
            if !text.ends_with('\n') {
                eprintln!();
            }
        }
        RunError::Preflight(p) => eprint!("{}", p.render()),
        RunError::Usage(_) | RunError::State(_) => eprintln!("error: {e}"),
    }
    e.exit_code()
}
