//! What a cgroup path says about who runs in it: the container and its runtime, the Kubernetes
//! pod and its QoS class, the systemd unit and slice.
//!
//! Pure string parsing of the names kubelet, the container runtimes and systemd give cgroups;
//! nothing is read from disk or asked of a runtime. A path is read from the root down and the
//! innermost match of each kind wins, so a container nested in another (a kind node, Docker in
//! Docker) is named by the inner one.
//!
//! `<id>` is a 64-character lowercase hex container id; `<uid>` a pod UID, 8-4-4-4-12 lowercase
//! hex, or 32 hex for a static pod (kubelet names those by an md5 of the manifest: the mirror
//! pod's `kubernetes.io/config.hash` annotation, not its `metadata.uid`).
//!
//! | who | systemd cgroup driver | cgroupfs driver |
//! | --- | --- | --- |
//! | kubelet pod | `kubepods.slice/kubepods[-<qos>].slice/kubepods[-<qos>]-pod<uid with _>.slice` | `/kubepods[/<qos>]/pod<uid>` |
//! | containerd (CRI) | `cri-containerd-<id>.scope` | `<id>` under the pod |
//! | CRI-O | `crio-<id>.scope`, conmon `crio-conmon-<id>.scope` | `crio-<id>`, conmon `crio-conmon-<id>` |
//! | Docker | `docker-<id>.scope`; ECS task limits: `ecstasks.slice/ecstasks-<task>.slice/docker-<id>.scope` | `/docker/<id>`; ECS: `/ecs/<task>/<id>` |
//! | Podman | `libpod-<id>.scope`, conmon `libpod-conmon-<id>.scope`; `--cgroups=split` (quadlet): `<unit>.service/libpod-payload-<id>` | `/libpod_parent/libpod-<id>`, conmon `/libpod_parent/conmon` |
//! | nerdctl / ctr | `nerdctl-<id>.scope` | `/<namespace>/<id>` (`default`, `k8s.io`) |
//!
//! The QoS level is absent for Guaranteed pods (they sit directly under `kubepods`) and is
//! `burstable` or `besteffort` otherwise. kubelet's `--cgroup-root` may put all of this under
//! another parent (`/kubelet/kubepods/...`, `kubelet.slice/kubelet-kubepods.slice/...` in kind);
//! that is recognised too. Under the cgroupfs driver containerd and Docker both name a pod's
//! container cgroup by the bare id, so the runtime there is [`ContainerRuntime::Unknown`].
//!
//! A conmon cgroup holds the runtime's monitor process, not the container: the runtime is set,
//! `container_id` is `None`, and under systemd its scope (`crio-conmon-<id>.scope`) is reported
//! as the unit, so the caller is still named without being mistaken for the workload.

use std::fmt;

use serde::Serialize;

/// The kernel appends this to a cgroup v2 path in `/proc/<pid>/cgroup` once the cgroup is gone.
const DELETED_SUFFIX: &str = " (deleted)";
const SLICE_SUFFIX: &str = ".slice";
const SCOPE_SUFFIX: &str = ".scope";
/// Suffixes of the systemd unit types that own a cgroup processes can run in.
const UNIT_SUFFIXES: &[&str] = &[".service", ".scope", ".socket", ".mount", ".swap"];

/// kubelet's cgroup for all pods (`kubepods.slice` under the systemd driver).
const KUBEPODS: &str = "kubepods";
/// kubelet names a pod's cgroup `pod<uid>`.
const POD_PREFIX: &str = "pod";
/// QoS level cgroups under [`KUBEPODS`]; Guaranteed pods have none.
const BURSTABLE: &str = "burstable";
const BESTEFFORT: &str = "besteffort";
/// kubelet's systemd driver turns each `-` of a name part into `_` (`-` separates slice levels).
const SYSTEMD_UID_SEPARATOR: u8 = b'_';
const CGROUPFS_UID_SEPARATOR: u8 = b'-';

/// Docker's cgroupfs parent: `/docker/<id>`.
const DOCKER_CGROUPFS_PARENT: &str = "docker";
/// The ECS agent's cgroup v1 task root: `/ecs/<task id>/<container id>` (ECS on EC2 runs
/// Docker).
const ECS_CGROUPFS_ROOT: &str = "ecs";
/// Podman's cgroupfs parent: `/libpod_parent/libpod-<id>`, or `/libpod_parent/<pod id>/...`
/// for a Podman pod.
const PODMAN_CGROUPFS_PARENT: &str = "libpod_parent";
/// Where Podman's cgroupfs driver puts conmon: `conmon` beside the containers.
const PODMAN_CGROUPFS_CONMON: &str = "conmon";
/// containerd namespaces whose containers default to `/<namespace>/<id>` (ctr, nerdctl).
const CONTAINERD_NAMESPACES: &[&str] = &["default", "k8s.io"];

