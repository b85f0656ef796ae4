//! Owner lookups: the controller of a ReplicaSet (a Deployment) or of a Job (a CronJob),
//! fetched once with a metadata-only GET and cached with a TTL in a bounded map.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use kube::Api;
use kube::core::PartialObjectMeta;

use super::meta::{ControllerRef, KIND_JOB, KIND_REPLICA_SET, controller_of};

/// One object whose controller is asked for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct OwnerKey {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

/// What the API said about an object's controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OwnerAnswer {
    /// The object exists; its controller, if any.
    Found(Option<ControllerRef>),
    /// Not found, or RBAC forbids reading it.
    Unavailable,
}

/// A cached answer and whether it is still within its TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cached<'a> {
    pub answer: &'a OwnerAnswer,
    pub fresh: bool,
}

struct Entry {
    answer: OwnerAnswer,
    fetched_at: Instant,
}

/// Answers by [`OwnerKey`]. Expired answers are still served (stale) until a new one
/// replaces them, so an API outage does not forget owners; the map never holds more than
/// `capacity` answers (expired ones go first, then the oldest).
pub struct OwnerCache {
    entries: HashMap<OwnerKey, Entry>,
    capacity: usize,
    ttl: Duration,
    negative_ttl: Duration,
}

impl OwnerCache {
    pub fn new(capacity: usize, ttl: Duration, negative_ttl: Duration) -> Self {
        Self {
            entries: HashMap::new(),
            capacity: capacity.max(1),
            ttl,
            negative_ttl,
        }
    }

