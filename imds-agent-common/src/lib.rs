//! Types shared by the imds-agent kernel programs and user space.
//!
//! Every record the kernel writes into the `EVENTS` ring buffer starts with [`EventHeader`];
//! `kind` says which record follows. Kinds have fixed numeric ids that are never reused.
//! All structs are `#[repr(C)]` with explicit padding and a compile-time size check, so the
//! kernel and user-space views cannot drift apart.
#![no_std]

/// IMDS IPv4 address, network byte order as it sits in memory.
pub const IMDS_V4: [u8; 4] = [169, 254, 169, 254];
/// IMDS IPv6 address `fd00:ec2::254`.
pub const IMDS_V6: [u8; 16] = [
    0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54,
];
/// `::ffff:169.254.169.254`: the IPv4 endpoint reached from an AF_INET6 socket.
pub const IMDS_V4_MAPPED: [u8; 16] = [
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 169, 254, 169, 254,
];
/// IMDS TCP port.
pub const IMDS_PORT: u16 = 80;

/// Bytes of TCP payload carried by one [`SegmentEvent`].
pub const CHUNK_LEN: usize = 1024;
/// Most chunks copied from one packet; past that the event says `truncated`.
pub const MAX_CHUNKS: u32 = 16;
/// Bytes of the process's argv copied at connect time.
pub const ARGV_LEN: usize = 2048;
/// Path components of the executable walked up from its dentry.
pub const EXE_DEPTH: usize = 16;
/// Bytes kept of each path component.
pub const EXE_COMPONENT_LEN: usize = 64;
/// Length of a task's `comm`.
pub const COMM_LEN: usize = 16;
/// Ancestors (parent, grandparent, ...) recorded at connect time.
pub const ANCESTORS: usize = 8;
/// Bytes of the environment block scanned for allow-listed variables (kernel memory only;
/// nothing but matching variables ever leaves the kernel).
pub const ENV_SCAN_LEN: usize = 16384;
/// Allow-listed environment variables copied per connect.
pub const ENV_VARS: usize = 8;
/// Bytes kept of one `NAME=VALUE`.
pub const ENV_VAR_LEN: usize = 256;
/// Size of the allow-list of variable-name hashes.
pub const ENV_ALLOW_MAX: usize = 32;

/// FNV-1a (32-bit) of an environment variable's name: how the kernel side recognises
/// allow-listed names without string compares. User space re-checks the exact name.
pub const fn env_name_hash(name: &[u8]) -> u32 {
    let mut h = ENV_HASH_BASIS;
    let mut i = 0;
    while i < name.len() {
        h = (h ^ name[i] as u32).wrapping_mul(ENV_HASH_PRIME);
        i += 1;
    }
    h
}
pub const ENV_HASH_BASIS: u32 = 0x811c_9dc5;
pub const ENV_HASH_PRIME: u32 = 0x0100_0193;

/// Record kinds. Never reuse a number.
pub mod kind {
    /// A process connected a TCP socket to IMDS ([`super::ConnectEvent`]).
    pub const CONNECT: u32 = 1;
    /// A chunk of a TCP segment to or from IMDS ([`super::SegmentEvent`]).
    pub const SEGMENT: u32 = 2;
}

/// Direction of a [`SegmentEvent`].
pub mod direction {
    /// Client to IMDS (requests).
    pub const EGRESS: u8 = 1;
    /// IMDS to client (responses).
    pub const INGRESS: u8 = 2;
}

/// Bits of [`ConnectEvent::flags`].
pub mod connect_flags {
    /// `ppid`, `start_time_ns` and `comm` came from the task struct.
    pub const TASK_OK: u32 = 1 << 0;
    /// `argv` holds the process's argument block.
    pub const ARGV_OK: u32 = 1 << 1;
    /// `argv` was cut at [`super::ARGV_LEN`].
    pub const ARGV_TRUNCATED: u32 = 1 << 2;
    /// `exe` holds the executable's whole path (walked up to the root, across mounts).
    pub const EXE_OK: u32 = 1 << 3;
    /// `ancestors` holds `ancestor_count` entries.
    pub const ANCESTORS_OK: u32 = 1 << 4;
    /// The environment was scanned; `env` holds `env_count` allow-listed variables.
    pub const ENV_OK: u32 = 1 << 5;
}

