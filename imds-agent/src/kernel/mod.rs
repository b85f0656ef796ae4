//! Loading and attaching the kernel programs, and decoding what they send.

pub mod events;
pub mod offsets;

use std::{fs::File, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{CgroupAttachMode, CgroupSkb, CgroupSkbAttachType, CgroupSockAddr, ProgramError},
};
use imds_agent_common::{KernelOffsets, counter};

/// The compiled kernel programs, embedded at build time by `build.rs` (aya-build).
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/imds-agent"));

/// Name of the ring buffer map in the object.
const EVENTS_MAP: &str = "EVENTS";
const COUNTERS_MAP: &str = "COUNTERS";
const OFFSETS_GLOBAL: &str = "OFFSETS";

/// (program name, what it attaches as).
const SOCK_ADDR_PROGRAMS: [&str; 2] = ["imds_connect4", "imds_connect6"];
const SKB_PROGRAMS: [(&str, CgroupSkbAttachType); 2] = [
    ("imds_egress", CgroupSkbAttachType::Egress),
    ("imds_ingress", CgroupSkbAttachType::Ingress),
];
/// The empty baseline program used by the benchmark.
pub const NOOP_PROGRAM: &str = "noop_skb";

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this binary was built without its eBPF programs (AYA_BUILD_SKIP was set); rebuild with `cargo xtask build`"
    )]
    NoObject,
    #[error("loading the eBPF object failed: {source}")]
    Object {
        #[source]
        source: Box<aya::EbpfError>,
    },
    #[error("the eBPF object has no {what} named {name}")]
    Missing { what: &'static str, name: String },
    #[error("{}", describe_program_error(name, source))]
    Program {
        name: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("opening cgroup {path}: {source}")]
    Cgroup {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("attaching {name} to cgroup {path}: {source}")]
    Attach {
        name: String,
        path: String,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("map {name}: {source}")]
    Map {
        name: String,
        #[source]
        source: aya::maps::MapError,
    },
}

fn describe_program_error(name: &str, err: &ProgramError) -> String {
    match err {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => {
            let log = verifier_log.to_string();
            let tail: Vec<&str> = log.lines().rev().take(6).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            format!(
                "the kernel refused eBPF program {name} ({io_error}); this kernel may be too old \
                 (imds-agent needs Linux >= 5.8 with BTF) or lock down BPF. Verifier said: {}",
                tail.join(" | ")
            )
        }
        other => format!("loading eBPF program {name}: {other}"),
    }
}

/// Loaded programs, attached to one cgroup. Dropping it detaches everything.
pub struct Probes {
    ebpf: Ebpf,
}

impl Probes {
    /// Loads the programs with the running kernel's struct offsets and attaches them to the
    /// cgroup v2 directory `cgroup`.
    pub fn attach(
        cgroup: &Path,
        offsets: KernelOffsets,
        ring_bytes: u32,
    ) -> Result<Self, LoadError> {
        let mut ebpf = load_object(offsets, ring_bytes)?;
        let cg = File::open(cgroup).map_err(|source| LoadError::Cgroup {
            path: cgroup.display().to_string(),
            source,
        })?;
        // Load everything before attaching anything, so a verifier refusal leaves no
        // half-attached state behind.
        for name in SOCK_ADDR_PROGRAMS {
            sock_addr(&mut ebpf, name)?
                .load()
                .map_err(|source| program_err(name, source))?;
        }
        for (name, _) in SKB_PROGRAMS {
            skb(&mut ebpf, name)?
                .load()
                .map_err(|source| program_err(name, source))?;
        }
        // On Linux >= 5.7 aya attaches through bpf_link, which always coexists with other
        // programs on the cgroup (the kernel rejects BPF_F_ALLOW_MULTI there): `Single`
        // is the mode that maps to flags 0. Other agents' programs are never displaced.
        for name in SOCK_ADDR_PROGRAMS {
            sock_addr(&mut ebpf, name)?
                .attach(&cg, CgroupAttachMode::Single)
                .map_err(|source| attach_err(name, cgroup, source))?;
        }
        for (name, ty) in SKB_PROGRAMS {
            skb(&mut ebpf, name)?
                .attach(&cg, ty, CgroupAttachMode::Single)
                .map_err(|source| attach_err(name, cgroup, source))?;
        }
        Ok(Self { ebpf })
    }

    /// Takes the ring buffer the programs write to.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        let map = self
            .ebpf
            .take_map(EVENTS_MAP)
            .ok_or_else(|| LoadError::Missing {
                what: "map",
                name: EVENTS_MAP.into(),
            })?;
        RingBuf::try_from(map).map_err(|source| LoadError::Map {
            name: EVENTS_MAP.into(),
            source,
        })
    }

    /// Takes the per-CPU counters.
    pub fn take_counters(&mut self) -> Result<Counters, LoadError> {
        let map = self
            .ebpf
            .take_map(COUNTERS_MAP)
            .ok_or_else(|| LoadError::Missing {
                what: "map",
                name: COUNTERS_MAP.into(),
            })?;
        let array = PerCpuArray::try_from(map).map_err(|source| LoadError::Map {
            name: COUNTERS_MAP.into(),
            source,
        })?;
        Ok(Counters { array })
    }

    /// The loaded egress program's kernel id (for `bpf_stats`).
    pub fn egress_program_info(&self) -> Option<aya::programs::ProgramInfo> {
        self.ebpf.program(SKB_PROGRAMS[0].0)?.info().ok()
    }
}

