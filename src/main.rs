use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use clap::Parser;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use geusemaker::cli::{Cli, Command};

fn main() {
    let cli = Cli::parse();
    init_tracing(&cli);
    std::process::exit(geusemaker::cli::dispatch(cli));
}

/// Logs go to stderr at the `-v` level, and — for runs — to `$GEUSEMAKER_HOME/logs/<stack>.log`
/// at debug level, so every run of a stack leaves an audit trail (API calls, creates, outcome).
fn init_tracing(cli: &Cli) {
    let default = match cli.verbose {
        // The SDK's own warnings (credential chain probes, IMDS) only with -v: errors reach the
        // user through geusemaker's messages.
        0 => "geusemaker=warn",
        1 => "geusemaker=info,warn",
        2 => "geusemaker=debug,info",
        _ => "trace",
    };
    let stderr_filter =
        EnvFilter::try_from_env("GEUSEMAKER_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_filter(stderr_filter);
    let file = cli.command.as_ref().and_then(stack_log_for).map(|f| {
        tracing_subscriber::fmt::layer()
            .with_writer(Mutex::new(f))
            .with_ansi(false)
            .with_target(false)
            .with_filter(EnvFilter::new("geusemaker=debug,warn"))
    });
    tracing_subscriber::registry()
        .with(stderr)
        .with(file)
        .init();
}

/// The stack log a command writes to, if any.
fn stack_log_for(command: &Command) -> Option<std::fs::File> {
    match command {
        // A plan writes nothing, not even a log.
        Command::Run(args) if !args.plan => stack_log(&args.name),
        Command::Destroy(args) | Command::Rollback { stack: args, .. } => stack_log(&args.name),
        // Every check of the monitor, and the rollbacks it starts, go to the stack's log.
        Command::Monitor { name, .. } => stack_log(name),
        Command::Deploy { name: Some(n), .. } => stack_log(n),
        _ => None,
    }
}

fn stack_log(stack: &str) -> Option<std::fs::File> {
    geusemaker::state::validate_stack_name(stack).ok()?;
    let home = geusemaker::state::Home::from_env().ok()?;
    home.ensure().ok()?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(home.logs_dir().join(format!("{stack}.log")))
        .ok()
}
