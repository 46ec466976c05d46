//! The LibreChatInstances as the objects that point at them see them: one watch per scope,
//! whose store answers every dependent's "which instance is mine" (no API read per
//! reconcile), and whose changes wake the dependents in every scope, but only changes they
//! act on.
//!
//! The store is written before a change is told, so a reconcile woken by an instance change
//! always reads that change or a later one. A reconcile woken by something else may read an
//! instance a moment old; the change it missed wakes it again right after.

use std::collections::hash_map::DefaultHasher;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt, StreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;

use super::fanout::Fanout;
use super::scoped::ScopedStores;
use crate::api::common::{condition, find_condition};
use crate::api::LibreChatInstance;

/// Starts watching the instances `api` reaches, the scope `scope` (None: every namespace);
/// registers the watch's store in `cache`, which tells its changes. The returned future
/// drives the watch and never ends by itself.
pub fn watch(
    api: Api<LibreChatInstance>,
    cache: &InstanceCache,
    scope: Option<String>,
) -> (
    Store<LibreChatInstance>,
    impl std::future::Future<Output = ()>,
) {
    let (store, writer) = reflector::store();
    cache.register(scope, store.clone());
    let told = cache.changes.clone();
    let mut last_told: HashMap<ObjectRef<LibreChatInstance>, u64> = HashMap::new();
    let run = watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer)
        .for_each(move |event| {
            match event {
                Ok(watcher::Event::Apply(instance) | watcher::Event::InitApply(instance)) => {
                    let seen = read_by_dependents(&instance);
                    if last_told.insert(ObjectRef::from_obj(&instance), seen) != Some(seen) {
                        told.tell(Arc::new(instance));
                    }
                }
                // A deletion is always told, even of an instance whose last state was.
                Ok(watcher::Event::Delete(instance)) => {
                    last_told.remove(&ObjectRef::from_obj(&instance));
                    told.tell(Arc::new(instance));
                }
                Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
                Err(e) => tracing::warn!(error = %e, "watching LibreChatInstances failed; retrying (check RBAC and the API server)"),
            }
            futures::future::ready(())
        });
    (store, run)
}

/// What a dependent reads of its instance: the spec (generation), its Ready verdict, and
/// whether it is going. Status-only changes (the instance's stats, its change feed) wake
/// nobody: every refresh of the counts would otherwise reconcile every dependent.
fn read_by_dependents(instance: &LibreChatInstance) -> u64 {
    let meta = instance.meta();
    let conditions = instance.conditions();
    let ready = find_condition(conditions, condition::READY)
        .map(|c| (c.status.clone(), c.reason.clone(), c.observed_generation));
    let mut h = DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    ready.hash(&mut h);
    h.finish()
}

/// How long a lookup waits for a scope's first list of instances (only at start-up).
const FIRST_LIST: Duration = Duration::from_secs(30);

/// Every scope's store of instances, for lookups by any dependent, and their changes. With
/// `watchNamespaces` the dependents in a tenant's scope point at an instance that another
/// scope watches: every scope hears every instance's changes, each after the store that
/// answers lookups of it has them.
pub struct InstanceCache {
    stores: ScopedStores<LibreChatInstance>,
    pub changes: Arc<Fanout<LibreChatInstance>>,
}

impl Default for InstanceCache {
    fn default() -> Self {
        InstanceCache {
            stores: ScopedStores::default(),
            changes: Arc::new(Fanout::new(1024)),
        }
    }
}

impl InstanceCache {
    pub fn register(&self, scope: Option<String>, store: Store<LibreChatInstance>) {
        self.stores.register(scope, store);
    }

    /// The instance `namespace/name` as the watch of the scope covering `namespace` has it.
    pub async fn get(&self, namespace: &str, name: &str) -> Cached {
        let Some(store) = self.stores.covering(namespace) else {
            return Cached::NotCovered;
        };
        if store.wait_until_ready().now_or_never().is_none() {
            let listed = tokio::time::timeout(FIRST_LIST, store.wait_until_ready()).await;
            if !matches!(listed, Ok(Ok(()))) {
                return Cached::NotListedYet;
            }
        }
        let key = ObjectRef::new(name).within(namespace);
        Cached::Found(store.get(&key).map(|i| Box::new((*i).clone())))
    }
}

/// What the watches know of an instance.
pub enum Cached {
    /// The watch of the namespace has it (`None`: it does not exist).
    Found(Option<Box<LibreChatInstance>>),
    /// A watch covers the namespace but has not listed it yet: ask again later. (The API
    /// server is not asked instead: the operator's RBAC grants the watch, not a read by
    /// name, and its refusal would read as an instance it may not reach.)
    NotListedYet,
    /// No watch covers the namespace: only the API server can say.
    NotCovered,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::common::{merge_conditions, Cond};

    fn instance() -> LibreChatInstance {
        let mut i: LibreChatInstance = serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatInstance",
            "metadata": {"name": "lc", "namespace": "admin", "uid": "u1", "generation": 1},
            "spec": {"mongo": {"uriSecretRef": {"name": "mongo", "key": "uri"}}},
        }))
        .unwrap();
        let ready = Cond::new(condition::READY, true, "Connected", "connected");
        i.status = Some(Default::default());
        i.status.as_mut().unwrap().conditions = merge_conditions(&[], &[ready], Some(1));
        i
    }

    /// A namespace a watch covers is answered by the watch alone: while its first list is
    /// late the answer is "later", never a read by name (which the chart's RBAC refuses, and
    /// a group's or role's cleanup would take the refusal for an instance out of reach).
    #[tokio::test(start_paused = true)]
    async fn a_covered_namespace_is_never_asked_of_the_api_server() {
        let cache = InstanceCache::default();
        let (store, mut writer) = reflector::store::<LibreChatInstance>();
        cache.register(Some("admin".into()), store);
        assert!(matches!(
            cache.get("admin", "lc").await,
            Cached::NotListedYet
        ));
        assert!(matches!(
            cache.get("elsewhere", "lc").await,
            Cached::NotCovered
        ));
        writer.apply_watcher_event(&watcher::Event::Init);
        writer.apply_watcher_event(&watcher::Event::InitApply(instance()));
        writer.apply_watcher_event(&watcher::Event::InitDone);
        assert!(matches!(
            cache.get("admin", "lc").await,
            Cached::Found(Some(_))
        ));
        assert!(matches!(
            cache.get("admin", "other").await,
            Cached::Found(None)
        ));
    }

    #[test]
    fn stats_do_not_wake_dependents_but_spec_and_readiness_do() {
        let before = instance();
        let mut counted = before.clone();
        counted.status.as_mut().unwrap().stats = Some(Default::default());
        assert_eq!(read_by_dependents(&before), read_by_dependents(&counted));
        let mut edited = before.clone();
        edited.metadata.generation = Some(2);
        assert_ne!(read_by_dependents(&before), read_by_dependents(&edited));
        let mut failing = before.clone();
        failing.status.as_mut().unwrap().conditions[0].status = "False".into();
        assert_ne!(read_by_dependents(&before), read_by_dependents(&failing));
    }
}
