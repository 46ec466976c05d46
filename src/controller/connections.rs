//! One pooled MongoDB client (and Redis connection) per LibreChatInstance, shared by every
//! reconciler, rebuilt when the instance's Secrets change.

use std::collections::HashMap;
use std::sync::Arc;

use kube::{Client, ResourceExt};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::database_identity::DatabaseIdentity;
use super::secrets::{read_secret_key, SecretError};
use crate::api::common::reason;
use crate::api::LibreChatInstance;
use crate::librechat::{connect_mongo, connect_redis, ConnectError, Store};
use crate::metrics::SecretUse;

/// Why an instance's stores could not be had, ready for a condition.
#[derive(Debug, Clone)]
pub struct ConnectProblem {
    /// `MongoReachable` or `RedisReachable`.
    pub condition: &'static str,
    pub reason: &'static str,
    pub message: String,
}

impl ConnectProblem {
    fn secret(condition: &'static str, e: SecretError) -> Self {
        ConnectProblem {
            condition,
            reason: e.reason(),
            message: e.to_string(),
        }
    }
    /// A MongoDB call that failed on a connection: an outage, or credentials refused.
    pub fn store(e: crate::librechat::StoreError) -> Self {
        ConnectProblem {
            condition: crate::api::common::condition::MONGO_REACHABLE,
            reason: unavailable_reason(&e),
            message: e.to_string(),
        }
    }
    fn connect(condition: &'static str, e: ConnectError) -> Self {
        let reason = match e {
            ConnectError::InvalidUri { .. } => reason::INVALID_URI,
            ConnectError::Unreachable { .. } => reason::UNREACHABLE,
            ConnectError::Refused { .. } => reason::AUTHENTICATION_FAILED,
        };
        ConnectProblem {
            condition,
            reason,
            message: e.to_string(),
        }
    }
}

/// An instance's stores. `redis` is `Err` when Redis is configured but not connected; the
/// MongoDB side works regardless.
#[derive(Clone)]
pub struct Stores {
    pub store: Store,
    pub redis_configured: bool,
    pub redis_problem: Option<ConnectProblem>,
    /// Set once LibreChat's indexes were ensured through this connection.
    pub indexes_ensured: Arc<std::sync::atomic::AtomicBool>,
    /// When the instance's stats were last counted through this connection: reachability is
    /// checked often, the counts only once per resync period.
    pub stats_taken: Arc<std::sync::Mutex<Option<std::time::Instant>>>,
    /// Serializes the deletion guard's count-and-record, so that parallel deletions cannot
    /// all slip under the limit.
    pub deletion_guard: Arc<tokio::sync::Mutex<()>>,
    /// Which MongoDB connection these stores write through: a new number whenever the
    /// instance's MongoDB URI changes (a restored or migrated database, say), so what was
    /// verified through the old one is not taken as verified in the new one.
    pub database_epoch: u64,
    /// Whether this MongoDB side reaches the database the instance's objects were written
    /// to: nothing is used through it before it does.
    pub identity: Arc<DatabaseIdentity>,
}

/// The next `database_epoch`: unique within the process.
static NEXT_DATABASE_EPOCH: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl Stores {
    /// Why cleanups that must clear LibreChat's Redis entries cannot run now: Redis is
    /// declared but unreachable (a half-done cleanup would leave cached bans and counters).
    pub async fn redis_unavailable(&self) -> Option<ConnectProblem> {
        let declared_but = |reason, why: &str| ConnectProblem {
            condition: crate::api::common::condition::REDIS_REACHABLE,
            reason,
            message: format!("Redis is declared but not reachable ({why})"),
        };
        if let Some(p) = &self.redis_problem {
            return Some(declared_but(p.reason, &p.message));
        }
        let redis = self.store.connected_redis()?;
        let failed = redis.ping().await.err()?;
        Some(declared_but(
            unavailable_reason(&failed),
            &failed.to_string(),
        ))
    }
}

/// The condition reason of a store that failed a ping: credentials it refuses need a
/// person; anything else is an outage the operator waits out.
pub fn unavailable_reason(failed: &crate::librechat::StoreError) -> &'static str {
    match failed.is_auth_failure() {
        true => reason::AUTHENTICATION_FAILED,
        false => reason::UNREACHABLE,
    }
}

struct Entry {
    fingerprint: Vec<u8>,
    /// Of the MongoDB URI alone: a store of the same database keeps its MongoDB side.
    mongo_fingerprint: Vec<u8>,
    stores: Stores,
    /// When this attempt finished: a caller that waited for it takes its result, Redis
    /// problem included, rather than trying again at once.
    connected_at: std::time::Instant,
}