    pub fn get(&self, key: &OwnerKey, now: Instant) -> Option<Cached<'_>> {
        let entry = self.entries.get(key)?;
        Some(Cached {
            answer: &entry.answer,
            fresh: !self.expired(entry, now),
        })
    }

    pub fn insert(&mut self, key: OwnerKey, answer: OwnerAnswer, now: Instant) {
        if !self.entries.contains_key(&key) && self.entries.len() >= self.capacity {
            let (ttl, negative_ttl) = (self.ttl, self.negative_ttl);
            self.entries
                .retain(|_, e| !expired_with(e, now, ttl, negative_ttl));
            while self.entries.len() >= self.capacity {
                let Some(oldest) = self
                    .entries
                    .iter()
                    .min_by_key(|(_, e)| e.fetched_at)
                    .map(|(k, _)| k.clone())
                else {
                    break;
                };
                self.entries.remove(&oldest);
            }
        }
        self.entries.insert(
            key,
            Entry {
                answer,
                fetched_at: now,
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    fn expired(&self, entry: &Entry, now: Instant) -> bool {
        expired_with(entry, now, self.ttl, self.negative_ttl)
    }
}

fn expired_with(entry: &Entry, now: Instant, ttl: Duration, negative_ttl: Duration) -> bool {
    let ttl = match entry.answer {
        OwnerAnswer::Found(_) => ttl,
        OwnerAnswer::Unavailable => negative_ttl,
    };
    now.saturating_duration_since(entry.fetched_at) >= ttl
}

/// A transient owner-lookup failure: the lookup is retried later.
#[derive(Debug, thiserror::Error)]
pub enum LookupError {
    #[error("getting {kind} {namespace}/{name}: {source}")]
    Api {
        kind: String,
        namespace: String,
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("getting {kind} {namespace}/{name}: no answer within {after:?}")]
    TimedOut {
        kind: String,
        namespace: String,
        name: String,
        after: Duration,
    },
}

/// Set once the first 403 on an owner lookup has been logged.
static FORBIDDEN_LOGGED: AtomicBool = AtomicBool::new(false);

/// Asks the API for the controller of `key` (a ReplicaSet or a Job) with a metadata-only
/// GET, giving up after `timeout`. `Err` is a transient failure (network, 5xx, timeout).
pub async fn fetch(
    client: &kube::Client,
    key: &OwnerKey,
    timeout: Duration,
) -> Result<OwnerAnswer, LookupError> {
    let OwnerKey {
        kind,
        namespace,
        name,
    } = key.clone();
    match tokio::time::timeout(timeout, fetch_once(client, key)).await {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(source)) => Err(LookupError::Api {
            kind,
            namespace,
            name,
            source,
        }),
        Err(_) => Err(LookupError::TimedOut {
            kind,
            namespace,
            name,
            after: timeout,
        }),
    }
}

async fn fetch_once(client: &kube::Client, key: &OwnerKey) -> Result<OwnerAnswer, kube::Error> {
    let result = match key.kind.as_str() {
        KIND_REPLICA_SET => Api::<ReplicaSet>::namespaced(client.clone(), &key.namespace)
            .get_metadata_opt(&key.name)
            .await
            .map(|m| m.map(owner_refs)),
        KIND_JOB => Api::<Job>::namespaced(client.clone(), &key.namespace)
            .get_metadata_opt(&key.name)
            .await
            .map(|m| m.map(owner_refs)),
        _ => return Ok(OwnerAnswer::Found(None)),
    };
    match result {
        Ok(Some(controller)) => Ok(OwnerAnswer::Found(controller)),
        Ok(None) => Ok(OwnerAnswer::Unavailable),
        Err(kube::Error::Api(status)) if status.is_forbidden() => {
            if !FORBIDDEN_LOGGED.swap(true, Ordering::Relaxed) {
                tracing::warn!(
                    kind = %key.kind,
                    namespace = %key.namespace,
                    "forbidden to get {}s: grant `get` on replicasets.apps and jobs.batch to \
                     name Deployments and CronJobs; inferring from labels meanwhile",
                    key.kind.to_ascii_lowercase()
                );
            }
            Ok(OwnerAnswer::Unavailable)
        }
        Err(error) => Err(error),
    }
}

fn owner_refs<K>(meta: PartialObjectMeta<K>) -> Option<ControllerRef> {
    controller_of(meta.metadata.owner_references.as_deref())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(name: &str) -> OwnerKey {
        OwnerKey {
            kind: KIND_REPLICA_SET.into(),
            namespace: "ns".into(),
            name: name.into(),
        }
    }

    #[test]
    fn answers_expire_but_stay_served_as_stale() {
        let t0 = Instant::now();
        let mut cache = OwnerCache::new(8, Duration::from_secs(10), Duration::from_secs(1));
        cache.insert(key("a"), OwnerAnswer::Found(None), t0);
        cache.insert(key("gone"), OwnerAnswer::Unavailable, t0);
        let at = |secs| t0 + Duration::from_secs(secs);
        assert_eq!(cache.get(&key("a"), at(5)).map(|c| c.fresh), Some(true));
        assert_eq!(cache.get(&key("gone"), at(5)).map(|c| c.fresh), Some(false));
        assert_eq!(cache.get(&key("a"), at(10)).map(|c| c.fresh), Some(false));
        assert!(cache.get(&key("b"), at(0)).is_none());
    }

    #[test]
    fn capacity_drops_expired_answers_first_then_the_oldest() {
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let mut cache = OwnerCache::new(3, Duration::from_secs(100), Duration::from_secs(1));
        cache.insert(key("old"), OwnerAnswer::Found(None), at(0));
        cache.insert(key("negative"), OwnerAnswer::Unavailable, at(1));
        cache.insert(key("mid"), OwnerAnswer::Found(None), at(2));
        // "negative" has expired by t=5: it goes, the rest stay.
        cache.insert(key("new"), OwnerAnswer::Found(None), at(5));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key("negative"), at(5)).is_none());
        assert!(cache.get(&key("old"), at(5)).is_some());
        // Nothing has expired: the oldest goes.
        cache.insert(key("newer"), OwnerAnswer::Found(None), at(6));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(&key("old"), at(6)).is_none());
        assert!(cache.get(&key("mid"), at(6)).is_some());
        // Replacing an answer never evicts.
        cache.insert(key("mid"), OwnerAnswer::Unavailable, at(7));
        assert_eq!(cache.len(), 3);
    }
}