/// Loads the object without attaching anything: for benchmarks and tests.
pub fn load_object(offsets: KernelOffsets, ring_bytes: u32) -> Result<Ebpf, LoadError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    raise_memlock_limit();
    EbpfLoader::new()
        .override_global(OFFSETS_GLOBAL, &offsets, true)
        .map_max_entries(EVENTS_MAP, ring_bytes)
        .load(EBPF_OBJECT)
        .map_err(|source| LoadError::Object {
            source: Box::new(source),
        })
}

/// Returns the named cgroup_skb program of a loaded object.
pub fn skb<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSkb, LoadError> {
    ebpf.program_mut(name)
        .ok_or_else(|| LoadError::Missing {
            what: "program",
            name: name.into(),
        })?
        .try_into()
        .map_err(|source| program_err(name, source))
}

fn sock_addr<'a>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut CgroupSockAddr, LoadError> {
    ebpf.program_mut(name)
        .ok_or_else(|| LoadError::Missing {
            what: "program",
            name: name.into(),
        })?
        .try_into()
        .map_err(|source| program_err(name, source))
}

fn program_err(name: &str, source: ProgramError) -> LoadError {
    LoadError::Program {
        name: name.into(),
        source: Box::new(source),
    }
}

fn attach_err(name: &str, cgroup: &Path, source: ProgramError) -> LoadError {
    LoadError::Attach {
        name: name.into(),
        path: cgroup.display().to_string(),
        source: Box::new(source),
    }
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it. Harmless elsewhere.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: plain syscall with a valid pointer.
    let ret = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
    if ret != 0 {
        tracing::debug!("could not raise RLIMIT_MEMLOCK; fine on Linux >= 5.11");
    }
}

/// Kernel-side counters, summed over CPUs.
pub struct Counters {
    array: PerCpuArray<MapData, u64>,
}

/// A snapshot of [`Counters`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CounterValues {
    pub imds_packets: u64,
    pub ringbuf_full: u64,
    pub connects: u64,
    pub unparsed_packets: u64,
}

impl Counters {
    pub fn read(&self) -> CounterValues {
        let get = |i: u32| -> u64 {
            self.array
                .get(&i, 0)
                .map(|v| v.iter().copied().sum())
                .unwrap_or(0)
        };
        CounterValues {
            imds_packets: get(counter::IMDS_PACKETS),
            ringbuf_full: get(counter::RINGBUF_FULL),
            connects: get(counter::CONNECTS),
            unparsed_packets: get(counter::UNPARSED_PACKETS),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The cgroup2 mount, read from /proc/self/mounts.
    fn cgroup2_root() -> Option<std::path::PathBuf> {
        let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
        mounts.lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.get(2) == Some(&"cgroup2")).then(|| std::path::PathBuf::from(f[1]))
        })
    }

    /// Loads every program through the verifier and attaches it to a fresh child cgroup.
    /// Needs root; under CI=true it must run.
    #[test]
    fn programs_pass_the_verifier_and_attach() {
        let privileged = crate::preflight::check_privileges().is_ok();
        if !privileged || EBPF_OBJECT.is_empty() {
            assert!(
                std::env::var("CI").is_err(),
                "CI must load the eBPF programs (root: {privileged}, object built: {})",
                !EBPF_OBJECT.is_empty()
            );
            eprintln!("skipped: not root or built with AYA_BUILD_SKIP");
            return;
        }
        let root = cgroup2_root().unwrap_or_else(|| panic!("no cgroup2 mount"));
        let dir = root.join(format!("imds-agent-unit-{}", std::process::id()));
        std::fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        let mut offsets = offsets::from_running_kernel().unwrap_or_else(|e| panic!("{e}"));
        // With the allow-list set, so the verifier checks the environment scan too (it
        // prunes code a read-only global makes unreachable).
        offsets.env_allow = crate::workload::env::allow_hashes();
        let result = Probes::attach(&dir, offsets, 1 << 20);
        let ok = result.as_ref().map(|_| ()).map_err(|e| e.to_string());
        drop(result);
        let _ = std::fs::remove_dir(&dir);
        ok.unwrap_or_else(|e| panic!("{e}"));
        // The baseline program loads too.
        let mut ebpf = load_object(offsets, 1 << 20).unwrap_or_else(|e| panic!("{e}"));
        skb(&mut ebpf, NOOP_PROGRAM)
            .and_then(|p| p.load().map_err(|e| program_err(NOOP_PROGRAM, e)))
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
