//! Reads of single documents by `_id`, coalesced into one `find` per batch.
//!
//! A resync or a restart reconciles every object of a deployment, each reading its account (and
//! on a restart its ownership record and plugin record) by `_id`. Reads asked for while a
//! batch is on its way to MongoDB wait for it to return and go together in the next, as one
//! `{_id: {$in: [...]}}`: a lone read goes at once, as before, and under load the number of
//! commands falls with the number of reconciles running at once. Each read is still a read of
//! MongoDB made after it was asked for; nothing is cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use mongodb::bson::{doc, oid::ObjectId, Bson, Document, RawBsonRef, RawDocument, RawDocumentBuf};
use mongodb::Collection;
use tokio::sync::oneshot;

use super::deadline::DrainFind;
use super::error::StoreError;

/// At most this many `_id`s per command (a bound on the command's size).
const MAX_BATCH: usize = 500;

/// An `_id` value as a map key (BSON values are not hashable).
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Id {
    Object(ObjectId),
    Text(String),
}

impl Id {
    fn to_bson(&self) -> Bson {
        match self {
            Id::Object(id) => Bson::ObjectId(*id),
            Id::Text(s) => Bson::String(s.clone()),
        }
    }

    fn of(doc: &Document) -> Option<Id> {
        match doc.get("_id")? {
            Bson::ObjectId(id) => Some(Id::Object(*id)),
            Bson::String(s) => Some(Id::Text(s.clone())),
            _ => None,
        }
    }

    fn of_raw(doc: &RawDocument) -> Option<Id> {
        match doc.get("_id").ok()?? {
            RawBsonRef::ObjectId(id) => Some(Id::Object(id)),
            RawBsonRef::String(s) => Some(Id::Text(s.to_string())),
            _ => None,
        }
    }
}

type Answer = Result<Option<Document>, StoreError>;

/// The coalesced reads of one collection.
#[derive(Clone)]
pub struct BatchedReads {
    collection: Collection<Document>,
    operation: &'static str,
    queue: Arc<Mutex<Queue>>,
}

#[derive(Default)]
struct Queue {
    waiting: Vec<(Id, oneshot::Sender<Answer>)>,
    /// Whether a task is sending batches (it stops when nothing waits).
    sending: bool,
}

impl BatchedReads {
    pub fn new(collection: Collection<Document>, operation: &'static str) -> Self {
        BatchedReads {
            collection,
            operation,
            queue: Default::default(),
        }
    }

    /// The document with `_id` `id`, read in the next batch.
    pub async fn get(&self, id: Id) -> Answer {
        let (tx, rx) = oneshot::channel();
        let start = {
            let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
            queue.waiting.push((id, tx));
            !std::mem::replace(&mut queue.sending, true)
        };
        if start {
            let me = self.clone();
            tokio::spawn(async move { me.send_batches().await });
        }
        rx.await
            .unwrap_or_else(|_| Err(StoreError::Contended("a batched read was dropped")))
    }

    async fn send_batches(&self) {
        loop {
            let batch = {
                let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                if queue.waiting.is_empty() {
                    queue.sending = false;
                    return;
                }
                let take = queue.waiting.len().min(MAX_BATCH);
                queue.waiting.drain(..take).collect::<Vec<_>>()
            };
            let ids: Vec<Id> = batch.iter().map(|(id, _)| id.clone()).collect();
            let found = self.read(&ids).await;
            for (id, reply) in batch {
                let answer = match &found {
                    Ok(docs) => Ok(docs.get(&id).cloned()),
                    Err(e) => Err(e.clone()),
                };
                let _ = reply.send(answer);
            }
        }
    }

    async fn read(&self, ids: &[Id]) -> Result<HashMap<Id, Document>, StoreError> {
        let distinct: std::collections::HashSet<&Id> = ids.iter().collect();
        let unique: Vec<Bson> = distinct.into_iter().map(Id::to_bson).collect();
        let filter = match unique.as_slice() {
            [one] => doc! { "_id": one.clone() },
            _ => doc! { "_id": { "$in": unique } },
        };
        documents_by_id(&self.collection, filter, self.operation).await
    }
}

/// Documents per reply of a cursor that may read thousands. The driver's command monitoring
/// (the store-operation metrics) copies every reply into a document tree, and without a batch
/// size a reply holds up to 16 MiB: the pass over 10,000 ownership records after a restart
/// made a 20 MiB copy at once, the operator's largest allocation at its peak (heaptrack).
const CURSOR_BATCH: u32 = 500;

/// The documents of `collection` matching `filter`, by `_id`: one cursor drained within its
/// deadline ([`DrainFind::drain`]), in replies of at most [`CURSOR_BATCH`].
pub(super) async fn documents_by_id(
    collection: &Collection<Document>,
    filter: Document,
    operation: &'static str,
) -> Result<HashMap<Id, Document>, StoreError> {
    keyed_by_id(collection, filter, operation, Id::of).await
}

/// As [`documents_by_id`], kept as raw BSON: about a fifth of the memory of a document tree,
/// for documents held a while rather than used at once.
pub(super) async fn raw_documents_by_id(
    collection: &Collection<Document>,
    filter: Document,
    operation: &'static str,
) -> Result<HashMap<Id, RawDocumentBuf>, StoreError> {
    keyed_by_id(collection, filter, operation, |d: &RawDocumentBuf| {
        Id::of_raw(d)
    })
    .await
}

async fn keyed_by_id<T>(
    collection: &Collection<Document>,
    filter: Document,
    operation: &'static str,
    id_of: impl Fn(&T) -> Option<Id>,
) -> Result<HashMap<Id, T>, StoreError>
where
    T: serde::de::DeserializeOwned + Send + Sync + Unpin,
{
    let docs: Vec<T> = collection
        .clone_with_type::<T>()
        .find(filter)
        .batch_size(CURSOR_BATCH)
        .drain(operation)
        .await?;
    Ok(docs
        .into_iter()
        .filter_map(|d| id_of(&d).map(|id| (id, d)))
        .collect())
}
