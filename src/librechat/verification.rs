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

impl Store {
    /// Replaces the account's verification tokens (typed and legacy, as the resend does) with
    /// one holding `bcrypt_hash`; returns when it expires (epoch ms).
    pub async fn issue_verification(
        &self,
        user: ObjectId,
        email: &str,
        bcrypt_hash: &str,
    ) -> Result<i64, StoreError> {
        self.delete_verification_tokens(user, email).await?;
        let now = DateTime::now();
        let lifetime = VERIFICATION_LIFETIME.as_millis() as i64;
        let expires = now.timestamp_millis() + lifetime;
        let token = doc! {
            "userId": user,
            "email": email,
            "type": TYPE,
            "token": bcrypt_hash,
            "createdAt": now,
            "expiresAt": DateTime::from_millis(expires),
            "__v": 0_i32,
        };
        self.collection(collections::TOKENS)
            .insert_one(token)
            .deadline("writing a verification token")
            .await?;
        Ok(expires)
    }

    /// Deletes pending verification tokens of the account: LibreChat's
    /// `deleteEmailVerificationTokens` (typed, and legacy ones without type and identifier).
    pub async fn delete_verification_tokens(
        &self,
        user: ObjectId,
        email: &str,
    ) -> Result<u64, StoreError> {
        let filter = doc! { "$or": [
            { "userId": user, "email": email, "type": TYPE },
            { "userId": user, "email": email, "type": Bson::Null, "identifier": Bson::Null },
        ] };
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
