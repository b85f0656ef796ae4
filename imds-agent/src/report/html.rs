//! One self-contained HTML file: inline CSS and inline SVG, nothing fetched (a
//! Content-Security-Policy of `default-src 'none'` makes sure of it), no script. Every piece
//! of untrusted text (workload names, command lines, paths, advice) goes through [`esc`].

use std::fmt::Write as _;
use std::time::Duration;

use super::schema::{
    Interval, Report, Timestamp, Verdict, WorkloadRow, human_duration, percent, plural,
};
use super::table::{advice, cause, hosts_cell, rejected_line};

/// Workloads charted over time.
const MAX_CHARTS: usize = 10;
/// Chart size in SVG user units.
const CHART_W: f64 = 600.0;
const CHART_H: f64 = 40.0;

const STYLE: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;color:#1f2328;background:#f6f8fa}
main{max-width:1160px;margin:0 auto;padding:0 24px 48px}
header.verdict{padding:20px 24px;color:#fff}
header.ready{background:#1a7f37}
header.not-ready{background:#cf222e}
header h1{margin:0;font-size:32px;letter-spacing:.5px}
header p{margin:4px 0 0;opacity:.9}
h2{font-size:18px;margin:28px 0 10px;border-bottom:1px solid #d0d7de;padding-bottom:4px}
ul.reasons{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:12px 12px 12px 32px;margin-top:16px}
ul.reasons li{margin:3px 0}
.meta{color:#57606a;font-size:14px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;min-width:140px}
.card b{display:block;font-size:22px}
.card span{color:#57606a;font-size:13px}
.card.warn{border-color:#d4a72c;background:#fff8c5}
.card.bad{border-color:#cf222e}
table{border-collapse:collapse;width:100%;background:#fff;font-size:13px}
th,td{border:1px solid #d0d7de;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eaeef2}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.name{font-weight:600;overflow-wrap:anywhere;min-width:200px}
tr.blocks td.name{color:#cf222e}
svg{display:block}
.cov{display:grid;grid-template-columns:220px 1fr;gap:4px 12px;align-items:center;font-size:13px}
.chart{display:grid;grid-template-columns:260px 600px auto;gap:6px 12px;align-items:center;font-size:13px}
.axis{display:flex;justify-content:space-between;width:600px;color:#57606a;font-size:12px}
details{background:#fff;border:1px solid #d0d7de;border-radius:6px;padding:6px 10px;margin:6px 0;font-size:13px}
summary{cursor:pointer;font-weight:600;word-break:break-all}
dl{display:grid;grid-template-columns:220px 1fr;gap:2px 12px;margin:8px 0}
dt{color:#57606a}
dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,monospace;word-break:break-all}
.note{color:#9a6700}
";

pub(super) fn render(report: &Report) -> String {
    let mut out = String::new();
    let fleet = report.hosts.len() > 1;
    let who = if fleet {
        format!("fleet of {} hosts", report.hosts.len())
    } else {
        format!(
            "host {}",
            report.hosts.first().map_or("", |h| h.host.as_str())
        )
    };
    let (class, line) = match report.verdict {
        Verdict::Ready => ("ready", "Ready for HttpTokens=required"),
        Verdict::NotReady => ("not-ready", "Not ready for HttpTokens=required"),
    };
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>IMDS readiness: {} — {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n",
        esc(&who),
        report.verdict
    );
    let _ = writeln!(
        out,
        "<header class=\"verdict {class}\"><h1>{}</h1><p>{line} · {}</p></header>\n<main>",
        report.verdict,
        esc(&who)
    );
    if !report.reasons.is_empty() {
        out.push_str("<ul class=\"reasons\">\n");
        for reason in &report.reasons {
            let _ = writeln!(out, "<li>{}</li>", esc(&reason.to_string()));
        }
        out.push_str("</ul>\n");
    }
    let _ = writeln!(
        out,
        "<p class=\"meta\">Window {} .. {} ({}) · generated {}</p>",
        report.window.start,
        report.window.end,
        human_duration(report.window.duration()),
        report.generated_at
    );

    summary(&mut out, report);
    coverage(&mut out, report);
    if fleet {
        hosts(&mut out, report);
    }
    charts(&mut out, report);
    workloads(&mut out, report, fleet);
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

fn summary(out: &mut String, report: &Report) {
    let s = &report.summary;
    out.push_str("<h2>Summary</h2>\n<div class=\"cards\">\n");
    let mut card = |class: &str, value: String, label: &str| {
        let _ = writeln!(
            out,
            "<div class=\"card {class}\"><b>{}</b><span>{}</span></div>",
            esc(&value),
            esc(label)
        );
    };
    card(
        if s.v1_calls > 0 { "bad" } else { "" },
        s.v1_calls.to_string(),
        "IMDSv1 calls",
    );
    card("", s.v2_calls.to_string(), "IMDSv2 calls");
    card(
        "",
        match s.v2_adoption {
            Some(_) => percent(s.v2_calls, s.v1_calls + s.v2_calls),
            None => "-".to_owned(),
        },
        "v2 adoption (v2 / all calls)",
    );
    card(
        if s.rejected_401 > 0 { "warn" } else { "" },
        s.rejected_401.to_string(),
        "already rejected (401)",
    );
    card(
        if s.workloads_to_fix > 0 { "bad" } else { "" },
        format!("{} of {}", s.workloads_to_fix, s.workloads_total),
        "workloads to fix",
    );
    card(
        if s.coverage_complete { "" } else { "bad" },
        percent(s.covered_seconds, s.window_seconds),
        if s.coverage_complete {
            "of the window watched"
        } else {
            "of the window watched (incomplete)"
        },
    );
    out.push_str("</div>\n");
    if s.rejected_401 > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">Already rejected (401): {}.</p>",
            esc(&rejected_line(report))
        );
    }
    if s.unanswered_token_requests > 0 {
        let _ = writeln!(
            out,
            "<p class=\"note\">{} token PUT{} got no answer (hop limit or firewall?).</p>",
            s.unanswered_token_requests,
            plural(s.unanswered_token_requests)
        );
    }
}

fn coverage(out: &mut String, report: &Report) {
    out.push_str("<h2>Coverage</h2>\n<div class=\"cov\">\n");
    for host in &report.hosts {
        let c = &host.coverage;
        let status = if c.runs.is_empty() {
            "never ran".to_owned()
        } else {
            format!(
                "{} watched{}",
                percent(c.covered_seconds, c.window_seconds),
                if c.complete { "" } else { ", incomplete" }
            )
        };
        let _ = writeln!(
            out,
            "<div><b>{}</b><br>{}</div>",
            esc(&host.host),
            esc(&status)
        );
        let _ = write!(
            out,
            "<svg viewBox=\"0 0 {CHART_W} 14\" width=\"{CHART_W}\" height=\"14\" role=\"img\" aria-label=\"coverage\">\
             <rect x=\"0\" y=\"0\" width=\"{CHART_W}\" height=\"14\" fill=\"{}\"/>",
            if c.runs.is_empty() {
                "#cf222e"
            } else {
                "#2da44e"
            }
        );
        for gap in &c.uncovered {
            let (x, w) = span(host.window, gap.start, gap.duration());
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"0\" width=\"{w:.1}\" height=\"14\" fill=\"#cf222e\"><title>not watched: {} .. {}</title></rect>",
                gap.start, gap.end
            );
        }
        out.push_str("</svg>\n");
        if !c.uncovered.is_empty() {
            out.push_str("<div></div><div>");
            let gaps: Vec<String> = c
                .uncovered
                .iter()
                .map(|g| {
                    format!(
                        "not watched {} .. {} ({})",
                        g.start,
                        g.end,
                        human_duration(g.duration())
                    )
                })
                .collect();
            out.push_str(&esc(&gaps.join("; ")));
            out.push_str("</div>\n");
        }
    }
    out.push_str("</div>\n");
}

fn hosts(out: &mut String, report: &Report) {
    out.push_str(
        "<h2>Hosts</h2>\n<table>\n<tr><th>host</th><th>verdict</th><th>covered</th><th>v1</th><th>v2</th><th>401</th><th>to fix</th></tr>\n",
    );
    for h in &report.hosts {
        let _ = writeln!(
            out,
            "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
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
    out.push_str("</table>\n");
}

/// One bar chart of v1 calls over the window per blocking workload (top [`MAX_CHARTS`]);
/// time the agent did not watch is shaded on single-host reports.
fn charts(out: &mut String, report: &Report) {
    let blocking: Vec<&WorkloadRow> = report
        .workloads
        .iter()
        .filter(|w| w.blocks())
        .take(MAX_CHARTS)
        .collect();
    if blocking.is_empty() {
        return;
    }
    let window = report.window;
    let bucket = Duration::from_secs(
        report
            .timeline_bucket_seconds
            .unwrap_or_else(|| (window.duration().as_secs() / 48).max(1)),
    );
    let uncovered: Vec<Interval> = match report.hosts.as_slice() {
        [only] => only.coverage.uncovered.clone(),
        _ => Vec::new(),
    };
    let _ = writeln!(
        out,
        "<h2>IMDSv1 calls over time</h2>\n<p class=\"meta\">Top {} blocking workload{}; one bar per {}{}.</p>\n<div class=\"chart\">",
        blocking.len(),
        plural(blocking.len() as u64),
        human_duration(bucket),
        if uncovered.is_empty() {
            ""
        } else {
            "; grey: not watched"
        }
    );
    for w in blocking {
        let max = w
            .timeline
            .iter()
            .map(|b| b.v1_calls)
            .max()
            .unwrap_or(0)
            .max(1);
        let _ = write!(
            out,
            "<div class=\"name\">{}</div><svg viewBox=\"0 0 {CHART_W} {CHART_H}\" width=\"{CHART_W}\" height=\"{CHART_H}\" role=\"img\" aria-label=\"v1 calls over time\">\
             <rect x=\"0\" y=\"0\" width=\"{CHART_W}\" height=\"{CHART_H}\" fill=\"#fff\" stroke=\"#d0d7de\"/>",
            esc(&w.workload)
        );
        for gap in &uncovered {
            let (x, width) = span(window, gap.start, gap.duration());
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"0\" width=\"{width:.1}\" height=\"{CHART_H}\" fill=\"#d0d7de\"/>"
            );
        }
        for b in &w.timeline {
            if b.v1_calls == 0 {
                continue;
            }
            let (x, width) = span(window, b.start, bucket);
            let h = (b.v1_calls as f64 / max as f64 * (CHART_H - 4.0)).max(1.0);
            let _ = write!(
                out,
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"#cf222e\"><title>{}: {} v1 call{}</title></rect>",
                CHART_H - h,
                width.max(1.0),
                b.start,
                b.v1_calls,
                plural(b.v1_calls)
            );
        }
        let _ = writeln!(
            out,
            "</svg><div>{} v1 · peak {max}/bucket</div>",
            w.v1_calls
        );
    }
    let _ = writeln!(
        out,
        "<div></div><div class=\"axis\"><span>{}</span><span>{}</span></div><div></div>\n</div>",
        window.start, window.end
    );
}

fn workloads(out: &mut String, report: &Report, fleet: bool) {
    out.push_str("<h2>Workloads, most blocking first</h2>\n");
    if report.workloads.is_empty() {
        out.push_str("<p>No workload called IMDS in the window.</p>\n");
        return;
    }
    out.push_str("<table>\n<tr><th>workload</th><th>v1</th><th>v2</th><th>401</th><th>last v1 seen</th><th>SDK</th><th>cause</th>");
    if fleet {
        out.push_str("<th>hosts (v1)</th>");
    }
    out.push_str("<th>advice</th></tr>\n");
    for w in &report.workloads {
        let _ = write!(
            out,
            "<tr{}><td class=\"name\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td>{}</td><td>{}</td><td>{}</td>",
            if w.blocks() { " class=\"blocks\"" } else { "" },
            esc(&w.workload),
            w.v1_calls,
            w.v2_calls,
            w.rejected_401,
            w.last_v1_seen.map_or("-".to_owned(), Timestamp::human),
            esc(&w.sdk()),
            esc(cause(w))
        );
        if fleet {
            let _ = write!(out, "<td>{}</td>", esc(&hosts_cell(w)));
        }
        let _ = writeln!(out, "<td>{}</td></tr>", esc(&advice(w)));
    }
    out.push_str("</table>\n<h2>Workload details</h2>\n");
    for w in &report.workloads {
        let _ = writeln!(out, "<details><summary>{}</summary><dl>", esc(&w.workload));
        let mut item = |k: &str, v: &str| {
            let _ = writeln!(out, "<dt>{}</dt><dd>{}</dd>", esc(k), esc(v));
        };
        if let Some(map) = w.identity.as_object() {
            for (k, v) in map {
                let text = match v {
                    serde_json::Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                item(k, &text);
            }
        }
        item("hosts", &hosts_cell(w));
        item("first seen", &w.first_seen.human());
        item("last seen", &w.last_seen.human());
        item(
            "last status",
            &w.last_status.map_or("-".to_owned(), |s| s.to_string()),
        );
        item(
            "unanswered token PUTs",
            &w.unanswered_token_requests.to_string(),
        );
        item("example paths", &w.example_paths.join("  "));
        out.push_str("</dl></details>\n");
    }
}

/// x and width of `[start, start + len]` on a chart of the window.
fn span(window: Interval, start: Timestamp, len: Duration) -> (f64, f64) {
    let total = window.duration().as_secs_f64().max(1.0);
    let x = start.since(window.start).as_secs_f64() / total * CHART_W;
    let w = len.as_secs_f64() / total * CHART_W;
    let x = x.clamp(0.0, CHART_W);
    (x, w.min(CHART_W - x))
}

/// HTML-escapes text for element content and quoted attributes.
pub(super) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}