/// Bits of [`SegmentEvent::flags`].
pub mod segment_flags {
    /// The packet's payload was longer than `MAX_CHUNKS * CHUNK_LEN`; the rest is missing.
    pub const TRUNCATED: u8 = 1 << 0;
    /// Loading bytes from the packet failed; this chunk's bytes are missing.
    pub const LOAD_FAILED: u8 = 1 << 1;
}

/// Indices into the per-CPU `COUNTERS` array.
pub mod counter {
    /// Packets to or from IMDS seen by the skb programs.
    pub const IMDS_PACKETS: u32 = 0;
    /// Records lost because the ring buffer was full.
    pub const RINGBUF_FULL: u32 = 1;
    /// Connects to IMDS seen.
    pub const CONNECTS: u32 = 2;
    /// Packets to IMDS that could not be parsed (not TCP, unsupported header).
    pub const UNPARSED_PACKETS: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// One of [`kind`].
    pub kind: u32,
    pub _pad: u32,
    /// `bpf_ktime_get_boot_ns()` when the record was written.
    pub boot_ns: u64,
    /// Socket cookie: the connection's identity for the kernel's lifetime.
    pub cookie: u64,
}

/// One ancestor of the connecting process.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Ancestor {
    pub pid: u32,
    pub _pad: u32,
    /// Start time, ns since boot.
    pub start_boot_ns: u64,
    /// cgroup v2 id (0 if unknown).
    pub cgroup_id: u64,
    pub comm: [u8; COMM_LEN],
}

/// A process connected a TCP socket to IMDS. Written from the cgroup connect hooks, in the
/// context of the connecting thread, so everything here is read while the process is alive.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ConnectEvent {
    pub header: EventHeader,
    pub tgid: u32,
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
    /// Parent's tgid (valid with [`connect_flags::TASK_OK`]).
    pub ppid: u32,
    /// Bits from [`connect_flags`].
    pub flags: u32,
    /// cgroup v2 id of the connecting task.
    pub cgroup_id: u64,
    /// Process start time, ns since boot (valid with [`connect_flags::TASK_OK`]).
    pub start_boot_ns: u64,
    /// `AF_INET` or `AF_INET6` (the socket's family).
    pub family: u16,
    /// Destination port, host order.
    pub dport: u16,
    /// Bytes used in `argv`.
    pub argv_len: u32,
    /// Destination address; IPv4 in the first 4 bytes.
    pub daddr: [u8; 16],
    /// Thread-group leader's comm (or the thread's, without [`connect_flags::TASK_OK`]).
    pub comm: [u8; COMM_LEN],
    /// NUL-separated argument block.
    pub argv: [u8; ARGV_LEN],
    /// Executable path components, leaf first, each NUL-terminated; `exe_depth` are used.
    pub exe: [[u8; EXE_COMPONENT_LEN]; EXE_DEPTH],
    pub exe_depth: u32,
    /// Entries used in `ancestors` (valid with [`connect_flags::ANCESTORS_OK`]).
    pub ancestor_count: u32,
    /// Parent first.
    pub ancestors: [Ancestor; ANCESTORS],
    /// Entries used in `env` (valid with [`connect_flags::ENV_OK`]).
    pub env_count: u32,
    pub _pad3: u32,
    /// Allow-listed `NAME=VALUE` strings, NUL-terminated.
    pub env: [[u8; ENV_VAR_LEN]; ENV_VARS],
}

