//! `cargo xtask run -- <agent args>`: build, then replace ourselves with the agent.

use std::os::unix::process::CommandExt as _;
use std::process::Command;

use crate::build;

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    build: build::BuildOptions,
    /// Arguments for the agent, after `--` (e.g. `run --cgroup /sys/fs/cgroup/unified`).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn run(options: &Options) -> anyhow::Result<()> {
    let bin = build::build(&options.build)?;
    eprintln!("$ {} {}", bin.display(), options.args.join(" "));
    // exec only returns on failure.
    let error = Command::new(&bin).args(&options.args).exec();
    Err(anyhow::Error::new(error).context(format!("executing {}", bin.display())))
}