const CONTAINER_ID_LEN: usize = 64;
const POD_UID_LEN: usize = 36;
/// Positions of the separators in an 8-4-4-4-12 UID.
const POD_UID_SEPARATORS: [usize; 4] = [8, 13, 18, 23];
/// Length of a static pod's UID: hex md5.
const STATIC_POD_UID_LEN: usize = 32;

/// What a runtime's cgroup holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// The container's own processes.
    Container,
    /// The runtime's monitor (conmon), outside the container.
    Monitor,
}

/// Prefixes of the cgroup a runtime makes for one container: `<prefix><id>.scope` under the
/// systemd driver, `<prefix><id>` under cgroupfs.
const CONTAINER_PREFIXES: &[(&str, ContainerRuntime, Role)] = &[
    (
        "cri-containerd-",
        ContainerRuntime::Containerd,
        Role::Container,
    ),
    ("crio-conmon-", ContainerRuntime::CriO, Role::Monitor),
    ("crio-", ContainerRuntime::CriO, Role::Container),
    ("docker-", ContainerRuntime::Docker, Role::Container),
    ("libpod-conmon-", ContainerRuntime::Podman, Role::Monitor),
    ("libpod-payload-", ContainerRuntime::Podman, Role::Container),
    ("libpod-", ContainerRuntime::Podman, Role::Container),
    ("nerdctl-", ContainerRuntime::Containerd, Role::Container),
];

/// The container runtime a cgroup name points to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ContainerRuntime {
    Containerd,
    CriO,
    Docker,
    Podman,
    /// A container id with nothing around it naming the runtime (cgroupfs driver).
    Unknown,
}

impl ContainerRuntime {
    /// The OpenTelemetry `container.runtime` value; also what serde writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Containerd => "containerd",
            Self::CriO => "cri-o",
            Self::Docker => "docker",
            Self::Podman => "podman",
            Self::Unknown => "unknown",
        }
    }
}

impl fmt::Display for ContainerRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Kubernetes pod's QoS class, from the cgroup kubelet put the pod under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub enum QosClass {
    Guaranteed,
    Burstable,
    BestEffort,
}

impl QosClass {
    /// The class as Kubernetes spells it in `status.qosClass`; also what serde writes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Guaranteed => "Guaranteed",
            Self::Burstable => "Burstable",
            Self::BestEffort => "BestEffort",
        }
    }
}

impl fmt::Display for QosClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a cgroup belongs to, as far as its path tells. Every field is independent: a host
/// service has only the systemd ones, a cgroupfs container only the container ones.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CgroupIdentity {
    /// The innermost container's full 64-hex id. `None` in a conmon cgroup.
    pub container_id: Option<String>,
    /// The runtime of the innermost container or conmon cgroup.
    pub runtime: Option<ContainerRuntime>,
    /// The Kubernetes pod UID, dashed 8-4-4-4-12 (or 32 hex for a static pod).
    pub pod_uid: Option<String>,
    /// The pod's QoS class, when the layout shows it.
    pub qos: Option<QosClass>,
    /// The innermost systemd unit (`cron.service`, `session-3.scope`, `user@1000.service`,
    /// a quadlet's `nginx.service`), leaving out container scopes, which `container_id`
    /// names. A unit below a container is the container's own systemd's.
    pub systemd_unit: Option<String>,
    /// The innermost systemd slice (`system.slice`, `user-1000.slice`, a pod's slice).
    pub systemd_slice: Option<String>,
}

impl CgroupIdentity {
    /// How much this identity names: a container beats a pod or runtime, which beat systemd
    /// names, which beat nothing.
    fn rank(&self) -> u8 {
        let Self {
            container_id,
            runtime,
            pod_uid,
            qos: _,
            systemd_unit,
            systemd_slice,
        } = self;
        if container_id.is_some() {
            3
        } else if runtime.is_some() || pod_uid.is_some() {
            2
        } else if systemd_unit.is_some() || systemd_slice.is_some() {
            1
        } else {
            0
        }
    }
}

/// Parses a cgroup path: a v2 path relative to the cgroup2 root
/// (`/kubepods.slice/.../cri-containerd-<id>.scope`) or a v1 path from `/proc/<pid>/cgroup`
/// (`/kubepods/burstable/pod<uid>/<id>`, `/docker/<id>`). A trailing ` (deleted)` is ignored;
/// so are `.` and `..` components (paths seen from another cgroup namespace).
pub fn parse(path: &str) -> CgroupIdentity {
    let path = path.strip_suffix(DELETED_SUFFIX).unwrap_or(path);
    let mut identity = CgroupIdentity::default();
    let mut context = Context::default();
    for component in path.split('/').filter(|c| !matches!(*c, "" | "." | "..")) {
        match container_in(component, &context) {
            Some(found) => {
                identity.container_id = found.id.map(str::to_owned);
                identity.runtime = Some(found.runtime);
                if found.id.is_none() && is_unit(component) {
                    identity.systemd_unit = Some(component.to_owned());
                }
            }
            None if is_unit(component) => identity.systemd_unit = Some(component.to_owned()),
            None => {}
        }
        if let Some((uid, qos)) = pod_in(component, &context) {
            identity.pod_uid = Some(uid);
            identity.qos = qos;
        }
        if is_slice(component) {
            identity.systemd_slice = Some(component.to_owned());
        }
        context.enter(component);
    }
    identity
}

