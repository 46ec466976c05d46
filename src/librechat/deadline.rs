//! Every MongoDB call has a deadline. A server that stops answering while its connections stay
//! open (a stalled process, a half-open TCP connection) would otherwise hang the reconcile that
//! called it, and with it one of the few reconcile slots of its kind.

use std::future::{Future, IntoFuture};
use std::time::Duration;

use futures::TryStreamExt;
use mongodb::Cursor;
use serde::de::DeserializeOwned;

use super::error::StoreError;

/// How long one answer of MongoDB may take: a call, or the next batch of a cursor being
/// drained (see [`DrainFind::drain`]).
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
    /// Every document the call's cursor yields. The call and each further batch must each come
    /// within [`MONGO_DEADLINE`]: a listing of every account may take longer in all, while a
    /// server that stalls in the middle of it is still noticed within the deadline.
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
            let mut cursor = call.deadline(operation).await?;
            let mut all = Vec::new();
            while let Some(document) = cursor.try_next().deadline(operation).await? {
                all.push(document);
            }
            Ok(all)
        }
    }
}

impl<T, F> DrainFind<T> for F where F: IntoFuture<Output = Result<Cursor<T>, mongodb::error::Error>> {}
