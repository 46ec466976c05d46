//! The objects of a (re)list woken in stages, most urgent first, once the list is complete.
//!
//! A watch's list (at start, after a take-over, after the watch fell too far behind) names
//! every object at once. kube-runtime's scheduler then starts them in no particular order (it
//! picks the requests it holds back from a hash set), so after a take-over with thousands of
//! objects the few that still need an account start one by one among the many that only need
//! their status confirmed, and their passwords are hashed alone as they trickle in; hashed
//! together, the bcrypt threads compute several in one pass for little more than the cost of
//! one. So the list is woken in stages by rank: a stage is passed to the controller once the
//! reconciles of the stage before it have all started (or none has started for
//! [`STALL`]: an object deleted meanwhile never starts). Live changes are passed on at once
//! all along.
//!
//! The list is released after it is complete, when the store holds it: before, an object
//! created while the watch was down was woken before the store had it, and its reconcile
//! was dropped. Only the references are held; each object is taken from the store (its newest
//! copy) as the controller takes the ones before it: copies of a whole stage made at once and
//! queued for the controller were a second copy of the list at every restart.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::channel::mpsc;
use futures::{stream, Stream, StreamExt};
use kube::runtime::reflector::store::Writer;
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use tokio::sync::Notify;

/// How long a stage may go without any of its reconciles starting before the next is
/// released anyway.
pub const STALL: Duration = Duration::from_secs(2);

/// How many released objects may wait for the controller to take them.
const RELEASED_QUEUE: usize = 64;

type Item<K> = Result<Event<K>, watcher::Error>;

/// Which reconciles of the stage being released have not started yet.
pub struct ListGate<K: Resource<DynamicType = ()>> {
    awaited: Mutex<HashSet<ObjectRef<K>>>,
    progress: Notify,
}

impl<K: Resource<DynamicType = ()>> Default for ListGate<K> {
    fn default() -> Self {
        ListGate {
            awaited: Mutex::new(HashSet::new()),
            progress: Notify::new(),
        }
    }
}

impl<K: Resource<DynamicType = ()>> ListGate<K> {
    /// Called as a reconcile of `obj` starts.
    pub fn started(&self, obj: &K) {
        if self.locked().remove(&ObjectRef::from_obj(obj)) {
            self.progress.notify_waiters();
        }
    }

    fn expect(&self, stage: &[ObjectRef<K>]) {
        let mut awaited = self.locked();
        awaited.clear();
        awaited.extend(stage.iter().cloned());
    }

    /// Returns once every awaited reconcile has started, or none has for [`STALL`].
    async fn drained(&self) {
        loop {
            let progress = self.progress.notified();
            tokio::pin!(progress);
            progress.as_mut().enable();
            if self.locked().is_empty() {
                return;
            }
            if tokio::time::timeout(STALL, progress).await.is_err() {
                self.locked().clear();
                return;
            }
        }
    }

    /// The set behind the lock; a panic while holding it left only whole entries.
    fn locked(&self) -> MutexGuard<'_, HashSet<ObjectRef<K>>> {
        self.awaited.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Reflects `events` into `writer`'s store and passes them on, but each list's objects are
/// passed on in stages of `rank` (lowest first), gated by `gate`, once the list is complete.
/// Must run inside a Tokio runtime (the stages are released by a task).
pub fn reflect_in_stages<K, S>(
    events: S,
    writer: Writer<K>,
    rank: fn(&K) -> u8,
    gate: Arc<ListGate<K>>,
) -> impl Stream<Item = Item<K>> + Send
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    S: Stream<Item = Item<K>> + Send,
{
    let store = writer.as_reader();
    let (released, stages) = mpsc::channel(RELEASED_QUEUE);
    let mut held = Held::new(store, gate, released);
    let live = events
        .reflect(writer)
        .filter_map(move |event| std::future::ready(held.pass(event, rank)));
    stream::select(live, stages)
}

/// The list in progress, and the release of the last complete one.
struct Held<K: Resource<DynamicType = ()> + 'static> {
    by_rank: BTreeMap<u8, Vec<ObjectRef<K>>>,
    store: Store<K>,
    gate: Arc<ListGate<K>>,
    released: mpsc::Sender<Item<K>>,
    releasing: Option<tokio::task::JoinHandle<()>>,
}

