//! The operator's record of the accounts it deleted, so that a bad merge or a pruned folder
//! cannot wipe a deployment's users: deletions beyond a limit per window wait for a person.
//! LibreChat never reads this collection.
//!
//! The limit is counted per namespace of the deleting object (each GitOps folder is usually
//! one): a tenant deleting its own accounts spends its own allowance, never the
//! administrators' or another tenant's.

use std::time::Duration;

use mongodb::bson::{doc, DateTime, Document};
use mongodb::options::FindOptions;

use super::collections;
use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::Store;

/// Whether one more deletion may go ahead.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Allowance {
    /// Recorded (or recorded before, for the same object): go ahead.
    Granted,
    /// `used` deletions already happened within the window; the oldest of them leaves the
    /// window at `frees_at_ms`.
    Exhausted { used: u64, frees_at_ms: i64 },
}

/// The guard's rule for one reservation.
#[derive(Clone, Copy, Debug)]
pub struct DeletionLimit {
    /// Deletions allowed within `window`.
    pub max: u32,
    pub window: Duration,
    /// A person confirmed bulk deletions: the count is recorded but not enforced.
    pub confirmed: bool,
}

impl Store {
    /// Reserves one deletion for the object `owner_uid` of `namespace`, counted against `limit`
    /// with the other deletions of that namespace. Idempotent per object: a retry after a
    /// failed or interrupted deletion reuses its reservation. The caller serializes
    /// reservations of one database (a count and an insert are not atomic).
    pub async fn reserve_deletion(
        &self,
        owner_uid: &str,
        namespace: &str,
        email: &str,
        limit: DeletionLimit,
    ) -> Result<Allowance, StoreError> {
        let log = self.collection(collections::DELETIONS);
        if log
            .find_one(doc! { "_id": owner_uid })
            .deadline("reading the deletion record")
            .await?
            .is_some()
        {
            return Ok(Allowance::Granted);
        }
        let now = DateTime::now();
        let window_ms = i64::try_from(limit.window.as_millis()).unwrap_or(i64::MAX);
        let since = DateTime::from_millis(now.timestamp_millis().saturating_sub(window_ms));
        log.delete_many(doc! { "at": { "$lt": since } })
            .deadline("pruning the deletion record")
            .await?;
        // A record written before the count was per namespace names none: it counts against
        // every namespace until it leaves the window (the safe side).
        let of_namespace = doc! {
            "at": { "$gte": since },
            "$or": [ { "namespace": namespace }, { "namespace": { "$exists": false } } ],
        };
        let recent: Vec<Document> = log
            .find(of_namespace)
            .with_options(FindOptions::builder().sort(doc! { "at": 1 }).build())
            .drain("counting recent deletions")
            .await?;
        let used = recent.len() as u64;
        if !limit.confirmed && used >= u64::from(limit.max) {
            let oldest = recent
                .first()
                .and_then(|d| d.get_datetime("at").ok())
                .map(|t| t.timestamp_millis())
                .unwrap_or(now.timestamp_millis());
            return Ok(Allowance::Exhausted {
                used,
                frees_at_ms: oldest.saturating_add(window_ms),
            });
        }
        let record = doc! { "_id": owner_uid, "namespace": namespace, "email": email, "at": now };
        log.insert_one(record)
            .deadline("recording a deletion")
            .await?;
        Ok(Allowance::Granted)
    }
}
