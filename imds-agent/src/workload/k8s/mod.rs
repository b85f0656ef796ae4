//! Kubernetes pod cache: names the pod, container and workload (Deployment, CronJob,
//! DaemonSet, ...) behind a pod uid or a container id.
//!
//! One watch, restricted to this node (`fieldSelector=spec.nodeName=<node>`; the cluster's
//! other pods are never listed), feeds a [`PodCache`]. kube-runtime's watcher re-lists and
//! re-watches by itself; a jittered exponential backoff spaces the retries. Lookups are
//! synchronous reads of an `RwLock`ed map: they never wait on the network, so the event
//! pipeline can call them from anywhere, including a current-thread runtime.
//!
//! Owners: a pod names its controller (ReplicaSet, Job, DaemonSet, StatefulSet, ...). For a
//! ReplicaSet or a Job the controller's own controller (Deployment, CronJob) is asked of the
//! API once, by a second task, with a metadata-only GET; answers are cached with a TTL in a
//! bounded map and shared by all pods of that ReplicaSet or Job. Until the answer arrives a
//! pod's owner is its controller. If the ReplicaSet is gone or RBAC forbids reading it, the
//! Deployment is inferred from the pod's `pod-template-hash` label.
//!
//! Deleted pods (and ids of containers that were replaced by a restart) stay answerable for
//! a grace period ([`PodCacheConfig::deleted_grace`], 60 s by default): the connection that
//! reported a process may be looked up after the pod's DELETED event arrived. A re-list
//! that no longer has a pod counts as its deletion.
//!
//! API outages: the cache keeps answering with the last known state; one warning is logged
//! when an outage starts and one line when the watch recovers, whatever the retry count.
//!
//! RBAC the agent needs: `list` and `watch` on `pods`, `get` on `replicasets.apps` and
//! `jobs.batch` (without the latter two, Deployments are inferred and CronJobs are not
//! named).

mod meta;
mod owner;
mod store;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashSet};
use std::hash::{BuildHasher, RandomState};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Pod;
use kube::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt as _, utils::Backoff};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use meta::LABELS_OF_INTEREST;
use meta::pod_facts;
use owner::OwnerCache;
use store::Store;

/// Environment variable naming this node (set from the downward API:
/// `valueFrom.fieldRef.fieldPath: spec.nodeName`).
pub const NODE_NAME_ENV: &str = "NODE_NAME";
/// Set by the kubelet in every pod; part of in-cluster credentials.
pub const SERVICE_HOST_ENV: &str = "KUBERNETES_SERVICE_HOST";
/// The service account token mounted in every pod that has one.
pub const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";
/// Directives for the agent's log filter (`EnvFilter::add_directive`): kube-client logs
/// every failed request at ERROR and kube-runtime every 403 retry at WARN, once per retry
/// during an outage; this module reports each outage once, with the error.
pub const QUIET_KUBE_LOGS: &[&str] = &["kube_client=off", "kube_runtime=error"];
/// Longest silence on an API connection before it is given up (see `from_environment`).
const IN_CLUSTER_READ_TIMEOUT: Duration = Duration::from_secs(295);

/// A pod, reduced to what names a workload.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct PodMeta {
    pub uid: String,
    pub name: String,
    pub namespace: String,
    pub node_name: Option<String>,
    /// Only [`LABELS_OF_INTEREST`].
    pub labels: BTreeMap<String, String>,
    /// From `status.containerStatuses`, `initContainerStatuses` and
    /// `ephemeralContainerStatuses`, then spec containers that have no status yet (no id).
    pub containers: Vec<ContainerMeta>,
    /// The top-level owner, resolved as far as the API allowed.
    pub owner: Option<WorkloadOwner>,
    pub service_account: Option<String>,
}

/// One container of a pod.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ContainerMeta {
    pub name: String,
    /// The runtime's id (64 hex digits for containerd, CRI-O and Docker), without the
    /// `containerd://` / `cri-o://` / `docker://` scheme, lower case. `None` until started.
    pub id: Option<String>,
    /// The scheme of the id: `containerd`, `cri-o`, `docker`.
    pub runtime: Option<String>,
    pub image: Option<String>,
}

