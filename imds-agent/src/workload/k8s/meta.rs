//! Pure conversions from the API's `Pod` to what the cache keeps: [`PodMeta`] without its
//! owner, the pod's own controller reference, and container ids. No I/O here; table-tested.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use super::{ContainerMeta, PodMeta, WorkloadOwner};

/// The only labels kept on a [`PodMeta`]: they name a workload; the rest is noise (and
/// unbounded cardinality downstream).
pub const LABELS_OF_INTEREST: &[&str] = &[
    "app.kubernetes.io/name",
    "app.kubernetes.io/instance",
    "app.kubernetes.io/component",
    "app",
    "k8s-app",
    "job-name",
    "batch.kubernetes.io/job-name",
    "spark-role",
    "spark-app-name",
];

/// Label the Deployment controller puts on its ReplicaSets' pods; the ReplicaSet is named
/// `<deployment>-<hash>`.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Owner kinds whose own owner is looked up in the API (ReplicaSet → Deployment, Job →
/// CronJob). Every other kind is taken as the top of the chain.
pub const KIND_REPLICA_SET: &str = "ReplicaSet";
pub const KIND_JOB: &str = "Job";
pub const KIND_DEPLOYMENT: &str = "Deployment";
pub const KIND_CRON_JOB: &str = "CronJob";
pub const KIND_DAEMON_SET: &str = "DaemonSet";
pub const KIND_STATEFUL_SET: &str = "StatefulSet";

/// An owner reference reduced to what owner resolution needs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ControllerRef {
    pub api_version: String,
    pub kind: String,
    pub name: String,
}

impl ControllerRef {
    /// Whether the API must be asked for this owner's own owner.
    pub fn needs_lookup(&self) -> bool {
        (self.kind == KIND_REPLICA_SET && self.api_version == "apps/v1")
            || (self.kind == KIND_JOB && self.api_version == "batch/v1")
    }
}

/// The controlling owner among `refs`: the one marked `controller: true`, else the first.
pub fn controller_of(refs: Option<&[OwnerReference]>) -> Option<ControllerRef> {
    let refs = refs?;
    let chosen = refs
        .iter()
        .find(|r| r.controller == Some(true))
        .or_else(|| refs.first())?;
    Some(ControllerRef {
        api_version: chosen.api_version.clone(),
        kind: chosen.kind.clone(),
        name: chosen.name.clone(),
    })
}

/// Everything the cache keeps about one version of a pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodFacts {
    /// The pod, `owner` still `None` (owner resolution fills it).
    pub meta: PodMeta,
    pub controller: Option<ControllerRef>,
    pub template_hash: Option<String>,
    /// Previous instances of restarted containers (`lastState.terminated.containerID`).
    pub previous: Vec<ContainerMeta>,
}

/// Converts a pod; `None` when it has no uid (the API always sets one).
pub fn pod_facts(pod: &Pod) -> Option<PodFacts> {
    let md = &pod.metadata;
    let uid = md.uid.clone().filter(|u| !u.is_empty())?;
    let spec = pod.spec.as_ref();
    let status = pod.status.as_ref();

    let labels: BTreeMap<String, String> = md
        .labels
        .iter()
        .flatten()
        .filter(|(k, _)| LABELS_OF_INTEREST.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let template_hash = md
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH_LABEL))
        .filter(|h| !h.is_empty())
        .cloned();

    // Containers as the kubelet reports them, in spec order (app, init, ephemeral), then
    // containers the spec names that have no status yet (no id).
    let spec_image = |name: &str| -> Option<String> {
        let spec = spec?;
        spec.containers
            .iter()
            .find(|c| c.name == name)
            .and_then(|c| c.image.clone())
            .or_else(|| {
                spec.init_containers
                    .iter()
                    .flatten()
                    .find(|c| c.name == name)
                    .and_then(|c| c.image.clone())
            })
            .or_else(|| {
                spec.ephemeral_containers
                    .iter()
                    .flatten()
                    .find(|c| c.name == name)
                    .and_then(|c| c.image.clone())
            })
    };
    let statuses: Vec<&ContainerStatus> = status
        .into_iter()
        .flat_map(|s| {
            s.container_statuses
                .iter()
                .flatten()
                .chain(s.init_container_statuses.iter().flatten())
                .chain(s.ephemeral_container_statuses.iter().flatten())
        })
        .collect();
    let mut containers: Vec<ContainerMeta> = statuses
        .iter()
        .map(|cs| {
            let (runtime, id) = split_container_id(cs.container_id.as_deref());
            let image = Some(cs.image.clone())
                .filter(|i| !i.is_empty())
                .or_else(|| spec_image(&cs.name));
            ContainerMeta {
                name: cs.name.clone(),
                id,
                runtime,
                image,
            }
        })
        .collect();
    let spec_names = spec.into_iter().flat_map(|s| {
        s.containers
            .iter()
            .map(|c| (&c.name, &c.image))
            .chain(
                s.init_containers
                    .iter()
                    .flatten()
                    .map(|c| (&c.name, &c.image)),
            )
            .chain(
                s.ephemeral_containers
                    .iter()
                    .flatten()
                    .map(|c| (&c.name, &c.image)),
            )
    });
    let mut missing = Vec::new();
    for (name, image) in spec_names {
        if !containers.iter().any(|c| &c.name == name) {
            missing.push(ContainerMeta {
                name: name.clone(),
                id: None,
                runtime: None,
                image: image.clone(),
            });
        }
    }
    containers.extend(missing);

    let previous = statuses
        .iter()
        .filter_map(|cs| {
            let terminated = cs.last_state.as_ref()?.terminated.as_ref()?;
            let (runtime, id) = split_container_id(terminated.container_id.as_deref());
            let id = id?;
            Some(ContainerMeta {
                name: cs.name.clone(),
                id: Some(id),
                runtime,
                image: Some(cs.image.clone()).filter(|i| !i.is_empty()),
            })
        })
        .collect();

    Some(PodFacts {
        meta: PodMeta {
            uid,
            name: md.name.clone().unwrap_or_default(),
            namespace: md.namespace.clone().unwrap_or_default(),
            node_name: spec.and_then(|s| s.node_name.clone()),
            labels,
            containers,
            owner: None,
            service_account: spec
                .and_then(|s| s.service_account_name.clone())
                .filter(|s| !s.is_empty()),
        },
        controller: controller_of(md.owner_references.as_deref()),
        template_hash,
        previous,
    })
}

