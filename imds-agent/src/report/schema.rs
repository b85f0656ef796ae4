//! The report itself. Its JSON form (`--format json`) is exactly this struct, versioned by
//! `schema`, so `--merge` can read per-host reports back and combine them into a fleet report.

use std::fmt;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::model::Cause;

/// Version of the JSON form. Bump on any incompatible change; `merge` refuses others.
pub const SCHEMA_VERSION: u32 = 1;

/// A point in time; RFC 3339 UTC in JSON (nanoseconds kept, so JSON round-trips exactly).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub SystemTime);

impl Timestamp {
    /// RFC 3339, e.g. `2026-11-24T09:22:41Z`; `None` outside years 0..=9999.
    pub fn rfc3339(self) -> Option<String> {
        OffsetDateTime::from(self.0).format(&Rfc3339).ok()
    }

    /// Whole seconds, for people: `2026-11-24 09:22:41Z`.
    pub fn human(self) -> String {
        let t = OffsetDateTime::from(self.0);
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}Z",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        )
    }

    /// `self - earlier`, zero if `earlier` is later.
    pub fn since(self, earlier: Timestamp) -> Duration {
        self.0.duration_since(earlier.0).unwrap_or_default()
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.human())
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.rfc3339() {
            Some(text) => serializer.serialize_str(&text),
            None => Err(serde::ser::Error::custom(
                "timestamp outside years 0..=9999",
            )),
        }
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        OffsetDateTime::parse(&text, &Rfc3339)
            .map(|t| Timestamp(SystemTime::from(t)))
            .map_err(|e| serde::de::Error::custom(format!("bad RFC 3339 time {text:?}: {e}")))
    }
}

/// `[start, end]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interval {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Interval {
    pub fn duration(&self) -> Duration {
        self.end.since(self.start)
    }
}

/// `READY` only when no IMDSv1 call was seen **and** the agent watched the whole window.
/// Anything else is `NOT READY`, with [`Reason`]s saying why (v1 calls, incomplete coverage,
/// agent never ran). There is no third state: a window the agent did not watch is never
/// called ready, and the exit code is 1 for it as for v1 calls.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Verdict {
    #[serde(rename = "READY")]
    Ready,
    #[serde(rename = "NOT READY")]
    NotReady,
}

impl Verdict {
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Ready => "READY",
            Self::NotReady => "NOT READY",
        }
    }
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a host (and so the report) is not ready.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// IMDSv1 calls were seen: enforcement would break these workloads.
    V1Calls {
        host: String,
        v1_calls: u64,
        workloads: u64,
    },
    /// The agent did not watch part of the window (gaps listed in the host's coverage).
    IncompleteCoverage {
        host: String,
        covered_seconds: u64,
        window_seconds: u64,
    },
    /// No agent run overlaps the window: nothing is known about this host.
    NeverRan { host: String },
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::V1Calls {
                host,
                v1_calls,
                workloads,
            } => write!(
                f,
                "{host}: {v1_calls} IMDSv1 call{} from {workloads} workload{} (would break under HttpTokens=required)",
                plural(*v1_calls),
                plural(*workloads)
            ),
            Self::IncompleteCoverage {
                host,
                covered_seconds,
                window_seconds,
            } => write!(
                f,
                "{host}: incomplete coverage: the agent watched {} of the window ({} of {}); \
                 v1 calls in the unwatched time would not be seen",
                percent(*covered_seconds, *window_seconds),
                human_duration(Duration::from_secs(*covered_seconds)),
                human_duration(Duration::from_secs(*window_seconds))
            ),
            Self::NeverRan { host } => {
                write!(
                    f,
                    "{host}: the agent never ran in the window: nothing is known about this host"
                )
            }
        }
    }
}

/// One agent run as reported.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub start: Timestamp,
    pub last_seen: Timestamp,
    pub clean_stop: bool,
}

/// How much of the window the agent watched on one host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Coverage {
    pub window_seconds: u64,
    pub covered_seconds: u64,
    /// `covered_seconds / window_seconds`, 4 decimals (1 for an empty window that was watched).
    pub covered_fraction: f64,
    /// No uncovered interval and at least one run.
    pub complete: bool,
    /// Gaps no longer than this (heartbeat jitter, a quick restart) count as watched.
    pub tolerance_seconds: u64,
    /// Time in the window no run watched, longer than the tolerance.
    pub uncovered: Vec<Interval>,
    pub runs: Vec<Run>,
}

impl Coverage {
    /// Runs that stopped inside the window without a clean stop (crash, kill, power loss);
    /// a run still going at the end of the window is not one.
    pub fn unclean_stops(&self, window: Interval) -> u64 {
        let tolerance = Duration::from_secs(self.tolerance_seconds);
        self.runs
            .iter()
            .filter(|r| !r.clean_stop && window.end.since(r.last_seen) > tolerance)
            .count() as u64
    }
}

/// One host of the report (a single-host report has one).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostReport {
    pub host: String,
    pub generated_at: Timestamp,
    pub window: Interval,
    pub verdict: Verdict,
    pub coverage: Coverage,
    pub v1_calls: u64,
    pub v2_calls: u64,
    pub rejected_401: u64,
    pub workloads_to_fix: u64,
}

