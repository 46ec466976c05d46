//! The objects of a (re)list woken most urgent first, once the list is complete.
//!
//! A watch's list (at start, after a take-over, after the watch fell too far behind) names
//! every object at once, and the controller works through them in the order they came: by
//! name. After a take-over with thousands of objects, the few that still need an account then
//! wait among the many that only need their status confirmed, and their passwords are hashed
//! one at a time as they trickle in; hashed together, the bcrypt threads compute several in
//! one pass for little more than the cost of one. Holding the list back until it is complete
//! also means no object is woken before the store holds it (a reconcile of an object the store
//! does not have yet is dropped).
//!
//! Only the objects' references are held back; each is taken from the store, as the list
//! left it, when it is passed on.

use std::collections::BTreeMap;

use futures::{stream, Stream, StreamExt};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::Resource;

/// Passes `events` on with each list's objects held back until the list is complete, then
/// woken in the order of `rank` (lowest first; the list's order among equals). The store must
/// be the one the events were reflected into upstream, so that it holds the list at its end.
pub fn urgent_first<K, S>(
    events: S,
    store: Store<K>,
    rank: fn(&K) -> u8,
) -> impl Stream<Item = Result<Event<K>, watcher::Error>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Result<Event<K>, watcher::Error>> + Send,
{
    let mut held = Held::default();
    events.flat_map(move |event| stream::iter(held.pass(event, &store, rank)))
}

/// The references of a list in progress, by rank.
struct Held<K: Resource<DynamicType = ()>> {
    by_rank: BTreeMap<u8, Vec<ObjectRef<K>>>,
}

impl<K: Resource<DynamicType = ()>> Default for Held<K> {
    fn default() -> Self {
        Held {
            by_rank: BTreeMap::new(),
        }
    }
}

type Passed<K> = Box<dyn Iterator<Item = Result<Event<K>, watcher::Error>> + Send>;

impl<K> Held<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn pass(
        &mut self,
        event: Result<Event<K>, watcher::Error>,
        store: &Store<K>,
        rank: fn(&K) -> u8,
    ) -> Passed<K> {
        match event {
            Ok(Event::Init) => {
                // A list begun again replaces the one in progress.
                self.by_rank.clear();
                Box::new(std::iter::once(Ok(Event::Init)))
            }
            Ok(Event::InitApply(obj)) => {
                let refs = self.by_rank.entry(rank(&obj)).or_default();
                refs.push(ObjectRef::from_obj(&obj));
                Box::new(std::iter::empty())
            }
            Ok(Event::InitDone) => {
                let refs = std::mem::take(&mut self.by_rank).into_values().flatten();
                let store = store.clone();
                // Taken from the store one at a time as they are passed on: an object deleted
                // since the list is gone from it, and is not woken.
                let listed = refs.filter_map(move |r| store.get(&r));
                let listed = listed.map(|obj| Ok(Event::InitApply(K::clone(&obj))));
                Box::new(listed.chain(std::iter::once(Ok(Event::InitDone))))
            }
            other => Box::new(std::iter::once(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::WatchStreamExt;

    fn object(name: &str, urgent: bool) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("team".into());
        if urgent {
            cm.metadata.labels = Some([("urgent".to_string(), "yes".to_string())].into());
        }
        cm
    }

    fn rank(cm: &ConfigMap) -> u8 {
        u8::from(
            !cm.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key("urgent")),
        )
    }

    fn names(events: Vec<Result<Event<ConfigMap>, watcher::Error>>) -> Vec<String> {
        events
            .into_iter()
            .map(|e| match e.unwrap() {
                Event::Init => "<init>".into(),
                Event::InitDone => "<done>".into(),
                Event::InitApply(o) => format!("list:{}", o.metadata.name.unwrap()),
                Event::Apply(o) => format!("apply:{}", o.metadata.name.unwrap()),
                Event::Delete(o) => format!("delete:{}", o.metadata.name.unwrap()),
            })
            .collect()
    }

    fn run(events: Vec<Event<ConfigMap>>) -> Vec<String> {
        let (store, writer) = reflector::store();
        let upstream = stream::iter(events.into_iter().map(Ok)).reflect(writer);
        names(block_on(urgent_first(upstream, store, rank).collect()))
    }

    #[test]
    fn a_list_is_woken_once_complete_the_urgent_first_in_list_order() {
        let got = run(vec![
            Event::Init,
            Event::InitApply(object("a", false)),
            Event::InitApply(object("b", true)),
            Event::InitApply(object("c", false)),
            Event::InitApply(object("d", true)),
            Event::InitDone,
            Event::Apply(object("e", false)),
        ]);
        assert_eq!(
            got,
            ["<init>", "list:b", "list:d", "list:a", "list:c", "<done>", "apply:e"]
        );
    }

    #[test]
    fn a_list_begun_again_forgets_the_unfinished_one() {
        let got = run(vec![
            Event::Init,
            Event::InitApply(object("gone", true)),
            Event::Init,
            Event::InitApply(object("a", false)),
            Event::InitDone,
        ]);
        assert_eq!(got, ["<init>", "<init>", "list:a", "<done>"]);
    }
}