/// `containerd://<id>` → (`containerd`, `<id>`). A value without a scheme is taken as a bare
/// id; an empty one (container not started yet) is `None`. Ids are lower-cased.
pub fn split_container_id(raw: Option<&str>) -> (Option<String>, Option<String>) {
    let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
        return (None, None);
    };
    match raw.split_once("://") {
        Some((runtime, id)) => {
            let id = Some(id.to_ascii_lowercase()).filter(|i| !i.is_empty());
            let runtime = Some(runtime.to_owned()).filter(|r| !r.is_empty());
            (runtime, id)
        }
        None => (None, Some(raw.to_ascii_lowercase())),
    }
}

/// The form in which container ids are indexed: no runtime scheme, lower case.
pub fn normalize_container_id(id: &str) -> Option<String> {
    split_container_id(Some(id)).1
}

/// The form in which pod uids are indexed: cgroup paths under the systemd driver spell the
/// uid with `_` for `-`; both are accepted.
pub fn normalize_uid(uid: &str) -> String {
    uid.trim().replace('_', "-").to_ascii_lowercase()
}

/// What the owner chain's parent answer is, as far as it is known.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parent<'a> {
    /// Not asked yet, or the API is unreachable: the chain stops at the pod's controller.
    Unknown,
    /// The API answered: the controller's own controller, if any.
    Known(Option<&'a ControllerRef>),
    /// The API said not found or forbidden: infer what labels allow.
    Unavailable,
}