/// Parses a whole `/proc/<pid>/cgroup` file (`hierarchy-id:controllers:path` lines) and
/// returns the identity that names the most: a container, else a pod or runtime, else a
/// systemd unit or slice. Ties go to the cgroup v2 line (`0::path`), then the v1
/// `name=systemd` line, then the other v1 lines in file order. On a hybrid host the v2 line
/// may show only a systemd unit while a v1 controller holds the container (Docker's cgroupfs
/// driver): the container wins.
pub fn parse_proc_cgroup(content: &str) -> CgroupIdentity {
    let mut unified = None;
    let mut named_systemd = None;
    let mut controllers_v1 = Vec::new();
    for line in content.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(hierarchy), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let Ok(hierarchy) = hierarchy.parse::<u32>() else {
            continue;
        };
        if hierarchy == 0 && controllers.is_empty() {
            unified.get_or_insert(path);
        } else if controllers == "name=systemd" {
            named_systemd.get_or_insert(path);
        } else {
            controllers_v1.push(path);
        }
    }
    let mut best = CgroupIdentity::default();
    let mut best_rank = 0;
    for path in unified
        .into_iter()
        .chain(named_systemd)
        .chain(controllers_v1)
    {
        let candidate = parse(path);
        let rank = candidate.rank();
        if rank > best_rank {
            best = candidate;
            best_rank = rank;
        }
    }
    best
}

/// What the components above the current one said, as far as naming needs it.
#[derive(Debug, Default)]
struct Context<'a> {
    /// The first component.
    root: Option<&'a str>,
    /// The component just above.
    parent: Option<&'a str>,
    /// A `kubepods` component was passed (cgroupfs driver).
    under_kubepods: bool,
    /// A `libpod_parent` component was passed (Podman's cgroupfs driver).
    under_podman_parent: bool,
}

impl<'a> Context<'a> {
    fn enter(&mut self, component: &'a str) {
        self.root.get_or_insert(component);
        self.parent = Some(component);
        self.under_kubepods |= component == KUBEPODS;
        self.under_podman_parent |= component == PODMAN_CGROUPFS_PARENT;
    }
}

/// A container, or its runtime's monitor, named by one path component.
#[derive(Debug)]
struct ContainerMatch<'a> {
    runtime: ContainerRuntime,
    /// `None` for a monitor (conmon) cgroup.
    id: Option<&'a str>,
}

fn container_in<'a>(component: &'a str, context: &Context<'_>) -> Option<ContainerMatch<'a>> {
    let name = component.strip_suffix(SCOPE_SUFFIX).unwrap_or(component);
    for &(prefix, runtime, role) in CONTAINER_PREFIXES {
        if let Some(id) = name.strip_prefix(prefix)
            && is_container_id(id)
        {
            let id = (role == Role::Container).then_some(id);
            return Some(ContainerMatch { runtime, id });
        }
    }
    if is_container_id(component) {
        return bare_id_runtime(context).map(|runtime| ContainerMatch {
            runtime,
            id: Some(component),
        });
    }
    (component == PODMAN_CGROUPFS_CONMON && context.under_podman_parent).then_some(ContainerMatch {
        runtime: ContainerRuntime::Podman,
        id: None,
    })
}

/// The runtime of a container cgroup named by its bare id (cgroupfs drivers), from where it
/// sits. `None` when the id names something else: directly under `libpod_parent` a bare id
/// is a Podman pod, whose containers sit below it.
fn bare_id_runtime(context: &Context<'_>) -> Option<ContainerRuntime> {
    match (context.root, context.parent) {
        (_, Some(DOCKER_CGROUPFS_PARENT)) => Some(ContainerRuntime::Docker),
        (_, Some(PODMAN_CGROUPFS_PARENT)) => None,
        (Some(ECS_CGROUPFS_ROOT), _) => Some(ContainerRuntime::Docker),
        (Some(root), Some(parent)) if root == parent && CONTAINERD_NAMESPACES.contains(&root) => {
            Some(ContainerRuntime::Containerd)
        }
        _ => Some(ContainerRuntime::Unknown),
    }
}

