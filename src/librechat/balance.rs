//! LibreChat's `balances` and credit `transactions` (contract-surface §3), written as
//! LibreChat's registration (`createUser`), `add-balance` (`createTransaction` →
//! `updateBalance`) and login sync (`upsertBalanceFields`) would.
//!
//! A grant is applied exactly once, across crashes, restarts and retries, with LibreChat's own
//! auto-refill fencing (`pendingRefill`), in this order:
//! 1. credit the oldest balance record in one compare-and-set that also marks it
//!    `pendingRefill: {transactionId, rawAmount}` (only when no refill is pending);
//! 2. save the transaction under that id (a duplicate key means it is saved);
//! 3. `$unset` the mark.
//!
//! So "the transaction exists" and "the mark names it" each prove the credit was made, and the
//! mark goes only once the transaction exists. A crash after 1 is finished from 2 on; LibreChat
//! itself may finish it too (its admission check settles any pending refill, saving the
//! transaction with `context: 'autoRefill'`), which credits nothing more, and whose context the
//! operator then puts back to `admin`.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::Store;

pub const BALANCES: &str = "balances";
pub const TRANSACTIONS: &str = "transactions";

/// How many compare-and-set attempts a grant makes, as LibreChat's `updateBalance`.
const ATTEMPTS: u32 = 10;

/// A balance record's refill settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refill {
    pub enabled: bool,
    pub interval_value: i64,
    pub interval_unit: String,
    pub amount: i64,
}

impl Default for Refill {
    /// The schema defaults of a record nobody configured.
    fn default() -> Self {
        Refill {
            enabled: false,
            interval_value: 30,
            interval_unit: "days".into(),
            amount: 0,
        }
    }
}

/// What LibreChat's `balance` configuration (librechat.yaml, as the instance mirrors it) gives
/// a record it creates, and what its login sync keeps writing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BalanceConfig {
    /// The credits a record LibreChat creates starts with (registration, login sync).
    pub start_balance: i64,
    /// The yaml's refill settings when it enables auto-refill: LibreChat's login sync (and
    /// every `GET /api/balance`) writes them over any per-user settings.
    pub yaml_refill: Option<Refill>,
}

impl BalanceConfig {
    /// The refill settings a record LibreChat creates has: the yaml's, else the schema's.
    pub fn registered(&self) -> Refill {
        self.yaml_refill.clone().unwrap_or_default()
    }

    /// Whether `stored` holds what LibreChat's login sync writes (the yaml enables auto-refill
    /// and the record has its settings): LibreChat's own decision, once the operator wrote.
    pub fn synced_by_librechat(&self, stored: &Refill) -> bool {
        self.yaml_refill.as_ref() == Some(stored)
    }
}

/// Per-user refill settings as declared: `None` fields are left as they are.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RefillUpdate {
    pub enabled: Option<bool>,
    pub interval_value: Option<i64>,
    pub interval_unit: Option<String>,
    pub amount: Option<i64>,
}

impl RefillUpdate {
    /// `stored` with the declared fields put in.
    pub fn merged(&self, stored: &Refill) -> Refill {
        Refill {
            enabled: self.enabled.unwrap_or(stored.enabled),
            interval_value: self.interval_value.unwrap_or(stored.interval_value),
            interval_unit: self
                .interval_unit
                .clone()
                .unwrap_or_else(|| stored.interval_unit.clone()),
            amount: self.amount.unwrap_or(stored.amount),
        }
    }

    /// Whether `stored` already has every declared field.
    pub fn matches(&self, stored: &Refill) -> bool {
        self.merged(stored) == *stored
    }
}

/// The balance record LibreChat reads for a user (its oldest).
#[derive(Clone, Debug, PartialEq)]
pub struct StoredBalance {
    pub id: ObjectId,
    /// As stored (Int32, Int64 or Double): compare-and-set filters use it unchanged.
    credits_raw: Bson,
    pub token_credits: i64,
    pub refill: Refill,
    /// The transaction a pending refill or grant names, with its amount.
    pending: Option<(ObjectId, Bson)>,
}

impl StoredBalance {
    /// The grant or refill transaction a pending mark names, if any.
    pub fn pending_transaction(&self) -> Option<ObjectId> {
        self.pending.as_ref().map(|(id, _)| *id)
    }
}

/// How one grant ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrantResult {
    /// Credited now.
    Applied,
    /// Credited before (by an earlier reconcile, perhaps one that crashed half-way): `credited`
    /// is what its mark says was credited, when the mark is still there (the grant may have
    /// been edited since; the ledger records the credit made).
    AlreadyApplied { credited: Option<i64> },
}

