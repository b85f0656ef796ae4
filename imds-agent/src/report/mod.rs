//! The readiness report: is this host (or fleet) ready for `HttpTokens=required`, and which
//! workloads must be fixed first.
//!
//! [`build`] turns one host's aggregates (from the store) into a [`Report`]; [`merge`] combines
//! host reports (read back from their JSON form) into a fleet report; [`render`] writes it as a
//! terminal table, JSON, GitHub markdown or one self-contained HTML file.
//!
//! # Verdict
//!
//! `READY` only when no IMDSv1 call was seen in the window **and** the agent watched the whole
//! window. Coverage comes from the agent's runs: time before the first run, between runs and
//! after the last run's `last_seen` is uncovered, except gaps of at most
//! [`COVERAGE_TOLERANCE`] (2 min). A report never says `READY` over time it did not watch:
//! incomplete coverage (or no run at all) is `NOT READY` with an explicit reason, the
//! uncovered intervals and the covered fraction. There is no third verdict; [`exit_code`] is
//! 0 for `READY` and 1 otherwise.

mod build;
mod html;
mod markdown;
pub mod model;
pub mod schema;
mod table;
#[cfg(test)]
mod tests;

use std::time::Duration;

use thiserror::Error;

pub use build::{COVERAGE_TOLERANCE, build, coverage, merge};
pub use model::{Cause, ReportInput, RunInput, WorkloadInput};
pub use schema::{Report, SCHEMA_VERSION, Verdict};

/// Output format of `imds-agent report --format`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Plain text with aligned columns, for a terminal.
    Table,
    /// The report as JSON (readable back by `--merge`).
    Json,
    /// GitHub-flavoured markdown tables.
    Markdown,
    /// One self-contained HTML file (inline CSS and SVG, no external resource).
    Html,
}

#[derive(Debug, Error)]
pub enum ReportError {
    #[error("nothing to merge: no report given")]
    NoReports,
    #[error("report schema {found} is not supported (this build reads schema {expected})")]
    UnsupportedSchema { found: u32, expected: u32 },
    #[error("host {host:?} appears in more than one report; merge each host once")]
    DuplicateHost { host: String },
    #[error("bad duration {input:?}: {why} (expected e.g. 30s, 90m, 24h, 7d, 2w or 1d12h)")]
    BadDuration { input: String, why: &'static str },
}

/// Renders the report. JSON is the [`Report`] struct, pretty-printed.
pub fn render(report: &Report, format: Format) -> String {
    match format {
        Format::Table => table::render(report),
        Format::Json => match serde_json::to_string_pretty(report) {
            Ok(mut text) => {
                text.push('\n');
                text
            }
            // Only a time outside years 0..=9999 can fail.
            Err(e) => format!("{{\"error\": {:?}}}\n", e.to_string()),
        },
        Format::Markdown => markdown::render(report),
        Format::Html => html::render(report),
    }
}

/// 0 when `READY`, 1 otherwise (v1 calls, incomplete coverage, agent never ran).
pub fn exit_code(report: &Report) -> i32 {
    match report.verdict {
        Verdict::Ready => 0,
        Verdict::NotReady => 1,
    }
}

/// `--since`: a positive number and a unit (`s`, `m`, `h`, `d`, `w`), optionally several
/// (`1d12h`).
pub fn parse_since(s: &str) -> Result<Duration, ReportError> {
    let bad = |why| ReportError::BadDuration {
        input: s.to_owned(),
        why,
    };
    let text = s.trim();
    if text.is_empty() {
        return Err(bad("empty"));
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    for c in text.chars() {
        if let Some(d) = c.to_digit(10) {
            let n = number.unwrap_or(0);
            number = Some(
                n.checked_mul(10)
                    .and_then(|n| n.checked_add(u64::from(d)))
                    .ok_or_else(|| bad("too large"))?,
            );
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 7 * 86_400,
            _ => return Err(bad("unknown unit")),
        };
        let n = number
            .take()
            .ok_or_else(|| bad("a unit without a number"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| bad("too large"))?;
    }
    if number.is_some() {
        return Err(bad("a number without a unit"));
    }
    if total == 0 {
        return Err(bad("must be more than zero"));
    }
    Ok(Duration::from_secs(total))
}
