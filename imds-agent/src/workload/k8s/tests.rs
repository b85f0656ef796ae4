//! The pod cache against [`FakeApi`], a local API server speaking the real wire format.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hyper::StatusCode;
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet};
use k8s_openapi::api::batch::v1::{CronJob, Job};
use k8s_openapi::api::core::v1::{
    ContainerState, ContainerStateTerminated, ContainerStatus, Pod, PodSpec, PodStatus,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

use super::fake::FakeApi;
use super::{PodCache, PodCacheConfig, WorkloadOwner};

const NODE: &str = "node-a";
const NS: &str = "team";
/// How long any awaited change may take; everything here settles in milliseconds.
const PATIENCE: Duration = Duration::from_secs(3);

fn hex_id(seed: char) -> String {
    std::iter::repeat_n(seed, 64).collect()
}

fn config() -> PodCacheConfig {
    PodCacheConfig {
        deleted_grace: Duration::from_millis(400),
        backoff_min: Duration::from_millis(20),
        backoff_max: Duration::from_millis(100),
        ..PodCacheConfig::default()
    }
}

fn meta(name: &str, owner: Option<(&str, &str, &str)>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(NS.into()),
        uid: Some(format!("uid-{name}")),
        owner_references: owner.map(|(api_version, kind, owner)| {
            vec![OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: owner.into(),
                uid: format!("uid-{owner}"),
                controller: Some(true),
                block_owner_deletion: Some(true),
            }]
        }),
        ..ObjectMeta::default()
    }
}

fn pod(name: &str, node: &str, owner: Option<(&str, &str, &str)>) -> Pod {
    Pod {
        metadata: meta(name, owner),
        spec: Some(PodSpec {
            node_name: Some(node.into()),
            service_account_name: Some("default".into()),
            ..PodSpec::default()
        }),
        status: None,
    }
}

fn running(name: &str, id: &str) -> ContainerStatus {
    ContainerStatus {
        name: name.into(),
        container_id: Some(id.into()),
        image: format!("registry.example/{name}:1.0"),
        image_id: format!("registry.example/{name}@sha256:{}", hex_id('f')),
        ready: true,
        ..ContainerStatus::default()
    }
}

fn with_labels(mut pod: Pod, labels: &[(&str, &str)]) -> Pod {
    pod.metadata.labels = Some(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    );
    pod
}

fn replica_set(name: &str, deployment: Option<&str>) -> ReplicaSet {
    ReplicaSet {
        metadata: meta(name, deployment.map(|d| ("apps/v1", "Deployment", d))),
        ..ReplicaSet::default()
    }
}

fn job(name: &str, cronjob: Option<&str>) -> Job {
    Job {
        metadata: meta(name, cronjob.map(|c| ("batch/v1", "CronJob", c))),
        ..Job::default()
    }
}

fn owner(kind: &str, name: &str) -> WorkloadOwner {
    WorkloadOwner {
        kind: kind.into(),
        name: name.into(),
        job: None,
        cronjob: None,
        deployment: None,
        replicaset: None,
        daemonset: None,
        statefulset: None,
    }
}

async fn wait_for<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn synced_cache(fake: &FakeApi, config: PodCacheConfig) -> PodCache {
    let cache = PodCache::start_with_config(fake.client(), NODE.into(), config);
    wait_for("the first list", || cache.is_synced().then_some(())).await;
    cache
}

fn owner_kind(cache: &PodCache, uid: &str) -> Option<String> {
    cache.by_uid(uid).and_then(|p| p.owner).map(|o| o.kind)
}

fn count_requests(fake: &FakeApi, needle: &str) -> usize {
    fake.requests()
        .iter()
        .filter(|r| r.contains(needle))
        .count()
}

