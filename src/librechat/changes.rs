//! What LibreChat itself does to accounts (a registration, an edit, a self-deletion), followed
//! through a MongoDB change stream where the server offers one (a replica set), so the operator
//! reacts in moments instead of at the next resync. A standalone server has none: the resync
//! remains the way drift is found there.

use std::time::Duration;

use mongodb::bson::oid::ObjectId;
use mongodb::bson::Document;
use mongodb::change_stream::event::{ChangeStreamEvent, ResumeToken};
use mongodb::change_stream::ChangeStream;
use mongodb::options::FullDocumentType;

use super::collections;
use super::deadline::{MongoCall, MONGO_DEADLINE};
use super::error::StoreError;
use super::Store;

/// How long the server holds a request for the next changes when there are none: a healthy
/// idle stream answers (empty) within this, so silence beyond it plus [`MONGO_DEADLINE`]
/// means a stalled server or a dead connection, not a quiet database.
const AWAIT_CHANGES: Duration = Duration::from_secs(5);

/// One write to LibreChat's `users` collection, as far as the operator needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountChange {
    pub user_id: ObjectId,
    /// The account's email after the write (absent for a deletion).
    pub email: Option<String>,
}

/// How far a feed got: a feed opened from here again misses nothing in between (as long as
/// the server still holds that history).
#[derive(Clone, Debug, Default)]
pub struct FeedPosition(Option<ResumeToken>);

impl FeedPosition {
    /// Whether this is a place in the history, rather than "from now on".
    pub fn is_known(&self) -> bool {
        self.0.is_some()
    }
}

/// An open change stream on `users`.
pub struct AccountFeed {
    stream: ChangeStream<ChangeStreamEvent<Document>>,
}

impl Store {
    /// Opens a change stream on `users`, from `position` (or from now). Fails when the server
    /// offers none (standalone), the user may not open one, or the position is no longer in
    /// the server's history (all three not retryable).
    pub async fn follow_accounts(
        &self,
        position: &FeedPosition,
    ) -> Result<AccountFeed, StoreError> {
        let stream = self
            .collection(collections::USERS)
            .watch()
            .full_document(FullDocumentType::UpdateLookup)
            .max_await_time(AWAIT_CHANGES)
            .resume_after(position.0.clone())
            .deadline("opening a change stream on users")
            .await?;
        Ok(AccountFeed { stream })
    }
}

impl AccountFeed {
    /// The next account change, or `None` when the server had none within its await time.
    /// An error ends the feed: the stream broke (after the driver's own resume attempt) or the
    /// server did not answer in time.
    pub async fn next(&mut self) -> Result<Option<AccountChange>, StoreError> {
        const OPERATION: &str = "reading the change stream on users";
        let event = tokio::time::timeout(AWAIT_CHANGES + MONGO_DEADLINE, self.stream.next_if_any())
            .await
            .map_err(|_| StoreError::timeout("MongoDB", OPERATION, AWAIT_CHANGES + MONGO_DEADLINE))?
            .map_err(|e| StoreError::mongo(OPERATION, e))?;
        Ok(event.and_then(|event| {
            let user_id = event.document_key?.get_object_id("_id").ok()?;
            let email = event
                .full_document
                .and_then(|d| d.get_str("email").ok().map(str::to_string));
            Some(AccountChange { user_id, email })
        }))
    }

    /// Whether the server ended the stream (the collection dropped or renamed).
    pub fn ended(&self) -> bool {
        !self.stream.is_alive()
    }

    /// Where the feed got to (after the last change read, or the server's latest point).
    pub fn position(&self) -> FeedPosition {
        FeedPosition(self.stream.resume_token())
    }
}
