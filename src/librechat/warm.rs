//! The operator's own records, read in one pass when a process first needs them.
//!
//! After a restart every object takes the full path once, and each would read its ownership
//! record and its plugin record on its own: two reads per account before it reads the
//! account. Instead the first of them reads the whole record collection with one cursor, and
//! each object's first reconcile takes its record from that pass.
//!
//! Why this is safe: only the reconcile of the object a record names writes that record, and
//! an object's first reconcile takes its entry out (later ones read MongoDB), so an entry is
//! never older than the last write to it. A record of another owner is never answered from
//! here (see [`WarmRecords::take`]), and the pass is forgotten after [`WARM_FOR`]: what a
//! person or another process might change by hand is read fresh from then on.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mongodb::bson::{doc, Document, RawDocumentBuf};
use mongodb::Collection;
use tokio::sync::OnceCell;

use super::batch::{raw_documents_by_id, Id};

/// How long after its pass the records answer first reconciles.
pub const WARM_FOR: Duration = Duration::from_secs(600);

pub struct WarmRecords {
    collection: Collection<Document>,
    /// The field naming the owner's uid in a record.
    owner_field: &'static str,
    /// `None` when the pass failed: then every record is read on its own.
    pass: OnceCell<Option<Mutex<Pass>>>,
}

struct Pass {
    at: Instant,
    /// Kept raw: 10,000 of them as document trees were the largest allocation of a restarted
    /// operator (heaptrack), about five times their raw size.
    records: HashMap<Id, RawDocumentBuf>,
    /// Entries already handed out, present or absent: each is answered here once.
    taken: HashSet<Id>,
}

impl WarmRecords {
    pub fn new(collection: Collection<Document>, owner_field: &'static str) -> Self {
        WarmRecords {
            collection,
            owner_field,
            pass: OnceCell::new(),
        }
    }

    /// Records with no pass: every one is read on its own.
    pub fn without_pass(collection: Collection<Document>, owner_field: &'static str) -> Self {
        WarmRecords {
            collection,
            owner_field,
            pass: OnceCell::new_with(Some(None)),
        }
    }

    /// The record `id` of `owner_uid` as the pass read it: `Some(None)` when it had none,
    /// `None` when the pass cannot answer (read MongoDB): a second ask, another owner's
    /// record, a pass that failed or is too old.
    pub async fn take(&self, id: Id, owner_uid: &str) -> Option<Option<Document>> {
        let pass = self.pass.get_or_init(|| self.read_all()).await.as_ref()?;
        let mut pass = pass.lock().unwrap_or_else(|e| e.into_inner());
        if pass.at.elapsed() > WARM_FOR {
            pass.records = HashMap::new();
            return None;
        }
        if !pass.taken.insert(id.clone()) {
            return None;
        }
        match pass.records.remove(&id) {
            None => Some(None),
            Some(record) if record.get_str(self.owner_field).ok() == Some(owner_uid) => {
                // A record that does not convert is read from MongoDB instead.
                Some(Some(record.to_document().ok()?))
            }
            Some(_) => None,
        }
    }

    async fn read_all(&self) -> Option<Mutex<Pass>> {
        let records =
            raw_documents_by_id(&self.collection, doc! {}, "reading the operator's records")
                .await
                .inspect_err(|e| tracing::info!(error = %e, "records are read one by one"))
                .ok()?;
        Some(Mutex::new(Pass {
            at: Instant::now(),
            records,
            taken: HashSet::new(),
        }))
    }
}
