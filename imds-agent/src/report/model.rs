//! What the report is built from: one host's aggregated workloads, the agent's runs (which
//! say how much of the window was actually watched) and a v1 timeline. These mirror the
//! store's read API; the caller maps the store's rows onto them, so this module depends on
//! nothing but its own types.

use std::fmt;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

/// Why a workload still calls IMDS without a token. Labels are those of
/// `workload::sdk::V1Cause::as_str` (and of the store): see [`Cause::from_label`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    SdkTooOld,
    FallbackAfterTokenFailure,
    V1ApiInV2Sdk,
    NoSdk,
    /// Also what an unknown label (from a newer agent) reads as.
    #[serde(other)]
    Unknown,
}

impl Cause {
    /// Stable label (JSON): same as the serde name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::SdkTooOld => "sdk_too_old",
            Self::FallbackAfterTokenFailure => "fallback_after_token_failure",
            Self::V1ApiInV2Sdk => "v1_api_in_v2_sdk",
            Self::NoSdk => "no_sdk",
            Self::Unknown => "unknown",
        }
    }

    /// Maps a stored label; anything not known is [`Cause::Unknown`].
    pub fn from_label(label: &str) -> Self {
        match label {
            "sdk_too_old" => Self::SdkTooOld,
            "fallback_after_token_failure" => Self::FallbackAfterTokenFailure,
            "v1_api_in_v2_sdk" => Self::V1ApiInV2Sdk,
            "no_sdk" => Self::NoSdk,
            _ => Self::Unknown,
        }
    }

    /// Words for people (table, markdown, html).
    pub const fn describe(self) -> &'static str {
        match self {
            Self::SdkTooOld => "SDK too old for IMDSv2",
            Self::FallbackAfterTokenFailure => "falls back to v1 after token failure",
            Self::V1ApiInV2Sdk => "v1 API in a v2-capable SDK",
            Self::NoSdk => "no SDK (own HTTP client)",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One workload's counters over the window, as the store aggregates them.
#[derive(Clone, Debug, PartialEq)]
pub struct WorkloadInput {
    /// Human name (e.g. `payments/deploy/api`, `cron.service`); also the merge key across hosts.
    pub workload: String,
    /// Identity attributes (`container.id`, `k8s.namespace.name`, `systemd.unit`,
    /// `process.command_line`, ...): a JSON object. Untrusted text.
    pub identity: serde_json::Value,
    pub sdk_name: Option<String>,
    pub sdk_version: Option<String>,
    pub v1_cause: Cause,
    /// One line of specific advice.
    pub v1_advice: String,
    pub v1_count: u64,
    pub v2_count: u64,
    /// Requests IMDS answered 401 (already failing).
    pub rejected_count: u64,
    /// Token PUTs that got no answer (hop limit, firewall).
    pub unanswered_token_requests: u64,
    pub first_seen: SystemTime,
    pub last_seen: SystemTime,
    pub last_v1_seen: Option<SystemTime>,
    /// Up to 5 request paths.
    pub example_paths: Vec<String>,
    pub last_status: Option<u16>,
}

/// One run of the agent: it watched from `start` to `last_seen` (its last heartbeat, or its
/// stop). `clean_stop == false` means it crashed or was killed after `last_seen`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunInput {
    pub start: SystemTime,
    pub last_seen: SystemTime,
    pub clean_stop: bool,
}

/// Everything [`super::build`] needs for one host.
#[derive(Clone, Debug, PartialEq)]
pub struct ReportInput {
    pub host: String,
    pub generated_at: SystemTime,
    pub window_start: SystemTime,
    pub window_end: SystemTime,
    pub workloads: Vec<WorkloadInput>,
    pub runs: Vec<RunInput>,
    /// Per workload name: (bucket start, v1 calls in that bucket).
    pub timeline: Vec<(String, Vec<(SystemTime, u64)>)>,
}
