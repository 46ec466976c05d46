//! Change feeds: one MongoDB change stream per instance (where the server offers them), whose
//! account changes wake the LibreChatUsers they concern. A woken object is reconciled like any
//! other: its ownership record, not the feed, decides what it may write.
//!
//! A feed follows the database the instance's connection points at now: a connection rebuilt
//! for another database (a Secret rotated to a new server) gets a new feed, and a deleted
//! instance's feed stops. A feed that breaks opens again where it stopped, so an outage or a
//! reconnect leaves nothing unseen until the next resync.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast;

use super::target;
use crate::api::common::InstanceRef;
use crate::librechat::changes::{AccountChange, AccountFeed, FeedPosition};
use crate::librechat::{Store, StoreError};

/// How an instance learns of LibreChat's own writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedMode {
    /// Opening the change stream.
    Starting,
    /// A MongoDB change stream: within moments.
    ChangeStream,
    /// The server offers no change stream (a standalone server, or a user without the
    /// `changeStream` action): at the next resync, and asked again every few minutes.
    Resync,
}

impl FeedMode {
    pub fn as_str(self) -> &'static str {
        match self {
            FeedMode::Starting => "Starting",
            FeedMode::ChangeStream => "ChangeStream",
            FeedMode::Resync => "Resync",
        }
    }
}

/// The longest wait before opening a broken feed again.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// How often a server that refused change streams is asked again: one converted to a replica
/// set, or a user granted the `changeStream` action, is followed within moments again
/// without a restart of the operator.
const ASK_AGAIN: Duration = Duration::from_secs(300);

/// A change seen by the feed of one instance (`namespace/name`): it concerns that instance's
/// objects only. Another instance on the same database has a feed of its own.
#[derive(Clone, Debug)]
pub struct InstanceChange {
    pub instance: Arc<str>,
    pub account: AccountChange,
}

impl InstanceChange {
    /// Whether the change came from the instance `reference` names, from an object in
    /// `namespace`: an account change in one instance's database never wakes the objects of
    /// another (a database a tenant's own instance follows says nothing of the others').
    pub fn is_for(&self, reference: &InstanceRef, namespace: &str) -> bool {
        let instance_namespace = target::instance_namespace(reference, namespace);
        self.instance
            .split_once('/')
            .is_some_and(|(ns, name)| ns == instance_namespace && name == reference.name)
    }
}

/// One instance's feed: the database it follows and the task following it.
struct Feed {
    mode: FeedMode,
    store: Store,
    task: tokio::task::AbortHandle,
}

type FeedTable = Arc<Mutex<HashMap<String, Feed>>>;

/// Changes seen by every instance's feed, for the controllers of every watch scope.
pub struct Feeds {
    changes: broadcast::Sender<InstanceChange>,
    feeds: FeedTable,
}

impl Default for Feeds {
    fn default() -> Self {
        let (changes, _) = broadcast::channel(4096);
        Feeds {
            changes,
            feeds: Default::default(),
        }
    }
}

impl Feeds {
    /// The feed of instance `key` (`namespace/name`) on `store`'s database: started when there
    /// is none, replaced when it follows another database. Returns how the instance is
    /// followed right now.
    pub fn ensure(&self, key: &str, store: &Store) -> FeedMode {
        let mut feeds = lock(&self.feeds);
        match feeds.get(key) {
            Some(feed) if feed.store.same_database(store) => return feed.mode,
            Some(feed) => {
                tracing::info!(instance = %key, "the instance's MongoDB connection changed; following its new database");
                feed.task.abort();
            }
            None => {}
        }
        let task = tokio::spawn(follow(
            key.to_string(),
            store.clone(),
            self.changes.clone(),
            self.feeds.clone(),
        ));
        let feed = Feed {
            mode: FeedMode::Starting,
            store: store.clone(),
            task: task.abort_handle(),
        };
        feeds.insert(key.to_string(), feed);
        FeedMode::Starting
    }

    /// Stops the feeds of instances for which `exists(namespace/name)` is false.
    pub fn retain(&self, exists: impl Fn(&str) -> bool) {
        lock(&self.feeds).retain(|key, feed| {
            let keep = exists(key);
            if !keep {
                feed.task.abort();
            }
            keep
        });
    }

