//! `cargo xtask bench`: what the agent costs, measured side by side in one run, reported as
//! numbers and ratios (never asserted: the machines are shared and noisy).
//!
//! Egress cost on packets that are not IMDS traffic, the agent's `imds_egress` next to an
//! empty cgroup_skb program (`noop_skb`), two ways:
//! 1. BPF_PROG_TEST_RUN on one hand-built non-IMDS TCP packet (`imds-agent bench-skb`);
//! 2. kernel `bpf_stats` with both programs attached to the egress of one child cgroup while a
//!    client in that cgroup streams small TCP segments over loopback in a private network
//!    namespace.

use std::{
    io::{BufRead as _, BufReader, Read as _},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use imds_agent_e2e::{
    MockOptions, NetNs, TestCgroup,
    client::spawn_client,
    env::{self, is_root},
};
use nix::{sys::signal::Signal, unistd::Pid};

use crate::{build, util::section};

#[derive(Debug, clap::Args)]
pub struct Options {
    #[command(flatten)]
    build: build::BuildOptions,
    /// Seconds of real traffic for the bpf_stats measurement.
    #[arg(long, default_value_t = 5)]
    seconds: u64,
    /// BPF_PROG_TEST_RUN repeat count.
    #[arg(long, default_value_t = 2_000_000)]
    repeat: u32,
}

/// Port of the sink inside the bench namespace.
const SINK_PORT: u16 = 9009;

pub fn bench(options: &Options) -> anyhow::Result<()> {
    if !is_root() {
        bail!("the benchmark needs root (eBPF, network namespace, cgroup)");
    }
    let bin = build::build(&options.build)?;
    let python = env::python3()?;
    let name = env::unique_name();
    let netns = NetNs::create(&name, &MockOptions::default())?;
    let cgroup = TestCgroup::create(&name)?;

    // A sink outside the measured cgroup, inside the namespace.
    let sink_code = format!(
        "import socket\nl=socket.socket()\nl.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n\
         l.bind(('127.0.0.1',{SINK_PORT}))\nl.listen()\nprint('sink ready',flush=True)\n\
         c,_=l.accept()\nwhile c.recv(1<<16): pass\n"
    );
    let mut sink = Command::new("ip")
        .args(["netns", "exec", netns.name()])
        .arg(&python)
        .args(["-c", &sink_code])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the sink")?;
    let mut line = String::new();
    BufReader::new(sink.stdout.take().context("sink stdout")?).read_line(&mut line)?;

    section("egress program vs empty program: BPF_PROG_TEST_RUN and bpf_stats, one run");
    let mut bench = Command::new(&bin)
        .args(["bench-skb", "--cgroup"])
        .arg(cgroup.path())
        .args(["--seconds", "600", "--repeat", &options.repeat.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting imds-agent bench-skb")?;
    let mut stderr = BufReader::new(bench.stderr.take().context("bench stderr")?);
    let mut ready = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ready.contains("bench ready") {
        ready.clear();
        if stderr.read_line(&mut ready)? == 0 || Instant::now() > deadline {
            let _ = bench.kill();
            bail!("bench-skb did not get ready: {ready}");
        }
    }

    let client_code = format!(
        "import socket,time,sys\ns=socket.create_connection(('127.0.0.1',{SINK_PORT}))\n\
         s.setsockopt(socket.IPPROTO_TCP,socket.TCP_NODELAY,1)\nb=b'x'*100\nn=0\n\
         end=time.time()+{}\nwhile time.time()<end:\n    for _ in range(1000): s.send(b)\n    n+=1000\n\
         print(n)\n",
        options.seconds
    );
    let python = python.to_string_lossy().into_owned();
    let client = spawn_client(&netns, &cgroup, &[python.as_str(), "-c", &client_code])?;
    let client_out = client.wait_with_output().context("traffic client")?;
    let sends = String::from_utf8_lossy(&client_out.stdout).trim().to_owned();

    nix::sys::signal::kill(Pid::from_raw(bench.id() as i32), Signal::SIGTERM)?;
    let mut json = String::new();
    bench
        .stdout
        .take()
        .context("bench stdout")?
        .read_to_string(&mut json)?;
    let status = bench.wait()?;
    let _ = sink.kill();
    let _ = sink.wait();
    drop(cgroup);
    drop(netns);
    if !status.success() {
        bail!("bench-skb failed ({status})");
    }
    let v: serde_json::Value = serde_json::from_str(json.trim()).context("bench-skb output")?;
    let f = |p: &str| v.pointer(p).and_then(serde_json::Value::as_f64).unwrap_or(f64::NAN);
    let (tr_agent, tr_noop) = (f("/test_run/imds_egress/ns_per_packet"), f("/test_run/noop_skb/ns_per_packet"));
    let (st_agent, st_noop) = (f("/bpf_stats/imds_egress/ns_per_packet"), f("/bpf_stats/noop_skb/ns_per_packet"));
    let packets = f("/bpf_stats/imds_egress/packets");
    println!("egress cost on non-IMDS packets (ns per packet), same traffic, one run:");
    println!("  {:<34} {:>10} {:>10} {:>8}", "method", "imds_egress", "noop_skb", "ratio");
    println!("  {:<34} {:>10.1} {:>10.1} {:>8.2}", format!("BPF_PROG_TEST_RUN x{}", options.repeat), tr_agent, tr_noop, tr_agent / tr_noop);
    println!("  {:<34} {:>10.1} {:>10.1} {:>8.2}", format!("bpf_stats, {packets:.0} real packets"), st_agent, st_noop, st_agent / st_noop);
    println!("  (client sends: {sends}; raw: {json})", json = json.trim());
    Ok(())
}
