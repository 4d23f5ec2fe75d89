//! What the command line takes: the commands, their flags and arguments (clap derive).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use super::*;

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
pub(super) fn print_generated(what: &str, bytes: &[u8]) -> i32 {
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

impl From<Trigger> for crate::state::RollbackTrigger {
    fn from(t: Trigger) -> Self {
        use crate::state::RollbackTrigger as R;
        match t {
            Trigger::Manual => R::Manual,
            Trigger::HealthCheckFailed => R::HealthCheckFailed,
            Trigger::Timeout => R::Timeout,
            Trigger::SpotInterruption => R::SpotInterruption,
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
