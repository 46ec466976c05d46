//! A kind's watch that wakes its controller only for what a reconcile acts on: the
//! declaration (generation), the finalizers, the deletion. A status or label written by
//! anybody (the operator's own status writes among them, or a tenant patching status in a
//! loop to keep the controller's workers busy) passes unseen; the object's other wake-ups
//! (its instance, the users it names, the resync) are as before.

use std::collections::hash_map::DefaultHasher;
use std::fmt::Debug;
use std::hash::{Hash, Hasher};

use futures::Stream;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::PredicateConfig;
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

/// What a reconcile acts on, as a hash: the uid, the generation, the finalizers, whether the
/// object is being deleted.
pub fn acted_on<K: Resource>(object: &K) -> Option<u64> {
    let meta = object.meta();
    let mut h = DefaultHasher::new();
    meta.uid.hash(&mut h);
    meta.generation.hash(&mut h);
    meta.finalizers.hash(&mut h);
    meta.deletion_timestamp.is_some().hash(&mut h);
    Some(h.finish())
}

/// The controller's trigger (objects whose [`acted_on`] changed) and its store (every change).
pub fn watch<K>(
    api: Api<K>,
) -> (
    impl Stream<Item = Result<K, watcher::Error>> + Send + 'static,
    Store<K>,
)
where
    K: Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    // No backoff of its own: the controller's trigger backoff covers the watch's errors, as
    // for a watch `Controller::new` makes.
    let trigger = watcher(api, watcher::Config::default())
        .reflect(writer)
        .applied_objects()
        .predicate_filter(acted_on, PredicateConfig::default());
    (trigger, store)
}
