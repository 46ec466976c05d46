//! Invitations as LibreChat's `createInvite` stores them: a `tokens` document holding only the
//! SHA-256 of a random raw token, a fake `userId`, the email, `createdAt` and `expiresAt`, and
//! no `type`. The raw token exists only in the link handed to the invitee.
//!
//! The operator keeps its own record (`librechat_operator_invites`, keyed by the UserInvite's
//! uid) of which token hash belongs to which invite, written before the token itself, so an
//! invite can always be found and revoked, even if its Secret was deleted by hand.

use std::collections::HashMap;

use mongodb::bson::{doc, oid::ObjectId, DateTime, Document};
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::deadline::{DrainFind, MongoCall};
use super::error::StoreError;
use super::{collections, Store};

/// The operator's record of invite tokens.
pub const RECORDS: &str = "librechat_operator_invites";

/// A fresh raw token: 32 random bytes as 64 hex characters, like LibreChat's
/// `getRandomValues(32)`.
pub fn new_raw_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// LibreChat's `hashToken`: SHA-256, hex.
pub fn hash_token(raw: &str) -> String {
    hex::encode(Sha256::digest(raw.as_bytes()))
}

/// The operator's record of an issued invite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteRecord {
    pub token_hash: String,
    /// The email it was issued for.
    pub email: String,
    /// Whether the right to email the link was taken (the email sent, or being sent).
    pub email_sent: bool,
    /// The right was taken and the handover to the relay never came to an end the operator
    /// saw (a crash, or a failed call, between the two): the email may or may not have gone.
    pub email_handover_open: bool,
    /// How the invitation ended (`Accepted`, `Expired`), once it did: final whatever the
    /// object's status or spec says later.
    pub closed_as: Option<String>,
    /// The end its link was last given (records of earlier versions have none): past it, the
    /// invitation is over whatever lifetime its object declares since.
    pub expires_at_ms: Option<i64>,
    /// The operator took its link out (suspended while its namespace or the email's domain is
    /// not admitted, or ending it): a token missing meanwhile was not used to register.
    pub link_taken_out: bool,
    /// The account the operator saw its own link register, once it did.
    pub accepted_by: Option<ObjectId>,
}

/// What the database says about an invite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InviteToken {
    /// `None` for a token with no readable end (none the operator wrote).
    pub expires_at_ms: Option<i64>,
}

impl Store {
    /// What was recorded for invite `uid`, if anything.
    pub async fn invite_record(&self, uid: &str) -> Result<Option<InviteRecord>, StoreError> {
        let found = self
            .collection(RECORDS)
            .find_one(doc! { "_id": uid })
            .deadline("reading an invite record")
            .await?;
        Ok(found.as_ref().and_then(invite_record))
    }

    /// The records of the invites `uids`, by uid, in one read.
    pub async fn invite_records(
        &self,
        uids: &[String],
    ) -> Result<HashMap<String, InviteRecord>, StoreError> {
        if uids.is_empty() {
            return Ok(HashMap::new());
        }
        let found: Vec<Document> = self
            .collection(RECORDS)
            .find(doc! { "_id": { "$in": uids } })
            .drain("reading invite records")
            .await?;
        let by_uid = found.iter().filter_map(|d| {
            let uid = d.get_str("_id").ok()?.to_string();
            Some((uid, invite_record(d)?))
        });
        Ok(by_uid.collect())
    }

    /// Records which token hash belongs to invite `uid`, and its end (before the token is
    /// written).
    pub async fn record_invite(
        &self,
        uid: &str,
        owner: &str,
        (email, token_hash): (&str, &str),
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let expires_at = DateTime::from_millis(expires_at_ms);
        self.collection(RECORDS)
            .update_one(
                doc! { "_id": uid },
                doc! { "$set": { "tokenHash": token_hash, "email": email, "owner": owner, "expiresAt": expires_at } },
            )
            .upsert(true)
            .deadline("recording an invite")
            .await
            .map(|_| ())
    }

    /// Takes the one right to email invite `uid`'s link. `true` for exactly one caller ever
    /// (until [`Store::return_invite_email`]), recorded before the email is sent, so that a
    /// crash or a failed status write after sending can never send it twice.
    pub async fn take_invite_email(&self, uid: &str) -> Result<bool, StoreError> {
        self.collection(RECORDS)
            .update_one(
                doc! { "_id": uid, "emailSentAt": { "$exists": false } },
                doc! { "$set": { "emailSentAt": DateTime::now(), "emailHandover": "open" } },
            )
            .deadline("recording an invitation email")
            .await
            .map(|r| r.modified_count == 1)
    }

    /// Gives the right back after a send that certainly failed (the relay refused it).
    pub async fn return_invite_email(&self, uid: &str) -> Result<(), StoreError> {
        self.collection(RECORDS)
            .update_one(
                doc! { "_id": uid },
                doc! { "$unset": { "emailSentAt": "", "emailHandover": "" } },
            )
            .deadline("recording an invitation email")
            .await
            .map(|_| ())
    }

    /// Records that the handover of invite `uid`'s email came to an end (said to the people
    /// who asked for it), whatever the relay answered.
    pub async fn close_invite_email_handover(&self, uid: &str) -> Result<(), StoreError> {
        self.collection(RECORDS)
            .update_one(
                doc! { "_id": uid },
                doc! { "$unset": { "emailHandover": "" } },
            )
            .deadline("recording an invitation email")
            .await
            .map(|_| ())
    }