impl<K> Held<K>
where
    K: Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
{
    fn new(store: Store<K>, gate: Arc<ListGate<K>>, released: mpsc::Sender<Item<K>>) -> Self {
        Held {
            by_rank: BTreeMap::new(),
            store,
            gate,
            released,
            releasing: None,
        }
    }

    /// What passes on at once: everything but a list's objects.
    fn pass(&mut self, event: Item<K>, rank: fn(&K) -> u8) -> Option<Item<K>> {
        match event {
            Ok(Event::Init) => {
                // A list begun again replaces the one in progress and the one being released.
                self.by_rank.clear();
                self.stop_releasing();
                Some(Ok(Event::Init))
            }
            Ok(Event::InitApply(obj)) => {
                let refs = self.by_rank.entry(rank(&obj)).or_default();
                refs.push(ObjectRef::from_obj(&obj));
                None
            }
            Ok(Event::InitDone) => {
                let stages = std::mem::take(&mut self.by_rank).into_values().collect();
                self.releasing = Some(tokio::spawn(release(
                    stages,
                    self.store.clone(),
                    self.gate.clone(),
                    self.released.clone(),
                )));
                Some(Ok(Event::InitDone))
            }
            other => Some(other),
        }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Held<K> {
    fn stop_releasing(&mut self) {
        if let Some(task) = self.releasing.take() {
            task.abort();
        }
    }
}

impl<K: Resource<DynamicType = ()> + 'static> Drop for Held<K> {
    fn drop(&mut self) {
        self.stop_releasing();
    }
}

/// Passes on each stage's objects, then waits for their reconciles to start.
async fn release<K>(
    stages: Vec<Vec<ObjectRef<K>>>,
    store: Store<K>,
    gate: Arc<ListGate<K>>,
    mut released: mpsc::Sender<Item<K>>,
) where
    K: Resource<DynamicType = ()> + Clone,
{
    for stage in stages {
        gate.expect(&stage);
        for reference in &stage {
            // Copied from the store only once the queue has room: its newest copy, and never
            // a stage's worth of copies at once. An object deleted meanwhile is not released.
            let room = std::future::poll_fn(|cx| released.poll_ready(cx)).await;
            let Some(obj) = store.get(reference) else {
                continue;
            };
            let event = Ok(Event::InitApply(K::clone(&obj)));
            if room.is_err() || released.start_send(event).is_err() {
                return;
            }
        }
        gate.drained().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;

    fn object(name: &str, rank: u8) -> ConfigMap {
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some(name.into());
        cm.metadata.namespace = Some("team".into());
        cm.metadata.labels = Some([("rank".to_string(), rank.to_string())].into());
        cm
    }

    fn rank(cm: &ConfigMap) -> u8 {
        cm.metadata.labels.as_ref().unwrap()["rank"]
            .parse()
            .unwrap()
    }

    fn name(event: Item<ConfigMap>) -> String {
        match event.unwrap() {
            Event::Init => "<init>".into(),
            Event::InitDone => "<done>".into(),
            Event::InitApply(o) => format!("list:{}", o.metadata.name.unwrap()),
            Event::Apply(o) => format!("apply:{}", o.metadata.name.unwrap()),
            Event::Delete(o) => format!("delete:{}", o.metadata.name.unwrap()),
        }
    }

    /// The staged stream over events fed by hand, and its gate.
    #[allow(clippy::type_complexity)]
    fn staged() -> (
        mpsc::UnboundedSender<Item<ConfigMap>>,
        std::pin::Pin<Box<dyn Stream<Item = Item<ConfigMap>> + Send>>,
        Arc<ListGate<ConfigMap>>,
    ) {
        let (feed, events) = mpsc::unbounded();
        let (_, writer) = reflector::store();
        let gate = Arc::new(ListGate::default());
        let out = reflect_in_stages(events, writer, rank, gate.clone());
        (feed, Box::pin(out), gate)
    }

    async fn next_names(
        out: &mut (impl Stream<Item = Item<ConfigMap>> + Unpin),
        n: usize,
    ) -> Vec<String> {
        let mut got = Vec::new();
        for _ in 0..n {
            got.push(name(out.next().await.unwrap()));
        }
        got
    }

    /// Feeds a whole list of `objects`.
    async fn feed_list(feed: &mut mpsc::UnboundedSender<Item<ConfigMap>>, objects: &[ConfigMap]) {
        let listed = objects.iter().cloned().map(Event::InitApply);
        let list = std::iter::once(Event::Init)
            .chain(listed)
            .chain(std::iter::once(Event::InitDone));
        for e in list {
            feed.send(Ok(e)).await.unwrap();
        }
    }

    /// The next `n` passed on, in name order (live events and a stage race each other).
    async fn next_sorted(
        out: &mut (impl Stream<Item = Item<ConfigMap>> + Unpin),
        n: usize,
    ) -> Vec<String> {
        let mut got = next_names(out, n).await;
        got.sort();
        got
    }

    /// Whether `out` passes anything on within a second (well inside the stall allowance).
    async fn quiet(out: &mut (impl Stream<Item = Item<ConfigMap>> + Unpin)) -> bool {
        tokio::time::timeout(Duration::from_secs(1), out.next())
            .await
            .is_err()
    }

    #[tokio::test]
    async fn a_list_is_released_once_complete_a_stage_once_the_one_before_has_started() {
        let (mut feed, mut out, gate) = staged();
        let list = [
            Event::Init,
            Event::InitApply(object("settled", 2)),
            Event::InitApply(object("new-1", 1)),
            Event::InitApply(object("deleting", 0)),
            Event::InitApply(object("new-2", 1)),
        ];
        for e in list {
            feed.send(Ok(e)).await.unwrap();
        }
        assert_eq!(next_names(&mut out, 1).await, ["<init>"]);
        assert!(quiet(&mut out).await, "nothing of an unfinished list");
        feed.send(Ok(Event::InitDone)).await.unwrap();
        let first = next_sorted(&mut out, 2).await;
        assert_eq!(first, ["<done>", "list:deleting"]);
        assert!(quiet(&mut out).await, "the next stage waits");

        // Live changes pass at once while the list is being released.
        feed.send(Ok(Event::Apply(object("edited", 2))))
            .await
            .unwrap();
        assert_eq!(next_names(&mut out, 1).await, ["apply:edited"]);

        gate.started(&object("deleting", 0));
        assert_eq!(next_names(&mut out, 2).await, ["list:new-1", "list:new-2"]);
        gate.started(&object("new-1", 1));
        assert!(quiet(&mut out).await, "new-2 has not started");
        gate.started(&object("new-2", 1));
        assert_eq!(next_names(&mut out, 1).await, ["list:settled"]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stage_that_never_starts_holds_the_next_only_for_the_stall_allowance() {
        let (mut feed, mut out, _gate) = staged();
        feed_list(
            &mut feed,
            &[object("never-starts", 0), object("settled", 2)],
        )
        .await;
        let first = next_sorted(&mut out, 3).await;
        assert_eq!(first, ["<done>", "<init>", "list:never-starts"]);
        let began = tokio::time::Instant::now();
        assert_eq!(next_names(&mut out, 1).await, ["list:settled"]);
        assert!(began.elapsed() >= STALL);
    }

    #[tokio::test]
    async fn a_list_begun_again_replaces_the_one_being_released() {
        let (mut feed, mut out, _gate) = staged();
        feed_list(&mut feed, &[object("a", 0), object("old-settled", 2)]).await;
        let first = next_sorted(&mut out, 3).await;
        assert_eq!(first, ["<done>", "<init>", "list:a"]);
        feed_list(&mut feed, &[object("b", 2)]).await;
        let second = next_sorted(&mut out, 3).await;
        assert_eq!(second, ["<done>", "<init>", "list:b"]);
        assert!(
            quiet(&mut out).await,
            "the first list's later stage is dropped"
        );
    }
}