#[derive(Default)]
pub struct Connections {
    entries: Mutex<HashMap<String, Entry>>,
    /// The deletion guard's lock of each database (by its URI's fingerprint), shared by every
    /// store connected to it: reconciles that connect at once (after a restart, a pruned folder
    /// deleting in parallel) must not each count under the limit with a lock of their own.
    deletion_guards: std::sync::Mutex<HashMap<Vec<u8>, Arc<tokio::sync::Mutex<()>>>>,
    /// One connection attempt at a time per instance: the reconciles that find no entry at
    /// once (after a restart) must share one store, whose first-reconcile reads of the
    /// ownership records are safe only as one pass per database (see `Store::with_cache`);
    /// several stores would each serve an object the records as they were before its writes.
    connecting: std::sync::Mutex<HashMap<String, Arc<Mutex<Option<Failed>>>>>,
}

/// The last attempt of an instance that could not reach MongoDB: the callers that waited
/// for it take its answer rather than each trying again in turn.
struct Failed {
    at: std::time::Instant,
    fingerprint: Vec<u8>,
    problem: ConnectProblem,
}

impl Connections {
    /// The stores of `instance`, reusing the pooled clients while its URIs are unchanged.
    /// The stores the instance reconciler last connected, without reading the instance's
    /// Secrets again: every user, ban and invite reconcile goes through here, and the instance
    /// reconciler (triggered by any change of those Secrets) keeps the entry current. Falls
    /// back to [`Connections::stores_for`] when there is no usable entry yet.
    pub async fn shared(
        &self,
        client: &Client,
        instance: &LibreChatInstance,
    ) -> Result<Stores, ConnectProblem> {
        self.cached_or_connected(client, instance, |s| s.redis_problem.is_none())
            .await
    }

    /// The stores the instance reconciler last connected, even when their Redis was down
    /// then: for work that needs MongoDB alone, while Redis is out. Connecting Redis again is
    /// the instance reconciler's to do (every few seconds), not every dependent's.
    pub async fn mongo_side(
        &self,
        client: &Client,
        instance: &LibreChatInstance,
    ) -> Result<Stores, ConnectProblem> {
        self.cached_or_connected(client, instance, |_| true).await
    }

    /// The cached stores of `instance` when `usable`, else newly connected ones; either only
    /// once their database is the instance's (see `database_identity`).
    async fn cached_or_connected(
        &self,
        client: &Client,
        instance: &LibreChatInstance,
        usable: fn(&Stores) -> bool,
    ) -> Result<Stores, ConnectProblem> {
        let cached = self
            .entries
            .lock()
            .await
            .get(&key_of(instance))
            .map(|e| e.stores.clone())
            .filter(usable);
        let stores = match cached {
            Some(stores) => stores,
            None => self.stores_for(client, instance).await?,
        };
        stores.identity.confirm(&stores.store, instance).await?;
        Ok(stores)
    }

