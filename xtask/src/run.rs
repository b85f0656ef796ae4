//! `cargo xtask run [-- <agent args>]`: build, then replace ourselves with the agent. With no
//! arguments the agent runs as `imds-agent run` (the whole host, JSON lines on stdout).

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use crate::build;

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    build: build::BuildOptions,
    /// Arguments for the agent, after `--`: a subcommand and its flags
    /// (`run --cgroup system.slice`), or just `run` flags (`--output /tmp/imds.jsonl`).
    /// Default: `run`.
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let bin = build::build(&options.build)?;
    let mut args = options.args.clone();
    // Flags alone (or nothing) mean the `run` subcommand.
    if args.first().is_none_or(|a| a.starts_with('-') && a != "-h" && a != "--help" && a != "--version") {
        args.insert(0, "run".into());
    }
    eprintln!("$ {} {}", bin.display(), args.join(" "));
    // exec only returns on failure.
    let error = Command::new(&bin).args(&args).exec();
    Err(anyhow::Error::new(error).context(format!("executing {}", bin.display())))
}
