//! Change feeds: one MongoDB change stream per instance (where the server offers them), whose
//! account changes wake the LibreChatUsers they concern. A woken object is reconciled like any
//! other: its ownership record, not the feed, decides what it may write.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::{Stream, StreamExt};
use tokio::sync::broadcast;

use crate::librechat::changes::AccountChange;
use crate::librechat::Store;

/// How an instance learns of LibreChat's own writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FeedMode {
    /// Opening the change stream.
    Starting,
    /// A MongoDB change stream: within moments.
    ChangeStream,
    /// The server offers no change stream (a standalone server): at the next resync.
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

/// Changes seen by every instance's feed, for the controllers of every watch scope.
pub struct Feeds {
    changes: broadcast::Sender<AccountChange>,
    modes: std::sync::Arc<Mutex<HashMap<String, FeedMode>>>,
}

impl Default for Feeds {
    fn default() -> Self {
        let (changes, _) = broadcast::channel(4096);
        Feeds {
            changes,
            modes: Default::default(),
        }
    }
}

impl Feeds {
    /// The feed of instance `key` (`namespace/name`): started when there is none, restarted
    /// after it ended. Returns how the instance is followed right now.
    pub fn ensure(&self, key: &str, store: &Store) -> FeedMode {
        let mut modes = self.modes.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mode) = modes.get(key) {
            return *mode;
        }
        modes.insert(key.to_string(), FeedMode::Starting);
        let (key, store) = (key.to_string(), store.clone());
        let (sender, modes) = (self.changes.clone(), self.modes.clone());
        tokio::spawn(async move {
            let set = |mode: Option<FeedMode>| {
                let mut m = modes.lock().unwrap_or_else(|p| p.into_inner());
                match mode {
                    Some(mode) => m.insert(key.clone(), mode),
                    None => m.remove(&key),
                };
            };
            match store.follow_accounts().await {
                Err(e) if !e.is_retryable() => {
                    tracing::info!(instance = %key, error = %e, "no change stream; following LibreChat at each resync");
                    set(Some(FeedMode::Resync));
                }
                Err(e) => {
                    tracing::warn!(instance = %key, error = %e, "could not open the change stream; retrying");
                    set(None);
                }
                Ok(stream) => {
                    set(Some(FeedMode::ChangeStream));
                    let mut stream = std::pin::pin!(stream);
                    while let Some(change) = stream.next().await {
                        let _ = sender.send(change);
                    }
                    tracing::info!(instance = %key, "the change stream ended; reopening it");
                    set(None);
                }
            }
        });
        FeedMode::Starting
    }

    /// Every account change from now on (a lagging reader skips what it missed: the resync
    /// still finds it).
    pub fn subscribe(&self) -> impl Stream<Item = AccountChange> + Send + 'static {
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
