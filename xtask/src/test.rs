//! `cargo xtask test`: build, unit tests, then the end-to-end tests as root.

use anyhow::bail;
use imds_agent_e2e::env::{AGENT_BIN_ENV, is_root};

use crate::build;
use crate::util::{cargo, run, section};

/// Crates the unit-test run leaves out: the privileged end-to-end suite (run separately,
/// with the built binary) and the eBPF crate (built for the BPF target by imds-agent's
/// build.rs, never for the host).
const E2E_PACKAGE: &str = "imds-agent-e2e";
const EBPF_PACKAGE: &str = "imds-agent-ebpf";

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Only the unit tests (no root needed).
    #[arg(long)]
    unit_only: bool,
    /// Only the end-to-end tests.
    #[arg(long, conflicts_with = "unit_only")]
    e2e_only: bool,
    #[command(flatten)]
    build: build::BuildOptions,
    /// Passed to the end-to-end test binaries after `--` (a test name filter, `--nocapture`, ...).
    #[arg(last = true)]
    args: Vec<String>,
}

pub fn test(options: &Options) -> anyhow::Result<()> {
    let Options {
        unit_only,
        e2e_only,
        build,
        args,
    } = options;
    if !unit_only && !is_root() {
        bail!(
            "the end-to-end tests need root (network namespaces, cgroups, loading eBPF): \
             run `sudo -E env PATH=\"$PATH\" cargo xtask test`, or `cargo xtask test --unit-only`"
        );
    }
    let bin = build::build(build)?;

    // Run both suites even when the first fails, so one run shows every failure.
    let mut failed = Vec::new();
    if !e2e_only {
        section("unit tests");
        if let Err(e) = run(cargo().args([
            "test",
            "--workspace",
            "--exclude",
            E2E_PACKAGE,
            "--exclude",
            EBPF_PACKAGE,
            "--no-fail-fast",
        ])) {
            eprintln!("{e:#}");
            failed.push("unit tests");
        }
    }
    if !unit_only {
        section(&format!(
            "end-to-end tests ({AGENT_BIN_ENV}={})",
            bin.display()
        ));
        if let Err(e) = run(cargo()
            .args(["test", "--package", E2E_PACKAGE, "--no-fail-fast", "--"])
            .args(args)
            .env(AGENT_BIN_ENV, &bin))
        {
            eprintln!("{e:#}");
            failed.push("end-to-end tests");
        }
    }
    if !failed.is_empty() {
        bail!("failed: {}", failed.join(", "));
    }
    section("all tests passed");
    Ok(())
}