impl GrantResult {
    /// The credits this grant moved, given those it declares now.
    pub fn credited(&self, declared: i64) -> i64 {
        match self {
            GrantResult::AlreadyApplied {
                credited: Some(made),
            } => *made,
            _ => declared,
        }
    }
}

/// A number as LibreChat's driver stores a JavaScript number: Int32 when it fits, else Double.
pub fn js_number(v: i64) -> Bson {
    match i32::try_from(v) {
        Ok(small) => Bson::Int32(small),
        Err(_) => Bson::Double(v as f64),
    }
}

/// The balance after crediting `credits` to one stored as `raw` (read as `current`), as
/// LibreChat computes it: `max(0, current + amount)` on the number itself, so the fraction
/// LibreChat's spending leaves is kept, not rounded away.
fn credited(raw: &Bson, current: i64, credits: i64) -> Bson {
    match raw {
        // Infinity (set-balance takes any number) stays Infinity, as in JavaScript.
        Bson::Double(f) if !f.is_finite() => raw.clone(),
        Bson::Double(f) => {
            let new = (f + credits as f64).max(0.0);
            let whole = new.fract() == 0.0 && new <= f64::from(i32::MAX);
            if whole {
                Bson::Int32(new as i32)
            } else {
                Bson::Double(new)
            }
        }
        _ => js_number(current.saturating_add(credits).max(0)),
    }
}

fn number(v: Option<&Bson>) -> Option<i64> {
    match v? {
        Bson::Int32(n) => Some(i64::from(*n)),
        Bson::Int64(n) => Some(*n),
        Bson::Double(n) if n.is_finite() => Some(n.round() as i64),
        _ => None,
    }
}

fn stored_balance(d: &Document) -> Option<StoredBalance> {
    let defaults = Refill::default();
    let pending = d.get_document("pendingRefill").ok().and_then(|p| {
        let id = p.get_object_id("transactionId").ok()?;
        Some((id, p.get("rawAmount").cloned().unwrap_or(Bson::Int32(0))))
    });
    Some(StoredBalance {
        id: d.get_object_id("_id").ok()?,
        credits_raw: d.get("tokenCredits").cloned().unwrap_or(Bson::Null),
        token_credits: number(d.get("tokenCredits")).unwrap_or(0),
        refill: Refill {
            enabled: d.get_bool("autoRefillEnabled").unwrap_or(defaults.enabled),
            interval_value: number(d.get("refillIntervalValue")).unwrap_or(defaults.interval_value),
            interval_unit: d
                .get_str("refillIntervalUnit")
                .map(str::to_string)
                .unwrap_or(defaults.interval_unit),
            amount: number(d.get("refillAmount")).unwrap_or(defaults.amount),
        },
        pending,
    })
}

/// The fields of a record created with `credits` and `refill`, as mongoose's upsert with
/// schema defaults inserts them.
fn new_record(user: ObjectId, credits: i64, refill: &Refill) -> Document {
    doc! {
        "user": user,
        "tokenCredits": js_number(credits),
        "autoRefillEnabled": refill.enabled,
        "refillIntervalValue": js_number(refill.interval_value),
        "refillIntervalUnit": &refill.interval_unit,
        "refillAmount": js_number(refill.amount),
        "lastRefill": DateTime::now(),
        "__v": 0_i32,
    }
}

impl Store {
    /// The record LibreChat reads: `findOne({user}).sort({_id: 1})`.
    pub async fn find_balance(&self, user: ObjectId) -> Result<Option<StoredBalance>, StoreError> {
        let found = self
            .collection(BALANCES)
            .find_one(doc! { "user": user })
            .sort(doc! { "_id": 1 })
            .deadline("reading a balance")
            .await?;
        Ok(found.as_ref().and_then(stored_balance))
    }

    /// The record registration gives a new account (`_id` = user id); an existing record of
    /// the user (whatever its `_id`: `set-balance` or an older LibreChat made it) is left
    /// alone, so repeating it after a crash changes nothing, and no second record, older by
    /// its `_id` and so the one LibreChat reads, comes to outweigh an admin's. Returns whether
    /// it was created now.
    pub async fn ensure_balance_record(
        &self,
        user: ObjectId,
        credits: i64,
        refill: &Refill,
    ) -> Result<bool, StoreError> {
        let result = self
            .collection(BALANCES)
            .update_one(doc! { "user": user }, {
                let mut record = new_record(user, credits, refill);
                record.insert("_id", user);
                doc! { "$setOnInsert": record }
            })
            .upsert(true)
            .deadline("creating a balance")
            .await;
        match result {
            Err(e) if e.is_duplicate_key() => Ok(false),
            other => other.map(|r| r.upserted_id.is_some()),
        }
    }

