//! Report tests: golden files per format, verdict and coverage rules, sorting, merge, parsing,
//! HTML safety, and a real headless-browser render.

#![expect(
    clippy::expect_used,
    reason = "tests panic on a broken fixture, like aya's"
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use rstest::rstest;
use serde_json::json;
use time::macros::datetime;

use super::schema::{Interval, Reason, Timestamp};
use super::*;

/// `UPDATE_GOLDEN=1` rewrites the golden files instead of comparing.
const UPDATE_GOLDEN: &str = "UPDATE_GOLDEN";
const GOLDEN_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/report/golden");
const CHROMIUM: &str = "/usr/bin/chromium";
/// When set, the browser test copies its screenshot there.
const SCREENSHOT_OUT: &str = "REPORT_SCREENSHOT_OUT";
const HOSTILE: &str = "<script>alert(1)</script>";

const HOUR: Duration = Duration::from_secs(3_600);
const MIN: Duration = Duration::from_secs(60);

fn start() -> SystemTime {
    SystemTime::from(datetime!(2026-11-17 10:00 UTC))
}
fn end() -> SystemTime {
    SystemTime::from(datetime!(2026-11-24 10:00 UTC))
}

#[allow(clippy::too_many_arguments, reason = "test fixture builder")]
fn workload(
    name: &str,
    sdk: Option<(&str, &str)>,
    cause: Cause,
    v1: u64,
    v2: u64,
    rejected: u64,
    last_v1: Option<SystemTime>,
) -> WorkloadInput {
    WorkloadInput {
        workload: name.to_owned(),
        identity: json!({"process.executable.name": "python3", "process.command_line": format!("python3 /srv/{name}/main.py")}),
        sdk_name: sdk.map(|(n, _)| n.to_owned()),
        sdk_version: sdk.map(|(_, v)| v.to_owned()),
        v1_cause: cause,
        v1_advice: if v1 > 0 {
            format!("fix {name}")
        } else {
            String::new()
        },
        v1_count: v1,
        v2_count: v2,
        rejected_count: rejected,
        unanswered_token_requests: 0,
        first_seen: start() + HOUR,
        last_seen: end() - MIN,
        last_v1_seen: last_v1,
        example_paths: vec!["/latest/meta-data/instance-id".to_owned()],
        last_status: Some(200),
    }
}

/// Hourly buckets with a deterministic shape; nothing in hours 48..54, when the golden host's
/// agent was not running.
fn hourly(seed: u64, scale: u64) -> Vec<(SystemTime, u64)> {
    (0..168u32)
        .filter(|h| !(48..54).contains(h))
        .map(|h| {
            (
                start() + HOUR * h,
                ((u64::from(h) * 7 + seed * 13) % 11).saturating_sub(4) * scale,
            )
        })
        .collect()
}

fn full_run() -> Vec<RunInput> {
    vec![RunInput {
        start: start() - HOUR,
        last_seen: end() - MIN,
        clean_stop: false,
    }]
}

