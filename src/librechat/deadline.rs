//! Every MongoDB call has a deadline. A server that stops answering while its connections stay
//! open (a stalled process, a half-open TCP connection) would otherwise hang the reconcile that
//! called it, and with it one of the few reconcile slots of its kind.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Cursor;
use serde::de::DeserializeOwned;

use super::error::StoreError;

/// How long one MongoDB operation (a cursor drained to its end counts as one, see
/// [`DrainFind::drain`]) may take.
pub const MONGO_DEADLINE: Duration = Duration::from_secs(10);

/// A MongoDB driver call, run with [`MONGO_DEADLINE`] and its error turned into a
/// [`StoreError`] that names the operation and keeps whether a retry can help.
pub trait MongoCall<T>: IntoFuture<Output = Result<T, mongodb::error::Error>> + Sized {
    fn deadline(self, operation: &'static str) -> impl Future<Output = Result<T, StoreError>> + Send
    where
        Self::IntoFuture: Send,
    {
        let call = self.into_future();
        async move {
            match tokio::time::timeout(MONGO_DEADLINE, call).await {
                Ok(result) => result.map_err(|e| StoreError::mongo(operation, e)),
                Err(_) => Err(StoreError::timeout("MongoDB", operation, MONGO_DEADLINE)),
            }
        }
    }
}

impl<T, F> MongoCall<T> for F where F: IntoFuture<Output = Result<T, mongodb::error::Error>> {}

/// A find (or any call answering with a cursor), read to its end.
pub trait DrainFind<T>:
    IntoFuture<Output = Result<Cursor<T>, mongodb::error::Error>> + Sized
{
    /// Every document the call's cursor yields: the call within [`MONGO_DEADLINE`], then the
    /// whole drain within another. A bound on the whole matters to the callers that fall back
    /// when a read is slow (the start-up pass over the ownership records reads them one by
    /// one instead): a deadline per batch would let a slow server hold them for ever.
    fn drain(
        self,
        operation: &'static str,
    ) -> impl Future<Output = Result<Vec<T>, StoreError>> + Send
    where
        Self::IntoFuture: Send,
        T: DeserializeOwned + Send + Sync,
    {
        let call = self.into_future();
        async move {
            let cursor = call.deadline(operation).await?;
            cursor.try_collect().deadline(operation).await
        }
    }
}

impl<T, F> DrainFind<T> for F where F: IntoFuture<Output = Result<Cursor<T>, mongodb::error::Error>> {}