    /// Which of `ids` name a saved transaction (so, an applied grant).
    pub async fn saved_transactions(&self, ids: &[ObjectId]) -> Result<Vec<ObjectId>, StoreError> {
        self.saved_matching(ids, doc! {}).await
    }

    /// Which of `ids` name a grant finished as one: saved, and not as a refill (LibreChat's
    /// admission check settles a grant cut short as `autoRefill`; [`Store::apply_grant`] then
    /// credits nothing more and records it as the grant it is). Those of `any_context` count
    /// however they were saved: ids of earlier versions, which are not applied again (a grant
    /// due again goes under its current id, where nothing would say it was credited).
    pub async fn finished_grants(
        &self,
        ids: &[ObjectId],
        any_context: &[ObjectId],
    ) -> Result<Vec<ObjectId>, StoreError> {
        let finished = doc! { "$or": [
            { "context": { "$ne": "autoRefill" } },
            { "_id": { "$in": any_context.to_vec() } },
        ] };
        self.saved_matching(ids, finished).await
    }

    async fn saved_matching(
        &self,
        ids: &[ObjectId],
        and: Document,
    ) -> Result<Vec<ObjectId>, StoreError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut filter = doc! { "_id": { "$in": ids.to_vec() } };
        filter.extend(and);
        let docs: Vec<Document> = self
            .collection(TRANSACTIONS)
            .find(filter)
            .projection(doc! { "_id": 1 })
            .drain("reading transactions")
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_object_id("_id").ok())
            .collect())
    }

    /// Applies one grant of `credits` under the transaction id `tx`, exactly once (see the
    /// module documentation). `granting` are the transaction ids of every grant being applied
    /// now: one of them found cut short is finished as the grant it is, not as a refill.
    pub async fn apply_grant(
        &self,
        user: ObjectId,
        tx: ObjectId,
        credits: i64,
        granting: &[ObjectId],
    ) -> Result<GrantResult, StoreError> {
        let result = self.credit_once(user, tx, credits, granting).await?;
        crate::fault::crash_point("after-grant-balance");
        let credited = js_number(result.credited(credits));
        self.save_transaction(tx, user, "admin", &credited).await?;
        crate::fault::crash_point("after-grant-transaction");
        self.clear_pending(user, tx).await?;
        Ok(result)
    }

    /// Step 1: the credit and its mark, or nothing if either proof of an earlier credit exists.
    async fn credit_once(
        &self,
        user: ObjectId,
        tx: ObjectId,
        credits: i64,
        granting: &[ObjectId],
    ) -> Result<GrantResult, StoreError> {
        let mut delay = Duration::from_millis(50);
        for _ in 0..ATTEMPTS {
            let Some(record) = self.find_balance(user).await? else {
                self.ensure_balance_record(user, 0, &Refill::default())
                    .await?;
                continue;
            };
            match &record.pending {
                Some((pending, amount)) if *pending == tx => {
                    let credited = number(Some(amount));
                    return Ok(GrantResult::AlreadyApplied { credited });
                }
                Some((other, amount)) => {
                    let context = match granting.contains(other) {
                        true => "admin",
                        false => "autoRefill",
                    };
                    self.settle_pending(user, record.id, (*other, amount), context)
                        .await?;
                    continue;
                }
                None => {}
            }
            // Read after the record: a grant finished meanwhile shows here.
            if !self.saved_transactions(&[tx]).await?.is_empty() {
                return Ok(GrantResult::AlreadyApplied { credited: None });
            }
            if self.compare_and_credit(&record, tx, credits).await? {
                return Ok(GrantResult::Applied);
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        Err(StoreError::Contended(
            "the balance kept changing while a grant was applied",
        ))
    }

    async fn compare_and_credit(
        &self,
        record: &StoredBalance,
        tx: ObjectId,
        credits: i64,
    ) -> Result<bool, StoreError> {
        let new = credited(&record.credits_raw, record.token_credits, credits);
        let result = self
            .collection(BALANCES)
            .update_one(
                doc! { "_id": record.id, "tokenCredits": record.credits_raw.clone(), "pendingRefill": Bson::Null },
                doc! { "$set": {
                    "tokenCredits": new,
                    "pendingRefill": { "transactionId": tx, "rawAmount": js_number(credits) },
                } },
            )
            .deadline("crediting a balance")
            .await?;
        Ok(result.modified_count == 1)
    }

    /// Finishes a credit marked but not settled: a refill LibreChat marked (`autoRefill`, as
    /// its `settleAutoRefill` does) or one of the operator's grants (`admin`).
    async fn settle_pending(
        &self,
        user: ObjectId,
        record: ObjectId,
        (tx, amount): (ObjectId, &Bson),
        context: &str,
    ) -> Result<(), StoreError> {
        self.save_transaction(tx, user, context, amount).await?;
        self.collection(BALANCES)
            .update_one(
                doc! { "_id": record, "pendingRefill.transactionId": tx },
                doc! { "$unset": { "pendingRefill": "" } },
            )
            .deadline("settling a refill")
            .await
            .map(|_| ())
    }

    /// Step 2: the credits transaction, as `createTransaction` saves it; a duplicate key means
    /// it is saved already. By LibreChat, maybe: its admission check settles the mark of a
    /// grant cut short as if it were a refill (`autoRefill`); the operator's grant id is put
    /// back as what it is (`admin`), so the ledger does not show a grant as a refill.
    async fn save_transaction(
        &self,
        tx: ObjectId,
        user: ObjectId,
        context: &str,
        amount: &Bson,
    ) -> Result<(), StoreError> {
        let now = DateTime::now();
        let document = doc! {
            "_id": tx,
            "user": user,
            "tokenType": "credits",
            "context": context,
            "rawAmount": amount.clone(),
            "rate": 1_i32,
            "tokenValue": amount.clone(),
            "createdAt": now,
            "updatedAt": now,
            "__v": 0_i32,
        };
        match self
            .collection(TRANSACTIONS)
            .insert_one(document)
            .deadline("saving a transaction")
            .await
        {
            Err(e) if e.is_duplicate_key() && context != "autoRefill" => self
                .collection(TRANSACTIONS)
                .update_one(
                    doc! { "_id": tx, "user": user, "context": "autoRefill" },
                    doc! { "$set": { "context": context } },
                )
                .deadline("correcting a transaction's context")
                .await
                .map(|_| ()),
            Err(e) if e.is_duplicate_key() => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Step 3: the mark goes (on whichever record carries it).
    async fn clear_pending(&self, user: ObjectId, tx: ObjectId) -> Result<(), StoreError> {
        self.collection(BALANCES)
            .update_many(
                doc! { "user": user, "pendingRefill.transactionId": tx },
                doc! { "$unset": { "pendingRefill": "" } },
            )
            .deadline("finishing a grant")
            .await
            .map(|_| ())
    }
}

/// What a grant id's transaction is unique within: the declaring object's namespace and
/// name, and the account. An object re-created under its name for the same account (a GitOps
/// replace, a backup restored) finds its grants applied; an account re-created after its
/// person deleted it does too, through the claim's record of the grants given.
pub fn grant_scope(namespace: &str, name: &str, account: ObjectId) -> String {
    format!("{namespace}/{name}/{}", account.to_hex())
}

/// The transaction id of a grant: the first 12 bytes of sha256(`<scope>/<grant id>`), the same
/// in every process and every reconcile. The scope is [`grant_scope`]; grants applied before
/// it were scoped by the object's uid, and still count as applied.
pub fn grant_transaction_id(scope: &str, grant_id: &str) -> ObjectId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{scope}/{grant_id}").as_bytes());
    let mut bytes = [0u8; 12];
    bytes.copy_from_slice(&digest[..12]);
    ObjectId::from_bytes(bytes)
}

#[cfg(test)]
mod tests {

    #[test]
    fn a_grant_keeps_the_fraction_librechats_spending_left() {
        assert_eq!(
            credited(&Bson::Double(100.25), 100, 50),
            Bson::Double(150.25)
        );
        assert_eq!(credited(&Bson::Double(99.5), 100, -200), Bson::Int32(0));
        assert_eq!(credited(&Bson::Double(0.5), 1, 1), Bson::Double(1.5));
        assert_eq!(credited(&Bson::Double(10.0), 10, 5), Bson::Int32(15));
        assert_eq!(credited(&Bson::Int32(10), 10, 5), Bson::Int32(15));
        assert_eq!(credited(&Bson::Null, 0, 5), Bson::Int32(5));
        let unlimited = Bson::Double(f64::INFINITY);
        assert_eq!(credited(&unlimited, 0, 5), unlimited);
    }

    use super::*;

    #[test]
    fn numbers_are_stored_as_javascript_would() {
        assert_eq!(js_number(20000), Bson::Int32(20000));
        assert_eq!(js_number(-5), Bson::Int32(-5));
        assert_eq!(js_number(5_000_000_000), Bson::Double(5e9));
    }

    #[test]
    fn grant_ids_are_stable_and_distinct() {
        let a = grant_transaction_id("uid-1", "welcome");
        assert_eq!(a, grant_transaction_id("uid-1", "welcome"));
        assert_ne!(a, grant_transaction_id("uid-1", "bonus"));
        assert_ne!(a, grant_transaction_id("uid-2", "welcome"));
    }
}
