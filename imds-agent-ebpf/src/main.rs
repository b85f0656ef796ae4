//! imds-agent kernel programs. No kprobes: everything hangs off cgroup v2 hooks, so it works
//! on any kernel with BTF and cgroup v2, and survives kernel-internal renames.
//!
//! * `cgroup/connect4`, `cgroup/connect6` (`imds_connect4`, `imds_connect6`): run in the
//!   context of the thread calling connect(). For TCP connects to 169.254.169.254:80,
//!   [fd00:ec2::254]:80 or [::ffff:169.254.169.254]:80 they record who connected: tgid, pid,
//!   uid, gid, cgroup id, and — with struct offsets resolved by user space from the kernel's
//!   BTF — parent tgid, start time, group leader's comm, the argv block and the executable's
//!   path. Capturing here, while the process is certainly alive, is what keeps attribution
//!   right for processes that exit milliseconds after their request. They always allow the
//!   connect.
//! * `cgroup_skb/egress`, `cgroup_skb/ingress` (`imds_egress`, `imds_ingress`): see every
//!   packet of every socket in the cgroup. A packet whose socket's peer is not IMDS:80 costs
//!   two loads from the socket and a compare, and is never copied. For IMDS sockets the TCP
//!   payload is copied in chunks, with the sequence number, into the ring buffer, so user
//!   space can rebuild both byte streams (requests and responses) exactly. They always
//!   return 1: observe mode never drops or alters a packet.
//! * `noop_skb`: an empty cgroup_skb program, loaded only by the benchmark as the baseline
//!   the egress program's cost is compared against.
//!
//! Both sides key a connection by its socket cookie.
#![no_std]
#![no_main]

use aya_ebpf::{
    bindings::{__sk_buff, bpf_sock_addr},
    helpers::{
        bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
        generated::{
            bpf_get_current_cgroup_id, bpf_get_current_task, bpf_get_socket_cookie,
            bpf_ktime_get_boot_ns, bpf_loop, bpf_probe_read_kernel, bpf_probe_read_kernel_str,
            bpf_probe_read_user, bpf_skb_load_bytes,
        },
    },
    macros::{cgroup_skb, cgroup_sock_addr, map},
    maps::{PerCpuArray, RingBuf},
    programs::{SkBuffContext, SockAddrContext},
};
use imds_agent_common::{
    ANCESTORS, ARGV_LEN, ENV_ALLOW_MAX, ENV_HASH_BASIS, ENV_HASH_PRIME, ENV_SCAN_LEN,
    ENV_VAR_LEN, ENV_VARS, CHUNK_LEN, COMM_LEN, ConnectEvent, EXE_COMPONENT_LEN, EXE_DEPTH, EventHeader,
    IMDS_PORT, IMDS_V4, IMDS_V4_MAPPED, IMDS_V6, KernelOffsets, MAX_CHUNKS, SegmentEvent,
    connect_flags, counter, direction, kind, segment_flags,
};

/// Allow the connect / let the packet pass.
const ALLOW: i32 = 1;
const SOCK_STREAM: u32 = 1;
const AF_INET: u32 = 2;
const AF_INET6: u32 = 10;
const IPPROTO_TCP: u8 = 6;
/// Mount points crossed at most between two path components of the executable.
const MOUNT_HOPS: usize = 4;

/// Records for user space. Size overridable by the loader.
#[map]
static EVENTS: RingBuf = RingBuf::with_byte_size(8 << 20, 0);

/// Per-CPU counters, indices in [`counter`].
#[map]
static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Scratch copy of a process's environment block, scanned in place. Kernel memory: only
/// allow-listed variables are ever copied out of it.
#[repr(C)]
pub struct EnvScratch {
    buf: [u8; ENV_SCAN_LEN + ENV_VAR_LEN],
}

#[map]
static ENV_SCRATCH: PerCpuArray<EnvScratch> = PerCpuArray::with_max_entries(1, 0);

/// Kernel struct offsets, filled in by the loader from the running kernel's BTF.
#[unsafe(no_mangle)]
static OFFSETS: KernelOffsets = KernelOffsets::ZERO;

/// The IMDS port as the kernel stores it in `user_port` / `remote_port` (network order in
/// the low 16 bits of a u32).
const PORT_NET: u32 = IMDS_PORT.to_be() as u32;
/// `__sk_buff.remote_port` is the network-order port shifted into the upper 16 bits on
/// little-endian hosts (the kernel's ctx rewrite does `<< 16`); the unshifted form is
/// accepted too, for kernels that ever change that.
const SKB_PORT_NET: u32 = if cfg!(target_endian = "little") {
    PORT_NET << 16
} else {
    PORT_NET
};
const V4_NET: u32 = u32::from_ne_bytes(IMDS_V4);

