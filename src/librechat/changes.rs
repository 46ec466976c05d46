//! What LibreChat itself does to accounts (a registration, an edit, a self-deletion), followed
//! through a MongoDB change stream where the server offers one (a replica set), so the operator
//! reacts in moments instead of at the next resync. A standalone server has none: the resync
//! remains the way drift is found there.

use futures::{Stream, StreamExt};
use mongodb::bson::oid::ObjectId;
use mongodb::options::FullDocumentType;

use super::collections;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::Store;

/// One write to LibreChat's `users` collection, as far as the operator needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    pub user_id: ObjectId,
    /// The account's email after the write (absent for a deletion).
    pub email: Option<String>,
}

impl Store {
    /// Opens a change stream on `users`. Fails when the server offers none (standalone) or the
    /// user may not open one; the stream ends when the server or the connection does.
    pub async fn follow_accounts(
        &self,
    ) -> Result<impl Stream<Item = AccountChange> + Send + 'static, StoreError> {
        let stream = self
            .collection(collections::USERS)
            .watch()
            .full_document(FullDocumentType::UpdateLookup)
            .deadline("opening a change stream on users")
            .await?;
        Ok(stream
            .take_while(|event| std::future::ready(event.is_ok()))
            .filter_map(|event| async move {
                let event = event.ok()?;
                let user_id = event.document_key?.get_object_id("_id").ok()?;
                let email = event
                    .full_document
                    .and_then(|d| d.get_str("email").ok().map(str::to_string));
                Some(AccountChange { user_id, email })
            }))
    }
}
