//! Traffic that is not plain AWS IMDS: other clouds' metadata services on the same address,
//! garbage, an unanswered token PUT, other destinations, and processes outside the cgroup.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::process::{Command, Stdio};
use std::time::Duration;

use imds_agent_e2e::events::{assert_fields, assert_null, assert_str, only_event, pretty};
use imds_agent_e2e::{Fixture, MockOptions, env, imds_url};
use serde_json::json;

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const INSTANCE_ID: &str = "i-0123456789abcdef0";

/// A tokenless curl whose event proves the agent is (still) reporting; returns its pid.
fn sentinel(fx: &Fixture) -> u32 {
    let run = fx.run_ok(&["curl", "-s", &imds_url(INSTANCE_ID_PATH)]);
    assert_eq!(run.stdout, INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    run.pid
}

#[test]
fn other_clouds_are_not_imds_v1() {
    let Some(fx) = Fixture::start() else { return };
    // (cloud, flavour header, request target). As in OpenTelemetry, `url.path` stops at
    // `?` and the rest is `url.query`.
    let cases = [
        (
            "gcp",
            "Metadata-Flavor: Google",
            "/computeMetadata/v1/instance/id",
        ),
        (
            "azure",
            "Metadata: true",
            "/metadata/instance?api-version=2021-02-01",
        ),
        ("oci", "Authorization: Bearer Oracle", "/opc/v2/instance/"),
    ];
    let runs: Vec<_> = cases
        .iter()
        .map(|(_, header, path)| {
            let run = fx.run_ok(&[
                "curl",
                "-s",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-H",
                header,
                &imds_url(path),
            ]);
            assert_eq!(run.stdout, "200", "mock refused {path}");
            run
        })
        .collect();
    for run in &runs {
        fx.agent.wait_for_pid(run.pid, 1);
    }
    let out = fx.stop();

    for ((cloud, _, path), run) in cases.iter().zip(&runs) {
        let event = only_event(&out.events, run.pid);
        let (path, query) = match path.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (*path, None),
        };
        assert_eq!(event.get("url.query").and_then(|q| q.as_str()), query, "{event}");
        assert_fields(
            &event,
            &[
                ("imds.cloud", json!(cloud)),
                ("http.request.method", json!("GET")),
                ("url.path", json!(path)),
                ("http.response.status_code", json!(200)),
            ],
        );
        assert_null(&event, "imds.version");
    }
}

#[test]
fn garbage_is_reported_unparsed_and_the_agent_keeps_working() {
    let Some(fx) = Fixture::start() else { return };
    let python = env::python3().unwrap();
    let script = env::client_script("garbage.py");
    let garbage = fx.run_ok(&[python.as_os_str(), script.as_os_str()]);
    fx.agent.wait_for_pid(garbage.pid, 1);
    let later = sentinel(&fx);
    let out = fx.stop();

    let event = only_event(&out.events, garbage.pid);
    assert_fields(&event, &[("imds.unparsed", json!(true))]);
    assert_str(&event, "imds.unparsed.reason", "a non-empty reason", |r| {
        !r.trim().is_empty()
    });
    assert_fields(
        &only_event(&out.events, later),
        &[
            ("imds.version", json!("v1")),
            ("http.response.status_code", json!(200)),
        ],
    );
}

#[test]
fn unanswered_token_put_is_reported_without_status() {
    let Some(fx) = Fixture::start_with(&MockOptions {
        ignore_put: true,
        ..MockOptions::default()
    }) else {
        return;
    };
    let run = fx.run(&[
        "curl",
        "-s",
        "-m",
        "1",
        "-X",
        "PUT",
        "-H",
        "X-aws-ec2-metadata-token-ttl-seconds: 21600",
        &imds_url("/latest/api/token"),
    ]);
    // 28: operation timed out.
    assert_eq!(run.status.code(), Some(28), "curl should time out: {run:?}");
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let event = only_event(&out.events, run.pid);
    assert_fields(
        &event,
        &[
            ("imds.unanswered", json!(true)),
            ("imds.version", json!("v2")),
            ("imds.request.kind", json!("token")),
            ("http.request.method", json!("PUT")),
            ("url.path", json!("/latest/api/token")),
        ],
    );
    assert!(
        event.get("http.response.status_code").is_none(),
        "no status was seen:\n{event:#}"
    );
}

#[test]
fn other_destinations_are_not_reported() {
    let mock = MockOptions {
        // A second HTTP server on loopback, and the Route 53 resolver and ECS task metadata
        // addresses (link-local, not IMDS) served by the mock's 0.0.0.0:80 listener.
        extra_listen: vec!["127.0.0.1:8080".to_owned()],
        extra_addrs: vec![
            "169.254.169.253/32".to_owned(),
            "169.254.170.2/32".to_owned(),
        ],
        ..MockOptions::default()
    };
    let Some(fx) = Fixture::start_with(&mock) else {
        return;
    };
    for base in [
        "http://127.0.0.1:8080",
        "http://127.0.0.1",
        "http://169.254.169.253",
        "http://169.254.170.2",
        "http://[::1]",
    ] {
        let run = fx.run_ok(&["curl", "-s", "-g", &format!("{base}{INSTANCE_ID_PATH}")]);
        assert_eq!(run.stdout, INSTANCE_ID, "{base} was not served");
    }
    let sentinel = sentinel(&fx);
    std::thread::sleep(Duration::from_millis(500));
    let out = fx.stop();

    assert_eq!(
        out.events.len(),
        1,
        "only the sentinel's request is IMDS:\n{}",
        pretty(&out.events)
    );
    only_event(&out.events, sentinel);
}

#[test]
fn processes_outside_the_cgroup_are_not_reported() {
    let Some(fx) = Fixture::start() else { return };
    // Same namespace, same endpoint, but the test's own cgroup, not the agent's.
    let outside = Command::new("ip")
        .args([
            "netns",
            "exec",
            fx.netns.name(),
            "curl",
            "-s",
            &imds_url(INSTANCE_ID_PATH),
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&outside.stdout),
        INSTANCE_ID,
        "{outside:?}"
    );
    let sentinel = sentinel(&fx);
    std::thread::sleep(Duration::from_millis(500));
    let out = fx.stop();

    assert_eq!(
        out.events.len(),
        1,
        "only the process inside the cgroup counts:\n{}",
        pretty(&out.events)
    );
    only_event(&out.events, sentinel);
}