#[inline(always)]
const fn word(a: &[u8; 16], i: usize) -> u32 {
    u32::from_ne_bytes([a[4 * i], a[4 * i + 1], a[4 * i + 2], a[4 * i + 3]])
}

#[inline(always)]
fn count(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, no concurrent writer on this CPU.
        unsafe { *p += 1 };
    }
}

/// Is this 16-byte address (as four network-order words) one of the IMDS IPv6 forms?
#[inline(always)]
fn is_imds_v6(w: [u32; 4]) -> bool {
    (w[0] == word(&IMDS_V6, 0)
        && w[1] == word(&IMDS_V6, 1)
        && w[2] == word(&IMDS_V6, 2)
        && w[3] == word(&IMDS_V6, 3))
        || (w[0] == 0 && w[1] == 0 && w[2] == word(&IMDS_V4_MAPPED, 2) && w[3] == V4_NET)
}

// ---------------------------------------------------------------------------------------
// connect hooks

#[cgroup_sock_addr(connect4)]
pub fn imds_connect4(ctx: SockAddrContext) -> i32 {
    // SAFETY: ctx.sock_addr is the kernel-provided context.
    unsafe { on_connect(&ctx, false) };
    ALLOW
}

#[cgroup_sock_addr(connect6)]
pub fn imds_connect6(ctx: SockAddrContext) -> i32 {
    // SAFETY: as above.
    unsafe { on_connect(&ctx, true) };
    ALLOW
}

#[inline(always)]
unsafe fn on_connect(ctx: &SockAddrContext, v6: bool) {
    let sa: *mut bpf_sock_addr = ctx.sock_addr;
    // SAFETY: context field reads, 4 bytes each as the verifier requires.
    let (ty, port) = unsafe { ((*sa).type_, (*sa).user_port) };
    if ty != SOCK_STREAM || port != PORT_NET {
        return;
    }
    let mut daddr = [0u8; 16];
    if v6 {
        // Element by element: the verifier only allows 4-byte loads of user_ip6.
        let w = unsafe {
            [
                (*sa).user_ip6[0],
                (*sa).user_ip6[1],
                (*sa).user_ip6[2],
                (*sa).user_ip6[3],
            ]
        };
        if !is_imds_v6(w) {
            return;
        }
        let mut i = 0;
        while i < 4 {
            let b = w[i].to_ne_bytes();
            daddr[4 * i] = b[0];
            daddr[4 * i + 1] = b[1];
            daddr[4 * i + 2] = b[2];
            daddr[4 * i + 3] = b[3];
            i += 1;
        }
    } else {
        let ip = unsafe { (*sa).user_ip4 };
        if ip != V4_NET {
            return;
        }
        daddr[..4].copy_from_slice(&IMDS_V4);
    }
    count(counter::CONNECTS);

    let Some(mut entry) = EVENTS.reserve::<ConnectEvent>(0) else {
        count(counter::RINGBUF_FULL);
        return;
    };
    let ev = entry.as_mut_ptr();
    let pid_tgid = bpf_get_current_pid_tgid();
    let uid_gid = bpf_get_current_uid_gid();
    // SAFETY: `ev` points at a reserved ring-buffer record of the right size; every field
    // is written before submit (the record is not zeroed by the kernel).
    unsafe {
        (*ev).header = EventHeader {
            kind: kind::CONNECT,
            _pad: 0,
            boot_ns: bpf_ktime_get_boot_ns(),
            cookie: bpf_get_socket_cookie(sa.cast()),
        };
        (*ev).tgid = (pid_tgid >> 32) as u32;
        (*ev).pid = pid_tgid as u32;
        (*ev).uid = uid_gid as u32;
        (*ev).gid = (uid_gid >> 32) as u32;
        (*ev).ppid = 0;
        (*ev).flags = 0;
        (*ev).cgroup_id = bpf_get_current_cgroup_id();
        (*ev).start_boot_ns = 0;
        (*ev).family = if v6 { AF_INET6 as u16 } else { AF_INET as u16 };
        (*ev).dport = IMDS_PORT;
        (*ev).argv_len = 0;
        (*ev).daddr = daddr;
        (*ev).comm = bpf_get_current_comm().unwrap_or([0u8; COMM_LEN]);
        (*ev).exe_depth = 0;
        (*ev).ancestor_count = 0;
        (*ev).env_count = 0;
        (*ev)._pad3 = 0;
        (*ev).argv[0] = 0;
        read_task(ev);
    }
    entry.submit(0);
}