/// A pod's UID and QoS class from its cgroup, under either driver.
fn pod_in(component: &str, context: &Context<'_>) -> Option<(String, Option<QosClass>)> {
    if let Some(name) = component.strip_suffix(SLICE_SUFFIX) {
        // `kubepods-burstable-pod<uid>`: `-` separates the levels kubelet joined.
        let mut levels = name.rsplit('-');
        let uid = levels.next()?.strip_prefix(POD_PREFIX)?;
        let uid = canonical_pod_uid(uid, SYSTEMD_UID_SEPARATOR)?;
        let above = levels.next()?;
        let under_kubepods = std::iter::once(above).chain(levels).any(|l| l == KUBEPODS);
        return under_kubepods.then(|| (uid, qos_of(above)));
    }
    if !context.under_kubepods {
        return None;
    }
    let uid = canonical_pod_uid(component.strip_prefix(POD_PREFIX)?, CGROUPFS_UID_SEPARATOR)?;
    Some((uid, context.parent.and_then(qos_of)))
}

/// The QoS class a pod's parent level stands for.
fn qos_of(level: &str) -> Option<QosClass> {
    match level {
        KUBEPODS => Some(QosClass::Guaranteed),
        BURSTABLE => Some(QosClass::Burstable),
        BESTEFFORT => Some(QosClass::BestEffort),
        _ => None,
    }
}

/// A pod UID as the API shows it: 8-4-4-4-12 lowercase hex with `separator` turned into
/// `-`, or a static pod's 32 hex as is.
fn canonical_pod_uid(raw: &str, separator: u8) -> Option<String> {
    let bytes = raw.as_bytes();
    if bytes.len() == STATIC_POD_UID_LEN && bytes.iter().all(|&b| is_lower_hex(b)) {
        return Some(raw.to_owned());
    }
    if bytes.len() != POD_UID_LEN {
        return None;
    }
    let well_formed = bytes.iter().enumerate().all(|(at, &b)| {
        if POD_UID_SEPARATORS.contains(&at) {
            b == separator
        } else {
            is_lower_hex(b)
        }
    });
    well_formed.then(|| {
        bytes
            .iter()
            .map(|&b| {
                if b == separator {
                    char::from(CGROUPFS_UID_SEPARATOR)
                } else {
                    char::from(b)
                }
            })
            .collect()
    })
}

fn is_container_id(text: &str) -> bool {
    text.len() == CONTAINER_ID_LEN && text.bytes().all(is_lower_hex)
}

fn is_lower_hex(byte: u8) -> bool {
    matches!(byte, b'0'..=b'9' | b'a'..=b'f')
}

fn is_unit(component: &str) -> bool {
    UNIT_SUFFIXES
        .iter()
        .any(|suffix| component.len() > suffix.len() && component.ends_with(suffix))
}

