//! What `/proc/<pid>` says about a live process: the fallback for whatever the kernel could
//! not read at connect time.

use std::io::Read;

use procfs::process::Process;

use super::argv::argv_from_block;

/// A process as `/proc/<pid>` shows it. `args` are raw, *not* redacted: do not log them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub ppid: u32,
    /// `comm` of the thread-group leader.
    pub comm: String,
    /// Target of `/proc/<pid>/exe`; `None` for kernel threads, zombies, or a process we may
    /// not inspect.
    pub exe: Option<String>,
    pub args: Vec<String>,
    /// Real uid and gid (what `bpf_get_current_uid_gid` reports).
    pub uid: u32,
    pub gid: u32,
    /// Start time in ns since boot, from `/proc/<pid>/stat`'s `starttime`. That field is in
    /// clock ticks (usually 10 ms), so this is the kernel's start time rounded down to a tick;
    /// see [`start_times_match`].
    pub start_boot_ns: u64,
    /// The cgroup v2 path from `/proc/<pid>/cgroup` (`0::/path`), relative to the cgroup2
    /// root (of the reader's cgroup namespace).
    pub cgroup_v2_path: Option<String>,
}

/// Reads `/proc/<pid>`. `None` if the process is gone (or `pid` is not a valid pid). All
/// files are read through one directory handle, so if the pid is reused meanwhile the reads
/// fail instead of mixing two processes.
pub fn proc_snapshot(pid: u32) -> Option<ProcSnapshot> {
    let process = Process::new(i32::try_from(pid).ok()?).ok()?;
    let stat = process.stat().ok()?;
    let status = process.status().ok()?;
    // Not `Process::cmdline`: it fails on arguments that are not UTF-8.
    let mut cmdline = Vec::new();
    let args = match process
        .open_relative("cmdline")
        .and_then(|mut file| Ok(file.read_to_end(&mut cmdline)?))
    {
        Ok(_) => argv_from_block(&cmdline, false),
        Err(_) => Vec::new(),
    };
    let exe = process
        .exe()
        .ok()
        .map(|path| path.to_string_lossy().into_owned());
    let cgroup_v2_path = process.cgroups().ok().and_then(|cgroups| {
        cgroups
            .0
            .into_iter()
            .find(|cgroup| cgroup.hierarchy == 0 && cgroup.controllers.is_empty())
            .map(|cgroup| cgroup.pathname)
    });
    Some(ProcSnapshot {
        ppid: u32::try_from(stat.ppid).unwrap_or_default(),
        comm: stat.comm,
        exe,
        args,
        uid: status.ruid,
        gid: status.rgid,
        start_boot_ns: ticks_to_ns(stat.starttime),
        cgroup_v2_path,
    })
}

/// Nanoseconds in one clock tick (`sysconf(_SC_CLK_TCK)`, normally 100 Hz).
pub fn tick_ns() -> u64 {
    1_000_000_000 / procfs::ticks_per_second().max(1)
}

fn ticks_to_ns(ticks: u64) -> u64 {
    let per_second = u128::from(procfs::ticks_per_second().max(1));
    u64::try_from(u128::from(ticks) * 1_000_000_000 / per_second).unwrap_or(u64::MAX)
}

/// Are a start time from the kernel (ns) and one from `/proc` (rounded down to a tick) the
/// same process start?
pub fn start_times_match(kernel_ns: u64, proc_ns: u64) -> bool {
    kernel_ns.abs_diff(proc_ns) <= tick_ns()
}

#[cfg(test)]
mod tests {
    use super::*;
    use procfs::Current;

    fn own() -> ProcSnapshot {
        proc_snapshot(std::process::id()).unwrap_or_else(|| panic!("no /proc entry for ourselves"))
    }

    #[test]
    fn own_process() {
        let snapshot = own();
        let exe = std::env::current_exe().unwrap_or_else(|error| panic!("{error}"));
        assert_eq!(snapshot.exe.as_deref(), exe.to_str());
        assert_eq!(snapshot.args, std::env::args().collect::<Vec<_>>());
        assert_eq!(snapshot.ppid, std::os::unix::process::parent_id());
        assert_eq!(snapshot.uid, nix::unistd::getuid().as_raw());
        assert_eq!(snapshot.gid, nix::unistd::getgid().as_raw());
        assert!(!snapshot.comm.is_empty());
        let exe_name = exe
            .file_name()
            .map(|name| name.to_string_lossy().into_owned())
            .unwrap_or_default();
        // The main thread of a test binary may be renamed by the harness; the process's comm
        // is the leader's, which starts as the executable's name cut to 15 bytes.
        assert!(
            exe_name.starts_with(&snapshot.comm),
            "{exe_name} / {}",
            snapshot.comm
        );
        let path = snapshot.cgroup_v2_path.unwrap_or_default();
        assert!(path.starts_with('/'), "{path}");
    }

    #[test]
    fn own_start_time_is_in_the_past() {
        let snapshot = own();
        let uptime = procfs::Uptime::current().unwrap_or_else(|error| panic!("{error}"));
        let uptime_ns = u64::try_from(uptime.uptime_duration().as_nanos()).unwrap_or(u64::MAX);
        assert!(snapshot.start_boot_ns > 0);
        assert!(snapshot.start_boot_ns <= uptime_ns + tick_ns());
    }

    #[test]
    fn gone_process() {
        // Larger than any pid_max the kernel allows (2^22).
        assert_eq!(proc_snapshot(1 << 23), None);
        assert_eq!(proc_snapshot(u32::MAX), None);
    }

    #[test]
    fn start_time_tolerance() {
        assert!(start_times_match(1_234_567_890, 1_230_000_000));
        assert!(start_times_match(5, 5));
        assert!(!start_times_match(
            1_000_000_000,
            1_000_000_000 + 3 * tick_ns()
        ));
    }
}