/// The loader-filled offsets. Read through a pointer laundered by a volatile load, so the
/// compiler cannot fold the all-zero initial value, and without copying the struct onto
/// the 512-byte BPF stack.
#[inline(always)]
fn offsets() -> &'static KernelOffsets {
    let p: *const KernelOffsets = &raw const OFFSETS;
    // SAFETY: reading a local pointer; the result points at the global.
    unsafe { &*core::ptr::read_volatile(&raw const p) }
}

/// Reads a `T` (u32 or u64) of kernel memory at `base + off`; 0 on failure.
#[inline(always)]
unsafe fn kread<T: Copy + Default>(base: u64, off: u32) -> T {
    let mut v = T::default();
    // SAFETY: bpf_probe_read_kernel tolerates any address; writes size_of::<T>() bytes.
    let r = unsafe {
        bpf_probe_read_kernel(
            (&raw mut v).cast(),
            size_of::<T>() as u32,
            (base + u64::from(off)) as *const core::ffi::c_void,
        )
    };
    if r == 0 { v } else { T::default() }
}

#[inline(always)]
unsafe fn kread_u64(base: u64, off: u32) -> u64 {
    unsafe { kread(base, off) }
}

#[inline(always)]
unsafe fn kread_u32(base: u64, off: u32) -> u32 {
    unsafe { kread(base, off) }
}

/// Fills the parts of a connect record that need kernel struct offsets.
#[inline(always)]
unsafe fn read_task(ev: *mut ConnectEvent) {
    let off = offsets();
    if off.valid == 0 {
        return;
    }
    // SAFETY: all kernel memory is read through bpf_probe_read_kernel, which tolerates bad
    // pointers; user memory through bpf_probe_read_user.
    unsafe {
        let task = bpf_get_current_task();
        if task == 0 {
            return;
        }
        let leader = kread_u64(task, off.task_group_leader);
        let parent = kread_u64(task, off.task_real_parent);
        if leader != 0 && parent != 0 {
            (*ev).ppid = kread_u32(parent, off.task_tgid);
            (*ev).start_boot_ns = kread_u64(leader, off.task_start_boottime);
            let mut comm = [0u8; COMM_LEN];
            if bpf_probe_read_kernel(
                comm.as_mut_ptr().cast(),
                COMM_LEN as u32,
                (leader + u64::from(off.task_comm)) as *const core::ffi::c_void,
            ) == 0
            {
                (*ev).comm = comm;
            }
            (*ev).flags |= connect_flags::TASK_OK;
            read_ancestors(ev, off, parent);
        }

        let mm = kread_u64(task, off.task_mm);
        if mm == 0 {
            return; // kernel thread
        }
        let arg_start = kread_u64(mm, off.mm_arg_start);
        let arg_end = kread_u64(mm, off.mm_arg_end);
        if arg_end > arg_start {
            let mut len = arg_end - arg_start;
            if len > (ARGV_LEN - 1) as u64 {
                len = (ARGV_LEN - 1) as u64;
                (*ev).flags |= connect_flags::ARGV_TRUNCATED;
            }
            let len = (len as u32) & (ARGV_LEN as u32 - 1);
            if bpf_probe_read_user(
                (*ev).argv.as_mut_ptr().cast(),
                len,
                arg_start as *const core::ffi::c_void,
            ) == 0
            {
                (*ev).argv_len = len;
                (*ev).flags |= connect_flags::ARGV_OK;
            }
        }

        read_env(ev, off, mm);

        let exe_file = kread_u64(mm, off.mm_exe_file);
        if exe_file == 0 {
            return;
        }
        // Walk the executable's dentry up to the root, crossing mount points as d_path
        // does (but relative to the process's own mount namespace root, so a container's
        // binary reads /usr/bin/python, not the overlay's host path).
        let mut dentry = kread_u64(exe_file, off.file_f_path_dentry);
        let vfsmnt = kread_u64(exe_file, off.file_f_path_mnt);
        if dentry == 0 || vfsmnt == 0 {
            return;
        }
        let mut mnt = vfsmnt.wrapping_sub(u64::from(off.mount_mnt));
        let mut depth: u32 = 0;
        // One component per iteration (so the verifier sees depth == iteration), with at
        // most MOUNT_HOPS mount crossings before each.
        let mut d = 0;
        while d < EXE_DEPTH {
            let mut at_root = false;
            let mut hop = 0;
            while hop < MOUNT_HOPS {
                hop += 1;
                let mnt_root = kread_u64(mnt + u64::from(off.mount_mnt), off.vfsmount_mnt_root);
                if dentry != mnt_root {
                    break;
                }
                let parent_mnt = kread_u64(mnt, off.mount_mnt_parent);
                if parent_mnt == mnt || parent_mnt == 0 {
                    at_root = true;
                    break;
                }
                dentry = kread_u64(mnt, off.mount_mnt_mountpoint);
                mnt = parent_mnt;
            }
            let parent = kread_u64(dentry, off.dentry_d_parent);
            if at_root || parent == dentry || parent == 0 {
                // The root of the process's mount namespace: the path is complete.
                (*ev).flags |= connect_flags::EXE_OK;
                break;
            }
            let name = kread_u64(dentry, off.dentry_d_name_name);
            let slot = (*ev).exe[d].as_mut_ptr();
            if bpf_probe_read_kernel_str(
                slot.cast(),
                EXE_COMPONENT_LEN as u32,
                name as *const core::ffi::c_void,
            ) < 0
            {
                *slot = 0;
            }
            depth += 1;
            dentry = parent;
            d += 1;
        }
        (*ev).exe_depth = depth;
    }
}

