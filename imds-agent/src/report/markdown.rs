//! GitHub-flavoured markdown: headings, lists and tables. Untrusted text is escaped so it can
//! neither break a table (`|`, newlines) nor inject markup or HTML.

use std::fmt::Write as _;
use std::time::Duration;

use super::schema::{Report, coverage_detail_lines, human_duration, percent};
use super::table::{advice, cause, hosts_cell, rejected_line};

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let fleet = report.hosts.len() > 1;
    let s = &report.summary;
    if fleet {
        let _ = writeln!(
            out,
            "# IMDS readiness: fleet of {} hosts",
            report.hosts.len()
        );
    } else {
        let host = report.hosts.first().map_or("", |h| h.host.as_str());
        let _ = writeln!(out, "# IMDS readiness: {}", esc(host));
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "**Verdict: {}**", report.verdict);
    let _ = writeln!(out);
    for reason in &report.reasons {
        let _ = writeln!(out, "- {}", esc(&reason.to_string()));
    }
    if !report.reasons.is_empty() {
        let _ = writeln!(out);
    }
    let _ = writeln!(
        out,
        "Window: {} .. {} ({}). Generated {}.",
        report.window.start,
        report.window.end,
        human_duration(report.window.duration()),
        report.generated_at
    );
    let _ = writeln!(out);

    let _ = writeln!(out, "## Coverage");
    let _ = writeln!(out);
    for host in &report.hosts {
        let c = &host.coverage;
        let _ = writeln!(
            out,
            "- **{}**: {} of the window watched ({} of {}){}",
            esc(&host.host),
            percent(c.covered_seconds, c.window_seconds),
            human_duration(Duration::from_secs(c.covered_seconds)),
            human_duration(Duration::from_secs(c.window_seconds)),
            if c.runs.is_empty() {
                ": **the agent never ran**"
            } else if c.complete {
                ""
            } else {
                ": **incomplete**"
            }
        );
        for line in coverage_detail_lines(c, host.window, "  - ") {
            let _ = writeln!(out, "{line}");
        }
    }
    let _ = writeln!(out);

    let _ = writeln!(out, "## Summary");
    let _ = writeln!(out);
    let _ = writeln!(out, "| | |");
    let _ = writeln!(out, "|---|---:|");
    let _ = writeln!(out, "| IMDSv1 calls | {} |", s.v1_calls);
    let _ = writeln!(out, "| IMDSv2 calls | {} |", s.v2_calls);
    let _ = writeln!(
        out,
        "| v2 adoption | {} |",
        match s.v2_adoption {
            Some(_) => percent(s.v2_calls, s.v1_calls + s.v2_calls),
            None => "no call seen".to_owned(),
        }
    );
    let _ = writeln!(
        out,
        "| already rejected (401) | {} |",
        esc(&rejected_line(report))
    );
    if s.unanswered_token_requests > 0 {
        let _ = writeln!(
            out,
            "| unanswered token PUTs | {} |",
            s.unanswered_token_requests
        );
    }
    let _ = writeln!(
        out,
        "| workloads to fix | {} of {} |",
        s.workloads_to_fix, s.workloads_total
    );
    let _ = writeln!(
        out,
        "| window covered | {}{} |",
        percent(s.covered_seconds, s.window_seconds),
        if s.coverage_complete {
            ""
        } else {
            " (incomplete)"
        }
    );
    let _ = writeln!(out);

    if fleet {
        let _ = writeln!(out, "## Hosts");
        let _ = writeln!(out);
        let _ = writeln!(out, "| host | verdict | covered | v1 | v2 | 401 | to fix |");
        let _ = writeln!(out, "|---|---|---:|---:|---:|---:|---:|");
        for h in &report.hosts {
            let _ = writeln!(
                out,
                "| {} | {} | {} | {} | {} | {} | {} |",
                esc(&h.host),
                h.verdict,
                if h.coverage.runs.is_empty() {
                    "never ran".to_owned()
                } else {
                    percent(h.coverage.covered_seconds, h.coverage.window_seconds)
                },
                h.v1_calls,
                h.v2_calls,
                h.rejected_401,
                h.workloads_to_fix
            );
        }
        let _ = writeln!(out);
    }

    let _ = writeln!(out, "## Workloads, most blocking first");
    let _ = writeln!(out);
    if report.workloads.is_empty() {
        let _ = writeln!(out, "No workload called IMDS in the window.");
        return out;
    }
    let hosts_head = if fleet { " hosts (v1) |" } else { "" };
    let hosts_rule = if fleet { "---|" } else { "" };
    let _ = writeln!(
        out,
        "| workload | v1 | v2 | 401 | last v1 seen | SDK | cause |{hosts_head} advice |"
    );
    let _ = writeln!(out, "|---|---:|---:|---:|---|---|---|{hosts_rule}---|");
    for w in &report.workloads {
        let hosts = if fleet {
            format!(" {} |", esc(&hosts_cell(w)))
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |{hosts} {} |",
            esc(&w.workload),
            w.v1_calls,
            w.v2_calls,
            w.rejected_401,
            w.last_v1_seen.map_or("-".to_owned(), |t| t.human()),
            esc(&w.sdk()),
            cause(w),
            esc(&advice(w))
        );
    }
    out
}

/// Escapes markdown and HTML metacharacters; control characters (newlines too) become
/// spaces so a cell stays on its line.
fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '|' => out.push_str("\\|"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '#' | '~' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => out.push(' '),
            c => out.push(c),
        }
    }
    out
}
