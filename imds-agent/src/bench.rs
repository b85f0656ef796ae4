//! `imds-agent bench-skb` (hidden; driven by `cargo xtask bench`): what the egress program
//! costs on packets that are not IMDS traffic, next to an empty cgroup_skb program, measured
//! side by side in one run two ways:
//!
//! 1. `BPF_PROG_TEST_RUN` on the same hand-built TCP packet, many repeats: kernel-measured
//!    ns per run with no traffic at all.
//! 2. `bpf_stats` (`BPF_ENABLE_STATS`): both programs attached to egress of one cgroup while
//!    the caller sends real traffic from it; run time / run count per program.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::programs::{CgroupAttachMode, CgroupSkbAttachType, TestRun as _, TestRunOptions};
use serde_json::json;

use crate::{kernel, preflight, process};

/// Egress programs compared.
const EGRESS: &str = "imds_egress";

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// BPF_PROG_TEST_RUN repeat count per program.
    #[arg(long, default_value_t = 1_000_000)]
    pub repeat: u32,
    /// Also attach both programs to this cgroup v2 directory and measure real traffic with
    /// bpf_stats until SIGTERM/SIGINT or --seconds.
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// How long to measure real traffic.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Print this line on stderr once attached (lets a driver start its traffic).
    #[arg(long, default_value = "bench ready")]
    pub ready_line: String,
}

/// An Ethernet + IPv4 + TCP packet to 192.0.2.1:443 (TEST-NET-1) with 100 bytes of
/// payload. Never sent: it only feeds BPF_PROG_TEST_RUN.
fn non_imds_packet() -> Vec<u8> {
    let payload = 100usize;
    let mut p = Vec::with_capacity(14 + 40 + payload);
    p.extend_from_slice(&[0x02, 0, 0, 0, 0, 1, 0x02, 0, 0, 0, 0, 2, 0x08, 0x00]);
    let total = (40 + payload) as u16;
    p.extend_from_slice(&[0x45, 0, (total >> 8) as u8, total as u8, 0, 0, 0x40, 0, 64, 6, 0, 0]);
    p.extend_from_slice(&[10, 0, 0, 1, 192, 0, 2, 1]);
    p.extend_from_slice(&[0xa0, 0x00, 0x01, 0xbb, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    p.resize(p.len() + payload, b'x');
    p
}

pub fn bench_skb(args: BenchArgs) -> Result<()> {
    preflight::check_privileges()?;
    let offsets = kernel::offsets::from_running_kernel().unwrap_or_default();
    let mut ebpf = kernel::load_object(offsets, 1 << 20)?;
    for name in [EGRESS, kernel::NOOP_PROGRAM] {
        kernel::skb(&mut ebpf, name)?
            .load()
            .with_context(|| format!("loading {name}"))?;
    }
    let packet = non_imds_packet();
    let mut test_run = serde_json::Map::new();
    for name in [EGRESS, kernel::NOOP_PROGRAM] {
        let prog = kernel::skb(&mut ebpf, name)?;
        let r = prog
            .test_run(TestRunOptions {
                data_in: Some(&packet),
                repeat: args.repeat,
                ..TestRunOptions::default()
            })
            .with_context(|| format!("BPF_PROG_TEST_RUN {name}"))?;
        anyhow::ensure!(r.return_value == 1, "{name} returned {} (must pass every packet)", r.return_value);
        test_run.insert(name.into(), json!({ "ns_per_packet": r.duration.as_nanos() as f64 }));
    }
    let mut result = json!({ "test_run": test_run, "repeat": args.repeat });

    if let Some(cgroup) = &args.cgroup {
        let root = process::cgroup2_mount()?;
        let cgroup = preflight::resolve_cgroup(&root, Some(cgroup))?;
        let cg = std::fs::File::open(&cgroup).context("opening the cgroup")?;
        let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).context("BPF_ENABLE_STATS")?;
        let mut before = Vec::new();
        for name in [EGRESS, kernel::NOOP_PROGRAM] {
            let prog = kernel::skb(&mut ebpf, name)?;
            prog.attach(&cg, CgroupSkbAttachType::Egress, CgroupAttachMode::Single)
                .with_context(|| format!("attaching {name}"))?;
            let info = prog.info().context("program info")?;
            before.push((info.run_count(), info.run_time()));
        }
        eprintln!("{}", args.ready_line);
        let deadline = Instant::now() + Duration::from_secs(args.seconds);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        rt.block_on(async {
            let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::time::sleep_until(deadline.into()) => {}
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            anyhow::Ok(())
        })?;
        let mut stats = serde_json::Map::new();
        for (i, name) in [EGRESS, kernel::NOOP_PROGRAM].into_iter().enumerate() {
            let info = kernel::skb(&mut ebpf, name)?.info().context("program info")?;
            let runs = info.run_count() - before[i].0;
            let time = info.run_time().saturating_sub(before[i].1);
            stats.insert(
                name.into(),
                json!({
                    "packets": runs,
                    "ns_per_packet": if runs > 0 { time.as_nanos() as f64 / runs as f64 } else { 0.0 },
                }),
            );
        }
        result["bpf_stats"] = json!(stats);
    }
    println!("{result}");
    Ok(())
}
