//! AWS IMDS traffic from real clients: IMDSv1 and IMDSv2 over IPv4, IPv6 and v4-mapped
//! sockets, split writes, keep-alive, short-lived processes, token redaction, and
//! `HttpTokens=required`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use imds_agent_e2e::events::{
    assert_fields, assert_not_true, assert_str, for_pid, looks_rfc3339, only_event, pretty, str_of,
};
use imds_agent_e2e::{Fixture, MockOptions, TokenMode, env, imds_url};
use serde_json::{Value, json};

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const INSTANCE_ID: &str = "i-0123456789abcdef0";
const TOKEN_PATH: &str = "/latest/api/token";
const TTL_HEADER: &str = "X-aws-ec2-metadata-token-ttl-seconds: 21600";
const TOKEN_HEADER: &str = "X-aws-ec2-metadata-token";
const REDACTED: &str = "[REDACTED]";

fn realpath_of(path: &std::path::Path) -> String {
    env::realpath(path).unwrap().to_string_lossy().into_owned()
}

/// What the kernel calls the task after exec: the basename of the exec'd path, 15 bytes.
fn comm_of(path: &std::path::Path) -> String {
    let base = path.file_name().unwrap().to_string_lossy().into_owned();
    base.chars().take(15).collect()
}

/// The fields every tokenless metadata GET over IPv4 to 169.254.169.254:80 must carry.
fn v1_get(path: &str, status: u16) -> Vec<(&'static str, Value)> {
    vec![
        ("imds.version", json!("v1")),
        ("imds.cloud", json!("aws")),
        ("imds.request.kind", json!("metadata")),
        ("http.request.method", json!("GET")),
        ("url.path", json!(path)),
        ("http.response.status_code", json!(status)),
        ("server.address", json!("169.254.169.254")),
        ("server.port", json!(80)),
    ]
}

fn v2(kind: &str, method: &str, path: &str, status: u16) -> Vec<(&'static str, Value)> {
    vec![
        ("imds.version", json!("v2")),
        ("imds.cloud", json!("aws")),
        ("imds.request.kind", json!(kind)),
        ("http.request.method", json!(method)),
        ("url.path", json!(path)),
        ("http.response.status_code", json!(status)),
    ]
}

