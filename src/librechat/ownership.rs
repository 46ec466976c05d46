//! Which Kubernetes object owns which account: recorded, never guessed.
//!
//! One document per managed email in the operator's own collection, keyed by the normalized
//! email so that the unique `_id` makes claiming atomic: of two objects racing for an email,
//! exactly one insert succeeds. The claim is written before the account is created, so a crash
//! between the two leaves a claim the same object recognises on restart, never an orphan that
//! looks unmanaged.

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};

use super::batch::Id;
use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::{collections, Store};

/// The Kubernetes object that owns an account.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
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
#[derive(Clone, Debug, Default)]
pub struct Claim {
    pub email: String,
    pub owner: Owner,
    pub user_id: Option<ObjectId>,
    /// Whether the account `user_id` was seen to exist (not merely reserved).
    pub confirmed: bool,
    /// Whether the operator created the account for this claim (as opposed to adopting one
    /// LibreChat or a person made). Records without the field count as adopted: the safe side.
    pub created: bool,
    /// Security follow-ups promised by a write and not yet done (see [`FollowUp`]).
    pub follow_ups: Vec<FollowUp>,
    /// A custom role written to the account and not yet checked (see `librechat::role_check`).
    pub role_check: Option<super::role_check::RoleCheck>,
    /// The trigger value each one-shot action was last applied for.
    pub actions: super::one_shot::AppliedActions,
    /// The ids of the credit grants given under this claim, to whichever account it named:
    /// LibreChat deletes an account's transactions with the account, so a person who deletes
    /// their own account (which the declaration then re-creates) does not get them again.
    pub grants_given: Vec<String>,
    /// The auto-refill settings the object wrote to the account's balance, and what they
    /// replaced (see `librechat::refill`).
    pub refill: Option<super::refill::ClaimedRefill>,
    /// Whether the object's deletion of the account began (its sign-in fenced, its data going):
    /// from then on it finishes, whatever the policy says since.
    pub deletion_started: bool,
    /// Whether that deletion takes the account's transactions too (`deleteTransactions`, as
    /// it was when the deletion began: fixed from then on, whatever the spec says since).
    pub deletion_takes_transactions: bool,
    /// Whether the object declared that its deletion deletes the account, as of its last
    /// reconcile while its namespace was admitted (`None`: not recorded, by an earlier build).
    /// A namespace taken out since writes nothing new: a policy switched later is not it.
    pub delete_declared: Option<bool>,
}

impl Claim {
    /// Whether the operator made the account the claim names: as recorded, or reserved and
    /// not confirmed yet (a crash or a failed call between the insert and the record). A
    /// reserved id is a fresh one, so only the operator's own insert can have used it.
    pub fn made_its_account(&self) -> bool {
        self.created || (self.user_id.is_some() && !self.confirmed)
    }
}

/// Work that must follow a write to an account, recorded before the write so that a crash or
/// a failed call between the two cannot skip it: the next reconcile finds it and finishes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FollowUp {
    /// The password changed: every session of the account must end.
    RevokeSessions,
    /// The role (or another cached field) changed: LibreChat's Redis caches of the user go.
    DropCaches,
}

impl FollowUp {
    fn as_str(self) -> &'static str {
        match self {
            FollowUp::RevokeSessions => "revokeSessions",
            FollowUp::DropCaches => "dropCaches",
        }
    }
    fn parse(text: &str) -> Option<Self> {
        match text {
            "revokeSessions" => Some(FollowUp::RevokeSessions),
            "dropCaches" => Some(FollowUp::DropCaches),
            _ => None,
        }
    }
}

