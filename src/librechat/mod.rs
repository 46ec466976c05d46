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
pub mod error;
pub mod indexes;
pub mod invites;
pub mod one_shot;
pub mod owned;
pub mod ownership;
pub mod password;
pub mod permissions;
pub mod plugins;
pub mod sessions;
pub mod stats;
pub mod terms;
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
        let batched =
            |name: &str, operation| batch::BatchedReads::new(db.collection(name), operation);
        let reads = Arc::new(ReadsById {
            users: batched(collections::USERS, "reading a user"),
            claims: batched(collections::OWNERS, "reading ownership"),
            plugin_records: batched(plugins::PLUGIN_RECORDS, "reading the plugin record"),
            claims_at_start: warm::WarmRecords::new(db.collection(collections::OWNERS), "uid"),
            plugin_records_at_start: warm::WarmRecords::new(
                db.collection(plugins::PLUGIN_RECORDS),
                "owner",
            ),
        });
        Store { db, redis, reads }
    }

    pub fn database(&self) -> &Database {
        &self.db
    }

    pub fn collection(&self, name: &str) -> Collection<Document> {
        self.db.collection(name)
    }

    pub fn redis(&self) -> Option<&cache::RedisCache> {
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