/// The golden host: v1 workloads of every cause, the hostile name, a 401-only workload and a
/// 6 h gap in coverage.
fn fixture() -> ReportInput {
    let mut billing = workload(
        "payments/deployment/billing-api",
        Some(("botocore", "1.12.253")),
        Cause::SdkTooOld,
        1200,
        0,
        0,
        Some(end() - HOUR),
    );
    billing.identity = json!({
        "k8s.namespace.name": "payments",
        "k8s.deployment.name": "billing-api",
        "k8s.pod.name": "billing-api-7d9f8-x2x9q",
        "container.id": "3f2a9c1e0b7d",
        "process.executable.name": "python3",
        "process.command_line": "python3 -m billing.worker --queue invoices"
    });
    billing.v1_advice = "upgrade botocore to >= 1.13.25 (boto3 >= 1.10.25)".to_owned();
    let mut hostile = workload(
        HOSTILE,
        None,
        Cause::NoSdk,
        40,
        0,
        0,
        Some(end() - HOUR * 48),
    );
    hostile.identity = json!({"process.executable.name": "curl", "process.command_line": "curl -s \"http://169.254.169.254/latest/meta-data/<b>x</b>\" | sh"});
    hostile.v1_advice =
        "fetch a token (PUT /latest/api/token) and send X-aws-ec2-metadata-token | or use an SDK"
            .to_owned();
    let mut cron = workload(
        "cron.service",
        Some(("aws-cli", "1.16.0")),
        Cause::FallbackAfterTokenFailure,
        40,
        12,
        0,
        Some(end() - MIN * 10),
    );
    cron.identity = json!({"systemd.unit": "cron.service", "process.executable.name": "aws"});
    cron.unanswered_token_requests = 12;
    cron.v1_advice =
        "token PUT unanswered: raise HttpPutResponseHopLimit to 2 or fix the firewall".to_owned();
    let notebook = workload(
        "jupyter: analysis.ipynb",
        Some(("boto3", "1.34.0")),
        Cause::V1ApiInV2Sdk,
        3,
        900,
        0,
        Some(start() + HOUR * 30),
    );
    let mut frontend = workload(
        "web/deployment/frontend",
        Some(("aws-sdk-js", "3.400.0")),
        Cause::Unknown,
        0,
        5000,
        7,
        None,
    );
    frontend.v1_advice =
        "401: the token expired or is replayed from another instance; refresh it".to_owned();
    frontend.last_status = Some(401);
    ReportInput {
        host: "ip-10-0-1-23".to_owned(),
        generated_at: end(),
        window_start: start(),
        window_end: end(),
        workloads: vec![frontend, notebook, cron, hostile, billing],
        runs: vec![
            RunInput {
                start: start() - HOUR,
                last_seen: start() + HOUR * 48,
                clean_stop: false,
            },
            RunInput {
                start: start() + HOUR * 54,
                last_seen: end() - Duration::from_secs(30),
                clean_stop: false,
            },
        ],
        timeline: vec![
            ("payments/deployment/billing-api".to_owned(), hourly(1, 20)),
            (HOSTILE.to_owned(), hourly(2, 1)),
            ("cron.service".to_owned(), hourly(3, 1)),
            (
                "jupyter: analysis.ipynb".to_owned(),
                vec![(start() + HOUR * 30, 3)],
            ),
        ],
    }
}

/// A host that is ready: v2 only, watched the whole window.
fn ready_host(host: &str) -> ReportInput {
    ReportInput {
        host: host.to_owned(),
        generated_at: end(),
        window_start: start(),
        window_end: end(),
        workloads: vec![workload(
            "web/deployment/frontend",
            Some(("aws-sdk-js", "3.400.0")),
            Cause::Unknown,
            0,
            700,
            0,
            None,
        )],
        runs: full_run(),
        timeline: Vec::new(),
    }
}

fn golden(name: &str, actual: &str) {
    let path = Path::new(GOLDEN_DIR).join(name);
    if std::env::var_os(UPDATE_GOLDEN).is_some_and(|v| v == "1") {
        std::fs::create_dir_all(GOLDEN_DIR).expect("create golden dir");
        std::fs::write(&path, actual).expect("write golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (run with {UPDATE_GOLDEN}=1 to create it)",
            path.display()
        )
    });
    if expected != actual {
        let line = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(0);
        panic!(
            "{} differs from the rendered output at line {}:\n  golden: {:?}\n  actual: {:?}\n(run with {UPDATE_GOLDEN}=1 to accept)",
            path.display(),
            line + 1,
            expected.lines().nth(line),
            actual.lines().nth(line)
        );
    }
}

#[rstest]
#[case(Format::Table, "host.txt")]
#[case(Format::Json, "host.json")]
#[case(Format::Markdown, "host.md")]
#[case(Format::Html, "host.html")]
fn golden_host(#[case] format: Format, #[case] file: &str) {
    golden(file, &render(&build(fixture()), format));
}

#[rstest]
#[case(Format::Table, "fleet.txt")]
#[case(Format::Json, "fleet.json")]
#[case(Format::Markdown, "fleet.md")]
#[case(Format::Html, "fleet.html")]
fn golden_fleet(#[case] format: Format, #[case] file: &str) {
    golden(file, &render(&fleet(), format));
}

