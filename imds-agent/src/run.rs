//! `imds-agent run`: load, attach, then move records from the ring buffer through the
//! [`Tracker`] to the sink until SIGINT/SIGTERM.

use std::{
    fs::OpenOptions,
    io::{self, BufWriter, Write},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use aya::maps::{MapData, RingBuf};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
};

use crate::{
    cli::RunArgs,
    kernel::{self, Probes, events},
    output::{JsonLines, Report},
    pipeline::{Tracker, TrackerConfig},
    preflight, process,
};

/// How often the inventory learns the agent is still watching (report coverage).
const HEARTBEAT: Duration = Duration::from_secs(10);

/// How often idle connections are checked and kernel counters read.
const TICK: Duration = Duration::from_millis(500);

pub fn run(args: RunArgs) -> Result<()> {
    preflight::check_privileges()?;
    let root = process::cgroup2_mount()?;
    let cgroup = preflight::resolve_cgroup(&root, args.cgroup.as_deref())?;
    let sink: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--output {}: cannot open for writing", path.display()))?,
        ),
        None => Box::new(io::stdout().lock()),
    };
    let offsets = match kernel::offsets::from_running_kernel() {
        Ok(mut o) => {
            o.env_allow = crate::workload::env::allow_hashes();
            o
        }
        Err(e) => {
            tracing::warn!(
                "{e}; parent pid, argv and executable path will be read from /proc, and may be missing for processes that exit quickly"
            );
            imds_agent_common::KernelOffsets::ZERO
        }
    };
    let mut probes = Probes::attach(&cgroup, offsets, args.ring_buffer_mib << 20)?;
    let ring = probes.take_events()?;
    let counters = probes.take_counters()?;
    let tracker = Tracker::new(
        TrackerConfig {
            response_timeout: args.response_timeout,
            ..TrackerConfig::default()
        },
        process::Attributor::with_cgroup_root(Some(root.clone())),
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut sink = JsonLines::new(BufWriter::new(sink));
    let store = if args.no_db {
        None
    } else {
        Some(crate::store::Store::open(
            crate::store::StoreConfig {
                path: args.db.clone(),
                retention: args.retention,
                max_events: args.max_events,
                ..crate::store::StoreConfig::default()
            },
            crate::store::RunInfo::current(cgroup.display().to_string()),
        )?)
    };
    tracing::info!(
        "imds-agent ready: observing cgroup {} (IMDS 169.254.169.254:80, [fd00:ec2::254]:80)",
        cgroup.display()
    );
    let result = rt.block_on(async {
        // On a Kubernetes node (NODE_NAME + in-cluster credentials) pods of this node are
        // watched to name pods and their owners; elsewhere this is None.
        let found = match (&args.kubeconfig, &args.kube_node) {
            (Some(path), Some(node)) => {
                crate::workload::k8s::PodCache::from_kubeconfig(path, node.clone()).await.map(Some)
            }
            _ => crate::workload::k8s::PodCache::from_environment().await,
        };
        let pods = match found {
            Ok(pods) => pods,
            Err(e) => {
                tracing::warn!("Kubernetes pod names unavailable: {e:#}");
                None
            }
        };
        if pods.is_some() {
            tracing::info!("watching the pods of this Kubernetes node");
        }
        event_loop(ring, tracker.with_pods(pods), &mut sink, store.as_ref(), &counters).await
    });
    let flushed = sink.flush().context("flushing output");
    let stored = match store.map(crate::store::Store::close).transpose() {
        Ok(Some(stats)) => {
            tracing::info!(
                "inventory {}: {} events in {} transactions, {} dropped",
                args.db.display(),
                stats.events,
                stats.transactions,
                stats.dropped
            );
            Ok(())
        }
        Ok(None) => Ok(()),
        Err(e) => Err(anyhow::Error::new(e).context("closing the inventory")),
    };
    let c = counters.read();
    tracing::info!(
        "stopped: {} requests reported, {} connects and {} IMDS packets seen, {} records lost (ring buffer full)",
        sink.written(),
        c.connects,
        c.imds_packets,
        c.ringbuf_full
    );
    // Dropping the probes detaches the programs.
    drop(probes);
    result.and(flushed).and(stored)
}

async fn event_loop<W: Write>(
    ring: RingBuf<MapData>,
    mut tracker: Tracker,
    sink: &mut JsonLines<W>,
    store: Option<&crate::store::Store>,
    counters: &kernel::Counters,
) -> Result<()> {
    // SAFETY: the ring buffer owns its fd, which stays open for as long as the AsyncFd
    // holds it.
    let mut ring = unsafe { AsyncFd::register(ring) }
        .map_err(|e| anyhow::anyhow!("polling the ring buffer: {e}"))?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut sigint = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    let mut tick = tokio::time::interval(TICK);
    let mut out: Vec<Report> = Vec::new();
    let mut lost_reported = 0u64;
    let mut last_heartbeat = Instant::now();
    loop {
        tokio::select! {
            guard = ring.readable_mut() => {
                let mut guard = guard.context("waiting on the ring buffer")?;
                drain(guard.get_inner_mut(), &mut tracker, &mut out);
                guard.clear_ready();
            }
            _ = tick.tick() => {
                tracker.tick(Instant::now(), &mut out);
                if let Some(store) = store
                    && last_heartbeat.elapsed() >= HEARTBEAT
                {
                    store.heartbeat();
                    last_heartbeat = Instant::now();
                }
                let lost = counters.read().ringbuf_full;
                if lost > lost_reported {
                    tracing::warn!("{} records lost: ring buffer full (raise --ring-buffer-mib)", lost - lost_reported);
                    lost_reported = lost;
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
        write_all(sink, store, &mut out)?;
    }
    // Whatever the kernel wrote before we stopped, then everything still pending.
    drain(ring.get_mut(), &mut tracker, &mut out);
    tracker.flush_all(&mut out);
    write_all(sink, store, &mut out)
}

fn drain(ring: &mut RingBuf<MapData>, tracker: &mut Tracker, out: &mut Vec<Report>) {
    let now = Instant::now();
    while let Some(item) = ring.next() {
        match events::decode(&item) {
            Ok(record) => tracker.on_record(record, now, out),
            Err(e) => tracing::warn!("dropping a malformed kernel record: {e}"),
        }
    }
}

fn write_all<W: Write>(
    sink: &mut JsonLines<W>,
    store: Option<&crate::store::Store>,
    out: &mut Vec<Report>,
) -> Result<()> {
    if out.is_empty() {
        return Ok(());
    }
    for report in out.drain(..) {
        let json = report.to_json();
        sink.write_json(&json).context("writing output")?;
        if let Some(store) = store {
            store.record(&json);
        }
    }
    sink.flush().context("flushing output")
}
