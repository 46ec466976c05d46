//! LibreChat's refresh-token sessions. Deleting them logs the user out everywhere: the next
//! token refresh fails. LibreChat's own `reset-password` script forgets to do this.

use mongodb::bson::{doc, oid::ObjectId};

use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

impl Store {
    /// Deletes every session of the user; returns how many there were.
    pub async fn revoke_sessions(&self, user_id: ObjectId) -> Result<u64, StoreError> {
        self.collection(collections::SESSIONS)
            .delete_many(doc! { "user": user_id })
            .deadline("revoking sessions")
            .await
            .map(|r| r.deleted_count)
    }
}
