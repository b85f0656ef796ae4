//! Turning a host's input into a [`Report`], and merging host reports into a fleet report.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use super::ReportError;
use super::model::{ReportInput, RunInput, WorkloadInput};
use super::schema::{
    Bucket, Coverage, HostCounts, HostReport, Interval, Reason, Report, Run, SCHEMA_VERSION,
    Summary, Timestamp, Verdict, WorkloadRow, ratio,
};

/// Gaps in the agent's runs no longer than this count as watched: heartbeat jitter, a quick
/// restart. Anything longer is listed as uncovered and makes the host not ready.
pub const COVERAGE_TOLERANCE: Duration = Duration::from_secs(120);

/// At most this many example paths per workload.
const MAX_EXAMPLE_PATHS: usize = 5;

/// Builds the report of one host.
pub fn build(input: ReportInput) -> Report {
    let ReportInput {
        host,
        generated_at,
        window_start,
        window_end,
        workloads,
        runs,
        timeline,
    } = input;
    let window_end = window_end.max(window_start);
    let window = Interval {
        start: Timestamp(window_start),
        end: Timestamp(window_end),
    };
    let coverage = coverage(window, &runs, COVERAGE_TOLERANCE);

    let mut timelines: BTreeMap<String, BTreeMap<Timestamp, u64>> = BTreeMap::new();
    for (name, buckets) in timeline {
        let entry = timelines.entry(name).or_default();
        for (start, v1) in buckets {
            *entry.entry(Timestamp(start)).or_default() += v1;
        }
    }
    let bucket_seconds = infer_bucket_seconds(timelines.values().map(|b| b.keys().copied()));

    let rows: Vec<WorkloadRow> = workloads
        .into_iter()
        .map(|w| {
            let timeline = timelines.remove(&w.workload).unwrap_or_default();
            row(&host, w, timeline)
        })
        .collect();

    let v1_calls = rows.iter().map(|r| r.v1_calls).sum();
    let to_fix = rows.iter().filter(|r| r.blocks()).count() as u64;
    let mut reasons = Vec::new();
    if v1_calls > 0 {
        reasons.push(Reason::V1Calls {
            host: host.clone(),
            v1_calls,
            workloads: to_fix,
        });
    }
    if coverage.runs.is_empty() {
        reasons.push(Reason::NeverRan { host: host.clone() });
    } else if !coverage.complete {
        reasons.push(Reason::IncompleteCoverage {
            host: host.clone(),
            covered_seconds: coverage.covered_seconds,
            window_seconds: coverage.window_seconds,
        });
    }
    let verdict = if reasons.is_empty() {
        Verdict::Ready
    } else {
        Verdict::NotReady
    };
    let host_report = HostReport {
        host,
        generated_at: Timestamp(generated_at),
        window,
        verdict,
        coverage,
        v1_calls,
        v2_calls: rows.iter().map(|r| r.v2_calls).sum(),
        rejected_401: rows.iter().map(|r| r.rejected_401).sum(),
        workloads_to_fix: to_fix,
    };
    finalize(
        Timestamp(generated_at),
        window,
        vec![host_report],
        reasons,
        rows,
        bucket_seconds,
    )
}

fn row(host: &str, w: WorkloadInput, timeline: BTreeMap<Timestamp, u64>) -> WorkloadRow {
    let WorkloadInput {
        workload,
        identity,
        sdk_name,
        sdk_version,
        v1_cause,
        v1_advice,
        v1_count,
        v2_count,
        rejected_count,
        unanswered_token_requests,
        first_seen,
        last_seen,
        last_v1_seen,
        mut example_paths,
        last_status,
    } = w;
    example_paths.truncate(MAX_EXAMPLE_PATHS);
    WorkloadRow {
        workload,
        hosts: vec![HostCounts {
            host: host.to_owned(),
            v1_calls: v1_count,
            v2_calls: v2_count,
            rejected_401: rejected_count,
        }],
        identity,
        sdk_name,
        sdk_version,
        cause: v1_cause,
        advice: v1_advice,
        v1_calls: v1_count,
        v2_calls: v2_count,
        rejected_401: rejected_count,
        unanswered_token_requests,
        first_seen: Timestamp(first_seen),
        last_seen: Timestamp(last_seen),
        last_v1_seen: last_v1_seen.map(Timestamp),
        example_paths,
        last_status,
        timeline: timeline
            .into_iter()
            .map(|(start, v1_calls)| Bucket { start, v1_calls })
            .collect(),
    }
}

