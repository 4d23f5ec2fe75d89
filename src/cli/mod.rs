//! Command-line interface: clap definitions only; each command is a thin call into the runtime.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::cloud::AwsSettings;
use crate::engine::{self, RunError, RunRequest};

#[derive(Debug, Parser)]
#[command(
    name = "geusemaker",
    version,
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

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a recipe against a stack (creating or converging it).
    Run(RunArgs),
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
    /// Release a stack's lock left by a process that is gone.
    Unlock {
        /// The stack.
        name: String,
    },
    /// Write the primitives reference (Markdown) and Rhai editor definitions (.d.rhai).
    Docs {
        /// Output directory.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
    },
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
    /// A recipe file (recipes/dev.rhai) or the name of a bundled recipe (dev).
    pub recipe: String,
    /// The stack: 2-63 characters, lowercase letters, digits and `-`, starting with a letter.
    #[arg(long, short = 'n')]
    pub name: String,
    /// Keep what a failed run created (no automatic rollback), for debugging.
    #[arg(long)]
    pub keep_failed: bool,
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

fn request(recipe: &str, name: String, aws: AwsArgs, keep_failed: bool) -> RunRequest {
    RunRequest {
        recipe: recipe.to_string(),
        stack: name,
        sets: aws.sets,
        aws: AwsSettings {
            region: aws.region,
            profile: aws.profile,
        },
        assume_yes: aws.yes,
        keep_failed,
    }
}

/// Run the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    let result = match cli.command {
        Command::Run(a) => {
            engine::run(request(&a.recipe, a.name, a.aws, a.keep_failed)).map(|_| ())
        }
        Command::Destroy(a) => engine::destroy(request("destroy", a.name, a.aws, true)).map(|_| ()),
        Command::Rollback { stack, trigger } => engine::rollback(
            request("rollback", stack.name, stack.aws, false),
            trigger.as_str(),
        )
        .map(|_| ()),
        Command::Unlock { name } => engine::unlock(&name).map(|msg| println!("{msg}")),
        Command::Repl {
            name,
            region,
            profile,
        } => {
            if let Some(n) = &name {
                if let Err(e) = crate::state::validate_stack_name(n) {
                    return report(&RunError::Usage(e.to_string()));
                }
            }
            engine::repl::repl(engine::repl::ReplOptions {
                aws: AwsSettings { region, profile },
                stack: name,
            })
        }
        Command::Eval {
            expr,
            json,
            region,
            profile,
        } => engine::eval::eval(&expr, json, AwsSettings { region, profile })
            .map(|out| print!("{out}")),
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

fn report(e: &RunError) -> i32 {
    let text = e.to_string();
    if text.starts_with("error:") {
        eprint!("{text}");
        if !text.ends_with('\n') {
            eprintln!();
        }
    } else {
        eprintln!("error: {text}");
    }
    e.exit_code()
}