/// Up to [`CHUNK_LEN`] bytes of one TCP segment to or from IMDS. Written from the cgroup_skb
/// hooks. `seq` is the TCP sequence number of the segment; `offset` the position of this
/// chunk in the segment's payload; so user space can put the stream back together and drop
/// retransmissions.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SegmentEvent {
    pub header: EventHeader,
    pub seq: u32,
    /// Payload bytes in the whole segment.
    pub payload_len: u32,
    /// Offset of `data[0]` within the segment's payload.
    pub offset: u32,
    /// Bytes of `data` that are valid.
    pub len: u16,
    /// One of [`direction`].
    pub direction: u8,
    /// TCP flags byte (FIN=0x01 SYN=0x02 RST=0x04 PSH=0x08 ACK=0x10).
    pub tcp_flags: u8,
    /// Bits from [`segment_flags`].
    pub flags: u8,
    /// 4 or 6: the IP version of the packet.
    pub ip_version: u8,
    pub _pad: [u8; 6],
    pub data: [u8; CHUNK_LEN],
}

/// Offsets into kernel structs, resolved by user space from the running kernel's BTF and
/// handed to the programs as a read-only global. `valid == 0` disables everything that
/// needs them (the agent still reports tgid, pid, uid, gid, comm and cgroup id).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelOffsets {
    pub valid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_start_boottime: u32,
    pub task_comm: u32,
    pub task_mm: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub mm_exe_file: u32,
    pub file_f_path_dentry: u32,
    pub dentry_d_parent: u32,
    pub dentry_d_name_name: u32,
    pub file_f_path_mnt: u32,
    pub vfsmount_mnt_root: u32,
    /// Offset of the `struct vfsmount` embedded in `struct mount`.
    pub mount_mnt: u32,
    pub mount_mnt_parent: u32,
    pub mount_mnt_mountpoint: u32,
    pub task_cgroups: u32,
    pub css_set_dfl_cgrp: u32,
    pub cgroup_kn: u32,
    pub kernfs_node_id: u32,
    pub mm_env_start: u32,
    pub mm_env_end: u32,
    /// Allow-listed name hashes ([`env_name_hash`]); 0 = unused slot.
    pub env_allow: [u32; ENV_ALLOW_MAX],
}

impl Default for KernelOffsets {
    fn default() -> Self {
        Self::ZERO
    }
}

impl KernelOffsets {
    pub const ZERO: Self = Self {
        valid: 0,
        task_tgid: 0,
        task_real_parent: 0,
        task_group_leader: 0,
        task_start_boottime: 0,
        task_comm: 0,
        task_mm: 0,
        mm_arg_start: 0,
        mm_arg_end: 0,
        mm_exe_file: 0,
        file_f_path_dentry: 0,
        dentry_d_parent: 0,
        dentry_d_name_name: 0,
        file_f_path_mnt: 0,
        vfsmount_mnt_root: 0,
        mount_mnt: 0,
        mount_mnt_parent: 0,
        mount_mnt_mountpoint: 0,
        task_cgroups: 0,
        css_set_dfl_cgrp: 0,
        cgroup_kn: 0,
        kernfs_node_id: 0,
        mm_env_start: 0,
        mm_env_end: 0,
        env_allow: [0; ENV_ALLOW_MAX],
    };
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);
const _: () = assert!(core::mem::size_of::<SegmentEvent>() == 24 + 24 + CHUNK_LEN);
const _: () = assert!(
    core::mem::size_of::<ConnectEvent>()
        == 24 + 24 + 16 + 8 + 16 + COMM_LEN + ARGV_LEN + EXE_DEPTH * EXE_COMPONENT_LEN + 8
            + ANCESTORS * core::mem::size_of::<Ancestor>()
            + 8
            + ENV_VARS * ENV_VAR_LEN
);
const _: () = assert!(ENV_SCAN_LEN.is_power_of_two() && ENV_VARS.is_power_of_two());
const _: () = assert!(core::mem::size_of::<Ancestor>() == 40);
const _: () = assert!(ARGV_LEN.is_power_of_two());
const _: () = assert!(CHUNK_LEN.is_power_of_two());
const _: () = assert!(EXE_COMPONENT_LEN.is_power_of_two());

#[cfg(feature = "user")]
mod user {
    // SAFETY: plain-old-data, `#[repr(C)]`, no padding the kernel leaves uninitialised that
    // user space interprets (explicit `_pad` fields), every bit pattern valid.
    unsafe impl aya::Pod for super::KernelOffsets {}
}
