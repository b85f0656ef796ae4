use std::process::ExitCode;

use clap::Parser as _;
use imds_agent::{bench, cli, report_cmd, run};

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    let mut filter = tracing_subscriber::EnvFilter::try_new(&cli.log_level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // kube logs every retry during an API outage; the pod cache reports outages itself.
    for directive in imds_agent::workload::k8s::QUIET_KUBE_LOGS {
        if let Ok(d) = directive.parse() {
            filter = filter.add_directive(d);
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .init();
    let result = match cli.command {
        cli::Command::Run(args) => run::run(args).map(|()| 0),
        cli::Command::Report(args) => match report_cmd::report(&args) {
            Ok(code) => Ok(code),
            Err(err) => {
                // A gate in a pipeline: errors are 2, distinct from NOT READY (1).
                eprintln!("imds-agent: error: {err:#}");
                return ExitCode::from(2);
            }
        },
        cli::Command::BenchSkb(args) => bench::bench_skb(args).map(|()| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(2)),
        Err(err) => {
            // One line: what is wrong and, where we know it, what to do.
            eprintln!("imds-agent: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