#[test]
fn ready_when_no_v1_and_full_coverage() {
    let report = build(ready_host("web-1"));
    assert_eq!(report.verdict, Verdict::Ready);
    assert!(report.reasons.is_empty());
    assert!(report.summary.coverage_complete);
    assert_eq!(report.hosts[0].coverage.covered_fraction, 1.0);
    assert_eq!(exit_code(&report), 0);
    assert!(render(&report, Format::Table).contains("Verdict    READY\n"));
}

#[test]
fn v1_call_means_not_ready() {
    let mut input = ready_host("web-1");
    input.workloads.push(workload(
        "batch",
        None,
        Cause::NoSdk,
        1,
        0,
        0,
        Some(end() - HOUR),
    ));
    let report = build(input);
    assert_eq!(report.verdict, Verdict::NotReady);
    assert_eq!(exit_code(&report), 1);
    assert_eq!(
        report.reasons,
        vec![Reason::V1Calls {
            host: "web-1".to_owned(),
            v1_calls: 1,
            workloads: 1
        }]
    );
    assert_eq!(report.summary.workloads_to_fix, 1);
}

#[test]
fn gap_means_not_ready_and_is_listed() {
    let mut input = ready_host("web-1");
    input.runs = vec![
        RunInput {
            start: start(),
            last_seen: start() + HOUR * 24,
            clean_stop: false,
        },
        RunInput {
            start: start() + HOUR * 30,
            last_seen: end(),
            clean_stop: true,
        },
    ];
    let report = build(input);
    assert_eq!(report.verdict, Verdict::NotReady);
    assert_eq!(exit_code(&report), 1);
    let c = &report.hosts[0].coverage;
    assert_eq!(
        c.uncovered,
        vec![Interval {
            start: Timestamp(start() + HOUR * 24),
            end: Timestamp(start() + HOUR * 30)
        }]
    );
    assert_eq!(c.window_seconds, 7 * 86_400);
    assert_eq!(c.covered_seconds, 7 * 86_400 - 6 * 3_600);
    assert_eq!(c.covered_fraction, 0.9643);
    assert!(matches!(
        report.reasons.as_slice(),
        [Reason::IncompleteCoverage { .. }]
    ));
    let text = render(&report, Format::Table);
    assert!(
        text.contains("not watched: 2026-11-18 10:00:00Z .. 2026-11-18 16:00:00Z (6h)"),
        "{text}"
    );
    assert!(text.contains("96.4% of the window watched"), "{text}");
    assert!(!text.contains("Verdict    READY"), "{text}");
}

#[rstest]
#[case::late_start(start() + HOUR, end(), true, Some((start(), start() + HOUR)))]
#[case::stopped_early(start(), end() - HOUR, true, Some((end() - HOUR, end())))]
// Before the first run nothing was watched, however short: no tolerance at the start.
#[case::a_minute_late_start(start() + MIN, end(), false, Some((start(), start() + MIN)))]
// A run still going (or crashed) heartbeats every 10 s: the lag at the end is tolerated...
#[case::within_tolerance_at_end(start(), end() - MIN * 2, false, None)]
#[case::just_beyond_tolerance(start(), end() - MIN * 2 - Duration::from_secs(1), false, Some((end() - MIN * 2 - Duration::from_secs(1), end())))]
// ...but after a clean stop the agent is known not to be watching.
#[case::stopped_cleanly_a_minute_early(start(), end() - MIN, true, Some((end() - MIN, end())))]
fn edges_of_the_window(
    #[case] run_start: SystemTime,
    #[case] last_seen: SystemTime,
    #[case] clean_stop: bool,
    #[case] gap: Option<(SystemTime, SystemTime)>,
) {
    let mut input = ready_host("web-1");
    input.runs = vec![RunInput {
        start: run_start,
        last_seen,
        clean_stop,
    }];
    let report = build(input);
    let expected: Vec<Interval> = gap
        .map(|(s, e)| Interval {
            start: Timestamp(s),
            end: Timestamp(e),
        })
        .into_iter()
        .collect();
    assert_eq!(report.hosts[0].coverage.uncovered, expected);
    assert_eq!(report.verdict == Verdict::Ready, expected.is_empty());
}