/// What part of `window` the runs watched. Runs are clipped to the window and unioned; the
/// complement (before the first run, between runs, after the last `last_seen`) is uncovered,
/// except gaps no longer than `tolerance`, which count as watched.
pub fn coverage(window: Interval, runs: &[RunInput], tolerance: Duration) -> Coverage {
    let (ws, we) = (window.start.0, window.end.0);
    let mut clipped: Vec<(SystemTime, SystemTime)> = runs
        .iter()
        .filter(|r| r.last_seen >= r.start)
        .map(|r| (r.start.max(ws), r.last_seen.min(we)))
        .filter(|(s, e)| e >= s)
        .collect();
    clipped.sort();
    // Did the run that watched last stop cleanly? Then it is known not to be watching
    // after its stop, and the tolerance (heartbeat lag) does not apply to the end.
    let last_stopped_cleanly = runs
        .iter()
        .filter(|r| r.last_seen >= r.start)
        .max_by_key(|r| r.last_seen)
        .is_some_and(|r| r.clean_stop);
    let mut listed: Vec<Run> = runs
        .iter()
        .filter(|r| r.last_seen >= ws && r.start <= we && r.last_seen >= r.start)
        .map(|r| Run {
            start: Timestamp(r.start),
            last_seen: Timestamp(r.last_seen),
            clean_stop: r.clean_stop,
        })
        .collect();
    listed.sort_by_key(|r| (r.start, r.last_seen));

    let mut gaps = Vec::new();
    let mut cursor = ws;
    for (s, e) in &clipped {
        if *s > cursor {
            gaps.push((cursor, *s));
        }
        cursor = cursor.max(*e);
    }
    if we > cursor {
        gaps.push((cursor, we));
    }
    let never_ran = listed.is_empty();
    // The tolerance covers restarts between runs and the heartbeat lag after the last one
    // (when it is still running or crashed); time before the agent first ran in the window,
    // or after it was stopped, was never watched, however short.
    let first_start = clipped.first().map(|(s, _)| *s);
    let uncovered: Vec<Interval> = gaps
        .into_iter()
        .filter(|(s, e)| {
            let leading = *s == ws && first_start.is_some_and(|f| f == *e);
            let trailing_after_stop = *e == we && last_stopped_cleanly;
            // Under a second is clock granularity between stop and report, not a gap.
            let negligible = e.duration_since(*s).unwrap_or_default() < Duration::from_secs(1);
            never_ran
                || (!negligible && trailing_after_stop)
                || leading
                || e.duration_since(*s).unwrap_or_default() > tolerance
        })
        .map(|(s, e)| Interval {
            start: Timestamp(s),
            end: Timestamp(e),
        })
        .collect();
    let window_seconds = window.duration().as_secs();
    let uncovered_seconds: u64 = uncovered.iter().map(|i| i.duration().as_secs()).sum();
    let covered_seconds = window_seconds.saturating_sub(uncovered_seconds);
    let complete = !never_ran && uncovered.is_empty();
    Coverage {
        window_seconds,
        covered_seconds,
        covered_fraction: if never_ran {
            0.0
        } else {
            ratio(covered_seconds, window_seconds)
        },
        complete,
        tolerance_seconds: tolerance.as_secs(),
        uncovered,
        runs: listed,
    }
}

/// Smallest distance between two bucket starts of one timeline.
fn infer_bucket_seconds(
    timelines: impl Iterator<Item = impl Iterator<Item = Timestamp>>,
) -> Option<u64> {
    let mut best: Option<u64> = None;
    for starts in timelines {
        let starts: Vec<Timestamp> = starts.collect();
        for pair in starts.windows(2) {
            let d = pair[1].since(pair[0]).as_secs();
            if d > 0 {
                best = Some(best.map_or(d, |b| b.min(d)));
            }
        }
    }
    best
}

/// Sorts, totals and decides. The report is `READY` only if no reason is given and every
/// host is ready with complete coverage.
fn finalize(
    generated_at: Timestamp,
    window: Interval,
    mut hosts: Vec<HostReport>,
    reasons: Vec<Reason>,
    mut workloads: Vec<WorkloadRow>,
    timeline_bucket_seconds: Option<u64>,
) -> Report {
    hosts.sort_by(|a, b| a.host.cmp(&b.host));
    sort_rows(&mut workloads);
    let v1_calls: u64 = workloads.iter().map(|r| r.v1_calls).sum();
    let v2_calls: u64 = workloads.iter().map(|r| r.v2_calls).sum();
    let all_calls = v1_calls + v2_calls;
    let summary = Summary {
        hosts: hosts.len() as u64,
        v1_calls,
        v2_calls,
        v2_adoption: (all_calls > 0).then(|| ratio(v2_calls, all_calls)),
        rejected_401: workloads.iter().map(|r| r.rejected_401).sum(),
        rejected_workloads: workloads.iter().filter(|r| r.rejected_401 > 0).count() as u64,
        unanswered_token_requests: workloads.iter().map(|r| r.unanswered_token_requests).sum(),
        workloads_total: workloads.len() as u64,
        workloads_to_fix: workloads.iter().filter(|r| r.blocks()).count() as u64,
        window_seconds: hosts.iter().map(|h| h.coverage.window_seconds).sum(),
        covered_seconds: hosts.iter().map(|h| h.coverage.covered_seconds).sum(),
        coverage_complete: hosts.iter().all(|h| h.coverage.complete),
    };
    let ready = reasons.is_empty()
        && !hosts.is_empty()
        && v1_calls == 0
        && hosts
            .iter()
            .all(|h| h.verdict == Verdict::Ready && h.coverage.complete);
    Report {
        schema: SCHEMA_VERSION,
        generated_at,
        window,
        verdict: if ready {
            Verdict::Ready
        } else {
            Verdict::NotReady
        },
        reasons,
        summary,
        hosts,
        workloads,
        timeline_bucket_seconds,
    }
}

