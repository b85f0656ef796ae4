//! Command-line interface.

use std::{path::PathBuf, time::Duration};

use clap::{Args, Parser, Subcommand};

/// Finds every process still calling the EC2 instance metadata service (IMDS) without a
/// token (IMDSv1), and says which program it is.
///
/// imds-agent attaches eBPF programs to a cgroup v2 subtree (the whole host by default),
/// watches TCP connections to 169.254.169.254:80 and [fd00:ec2::254]:80, classifies every
/// HTTP request on them as IMDSv1 (tokenless) or IMDSv2, and reports who made it. It only
/// observes: no packet is ever dropped or changed. Needs root (or CAP_BPF, CAP_PERFMON,
/// CAP_NET_ADMIN and CAP_SYS_ADMIN) and Linux >= 5.8 with BTF and cgroup v2.
#[derive(Debug, Parser)]
#[command(name = "imds-agent", version, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// Log level for the human log on stderr (error, warn, info, debug, trace), or a
    /// tracing filter such as `imds_agent=debug`.
    #[arg(long, global = true, env = "IMDS_AGENT_LOG", default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Observe IMDS traffic and write one JSON object per request (JSON lines).
    ///
    /// Each line describes one HTTP request to IMDS: its version (v1/v2), method, path,
    /// response status, and the process that made it (pid, parent, executable, redacted
    /// command line, user, cgroup). Token values never appear. Human logs go to stderr.
    /// Stop with Ctrl-C or SIGTERM: pending requests are flushed and the programs detached.
    Run(RunArgs),
    /// Readiness report for `HttpTokens=required`, from the agent's inventory (read-only;
    /// works while the agent runs).
    ///
    /// Verdict READY (no IMDSv1 call in the window, and the agent watched all of it) or NOT
    /// READY, then the workloads to fix, sorted by what blocks enforcement, each with the
    /// cause and advice. Exit status: 0 READY, 1 NOT READY, 2 error — usable as a pipeline
    /// gate. `--merge` combines the JSON reports of many hosts into a fleet report.
    Report(ReportArgs),
    /// Measure the egress program's cost per non-IMDS packet against an empty program
    /// (used by `cargo xtask bench`).
    #[command(hide = true)]
    BenchSkb(crate::bench::BenchArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// Observe only this cgroup v2 subtree: a directory in the cgroup2 filesystem, either
    /// absolute (/sys/fs/cgroup/system.slice) or relative to the cgroup2 mount
    /// (system.slice). Default: the whole host (the cgroup2 root).
    #[arg(long, value_name = "PATH")]
    pub cgroup: Option<PathBuf>,
    /// Write JSON lines to FILE (appended) instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Report a request as unanswered after this many seconds without a response.
    #[arg(long, value_name = "SECONDS", default_value = "5", value_parser = parse_secs)]
    pub response_timeout: Duration,
    /// The inventory database (SQLite, WAL): per-workload aggregates and a bounded window of
    /// raw events, kept across restarts; `imds-agent report` reads it.
    #[arg(long, value_name = "PATH", default_value = crate::store::DEFAULT_PATH)]
    pub db: PathBuf,
    /// Do not keep an inventory (JSON lines only).
    #[arg(long, conflicts_with = "db")]
    pub no_db: bool,
    /// Drop inventory data older than this (e.g. 30d, 12h).
    #[arg(long, value_name = "AGE", default_value = "30d", value_parser = parse_age)]
    pub retention: Duration,
    /// Most raw events kept in the inventory (aggregates are kept regardless).
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_events: u64,
    /// Name pods from this kubeconfig's API server instead of the in-cluster service account
    /// (which is used automatically on a node: NODE_NAME set, in-cluster credentials).
    /// Needs --kube-node.
    #[arg(long, value_name = "PATH", requires = "kube_node")]
    pub kubeconfig: Option<PathBuf>,
    /// The Kubernetes node this host is: only its pods are watched.
    #[arg(long, value_name = "NAME", requires = "kubeconfig")]
    pub kube_node: Option<String>,
    /// Size of the kernel→user ring buffer in MiB (a power of two).
    #[arg(long, value_name = "MiB", default_value_t = 8, value_parser = parse_ring_mib)]
    pub ring_buffer_mib: u32,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The inventory to read.
    #[arg(long, value_name = "PATH", default_value = crate::store::DEFAULT_PATH)]
    pub db: PathBuf,
    /// The window: the last 30s, 90m, 24h, 7d, 2w (combinations like 1d12h work).
    #[arg(long, value_name = "AGE", default_value = "7d", value_parser = parse_age)]
    pub since: Duration,
    /// Output format.
    #[arg(long, value_enum, default_value_t = crate::report::Format::Table)]
    pub format: crate::report::Format,
    /// Merge these JSON reports (from `--format json` on each host) into one fleet report
    /// instead of reading an inventory.
    #[arg(long, value_name = "FILE", num_args = 1.., conflicts_with = "db")]
    pub merge: Vec<PathBuf>,
    /// Write the report to FILE instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

fn parse_age(s: &str) -> Result<Duration, String> {
    crate::report::parse_since(s).map_err(|e| e.to_string())
}

fn parse_secs(s: &str) -> Result<Duration, String> {
    let v: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.1..=3600.0).contains(&v) {
        return Err(format!("{v} s is out of range (0.1 to 3600)"));
    }
    Ok(Duration::from_secs_f64(v))
}

fn parse_ring_mib(s: &str) -> Result<u32, String> {
    let v: u32 = s.parse().map_err(|_| format!("`{s}` is not a whole number"))?;
    if !v.is_power_of_two() || !(1..=1024).contains(&v) {
        return Err(format!("{v} MiB: must be a power of two from 1 to 1024"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_flags_and_rejects_bad_values() {
        let cli = Cli::try_parse_from(["imds-agent", "run", "--cgroup", "x", "-o", "f"])
            .unwrap_or_else(|e| panic!("{e}"));
        let Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.cgroup, Some(PathBuf::from("x")));
        assert_eq!(r.response_timeout, Duration::from_secs(5));
        assert_eq!(r.ring_buffer_mib, 8);
        for bad in [
            vec!["imds-agent", "run", "--ring-buffer-mib", "3"],
            vec!["imds-agent", "run", "--response-timeout", "-1"],
            vec!["imds-agent", "run", "--bogus"],
            vec!["imds-agent"],
        ] {
            assert!(Cli::try_parse_from(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
