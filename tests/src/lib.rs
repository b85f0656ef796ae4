//! End-to-end test harness for imds-agent: guards for a network namespace with a mock IMDS
//! ([`netns::NetNs`]), a child cgroup v2 ([`cgroup::TestCgroup`]) and the agent process
//! ([`agent::Agent`]), plus [`client::run_client`], which starts a client already inside
//! both. Every guard undoes its work on drop, including on panic. Beyond those:
//! [`cgroup::NestedCgroup`] (cgroups named like container runtimes name theirs),
//! [`topology::RoutedImds`] (IMDS behind a real router, for the hop limit),
//! [`client::run_client_env`] (a client with exactly the environment a test gives it) and
//! [`sdk_clients`] (the real AWS SDKs `tests/clients/install.sh` installs).
//!
//! The tests themselves live in `tests/*.rs`; `cargo xtask test` runs them as root.
//! Outside CI a missing precondition (not root, no agent binary, the agent cannot attach)
//! prints `skipped: <why>`; with `CI=true` it is a failure.

pub mod agent;
pub mod cgroup;
pub mod child;
pub mod client;
pub mod env;
pub mod events;
pub mod fixture;
pub mod inventory;
pub mod netns;
pub mod sdk_clients;
pub mod topology;

pub use agent::{Agent, AgentOptions, AgentOutput};
pub use cgroup::{NestedCgroup, TestCgroup};
pub use client::{ClientRun, run_client};
pub use fixture::{Fixture, imds_url};
pub use netns::{MockOptions, NetNs, TokenMode};