#[tokio::test]
async fn cronjob_pod_is_named_by_its_cronjob() {
    let fake = FakeApi::start(NODE).await;
    fake.put_object(&CronJob {
        metadata: meta("backup", None),
        ..CronJob::default()
    });
    fake.put_object(&job("backup-29000000", Some("backup")));
    fake.put_pod(with_labels(
        pod(
            "backup-29000000-x7k2q",
            NODE,
            Some(("batch/v1", "Job", "backup-29000000")),
        ),
        &[
            ("job-name", "backup-29000000"),
            ("batch.kubernetes.io/job-name", "backup-29000000"),
            ("batch.kubernetes.io/controller-uid", "uid-backup-29000000"),
        ],
    ));
    fake.put_pod(pod(
        "elsewhere",
        "node-b",
        Some(("apps/v1", "DaemonSet", "agent")),
    ));

    let cache = synced_cache(&fake, config()).await;
    let uid = "uid-backup-29000000-x7k2q";
    wait_for("the CronJob", || {
        (owner_kind(&cache, uid)? == "CronJob").then_some(())
    })
    .await;
    let Some(pod) = cache.by_uid(uid) else {
        panic!("pod is cached")
    };
    assert_eq!(
        pod.owner,
        Some(WorkloadOwner {
            job: Some("backup-29000000".into()),
            cronjob: Some("backup".into()),
            ..owner("CronJob", "backup")
        })
    );
    assert_eq!(pod.name, "backup-29000000-x7k2q");
    assert_eq!(pod.namespace, NS);
    assert_eq!(pod.node_name.as_deref(), Some(NODE));
    assert_eq!(pod.service_account.as_deref(), Some("default"));
    assert_eq!(
        pod.labels,
        BTreeMap::from([
            (
                "batch.kubernetes.io/job-name".to_owned(),
                "backup-29000000".to_owned()
            ),
            ("job-name".to_owned(), "backup-29000000".to_owned()),
        ])
    );
    assert!(
        cache.by_uid("uid-elsewhere").is_none(),
        "another node's pod was cached"
    );
    assert_eq!(
        count_requests(&fake, "/cronjobs/"),
        0,
        "the CronJob itself needs no GET"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn deployment_pods_resolve_through_their_replica_set_once() {
    let fake = FakeApi::start(NODE).await;
    fake.put_object(&Deployment {
        metadata: meta("web", None),
        ..Deployment::default()
    });
    fake.put_object(&replica_set("web-5d8f7c9b4", Some("web")));
    let rs = Some(("apps/v1", "ReplicaSet", "web-5d8f7c9b4"));
    fake.put_pod(with_labels(
        pod("web-5d8f7c9b4-aaaaa", NODE, rs),
        &[("app", "web"), ("pod-template-hash", "5d8f7c9b4")],
    ));
    fake.put_pod(pod("web-5d8f7c9b4-bbbbb", NODE, rs));
    // A bare ReplicaSet: the chain stops there.
    fake.put_object(&replica_set("bare", None));
    fake.put_pod(pod(
        "bare-ccccc",
        NODE,
        Some(("apps/v1", "ReplicaSet", "bare")),
    ));

    let cache = synced_cache(&fake, config()).await;
    wait_for("owners", || (cache.owners_pending() == 0).then_some(())).await;
    let expected = WorkloadOwner {
        deployment: Some("web".into()),
        replicaset: Some("web-5d8f7c9b4".into()),
        ..owner("Deployment", "web")
    };
    for uid in ["uid-web-5d8f7c9b4-aaaaa", "uid-web-5d8f7c9b4-bbbbb"] {
        assert_eq!(
            cache.by_uid(uid).and_then(|p| p.owner),
            Some(expected.clone()),
            "{uid}"
        );
    }
    assert_eq!(
        cache.by_uid("uid-bare-ccccc").and_then(|p| p.owner),
        Some(WorkloadOwner {
            replicaset: Some("bare".into()),
            ..owner("ReplicaSet", "bare")
        })
    );
    assert_eq!(
        count_requests(&fake, "/replicasets/web-5d8f7c9b4"),
        1,
        "one GET per ReplicaSet"
    );
    assert_eq!(count_requests(&fake, "/deployments/"), 0);

    // A pod of that ReplicaSet arriving later is answered from the owner cache.
    fake.put_pod(pod("web-5d8f7c9b4-ddddd", NODE, rs));
    let late = wait_for("the late pod", || cache.by_uid("uid-web-5d8f7c9b4-ddddd")).await;
    assert_eq!(late.owner, Some(expected));
    assert_eq!(count_requests(&fake, "/replicasets/web-5d8f7c9b4"), 1);
    fake.assert_clean();
}

#[tokio::test]
async fn daemonset_and_statefulset_pods_need_no_lookup() {
    let fake = FakeApi::start(NODE).await;
    fake.put_pod(pod(
        "node-exporter-z9",
        NODE,
        Some(("apps/v1", "DaemonSet", "node-exporter")),
    ));
    fake.put_pod(pod("db-0", NODE, Some(("apps/v1", "StatefulSet", "db"))));
    fake.put_pod(pod("static-kube-proxy", NODE, Some(("v1", "Node", NODE))));
    fake.put_pod(pod("naked", NODE, None));

    let cache = synced_cache(&fake, config()).await;
    assert_eq!(
        cache.by_uid("uid-node-exporter-z9").and_then(|p| p.owner),
        Some(WorkloadOwner {
            daemonset: Some("node-exporter".into()),
            ..owner("DaemonSet", "node-exporter")
        })
    );
    assert_eq!(
        cache.by_uid("uid-db-0").and_then(|p| p.owner),
        Some(WorkloadOwner {
            statefulset: Some("db".into()),
            ..owner("StatefulSet", "db")
        })
    );
    assert_eq!(
        owner_kind(&cache, "uid-static-kube-proxy").as_deref(),
        Some("Node")
    );
    assert_eq!(cache.by_uid("uid-naked").map(|p| p.owner), Some(None));
    assert_eq!(cache.owners_pending(), 0);
    assert_eq!(count_requests(&fake, "/apis/"), 0);
    fake.assert_clean();
}

#[tokio::test]
async fn containers_are_found_by_runtime_id() {
    let fake = FakeApi::start(NODE).await;
    let (app, sidecar, init, crashed) = (hex_id('a'), hex_id('b'), hex_id('c'), hex_id('d'));
    let mut p = pod("api-0", NODE, Some(("apps/v1", "StatefulSet", "api")));
    let mut app_status = running("app", &format!("containerd://{app}"));
    app_status.restart_count = 1;
    app_status.last_state = Some(ContainerState {
        terminated: Some(ContainerStateTerminated {
            container_id: Some(format!("containerd://{crashed}")),
            exit_code: 1,
            ..ContainerStateTerminated::default()
        }),
        ..ContainerState::default()
    });
    p.status = Some(PodStatus {
        container_statuses: Some(vec![
            app_status,
            running("sidecar", &format!("cri-o://{sidecar}")),
        ]),
        init_container_statuses: Some(vec![running("setup", &format!("containerd://{init}"))]),
        ..PodStatus::default()
    });
    fake.put_pod(p);

    let cache = synced_cache(&fake, config()).await;
    let Some((pod, container)) = cache.by_container_id(&app) else {
        panic!("app container by id")
    };
    assert_eq!(pod.uid, "uid-api-0");
    assert_eq!(container.name, "app");
    assert_eq!(container.id.as_deref(), Some(app.as_str()));
    assert_eq!(container.runtime.as_deref(), Some("containerd"));
    assert_eq!(container.image.as_deref(), Some("registry.example/app:1.0"));
    assert_eq!(pod.containers.len(), 3);
    assert!(
        cache
            .by_container_id(&format!("containerd://{app}"))
            .is_some(),
        "with its scheme"
    );
    assert!(
        cache.by_container_id(&app.to_ascii_uppercase()).is_some(),
        "any case"
    );
    let found = |id: &str| cache.by_container_id(id).map(|(_, c)| (c.name, c.runtime));
    assert_eq!(
        found(&sidecar),
        Some(("sidecar".into(), Some("cri-o".into())))
    );
    assert_eq!(
        found(&init),
        Some(("setup".into(), Some("containerd".into())))
    );
    assert_eq!(
        found(&crashed),
        Some(("app".into(), Some("containerd".into()))),
        "the crashed instance"
    );
    assert!(cache.by_container_id(&hex_id('e')).is_none());
    assert!(
        cache.by_uid("uid_api_0").is_some(),
        "the uid as cgroup paths spell it"
    );
    fake.assert_clean();
}

#[tokio::test]
async fn watched_pods_appear_change_and_go_after_the_grace_period() {
    let fake = FakeApi::start(NODE).await;
    let cache = synced_cache(&fake, config()).await;
    assert!(cache.is_empty());

    // Scheduled, not started: no container id yet.
    let mut p = pod("worker-1", NODE, Some(("apps/v1", "DaemonSet", "worker")));
    fake.put_pod(p.clone());
    let seen = wait_for("ADDED pod", || cache.by_uid("uid-worker-1")).await;
    assert_eq!(seen.containers, vec![]);

    let id = hex_id('9');
    p.status = Some(PodStatus {
        container_statuses: Some(vec![running("main", &format!("containerd://{id}"))]),
        ..PodStatus::default()
    });
    fake.put_pod(p);
    let (pod, container) = wait_for("MODIFIED pod", || cache.by_container_id(&id)).await;
    assert_eq!(
        (pod.name.as_str(), container.name.as_str()),
        ("worker-1", "main")
    );

    let deleted_at = Instant::now();
    fake.delete_pod(NS, "worker-1");
    wait_for("the pod to go", || {
        cache.by_uid("uid-worker-1").is_none().then_some(())
    })
    .await;
    assert!(
        deleted_at.elapsed() >= config().deleted_grace,
        "purged after {:?}, before the grace period",
        deleted_at.elapsed()
    );
    assert!(cache.by_container_id(&id).is_none());
    fake.assert_clean();
}

/// Collects what the test thread logs (the runtime is current-thread, so the cache's tasks
/// log there too).
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Logs {
    fn count(&self, level: &str, needle: &str) -> usize {
        let text = String::from_utf8_lossy(&self.0.lock().unwrap_or_else(PoisonError::into_inner))
            .into_owned();
        text.lines()
            .filter(|l| l.contains(level) && l.contains(needle))
            .count()
    }
}

#[tokio::test]
async fn outages_keep_the_last_state_and_the_watch_resumes() {
    let logs = Logs::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    let _guard = tracing::subscriber::set_default(subscriber);

    let mut fake = FakeApi::start(NODE).await;
    fake.put_object(&replica_set("web-abc", Some("web")));
    let rs = Some(("apps/v1", "ReplicaSet", "web-abc"));
    fake.put_pod(pod("web-abc-1", NODE, rs));
    let cache = synced_cache(&fake, config()).await;
    wait_for("the owner", || {
        (owner_kind(&cache, "uid-web-abc-1")? == "Deployment").then_some(())
    })
    .await;
    let before = cache.by_uid("uid-web-abc-1");

    // Down: every retry fails, the cache answers as before, one warning in all.
    fake.stop().await;
    wait_for("the outage warning", || {
        (logs.count("WARN", "Kubernetes API unreachable") > 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(cache.by_uid("uid-web-abc-1"), before);
    assert!(cache.is_synced());
    assert_eq!(
        logs.count("WARN", "Kubernetes API unreachable"),
        1,
        "one warning per outage"
    );
    let retries = count_requests(&fake, "watch=true");

    // Back with its history: the watch resumes where it was and replays what it missed.
    fake.put_pod(pod("web-abc-2", NODE, rs));
    fake.restart(false).await;
    fake.put_pod(pod("web-abc-3", NODE, rs));
    for uid in ["uid-web-abc-2", "uid-web-abc-3"] {
        let p = wait_for(uid, || cache.by_uid(uid)).await;
        assert_eq!(
            p.owner.map(|o| o.kind).as_deref(),
            Some("Deployment"),
            "owner from the cache"
        );
    }
    assert!(count_requests(&fake, "watch=true") > retries, "re-watched");
    assert_eq!(logs.count("INFO", "Kubernetes API reachable again"), 1);

    // Down again, and back with its history compacted: 410 Gone, re-list. A pod deleted
    // meanwhile is noticed by its absence (and kept for the grace period), a new one appears.
    fake.stop().await;
    fake.delete_pod(NS, "web-abc-1");
    fake.put_pod(pod("web-abc-4", NODE, rs));
    let lists = count_requests(&fake, "/api/v1/pods?") - count_requests(&fake, "watch=true");
    wait_for("a second outage warning", || {
        (logs.count("WARN", "Kubernetes API unreachable") == 2).then_some(())
    })
    .await;
    fake.restart(true).await;
    wait_for("pod added during the outage", || {
        cache.by_uid("uid-web-abc-4")
    })
    .await;
    assert!(
        count_requests(&fake, "/api/v1/pods?") - count_requests(&fake, "watch=true") > lists,
        "re-listed"
    );
    assert!(cache.by_uid("uid-web-abc-2").is_some());
    wait_for("pod deleted during the outage to go", || {
        cache.by_uid("uid-web-abc-1").is_none().then_some(())
    })
    .await;
    assert_eq!(logs.count("WARN", "Kubernetes API unreachable"), 2);
    assert_eq!(logs.count("INFO", "Kubernetes API reachable again"), 2);
    fake.assert_clean();
}

#[tokio::test]
async fn forbidden_owner_lookups_fall_back_to_labels() {
    let fake = FakeApi::start(NODE).await;
    fake.fail_owner_lookups(Some(StatusCode::FORBIDDEN));
    fake.put_pod(with_labels(
        pod(
            "api-7f9c-x",
            NODE,
            Some(("apps/v1", "ReplicaSet", "api-7f9c")),
        ),
        &[("pod-template-hash", "7f9c")],
    ));
    fake.put_pod(pod(
        "nightly-123-y",
        NODE,
        Some(("batch/v1", "Job", "nightly-123")),
    ));

    let cache = synced_cache(&fake, config()).await;
    wait_for("owner answers", || {
        (cache.owners_pending() == 0).then_some(())
    })
    .await;
    assert_eq!(
        cache.by_uid("uid-api-7f9c-x").and_then(|p| p.owner),
        Some(WorkloadOwner {
            deployment: Some("api".into()),
            replicaset: Some("api-7f9c".into()),
            ..owner("Deployment", "api")
        })
    );
    assert_eq!(
        cache.by_uid("uid-nightly-123-y").and_then(|p| p.owner),
        Some(WorkloadOwner {
            job: Some("nightly-123".into()),
            ..owner("Job", "nightly-123")
        })
    );
    fake.assert_clean();
}

#[tokio::test]
async fn failing_owner_lookups_are_retried() {
    let fake = FakeApi::start(NODE).await;
    fake.fail_owner_lookups(Some(StatusCode::INTERNAL_SERVER_ERROR));
    fake.put_object(&replica_set("api-7f9c", Some("api")));
    fake.put_pod(pod(
        "api-7f9c-x",
        NODE,
        Some(("apps/v1", "ReplicaSet", "api-7f9c")),
    ));

    let cache = synced_cache(&fake, config()).await;
    wait_for("retries", || {
        (count_requests(&fake, "/replicasets/api-7f9c") >= 2).then_some(())
    })
    .await;
    assert_eq!(
        owner_kind(&cache, "uid-api-7f9c-x").as_deref(),
        Some("ReplicaSet"),
        "provisional"
    );
    assert_eq!(cache.owners_pending(), 1);

    fake.fail_owner_lookups(None);
    wait_for("the Deployment", || {
        (owner_kind(&cache, "uid-api-7f9c-x")? == "Deployment").then_some(())
    })
    .await;
    assert_eq!(cache.owners_pending(), 0);
    fake.assert_clean();
}

#[tokio::test]
async fn pod_requests_without_the_node_selector_are_caught() {
    let fake = FakeApi::start(NODE).await;
    let pods: kube::Api<Pod> = kube::Api::all(fake.client());
    let listed = pods.list(&kube::api::ListParams::default()).await;
    assert!(listed.is_err(), "the fake refuses cluster-wide pod lists");
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fake.assert_clean()));
    assert!(caught.is_err(), "assert_clean fails the test");
}
