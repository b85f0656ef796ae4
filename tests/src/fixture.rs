//! One test's world: a network namespace with a mock IMDS, a child cgroup, and the agent
//! attached to that cgroup. Isolated per test, so tests run in parallel.

use std::ffi::OsStr;
use std::sync::Once;

use crate::agent::{Agent, AgentOutput};
use crate::cgroup::{self, TestCgroup};
use crate::client::{self, ClientRun};
use crate::env;
use crate::netns::{self, MockOptions, NetNs};

/// Agent, cgroup and namespace. Fields drop in order: agent first, then the cgroup (kills
/// leftover clients), then the namespace (stops the mock).
pub struct Fixture {
    /// The agent under test, attached to `cgroup`.
    pub agent: Agent,
    /// The clients' cgroup.
    pub cgroup: TestCgroup,
    /// The clients' network namespace, with the mock IMDS.
    pub netns: NetNs,
}

impl Fixture {
    /// A fixture with the default mock (tokens optional). `None` means "skipped" (never
    /// under `CI=true`, where it panics instead).
    pub fn start() -> Option<Self> {
        Self::start_with(&MockOptions::default())
    }

    /// A fixture with a configured mock.
    pub fn start_with(mock: &MockOptions) -> Option<Self> {
        if let Err(why) = env::preflight() {
            env::skip_or_fail(format!("{why:#}"));
            return None;
        }
        remove_stale_once();
        let name = env::unique_name();
        let netns =
            NetNs::create(&name, mock).unwrap_or_else(|e| panic!("creating netns {name}: {e:#}"));
        let cgroup =
            TestCgroup::create(&name).unwrap_or_else(|e| panic!("creating cgroup {name}: {e:#}"));
        match Agent::start(cgroup.path()) {
            Ok(agent) => Some(Self {
                agent,
                cgroup,
                netns,
            }),
            Err(e) => {
                env::skip_or_fail(e);
                None
            }
        }
    }

    /// Run a client to completion in the fixture's cgroup and namespace.
    #[track_caller]
    pub fn run<S: AsRef<OsStr>>(&self, argv: &[S]) -> ClientRun {
        client::run_client(&self.netns, &self.cgroup, argv)
            .unwrap_or_else(|e| panic!("{e:#}\nmock log:\n{}", self.netns.mock_log()))
    }

    /// Run a client that must succeed.
    #[track_caller]
    pub fn run_ok<S: AsRef<OsStr>>(&self, argv: &[S]) -> ClientRun {
        let run = self.run(argv);
        assert!(
            run.status.success(),
            "client `{}` failed ({}): stdout {:?} stderr {:?}\nmock log:\n{}",
            client::display_argv(argv),
            run.status,
            run.stdout,
            run.stderr,
            self.netns.mock_log()
        );
        run
    }

    /// Stop the agent (SIGTERM, exit 0 asserted) and tear everything down.
    #[track_caller]
    pub fn stop(self) -> AgentOutput {
        let Self {
            agent,
            cgroup,
            netns,
        } = self;
        let output = agent.stop();
        drop(cgroup);
        drop(netns);
        output
    }
}

/// Clean up namespaces and cgroups of earlier runs that died without running their guards.
fn remove_stale_once() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        netns::remove_stale();
        cgroup::remove_stale();
    });
}

/// `http://169.254.169.254<path>`.
pub fn imds_url(path: &str) -> String {
    format!("http://{}{path}", netns::IMDS_V4)
}
