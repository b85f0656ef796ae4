//! `cargo xtask build`: the BPF toolchain, then the release agent.
//!
//! imds-agent's build.rs builds the kernel programs through aya-build, which runs
//! `cargo +nightly build -Z build-std=core --target bpfel-unknown-none` and links with
//! bpf-linker. Both need installing once per machine; everything else is plain cargo.

use std::io::BufReader;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};
use cargo_metadata::Message;

use crate::util::{cargo, describe, on_path, output, run, section};

/// The toolchain aya-build compiles the eBPF crate with.
const NIGHTLY: &str = "nightly";
/// bpf-linker release known to work with aya 0.14 / aya-build 0.2 (it links against the
/// LLVM that ships with rustc, so no system LLVM is needed).
const BPF_LINKER: &str = "bpf-linker@0.10.0";
/// The package and binary target of the agent.
const AGENT_PACKAGE: &str = "imds-agent";
const AGENT_BIN: &str = "imds-agent";

#[derive(Debug, Default, clap::Args)]
pub struct BuildOptions {
    /// Do not check or install nightly, rust-src and bpf-linker.
    #[arg(long)]
    pub no_toolchain: bool,
}

/// Ensure the toolchain, build the release agent, return the binary's path.
pub fn build(options: &BuildOptions) -> anyhow::Result<PathBuf> {
    if !options.no_toolchain {
        ensure_toolchain()?;
    }
    section("building the agent (release)");
    let mut cmd = cargo();
    cmd.args([
        "build",
        "--release",
        "--package",
        AGENT_PACKAGE,
        "--bin",
        AGENT_BIN,
    ])
    .args(["--message-format", "json-render-diagnostics"])
    .stdout(Stdio::piped());
    eprintln!("$ {}", describe(&cmd));
    let mut child = cmd.spawn().context("starting cargo build")?;
    let stdout = child.stdout.take().context("cargo build stdout")?;
    let mut binary = None;
    for message in Message::parse_stream(BufReader::new(stdout)) {
        if let Message::CompilerArtifact(artifact) =
            message.context("reading cargo's JSON messages")?
            && artifact.target.name == AGENT_BIN
            && let Some(executable) = artifact.executable
        {
            binary = Some(PathBuf::from(executable));
        }
    }
    let status = child.wait().context("waiting for cargo build")?;
    if !status.success() {
        bail!("building {AGENT_PACKAGE} failed: {status}");
    }
    binary.with_context(|| format!("cargo built no `{AGENT_BIN}` executable"))
}

/// nightly + rust-src (for `-Z build-std=core`) and bpf-linker, installed only if missing.
pub fn ensure_toolchain() -> anyhow::Result<()> {
    section("BPF toolchain");
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))
        .context("rustup is needed to install the nightly toolchain aya-build uses")?;
    if !toolchains
        .lines()
        .any(|l| l.starts_with(&format!("{NIGHTLY}-")) || l.trim() == NIGHTLY)
    {
        run(Command::new("rustup").args([
            "toolchain",
            "install",
            NIGHTLY,
            "--profile",
            "minimal",
        ]))?;
    }
    let components = output(Command::new("rustup").args([
        "component",
        "list",
        "--installed",
        "--toolchain",
        NIGHTLY,
    ]))?;
    if !components.lines().any(|l| l.starts_with("rust-src")) {
        run(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", NIGHTLY]))?;
    }
    if !on_path("bpf-linker") {
        // `cargo +nightly` needs the rustup proxy, not the toolchain's cargo in $CARGO.
        run(Command::new("cargo").args([
            &format!("+{NIGHTLY}"),
            "install",
            BPF_LINKER,
            "--locked",
        ]))?;
        if !on_path("bpf-linker") {
            bail!("bpf-linker was installed but is not on PATH; add ~/.cargo/bin to PATH");
        }
    }
    eprintln!("nightly, rust-src and bpf-linker are present");
    Ok(())
}
