//! Email verification links, as LibreChat's `sendVerificationEmail` / `resendVerificationEmail`
//! make them: a random token whose bcrypt hash is stored in `tokens` with type
//! `email_verification` for 15 minutes, and the link `<domainClient>/verify?token=…&email=…`.

use std::time::Duration;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime};

use super::collections;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::Store;

/// LibreChat's `expiresIn: 900` for verification tokens.
pub const VERIFICATION_LIFETIME: Duration = Duration::from_secs(900);
const TYPE: &str = "email_verification";

/// A fresh raw token: 32 random bytes as hex, as LibreChat's `createTokenHash`.
pub fn new_raw_verification_token() -> String {
    super::invites::new_raw_token()
}

/// What JavaScript's `encodeURIComponent` leaves as it is.
const URI_COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'!')
    .remove(b'~')
    .remove(b'*')
    .remove(b'\'')
    .remove(b'(')
    .remove(b')');

/// The link LibreChat's email carries (the email as `encodeURIComponent` writes it).
pub fn verification_link(domain_client: &str, raw: &str, email: &str) -> String {
    let encode = |s: &str| percent_encoding::utf8_percent_encode(s, URI_COMPONENT).to_string();
    format!(
        "{}/verify?token={raw}&email={}",
        domain_client.trim_end_matches('/'),
        encode(email)
    )
}

/// A verification token the operator wrote: its `_id` (to withdraw it, or keep it while the
/// others go) and when it expires (epoch ms).
#[derive(Debug, Clone, Copy)]
pub struct IssuedVerification {
    pub id: ObjectId,
    pub created_at: DateTime,
    pub expires_ms: i64,
}

impl IssuedVerification {
    /// A link to issue now: its `_id` chosen before it is written, so that a write whose
    /// outcome is unknown (a timeout after the server applied it) can still be withdrawn.
    pub fn now() -> Self {
        let created_at = DateTime::now();
        let lifetime = VERIFICATION_LIFETIME.as_millis() as i64;
        IssuedVerification {
            id: ObjectId::new(),
            created_at,
            expires_ms: created_at.timestamp_millis() + lifetime,
        }
    }
}

impl Store {
    /// Adds the verification token `issued` holding `bcrypt_hash`, newest of the account's, so
    /// it is the one LibreChat's `verifyEmail` checks. The account's other links stay until
    /// this one is delivered ([`Store::void_other_verifications`]): a link that never reaches
    /// anybody must not void the ones the person asked for through LibreChat's own resend.
    pub async fn issue_verification(
        &self,
        issued: &IssuedVerification,
        (user, email): (ObjectId, &str),
        bcrypt_hash: &str,
    ) -> Result<(), StoreError> {
        let token = doc! {
            "_id": issued.id,
            "userId": user,
            "email": email,
            "type": TYPE,
            "token": bcrypt_hash,
            "createdAt": issued.created_at,
            "expiresAt": DateTime::from_millis(issued.expires_ms),
            "__v": 0_i32,
        };
        self.collection(collections::TOKENS)
            .insert_one(token)
            .deadline("writing a verification token")
            .await?;
        Ok(())
    }

    /// Once `issued` is delivered, the account's links made before it are void, as
    /// LibreChat's resend voids them before it sends a new one. A link the person asked for
    /// meanwhile (newer than `issued`) is theirs and stays.
    pub async fn void_other_verifications(
        &self,
        user: ObjectId,
        email: &str,
        issued: &IssuedVerification,
    ) -> Result<u64, StoreError> {
        self.delete_tokens_of(user, email, Some(issued)).await
    }

    /// Takes back a link that was not delivered, so the person's own newest link (if any) is
    /// again the one LibreChat checks.
    pub async fn withdraw_verification(
        &self,
        issued: &IssuedVerification,
    ) -> Result<(), StoreError> {
        self.collection(collections::TOKENS)
            .delete_one(doc! { "_id": issued.id, "type": TYPE })
            .deadline("withdrawing a verification token")
            .await
            .map(|_| ())
    }

    /// Deletes pending verification tokens of the account: LibreChat's
    /// `deleteEmailVerificationTokens` (typed, and legacy ones without type and identifier).
    pub async fn delete_verification_tokens(
        &self,
        user: ObjectId,
        email: &str,
    ) -> Result<u64, StoreError> {
        self.delete_tokens_of(user, email, None).await
    }

    async fn delete_tokens_of(
        &self,
        user: ObjectId,
        email: &str,
        older_than: Option<&IssuedVerification>,
    ) -> Result<u64, StoreError> {
        let mut typed = doc! { "userId": user, "email": email, "type": TYPE };
        let mut legacy =
            doc! { "userId": user, "email": email, "type": Bson::Null, "identifier": Bson::Null };
        if let Some(kept) = older_than {
            for filter in [&mut typed, &mut legacy] {
                filter.insert("_id", doc! { "$ne": kept.id });
                filter.insert("createdAt", doc! { "$lte": kept.created_at });
            }
        }
        let filter = doc! { "$or": [typed, legacy] };
        self.collection(collections::TOKENS)
            .delete_many(filter)
            .deadline("deleting verification tokens")
            .await
            .map(|r| r.deleted_count)
    }

    /// When the newest pending verification token expires, if there is one.
    pub async fn pending_verification(&self, user: ObjectId) -> Result<Option<i64>, StoreError> {
        let found = self
            .collection(collections::TOKENS)
            .find_one(doc! { "userId": user, "type": TYPE })
            .sort(doc! { "createdAt": -1 })
            .deadline("reading verification tokens")
            .await?;
        Ok(found
            .and_then(|d| d.get_datetime("expiresAt").ok().copied())
            .map(|t| t.timestamp_millis()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_librechats() {
        let link = verification_link("https://chat.example.com/", "ab12", "a+b@example.com");
        assert_eq!(
            link,
            "https://chat.example.com/verify?token=ab12&email=a%2Bb%40example.com"
        );
    }
}
