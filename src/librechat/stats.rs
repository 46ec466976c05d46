//! The `user-stats` view of an instance, for `LibreChatInstance.status.stats`.

use mongodb::bson::{doc, DateTime};

use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub users: u64,
    pub managed_users: u64,
    pub verified_users: u64,
    pub active_bans: u64,
    pub pending_invites: u64,
}

impl Store {
    pub async fn stats(&self) -> Result<Stats, StoreError> {
        let count = |collection: &'static str, filter| async move {
            self.collection(collection)
                .count_documents(filter)
                .deadline("counting")
                .await
        };
        let now = DateTime::now();
        Ok(Stats {
            users: count(collections::USERS, doc! {}).await?,
            managed_users: count(collections::OWNERS, doc! { "userId": { "$exists": true } }).await?,
            verified_users: count(collections::USERS, doc! { "emailVerified": true }).await?,
            // A ban is in force until the envelope expiry; a permanent one has none.
            active_bans: count(
                collections::LOGS,
                doc! { "key": { "$regex": "^BANS:" }, "$or": [ { "expiresAt": null }, { "expiresAt": { "$gt": now } } ] },
            )
            .await?,
            // Invites are the tokens with an email and neither type nor identifier.
            pending_invites: count(
                collections::TOKENS,
                doc! { "type": { "$exists": false }, "identifier": { "$exists": false }, "email": { "$exists": true }, "expiresAt": { "$gt": now } },
            )
            .await?,
        })
    }
}