#[test]
fn small_gap_between_runs_is_tolerated() {
    let mut input = ready_host("web-1");
    input.runs = vec![
        RunInput {
            start: start(),
            last_seen: start() + HOUR,
            clean_stop: false,
        },
        RunInput {
            start: start() + HOUR + MIN,
            last_seen: end(),
            clean_stop: true,
        },
    ];
    assert_eq!(build(input).verdict, Verdict::Ready);
}

#[test]
fn agent_never_ran_is_not_ready() {
    let mut input = ready_host("web-1");
    input.workloads.clear();
    // A run entirely before the window does not count.
    input.runs = vec![RunInput {
        start: start() - HOUR * 5,
        last_seen: start() - HOUR,
        clean_stop: true,
    }];
    let report = build(input);
    assert_eq!(report.verdict, Verdict::NotReady);
    assert_eq!(exit_code(&report), 1);
    assert_eq!(
        report.reasons,
        vec![Reason::NeverRan {
            host: "web-1".to_owned()
        }]
    );
    let c = &report.hosts[0].coverage;
    assert_eq!(
        (c.covered_seconds, c.covered_fraction, c.complete),
        (0, 0.0, false)
    );
    assert_eq!(
        c.uncovered,
        vec![Interval {
            start: Timestamp(start()),
            end: Timestamp(end())
        }]
    );
    for format in [Format::Table, Format::Markdown, Format::Html] {
        let text = render(&report, format);
        assert!(text.contains("never ran"), "{format:?}: {text}");
        assert!(text.contains("NOT READY"), "{format:?}");
    }
}

#[test]
fn rows_sorted_by_what_blocks_enforcement() {
    let report = build(fixture());
    let order: Vec<&str> = report
        .workloads
        .iter()
        .map(|w| w.workload.as_str())
        .collect();
    // 1200 v1; then 40 and 40: the later last v1 call first; then 3; then v2 only.
    assert_eq!(
        order,
        [
            "payments/deployment/billing-api",
            "cron.service",
            HOSTILE,
            "jupyter: analysis.ipynb",
            "web/deployment/frontend"
        ]
    );
}

#[test]
fn summary_totals() {
    let s = build(fixture()).summary;
    assert_eq!(
        (s.v1_calls, s.v2_calls, s.rejected_401, s.rejected_workloads),
        (1283, 5912, 7, 1)
    );
    assert_eq!(s.v2_adoption, Some(0.8217));
    assert_eq!((s.workloads_to_fix, s.workloads_total), (4, 5));
    assert_eq!(s.unanswered_token_requests, 12);
    let text = render(&build(fixture()), Format::Table);
    assert!(
        text.contains("7 calls from 1 workload: these workloads are already failing today"),
        "{text}"
    );
}

/// Three hosts: `web-1` ready, `web-2` and `db-1` share `cron.service`, `db-1` has a gap.
fn fleet_inputs() -> Vec<ReportInput> {
    let web1 = ready_host("web-1");
    let mut web2 = ready_host("web-2");
    web2.workloads.push(workload(
        "cron.service",
        Some(("aws-cli", "1.16.0")),
        Cause::SdkTooOld,
        10,
        0,
        0,
        Some(end() - HOUR * 3),
    ));
    web2.timeline = vec![(
        "cron.service".to_owned(),
        vec![(start(), 4), (start() + HOUR, 6)],
    )];
    let mut db1 = ready_host("db-1");
    db1.workloads = vec![workload(
        "cron.service",
        Some(("aws-cli", "1.16.0")),
        Cause::SdkTooOld,
        5,
        1,
        0,
        Some(end() - HOUR),
    )];
    db1.timeline = vec![("cron.service".to_owned(), vec![(start() + HOUR, 5)])];
    db1.runs = vec![RunInput {
        start: start() + HOUR * 24,
        last_seen: end(),
        clean_stop: true,
    }];
    vec![web1, web2, db1]
}