/// The workload a pod belongs to: the top of its owner chain, and each link by kind.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct WorkloadOwner {
    /// `CronJob`, `Job`, `Deployment`, `DaemonSet`, `StatefulSet`, `ReplicaSet`, or any other
    /// kind that controls the pod (`Node` for static pods, custom resources).
    pub kind: String,
    pub name: String,
    pub job: Option<String>,
    pub cronjob: Option<String>,
    pub deployment: Option<String>,
    pub replicaset: Option<String>,
    pub daemonset: Option<String>,
    pub statefulset: Option<String>,
}

/// Tuning of a [`PodCache`]; `Default` is what production uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodCacheConfig {
    /// How long deleted pods, and ids of replaced containers, stay answerable. Default 60 s.
    pub deleted_grace: Duration,
    /// First retry delay after an API failure (watch or owner lookup), doubled per failure
    /// up to `backoff_max`, ±25 % jitter. Defaults 500 ms and 30 s.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// How long an owner answer is trusted before a new pod of that ReplicaSet or Job asks
    /// again (the old answer is used meanwhile). Default 10 min.
    pub owner_ttl: Duration,
    /// The same for "not found" and "forbidden". Default 1 min.
    pub owner_negative_ttl: Duration,
    /// Most owner answers kept. Default 1024.
    pub owner_capacity: usize,
    /// An owner lookup with no answer by then is retried later. Default 10 s.
    pub owner_lookup_timeout: Duration,
}

impl Default for PodCacheConfig {
    fn default() -> Self {
        Self {
            deleted_grace: Duration::from_secs(60),
            backoff_min: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            owner_ttl: Duration::from_secs(600),
            owner_negative_ttl: Duration::from_secs(60),
            owner_capacity: 1024,
            owner_lookup_timeout: Duration::from_secs(10),
        }
    }
}

impl PodCacheConfig {
    /// Errors closer together than this belong to one outage (one warning). Covers the
    /// longest backoff with jitter plus a connect timeout.
    fn outage_gap(&self) -> Duration {
        self.backoff_max.saturating_mul(2) + Duration::from_secs(60)
    }

    fn sweep_period(&self) -> Duration {
        (self.deleted_grace / 2).clamp(Duration::from_millis(20), Duration::from_secs(30))
    }
}

struct Shared {
    store: RwLock<Store>,
    synced: AtomicBool,
    /// Wakes the owner resolver when a pod needs a lookup.
    owner_wanted: Notify,
}

impl Shared {
    // A panic while the lock is held cannot leave the maps half-updated in a way that
    // matters more than losing the cache, so poisoning is ignored.
    fn read(&self) -> RwLockReadGuard<'_, Store> {
        self.store.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> RwLockWriteGuard<'_, Store> {
        self.store.write().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Aborts the background tasks when the last [`PodCache`] clone is dropped.
struct Tasks(Vec<JoinHandle<()>>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// The pods of this node, kept current by a watch. Cheap to clone; lookups never block on
/// the network.
#[derive(Clone)]
pub struct PodCache {
    shared: Arc<Shared>,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for PodCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PodCache")
            .field("pods", &self.shared.read().len())
            .field("synced", &self.is_synced())
            .finish_non_exhaustive()
    }
}

impl PodCache {
    /// In a pod with in-cluster credentials (`KUBERNETES_SERVICE_HOST` and the service
    /// account token) and `NODE_NAME` set: a cache of this node's pods. Anywhere else
    /// `Ok(None)`. Must be called within a tokio runtime.
    pub async fn from_environment() -> anyhow::Result<Option<PodCache>> {
        let node = environment_node(
            std::env::var(NODE_NAME_ENV).ok(),
            std::env::var_os(SERVICE_HOST_ENV).is_some(),
            Path::new(SERVICE_ACCOUNT_TOKEN).exists(),
        );
        let Some(node) = node else {
            tracing::debug!(
                "no Kubernetes pod metadata: needs {NODE_NAME_ENV}, {SERVICE_HOST_ENV} and \
                 {SERVICE_ACCOUNT_TOKEN}"
            );
            return Ok(None);
        };
        let mut config =
            kube::Config::incluster().context("loading the in-cluster Kubernetes config")?;
        // kube leaves in-cluster reads unbounded; a kubeconfig gets 295 s, just above the
        // watch timeout (290 s), so that a hung list or GET cannot stall the cache forever.
        config.read_timeout.get_or_insert(IN_CLUSTER_READ_TIMEOUT);
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        tracing::info!(node = %node, "watching this node's pods");
        Ok(Some(PodCache::start(client, node)))
    }

