//! The LibreChat half: LibreChat's collections, key formats and hashing, and nothing of
//! Kubernetes. Every byte written here is described in LibreChat's data contract
//! (`docs/librechat-contract.md` summarises the parts we rely on).

pub mod access;
pub mod balance;
pub mod bans;
pub mod batch;
pub mod cache;
pub mod cascade;
pub mod changes;
pub mod connect;
pub mod creds;
pub mod deadline;
pub mod deletions;
pub mod edges;
pub mod eks;
pub mod error;
pub mod hash_pool;
pub mod identity;
pub mod indexes;
pub mod invites;
pub mod names;
pub mod one_shot;
pub mod owned;
pub mod ownership;
pub mod password;
pub mod permissions;
pub mod plugins;
pub mod refill;
pub mod role_check;
pub mod sessions;
pub mod stats;
pub mod terms;
pub mod traces;
pub mod users;
pub mod verification;
pub mod warm;

pub use connect::{connect_mongo, connect_redis, ConnectError};
pub use error::StoreError;
pub use password::Hasher;

use std::sync::Arc;

use mongodb::bson::Document;

use deadline::MongoCall;
use mongodb::{Collection, Database};

/// LibreChat's collection names (mongoose's pluralised model names).
pub mod collections {
    pub const USERS: &str = "users";
    pub const SESSIONS: &str = "sessions";
    /// v0.8.8's OpenID refresh bridges (`userId` as a String): a refresh token rotated by a
    /// concurrent refresh, handed to the late request that still holds the old one.
    pub const REFRESH_TOKEN_BRIDGES: &str = "refreshtokenbridges";
    pub const TOKENS: &str = "tokens";
    pub const LOGS: &str = "logs";
    pub const GROUPS: &str = "groups";
    /// The operator's own record of which object owns which account. LibreChat never reads it.
    pub const OWNERS: &str = "librechat_operator_owners";
    /// The operator's record of recent account deletions (the deletion guard).
    pub const DELETIONS: &str = "librechat_operator_deletions";
}

/// One LibreChat deployment's stores: its MongoDB database and, optionally, its Redis.
#[derive(Clone)]
pub struct Store {
    db: Database,
    redis: Option<cache::RedisCache>,
    /// Why a declared Redis is not connected; cache operations then fail instead of passing
    /// for done.
    redis_unreachable: Option<String>,
    reads: Arc<ReadsById>,
}

/// The reads every reconcile makes by `_id`, coalesced (see [`batch`]).
struct ReadsById {
    users: batch::BatchedReads,
    claims: batch::BatchedReads,
    plugin_records: batch::BatchedReads,
    /// The ownership and plugin records as first read, for each object's first reconcile.
    claims_at_start: warm::WarmRecords,
    plugin_records_at_start: warm::WarmRecords,
}

impl Store {
    pub fn new(db: Database, redis: Option<cache::RedisCache>) -> Self {
        Self::build(db, redis, warm::WarmRecords::new)
    }

    /// A store of a database another store of this process may be writing through still (the
    /// instance's URI changed while reconciles on the old one run): without the start-up pass,
    /// whose records could be older than those writes, so that an object would take its own
    /// record for missing or in an older state; every record is read from MongoDB.
    pub fn new_after_another(db: Database) -> Self {
        Self::build(db, None, warm::WarmRecords::without_pass)
    }

