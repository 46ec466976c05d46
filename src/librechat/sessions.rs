//! LibreChat's refresh-token sessions. Deleting them logs the user out everywhere: the next
//! token refresh fails. LibreChat's own `reset-password` script forgets to do this.

use mongodb::bson::{doc, oid::ObjectId};

use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

impl Store {
    /// Deletes every session of the user, and the OpenID refresh bridges that would hand a
    /// rotated refresh token to a request holding an old one; returns how many sessions there
    /// were. Bridges first: a failure between the two leaves the sessions owed, not a bridge.
    pub async fn revoke_sessions(&self, user_id: ObjectId) -> Result<u64, StoreError> {
        self.collection(collections::REFRESH_TOKEN_BRIDGES)
            .delete_many(doc! { "userId": user_id.to_hex() })
            .deadline("revoking OpenID refresh bridges")
            .await?;
        self.collection(collections::SESSIONS)
            .delete_many(doc! { "user": user_id })
            .deadline("revoking sessions")
            .await
            .map(|r| r.deleted_count)
    }
}
