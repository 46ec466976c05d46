//! A kind's watch for a controller built on it (`Controller::for_stream`) that also tells of
//! each object deleted, once its store has forgotten it: a reconcile woken by a deletion then
//! reads caches that no longer hold the object (told before the store write, it could wake a
//! reconcile that still finds it, and then waits for nothing more).

use std::fmt::Debug;

use futures::{Stream, TryStreamExt};
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{watcher, WatchStreamExt};
use kube::Resource;
use serde::de::DeserializeOwned;

/// The controller's trigger (every applied object) and its store; `deleted` is called with
/// each object deleted, after the store dropped it.
pub fn watch<K>(
    api: Api<K>,
    deleted: impl Fn(&K) + Send + 'static,
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
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(object) = event {
                deleted(object);
            }
        })
        .applied_objects();
    (trigger, store)
}
