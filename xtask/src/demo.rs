//! `cargo xtask demo`: the agent watching real clients talk to a mock IMDS.
//!
//! A network namespace holds the IMDS addresses and the mock (nothing leaves it), a child
//! cgroup holds the clients, and the agent, attached to that cgroup, prints one JSON line per
//! request on stdout. Commentary goes to stderr, so `cargo xtask demo | jq` works.
//! Everything is torn down by guards, also on Ctrl-C.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use imds_agent_e2e::agent::Output;
use imds_agent_e2e::client::{display_argv, run_client};
use imds_agent_e2e::env::{self, is_root};
use imds_agent_e2e::{Agent, AgentOptions, MockOptions, NetNs, TestCgroup};
use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, Signal, sigaction};

use crate::build;
use crate::util::section;

/// Set by the SIGINT handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigint(_: std::ffi::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    build: build::BuildOptions,
    /// Use this agent binary instead of building one.
    #[arg(long, env = imds_agent_e2e::env::AGENT_BIN_ENV)]
    agent_bin: Option<std::path::PathBuf>,
    /// Seconds to wait after the last client before stopping the agent.
    #[arg(long, default_value_t = 2)]
    linger: u64,
}

pub fn demo(options: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!(
            "the demo needs root (network namespace, cgroup, eBPF): run `sudo -E env PATH=\"$PATH\" cargo xtask demo`"
        );
    }
    let bin = match &options.agent_bin {
        Some(bin) => bin.clone(),
        None => build::build(&options.build)?,
    };
    let python = env::python3()?;
    // Ctrl-C reaches the whole foreground process group (mock, clients); we finish in order.
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        sigaction(
            Signal::SIGINT,
            &SigAction::new(
                SigHandler::Handler(on_sigint),
                SaFlags::empty(),
                SigSet::empty(),
            ),
        )
    }
    .context("installing the SIGINT handler")?;

    let name = env::unique_name();
    section(&format!(
        "network namespace {name}: 169.254.169.254 and fd00:ec2::254 on lo, mock IMDS on :80"
    ));
    let netns = NetNs::create(&name, &MockOptions::default())?;
    let cgroup = TestCgroup::create(&name)?;
    section(&format!(
        "agent attached to cgroup {}",
        cgroup.path().display()
    ));
    // The demo keeps its inventory, and writes the readiness report from it at the end.
    let report_dir = crate::util::workspace_root().join("target/demo");
    std::fs::create_dir_all(&report_dir).context("creating target/demo")?;
    let db = report_dir.join("inventory.sqlite");
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    let mut agent = Agent::start_with_args(
        cgroup.path(),
        &AgentOptions {
            bin: Some(bin.clone()),
            output: Output::InheritStdout,
            echo_stderr: true,
            // So Ctrl-C does not hit it directly: we stop it with SIGTERM, after the clients.
            own_process_group: true,
        },
        &["--db".into(), db.clone().into()],
    )?;

    let token_flow = "TOKEN=$(curl -s -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' \
                      http://169.254.169.254/latest/api/token) && \
                      curl -s -H \"X-aws-ec2-metadata-token: $TOKEN\" \
                      http://169.254.169.254/latest/meta-data/instance-id";
    let python = python.to_string_lossy().into_owned();
    let urllib = env::client_script("urllib_get.py")
        .to_string_lossy()
        .into_owned();
    let clients: [(&str, Vec<&str>); 4] = [
        (
            "IMDSv1: curl without a token",
            vec![
                "curl",
                "-s",
                "http://169.254.169.254/latest/meta-data/instance-id",
            ],
        ),
        (
            "IMDSv2: the token flow (PUT, then GET with the token)",
            vec!["sh", "-c", token_flow],
        ),
        ("IMDSv1: Python urllib", vec![&python, &urllib]),
        (
            "IMDSv1 over IPv6: curl",
            vec![
                "curl",
                "-s",
                "-g",
                "http://[fd00:ec2::254]/latest/meta-data/instance-id",
            ],
        ),
    ];
    for (what, argv) in &clients {
        if interrupted() {
            break;
        }
        section(&format!("client: {what}"));
        eprintln!("$ {}", display_argv(argv));
        let run = run_client(&netns, &cgroup, argv)?;
        eprintln!(
            "-> pid {}, {}, answer {:?}",
            run.pid,
            run.status,
            run.stdout.trim()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(options.linger);
    while !interrupted() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }

    section("stopping the agent (SIGTERM) and tearing down");
    let output = agent.try_stop(Signal::SIGTERM);
    drop(cgroup);
    drop(netns);
    let output = output?;
    if !output.status.success() {
        bail!("the agent exited with {}", output.status);
    }
    eprintln!("done: agent exited 0; namespace and cgroup removed");

    section(&format!("readiness report (imds-agent report --db {} --since 2m)", db.display()));
    for (format, ext) in [("json", "json"), ("markdown", "md"), ("html", "html"), ("table", "txt")] {
        let out = report_dir.join(format!("report.{ext}"));
        let status = std::process::Command::new(&bin)
            .args(["report", "--since", "2m", "--format", format, "--db"])
            .arg(&db)
            .arg("--output")
            .arg(&out)
            .status()
            .context("running imds-agent report")?;
        // 1 is NOT READY (expected: the demo makes v1 calls); 2 would be an error.
        if status.code() == Some(2) || status.code().is_none() {
            bail!("imds-agent report --format {format} failed ({status})");
        }
        eprintln!("wrote {} (exit {})", out.display(), status.code().unwrap_or(-1));
    }
    eprintln!("{}", std::fs::read_to_string(report_dir.join("report.txt")).unwrap_or_default());
    Ok(())
}