fn is_slice(component: &str) -> bool {
    component.len() > SLICE_SUFFIX.len() && component.ends_with(SLICE_SUFFIX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    use ContainerRuntime::{Containerd, CriO, Docker, Podman, Unknown};
    use QosClass::{BestEffort, Burstable, Guaranteed};

    const ID: &str = "3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10";
    const OUTER: &str = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90";
    const POD_ID: &str = "d6e0a7e4b3c2f1a0d6e0a7e4b3c2f1a0d6e0a7e4b3c2f1a0d6e0a7e4b3c2f1a0";
    /// A pod UID as the API shows it, and as kubelet's systemd driver writes it.
    const UID: &str = "1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901";
    const UID_: &str = "1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901";
    /// A static pod's UID (md5 of its manifest).
    const STATIC_UID: &str = "5e2f1d0c9b8a7f6e5d4c3b2a1f0e9d8c";
    /// An ECS task id.
    const TASK: &str = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";

    /// Builds the expected identity of a case.
    #[derive(Default)]
    struct Want(CgroupIdentity);

    impl Want {
        fn container(mut self, id: &str, runtime: ContainerRuntime) -> Self {
            self.0.container_id = Some(id.to_owned());
            self.0.runtime = Some(runtime);
            self
        }
        fn monitor(mut self, runtime: ContainerRuntime) -> Self {
            self.0.runtime = Some(runtime);
            self
        }
        fn pod(mut self, uid: &str, qos: Option<QosClass>) -> Self {
            self.0.pod_uid = Some(uid.to_owned());
            self.0.qos = qos;
            self
        }
        fn unit(mut self, unit: &str) -> Self {
            self.0.systemd_unit = Some(unit.to_owned());
            self
        }
        fn slice(mut self, slice: &str) -> Self {
            self.0.systemd_slice = Some(slice.to_owned());
            self
        }
    }

    fn want() -> Want {
        Want::default()
    }

    #[rstest]
    // Kubernetes, systemd cgroup driver (cgroup v2, or v1 controllers and name=systemd).
    #[case::k8s_systemd_containerd_burstable(
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        want().container(ID, Containerd).pod(UID, Some(Burstable)).slice(&format!("kubepods-burstable-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_containerd_guaranteed(
        format!("/kubepods.slice/kubepods-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        want().container(ID, Containerd).pod(UID, Some(Guaranteed)).slice(&format!("kubepods-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_containerd_besteffort(
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        want().container(ID, Containerd).pod(UID, Some(BestEffort)).slice(&format!("kubepods-besteffort-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_containerd_sub_cgroup(
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{ID}.scope/init"),
        want().container(ID, Containerd).pod(UID, Some(Burstable)).slice(&format!("kubepods-burstable-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_static_pod(
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{STATIC_UID}.slice/cri-containerd-{ID}.scope"),
        want().container(ID, Containerd).pod(STATIC_UID, Some(Burstable)).slice(&format!("kubepods-burstable-pod{STATIC_UID}.slice")),
    )]
    #[case::k8s_systemd_crio_burstable(
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/crio-{ID}.scope"),
        want().container(ID, CriO).pod(UID, Some(Burstable)).slice(&format!("kubepods-burstable-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_crio_guaranteed_crun_subgroup(
        format!("/kubepods.slice/kubepods-pod{UID_}.slice/crio-{ID}.scope/container"),
        want().container(ID, CriO).pod(UID, Some(Guaranteed)).slice(&format!("kubepods-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_crio_conmon(
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-conmon-{ID}.scope"),
        want().monitor(CriO).pod(UID, Some(BestEffort)).unit(&format!("crio-conmon-{ID}.scope")).slice(&format!("kubepods-besteffort-pod{UID_}.slice")),
    )]
    #[case::crio_conmon_in_system_slice(
        format!("/system.slice/crio-conmon-{ID}.scope"),
        want().monitor(CriO).unit(&format!("crio-conmon-{ID}.scope")).slice("system.slice"),
    )]
    #[case::k8s_systemd_cri_dockerd(
        format!("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/docker-{ID}.scope"),
        want().container(ID, Docker).pod(UID, Some(BestEffort)).slice(&format!("kubepods-besteffort-pod{UID_}.slice")),
    )]
    #[case::k8s_systemd_pod_level(
        format!("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice"),
        want().pod(UID, Some(Burstable)).slice(&format!("kubepods-burstable-pod{UID_}.slice")),
    )]
    #[case::kind_node_in_docker(
        format!("/system.slice/docker-{OUTER}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_}.slice/cri-containerd-{ID}.scope"),
        want().container(ID, Containerd).pod(UID, Some(BestEffort)).slice(&format!("kubelet-kubepods-besteffort-pod{UID_}.slice")),
    )]
    #[case::kind_node_containerd_service(
        format!("/system.slice/docker-{OUTER}.scope/system.slice/containerd.service"),
        want().container(OUTER, Docker).unit("containerd.service").slice("system.slice"),
    )]
    // Kubernetes, cgroupfs driver (cgroup v1 or v2).
    #[case::k8s_cgroupfs_burstable(
        format!("/kubepods/burstable/pod{UID}/{ID}"),
        want().container(ID, Unknown).pod(UID, Some(Burstable)),
    )]
    #[case::k8s_cgroupfs_guaranteed(
        format!("/kubepods/pod{UID}/{ID}"),
        want().container(ID, Unknown).pod(UID, Some(Guaranteed)),
    )]
    #[case::k8s_cgroupfs_besteffort(
        format!("/kubepods/besteffort/pod{UID}/{ID}"),
        want().container(ID, Unknown).pod(UID, Some(BestEffort)),
    )]
    #[case::k8s_cgroupfs_static_pod(
        format!("/kubepods/burstable/pod{STATIC_UID}/{ID}"),
        want().container(ID, Unknown).pod(STATIC_UID, Some(Burstable)),
    )]
    #[case::k8s_cgroupfs_crio(
        format!("/kubepods/besteffort/pod{UID}/crio-{ID}"),
        want().container(ID, CriO).pod(UID, Some(BestEffort)),
    )]
    #[case::k8s_cgroupfs_crio_conmon(
        format!("/kubepods/burstable/pod{UID}/crio-conmon-{ID}"),
        want().monitor(CriO).pod(UID, Some(Burstable)),
    )]
    #[case::k8s_cgroupfs_cgroup_root(
        format!("/kubelet/kubepods/burstable/pod{UID}/{ID}"),
        want().container(ID, Unknown).pod(UID, Some(Burstable)),
    )]
    #[case::k8s_cgroupfs_pod_level(
        format!("/kubepods/pod{UID}"),
        want().pod(UID, Some(Guaranteed)),
    )]
    // Docker.
    #[case::docker_systemd(
        format!("/system.slice/docker-{ID}.scope"),
        want().container(ID, Docker).slice("system.slice"),
    )]
    #[case::docker_cgroupfs(format!("/docker/{ID}"), want().container(ID, Docker))]
    #[case::docker_rootless(
        format!("/user.slice/user-1000.slice/user@1000.service/user.slice/docker-{ID}.scope"),
        want().container(ID, Docker).unit("user@1000.service").slice("user.slice"),
    )]
    #[case::docker_in_docker(
        format!("/docker/{OUTER}/docker/{ID}"),
        want().container(ID, Docker),
    )]
    #[case::ecs_cgroupfs(format!("/ecs/{TASK}/{ID}"), want().container(ID, Docker))]
    #[case::ecs_systemd_task_slice(
        format!("/ecstasks.slice/ecstasks-{TASK}.slice/docker-{ID}.scope"),
        want().container(ID, Docker).slice(&format!("ecstasks-{TASK}.slice")),
    )]
    #[case::docker_mount_unit_is_not_a_container(
        format!("/system.slice/docker-{ID}.mount"),
        want().unit(&format!("docker-{ID}.mount")).slice("system.slice"),
    )]
    // Podman.
    #[case::podman_root(
        format!("/machine.slice/libpod-{ID}.scope"),
        want().container(ID, Podman).slice("machine.slice"),
    )]
    #[case::podman_rootless(
        format!("/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"),
        want().container(ID, Podman).unit("user@1000.service").slice("user.slice"),
    )]
    #[case::podman_cgroupns_nested(
        format!("/machine.slice/libpod-{ID}.scope/container"),
        want().container(ID, Podman).slice("machine.slice"),
    )]
    #[case::podman_systemd_inside(
        format!("/machine.slice/libpod-{ID}.scope/container/system.slice/nginx.service"),
        want().container(ID, Podman).unit("nginx.service").slice("system.slice"),
    )]
    #[case::podman_conmon(
        format!("/machine.slice/libpod-conmon-{ID}.scope"),
        want().monitor(Podman).unit(&format!("libpod-conmon-{ID}.scope")).slice("machine.slice"),
    )]
    #[case::podman_quadlet_split_payload(
        format!("/system.slice/nginx.service/libpod-payload-{ID}"),
        want().container(ID, Podman).unit("nginx.service").slice("system.slice"),
    )]
    #[case::podman_quadlet_split_runtime(
        "/user.slice/user-1000.slice/user@1000.service/app.slice/redis.service/runtime".to_owned(),
        want().unit("redis.service").slice("app.slice"),
    )]
    #[case::podman_pod_systemd(
        format!("/machine.slice/machine-libpod_pod_{POD_ID}.slice/libpod-{ID}.scope"),
        want().container(ID, Podman).slice(&format!("machine-libpod_pod_{POD_ID}.slice")),
    )]
    #[case::podman_cgroupfs(format!("/libpod_parent/libpod-{ID}"), want().container(ID, Podman))]
    #[case::podman_cgroupfs_conmon("/libpod_parent/conmon".to_owned(), want().monitor(Podman))]
    #[case::podman_cgroupfs_pod(
        format!("/libpod_parent/{POD_ID}/libpod-{ID}"),
        want().container(ID, Podman),
    )]
    #[case::podman_cgroupfs_pod_conmon(format!("/libpod_parent/{POD_ID}/conmon"), want().monitor(Podman))]
    #[case::podman_cgroupfs_pod_itself(format!("/libpod_parent/{POD_ID}"), want())]
    // containerd without Kubernetes.
    #[case::nerdctl_cgroupfs(format!("/default/{ID}"), want().container(ID, Containerd))]
    #[case::nerdctl_k8s_namespace(format!("/k8s.io/{ID}"), want().container(ID, Containerd))]
    #[case::nerdctl_systemd(
        format!("/system.slice/nerdctl-{ID}.scope"),
        want().container(ID, Containerd).slice("system.slice"),
    )]
    #[case::bare_id_elsewhere(format!("/custom/{ID}"), want().container(ID, Unknown))]
    #[case::containerd_daemon(
        "/system.slice/containerd.service".to_owned(),
        want().unit("containerd.service").slice("system.slice"),
    )]
    // Host services.
    #[case::system_service(
        "/system.slice/cron.service".to_owned(),
        want().unit("cron.service").slice("system.slice"),
    )]
    #[case::login_session(
        "/user.slice/user-1000.slice/session-3.scope".to_owned(),
        want().unit("session-3.scope").slice("user-1000.slice"),
    )]
    #[case::user_manager(
        "/user.slice/user-1000.slice/user@1000.service/init.scope".to_owned(),
        want().unit("init.scope").slice("user-1000.slice"),
    )]
    #[case::user_service(
        "/user.slice/user-1000.slice/user@1000.service/app.slice/foo.service".to_owned(),
        want().unit("foo.service").slice("app.slice"),
    )]
    #[case::template_instance(
        "/system.slice/system-getty.slice/getty@tty1.service".to_owned(),
        want().unit("getty@tty1.service").slice("system-getty.slice"),
    )]
    #[case::escaped_unit(
        "/system.slice/system-systemd\\x2dfsck.slice/systemd-fsck@dev-nvme0n1p1.service".to_owned(),
        want().unit("systemd-fsck@dev-nvme0n1p1.service").slice("system-systemd\\x2dfsck.slice"),
    )]
    #[case::delegated_sub_cgroup(
        "/system.slice/systemd-nspawn@web.service/payload".to_owned(),
        want().unit("systemd-nspawn@web.service").slice("system.slice"),
    )]
    #[case::init_scope("/init.scope".to_owned(), want().unit("init.scope"))]
    #[case::root("/".to_owned(), want())]
    #[case::empty(String::new(), want())]
    #[case::deleted(
        "/system.slice/cron.service (deleted)".to_owned(),
        want().unit("cron.service").slice("system.slice"),
    )]
    #[case::other_cgroup_namespace(
        "/../../system.slice/cron.service".to_owned(),
        want().unit("cron.service").slice("system.slice"),
    )]
    #[case::no_leading_slash(format!("docker/{ID}"), want().container(ID, Docker))]
    // Garbage and near misses.
    #[case::short_id("/docker/3f9a1c0e8b7d".to_owned(), want())]
    #[case::id_63(format!("/docker/{}", &ID[1..]), want())]
    #[case::id_65(format!("/docker/{ID}0"), want())]
    #[case::id_uppercase(format!("/docker/{}", ID.to_uppercase()), want())]
    #[case::id_not_hex(
        format!("/system.slice/docker-{}g.scope", &ID[1..]),
        want().unit(&format!("docker-{}g.scope", &ID[1..])).slice("system.slice"),
    )]
    #[case::unknown_prefix(
        format!("/system.slice/rkt-{ID}.scope"),
        want().unit(&format!("rkt-{ID}.scope")).slice("system.slice"),
    )]
    #[case::pod_uid_bad(
        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podxyz.slice".to_owned(),
        want().slice("kubepods-burstable-podxyz.slice"),
    )]
    #[case::pod_uid_underscored_in_cgroupfs(
        format!("/kubepods/burstable/pod{UID_}/{ID}"),
        want().container(ID, Unknown),
    )]
    #[case::pod_outside_kubepods(format!("/other/pod{UID}/{ID}"), want().container(ID, Unknown))]
    #[case::pod_slice_outside_kubepods(
        format!("/foo.slice/foo-pod{UID_}.slice"),
        want().slice(&format!("foo-pod{UID_}.slice")),
    )]
    #[case::bare_suffixes("/.slice/.service/.scope".to_owned(), want())]
    #[case::junk("//::\u{0}💥/é.service/".to_owned(), want().unit("é.service"))]
    fn parses_layouts(#[case] path: String, #[case] expected: Want) {
        assert_eq!(parse(&path), expected.0, "{path}");
    }

    /// The EKS AL2 shape: cgroup v1 only, cgroupfs driver.
    const PROC_V1_K8S: &str = "\
12:pids:/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
11:hugetlb:/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
10:cpu,cpuacct:/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
4:memory:/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
1:name=systemd:/kubepods/burstable/pod1b2c3d4e-5f60-7182-93a4-b5c6d7e8f901/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
";

    /// A hybrid host (systemd's unified hierarchy beside v1 controllers) running Docker with
    /// the cgroupfs driver: only the v1 controllers know the container.
    const PROC_HYBRID_DOCKER: &str = "\
12:memory:/docker/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
11:cpu,cpuacct:/docker/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
1:name=systemd:/docker/3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10
0::/system.slice/containerd.service
";

    /// Pure cgroup v2 (EKS AL2023, systemd driver).
    const PROC_V2_K8S: &str = "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1b2c3d4e_5f60_7182_93a4_b5c6d7e8f901.slice/cri-containerd-3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10.scope\n";

    /// A v1 host service: controllers without accounting show only the slice.
    const PROC_V1_SERVICE: &str = "\
11:cpu,cpuacct:/system.slice
7:memory:/system.slice/cron.service
3:devices:/system.slice/cron.service
1:name=systemd:/system.slice/cron.service
";

    /// A hybrid host service: the unified line is read first.
    const PROC_HYBRID_SERVICE: &str = "\
12:memory:/user.slice
1:name=systemd:/user.slice/user-1000.slice/session-3.scope
0::/user.slice/user-1000.slice/session-3.scope
";

    #[rstest]
    #[case::v1_k8s_cgroupfs(
        PROC_V1_K8S,
        want().container(ID, Unknown).pod(UID, Some(Burstable)),
    )]
    #[case::hybrid_docker_cgroupfs(PROC_HYBRID_DOCKER, want().container(ID, Docker))]
    #[case::v2_k8s_systemd(
        PROC_V2_K8S,
        want().container(ID, Containerd).pod(UID, Some(Burstable)).slice(&format!("kubepods-burstable-pod{UID_}.slice")),
    )]
    #[case::v1_service(PROC_V1_SERVICE, want().unit("cron.service").slice("system.slice"))]
    #[case::hybrid_service(
        PROC_HYBRID_SERVICE,
        want().unit("session-3.scope").slice("user-1000.slice"),
    )]
    #[case::v2_deleted(
        "0::/system.slice/docker-3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b2a10.scope (deleted)\n",
        want().container(ID, Docker).slice("system.slice"),
    )]
    #[case::v2_root("0::/\n", want())]
    #[case::empty("", want())]
    #[case::junk_lines_skipped(
        "garbage\nx::/docker/nothing\n\n0::/system.slice/cron.service\n",
        want().unit("cron.service").slice("system.slice"),
    )]
    #[case::colon_in_path(
        "0::/system.slice/a:b.service\n",
        want().unit("a:b.service").slice("system.slice"),
    )]
    fn parses_proc_cgroup(#[case] content: &str, #[case] expected: Want) {
        assert_eq!(parse_proc_cgroup(content), expected.0, "{content}");
    }

    #[test]
    fn serialized_names_match_as_str() {
        for runtime in [Containerd, CriO, Docker, Podman, Unknown] {
            let json = serde_json::to_string(&runtime).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(json, format!("\"{}\"", runtime.as_str()));
            assert_eq!(runtime.to_string(), runtime.as_str());
        }
        for qos in [Guaranteed, Burstable, BestEffort] {
            let json = serde_json::to_string(&qos).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(json, format!("\"{}\"", qos.as_str()));
            assert_eq!(qos.to_string(), qos.as_str());
        }
    }

    /// Pieces that trip every branch: prefixes, suffixes, separators, ids cut at odd places,
    /// multi-byte characters next to byte offsets.
    const PIECES: &[&str] = &[
        "/",
        "-",
        "_",
        ":",
        "\n",
        "0::",
        "1:name=systemd:",
        "kubepods",
        "kubepods.slice",
        "burstable",
        "besteffort",
        "pod",
        ".slice",
        ".scope",
        ".service",
        "cri-containerd-",
        "crio-",
        "crio-conmon-",
        "docker",
        "docker-",
        "libpod-",
        "libpod_parent",
        "conmon",
        "ecs",
        "default",
        " (deleted)",
        "..",
        ID,
        "3f9a1c0e8b7d6a5f4e3d2c1b0a9f8e7d",
        "3f9a1c0e",
        UID,
        UID_,
        "é",
        "💥",
    ];

    fn hostile() -> impl proptest::strategy::Strategy<Value = String> {
        use proptest::strategy::Strategy;
        proptest::collection::vec(proptest::sample::select(PIECES), 0..16)
            .prop_map(|pieces| pieces.concat())
    }

    fn check_invariants(
        identity: &CgroupIdentity,
    ) -> Result<(), proptest::test_runner::TestCaseError> {
        if let Some(id) = &identity.container_id {
            proptest::prop_assert!(is_container_id(id), "{id:?}");
            proptest::prop_assert!(identity.runtime.is_some());
        }
        if let Some(uid) = &identity.pod_uid {
            let dashed = uid.len() == POD_UID_LEN
                && uid.bytes().enumerate().all(|(at, b)| {
                    if POD_UID_SEPARATORS.contains(&at) {
                        b == b'-'
                    } else {
                        is_lower_hex(b)
                    }
                });
            let hashed = uid.len() == STATIC_POD_UID_LEN && uid.bytes().all(is_lower_hex);
            proptest::prop_assert!(dashed || hashed, "{uid:?}");
        }
        proptest::prop_assert!(identity.qos.is_none() || identity.pod_uid.is_some());
        for name in [&identity.systemd_unit, &identity.systemd_slice]
            .into_iter()
            .flatten()
        {
            proptest::prop_assert!(!name.contains('/'), "{name:?}");
        }
        Ok(())
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in proptest::prelude::any::<String>()) {
            check_invariants(&parse(&text))?;
            check_invariants(&parse_proc_cgroup(&text))?;
        }

        #[test]
        fn hostile_paths_never_panic(text in hostile()) {
            check_invariants(&parse(&text))?;
            check_invariants(&parse_proc_cgroup(&text))?;
        }
    }
}
