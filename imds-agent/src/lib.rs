//! imds-agent: finds every process still calling the EC2 instance metadata service without a
//! token (IMDSv1) and says which program it is.
//!
//! Data flows one way: kernel hooks ([`kernel`]) → ring buffer → per-connection HTTP
//! classification ([`classify`]) → attribution ([`process`], [`pipeline`]) → sinks
//! ([`output`], [`store`]) → readiness report ([`report`]).

pub mod bench;
pub mod classify;
pub mod cli;
pub mod kernel;
pub mod output;
pub mod pipeline;
pub mod preflight;
pub mod process;
pub mod report;
pub mod report_cmd;
pub mod run;
pub mod store;
pub mod workload;
