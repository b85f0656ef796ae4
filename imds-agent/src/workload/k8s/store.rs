//! The cache's state: pods by uid, a container-id index, the owner-lookup cache and the
//! pods still waiting for an owner answer. Synchronous and I/O-free; the watch and resolver
//! tasks drive it, lookups read it.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use super::meta::{
    ControllerRef, Parent, PodFacts, compose_owner, normalize_container_id, normalize_uid,
};
use super::owner::{OwnerAnswer, OwnerCache, OwnerKey};
use super::{ContainerMeta, PodMeta, WorkloadOwner};

struct PodEntry {
    meta: PodMeta,
    controller: Option<ControllerRef>,
    template_hash: Option<String>,
    /// Containers that ran in this pod before: `lastState` of a restarted container
    /// (`retired_at: None`, kept while reported), or ids the pod no longer reports at all
    /// (kept for the grace period).
    previous: Vec<Previous>,
    /// When the pod was deleted (or found missing on a re-list); purged a grace period later.
    deleted_at: Option<Instant>,
}

struct Previous {
    container: ContainerMeta,
    retired_at: Option<Instant>,
}

impl PodEntry {
    fn ids(&self) -> impl Iterator<Item = &str> {
        self.meta
            .containers
            .iter()
            .chain(self.previous.iter().map(|p| &p.container))
            .filter_map(|c| c.id.as_deref())
    }
}

pub struct Store {
    pods: HashMap<String, PodEntry>,
    /// Container id → pod uid.
    containers: HashMap<String, String>,
    /// Pods whose owner needs an answer from the API.
    pending: HashSet<String>,
    owners: OwnerCache,
    grace: Duration,
}

impl Store {
    pub fn new(owners: OwnerCache, grace: Duration) -> Self {
        Self {
            pods: HashMap::new(),
            containers: HashMap::new(),
            pending: HashSet::new(),
            owners,
            grace,
        }
    }

    /// Adds or replaces a pod. Returns whether an owner lookup is now pending.
    pub fn apply(&mut self, facts: PodFacts, now: Instant) -> bool {
        let PodFacts {
            mut meta,
            controller,
            template_hash,
            previous,
        } = facts;
        let uid = normalize_uid(&meta.uid);
        let old = self.pods.remove(&uid);

        let mut previous: Vec<Previous> = previous
            .into_iter()
            .map(|container| Previous {
                container,
                retired_at: None,
            })
            .collect();
        let mut kept: HashSet<String> = meta
            .containers
            .iter()
            .chain(previous.iter().map(|p| &p.container))
            .filter_map(|c| c.id.clone())
            .collect();
        let mut dropped = Vec::new();
        if let Some(old) = &old {
            let old_previous = old.previous.iter().map(|p| (&p.container, p.retired_at));
            let old_current = old.meta.containers.iter().map(|c| (c, None));
            for (container, retired_at) in old_current.chain(old_previous) {
                let Some(id) = container.id.as_deref() else {
                    continue;
                };
                if kept.contains(id) {
                    continue;
                }
                let retired_at = retired_at.unwrap_or(now);
                if now.saturating_duration_since(retired_at) < self.grace {
                    kept.insert(id.to_owned());
                    previous.push(Previous {
                        container: container.clone(),
                        retired_at: Some(retired_at),
                    });
                } else {
                    dropped.push(id.to_owned());
                }
            }
        }
        for id in dropped {
            self.unindex(&id, &uid);
        }
        for id in kept {
            self.containers.insert(id, uid.clone());
        }

        // An owner already resolved for the same controller stays; otherwise (new pod,
        // changed controller, or still pending) work it out from what is cached.
        let reuse = old
            .as_ref()
            .filter(|o| o.controller == controller && !self.pending.contains(&uid));
        let pending = match reuse {
            Some(old) => {
                meta.owner = old.meta.owner.clone();
                false
            }
            None => {
                let (owner, pending) = self.owner_for(
                    &meta.namespace,
                    controller.as_ref(),
                    template_hash.as_deref(),
                    now,
                );
                meta.owner = owner;
                pending
            }
        };
        if pending {
            self.pending.insert(uid.clone());
        } else {
            self.pending.remove(&uid);
        }
        self.pods.insert(
            uid,
            PodEntry {
                meta,
                controller,
                template_hash,
                previous,
                deleted_at: None,
            },
        );
        pending
    }

    /// Marks a pod deleted, with its last state. It stays answerable for the grace period.
    pub fn delete(&mut self, facts: PodFacts, now: Instant) -> bool {
        let uid = normalize_uid(&facts.meta.uid);
        let pending = self.apply(facts, now);
        if let Some(entry) = self.pods.get_mut(&uid) {
            entry.deleted_at = Some(now);
        }
        pending
    }

    /// After a re-list: pods the list no longer has were deleted while nobody watched.
    pub fn mark_missing(&mut self, listed: &HashSet<String>, now: Instant) -> usize {
        let mut missing = 0;
        for (uid, entry) in &mut self.pods {
            if entry.deleted_at.is_none() && !listed.contains(uid) {
                entry.deleted_at = Some(now);
                missing += 1;
            }
        }
        missing
    }