#[test]
fn curl_without_token_is_v1_with_full_process_identity() {
    let Some(fx) = Fixture::start() else { return };
    let cgroup = fx.cgroup.relative().to_owned();
    let url = imds_url(INSTANCE_ID_PATH);
    let argv = ["curl", "-s", url.as_str()];
    let run = fx.run_ok(&argv);
    assert_eq!(run.stdout, INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    assert_eq!(
        out.events.len(),
        1,
        "exactly one event expected:\n{}",
        pretty(&out.events)
    );
    let event = only_event(&out.events, run.pid);
    let mut expected = v1_get(INSTANCE_ID_PATH, 200);
    expected.extend([
        ("network.type", json!("ipv4")),
        ("process.pid", json!(run.pid)),
        ("process.parent_pid", json!(std::process::id())),
        ("process.executable.name", json!("curl")),
        (
            "process.executable.path",
            json!(realpath_of(&env::curl().unwrap())),
        ),
        ("process.command_line", json!(argv.join(" "))),
        ("process.command_args", json!(argv)),
        ("process.user.id", json!(0)),
        ("process.owner", json!("root")),
        ("cgroup.path", json!(cgroup)),
    ]);
    assert_fields(&event, &expected);
    assert_str(&event, "time", "an RFC 3339 timestamp", looks_rfc3339);
    assert_str(&event, "user_agent.original", "curl's User-Agent", |ua| {
        ua.starts_with("curl/")
    });
    assert!(
        event.get("imds.connection.id").is_some_and(Value::is_u64),
        "imds.connection.id must be a number:\n{event:#}"
    );
    assert_not_true(&event, "imds.unanswered");
    assert_not_true(&event, "imds.unparsed");
}

#[test]
fn curl_token_flow_is_v2_and_the_token_never_appears() {
    let Some(fx) = Fixture::start() else { return };
    let put = fx.run_ok(&[
        "curl",
        "-s",
        "-X",
        "PUT",
        "-H",
        TTL_HEADER,
        &imds_url(TOKEN_PATH),
    ]);
    let token = put.stdout.trim().to_owned();
    assert!(token.len() > 20, "the mock returned no token: {put:?}");
    let header = format!("{TOKEN_HEADER}: {token}");
    let get = fx.run_ok(&["curl", "-s", "-H", &header, &imds_url(INSTANCE_ID_PATH)]);
    assert_eq!(get.stdout, INSTANCE_ID);
    fx.agent.wait_for_pid(put.pid, 1);
    fx.agent.wait_for_pid(get.pid, 1);
    let out = fx.stop();

    assert_fields(
        &only_event(&out.events, put.pid),
        &v2("token", "PUT", TOKEN_PATH, 200),
    );
    let get_event = only_event(&out.events, get.pid);
    assert_fields(&get_event, &v2("metadata", "GET", INSTANCE_ID_PATH, 200));
    assert_str(&get_event, "process.command_line", "redacted", |c| {
        c.contains(REDACTED)
    });
    assert!(
        !out.all_text().contains(&token),
        "the token leaked into the agent's output:\n{}",
        out.all_text()
    );
}

#[test]
fn python_urllib_without_token_is_v1() {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("urllib_get.py");
    let url = imds_url(INSTANCE_ID_PATH);
    let run = fx.run_ok(&[python.as_os_str(), script.as_os_str(), url.as_ref()]);
    assert_eq!(run.stdout.trim(), INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    let mut expected = v1_get(INSTANCE_ID_PATH, 200);
    expected.extend([
        ("process.executable.name", json!(comm_of(&python))),
        ("process.executable.path", json!(realpath_of(&python))),
        ("process.parent_pid", json!(std::process::id())),
    ]);
    assert_fields(&event, &expected);
    assert_str(&event, "user_agent.original", "urllib's User-Agent", |ua| {
        ua.starts_with("Python-urllib/")
    });
}

/// Request line and each header in its own TCP segment.
fn split_writes(version: &str, mid_header: bool) {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("split_writes.py");
    let mut argv = vec![
        python.to_string_lossy().into_owned(),
        script.to_string_lossy().into_owned(),
        version.to_owned(),
    ];
    if mid_header {
        argv.push("--mid-header".to_owned());
    }
    let run = fx.run_ok(&argv);
    let expected_requests = if version == "v2" { 2 } else { 1 };
    let statuses: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(statuses["statuses"], json!(vec![200; expected_requests]));
    fx.agent.wait_for_pid(run.pid, expected_requests);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(
        events.len(),
        expected_requests,
        "one event per request:\n{}",
        pretty(&out.events)
    );
    if version == "v2" {
        assert_fields(&events[0], &v2("token", "PUT", TOKEN_PATH, 200));
        assert_fields(&events[1], &v2("metadata", "GET", INSTANCE_ID_PATH, 200));
        assert_eq!(
            events[0]["imds.connection.id"],
            events[1]["imds.connection.id"],
            "one connection:\n{}",
            pretty(&events)
        );
    } else {
        assert_fields(&events[0], &v1_get(INSTANCE_ID_PATH, 200));
    }
    assert_eq!(
        str_of(&events[0], "user_agent.original"),
        Some("imds-e2e-split-writes/1.0")
    );
}

#[test]
fn split_writes_v1() {
    split_writes("v1", false);
}

#[test]
fn split_writes_v2() {
    split_writes("v2", false);
}

#[test]
fn split_writes_v2_inside_header_names() {
    split_writes("v2", true);
}

#[test]
fn keep_alive_v2_then_v1_on_one_connection() {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("keepalive.py");
    let run = fx.run_ok(&[python.as_os_str(), script.as_os_str()]);
    let report: Value = serde_json::from_str(run.stdout.trim()).unwrap();
    assert_eq!(report["statuses"], json!([200, 200, 200]));
    let ports = report["local_ports"].as_array().unwrap();
    assert!(
        ports.iter().all(|p| p == &ports[0]),
        "the client reconnected: {report}"
    );
    fx.agent.wait_for_pid(run.pid, 3);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(
        events.len(),
        3,
        "three requests, three events:\n{}",
        pretty(&out.events)
    );
    assert_fields(&events[0], &v2("token", "PUT", TOKEN_PATH, 200));
    assert_fields(&events[1], &v2("metadata", "GET", INSTANCE_ID_PATH, 200));
    assert_fields(&events[2], &v1_get(INSTANCE_ID_PATH, 200));
    let id = &events[0]["imds.connection.id"];
    assert!(
        id.is_u64(),
        "imds.connection.id must be a number:\n{}",
        pretty(&events)
    );
    assert!(
        events.iter().all(|e| &e["imds.connection.id"] == id),
        "same connection id expected:\n{}",
        pretty(&events)
    );
}

#[test]
fn ipv6_endpoint() {
    let Some(fx) = Fixture::start() else { return };
    let run = fx.run_ok(&[
        "curl",
        "-s",
        "-g",
        "http://[fd00:ec2::254]/latest/meta-data/instance-id",
    ]);
    assert_eq!(run.stdout, INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(
        &event,
        &[
            ("imds.version", json!("v1")),
            ("http.request.method", json!("GET")),
            ("url.path", json!(INSTANCE_ID_PATH)),
            ("http.response.status_code", json!(200)),
            ("network.type", json!("ipv6")),
            ("server.address", json!("fd00:ec2::254")),
            ("server.port", json!(80)),
        ],
    );
}

#[test]
fn v4_mapped_ipv6_socket_is_counted() {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("v4mapped.py");
    let run = fx.run_ok(&[python.as_os_str(), script.as_os_str()]);
    assert_eq!(run.stdout.trim(), "200");
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(&event, &v1_get(INSTANCE_ID_PATH, 200));
}

#[test]
fn short_lived_process_keeps_its_identity() {
    let Some(fx) = Fixture::start() else { return };
    let url = imds_url("/latest/meta-data/ami-id");
    let argv = [
        "curl",
        "--silent",
        "--max-time",
        "5",
        "--output",
        "/dev/null",
        "--write-out",
        "%{http_code}",
        "--user-agent",
        "imds-e2e-short-lived/1.0",
        url.as_str(),
    ];
    let run = fx.run_ok(&argv);
    assert_eq!(run.stdout, "200");
    // run_ok has reaped it: the process is gone before the agent's output is read, so
    // argv and exe must have been captured while it lived, not looked up afterwards.
    std::thread::sleep(std::time::Duration::from_millis(300));
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    let mut expected = v1_get("/latest/meta-data/ami-id", 200);
    expected.extend([
        ("process.executable.name", json!("curl")),
        (
            "process.executable.path",
            json!(realpath_of(&env::curl().unwrap())),
        ),
        ("process.command_line", json!(argv.join(" "))),
        ("process.command_args", json!(argv)),
        ("user_agent.original", json!("imds-e2e-short-lived/1.0")),
    ]);
    assert_fields(&event, &expected);
}

#[test]
fn canary_token_in_argv_is_redacted_everywhere() {
    let Some(fx) = Fixture::start() else { return };
    let canary = format!("CANARY-{:016x}{:08x}", random_u64(), std::process::id());
    let header = format!("{TOKEN_HEADER}: {canary}");
    // The canary twice: as the token header's value, and as a bare argument (the value of
    // --noproxy, which curl never puts on the wire).
    let argv = [
        "curl",
        "-s",
        "-H",
        header.as_str(),
        "--noproxy",
        canary.as_str(),
        &imds_url(INSTANCE_ID_PATH),
    ];
    let run = fx.run(&argv);
    assert!(run.status.success(), "{run:?}");
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    // Not a token the mock issued: 401.
    assert_fields(&event, &v2("metadata", "GET", INSTANCE_ID_PATH, 401));
    assert_str(&event, "process.command_line", "redacted", |c| {
        c.contains(REDACTED)
    });
    assert!(
        !out.all_text().contains(&canary),
        "the canary {canary} leaked; output file, stdout and stderr:\n{}",
        out.all_text()
    );
}

#[test]
fn required_mode_rejections_are_reported_with_401() {
    let Some(fx) = Fixture::start_with(&MockOptions {
        mode: TokenMode::Required,
        ..MockOptions::default()
    }) else {
        return;
    };
    let url = imds_url(INSTANCE_ID_PATH);
    let tokenless = fx.run_ok(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        url.as_str(),
    ]);
    assert_eq!(tokenless.stdout, "401");
    let bad_header = format!("{TOKEN_HEADER}: not-a-token-the-mock-issued");
    let bad = fx.run_ok(&[
        "curl",
        "-s",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "-H",
        &bad_header,
        url.as_str(),
    ]);
    assert_eq!(bad.stdout, "401");
    let put = fx.run_ok(&[
        "curl",
        "-s",
        "-X",
        "PUT",
        "-H",
        TTL_HEADER,
        &imds_url(TOKEN_PATH),
    ]);
    let good_header = format!("{TOKEN_HEADER}: {}", put.stdout.trim());
    let good = fx.run_ok(&["curl", "-s", "-H", &good_header, url.as_str()]);
    assert_eq!(good.stdout, INSTANCE_ID);
    for pid in [tokenless.pid, bad.pid, put.pid, good.pid] {
        fx.agent.wait_for_pid(pid, 1);
    }
    let out = fx.stop();

    assert_fields(
        &only_event(&out.events, tokenless.pid),
        &v1_get(INSTANCE_ID_PATH, 401),
    );
    assert_fields(
        &only_event(&out.events, bad.pid),
        &v2("metadata", "GET", INSTANCE_ID_PATH, 401),
    );
    assert_fields(
        &only_event(&out.events, put.pid),
        &v2("token", "PUT", TOKEN_PATH, 200),
    );
    assert_fields(
        &only_event(&out.events, good.pid),
        &v2("metadata", "GET", INSTANCE_ID_PATH, 200),
    );
    assert!(
        !out.all_text().contains(put.stdout.trim()),
        "the token leaked"
    );
}

fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = std::io::Read::read_exact(&mut f, &mut bytes);
    }
    u64::from_ne_bytes(bytes) ^ u64::from(std::process::id())
}
