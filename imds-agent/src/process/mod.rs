//! Process attribution: turns what the kernel captured at `connect()` time into the fields
//! a report says about a process, with secrets removed from its command line.
//!
//! The kernel programs read everything in the context of the connecting thread
//! ([`ConnectEvent`]); what they could not read is flagged, and is then taken from
//! `/proc/<pid>` if the process is still alive and is provably the same process
//! ([`Attributor::attribute`]).
//!
//! - [`argv`]: raw argument block and dentry names → strings; command-line quoting.
//! - [`redact`]: secret removal from arguments and free text.
//! - [`cgroup`]: cgroup2 mount discovery; cgroup id → path.
//! - [`users`]: uid → user name.
//! - [`snapshot`]: the `/proc/<pid>` fallback.

pub mod argv;
pub mod cgroup;
pub mod redact;
pub mod snapshot;
pub mod users;

use std::io;
use std::path::PathBuf;

use imds_agent_common::{ARGV_LEN, ConnectEvent, EXE_DEPTH, connect_flags};

pub use argv::{argv_from_block, exe_path_from_components, join_command_line};
pub use cgroup::{CgroupResolver, cgroup2_mount, parse_cgroup2_mount};
pub use redact::{REDACTED, redact_args, redact_text};
pub use snapshot::{ProcSnapshot, proc_snapshot, start_times_match};
pub use users::UserNames;

/// Errors of process attribution.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    #[error("failed to read the mount table {}", path.display())]
    ReadMounts {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error(
        "no cgroup v2 filesystem mounted (none in {}); mount one with `mount -t cgroup2 none /sys/fs/cgroup`",
        mounts.display()
    )]
    NoCgroup2Mount { mounts: PathBuf },
}

/// Everything the JSON event says about a process.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ProcessInfo {
    /// Process id (tgid).
    pub pid: u32,
    /// Id of the thread that connected.
    pub tid: u32,
    pub ppid: Option<u32>,
    /// `comm` of the process (its thread-group leader).
    pub executable_name: String,
    pub executable_path: Option<String>,
    /// Arguments, already redacted ([`redact_args`]).
    pub command_args: Vec<String>,
    /// `command_args` joined for reading ([`join_command_line`]).
    pub command_line: String,
    /// Real uid and gid.
    pub uid: u32,
    pub gid: u32,
    /// User name of `uid`.
    pub owner: Option<String>,
    /// cgroup v2 id (inode of the cgroup's directory).
    pub cgroup_id: u64,
    /// Path relative to the cgroup2 root, starting with `/` (`/` for the root).
    pub cgroup_path: Option<String>,
    /// Process start time, ns since boot.
    pub start_boot_ns: Option<u64>,
    /// Allow-listed environment variables (see `workload::env`), captured at connect.
    pub env: Vec<(String, String)>,
    /// Parent first, up to init or the kernel's limit.
    pub ancestors: Vec<AncestorInfo>,
}

/// One ancestor of a process, as recorded at connect time.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct AncestorInfo {
    pub pid: u32,
    pub executable_name: String,
    /// Redacted command line, from /proc while the ancestor is alive and provably the same
    /// process (start time); `None` otherwise.
    pub command_line: Option<String>,
    pub cgroup_id: u64,
    pub start_boot_ns: u64,
}

impl ProcessInfo {
    /// Redacts secrets that became known after attribution (e.g. the token found in the
    /// request), and rebuilds `command_line`. Redacting again is harmless.
    pub fn redact_secrets(&mut self, secrets: &[&str]) {
        self.command_args = redact_args(&self.command_args, secrets);
        self.command_line = join_command_line(&self.command_args);
    }
}

/// Builds [`ProcessInfo`] from connect events, with the caches that needs (cgroup paths,
/// user names).
#[derive(Debug)]
pub struct Attributor {
    cgroups: Option<CgroupResolver>,
    users: UserNames,
}

impl Default for Attributor {
    fn default() -> Self {
        Self::new()
    }
}

impl Attributor {
    /// An attributor for this host. Without a cgroup v2 mount, cgroup paths come only from
    /// `/proc/<pid>/cgroup` of processes still alive (a warning says so).
    pub fn new() -> Self {
        let root = match cgroup2_mount() {
            Ok(root) => Some(root),
            Err(error) => {
                tracing::warn!(%error, "cgroup paths will be missing for processes that exited");
                None
            }
        };
        Self::with_cgroup_root(root)
    }

    /// An attributor resolving cgroup ids under `root` (a cgroup2 mount), or not at all.
    pub fn with_cgroup_root(root: Option<PathBuf>) -> Self {
        Self {
            cgroups: root.map(CgroupResolver::new),
            users: UserNames::new(),
        }
    }