    /// Purges deleted pods and retired container ids older than the grace period.
    pub fn sweep(&mut self, now: Instant) {
        let grace = self.grace;
        let past = |t: Instant| now.saturating_duration_since(t) >= grace;
        let gone: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| e.deleted_at.is_some_and(past))
            .map(|(uid, _)| uid.clone())
            .collect();
        for uid in gone {
            if let Some(entry) = self.pods.remove(&uid) {
                let ids: Vec<String> = entry.ids().map(str::to_owned).collect();
                for id in ids {
                    self.unindex(&id, &uid);
                }
            }
            self.pending.remove(&uid);
        }
        let mut retired = Vec::new();
        for (uid, entry) in &mut self.pods {
            entry.previous.retain(|p| {
                let expired = p.retired_at.is_some_and(past);
                if expired && let Some(id) = &p.container.id {
                    retired.push((id.clone(), uid.clone()));
                }
                !expired
            });
        }
        for (id, uid) in retired {
            self.unindex(&id, &uid);
        }
    }

    fn unindex(&mut self, id: &str, uid: &str) {
        if self.containers.get(id).is_some_and(|u| u == uid) {
            self.containers.remove(id);
        }
    }

    /// The keys the resolver must ask the API for. Pending pods whose answer meanwhile
    /// arrived (a sibling pod's lookup) are settled here.
    pub fn pending_keys(&mut self, now: Instant) -> Vec<OwnerKey> {
        let mut keys = Vec::new();
        let mut settled = Vec::new();
        for uid in &self.pending {
            let Some(entry) = self.pods.get(uid) else {
                settled.push(uid.clone());
                continue;
            };
            let Some(key) = owner_key(&entry.meta.namespace, entry.controller.as_ref()) else {
                settled.push(uid.clone());
                continue;
            };
            if self.owners.get(&key, now).is_some_and(|c| c.fresh) {
                settled.push(uid.clone());
            } else if !keys.contains(&key) {
                keys.push(key);
            }
        }
        for uid in settled {
            self.pending.remove(&uid);
            self.refresh_owner(&uid, now);
        }
        keys
    }

    /// Records an owner answer and updates every pod it concerns.
    pub fn store_owner(&mut self, key: OwnerKey, answer: OwnerAnswer, now: Instant) {
        let affected: Vec<String> = self
            .pods
            .iter()
            .filter(|(_, e)| {
                owner_key(&e.meta.namespace, e.controller.as_ref()).as_ref() == Some(&key)
            })
            .map(|(uid, _)| uid.clone())
            .collect();
        self.owners.insert(key, answer, now);
        for uid in affected {
            self.pending.remove(&uid);
            self.refresh_owner(&uid, now);
        }
    }

    fn refresh_owner(&mut self, uid: &str, now: Instant) {
        let Some(entry) = self.pods.get(uid) else {
            return;
        };
        let (owner, _) = self.owner_for(
            &entry.meta.namespace,
            entry.controller.as_ref(),
            entry.template_hash.as_deref(),
            now,
        );
        if let Some(entry) = self.pods.get_mut(uid) {
            entry.meta.owner = owner;
        }
    }

    /// The owner as far as the cache knows it, and whether the API must be asked (no
    /// answer yet, or only an expired one, which is used meanwhile).
    fn owner_for(
        &self,
        namespace: &str,
        controller: Option<&ControllerRef>,
        template_hash: Option<&str>,
        now: Instant,
    ) -> (Option<WorkloadOwner>, bool) {
        let Some(controller) = controller else {
            return (None, false);
        };
        let Some(key) = owner_key(namespace, Some(controller)) else {
            return (
                Some(compose_owner(controller, Parent::Unknown, template_hash)),
                false,
            );
        };
        match self.owners.get(&key, now) {
            Some(cached) => {
                let parent = match cached.answer {
                    OwnerAnswer::Found(parent) => Parent::Known(parent.as_ref()),
                    OwnerAnswer::Unavailable => Parent::Unavailable,
                };
                (
                    Some(compose_owner(controller, parent, template_hash)),
                    !cached.fresh,
                )
            }
            None => (
                Some(compose_owner(controller, Parent::Unknown, template_hash)),
                true,
            ),
        }
    }

    pub fn by_uid(&self, uid: &str) -> Option<PodMeta> {
        self.pods.get(&normalize_uid(uid)).map(|e| e.meta.clone())
    }

    pub fn by_container_id(&self, id: &str) -> Option<(PodMeta, ContainerMeta)> {
        let id = normalize_container_id(id)?;
        let entry = self.pods.get(self.containers.get(&id)?)?;
        let container = entry
            .meta
            .containers
            .iter()
            .chain(entry.previous.iter().map(|p| &p.container))
            .find(|c| c.id.as_deref() == Some(id.as_str()))?;
        Some((entry.meta.clone(), container.clone()))
    }

    /// Pods known, including deleted ones still within their grace period.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    #[cfg(test)]
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }
}