fn fleet() -> Report {
    merge(fleet_inputs().into_iter().map(build).collect()).expect("merge")
}

#[test]
fn merge_groups_the_same_workload_across_hosts() {
    let report = fleet();
    assert_eq!(report.verdict, Verdict::NotReady);
    let hosts: Vec<&str> = report.hosts.iter().map(|h| h.host.as_str()).collect();
    assert_eq!(hosts, ["db-1", "web-1", "web-2"]);
    assert_eq!(report.workloads.len(), 2);
    let cron = &report.workloads[0];
    assert_eq!(cron.workload, "cron.service");
    assert_eq!((cron.v1_calls, cron.v2_calls), (15, 1));
    let per_host: Vec<(&str, u64)> = cron
        .hosts
        .iter()
        .map(|h| (h.host.as_str(), h.v1_calls))
        .collect();
    assert_eq!(per_host, [("db-1", 5), ("web-2", 10)]);
    assert_eq!(cron.last_v1_seen, Some(Timestamp(end() - HOUR)));
    let buckets: Vec<u64> = cron.timeline.iter().map(|b| b.v1_calls).collect();
    assert_eq!(buckets, [4, 11]);
    let frontend = &report.workloads[1];
    // On web-1 and web-2 only (db-1's workloads were replaced).
    assert_eq!(frontend.v2_calls, 1400);
    assert_eq!(frontend.hosts.len(), 2);
    assert_eq!(report.summary.hosts, 3);
    assert!(!report.summary.coverage_complete);
    assert!(
        report
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::IncompleteCoverage { host, .. } if host == "db-1"))
    );
    assert!(
        report
            .reasons
            .iter()
            .any(|r| matches!(r, Reason::V1Calls { host, .. } if host == "web-2"))
    );
    assert_eq!(exit_code(&report), 1);
}

#[test]
fn fleet_of_ready_hosts_is_ready_unless_one_is_incomplete() {
    let ready = merge(vec![
        build(ready_host("a")),
        build(ready_host("b")),
        build(ready_host("c")),
    ])
    .expect("merge");
    assert_eq!(ready.verdict, Verdict::Ready);
    assert_eq!(exit_code(&ready), 0);
    let mut gap = ready_host("c");
    gap.runs[0].last_seen = end() - HOUR;
    let not = merge(vec![
        build(ready_host("a")),
        build(ready_host("b")),
        build(gap),
    ])
    .expect("merge");
    assert_eq!(not.verdict, Verdict::NotReady);
    assert_eq!(not.summary.v1_calls, 0);
}

#[test]
fn json_round_trips_and_merges_from_json() {
    let hosts: Vec<Report> = fleet_inputs().into_iter().map(build).collect();
    let parsed: Vec<Report> = hosts
        .iter()
        .map(|r| {
            let text = render(r, Format::Json);
            let back: Report = serde_json::from_str(&text).expect("parse JSON report");
            assert_eq!(&back, r);
            back
        })
        .collect();
    let fleet = merge(parsed).expect("merge");
    assert_eq!(fleet, merge(hosts).expect("merge"));
    let back: Report =
        serde_json::from_str(&render(&fleet, Format::Json)).expect("parse fleet JSON");
    assert_eq!(back, fleet);
    // A fleet report merges again like its hosts.
    assert_eq!(merge(vec![back]).expect("re-merge"), fleet);
    let value: serde_json::Value =
        serde_json::from_str(&render(&fleet, Format::Json)).expect("json");
    assert_eq!(value["schema"], 1);
    assert_eq!(value["verdict"], "NOT READY");
}

#[test]
fn merge_refuses_bad_input() {
    assert!(matches!(merge(Vec::new()), Err(ReportError::NoReports)));
    let dup = merge(vec![build(ready_host("a")), build(ready_host("a"))]);
    assert!(matches!(dup, Err(ReportError::DuplicateHost { host }) if host == "a"));
    let mut future = build(ready_host("a"));
    future.schema = 2;
    assert!(matches!(
        merge(vec![future]),
        Err(ReportError::UnsupportedSchema {
            found: 2,
            expected: 1
        })
    ));
}