/// Builds the owner of a pod from its controller and, for ReplicaSets and Jobs, the
/// controller's controller.
///
/// When the ReplicaSet cannot be read (not found, or RBAC forbids it) a Deployment is still
/// inferred if the pod carries `pod-template-hash` and the ReplicaSet is named
/// `<deployment>-<hash>`: that is how the Deployment controller names them.
pub fn compose_owner(
    controller: &ControllerRef,
    parent: Parent<'_>,
    template_hash: Option<&str>,
) -> WorkloadOwner {
    let mut owner = WorkloadOwner {
        kind: controller.kind.clone(),
        name: controller.name.clone(),
        job: None,
        cronjob: None,
        deployment: None,
        replicaset: None,
        daemonset: None,
        statefulset: None,
    };
    let slot = |owner: &mut WorkloadOwner, kind: &str, name: &str| {
        let name = Some(name.to_owned());
        match kind {
            KIND_REPLICA_SET => owner.replicaset = name,
            KIND_JOB => owner.job = name,
            KIND_DEPLOYMENT => owner.deployment = name,
            KIND_CRON_JOB => owner.cronjob = name,
            KIND_DAEMON_SET => owner.daemonset = name,
            KIND_STATEFUL_SET => owner.statefulset = name,
            _ => {}
        }
    };
    slot(&mut owner, &controller.kind, &controller.name);
    if !controller.needs_lookup() {
        return owner;
    }
    let parent: Option<(String, String)> = match parent {
        Parent::Known(Some(p)) => Some((p.kind.clone(), p.name.clone())),
        Parent::Known(None) | Parent::Unknown => None,
        Parent::Unavailable => template_hash
            .filter(|_| controller.kind == KIND_REPLICA_SET)
            .and_then(|hash| controller.name.strip_suffix(hash))
            .and_then(|rest| rest.strip_suffix('-'))
            .filter(|deployment| !deployment.is_empty())
            .map(|deployment| (KIND_DEPLOYMENT.to_owned(), deployment.to_owned())),
    };
    if let Some((kind, name)) = parent {
        slot(&mut owner, &kind, &name);
        owner.kind = kind;
        owner.name = name;
    }
    owner
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{
        Container, ContainerState, ContainerStateTerminated, PodSpec, PodStatus,
    };
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use rstest::rstest;

    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[rstest]
    #[case(Some("containerd://ABCdef"), Some("containerd"), Some("abcdef"))]
    #[case(Some("cri-o://abc"), Some("cri-o"), Some("abc"))]
    #[case(Some("docker://abc"), Some("docker"), Some("abc"))]
    #[case(Some("abc"), None, Some("abc"))]
    #[case(Some(""), None, None)]
    #[case(Some("containerd://"), Some("containerd"), None)]
    #[case(None, None, None)]
    fn container_ids(
        #[case] raw: Option<&str>,
        #[case] runtime: Option<&str>,
        #[case] id: Option<&str>,
    ) {
        assert_eq!(
            split_container_id(raw),
            (runtime.map(str::to_owned), id.map(str::to_owned))
        );
    }

    #[test]
    fn uids_accept_the_systemd_spelling() {
        assert_eq!(normalize_uid("1f2e_33aa_4b"), normalize_uid("1F2E-33AA-4B"));
    }

    fn status(name: &str, id: Option<&str>, last: Option<&str>) -> ContainerStatus {
        ContainerStatus {
            name: name.into(),
            container_id: id.map(str::to_owned),
            image: format!("registry/{name}:1"),
            last_state: last.map(|l| ContainerState {
                terminated: Some(ContainerStateTerminated {
                    container_id: Some(l.to_owned()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn pod_facts_keep_only_labels_of_interest_and_all_containers() {
        let pod = Pod {
            metadata: ObjectMeta {
                uid: Some("u1".into()),
                name: Some("p".into()),
                namespace: Some("ns".into()),
                labels: Some(BTreeMap::from([
                    ("app".to_owned(), "web".to_owned()),
                    ("pod-template-hash".to_owned(), "abc".to_owned()),
                    ("team".to_owned(), "x".to_owned()),
                ])),
                owner_references: Some(vec![
                    OwnerReference {
                        api_version: "v1".into(),
                        kind: "Other".into(),
                        name: "first".into(),
                        ..Default::default()
                    },
                    OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "web-abc".into(),
                        controller: Some(true),
                        ..Default::default()
                    },
                ]),
                ..Default::default()
            },
            spec: Some(PodSpec {
                node_name: Some("n".into()),
                service_account_name: Some("sa".into()),
                containers: vec![
                    Container {
                        name: "app".into(),
                        image: Some("app:1".into()),
                        ..Default::default()
                    },
                    Container {
                        name: "late".into(),
                        image: Some("late:1".into()),
                        ..Default::default()
                    },
                ],
                init_containers: Some(vec![Container {
                    name: "init".into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            status: Some(PodStatus {
                container_statuses: Some(vec![status(
                    "app",
                    Some(&format!("containerd://{ID}")),
                    Some("containerd://00ff"),
                )]),
                init_container_statuses: Some(vec![status("init", Some("cri-o://11aa"), None)]),
                ..Default::default()
            }),
        };
        let Some(facts) = pod_facts(&pod) else {
            panic!("pod has a uid")
        };
        let PodFacts {
            meta,
            controller,
            template_hash,
            previous,
        } = facts;
        assert_eq!(
            meta.labels,
            BTreeMap::from([("app".to_owned(), "web".to_owned())])
        );
        assert_eq!(meta.service_account.as_deref(), Some("sa"));
        assert_eq!(meta.node_name.as_deref(), Some("n"));
        assert_eq!(
            meta.containers,
            vec![
                ContainerMeta {
                    name: "app".into(),
                    id: Some(ID.into()),
                    runtime: Some("containerd".into()),
                    image: Some("registry/app:1".into()),
                },
                ContainerMeta {
                    name: "init".into(),
                    id: Some("11aa".into()),
                    runtime: Some("cri-o".into()),
                    image: Some("registry/init:1".into()),
                },
                ContainerMeta {
                    name: "late".into(),
                    id: None,
                    runtime: None,
                    image: Some("late:1".into())
                },
            ]
        );
        assert_eq!(
            controller,
            Some(ControllerRef {
                api_version: "apps/v1".into(),
                kind: "ReplicaSet".into(),
                name: "web-abc".into()
            })
        );
        assert_eq!(template_hash.as_deref(), Some("abc"));
        assert_eq!(previous.len(), 1);
        assert_eq!(previous[0].id.as_deref(), Some("00ff"));
    }

    #[test]
    fn pods_without_uid_are_skipped() {
        assert!(pod_facts(&Pod::default()).is_none());
    }

    fn cref(api_version: &str, kind: &str, name: &str) -> ControllerRef {
        ControllerRef {
            api_version: api_version.into(),
            kind: kind.into(),
            name: name.into(),
        }
    }

    #[rstest]
    // ReplicaSet → Deployment, known.
    #[case(cref("apps/v1", "ReplicaSet", "web-abc"), Parent::Known(Some(&cref("apps/v1", "Deployment", "web"))), Some("abc"), ("Deployment", "web"), Some("web-abc"), Some("web"), None)]
    // Bare ReplicaSet.
    #[case(cref("apps/v1", "ReplicaSet", "rs"), Parent::Known(None), None, ("ReplicaSet", "rs"), Some("rs"), None, None)]
    // ReplicaSet owned by something else (an Argo Rollout).
    #[case(cref("apps/v1", "ReplicaSet", "ro-abc"), Parent::Known(Some(&cref("argoproj.io/v1alpha1", "Rollout", "ro"))), Some("abc"), ("Rollout", "ro"), Some("ro-abc"), None, None)]
    // Not resolved yet: the chain stops at the ReplicaSet.
    #[case(cref("apps/v1", "ReplicaSet", "web-abc"), Parent::Unknown, Some("abc"), ("ReplicaSet", "web-abc"), Some("web-abc"), None, None)]
    // Forbidden or gone: inferred from pod-template-hash.
    #[case(cref("apps/v1", "ReplicaSet", "web-abc"), Parent::Unavailable, Some("abc"), ("Deployment", "web"), Some("web-abc"), Some("web"), None)]
    #[case(cref("apps/v1", "ReplicaSet", "web-abc"), Parent::Unavailable, Some("zzz"), ("ReplicaSet", "web-abc"), Some("web-abc"), None, None)]
    #[case(cref("apps/v1", "ReplicaSet", "abc"), Parent::Unavailable, Some("abc"), ("ReplicaSet", "abc"), Some("abc"), None, None)]
    // Job → CronJob.
    #[case(cref("batch/v1", "Job", "backup-29000"), Parent::Known(Some(&cref("batch/v1", "CronJob", "backup"))), None, ("CronJob", "backup"), None, None, Some("backup"))]
    #[case(cref("batch/v1", "Job", "once"), Parent::Known(None), None, ("Job", "once"), None, None, None)]
    #[case(cref("batch/v1", "Job", "gone-1"), Parent::Unavailable, None, ("Job", "gone-1"), None, None, None)]
    // Direct owners, never looked up.
    #[case(cref("apps/v1", "DaemonSet", "ds"), Parent::Unknown, None, ("DaemonSet", "ds"), None, None, None)]
    #[case(cref("v1", "Node", "node-a"), Parent::Unknown, None, ("Node", "node-a"), None, None, None)]
    // A ReplicaSet of another API group is not looked up.
    #[case(cref("example.com/v1", "ReplicaSet", "x"), Parent::Unavailable, Some("x"), ("ReplicaSet", "x"), Some("x"), None, None)]
    fn owners(
        #[case] controller: ControllerRef,
        #[case] parent: Parent<'_>,
        #[case] hash: Option<&str>,
        #[case] top: (&str, &str),
        #[case] replicaset: Option<&str>,
        #[case] deployment: Option<&str>,
        #[case] cronjob: Option<&str>,
    ) {
        let owner = compose_owner(&controller, parent, hash);
        assert_eq!((owner.kind.as_str(), owner.name.as_str()), top);
        assert_eq!(owner.replicaset.as_deref(), replicaset);
        assert_eq!(owner.deployment.as_deref(), deployment);
        assert_eq!(owner.cronjob.as_deref(), cronjob);
        if controller.kind == KIND_JOB {
            assert_eq!(owner.job.as_deref(), Some(controller.name.as_str()));
        }
        if controller.kind == KIND_DAEMON_SET {
            assert_eq!(owner.daemonset.as_deref(), Some("ds"));
        }
    }
}
