//! The harness itself, without the agent: clients start inside the cgroup and the network
//! namespace, the mock answers there, and every guard cleans up after itself.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "test code: a panic is the failure report"
)]

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use imds_agent_e2e::{MockOptions, NetNs, TestCgroup, env, run_client};

fn privileged() -> bool {
    if !env::is_root() {
        env::skip_or_fail("the harness needs root (network namespaces, cgroups)");
        return false;
    }
    true
}

#[test]
fn client_runs_inside_the_cgroup_and_the_netns_from_exec_on() {
    if !privileged() {
        return;
    }
    let name = env::unique_name();
    let netns = NetNs::create(&name, &MockOptions::default()).unwrap();
    let cgroup = TestCgroup::create(&name).unwrap();
    let netns_path = netns.path();
    let cgroup_path = cgroup.path().to_owned();

    // The shell's own view of itself: its cgroup, its netns inode, its parent.
    let run = run_client(
        &netns,
        &cgroup,
        &[
            "sh",
            "-c",
            "cat /proc/self/cgroup; stat -L -c %i /proc/self/ns/net; echo $$ $PPID",
        ],
    )
    .unwrap();
    run.assert_success();
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(
        lines.contains(&format!("0::{}", cgroup.relative()).as_str()),
        "{}",
        run.stdout
    );
    let ns_inode = std::fs::metadata(&netns_path).unwrap().ino();
    assert!(
        lines.contains(&ns_inode.to_string().as_str()),
        "netns inode {ns_inode}: {}",
        run.stdout
    );
    assert!(
        lines.contains(&format!("{} {}", run.pid, std::process::id()).as_str()),
        "the child pid must be the shell's, its parent the test: {}",
        run.stdout
    );

    // The mock answers on both endpoints inside the namespace.
    let v4 = run_client(
        &netns,
        &cgroup,
        &[
            "curl",
            "-s",
            "http://169.254.169.254/latest/meta-data/instance-id",
        ],
    )
    .unwrap();
    assert_eq!(
        v4.stdout,
        "i-0123456789abcdef0",
        "{v4:?}\n{}",
        netns.mock_log()
    );
    let v6 = run_client(
        &netns,
        &cgroup,
        &[
            "curl",
            "-s",
            "-g",
            "http://[fd00:ec2::254]/latest/meta-data/instance-id",
        ],
    )
    .unwrap();
    assert_eq!(
        v6.stdout,
        "i-0123456789abcdef0",
        "{v6:?}\n{}",
        netns.mock_log()
    );

    // A leftover process is killed by the cgroup guard.
    let leftover =
        imds_agent_e2e::client::spawn_client(&netns, &cgroup, &["sleep", "600"]).unwrap();
    let mut leftover = leftover;
    drop(cgroup);
    drop(netns);
    assert!(
        !leftover.wait().unwrap().success(),
        "the leftover was killed"
    );
    assert!(
        !cgroup_path.exists(),
        "cgroup {} left behind",
        cgroup_path.display()
    );
    assert!(
        !Path::new(&netns_path).exists(),
        "netns {} left behind",
        netns_path.display()
    );
}

#[test]
fn guards_clean_up_on_panic() {
    if !privileged() {
        return;
    }
    let name = env::unique_name();
    let cgroup_path = env::cgroup2_root().unwrap().join(&name);
    let netns_path = Path::new("/run/netns").join(&name);
    let result = std::panic::catch_unwind(|| {
        let netns = NetNs::create(&name, &MockOptions::default()).unwrap();
        let cgroup = TestCgroup::create(&name).unwrap();
        #[expect(
            clippy::zombie_processes,
            reason = "the cgroup guard kills it while unwinding; nothing is left to wait for"
        )]
        let _child =
            imds_agent_e2e::client::spawn_client(&netns, &cgroup, &["sleep", "600"]).unwrap();
        panic!("boom");
    });
    assert!(result.is_err());
    assert!(
        !cgroup_path.exists(),
        "cgroup {} left behind",
        cgroup_path.display()
    );
    assert!(
        !netns_path.exists(),
        "netns {} left behind",
        netns_path.display()
    );
}