#[rstest]
#[case("30s", 30)]
#[case("90m", 5_400)]
#[case("24h", 86_400)]
#[case("7d", 604_800)]
#[case("2w", 1_209_600)]
#[case("1d12h", 129_600)]
#[case(" 7d ", 604_800)]
fn parse_since_accepts(#[case] input: &str, #[case] secs: u64) {
    assert_eq!(
        parse_since(input).expect("valid"),
        Duration::from_secs(secs)
    );
}

#[rstest]
#[case("")]
#[case("7")]
#[case("d")]
#[case("7x")]
#[case("0h")]
#[case("-1d")]
#[case("1.5h")]
#[case("99999999999999999999d")]
#[case("9999999999999999w")]
fn parse_since_rejects(#[case] input: &str) {
    assert!(
        matches!(parse_since(input), Err(ReportError::BadDuration { .. })),
        "{input:?}"
    );
}

#[test]
fn html_fetches_nothing_and_escapes_untrusted_text() {
    for report in [build(fixture()), fleet()] {
        let html = render(&report, Format::Html);
        let lower = html.to_lowercase();
        for forbidden in [
            "<script",
            "<link",
            "<img",
            "<iframe",
            "<object",
            "<embed",
            "src=",
            "href=",
            "url(",
            "@import",
            "@font-face",
        ] {
            assert!(!lower.contains(forbidden), "HTML contains {forbidden:?}");
        }
        assert!(lower.contains("default-src 'none'"));
    }
    let html = render(&build(fixture()), Format::Html);
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(!html.contains(HOSTILE));
    assert!(html.contains("&lt;b&gt;x&lt;/b&gt;"));
    // Without URLs in the untrusted text, the file holds no URL at all.
    let mut input = fixture();
    for w in &mut input.workloads {
        w.identity = json!({});
    }
    let html = render(&build(input), Format::Html);
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[test]
fn markdown_and_table_neutralise_untrusted_text() {
    let mut input = ready_host("web-1");
    input.workloads.push(workload(
        "evil|name\n\u{1b}[31mred",
        None,
        Cause::NoSdk,
        1,
        0,
        0,
        Some(end()),
    ));
    let report = build(input);
    let md = render(&report, Format::Markdown);
    assert!(md.contains("evil\\|name"), "{md}");
    assert!(!md.contains('\u{1b}'));
    let table = render(&report, Format::Table);
    assert!(!table.contains('\u{1b}'), "{table}");
    assert!(table.contains("evil|name\\n\\u{1b}[31mred"), "{table}");
    let html = render(&build(fixture()), Format::Markdown);
    assert!(!html.contains(HOSTILE));
}

/// Renders the HTML in a real headless Chromium and checks it drew something. Without
/// Chromium the test is skipped, except under `CI=true`, where it fails.
#[test]
fn html_renders_in_headless_chromium() {
    if !Path::new(CHROMIUM).exists() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{CHROMIUM} is missing under CI=true: install it (apt-get install chromium)"
        );
        eprintln!("skipping: {CHROMIUM} not installed");
        return;
    }
    let dir = TempDir::new("imds-report-browser");
    let html = dir.0.join("report.html");
    std::fs::write(&html, render(&build(fixture()), Format::Html)).expect("write html");
    let png = dir.0.join("report.png");
    let profile = dir.0.join("profile");
    let mut child = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--screenshot={}", png.display()))
        .arg("--window-size=1200,900")
        .arg(format!("file://{}", html.display()))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start chromium");
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for chromium") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(status.success(), "chromium exited with {status}");
    let size = std::fs::metadata(&png).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 10 * 1024,
        "screenshot {} is {size} bytes",
        png.display()
    );
    if let Some(out) = std::env::var_os(SCREENSHOT_OUT) {
        std::fs::copy(&png, PathBuf::from(out)).expect("copy screenshot");
    }
}

/// A fresh directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(prefix: &str) -> Self {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("{prefix}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
