//! Which client called, whether it can do IMDSv2, and why a call was IMDSv1 — with real AWS
//! SDKs from PyPI and npm (installed by `tests/clients/install.sh`), old and new, and the
//! hop-limit fallback reproduced across a real router.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::ffi::OsStr;
use std::path::Path;
use std::time::Duration;

use imds_agent_e2e::agent::Agent;
use imds_agent_e2e::client::{ClientRun, run_client_env};
use imds_agent_e2e::events::{assert_fields, assert_null, assert_str, for_pid, pretty, str_of};
use imds_agent_e2e::sdk_clients::{self as sdk, BOTOCORE_ENV, NODE_ENV};
use imds_agent_e2e::topology::RoutedImds;
use imds_agent_e2e::{Fixture, MockOptions, TestCgroup, env, imds_url};
use serde_json::{Value, json};

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";
const INSTANCE_ID: &str = "i-0123456789abcdef0";
const TOKEN_PATH: &str = "/latest/api/token";
const ROLE_LIST_PATH: &str = "/latest/meta-data/iam/security-credentials/";
const ROLE_PATH: &str = "/latest/meta-data/iam/security-credentials/imds-e2e-role";
/// The access key id the mock's fake credentials carry.
const ACCESS_KEY_ID: &str = "ASIAEXAMPLEEXAMPLE00";

/// The mock IMDS fixture, or `None` (skipped) when it or the SDK clients are missing.
fn fixture() -> Option<Fixture> {
    if !sdk::installed() {
        return None;
    }
    Fixture::start()
}

/// Run `argv` in the fixture's namespace and cgroup with only `PATH` and `env`.
#[track_caller]
fn run<S: AsRef<OsStr>>(fx: &Fixture, argv: &[S], env: &[(&str, &str)]) -> ClientRun {
    let run = run_client_env(&fx.netns.path(), fx.cgroup.path(), argv, env)
        .unwrap_or_else(|e| panic!("{e:#}\nmock log:\n{}", fx.netns.mock_log()));
    assert!(
        run.status.success(),
        "client failed ({}): stdout {:?} stderr {:?}\nmock log:\n{}",
        run.status,
        run.stdout,
        run.stderr,
        fx.netns.mock_log()
    );
    run
}

/// `python <botocore_credentials.py>` with botocore's IMDS settings.
fn botocore_argv(python: &Path) -> Vec<String> {
    vec![
        python.to_string_lossy().into_owned(),
        sdk::script("botocore_credentials.py")
            .to_string_lossy()
            .into_owned(),
    ]
}

/// `node <script> [args]`.
fn node_argv(script: &str, args: &[&str]) -> Vec<String> {
    let mut argv = vec![
        sdk::node().unwrap().to_string_lossy().into_owned(),
        sdk::script(script).to_string_lossy().into_owned(),
    ];
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    argv
}

fn request(
    version: &str,
    method: &str,
    path: &str,
    status: Option<u16>,
) -> Vec<(&'static str, Value)> {
    vec![
        ("imds.version", json!(version)),
        ("http.request.method", json!(method)),
        ("url.path", json!(path)),
        ("http.response.status_code", json!(status)),
    ]
}

/// The SDK fields every event of the process carries.
fn sdk_fields(name: &str, version: &str, supports_v2: bool) -> Vec<(&'static str, Value)> {
    vec![
        ("imds.sdk.name", json!(name)),
        ("imds.sdk.version", json!(version)),
        ("imds.sdk.supports_v2", json!(supports_v2)),
    ]
}

/// A v1 event's cause, and one line of advice.
#[track_caller]
fn assert_v1_cause(event: &Value, cause: &str) {
    assert_fields(event, &[("imds.v1_cause", json!(cause))]);
    assert_str(event, "imds.v1_advice", "one non-empty line", |a| {
        !a.trim().is_empty() && !a.contains('\n')
    });
}

/// No cause on a v2 event.
#[track_caller]
fn assert_no_v1_cause(event: &Value) {
    assert_null(event, "imds.v1_cause");
    assert_null(event, "imds.v1_advice");
}

/// The events of `pid` with method `method` and path `path`.
fn requests<'a>(events: &'a [Value], method: &str, path: &str) -> Vec<&'a Value> {
    events
        .iter()
        .filter(|e| {
            str_of(e, "http.request.method") == Some(method) && str_of(e, "url.path") == Some(path)
        })
        .collect()
}