/// State of the environment scan, shared with [`env_step`].
#[repr(C)]
struct EnvScan {
    /// Index where the current variable starts.
    start: u32,
    hash: u32,
    /// Still inside the name (before '=').
    in_name: u32,
    count: u32,
    starts: [u32; ENV_VARS],
}

/// One byte of the environment scan (bpf_loop callback). Returns 0 to go on, 1 to stop.
#[inline(never)]
extern "C" fn env_step(index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let st = ctx.cast::<EnvScan>();
    let Some(scratch) = ENV_SCRATCH.get_ptr(0) else {
        return 1;
    };
    let i = (index as u32) & (ENV_SCAN_LEN as u32 - 1);
    // SAFETY: `st` is the caller's EnvScan; `scratch` a map value of the right size and
    // `i` is masked into it.
    unsafe {
        let b = (*scratch).buf[i as usize];
        if b == 0 {
            (*st).start = i + 1;
            (*st).hash = ENV_HASH_BASIS;
            (*st).in_name = 1;
            return 0;
        }
        if (*st).in_name == 0 {
            return 0;
        }
        if b != b'=' {
            (*st).hash = ((*st).hash ^ u32::from(b)).wrapping_mul(ENV_HASH_PRIME);
            return 0;
        }
        (*st).in_name = 0;
        let h = (*st).hash;
        let allow = &offsets().env_allow;
        let mut j = 0;
        while j < ENV_ALLOW_MAX {
            let a = allow[j];
            if a == 0 {
                break;
            }
            if a == h {
                let c = (*st).count;
                if c as usize >= ENV_VARS {
                    return 1;
                }
                (*st).starts[c as usize & (ENV_VARS - 1)] = (*st).start;
                (*st).count = c + 1;
                break;
            }
            j += 1;
        }
    }
    0
}

/// Copies the allow-listed environment variables of the current process into `ev`.
#[inline(always)]
unsafe fn read_env(ev: *mut ConnectEvent, off: &KernelOffsets, mm: u64) {
    if off.env_allow[0] == 0 {
        return;
    }
    let Some(scratch) = ENV_SCRATCH.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: user memory through bpf_probe_read_user into the per-CPU scratch; `ev` is a
    // reserved record.
    unsafe {
        let env_start = kread_u64(mm, off.mm_env_start);
        let env_end = kread_u64(mm, off.mm_env_end);
        if env_end <= env_start {
            return;
        }
        let mut len = env_end - env_start;
        if len > (ENV_SCAN_LEN - 1) as u64 {
            len = (ENV_SCAN_LEN - 1) as u64;
        }
        let len = (len as u32) & (ENV_SCAN_LEN as u32 - 1);
        if bpf_probe_read_user(
            (*scratch).buf.as_mut_ptr().cast(),
            len,
            env_start as *const core::ffi::c_void,
        ) != 0
        {
            return;
        }
        // Whatever a previous scan left past `len` must never be read as part of a value.
        (*scratch).buf[len as usize & (ENV_SCAN_LEN - 1)] = 0;
        let mut st = EnvScan {
            start: 0,
            hash: ENV_HASH_BASIS,
            in_name: 1,
            count: 0,
            starts: [0; ENV_VARS],
        };
        bpf_loop(
            len,
            env_step as *mut core::ffi::c_void,
            (&raw mut st).cast(),
            0,
        );
        let mut k = 0;
        while k < ENV_VARS {
            if k as u32 >= st.count {
                break;
            }
            let start = st.starts[k] as usize & (ENV_SCAN_LEN - 1);
            if bpf_probe_read_kernel_str(
                (*ev).env[k].as_mut_ptr().cast(),
                ENV_VAR_LEN as u32,
                (*scratch).buf.as_ptr().add(start).cast(),
            ) < 0
            {
                (*ev).env[k][0] = 0;
            }
            k += 1;
        }
        (*ev).env_count = st.count;
        (*ev).flags |= connect_flags::ENV_OK;
    }
}

