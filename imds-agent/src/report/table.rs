//! Plain text for a terminal: aligned columns, no colour, no control characters from
//! untrusted names (an escape sequence in a workload name must not drive the terminal).

use std::fmt::Write as _;

use super::schema::{Report, WorkloadRow, coverage_detail_lines, human_duration, percent, plural};

/// Longest workload name shown before `…` (JSON keeps it whole).
const MAX_NAME: usize = 60;

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let fleet = report.hosts.len() > 1;
    let s = &report.summary;
    let title = if fleet {
        format!(
            "IMDS readiness report for a fleet of {} hosts",
            report.hosts.len()
        )
    } else {
        format!(
            "IMDS readiness report for host {}",
            clean(host_names(report).as_str())
        )
    };
    let _ = writeln!(out, "{title}");
    let _ = writeln!(out, "Generated  {}", report.generated_at);
    let _ = writeln!(
        out,
        "Window     {} .. {} ({})",
        report.window.start,
        report.window.end,
        human_duration(report.window.duration())
    );
    let _ = writeln!(out, "Verdict    {}", report.verdict);
    for reason in &report.reasons {
        let _ = writeln!(out, "  - {}", clean(&reason.to_string()));
    }
    for host in &report.hosts {
        let c = &host.coverage;
        let prefix = if fleet {
            format!("{}: ", clean(&host.host))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "Coverage   {prefix}{} of the window watched ({} of {}){}",
            if c.runs.is_empty() {
                "0.0%".to_owned()
            } else {
                percent(c.covered_seconds, c.window_seconds)
            },
            human_duration(std::time::Duration::from_secs(c.covered_seconds)),
            human_duration(std::time::Duration::from_secs(c.window_seconds)),
            if c.complete { "" } else { " — INCOMPLETE" }
        );
        for line in coverage_detail_lines(c, host.window, "  ") {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "Summary");
    let mut lines = vec![
        ("IMDSv1 calls", s.v1_calls.to_string()),
        ("IMDSv2 calls", s.v2_calls.to_string()),
        (
            "v2 adoption",
            match s.v2_adoption {
                Some(_) => format!(
                    "{} of calls use a token",
                    percent(s.v2_calls, s.v1_calls + s.v2_calls)
                ),
                None => "no call seen".to_owned(),
            },
        ),
        ("already rejected (401)", rejected_line(report)),
    ];
    if s.unanswered_token_requests > 0 {
        lines.push((
            "unanswered token PUTs",
            format!("{} (hop limit or firewall?)", s.unanswered_token_requests),
        ));
    }
    lines.push((
        "workloads to fix",
        format!("{} of {}", s.workloads_to_fix, s.workloads_total),
    ));
    lines.push((
        "window covered",
        format!(
            "{}{}",
            percent(s.covered_seconds, s.window_seconds),
            if s.coverage_complete {
                ""
            } else {
                " (incomplete)"
            }
        ),
    ));
    let width = lines.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (key, value) in lines {
        let _ = writeln!(out, "  {key:<width$}  {value}");
    }

    if fleet {
        let _ = writeln!(out);
        let _ = writeln!(out, "Hosts");
        let rows = report
            .hosts
            .iter()
            .map(|h| {
                vec![
                    clean(&h.host),
                    h.verdict.to_string(),
                    if h.coverage.runs.is_empty() {
                        "never ran".to_owned()
                    } else {
                        percent(h.coverage.covered_seconds, h.coverage.window_seconds)
                    },
                    h.v1_calls.to_string(),
                    h.v2_calls.to_string(),
                    h.rejected_401.to_string(),
                    h.workloads_to_fix.to_string(),
                ]
            })
            .collect::<Vec<_>>();
        out.push_str(&columns(
            &["HOST", "VERDICT", "COVERED", "V1", "V2", "401", "TO FIX"],
            &rows,
            &[false, false, true, true, true, true, true],
        ));
    }

    let _ = writeln!(out);
    if report.workloads.is_empty() {
        let _ = writeln!(out, "No workload called IMDS in the window.");
        return out;
    }
    let _ = writeln!(out, "Workloads, most blocking first");
    let mut headers = vec![
        "WORKLOAD",
        "V1",
        "V2",
        "401",
        "LAST V1 SEEN",
        "SDK",
        "CAUSE",
    ];
    let mut right = vec![false, true, true, true, false, false, false];
    if fleet {
        headers.push("HOSTS");
        right.push(false);
    }
    headers.push("ADVICE");
    right.push(false);
    let rows = report
        .workloads
        .iter()
        .map(|w| {
            let mut row = vec![
                truncate(&clean(&w.workload), MAX_NAME),
                w.v1_calls.to_string(),
                w.v2_calls.to_string(),
                w.rejected_401.to_string(),
                w.last_v1_seen.map_or("-".to_owned(), |t| t.human()),
                clean(&w.sdk()),
                cause(w).to_owned(),
            ];
            if fleet {
                row.push(clean(&hosts_cell(w)));
            }
            row.push(clean(&advice(w)));
            row
        })
        .collect::<Vec<_>>();
    out.push_str(&columns(&headers, &rows, &right));
    out
}

pub(super) fn host_names(report: &Report) -> String {
    report
        .hosts
        .iter()
        .map(|h| h.host.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

pub(super) fn rejected_line(report: &Report) -> String {
    let s = &report.summary;
    if s.rejected_401 == 0 {
        "0".to_owned()
    } else {
        format!(
            "{} call{} from {} workload{}: these workloads are already failing today",
            s.rejected_401,
            plural(s.rejected_401),
            s.rejected_workloads,
            plural(s.rejected_workloads)
        )
    }
}

/// Cause label, `-` for a workload with no v1 call.
pub(super) fn cause(w: &WorkloadRow) -> &'static str {
    if w.blocks() { w.cause.describe() } else { "-" }
}

pub(super) fn advice(w: &WorkloadRow) -> String {
    if w.advice.trim().is_empty() || !(w.blocks() || w.rejected_401 > 0) {
        "-".to_owned()
    } else {
        w.advice.clone()
    }
}

/// `web-1 (12), web-2 (3)`: v1 calls per host.
pub(super) fn hosts_cell(w: &WorkloadRow) -> String {
    w.hosts
        .iter()
        .map(|h| format!("{} ({})", h.host, h.v1_calls))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Control characters (escape sequences, newlines) shown escaped.
pub(super) fn clean(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

fn truncate(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut t: String = text.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

/// Aligned columns; the last one is not padded.
fn columns(headers: &[&str], rows: &[Vec<String>], right: &[bool]) -> String {
    let n = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate().take(n) {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let pad = widths[i].saturating_sub(cell.chars().count());
            if i > 0 {
                text.push_str("  ");
            }
            if right.get(i).copied().unwrap_or(false) {
                text.push_str(&" ".repeat(pad));
                text.push_str(cell);
            } else {
                text.push_str(cell);
                if i + 1 < cells.len() {
                    text.push_str(&" ".repeat(pad));
                }
            }
        }
        out.push_str(text.trim_end());
        out.push('\n');
    };
    line(headers.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}