    pub async fn stores_for(
        &self,
        client: &Client,
        instance: &LibreChatInstance,
    ) -> Result<Stores, ConnectProblem> {
        use crate::api::common::condition::{MONGO_REACHABLE, REDIS_REACHABLE};
        let namespace = instance.namespace().unwrap_or_default();
        let key = key_of(instance);
        let spec = &instance.spec;

        let mongo_uri = read_secret_key(
            client,
            &namespace,
            &spec.mongo.uri_secret_ref,
            SecretUse::Instance,
        )
        .await
        .map_err(|e| ConnectProblem::secret(MONGO_REACHABLE, e))?
        .value;
        let redis_ref = spec.redis.as_ref().and_then(|r| r.uri_secret_ref.as_ref());
        let redis_uri = match redis_ref {
            Some(r) => Some(
                read_secret_key(client, &namespace, r, SecretUse::Instance)
                    .await
                    .map_err(|e| ConnectProblem::secret(REDIS_REACHABLE, e)),
            ),
            None => None,
        };
        let prefix = spec.redis_key_prefix();
        let mut hasher = Sha256::new();
        hasher.update(mongo_uri.trim());
        hasher.update([0]);
        if let Some(Ok(r)) = &redis_uri {
            hasher.update(r.value.trim());
        }
        hasher.update([0]);
        hasher.update(&prefix);
        let fingerprint = hasher.finalize().to_vec();
        let mongo_fingerprint = Sha256::digest(mongo_uri.trim()).to_vec();

        // Connecting happens outside the entries' lock: one instance's slow or dead server
        // must not hold up the reconciles of every other instance; only those of this one wait.
        let asked = std::time::Instant::now();
        let flight = self.flight_of(&key);
        let mut last_failure = flight.lock().await;
        if let Some(failed) = last_failure
            .as_ref()
            .filter(|f| f.at >= asked && f.fingerprint == fingerprint)
        {
            return Err(failed.problem.clone());
        }
        let (previous, replacing) = {
            let entries = self.entries.lock().await;
            let replacing = entries.contains_key(&key);
            let previous = match entries.get(&key) {
                // A Redis that was down when we connected is retried (unless the attempt this
                // caller waited for just found it down); a connected one reconnects itself.
                Some(entry)
                    if entry.fingerprint == fingerprint
                        && (entry.stores.redis_problem.is_none()
                            || entry.connected_at >= asked) =>
                {
                    return Ok(entry.stores.clone());
                }
                // The same database (a Redis to retry, or another Redis or key prefix): one
                // MongoDB side per database (see `Store::with_cache`).
                Some(entry) if entry.mongo_fingerprint == mongo_fingerprint => {
                    Some(entry.stores.clone())
                }
                _ => None,
            };
            (previous, replacing)
        };
        let (mongo_side, indexes_ensured, stats_taken, deletion_guard, database_epoch, identity) =
            match &previous {
                // Same MongoDB URI: keep the MongoDB side (pool, reads, records).
                Some(stores) => (
                    stores.store.clone(),
                    stores.indexes_ensured.clone(),
                    stores.stats_taken.clone(),
                    stores.deletion_guard.clone(),
                    stores.database_epoch,
                    stores.identity.clone(),
                ),
                None => {
                    let (_client, db) = match connect_mongo(mongo_uri.trim()).await {
                        Ok(connected) => connected,
                        Err(e) => {
                            let problem = ConnectProblem::connect(MONGO_REACHABLE, e);
                            *last_failure = Some(Failed {
                                at: std::time::Instant::now(),
                                fingerprint,
                                problem: problem.clone(),
                            });
                            return Err(problem);
                        }
                    };
                    let store = match replacing {
                        true => Store::new_after_another(db),
                        false => Store::new(db, None),
                    };
                    (
                        store,
                        Default::default(),
                        Default::default(),
                        self.deletion_guard_of(&mongo_fingerprint),
                        NEXT_DATABASE_EPOCH.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                        Arc::new(DatabaseIdentity::new(mongo_uri.trim())),
                    )
                }
            };
        let (redis, redis_problem) = match redis_uri {
            None => (None, None),
            Some(Err(problem)) => (None, Some(problem)),
            Some(Ok(r)) => match connect_redis(r.value.trim(), &prefix).await {
                Ok(cache) => (Some(cache), None),
                Err(e) => (None, Some(ConnectProblem::connect(REDIS_REACHABLE, e))),
            },
        };
        let unreachable = redis_problem.as_ref().map(|p| p.message.clone());
        let store = mongo_side.with_cache(redis, unreachable);
        let stores = Stores {
            store,
            redis_configured: redis_ref.is_some(),
            redis_problem,
            indexes_ensured,
            stats_taken,
            deletion_guard,
            database_epoch,
            identity,
        };
        self.entries.lock().await.insert(
            key,
            Entry {
                fingerprint,
                mongo_fingerprint,
                stores: stores.clone(),
                connected_at: std::time::Instant::now(),
            },
        );
        Ok(stores)
    }

    fn deletion_guard_of(&self, mongo_fingerprint: &[u8]) -> Arc<tokio::sync::Mutex<()>> {
        shared_entry(&self.deletion_guards, mongo_fingerprint.to_vec())
    }

    fn flight_of(&self, key: &str) -> Arc<Mutex<Option<Failed>>> {
        shared_entry(&self.connecting, key.to_string())
    }

    /// Drops the pooled clients of instances for which `exists(namespace/name)` is false.
    /// Their connection locks stay (one small entry per instance name ever seen): dropping
    /// one while an attempt holds it would let a newcomer connect beside that attempt.
    pub async fn retain(&self, exists: impl Fn(&str) -> bool) {
        self.entries.lock().await.retain(|key, _| exists(key));
    }

    /// Drops the pooled clients of a deleted instance.
    pub async fn forget(&self, instance: &LibreChatInstance) {
        self.entries.lock().await.remove(&key_of(instance));
    }
}

/// The one value of `key` in `map`, made on first use and shared by every caller after.
fn shared_entry<K: std::hash::Hash + Eq, V: Default>(
    map: &std::sync::Mutex<HashMap<K, Arc<V>>>,
    key: K,
) -> Arc<V> {
    map.lock()
        .unwrap_or_else(|p| p.into_inner())
        .entry(key)
        .or_default()
        .clone()
}

/// `namespace/name`, the key of an instance's pooled clients.
fn key_of(instance: &LibreChatInstance) -> String {
    format!(
        "{}/{}",
        instance.namespace().unwrap_or_default(),
        instance.name_any()
    )
}
