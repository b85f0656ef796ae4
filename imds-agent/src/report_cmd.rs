//! `imds-agent report`: the inventory (or other hosts' JSON reports) → a readiness report.

use std::{
    io::Write as _,
    time::{Duration, SystemTime},
};

use anyhow::{Context as _, Result};

use crate::{
    cli::ReportArgs,
    report::{self, Cause, Format, ReportInput, RunInput, WorkloadInput},
    store::Reader,
};

/// Timeline buckets: per minute up to 2 hours, hourly up to 3 days, daily beyond (always a
/// whole number of the store's minute counters, and a readable number of bars).
fn bucket_for(window: Duration) -> Duration {
    const MINUTE: u64 = 60;
    let secs = window.as_secs();
    if secs <= 2 * 3600 {
        Duration::from_secs(MINUTE)
    } else if secs <= 3 * 24 * 3600 {
        Duration::from_secs(3600)
    } else {
        Duration::from_secs(24 * 3600)
    }
}

/// Builds and prints the report; returns the exit code (0 READY, 1 NOT READY).
pub fn report(args: &ReportArgs) -> Result<i32> {
    let report = if args.merge.is_empty() {
        from_inventory(args)?
    } else {
        let mut reports = Vec::new();
        for path in &args.merge {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--merge {}: cannot read", path.display()))?;
            let r: report::Report = serde_json::from_str(&text).with_context(|| {
                format!(
                    "--merge {}: not a JSON report (make one with `imds-agent report --format json`)",
                    path.display()
                )
            })?;
            reports.push(r);
        }
        report::merge(reports)?
    };
    let text = report::render(&report, args.format);
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("--output {}: cannot write", path.display()))?,
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(text.as_bytes()).context("writing the report")?;
            if !text.ends_with('\n') && args.format != Format::Json {
                out.write_all(b"\n").context("writing the report")?;
            }
        }
    }
    Ok(report::exit_code(&report))
}

fn from_inventory(args: &ReportArgs) -> Result<report::Report> {
    let reader = Reader::open(&args.db)?;
    let now = SystemTime::now();
    let since = now.checked_sub(args.since).unwrap_or(SystemTime::UNIX_EPOCH);
    let workloads = reader
        .workloads(since)?
        .into_iter()
        .map(|w| WorkloadInput {
            workload: w.workload,
            identity: w.identity,
            sdk_name: w.sdk_name,
            sdk_version: w.sdk_version,
            v1_cause: w.v1_cause.as_deref().map_or(Cause::Unknown, Cause::from_label),
            v1_advice: w.v1_advice.unwrap_or_default(),
            v1_count: w.v1_count,
            v2_count: w.v2_count,
            rejected_count: w.rejected_count,
            unanswered_token_requests: w.unanswered_token_requests,
            first_seen: w.first_seen,
            last_seen: w.last_seen,
            last_v1_seen: w.last_v1_seen,
            example_paths: w.example_paths,
            last_status: w.last_status,
        })
        .collect();
    let runs = reader.runs(since)?;
    let host = runs
        .last()
        .map(|r| r.host_name.clone())
        .unwrap_or_else(crate::store::host_name);
    let runs = runs
        .into_iter()
        .map(|r| RunInput {
            start: r.started,
            last_seen: r.last_seen,
            clean_stop: r.clean_stop,
        })
        .collect();
    let timeline = reader.v1_timeline(since, bucket_for(args.since))?;
    Ok(report::build(ReportInput {
        host,
        generated_at: now,
        window_start: since,
        window_end: now,
        workloads,
        runs,
        timeline,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_follow_the_window() {
        assert_eq!(bucket_for(Duration::from_secs(120)), Duration::from_secs(60));
        assert_eq!(bucket_for(Duration::from_secs(24 * 3600)), Duration::from_secs(3600));
        assert_eq!(bucket_for(Duration::from_secs(7 * 24 * 3600)), Duration::from_secs(86400));
    }
}