#[track_caller]
fn exactly_one<'a>(events: &'a [Value], method: &str, path: &str) -> &'a Value {
    let found = requests(events, method, path);
    assert_eq!(
        found.len(),
        1,
        "expected one {method} {path}:\n{}",
        pretty(events)
    );
    found[0]
}

#[test]
fn old_botocore_is_v1_because_the_sdk_is_too_old() {
    let Some(fx) = fixture() else { return };
    let run = run(
        &fx,
        &botocore_argv(&sdk::botocore_old_python()),
        &BOTOCORE_ENV,
    );
    assert_eq!(run.stdout.trim(), ACCESS_KEY_ID);
    fx.agent.wait_for_pid(run.pid, 2);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(
        events.len(),
        2,
        "botocore {} asks for the role, then its credentials, without a token:\n{}",
        sdk::BOTOCORE_OLD,
        pretty(&out.events)
    );
    for (event, path) in events.iter().zip([ROLE_LIST_PATH, ROLE_PATH]) {
        assert_fields(event, &request("v1", "GET", path, Some(200)));
        assert_fields(event, &sdk_fields("botocore", sdk::BOTOCORE_OLD, false));
        assert_v1_cause(event, "sdk_too_old");
    }
}

#[test]
fn new_botocore_uses_a_token_and_supports_v2() {
    let Some(fx) = fixture() else { return };
    let run = run(
        &fx,
        &botocore_argv(&sdk::botocore_new_python()),
        &BOTOCORE_ENV,
    );
    assert_eq!(run.stdout.trim(), ACCESS_KEY_ID);
    fx.agent.wait_for_pid(run.pid, 3);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(
        events.len(),
        3,
        "token PUT, role, credentials:\n{}",
        pretty(&out.events)
    );
    assert_fields(&events[0], &request("v2", "PUT", TOKEN_PATH, Some(200)));
    assert_fields(&events[1], &request("v2", "GET", ROLE_LIST_PATH, Some(200)));
    assert_fields(&events[2], &request("v2", "GET", ROLE_PATH, Some(200)));
    for event in &events {
        assert_fields(event, &sdk_fields("botocore", sdk::BOTOCORE_NEW, true));
        assert_no_v1_cause(event);
    }
}

