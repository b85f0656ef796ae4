//! Developer tasks for imds-agent: `cargo xtask <build|test|run|demo|bench>`.
//!
//! Building itself is cargo's job (imds-agent's build.rs compiles the eBPF programs with
//! aya-build); xtask adds what cargo cannot: installing the BPF toolchain, running the
//! privileged end-to-end tests with the freshly built binary, and a live demo.

mod bench;
mod build;
mod demo;
mod run;
mod test;
mod util;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "imds-agent developer tasks"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Install the BPF toolchain if missing (nightly + rust-src, bpf-linker) and build the
    /// release agent; prints the binary's path.
    Build(build::BuildOptions),
    /// Build, run the unit tests, then the end-to-end tests as root.
    Test(test::Options),
    /// Build and run the agent: `cargo xtask run -- run --cgroup /sys/fs/cgroup/...`.
    Run(run::Options),
    /// Live demo: a network namespace with a mock IMDS, real clients, the agent's JSON on
    /// stdout. Needs root.
    Demo(demo::Options),
    /// Measure the egress program against an empty cgroup_skb program on the same traffic
    /// (BPF_PROG_TEST_RUN and bpf_stats), side by side in one run. Needs root.
    Bench(bench::Options),
}

fn main() -> anyhow::Result<()> {
    let Cli { command } = Cli::parse();
    match command {
        Command::Build(options) => {
            let bin = build::build(&options)?;
            println!("{}", bin.display());
            Ok(())
        }
        Command::Test(options) => test::test(&options),
        Command::Run(options) => run::run(&options),
        Command::Demo(options) => demo::demo(&options),
        Command::Bench(options) => bench::bench(&options),
    }
}