    /// Out of cluster: the API server and credentials of a kubeconfig file (its current
    /// context), watching the pods of `node_name`.
    pub async fn from_kubeconfig(path: &Path, node_name: String) -> anyhow::Result<PodCache> {
        let kubeconfig = kube::config::Kubeconfig::read_from(path)
            .with_context(|| format!("reading kubeconfig {}", path.display()))?;
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .with_context(|| format!("loading kubeconfig {}", path.display()))?;
        config.read_timeout.get_or_insert(IN_CLUSTER_READ_TIMEOUT);
        let client = kube::Client::try_from(config).context("building the Kubernetes client")?;
        tracing::info!(node = %node_name, "watching this node's pods");
        Ok(PodCache::start(client, node_name))
    }

    /// Starts watching the pods of `node_name`, with default tuning, in background tasks
    /// of the current tokio runtime (current-thread is enough); they stop when the last
    /// clone of the cache is dropped. Like `tokio::spawn`, panics outside a runtime.
    pub fn start(client: kube::Client, node_name: String) -> PodCache {
        Self::start_with_config(client, node_name, PodCacheConfig::default())
    }

    /// [`PodCache::start`] with explicit tuning.
    pub fn start_with_config(
        client: kube::Client,
        node_name: String,
        config: PodCacheConfig,
    ) -> PodCache {
        let owners = OwnerCache::new(
            config.owner_capacity,
            config.owner_ttl,
            config.owner_negative_ttl,
        );
        let shared = Arc::new(Shared {
            store: RwLock::new(Store::new(owners, config.deleted_grace)),
            synced: AtomicBool::new(false),
            owner_wanted: Notify::new(),
        });
        let watch = tokio::spawn(watch_pods(
            shared.clone(),
            client.clone(),
            node_name,
            config.clone(),
        ));
        let resolve = tokio::spawn(resolve_owners(shared.clone(), client, config));
        PodCache {
            shared,
            _tasks: Arc::new(Tasks(vec![watch, resolve])),
        }
    }

    /// The pod with this uid (`-` or `_` separated, as cgroup paths spell it).
    pub fn by_uid(&self, uid: &str) -> Option<PodMeta> {
        self.shared.read().by_uid(uid)
    }

    /// The pod and container with this runtime id, bare or with its `containerd://` scheme.
    /// Also finds the previous instance of a restarted container.
    pub fn by_container_id(&self, id: &str) -> Option<(PodMeta, ContainerMeta)> {
        self.shared.read().by_container_id(id)
    }

    /// Whether the first full list of the node's pods has arrived. Stays true during later
    /// outages (the cache then answers with the last known state).
    pub fn is_synced(&self) -> bool {
        self.shared.synced.load(Ordering::Acquire)
    }