/// cgroup v2 id of a task: task->cgroups->dfl_cgrp->kn->id.
#[inline(always)]
unsafe fn task_cgroup_id(task: u64, off: &KernelOffsets) -> u64 {
    // SAFETY: probe reads tolerate bad pointers.
    unsafe {
        let css_set = kread_u64(task, off.task_cgroups);
        let cgrp = kread_u64(css_set, off.css_set_dfl_cgrp);
        let kn = kread_u64(cgrp, off.cgroup_kn);
        kread_u64(kn, off.kernfs_node_id)
    }
}

/// Records the parent, grandparent, ... (pid, start time, comm, cgroup) up to init or
/// [`ANCESTORS`] levels.
#[inline(always)]
unsafe fn read_ancestors(ev: *mut ConnectEvent, off: &KernelOffsets, parent: u64) {
    // SAFETY: `ev` is a reserved record; kernel memory through probe reads.
    unsafe {
        let mut task = parent;
        let mut n: u32 = 0;
        let mut i = 0;
        while i < ANCESTORS {
            if task == 0 {
                break;
            }
            let pid = kread_u32(task, off.task_tgid);
            let leader = kread_u64(task, off.task_group_leader);
            let a = &raw mut (*ev).ancestors[i];
            (*a).pid = pid;
            (*a)._pad = 0;
            (*a).start_boot_ns = kread_u64(leader, off.task_start_boottime);
            (*a).cgroup_id = task_cgroup_id(task, off);
            if bpf_probe_read_kernel(
                (*a).comm.as_mut_ptr().cast(),
                COMM_LEN as u32,
                (leader + u64::from(off.task_comm)) as *const core::ffi::c_void,
            ) != 0
            {
                (*a).comm = [0; COMM_LEN];
            }
            n += 1;
            i += 1;
            let next = kread_u64(task, off.task_real_parent);
            if pid <= 1 || next == task {
                break;
            }
            task = next;
        }
        (*ev).ancestor_count = n;
        (*ev).flags |= connect_flags::ANCESTORS_OK;
    }
}

// ---------------------------------------------------------------------------------------
// packet hooks

#[cgroup_skb(egress)]
pub fn imds_egress(ctx: SkBuffContext) -> i32 {
    on_packet(&ctx, direction::EGRESS);
    ALLOW
}

#[cgroup_skb(ingress)]
pub fn imds_ingress(ctx: SkBuffContext) -> i32 {
    on_packet(&ctx, direction::INGRESS);
    ALLOW
}

/// Baseline for the benchmark: what an attached cgroup_skb program costs doing nothing.
#[cgroup_skb]
pub fn noop_skb(_ctx: SkBuffContext) -> i32 {
    ALLOW
}

#[inline(always)]
fn on_packet(ctx: &SkBuffContext, dir: u8) {
    let skb: *mut __sk_buff = ctx.skb.skb;
    // The fast path: is the socket's peer IMDS:80? Two context loads for everything else.
    // SAFETY: context field reads (4 bytes each).
    let port = unsafe { (*skb).remote_port };
    if port != SKB_PORT_NET && port != PORT_NET {
        return;
    }
    let family = unsafe { (*skb).family };
    if family == AF_INET {
        if unsafe { (*skb).remote_ip4 } != V4_NET {
            return;
        }
    } else if family == AF_INET6 {
        let w = unsafe {
            [
                (*skb).remote_ip6[0],
                (*skb).remote_ip6[1],
                (*skb).remote_ip6[2],
                (*skb).remote_ip6[3],
            ]
        };
        if !is_imds_v6(w) {
            return;
        }
    } else {
        return;
    }
    count(counter::IMDS_PACKETS);
    if capture(ctx, dir).is_err() {
        count(counter::UNPARSED_PACKETS);
    }
}