/// What settling a refused object did to its account.
#[derive(Debug, Default)]
pub struct RefusalSettled {
    /// The account whose balance record had the object's auto-refill put back, if one did.
    pub refill_withdrawn_from: Option<ObjectId>,
    /// Whether the account moved out of a role whose deletion raced its write.
    pub left_role: bool,
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
        let found = self.reads.claims.get(Id::Text(email.to_string())).await?;
        Ok(found.map(|d| claim_from_doc(email, &d)))
    }

    /// The claim of `email` as the object with uid `owner_uid` reconciles it: its first
    /// reconcile in this process takes the record from the start-up pass (see [`super::warm`]).
    pub async fn find_own_claim(
        &self,
        email: &str,
        owner_uid: &str,
    ) -> Result<Option<Claim>, StoreError> {
        let id = Id::Text(email.to_string());
        match self.reads.claims_at_start.take(id, owner_uid).await {
            Some(found) => Ok(found.map(|d| claim_from_doc(email, &d))),
            None => self.find_claim(email).await,
        }
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

    /// Every claim naming the account `user_id`: one, unless its email was changed outside the
    /// operator and another object declared the new one (see the adoption's check).
    pub async fn find_claims_of_user(&self, user_id: ObjectId) -> Result<Vec<Claim>, StoreError> {
        let docs: Vec<Document> = self
            .collection(collections::OWNERS)
            .find(doc! { "userId": user_id })
            .drain("reading ownership")
            .await?;
        Ok(docs
            .iter()
            .map(|d| claim_from_doc(d.get_str("_id").unwrap_or_default(), d))
            .collect())
    }

    /// The claim held by the object with uid `owner_uid` (an object owns at most one email).
    pub async fn find_claim_of_owner(&self, owner_uid: &str) -> Result<Option<Claim>, StoreError> {
        let found = self
            .collection(collections::OWNERS)
            .find_one(doc! { "uid": owner_uid })
            .deadline("reading ownership")
            .await?;
        Ok(found.map(|d| claim_from_doc(d.get_str("_id").unwrap_or_default(), &d)))
    }

    /// Claims `email` for `owner` unless another object holds it.
    /// `delete_declared`: see [`Claim::delete_declared`].
    pub async fn claim(
        &self,
        email: &str,
        owner: &Owner,
        delete_declared: bool,
    ) -> Result<ClaimResult, StoreError> {
        let record = doc! {
            "_id": email,
            "kind": &owner.kind,
            "namespace": &owner.namespace,
            "name": &owner.name,
            "uid": &owner.uid,
            "claimedAt": DateTime::now(),
            "deleteDeclared": delete_declared,
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
                delete_declared: Some(delete_declared),
                ..Claim::default()
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
                advice: crate::librechat::error::MongoAdvice::Wait,
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
                // What the old account's refill replaced is no account's now, and the link
                // issued to verify it went with it (LibreChat deletes an account's tokens):
                // the new account gets its own.
                doc! { "$set": { "userId": ObjectId::new(), "confirmed": false },
                "$unset": { "refill": "", "actions.verification": "" } },
            )
            .deadline("reserving the account id")
            .await
            .map(|_| ())
    }

    /// Records which account the claim resolved to, and whether the operator created it.
    pub async fn record_claimed_user(
        &self,
        email: &str,
        owner_uid: &str,
        user_id: ObjectId,
        created: bool,
    ) -> Result<(), StoreError> {
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid },
                doc! { "$set": { "userId": user_id, "confirmed": true, "created": created } },
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

    /// Records that `follow_up` is owed, before the write that makes it necessary.
    pub async fn promise(
        &self,
        email: &str,
        owner_uid: &str,
        follow_up: FollowUp,
    ) -> Result<(), StoreError> {
        self.note_follow_up(email, owner_uid, "$addToSet", follow_up)
            .await
    }

    /// Does what the claim still owes the account `stored` (the claim's), each recorded as
    /// done once done: all are idempotent, so a repeat after a crash does no harm. Sessions
    /// are ended first, then a role write is checked (see `librechat::role_check`), then the
    /// caches dropped whatever became of the others, and the other way round: a Redis failing
    /// the drop must not keep sessions alive. Returns whether the account moved out of a role
    /// whose deletion raced its write, or the first failure.
    pub async fn finish_follow_ups(
        &self,
        claim: &Claim,
        stored: &super::users::StoredUser,
    ) -> Result<bool, StoreError> {
        let revoked = self.finish_owed_revocation(claim, stored).await;
        let left = self.finish_role_check(claim, stored).await;
        // A move drops the caches itself.
        let owes_drop = claim.follow_ups.contains(&FollowUp::DropCaches);
        let dropped = match owes_drop && !matches!(left, Ok(true)) {
            true => match self.drop_user_caches(stored).await {
                Ok(()) => {
                    self.fulfilled(&claim.email, &claim.owner.uid, FollowUp::DropCaches)
                        .await
                }
                Err(e) => Err(e),
            },
            false => Ok(()),
        };
        revoked.and(dropped).and(left)
    }

    /// Ends the sessions the claim still owes ending, if it does: MongoDB alone, so also while
    /// Redis is out and nothing else may be written to the account.
    pub async fn finish_owed_revocation(
        &self,
        claim: &Claim,
        stored: &super::users::StoredUser,
    ) -> Result<(), StoreError> {
        if !claim.follow_ups.contains(&FollowUp::RevokeSessions) {
            return Ok(());
        }
        self.revoke_sessions(stored.id).await?;
        self.fulfilled(&claim.email, &claim.owner.uid, FollowUp::RevokeSessions)
            .await
    }

    /// Does what the claim of the object `owner_uid` still owes its account, if it owes
    /// anything and the account exists: for an object refused before it reaches its account
    /// (an invalid spec, a policy that no longer admits it), which must not leave sessions a
    /// password change ended alive, or caches a role change made stale.
    pub async fn finish_owed_by(&self, owner_uid: &str) -> Result<(), StoreError> {
        match self.find_claim_of_owner(owner_uid).await? {
            Some(claim) => self.finish_owed(&claim).await.map(|_| ()),
            None => Ok(()),
        }
    }

    /// What [`Store::finish_owed_by`] does, and with `withdraw_refill` (the object may no
    /// longer declare auto-refill) the settings it wrote put back.
    pub async fn settle_refused(
        &self,
        owner_uid: &str,
        withdraw_refill: bool,
    ) -> Result<RefusalSettled, StoreError> {
        let Some(claim) = self.find_claim_of_owner(owner_uid).await? else {
            return Ok(RefusalSettled::default());
        };
        let left_role = self.finish_owed(&claim).await?;
        let withdrawn = withdraw_refill && self.withdraw_refill(&claim).await?;
        Ok(RefusalSettled {
            refill_withdrawn_from: claim.user_id.filter(|_| withdrawn),
            left_role,
        })
    }

    /// Does what `claim` still owes its account, if anything and the account exists. Returns
    /// whether the account moved out of a role whose deletion raced its write.
    pub async fn finish_owed(&self, claim: &Claim) -> Result<bool, StoreError> {
        let owes = !claim.follow_ups.is_empty() || claim.role_check.is_some();
        let (true, Some(id)) = (owes, claim.user_id) else {
            return Ok(false);
        };
        match self.find_user_by_id(id).await? {
            Some(stored) => self.finish_follow_ups(claim, &stored).await,
            None => Ok(false),
        }
    }

    /// Records that `follow_up` was done.
    pub async fn fulfilled(
        &self,
        email: &str,
        owner_uid: &str,
        follow_up: FollowUp,
    ) -> Result<(), StoreError> {
        self.note_follow_up(email, owner_uid, "$pull", follow_up)
            .await
    }

    async fn note_follow_up(
        &self,
        email: &str,
        owner_uid: &str,
        operator: &str,
        follow_up: FollowUp,
    ) -> Result<(), StoreError> {
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid },
                doc! { operator: { "followUps": follow_up.as_str() } },
            )
            .deadline("recording a follow-up")
            .await
            .map(|_| ())
    }

    /// Records that the grants `ids` were given under the claim (after they were: a crash
    /// before this leaves their transactions, which count as given too).
    pub async fn record_grants_given(
        &self,
        email: &str,
        owner_uid: &str,
        ids: &[&str],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid },
                doc! { "$addToSet": { "grantsGiven": { "$each": ids } } },
            )
            .deadline("recording the grants given")
            .await
            .map(|_| ())
    }

    /// Gives up the claim; only the owner's own claim is removed.
    /// Records that the claim's account is being deleted, before anything of it goes: a
    /// deletion that stops half-way is taken up again rather than abandoned with the account
    /// fenced from sign-in and half its data gone.
    pub async fn mark_deletion_started(
        &self,
        email: &str,
        owner_uid: &str,
        delete_transactions: bool,
    ) -> Result<(), StoreError> {
        let set = doc! { "deletionStarted": true, "deleteTransactions": delete_transactions };
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid },
                doc! { "$set": set },
            )
            .deadline("recording the deletion")
            .await
            .map(|_| ())
    }

    /// Finishes the deletion `claim`'s object began, if its account is still there (the
    /// cascade is safe to repeat; transactions as the deletion was asked when it began).
    pub async fn finish_started_deletion(&self, claim: &Claim) -> Result<(), StoreError> {
        let Some(id) = claim.user_id.filter(|_| claim.deletion_started) else {
            return Ok(());
        };
        match self.find_user_by_id(id).await? {
            Some(_) => {
                let transactions = claim.deletion_takes_transactions;
                self.delete_user_cascade(id, transactions).await.map(|_| ())
            }
            None => {
                let mut report = super::cascade::CascadeReport::default();
                self.sweep_after_deletion(id, &mut report).await
            }
        }
    }

    /// Removes `owner_uid`'s ownership record of `email`.
    /// Records what the claim's object declares of its account's deletion (see
    /// [`Claim::delete_declared`]); a write only where it changed.
    pub async fn record_delete_declared(
        &self,
        claim: &Claim,
        delete_declared: bool,
    ) -> Result<(), StoreError> {
        if claim.delete_declared == Some(delete_declared) {
            return Ok(());
        }
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": &claim.email, "uid": &claim.owner.uid },
                doc! { "$set": { "deleteDeclared": delete_declared } },
            )
            .deadline("recording the deletion policy")
            .await?;
        Ok(())
    }

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
        created: d.get_bool("created").unwrap_or(false),
        follow_ups: d
            .get_array("followUps")
            .map(|a| {
                a.iter()
                    .filter_map(|f| f.as_str().and_then(FollowUp::parse))
                    .collect()
            })
            .unwrap_or_default(),
        actions: super::one_shot::applied_from_doc(d),
        grants_given: d
            .get_array("grantsGiven")
            .map(|a| {
                a.iter()
                    .filter_map(|g| g.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
        refill: super::refill::claimed_from(d),
        deletion_started: d.get_bool("deletionStarted").unwrap_or(false),
        deletion_takes_transactions: d.get_bool("deleteTransactions").unwrap_or(false),
        delete_declared: d.get_bool("deleteDeclared").ok(),
        role_check: super::role_check::RoleCheck::from_record(d),
    }
}