    /// Attributes a connect event. `secrets` are exact values to redact from the arguments
    /// on top of the rule-based redaction.
    pub fn attribute(&mut self, event: &ConnectEvent, secrets: &[&str]) -> ProcessInfo {
        let ConnectEvent {
            header,
            tgid,
            pid,
            uid,
            gid,
            ppid,
            flags,
            cgroup_id,
            start_boot_ns,
            family: _,
            dport: _,
            argv_len,
            daddr: _,
            comm,
            argv,
            exe,
            exe_depth,
            ancestor_count,
            ancestors,
            env_count,
            _pad3: _,
            env,
        } = event;
        let has = |flag: u32| flags & flag != 0;
        let task_ok = has(connect_flags::TASK_OK);
        let mut fallback = Fallback::new(*tgid, header.boot_ns, task_ok.then_some(*start_boot_ns));

        let (ppid, executable_name, start_boot_ns) = if task_ok {
            (
                Some(*ppid),
                argv::name_from_slot(comm),
                Some(*start_boot_ns),
            )
        } else {
            match fallback.get() {
                Some(snapshot) => (
                    Some(snapshot.ppid),
                    snapshot.comm.clone(),
                    Some(snapshot.start_boot_ns),
                ),
                // The connecting thread's own comm: better than nothing.
                None => (None, argv::name_from_slot(comm), None),
            }
        };

        let used = usize::try_from(*argv_len).unwrap_or(ARGV_LEN).min(ARGV_LEN);
        let mut args = if has(connect_flags::ARGV_OK) {
            argv_from_block(&argv[..used], has(connect_flags::ARGV_TRUNCATED))
        } else {
            Vec::new()
        };
        if args.is_empty()
            && let Some(snapshot) = fallback.get()
        {
            args.clone_from(&snapshot.args);
        }
        let command_args = redact_args(&args, secrets);
        let command_line = join_command_line(&command_args);

        let depth = usize::try_from(*exe_depth)
            .unwrap_or(EXE_DEPTH)
            .min(EXE_DEPTH);
        let components: Vec<&[u8]> = exe[..depth].iter().map(|slot| slot.as_slice()).collect();
        let executable_path = has(connect_flags::EXE_OK)
            .then(|| exe_path_from_components(&components))
            .flatten()
            .or_else(|| fallback.get().and_then(|snapshot| snapshot.exe.clone()));

        let cgroup_path = self.cgroup_path(*cgroup_id, &mut fallback);

        ProcessInfo {
            pid: *tgid,
            tid: *pid,
            ppid,
            executable_name,
            executable_path,
            command_args,
            command_line,
            uid: *uid,
            gid: *gid,
            owner: self.users.name(*uid),
            cgroup_id: *cgroup_id,
            cgroup_path,
            start_boot_ns,
            env: if has(connect_flags::ENV_OK) {
                let n = usize::try_from(*env_count).unwrap_or(0).min(env.len());
                let slots: Vec<&[u8]> = env[..n].iter().map(|s| s.as_slice()).collect();
                crate::workload::env::filter(&slots)
            } else {
                Vec::new()
            },
            ancestors: if has(connect_flags::ANCESTORS_OK) {
                let n = usize::try_from(*ancestor_count).unwrap_or(0).min(ancestors.len());
                ancestors[..n].iter().map(ancestor_info).collect()
            } else {
                Vec::new()
            },
        }
    }

    /// Path of a cgroup id relative to the cgroup2 root (cached), if it can be found.
    pub fn resolve_cgroup(&mut self, id: u64) -> Option<String> {
        self.cgroups.as_mut()?.resolve(id)
    }

    /// From the resolver; else from `/proc/<pid>/cgroup`, checked against the id when there
    /// is a mount to check it on (the process may have moved since it connected).
    fn cgroup_path(&mut self, id: u64, fallback: &mut Fallback) -> Option<String> {
        let Some(resolver) = self.cgroups.as_mut() else {
            return fallback
                .get()
                .and_then(|snapshot| snapshot.cgroup_v2_path.clone());
        };
        if let Some(path) = resolver.resolve(id) {
            return Some(path);
        }
        let path = fallback.get()?.cgroup_v2_path.clone()?;
        let dir = resolver.root().join(path.trim_start_matches('/'));
        (CgroupResolver::id_of(&dir).ok() == Some(id)).then_some(path)
    }
}

