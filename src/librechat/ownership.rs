//! Which Kubernetes object owns which account: recorded, never guessed.
//!
//! One document per managed email in the operator's own collection, keyed by the normalized
//! email so that the unique `_id` makes claiming atomic: of two objects racing for an email,
//! exactly one insert succeeds. The claim is written before the account is created, so a crash
//! between the two leaves a claim the same object recognises on restart, never an orphan that
//! looks unmanaged.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

/// The Kubernetes object that owns an account.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub kind: String,
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The ownership record of one email.
#[derive(Clone, Debug)]
pub struct Claim {
    pub email: String,
    pub owner: Owner,
    pub user_id: Option<ObjectId>,
    /// Whether the account `user_id` was seen to exist (not merely reserved).
    pub confirmed: bool,
}

/// The outcome of trying to claim an email.
#[derive(Debug)]
pub enum ClaimResult {
    /// The claim is ours (new, or already ours).
    Ours(Claim),
    /// Somebody else holds it.
    Taken(Claim),
}

impl Store {
    pub async fn find_claim(&self, email: &str) -> Result<Option<Claim>, StoreError> {
        let found = self
            .collection(collections::OWNERS)
            .find_one(doc! { "_id": email })
            .deadline("reading ownership")
            .await?;
        Ok(found.map(|d| claim_from_doc(email, &d)))
    }

    /// The claim naming account `user_id`, whatever its email.
    pub async fn find_claim_of_user(&self, user_id: ObjectId) -> Result<Option<Claim>, StoreError> {
        let found = self
            .collection(collections::OWNERS)
            .find_one(doc! { "userId": user_id })
            .deadline("reading ownership")
            .await?;
        Ok(found.map(|d| claim_from_doc(d.get_str("_id").unwrap_or_default(), &d)))
    }

    /// Claims `email` for `owner` unless another object holds it.
    pub async fn claim(&self, email: &str, owner: &Owner) -> Result<ClaimResult, StoreError> {
        let record = doc! {
            "_id": email,
            "kind": &owner.kind,
            "namespace": &owner.namespace,
            "name": &owner.name,
            "uid": &owner.uid,
            "claimedAt": DateTime::now(),
        };
        match self
            .collection(collections::OWNERS)
            .insert_one(record)
            .deadline("claiming ownership")
            .await
        {
            Ok(_) => Ok(ClaimResult::Ours(Claim {
                email: email.to_string(),
                owner: owner.clone(),
                user_id: None,
                confirmed: false,
            })),
            Err(err) => {
                if !err.is_duplicate_key() {
                    return Err(err);
                }
                let existing = self.find_claim(email).await?.ok_or(err)?;
                if existing.owner.uid == owner.uid {
                    Ok(ClaimResult::Ours(existing))
                } else {
                    Ok(ClaimResult::Taken(existing))
                }
            }
        }
    }

    /// Reserves the `_id` the account will be created with, unless the claim already names
    /// one; returns the claim's id either way. Reserving before inserting lets a reconcile
    /// tell its own account (this id) from one LibreChat registered meanwhile (another id).
    pub async fn reserve_user_id(
        &self,
        email: &str,
        owner_uid: &str,
        candidate: ObjectId,
    ) -> Result<ObjectId, StoreError> {
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid, "userId": { "$exists": false } },
                doc! { "$set": { "userId": candidate } },
            )
            .deadline("reserving the account id")
            .await?;
        self.find_claim(email)
            .await?
            .filter(|c| c.owner.uid == owner_uid)
            .and_then(|c| c.user_id)
            .ok_or_else(|| StoreError::Mongo {
                operation: "reserving the account id",
                message: "the ownership claim disappeared".into(),
                duplicate_key: false,
                retryable: true,
            })
    }

    /// The account this claim named existed and is gone (deleted in LibreChat): reserve a new
    /// id, so the re-created account inherits nothing of the old one's leftovers.
    pub async fn renew_reservation(
        &self,
        email: &str,
        owner_uid: &str,
        gone: ObjectId,
    ) -> Result<(), StoreError> {
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid, "userId": gone, "confirmed": true },
                doc! { "$set": { "userId": ObjectId::new(), "confirmed": false } },
            )
            .deadline("reserving the account id")
            .await
            .map(|_| ())
    }

    /// Records which account the claim resolved to.
    pub async fn record_claimed_user(
        &self,
        email: &str,
        owner_uid: &str,
        user_id: ObjectId,
    ) -> Result<(), StoreError> {
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid },
                doc! { "$set": { "userId": user_id, "confirmed": true } },
            )
            .deadline("recording ownership")
            .await
            .map(|_| ())
    }

    /// Hands the claim held by `stale_uid` to `owner` in one write, keeping the account it
    /// names. Returns whether the claim was still `stale_uid`'s to hand over.
    pub async fn take_over(
        &self,
        email: &str,
        stale_uid: &str,
        owner: &Owner,
    ) -> Result<bool, StoreError> {
        let set = doc! {
            "kind": &owner.kind,
            "namespace": &owner.namespace,
            "name": &owner.name,
            "uid": &owner.uid,
            "claimedAt": DateTime::now(),
        };
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": stale_uid },
                doc! { "$set": set },
            )
            .deadline("taking over ownership")
            .await
            .map(|r| r.matched_count == 1)
    }

    /// Gives up the claim; only the owner's own claim is removed.
    pub async fn release(&self, email: &str, owner_uid: &str) -> Result<(), StoreError> {
        self.collection(collections::OWNERS)
            .delete_one(doc! { "_id": email, "uid": owner_uid })
            .deadline("releasing ownership")
            .await
            .map(|_| ())
    }
}

fn claim_from_doc(email: &str, d: &Document) -> Claim {
    let field = |k: &str| d.get_str(k).unwrap_or_default().to_string();
    Claim {
        email: email.to_string(),
        owner: Owner {
            kind: field("kind"),
            namespace: field("namespace"),
            name: field("name"),
            uid: field("uid"),
        },
        user_id: d.get_object_id("userId").ok(),
        confirmed: d.get_bool("confirmed").unwrap_or(false),
    }
}
