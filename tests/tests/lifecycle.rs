//! The agent's process contract: clear failures for a bad cgroup or missing privileges,
//! and a clean exit 0 with every event flushed on SIGTERM / SIGINT.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::ffi::OsString;
use std::os::unix::fs::PermissionsExt as _;

use imds_agent_e2e::agent::run_to_exit;
use imds_agent_e2e::events::{for_pid, pretty};
use imds_agent_e2e::{Fixture, TestCgroup, env, imds_url};
use nix::sys::signal::Signal;

const INSTANCE_ID_PATH: &str = "/latest/meta-data/instance-id";

/// Non-empty stderr lines.
fn lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

#[test]
fn bad_cgroup_path_fails_with_one_clear_line() {
    if let Err(why) = env::preflight() {
        return env::skip_or_fail(format!("{why:#}"));
    }
    let bogus = format!("/nonexistent/{}", env::unique_name());
    let args: Vec<OsString> = ["run", "--cgroup", bogus.as_str()]
        .map(OsString::from)
        .to_vec();
    let (status, _stdout, stderr) = run_to_exit(&[], &args, None).unwrap();

    assert!(
        !status.success(),
        "a bad --cgroup must fail; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "an error, not a panic:\n{stderr}"
    );
    let lines = lines(&stderr);
    assert_eq!(
        lines.len(),
        1,
        "one clear line on stderr expected, got:\n{stderr}"
    );
    assert!(
        lines[0].contains(&bogus),
        "the error must name the path {bogus}:\n{stderr}"
    );
}

#[test]
fn non_root_fails_saying_root_or_cap_bpf_is_needed() {
    if let Err(why) = env::preflight() {
        return env::skip_or_fail(format!("{why:#}"));
    }
    let Some(setpriv) = env::which("setpriv") else {
        return env::skip_or_fail("`setpriv` (util-linux) is not on PATH");
    };
    // A copy nobody can execute wherever the checkout lives (e.g. under /root).
    let dir = tempfile::Builder::new()
        .prefix(env::NAME_PREFIX)
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let bin = dir.path().join("imds-agent");
    std::fs::copy(env::agent_bin(), &bin).unwrap();
    std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
    let cgroup = TestCgroup::create(&env::unique_name()).unwrap();

    let wrapper: Vec<OsString> = [
        setpriv.as_os_str(),
        "--reuid=65534".as_ref(),
        "--regid=65534".as_ref(),
        "--clear-groups".as_ref(),
    ]
    .map(OsString::from)
    .to_vec();
    let args = vec![
        OsString::from("run"),
        OsString::from("--cgroup"),
        cgroup.path().as_os_str().to_owned(),
    ];
    let (status, _stdout, stderr) = run_to_exit(&wrapper, &args, Some(&bin)).unwrap();

    assert!(
        !status.success(),
        "the agent must refuse to run unprivileged; stderr:\n{stderr}"
    );
    assert!(
        !stderr.contains("panicked"),
        "an error, not a panic:\n{stderr}"
    );
    assert!(
        lines(&stderr).iter().any(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("root") || l.contains("cap_bpf")
        }),
        "stderr must say root/CAP_BPF is needed:\n{stderr}"
    );
}

fn stops_cleanly_with_all_events(sig: Signal, requests: usize) {
    let Some(fx) = Fixture::start() else { return };
    let url = imds_url(INSTANCE_ID_PATH);
    let pids: Vec<u32> = (0..requests)
        .map(|_| fx.run_ok(&["curl", "-s", url.as_str()]).pid)
        .collect();
    // No waiting for the events: stopping must flush whatever is still in flight.
    let Fixture {
        agent,
        cgroup,
        netns,
    } = fx;
    let out = agent.stop_with(sig);
    drop((cgroup, netns));

    for pid in &pids {
        assert_eq!(
            for_pid(&out.events, *pid).len(),
            1,
            "event of pid {pid} lost on {sig}:\n{}",
            pretty(&out.events)
        );
    }
    assert_eq!(out.events.len(), requests, "{}", pretty(&out.events));
}

#[test]
fn sigterm_exits_zero_with_all_events_flushed() {
    stops_cleanly_with_all_events(Signal::SIGTERM, 5);
}

#[test]
fn sigint_exits_zero_with_all_events_flushed() {
    stops_cleanly_with_all_events(Signal::SIGINT, 2);
}