    /// Stops the feed of a deleted instance.
    pub fn forget(&self, key: &str) {
        self.retain(|k| k != key);
    }

    /// Every account change from now on (a lagging reader skips what it missed: the resync
    /// still finds it).
    pub fn subscribe(&self) -> impl Stream<Item = InstanceChange> + Send + 'static {
        let receiver = self.changes.subscribe();
        futures::stream::unfold(receiver, |mut receiver| async move {
            loop {
                match receiver.recv().await {
                    Ok(change) => return Some((change, receiver)),
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
    }
}

fn mode_of(feeds: &FeedTable, key: &str) -> Option<FeedMode> {
    lock(feeds).get(key).map(|feed| feed.mode)
}

fn lock(feeds: &FeedTable) -> std::sync::MutexGuard<'_, HashMap<String, Feed>> {
    feeds.lock().unwrap_or_else(|p| p.into_inner())
}

/// Follows `store`'s accounts until aborted, opening the feed again where it stopped whenever
/// it breaks; a server that offers no change stream is asked again every [`ASK_AGAIN`].
async fn follow(
    key: String,
    store: Store,
    sender: broadcast::Sender<InstanceChange>,
    feeds: FeedTable,
) {
    // Only this feed's own entry: a replaced feed's last steps must not touch its successor.
    let set = |mode: FeedMode| {
        if let Some(feed) = lock(&feeds).get_mut(&key) {
            if feed.store.same_database(&store) {
                feed.mode = mode;
            }
        }
    };
    let mut position = FeedPosition::default();
    let mut pause = Duration::from_secs(1);
    loop {
        match open(&key, &store, &position).await {
            // Refused credentials may be fixed on the server, with the URI unchanged: retried.
            Err(e) if !e.is_retryable() && !e.is_auth_failure() => {
                if mode_of(&feeds, &key) != Some(FeedMode::Resync) {
                    tracing::info!(instance = %key, error = %e, "no change stream; following LibreChat at each resync");
                }
                set(FeedMode::Resync);
                tokio::time::sleep(ASK_AGAIN).await;
                continue;
            }
            Err(e) => {
                tracing::warn!(instance = %key, error = %e, "could not open the change stream; retrying");
                set(FeedMode::Starting);
            }
            Ok(mut feed) => {
                set(FeedMode::ChangeStream);
                let opened = tokio::time::Instant::now();
                position = pass_on(&key, &mut feed, &sender, position).await;
                set(FeedMode::Starting);
                // Only a feed that ran a while starts over at a short pause: one that breaks
                // as soon as it opens is not reopened every second for ever.
                if opened.elapsed() >= MAX_PAUSE {
                    pause = Duration::from_secs(1);
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_PAUSE);
    }
}

/// Opens the feed where it stopped. A position the server no longer holds (its history moved
/// on, or the collection was dropped) gives a feed from now: what happened in between is
/// found at the next resync.
async fn open(
    key: &str,
    store: &Store,
    position: &FeedPosition,
) -> Result<AccountFeed, StoreError> {
    match store.follow_accounts(position).await {
        Err(e) if position.is_known() && !e.is_retryable() => {
            tracing::warn!(instance = %key, error = %e, "the change stream could not resume where it stopped; following from now (the resync finds what was missed)");
            store.follow_accounts(&FeedPosition::default()).await
        }
        opened => opened,
    }
}

/// Passes the feed's changes on until it breaks or ends; returns where it got to.
async fn pass_on(
    key: &str,
    feed: &mut AccountFeed,
    sender: &broadcast::Sender<InstanceChange>,
    mut position: FeedPosition,
) -> FeedPosition {
    loop {
        let reached = feed.position();
        if reached.is_known() {
            position = reached;
        }
        if feed.ended() {
            return position;
        }
        match feed.next().await {
            Ok(Some(account)) => {
                let instance = Arc::from(key);
                let _ = sender.send(InstanceChange { instance, account });
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(instance = %key, error = %e, "the change stream broke; opening it again where it stopped");
                return position;
            }
        }
    }
}
