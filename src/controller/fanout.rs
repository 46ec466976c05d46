//! One stream of changes told to several controllers.
//!
//! A watch is costly at thousands of objects: the API server serializes every event once per
//! watcher, and each watcher's store holds its own copy of every object. So a scope watches
//! each kind once and tells the controllers that map its changes to their own objects
//! through a [`Fanout`]. A receiver that falls behind the channel's capacity is told that it
//! missed something ([`Heard::Missed`]) and wakes every object it could have woken: a missed
//! change costs reconciles, never a change left unseen.

use std::sync::Arc;

use futures::Stream;
use kube::runtime::reflector::ObjectRef;
use kube::Resource;
use tokio::sync::broadcast;

/// What a receiver hears.
#[derive(Debug)]
pub enum Heard<T> {
    One(Arc<T>),
    /// Changes were dropped because this receiver fell behind.
    Missed,
}

pub struct Fanout<T> {
    sender: broadcast::Sender<Arc<T>>,
}

impl<T: Send + Sync + 'static> Fanout<T> {
    pub fn new(capacity: usize) -> Self {
        Fanout {
            sender: broadcast::channel(capacity).0,
        }
    }

    pub fn tell(&self, item: Arc<T>) {
        // No receiver yet is fine: a controller that starts later lists its objects anyway.
        let _ = self.sender.send(item);
    }

    pub fn hear(&self) -> impl Stream<Item = Heard<T>> + Send + 'static {
        let receiver = self.sender.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            match receiver.recv().await {
                Ok(item) => Some((Heard::One(item), receiver)),
                Err(broadcast::error::RecvError::Lagged(_)) => Some((Heard::Missed, receiver)),
                Err(broadcast::error::RecvError::Closed) => None,
            }
        })
    }

    /// The objects each change concerns, by `concerned`; `all` when changes were missed.
    pub fn wakes<K>(
        &self,
        concerned: impl Fn(&T) -> Vec<ObjectRef<K>> + Send + 'static,
        all: impl Fn() -> Vec<ObjectRef<K>> + Send + 'static,
    ) -> impl Stream<Item = ObjectRef<K>> + Send + 'static
    where
        K: Resource<DynamicType = ()> + 'static,
    {
        use futures::StreamExt;
        self.hear().flat_map(move |heard| {
            let woken = match heard {
                Heard::One(item) => concerned(&item),
                Heard::Missed => all(),
            };
            futures::stream::iter(woken)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn a_receiver_that_falls_behind_is_told_it_missed_changes() {
        let fanout = Fanout::<u32>::new(2);
        let mut heard = Box::pin(fanout.hear());
        for n in 0..5 {
            fanout.tell(Arc::new(n));
        }
        assert!(matches!(heard.next().await, Some(Heard::Missed)));
        let next = heard.next().await;
        assert!(matches!(next, Some(Heard::One(n)) if *n == 3));
    }
}