    /// Pods known, including deleted ones still in their grace period.
    pub fn len(&self) -> usize {
        self.shared.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pods still waiting for an owner answer from the API.
    #[cfg(test)]
    fn owners_pending(&self) -> usize {
        self.shared.read().pending_len()
    }
}

/// The node to watch, when the environment allows it.
fn environment_node(
    node: Option<String>,
    has_service_host: bool,
    has_token: bool,
) -> Option<String> {
    let node = node
        .map(|n| n.trim().to_owned())
        .filter(|n| !n.is_empty())?;
    (has_service_host && has_token).then_some(node)
}

/// The field selector that restricts every pod request to one node.
fn node_selector(node: &str) -> String {
    format!("spec.nodeName={node}")
}

async fn watch_pods(
    shared: Arc<Shared>,
    client: kube::Client,
    node: String,
    config: PodCacheConfig,
) {
    let api: Api<Pod> = Api::all(client);
    let events = watcher::watcher(
        api,
        watcher::Config::default().fields(&node_selector(&node)),
    )
    .backoff(RetryBackoff::new(config.backoff_min, config.backoff_max));
    let mut events = std::pin::pin!(events);
    let mut sweep = tokio::time::interval(config.sweep_period());
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut outage = Outage::new(config.outage_gap());
    // Uids seen since the last `Init`, while a (re-)list is under way.
    let mut listing: Option<HashSet<String>> = None;
    loop {
        tokio::select! {
            event = events.next() => match event {
                Some(Ok(event)) => {
                    if let Some((span, failures)) = outage.recovered() {
                        tracing::info!(
                            node = %node,
                            "Kubernetes API reachable again ({failures} failed attempts over {span:.1?})"
                        );
                    }
                    handle_event(&shared, event, &mut listing, &node);
                }
                Some(Err(watcher::Error::WatchError(status))) if status.code == 410 => {
                    tracing::debug!("pod watch expired (410 Gone); re-listing");
                }
                Some(Err(error)) => {
                    if outage.failed(Instant::now()) {
                        tracing::warn!(
                            node = %node,
                            pods = shared.read().len(),
                            "Kubernetes API unreachable; serving the last known pods until it \
                             returns: {error}"
                        );
                    } else {
                        tracing::debug!("pod watch still failing: {error}");
                    }
                }
                None => {
                    // The backoff never gives up, so the watcher never ends.
                    tracing::error!("pod watch ended; pod metadata is frozen");
                    return;
                }
            },
            _ = sweep.tick() => shared.write().sweep(Instant::now()),
        }
    }
}

fn handle_event(
    shared: &Shared,
    event: Event<Pod>,
    listing: &mut Option<HashSet<String>>,
    node: &str,
) {
    let now = Instant::now();
    let wanted = match event {
        Event::Init => {
            *listing = Some(HashSet::new());
            false
        }
        Event::InitApply(pod) | Event::Apply(pod) => {
            let Some(facts) = pod_facts(&pod) else { return };
            if let Some(seen) = listing.as_mut() {
                seen.insert(meta::normalize_uid(&facts.meta.uid));
            }
            shared.write().apply(facts, now)
        }
        Event::Delete(pod) => {
            let Some(facts) = pod_facts(&pod) else { return };
            shared.write().delete(facts, now)
        }
        Event::InitDone => {
            if let Some(seen) = listing.take() {
                let missing = shared.write().mark_missing(&seen, now);
                if !shared.synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(node = %node, pods = seen.len(), "pod cache synced");
                } else {
                    tracing::debug!(pods = seen.len(), missing, "pods re-listed");
                }
            }
            false
        }
    };
    if wanted {
        shared.owner_wanted.notify_one();
    }
}

/// Answers pending owner lookups, one API call per ReplicaSet or Job, retrying with backoff
/// while the API fails.
async fn resolve_owners(shared: Arc<Shared>, client: kube::Client, config: PodCacheConfig) {
    let mut backoff = RetryBackoff::new(config.backoff_min, config.backoff_max);
    let mut outage = Outage::new(config.outage_gap());
    let mut retry_at: Option<tokio::time::Instant> = None;
    loop {
        match retry_at.take() {
            Some(at) => tokio::time::sleep_until(at).await,
            None => shared.owner_wanted.notified().await,
        }
        let keys = shared.write().pending_keys(Instant::now());
        for key in keys {
            match owner::fetch(&client, &key, config.owner_lookup_timeout).await {
                Ok(answer) => {
                    if let Some((span, failures)) = outage.recovered() {
                        tracing::info!(
                            "owner lookups work again ({failures} failed attempts over {span:.1?})"
                        );
                    }
                    shared.write().store_owner(key, answer, Instant::now());
                }
                Err(error) => {
                    let delay = backoff.next().unwrap_or(config.backoff_max);
                    if outage.failed(Instant::now()) {
                        tracing::warn!(
                            "owner lookup failed, retrying; owners stay at the pod's controller \
                             meanwhile: {error}"
                        );
                    } else {
                        tracing::debug!("owner lookup failed again: {error}");
                    }
                    retry_at = Some(tokio::time::Instant::now() + delay);
                    break;
                }
            }
        }
        if retry_at.is_none() {
            backoff.reset();
        }
    }
}

/// Exponential backoff with ±25 % jitter, so that the agents of a whole cluster do not
/// reconnect to a recovering API server in step.
struct RetryBackoff {
    min: Duration,
    max: Duration,
    next: Duration,
    random: RandomState,
    draws: u64,
}

impl RetryBackoff {
    fn new(min: Duration, max: Duration) -> Self {
        Self {
            min,
            max: max.max(min),
            next: min,
            random: RandomState::new(),
            draws: 0,
        }
    }
}

impl Iterator for RetryBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let base = self.next;
        self.next = self.next.saturating_mul(2).min(self.max);
        self.draws = self.draws.wrapping_add(1);
        // A uniform draw in [0.75, 1.25).
        let unit = (self.random.hash_one(self.draws) >> 11) as f64 / (1u64 << 53) as f64;
        Some(base.mul_f64(0.75 + unit / 2.0))
    }
}