    fn build(
        db: Database,
        redis: Option<cache::RedisCache>,
        records_at_start: fn(Collection<Document>, &'static str) -> warm::WarmRecords,
    ) -> Self {
        let batched =
            |name: &str, operation| batch::BatchedReads::new(db.collection(name), operation);
        let reads = Arc::new(ReadsById {
            users: batched(collections::USERS, "reading a user"),
            claims: batched(collections::OWNERS, "reading ownership"),
            plugin_records: batched(plugins::PLUGIN_RECORDS, "reading the plugin record"),
            claims_at_start: records_at_start(db.collection(collections::OWNERS), "uid"),
            plugin_records_at_start: records_at_start(
                db.collection(plugins::PLUGIN_RECORDS),
                "owner",
            ),
        });
        Store {
            db,
            redis,
            redis_unreachable: None,
            reads,
        }
    }

    /// This store with another Redis: connected, or declared and not connected (`unreachable`
    /// says why, free of credentials: every cache operation then fails with it), sharing its
    /// MongoDB side: the coalesced reads and the records first read at start, whose one-answer-
    /// per-object rule holds only while one store of a database answers them (a second pass,
    /// read before an in-flight reconcile's write, would hand that object a stale record).
    pub fn with_cache(
        &self,
        redis: Option<cache::RedisCache>,
        unreachable: Option<String>,
    ) -> Self {
        Store {
            db: self.db.clone(),
            redis,
            redis_unreachable: unreachable,
            reads: self.reads.clone(),
        }
    }

    /// Whether `other` is this store's MongoDB side (the same connection, not merely an equal
    /// URI): a store rebuilt for another database is not.
    pub fn same_database(&self, other: &Store) -> bool {
        Arc::ptr_eq(&self.reads, &other.reads)
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    /// LibreChat's Redis: `None` when none is declared (its caches are per-process and
    /// nothing outside can drop them: most expire by themselves, roles only with a restart), an error when a declared one is not connected, so that a cache
    /// drop owed after a change is never counted as done without Redis.
    pub fn redis(&self) -> Result<Option<&cache::RedisCache>, StoreError> {
        match &self.redis_unreachable {
            Some(why) => Err(StoreError::Redis {
                operation: "connecting",
                message: why.clone(),
            }),
            None => Ok(self.redis.as_ref()),
        }
    }

    /// The connected Redis, if any: for reachability checks, which report a missing one
    /// themselves.
    pub fn connected_redis(&self) -> Option<&cache::RedisCache> {
        self.redis.as_ref()
    }

    /// Deletes every document of `collection` matching `filter`; returns how many went.
    pub(crate) async fn delete_many(
        &self,
        collection: &str,
        filter: Document,
    ) -> Result<u64, StoreError> {
        self.collection(collection)
            .delete_many(filter)
            .deadline("deleting user data")
            .await
            .map(|r| r.deleted_count)
    }

    /// A cheap round trip, used to report reachability.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.db
            .run_command(mongodb::bson::doc! { "ping": 1 })
            .deadline("ping")
            .await
            .map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store for a declared Redis that could not be connected: no server is contacted.
    async fn store_without_its_redis() -> Store {
        let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:9/?connectTimeoutMS=10")
            .await
            .unwrap();
        Store::new(client.database("unused"), None)
            .with_cache(None, Some("connection refused".into()))
    }

    #[tokio::test]
    async fn a_store_with_another_redis_answers_from_the_same_first_reads() {
        let store = store_without_its_redis().await;
        let again = store.with_cache(None, None);
        assert!(Arc::ptr_eq(&store.reads, &again.reads));
        assert!(again.redis().unwrap().is_none());
    }

    #[tokio::test]
    async fn a_cache_drop_without_the_declared_redis_fails_instead_of_passing_for_done() {
        let store = store_without_its_redis().await;
        let err = store.drop_role_cache("USER").await.unwrap_err();
        assert_eq!(err.label(), "redis");
        assert!(err.is_retryable());
        assert!(err.to_string().contains("connection refused"), "{err}");
        assert!(store.connected_redis().is_none());
    }

    #[tokio::test]
    async fn a_store_without_a_declared_redis_has_no_caches_to_drop() {
        let client = mongodb::Client::with_uri_str("mongodb://127.0.0.1:9/")
            .await
            .unwrap();
        let store = Store::new(client.database("unused"), None);
        assert!(store.drop_role_cache("USER").await.is_ok());
    }
}