#[inline(always)]
fn load<const N: usize>(ctx: &SkBuffContext, offset: u32, buf: &mut [u8; N]) -> Result<(), ()> {
    // SAFETY: writes exactly N bytes into `buf`.
    let r = unsafe {
        bpf_skb_load_bytes(
            ctx.skb.skb as *const _,
            offset,
            buf.as_mut_ptr().cast(),
            N as u32,
        )
    };
    if r == 0 { Ok(()) } else { Err(()) }
}

/// Copies the TCP payload of an IMDS packet into the ring buffer.
#[inline(always)]
fn capture(ctx: &SkBuffContext, dir: u8) -> Result<(), ()> {
    let skb_len = ctx.skb.len();
    // cgroup_skb programs see the packet from the network header on, both directions.
    let mut first = [0u8; 1];
    load(ctx, 0, &mut first)?;
    let ip_version = first[0] >> 4;
    let l3_len: u32 = if ip_version == 4 {
        let mut ip = [0u8; 20];
        load(ctx, 0, &mut ip)?;
        if ip[9] != IPPROTO_TCP {
            return Err(());
        }
        u32::from(ip[0] & 0x0f) * 4
    } else if ip_version == 6 {
        let mut ip = [0u8; 40];
        load(ctx, 0, &mut ip)?;
        if ip[6] != IPPROTO_TCP {
            return Err(()); // extension headers: not used by IMDS clients
        }
        40
    } else {
        return Err(());
    };
    let mut tcp = [0u8; 20];
    load(ctx, l3_len, &mut tcp)?;
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    let tcp_len = u32::from(tcp[12] >> 4) * 4;
    let tcp_flags = tcp[13];
    let payload_off = l3_len + tcp_len;
    let payload_len = skb_len.saturating_sub(payload_off);
    // SYN, FIN, RST carry meaning without payload; pure ACKs are dropped here.
    if payload_len == 0 && tcp_flags & 0x07 == 0 {
        return Ok(());
    }
    let cookie = unsafe { bpf_get_socket_cookie(ctx.skb.skb.cast()) };
    let now = unsafe { bpf_ktime_get_boot_ns() };

    let mut i: u32 = 0;
    loop {
        let offset = i * CHUNK_LEN as u32;
        // One record even for an empty payload, so flags reach user space.
        if i > 0 && offset >= payload_len {
            break;
        }
        if i >= MAX_CHUNKS {
            break;
        }
        let Some(mut entry) = EVENTS.reserve::<SegmentEvent>(0) else {
            count(counter::RINGBUF_FULL);
            return Ok(());
        };
        let ev = entry.as_mut_ptr();
        let remaining = payload_len.saturating_sub(offset);
        let mut n = remaining;
        if n > CHUNK_LEN as u32 {
            n = CHUNK_LEN as u32;
        }
        let mut flags = 0u8;
        if i + 1 == MAX_CHUNKS && remaining > CHUNK_LEN as u32 {
            flags |= segment_flags::TRUNCATED;
        }
        // SAFETY: `ev` is a reserved record of the right size; all fields written.
        unsafe {
            (*ev).header = EventHeader {
                kind: kind::SEGMENT,
                _pad: 0,
                boot_ns: now,
                cookie,
            };
            (*ev).seq = seq;
            (*ev).payload_len = payload_len;
            (*ev).offset = offset;
            (*ev).direction = dir;
            (*ev).tcp_flags = tcp_flags;
            (*ev).ip_version = ip_version;
            (*ev)._pad = [0; 6];
            if n > 0 {
                // Hide n's range from LLVM so the mask below survives into the object:
                // the verifier needs to see len in [1, CHUNK_LEN] at the call.
                let n = core::ptr::read_volatile(&raw const n);
                let len = ((n.wrapping_sub(1)) & (CHUNK_LEN as u32 - 1)) + 1;
                let r = bpf_skb_load_bytes(
                    ctx.skb.skb as *const _,
                    payload_off + offset,
                    (*ev).data.as_mut_ptr().cast(),
                    len,
                );
                if r != 0 {
                    flags |= segment_flags::LOAD_FAILED;
                    (*ev).len = 0;
                } else {
                    (*ev).len = len as u16;
                }
            } else {
                (*ev).len = 0;
            }
            (*ev).flags = flags;
        }
        entry.submit(0);
        i += 1;
    }
    Ok(())
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