    /// Records how invite `uid` ended (its token already deleted), and the account its own link
    /// registered if the operator saw that: no later reconcile issues or restores its link,
    /// whatever its status or lifetime is made to say.
    pub async fn close_invite(
        &self,
        uid: &str,
        how: &str,
        accepted_by: Option<ObjectId>,
    ) -> Result<(), StoreError> {
        let mut closed = doc! { "closedAs": how, "closedAt": DateTime::now() };
        if let Some(account) = accepted_by {
            closed.insert("acceptedBy", account);
        }
        self.collection(RECORDS)
            .update_one(
                doc! { "_id": uid, "closedAs": { "$exists": false } },
                doc! { "$set": closed },
            )
            .deadline("closing an invite record")
            .await
            .map(|_| ())
    }

    pub async fn forget_invite(&self, uid: &str) -> Result<(), StoreError> {
        self.collection(RECORDS)
            .delete_one(doc! { "_id": uid })
            .deadline("forgetting an invite")
            .await
            .map(|_| ())
    }

    /// Writes the invite token as `createInvite` does, unless a token with this hash exists.
    pub async fn ensure_invite_token(
        &self,
        email: &str,
        token_hash: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        let document = doc! {
            "userId": ObjectId::new(),
            "email": email,
            "token": token_hash,
            "createdAt": DateTime::now(),
            "expiresAt": DateTime::from_millis(expires_at_ms),
            "__v": 0_i32,
        };
        self.collection(collections::TOKENS)
            .update_one(
                doc! { "token": token_hash },
                doc! { "$setOnInsert": document },
            )
            .upsert(true)
            .deadline("writing an invite token")
            .await
            .map(|_| ())
    }

    /// The token, looked up the way LibreChat's `getInvite` does (hash and email).
    pub async fn find_invite_token(
        &self,
        email: &str,
        token_hash: &str,
    ) -> Result<Option<InviteToken>, StoreError> {
        let found = self
            .collection(collections::TOKENS)
            .find_one(doc! { "token": token_hash, "email": email })
            .deadline("reading an invite token")
            .await?;
        Ok(found.map(|d: Document| InviteToken {
            expires_at_ms: d
                .get_datetime("expiresAt")
                .ok()
                .map(|t| t.timestamp_millis()),
        }))
    }

    /// Takes invite `uid`'s link out: marked in its record first, so that a token missing
    /// from then on is never read as a registration through it (a crash or a failed call
    /// between the two leaves the mark, never an unmarked gap).
    pub async fn take_out_invite_link(
        &self,
        uid: &str,
        token_hash: &str,
    ) -> Result<(), StoreError> {
        self.mark_invite_link_taken_out(uid, true).await?;
        self.delete_invite_token(token_hash).await
    }

    /// Marks invite `uid`'s link as taken out by the operator (`true`) or working again
    /// (`false`, once its token is there).
    pub async fn mark_invite_link_taken_out(
        &self,
        uid: &str,
        taken_out: bool,
    ) -> Result<(), StoreError> {
        let change = match taken_out {
            true => doc! { "$set": { "linkTakenOutAt": DateTime::now() } },
            false => doc! { "$unset": { "linkTakenOutAt": "" } },
        };
        self.collection(RECORDS)
            .update_one(doc! { "_id": uid }, change)
            .deadline("recording an invite's link")
            .await
            .map(|_| ())
    }

    /// Records a pending invite's new end (before its token is given it).
    pub async fn record_invite_end(&self, uid: &str, expires_at_ms: i64) -> Result<(), StoreError> {
        self.collection(RECORDS)
            .update_one(
                doc! { "_id": uid, "closedAs": { "$exists": false } },
                doc! { "$set": { "expiresAt": DateTime::from_millis(expires_at_ms) } },
            )
            .deadline("recording an invite's end")
            .await
            .map(|_| ())
    }

    /// Moves a pending invite's end.
    pub async fn set_invite_expiry(
        &self,
        token_hash: &str,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.collection(collections::TOKENS)
            .update_one(
                doc! { "token": token_hash },
                doc! { "$set": { "expiresAt": DateTime::from_millis(expires_at_ms) } },
            )
            .deadline("moving an invite's end")
            .await
            .map(|_| ())
    }

    /// Deletes the token, so the link stops working at once.
    pub async fn delete_invite_token(&self, token_hash: &str) -> Result<(), StoreError> {
        self.collection(collections::TOKENS)
            .delete_many(doc! { "token": token_hash, "type": { "$exists": false } })
            .deadline("revoking an invite")
            .await
            .map(|_| ())
    }
}

fn invite_record(d: &Document) -> Option<InviteRecord> {
    Some(InviteRecord {
        token_hash: d.get_str("tokenHash").ok()?.to_string(),
        email: d.get_str("email").unwrap_or_default().to_string(),
        email_sent: d.contains_key("emailSentAt"),
        email_handover_open: d.contains_key("emailHandover"),
        closed_as: d.get_str("closedAs").ok().map(String::from),
        expires_at_ms: d
            .get_datetime("expiresAt")
            .ok()
            .map(|t| t.timestamp_millis()),
        link_taken_out: d.contains_key("linkTakenOutAt"),
        accepted_by: d.get_object_id("acceptedBy").ok(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_like_librechat() {
        // Fixture tokens.invite.json: the stored token is SHA-256 of the raw token.
        let raw = "7ab8cbbef26b106b60aeee220b7a244a3e449ae4d468bbf2dc7946a3348e162e";
        assert_eq!(
            hash_token(raw),
            "41b5b217220b3ed2154b9b715ce7dc152193b6d4328a0524c460483aa1db3194"
        );
    }

    #[test]
    fn raw_tokens_are_64_hex_characters() {
        let t = new_raw_token();
        assert_eq!(t.len(), 64);
        assert!(t.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(t, new_raw_token());
    }
}
