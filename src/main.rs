use clap::Parser;

fn main() {
    let cli = geusemaker::cli::Cli::parse();
    init_tracing(cli.verbose);
    std::process::exit(geusemaker::cli::dispatch(cli));
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "geusemaker=info,warn",
        2 => "geusemaker=debug,info",
        _ => "trace",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("GEUSEMAKER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
}