fn ancestor_info(a: &imds_agent_common::Ancestor) -> AncestorInfo {
    let command_line = proc_snapshot(a.pid)
        .filter(|s| start_times_match(a.start_boot_ns, s.start_boot_ns))
        .map(|s| join_command_line(&redact_args(&s.args, &[])));
    AncestorInfo {
        pid: a.pid,
        executable_name: argv::name_from_slot(&a.comm),
        command_line,
        cgroup_id: a.cgroup_id,
        start_boot_ns: a.start_boot_ns,
    }
}

/// The `/proc/<pid>` snapshot, read at most once and only if needed, and only trusted if it
/// is the process that connected: it started no later than the event, and at the kernel's
/// start time when that is known. Otherwise the pid was reused.
struct Fallback {
    pid: u32,
    event_boot_ns: u64,
    kernel_start_ns: Option<u64>,
    snapshot: Option<Option<ProcSnapshot>>,
}

impl Fallback {
    fn new(pid: u32, event_boot_ns: u64, kernel_start_ns: Option<u64>) -> Self {
        Self {
            pid,
            event_boot_ns,
            kernel_start_ns,
            snapshot: None,
        }
    }

    fn get(&mut self) -> Option<&ProcSnapshot> {
        let Self {
            pid,
            event_boot_ns,
            kernel_start_ns,
            snapshot,
        } = self;
        snapshot
            .get_or_insert_with(|| {
                proc_snapshot(*pid).filter(|snapshot| {
                    let started_before =
                        snapshot.start_boot_ns <= event_boot_ns.saturating_add(snapshot::tick_ns());
                    let same_start = kernel_start_ns
                        .is_none_or(|kernel| start_times_match(kernel, snapshot.start_boot_ns));
                    if !(started_before && same_start) {
                        tracing::debug!(
                            pid = *pid,
                            "pid reused since the connect; not using /proc"
                        );
                    }
                    started_before && same_start
                })
            })
            .as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imds_agent_common::{COMM_LEN, EXE_COMPONENT_LEN, EventHeader, kind};
    use procfs::Current;

    fn boot_ns_now() -> u64 {
        let uptime = procfs::Uptime::current().unwrap_or_else(|error| panic!("{error}"));
        u64::try_from(uptime.uptime_duration().as_nanos()).unwrap_or(u64::MAX)
    }

    fn event(tgid: u32, flags: u32) -> ConnectEvent {
        ConnectEvent {
            header: EventHeader {
                kind: kind::CONNECT,
                _pad: 0,
                boot_ns: boot_ns_now(),
                cookie: 1,
            },
            tgid,
            pid: tgid + 1,
            uid: 0,
            gid: 0,
            ppid: 0,
            flags,
            cgroup_id: 0,
            start_boot_ns: 0,
            family: 2,
            dport: 80,
            argv_len: 0,
            daddr: [0; 16],
            comm: [0; COMM_LEN],
            argv: [0; ARGV_LEN],
            exe: [[0; EXE_COMPONENT_LEN]; EXE_DEPTH],
            exe_depth: 0,
            ancestor_count: 0,
            env_count: 0,
            _pad3: 0,
            env: [[0; imds_agent_common::ENV_VAR_LEN]; imds_agent_common::ENV_VARS],
            ancestors: [imds_agent_common::Ancestor { pid: 0, _pad: 0, start_boot_ns: 0, cgroup_id: 0, comm: [0; COMM_LEN] }; imds_agent_common::ANCESTORS],
        }
    }

    fn fill(slot: &mut [u8], bytes: &[u8]) {
        slot[..bytes.len()].copy_from_slice(bytes);
    }

    fn own_cgroup_id(root: &std::path::Path) -> (u64, String) {
        let snapshot =
            proc_snapshot(std::process::id()).unwrap_or_else(|| panic!("no /proc for ourselves"));
        let path = snapshot
            .cgroup_v2_path
            .unwrap_or_else(|| panic!("no cgroup v2 path"));
        let id = CgroupResolver::id_of(&root.join(path.trim_start_matches('/')))
            .unwrap_or_else(|error| panic!("{error}"));
        (id, path)
    }

    #[test]
    fn everything_from_the_kernel() {
        let root = cgroup2_mount().unwrap_or_else(|error| panic!("{error}"));
        let (cgroup_id, cgroup_path) = own_cgroup_id(&root);
        // A pid that does not exist: nothing may come from /proc.
        let mut ev = event(
            1 << 23,
            connect_flags::TASK_OK | connect_flags::ARGV_OK | connect_flags::EXE_OK,
        );
        ev.ppid = 1;
        ev.start_boot_ns = 42;
        ev.cgroup_id = cgroup_id;
        fill(&mut ev.comm, b"curl");
        let block = b"curl\0-s\0-H\0X-aws-ec2-metadata-token: tok123\0http://169.254.169.254/latest/meta-data/\0";
        fill(&mut ev.argv, block);
        ev.argv_len = u32::try_from(block.len()).unwrap_or_default();
        for (i, name) in [&b"curl"[..], b"bin", b"usr", b"/"].iter().enumerate() {
            fill(&mut ev.exe[i], name);
        }
        ev.exe_depth = 4;

        let info = Attributor::with_cgroup_root(Some(root)).attribute(&ev, &[]);
        assert_eq!(
            info,
            ProcessInfo {
                pid: 1 << 23,
                tid: (1 << 23) + 1,
                ppid: Some(1),
                executable_name: "curl".into(),
                executable_path: Some("/usr/bin/curl".into()),
                command_args: ["curl", "-s", "-H", "X-aws-ec2-metadata-token: [REDACTED]", "http://169.254.169.254/latest/meta-data/"]
                    .map(String::from)
                    .to_vec(),
                command_line: "curl -s -H 'X-aws-ec2-metadata-token: [REDACTED]' http://169.254.169.254/latest/meta-data/".into(),
                uid: 0,
                gid: 0,
                owner: Some("root".into()),
                cgroup_id,
                cgroup_path: Some(cgroup_path),
                start_boot_ns: Some(42),
                env: Vec::new(),
                ancestors: Vec::new(),
            }
        );
    }

    #[test]
    fn truncated_argv_and_exact_secret() {
        let mut ev = event(
            1 << 23,
            connect_flags::ARGV_OK | connect_flags::ARGV_TRUNCATED,
        );
        fill(&mut ev.argv, b"tool\0SeCrEt-value\0http://169.254.1");
        ev.argv_len = 34;
        let mut info = Attributor::with_cgroup_root(None).attribute(&ev, &["SeCrEt-value"]);
        assert_eq!(
            info.command_args,
            ["tool", "[REDACTED]", "http://169.254.1…"]
        );
        assert_eq!(info.ppid, None);
        assert_eq!(info.start_boot_ns, None);
        assert_eq!(info.executable_path, None);
        assert_eq!(info.cgroup_path, None);

        info.redact_secrets(&["169.254.1"]);
        assert_eq!(info.command_line, "tool [REDACTED] http://[REDACTED]…");
    }

    #[test]
    fn falls_back_to_proc_for_a_live_process() {
        let me = std::process::id();
        let root = cgroup2_mount().unwrap_or_else(|error| panic!("{error}"));
        let (_, cgroup_path) = own_cgroup_id(&root);
        let mut ev = event(me, 0);
        // An id no cgroup has: the path must come from /proc, checked against nothing.
        ev.cgroup_id = u64::MAX;
        let info = Attributor::with_cgroup_root(None).attribute(&ev, &[]);
        let snapshot = proc_snapshot(me).unwrap_or_else(|| panic!("no /proc for ourselves"));
        assert_eq!(info.ppid, Some(std::os::unix::process::parent_id()));
        assert_eq!(info.executable_name, snapshot.comm);
        assert_eq!(
            info.executable_path,
            std::env::current_exe()
                .ok()
                .map(|exe| exe.to_string_lossy().into_owned())
        );
        assert_eq!(
            info.command_args,
            redact_args(&std::env::args().collect::<Vec<_>>(), &[])
        );
        assert_eq!(info.start_boot_ns, Some(snapshot.start_boot_ns));
        assert_eq!(info.cgroup_path, Some(cgroup_path));

        // With a cgroup2 mount, a /proc path that does not match the event's id is dropped.
        let info = Attributor::with_cgroup_root(Some(root)).attribute(&ev, &[]);
        assert_eq!(info.cgroup_path, None);
    }

    #[test]
    fn reused_pid_is_not_trusted() {
        let me = std::process::id();
        // The event happened before this process started: /proc now shows another process.
        let mut ev = event(me, 0);
        ev.header.boot_ns = 0;
        fill(&mut ev.comm, b"worker-thread");
        let info = Attributor::with_cgroup_root(None).attribute(&ev, &[]);
        assert_eq!(info.ppid, None);
        assert_eq!(info.executable_name, "worker-thread");
        assert!(info.command_args.is_empty());
        assert_eq!(info.executable_path, None);

        // The kernel's start time says another process.
        let mut ev = event(me, connect_flags::TASK_OK);
        ev.start_boot_ns = 1;
        let info = Attributor::with_cgroup_root(None).attribute(&ev, &[]);
        assert!(info.command_args.is_empty());
    }
}