impl Backoff for RetryBackoff {
    fn reset(&mut self) {
        self.next = self.min;
    }
}

/// Groups consecutive API failures into outages, so that each is logged once.
struct Outage {
    gap: Duration,
    since: Option<Instant>,
    last_failure: Option<Instant>,
    failures: u64,
}

impl Outage {
    fn new(gap: Duration) -> Self {
        Self {
            gap,
            since: None,
            last_failure: None,
            failures: 0,
        }
    }

    /// Records a failure; true when it starts a new outage. A failure long after the
    /// previous one starts a new outage too: the stream may have recovered silently in
    /// between (a resumed watch yields nothing until a pod changes).
    fn failed(&mut self, now: Instant) -> bool {
        let new = match (self.since, self.last_failure) {
            (Some(_), Some(last)) => now.saturating_duration_since(last) > self.gap,
            _ => true,
        };
        if new {
            self.since = Some(now);
            self.failures = 0;
        }
        self.failures += 1;
        self.last_failure = Some(now);
        new
    }

    /// Records a success; when it ends an outage, the time from its first failure to its
    /// last, and the number of failures. (The success may come long after the outage ended:
    /// a resumed watch yields nothing until a pod changes.)
    fn recovered(&mut self) -> Option<(Duration, u64)> {
        let since = self.since.take()?;
        let last = self.last_failure.take().unwrap_or(since);
        Some((last.saturating_duration_since(since), self.failures))
    }
}

#[cfg(test)]
mod unit_tests {
    use super::*;

    #[test]
    fn the_cache_can_be_shared_across_threads() {
        fn shareable<T: Clone + Send + Sync + 'static>() {}
        shareable::<PodCache>();
    }

    #[test]
    fn environment_needs_node_and_credentials() {
        assert_eq!(
            environment_node(Some(" node-a ".into()), true, true).as_deref(),
            Some("node-a")
        );
        assert_eq!(environment_node(Some("".into()), true, true), None);
        assert_eq!(environment_node(None, true, true), None);
        assert_eq!(environment_node(Some("n".into()), false, true), None);
        assert_eq!(environment_node(Some("n".into()), true, false), None);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap_and_resets() {
        let mut b = RetryBackoff::new(Duration::from_millis(100), Duration::from_millis(400));
        let bounds = |d: Duration, base: u64| {
            d >= Duration::from_millis(base * 3 / 4) && d < Duration::from_millis(base * 5 / 4)
        };
        for base in [100, 200, 400, 400, 400] {
            let Some(d) = b.next() else {
                panic!("the backoff never gives up")
            };
            assert!(bounds(d, base), "{d:?} not within 25 % of {base} ms");
        }
        b.reset();
        let Some(d) = b.next() else {
            panic!("the backoff never gives up")
        };
        assert!(bounds(d, 100));
    }

    #[test]
    fn an_outage_is_reported_once_and_a_later_one_again() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut o = Outage::new(Duration::from_secs(1));
        assert!(o.failed(at(0)));
        assert!(!o.failed(at(500)));
        assert!(!o.failed(at(1400)));
        assert_eq!(o.recovered(), Some((Duration::from_millis(1400), 3)));
        assert_eq!(o.recovered(), None);
        assert!(o.failed(at(2000)));
        // Silent recovery in between: a failure long after the last is a new outage.
        assert!(o.failed(at(5000)));
    }
}