fn owner_key(namespace: &str, controller: Option<&ControllerRef>) -> Option<OwnerKey> {
    let controller = controller.filter(|c| c.needs_lookup())?;
    Some(OwnerKey {
        kind: controller.kind.clone(),
        namespace: namespace.to_owned(),
        name: controller.name.clone(),
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const GRACE: Duration = Duration::from_secs(10);

    fn store() -> Store {
        Store::new(
            OwnerCache::new(16, Duration::from_secs(60), Duration::from_secs(5)),
            GRACE,
        )
    }

    fn container(name: &str, id: Option<&str>) -> ContainerMeta {
        ContainerMeta {
            name: name.into(),
            id: id.map(str::to_owned),
            runtime: id.map(|_| "containerd".to_owned()),
            image: None,
        }
    }

    fn facts(
        uid: &str,
        containers: Vec<ContainerMeta>,
        controller: Option<(&str, &str, &str)>,
    ) -> PodFacts {
        PodFacts {
            meta: PodMeta {
                uid: uid.into(),
                name: format!("pod-{uid}"),
                namespace: "ns".into(),
                node_name: Some("n".into()),
                labels: BTreeMap::new(),
                containers,
                owner: None,
                service_account: None,
            },
            controller: controller.map(|(api_version, kind, name)| ControllerRef {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
            }),
            template_hash: None,
            previous: Vec::new(),
        }
    }

    #[test]
    fn restarted_container_ids_stay_answerable_for_the_grace_period() {
        let t0 = Instant::now();
        let mut s = store();
        s.apply(facts("u", vec![container("c", Some("aa"))], None), t0);
        s.apply(
            facts("u", vec![container("c", Some("bb"))], None),
            t0 + Duration::from_secs(1),
        );
        assert_eq!(
            s.by_container_id("containerd://aa").map(|(_, c)| c.id),
            Some(Some("aa".into()))
        );
        assert!(s.by_container_id("bb").is_some());
        // A later update does not restart the old id's clock.
        s.apply(
            facts("u", vec![container("c", Some("bb"))], None),
            t0 + Duration::from_secs(5),
        );
        s.sweep(t0 + Duration::from_secs(12));
        assert!(s.by_container_id("aa").is_none());
        assert!(s.by_container_id("bb").is_some());
    }

    #[test]
    fn deleted_pods_are_purged_after_the_grace_period() {
        let t0 = Instant::now();
        let mut s = store();
        s.delete(facts("u", vec![container("c", Some("aa"))], None), t0);
        s.sweep(t0 + Duration::from_secs(9));
        assert!(s.by_uid("u").is_some());
        s.sweep(t0 + GRACE);
        assert!(s.by_uid("u").is_none());
        assert!(s.by_container_id("aa").is_none());
        assert_eq!(s.len(), 0);
    }

    #[test]
    fn relist_marks_unlisted_pods_deleted() {
        let t0 = Instant::now();
        let mut s = store();
        s.apply(facts("a", vec![], None), t0);
        s.apply(facts("b", vec![], None), t0);
        assert_eq!(s.mark_missing(&HashSet::from(["a".to_owned()]), t0), 1);
        s.sweep(t0 + GRACE);
        assert!(s.by_uid("a").is_some());
        assert!(s.by_uid("b").is_none());
    }

    #[test]
    fn one_answer_settles_every_pod_of_the_same_replica_set() {
        let t0 = Instant::now();
        let mut s = store();
        let rs = Some(("apps/v1", "ReplicaSet", "web-1"));
        assert!(s.apply(facts("a", vec![], rs), t0));
        assert!(s.apply(facts("b", vec![], rs), t0));
        assert!(!s.apply(facts("ds", vec![], Some(("apps/v1", "DaemonSet", "d"))), t0));
        let keys = s.pending_keys(t0);
        assert_eq!(keys.len(), 1);
        assert_eq!(
            s.by_uid("a").and_then(|p| p.owner).map(|o| o.kind),
            Some("ReplicaSet".into())
        );
        let deployment = ControllerRef {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        s.store_owner(keys[0].clone(), OwnerAnswer::Found(Some(deployment)), t0);
        assert_eq!(s.pending_len(), 0);
        for uid in ["a", "b"] {
            let owner = s.by_uid(uid).and_then(|p| p.owner);
            assert_eq!(owner.as_ref().map(|o| o.kind.as_str()), Some("Deployment"));
            assert_eq!(owner.and_then(|o| o.deployment).as_deref(), Some("web"));
        }
        // A new pod of that ReplicaSet is answered from the cache, no lookup.
        assert!(!s.apply(facts("c", vec![], rs), t0));
        // Once the answer expires a new pod uses it meanwhile and asks again.
        let later = t0 + Duration::from_secs(61);
        assert!(s.apply(facts("d", vec![], rs), later));
        assert_eq!(
            s.by_uid("d").and_then(|p| p.owner).map(|o| o.kind),
            Some("Deployment".into())
        );
    }
}