/// What blocks enforcement first: most v1 calls, then most recent v1 call, then name.
pub fn sort_rows(rows: &mut [WorkloadRow]) {
    rows.sort_by(|a, b| {
        (Reverse(a.v1_calls), Reverse(a.last_v1_seen), &a.workload).cmp(&(
            Reverse(b.v1_calls),
            Reverse(b.last_v1_seen),
            &b.workload,
        ))
    });
}

/// Merges host (or fleet) reports into one fleet report: hosts listed, the same workload name
/// on several hosts grouped into one row (counts summed, per-host counts kept), `NOT READY`
/// if any host is not ready or any host's coverage is incomplete.
pub fn merge(reports: Vec<Report>) -> Result<Report, ReportError> {
    if reports.is_empty() {
        return Err(ReportError::NoReports);
    }
    if let Some(r) = reports.iter().find(|r| r.schema != SCHEMA_VERSION) {
        return Err(ReportError::UnsupportedSchema {
            found: r.schema,
            expected: SCHEMA_VERSION,
        });
    }
    let mut seen = BTreeSet::new();
    for host in reports.iter().flat_map(|r| &r.hosts) {
        if !seen.insert(host.host.clone()) {
            return Err(ReportError::DuplicateHost {
                host: host.host.clone(),
            });
        }
    }
    let generated_at = reports
        .iter()
        .map(|r| r.generated_at)
        .max()
        .unwrap_or(reports[0].generated_at);
    let window = Interval {
        start: reports
            .iter()
            .map(|r| r.window.start)
            .min()
            .unwrap_or(reports[0].window.start),
        end: reports
            .iter()
            .map(|r| r.window.end)
            .max()
            .unwrap_or(reports[0].window.end),
    };
    let bucket = reports
        .iter()
        .filter_map(|r| r.timeline_bucket_seconds)
        .min();
    let mut hosts = Vec::new();
    let mut reasons = Vec::new();
    let mut groups: BTreeMap<String, Vec<WorkloadRow>> = BTreeMap::new();
    for report in reports {
        let Report {
            hosts: h,
            reasons: r,
            workloads,
            ..
        } = report;
        hosts.extend(h);
        reasons.extend(r);
        for row in workloads {
            groups.entry(row.workload.clone()).or_default().push(row);
        }
    }
    reasons.sort_by_key(|r| match r {
        Reason::V1Calls { host, .. } => (host.clone(), 0),
        Reason::IncompleteCoverage { host, .. } => (host.clone(), 1),
        Reason::NeverRan { host } => (host.clone(), 2),
    });
    let rows = groups.into_values().filter_map(merge_rows).collect();
    Ok(finalize(generated_at, window, hosts, reasons, rows, bucket))
}

/// One row from the same workload's rows on several hosts. SDK, cause, advice and identity
/// come from the row that blocks most (most v1 calls, then latest v1 call).
fn merge_rows(mut rows: Vec<WorkloadRow>) -> Option<WorkloadRow> {
    sort_rows(&mut rows);
    let mut rows = rows.into_iter();
    let mut merged = rows.next()?;
    let mut timeline: BTreeMap<Timestamp, u64> = merged
        .timeline
        .iter()
        .map(|b| (b.start, b.v1_calls))
        .collect();
    for row in rows {
        merged.v1_calls += row.v1_calls;
        merged.v2_calls += row.v2_calls;
        merged.rejected_401 += row.rejected_401;
        merged.unanswered_token_requests += row.unanswered_token_requests;
        merged.first_seen = merged.first_seen.min(row.first_seen);
        if row.last_seen > merged.last_seen {
            merged.last_seen = row.last_seen;
            merged.last_status = row.last_status.or(merged.last_status);
        }
        merged.last_v1_seen = merged.last_v1_seen.max(row.last_v1_seen);
        for path in row.example_paths {
            if merged.example_paths.len() < MAX_EXAMPLE_PATHS
                && !merged.example_paths.contains(&path)
            {
                merged.example_paths.push(path);
            }
        }
        for b in row.timeline {
            *timeline.entry(b.start).or_default() += b.v1_calls;
        }
        merged.hosts.extend(row.hosts);
    }
    merged.hosts.sort_by(|a, b| a.host.cmp(&b.host));
    merged.timeline = timeline
        .into_iter()
        .map(|(start, v1_calls)| Bucket { start, v1_calls })
        .collect();
    Some(merged)
}
