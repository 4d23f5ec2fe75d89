//! Command-line interface: clap definitions only; each command is a thin call into the runtime.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

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
    after_help = "Example:\n  geusemaker run recipes/quickstart.rhai --name my-stack --set instance_type=t3.large"
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
    /// Write the primitives reference (Markdown) and Rhai editor definitions (.d.rhai).
    Docs {
        /// Output directory.
        #[arg(long, default_value = "docs")]
        out: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// A recipe file (recipes/dev.rhai) or the name of a bundled recipe (dev).
    pub recipe: String,
    /// The stack: 2-63 characters, lowercase letters, digits and `-`, starting with a letter.
    #[arg(long, short = 'n')]
    pub name: String,
    /// Set a recipe param (repeatable): --set instance_type=t3.large
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub sets: Vec<String>,
    /// AWS region (default: AWS_REGION or the profile's region).
    #[arg(long)]
    pub region: Option<String>,
    /// AWS profile from ~/.aws/config.
    #[arg(long)]
    pub profile: Option<String>,
    /// Answer yes to confirmations (required for confirmations without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
}

/// Run the parsed command; returns the process exit code.
pub fn dispatch(cli: Cli) -> i32 {
    match cli.command {
        Command::Run(a) => {
            let req = RunRequest {
                recipe: a.recipe,
                stack: a.name,
                sets: a.sets,
                aws: AwsSettings {
                    region: a.region,
                    profile: a.profile,
                },
                assume_yes: a.yes,
            };
            match engine::run(req) {
                Ok(_) => 0,
                Err(e) => report(&e),
            }
        }
        Command::Docs { out } => match engine::docs::write(&out) {
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
        },
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