/// Counts of one workload on one host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounts {
    pub host: String,
    pub v1_calls: u64,
    pub v2_calls: u64,
    pub rejected_401: u64,
}

/// v1 calls in one timeline bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bucket {
    pub start: Timestamp,
    pub v1_calls: u64,
}

/// One workload row; in a fleet report, the same workload name on several hosts.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkloadRow {
    pub workload: String,
    /// Hosts where it was seen, sorted by name, with its counts there.
    pub hosts: Vec<HostCounts>,
    pub identity: serde_json::Value,
    pub sdk_name: Option<String>,
    pub sdk_version: Option<String>,
    pub cause: Cause,
    pub advice: String,
    pub v1_calls: u64,
    pub v2_calls: u64,
    pub rejected_401: u64,
    pub unanswered_token_requests: u64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub last_v1_seen: Option<Timestamp>,
    pub example_paths: Vec<String>,
    pub last_status: Option<u16>,
    pub timeline: Vec<Bucket>,
}

impl WorkloadRow {
    /// Blocks `HttpTokens=required`.
    pub fn blocks(&self) -> bool {
        self.v1_calls > 0
    }

    /// `name version`, `name`, or `-`.
    pub fn sdk(&self) -> String {
        match (&self.sdk_name, &self.sdk_version) {
            (Some(n), Some(v)) => format!("{n} {v}"),
            (Some(n), None) => n.clone(),
            (None, Some(v)) => format!("? {v}"),
            (None, None) => "-".to_owned(),
        }
    }
}

/// Totals over the report.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub hosts: u64,
    pub v1_calls: u64,
    pub v2_calls: u64,
    /// `v2 / (v1 + v2)`, 4 decimals; `None` when no call was seen.
    pub v2_adoption: Option<f64>,
    /// Calls IMDS already refused (401): those workloads are already failing today.
    pub rejected_401: u64,
    pub rejected_workloads: u64,
    pub unanswered_token_requests: u64,
    pub workloads_total: u64,
    pub workloads_to_fix: u64,
    /// Summed over hosts.
    pub window_seconds: u64,
    pub covered_seconds: u64,
    pub coverage_complete: bool,
}

/// The readiness report of one host, or of a fleet ([`super::merge`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// [`SCHEMA_VERSION`].
    pub schema: u32,
    pub generated_at: Timestamp,
    /// The union of the hosts' windows.
    pub window: Interval,
    pub verdict: Verdict,
    /// Empty when `READY`.
    pub reasons: Vec<Reason>,
    pub summary: Summary,
    /// Sorted by name.
    pub hosts: Vec<HostReport>,
    /// Sorted by what blocks enforcement: v1 calls desc, then last v1 seen desc, then name.
    pub workloads: Vec<WorkloadRow>,
    /// Timeline bucket width inferred from bucket starts (`None` without a timeline).
    pub timeline_bucket_seconds: Option<u64>,
}

/// The coverage detail lines of one host (unwatched intervals, unclean stops), each
/// starting with `bullet`; shared by the text renderers.
pub(crate) fn coverage_detail_lines(c: &Coverage, window: Interval, bullet: &str) -> Vec<String> {
    let mut lines: Vec<String> = c
        .uncovered
        .iter()
        .map(|gap| {
            format!(
                "{bullet}not watched: {} .. {} ({})",
                gap.start,
                gap.end,
                human_duration(gap.duration())
            )
        })
        .collect();
    let unclean = c.unclean_stops(window);
    if unclean > 0 {
        lines.push(format!(
            "{bullet}{unclean} agent run{} ended without a clean stop (crash or kill?)",
            plural(unclean)
        ));
    }
    lines
}

pub(crate) fn plural(n: u64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `93.2%`, rounded to one decimal but never to 100% unless whole (and never to 0% unless
/// nothing).
pub(crate) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 || part >= whole {
        return "100%".to_owned();
    }
    let tenths = (u128::from(part) * 1000 + u128::from(whole) / 2) / u128::from(whole);
    let tenths = if part > 0 { tenths.clamp(1, 999) } else { 0 };
    format!("{}.{}%", tenths / 10, tenths % 10)
}

/// Ratio rounded to 4 decimals (exact through JSON).
pub(crate) fn ratio(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 1.0;
    }
    let scaled = (u128::from(part) * 10_000 + u128::from(whole) / 2) / u128::from(whole);
    scaled as f64 / 10_000.0
}

/// `7d`, `6d 18h`, `4h 12m`, `90s`: the largest unit and the next one when not zero.
pub fn human_duration(d: Duration) -> String {
    const UNITS: [(u64, &str); 4] = [(86_400, "d"), (3_600, "h"), (60, "m"), (1, "s")];
    let secs = d.as_secs();
    let Some(i) = UNITS.iter().position(|(size, _)| secs >= *size) else {
        return "0s".to_owned();
    };
    let (size, name) = UNITS[i];
    let mut out = format!("{}{name}", secs / size);
    if let Some((next, next_name)) = UNITS.get(i + 1) {
        let n = secs % size / next;
        if n > 0 {
            out.push_str(&format!(" {n}{next_name}"));
        }
    }
    out
}