/// `MetadataService.request()` of aws-sdk (JavaScript v2) `module`: one tokenless GET.
fn js_v2_request(module: &str, version: &str, supports_v2: bool, cause: &str) {
    let Some(fx) = fixture() else { return };
    let run = run(
        &fx,
        &node_argv("js_v2_request.js", &[module, INSTANCE_ID_PATH]),
        &NODE_ENV,
    );
    assert_eq!(run.stdout.trim(), INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(events.len(), 1, "one GET:\n{}", pretty(&out.events));
    let event = &events[0];
    assert_fields(event, &request("v1", "GET", INSTANCE_ID_PATH, Some(200)));
    assert_fields(event, &sdk_fields("aws-sdk-js", version, supports_v2));
    assert_v1_cause(event, cause);
}

#[test]
fn js_v2_before_2_722_is_v1_because_the_sdk_is_too_old() {
    js_v2_request(sdk::JS_V2_OLD_MODULE, sdk::JS_V2_OLD, false, "sdk_too_old");
}

#[test]
fn js_v2_latest_request_without_a_token_is_the_v1_api_of_a_v2_sdk() {
    js_v2_request(
        sdk::JS_V2_NEW_MODULE,
        sdk::JS_V2_NEW,
        true,
        "v1_api_in_v2_sdk",
    );
}

#[test]
fn js_v3_instance_metadata_credentials_are_v2() {
    let Some(fx) = fixture() else { return };
    let run = run(&fx, &node_argv("js_v3_imds.js", &[]), &NODE_ENV);
    assert_eq!(run.stdout.trim(), ACCESS_KEY_ID);
    fx.agent.wait_for_pid(run.pid, 3);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(
        events.len(),
        3,
        "token PUT, role, credentials:\n{}",
        pretty(&out.events)
    );
    assert_fields(&events[0], &request("v2", "PUT", TOKEN_PATH, Some(200)));
    assert_fields(&events[1], &request("v2", "GET", ROLE_LIST_PATH, Some(200)));
    assert_fields(&events[2], &request("v2", "GET", ROLE_PATH, Some(200)));
    // JS v3 sends no User-Agent to IMDS, and `node script.js` names no SDK: the agent can only
    // tell the runtime.
    for event in &events {
        assert_fields(
            event,
            &[
                ("imds.sdk.name", json!("node")),
                ("imds.sdk.version", Value::Null),
                ("imds.sdk.supports_v2", Value::Null),
            ],
        );
        assert_no_v1_cause(event);
    }
}

#[test]
fn curl_without_a_token_is_v1_with_no_sdk() {
    let Some(fx) = Fixture::start() else { return };
    let url = imds_url(INSTANCE_ID_PATH);
    let run = run(&fx, &["curl", "-s", url.as_str()], &[]);
    assert_eq!(run.stdout, INSTANCE_ID);
    fx.agent.wait_for_pid(run.pid, 1);
    let out = fx.stop();

    let events = for_pid(&out.events, run.pid);
    assert_eq!(events.len(), 1, "one GET:\n{}", pretty(&out.events));
    let event = &events[0];
    assert_fields(event, &request("v1", "GET", INSTANCE_ID_PATH, Some(200)));
    assert_fields(
        event,
        &[
            ("imds.sdk.name", json!("curl")),
            ("imds.sdk.version", json!(curl_version())),
        ],
    );
    assert_v1_cause(event, "no_sdk");
}

/// `curl --version`'s version (what it sends as `User-Agent: curl/<version>`).
fn curl_version() -> String {
    let out = std::process::Command::new("curl")
        .arg("--version")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .nth(1)
        .unwrap()
        .to_owned()
}

/// How long an unanswered token PUT may take to be reported: the agent's response timeout
/// (5 s, counted from the request's bytes) plus slack for a loaded machine.
const UNANSWERED_TIMEOUT: Duration = Duration::from_secs(12);

/// Agent, cgroup and the routed topology; fields drop in this order.
struct RoutedFixture {
    agent: Agent,
    cgroup: TestCgroup,
    topology: RoutedImds,
}

impl RoutedFixture {
    fn start(mock: &MockOptions) -> Option<Self> {
        if let Err(why) = env::preflight() {
            env::skip_or_fail(format!("{why:#}"));
            return None;
        }
        if !sdk::installed() {
            return None;
        }
        // Leftovers of killed runs (their owner pid is gone), as Fixture::start does.
        imds_agent_e2e::netns::remove_stale();
        imds_agent_e2e::cgroup::remove_stale();
        let name = env::unique_name();
        let topology = RoutedImds::create(&name, mock)
            .unwrap_or_else(|e| panic!("creating the routed topology {name}: {e:#}"));
        let cgroup =
            TestCgroup::create(&name).unwrap_or_else(|e| panic!("creating cgroup {name}: {e:#}"));
        match Agent::start(cgroup.path()) {
            Ok(agent) => Some(Self {
                agent,
                cgroup,
                topology,
            }),
            Err(e) => {
                env::skip_or_fail(e);
                None
            }
        }
    }

    #[track_caller]
    fn run(&self, netns: &Path, argv: &[String], env: &[(&str, &str)]) -> ClientRun {
        let run = run_client_env(netns, self.cgroup.path(), argv, env)
            .unwrap_or_else(|e| panic!("{e:#}\nmock log:\n{}", self.topology.mock_log()));
        assert!(
            run.status.success(),
            "client failed ({}): stdout {:?} stderr {:?}\nmock log:\n{}",
            run.status,
            run.stdout,
            run.stderr,
            self.topology.mock_log()
        );
        run
    }
}

/// The hop-limit case, for real: the mock answers token PUTs with IP TTL 1. A client on the
/// mock's own link gets the token; one router hop away the answer dies at the router, botocore
/// times out (1 s) and falls back to tokenless GETs, which the agent must blame on the failed
/// token request, not on the SDK.
#[test]
fn hop_limit_one_makes_botocore_behind_a_router_fall_back_to_v1() {
    let Some(fx) = RoutedFixture::start(&MockOptions {
        put_response_ttl: Some(1),
        ..MockOptions::default()
    }) else {
        return;
    };
    // Topology check with curl first: from far a plain GET works, a token PUT gets no answer.
    let url = imds_url(INSTANCE_ID_PATH);
    let get = fx.run(
        &fx.topology.far(),
        &[
            "curl".into(),
            "-s".into(),
            "--max-time".into(),
            "5".into(),
            url.clone(),
        ],
        &[],
    );
    assert_eq!(
        get.stdout, INSTANCE_ID,
        "far reaches IMDS through the router"
    );
    let put = run_client_env(
        &fx.topology.far(),
        fx.cgroup.path(),
        &[
            "curl",
            "-s",
            "--max-time",
            "2",
            "-X",
            "PUT",
            "-H",
            "X-aws-ec2-metadata-token-ttl-seconds: 60",
            &imds_url(TOKEN_PATH),
        ],
        &[],
    )
    .unwrap();
    assert_eq!(
        put.status.code(),
        Some(28),
        "the PUT answer (TTL 1) must not cross the router: {put:?}\nmock log:\n{}",
        fx.topology.mock_log()
    );

    let python = sdk::botocore_new_python();
    let far = fx.run(&fx.topology.far(), &botocore_argv(&python), &BOTOCORE_ENV);
    assert_eq!(far.stdout.trim(), ACCESS_KEY_ID);
    let direct = fx.run(
        &fx.topology.direct(),
        &botocore_argv(&python),
        &BOTOCORE_ENV,
    );
    assert_eq!(direct.stdout.trim(), ACCESS_KEY_ID);
    // The tokenless GETs and direct's requests come at once; an unanswered PUT once the
    // agent gives up on it, `--response-timeout` (5 s) after its bytes. The client's FIN,
    // retransmitted into the black hole (the server's packets carry TTL 1 too), does not
    // postpone that.
    let counts = [(put.pid, 1), (far.pid, 3), (direct.pid, 3)];
    fx.agent.wait_until(
        "1 event from the curl PUT, 3 from far, 3 from direct",
        UNANSWERED_TIMEOUT,
        |events| {
            counts
                .iter()
                .all(|(pid, n)| for_pid(events, *pid).len() >= *n)
        },
    );
    let RoutedFixture {
        agent,
        cgroup,
        topology,
    } = fx;
    let out = agent.stop();
    drop(cgroup);
    drop(topology);

    // The curl PUT itself: a v2 request nobody answered.
    let curl_put = for_pid(&out.events, put.pid);
    assert_eq!(curl_put.len(), 1, "{}", pretty(&out.events));
    assert_fields(&curl_put[0], &request("v2", "PUT", TOKEN_PATH, None));
    assert_fields(&curl_put[0], &[("imds.unanswered", json!(true))]);

    // far: unanswered PUT, then two tokenless GETs blamed on it.
    let far_events = for_pid(&out.events, far.pid);
    assert_eq!(
        far_events.len(),
        3,
        "far: PUT, then role and credentials without a token:\n{}",
        pretty(&out.events)
    );
    let far_put = exactly_one(&far_events, "PUT", TOKEN_PATH);
    assert_fields(far_put, &request("v2", "PUT", TOKEN_PATH, None));
    assert_fields(far_put, &[("imds.unanswered", json!(true))]);
    for path in [ROLE_LIST_PATH, ROLE_PATH] {
        let get = exactly_one(&far_events, "GET", path);
        assert_fields(get, &request("v1", "GET", path, Some(200)));
        assert_fields(get, &sdk_fields("botocore", sdk::BOTOCORE_NEW, true));
        assert_v1_cause(get, "fallback_after_token_failure");
    }

    // direct: the same SDK, one link from the mock: IMDSv2 only.
    let direct_events = for_pid(&out.events, direct.pid);
    assert_eq!(
        direct_events.len(),
        3,
        "direct: PUT, role, credentials, all with a token:\n{}",
        pretty(&out.events)
    );
    assert_fields(
        exactly_one(&direct_events, "PUT", TOKEN_PATH),
        &request("v2", "PUT", TOKEN_PATH, Some(200)),
    );
    for path in [ROLE_LIST_PATH, ROLE_PATH] {
        assert_fields(
            exactly_one(&direct_events, "GET", path),
            &request("v2", "GET", path, Some(200)),
        );
    }
    for event in &direct_events {
        assert_fields(event, &sdk_fields("botocore", sdk::BOTOCORE_NEW, true));
        assert_no_v1_cause(event);
        assert_ne!(
            event.get("imds.unanswered"),
            Some(&json!(true)),
            "{}",
            pretty(&direct_events)
        );
    }
}
