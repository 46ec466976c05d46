//! Deleting an account with all its data, as LibreChat's `delete-user` script means to, but
//! correctly: every collection is filtered on its real field with its real BSON type, API keys
//! are deleted by `userId` (the script's `{user}` filter is cast to `{}` and deletes everyone's),
//! and group memberships are removed by id and by `idOnTheSource`.
//!
//! Order matters for crash safety: the account is fenced first (LibreChat's JWT strategy
//! rejects a fenced user), its data goes next, and the account itself last, so a retry after a
//! crash still finds the account and repeats the idempotent deletes.

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime};

use super::bans::BanTarget;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::{collections, Store};

/// How a collection refers to its user.
#[derive(Clone, Copy, Debug)]
pub enum IdForm {
    ObjectId,
    HexString,
}

/// LibreChat's deletion table: collection, field, and the BSON type the field holds.
pub const CASCADE: &[(&str, &str, IdForm)] = &[
    ("actions", "user", IdForm::ObjectId),
    ("agents", "author", IdForm::ObjectId),
    ("agentapikeys", "userId", IdForm::ObjectId),
    ("assistants", "user", IdForm::ObjectId),
    ("balances", "user", IdForm::ObjectId),
    ("conversationtags", "user", IdForm::HexString),
    ("conversations", "user", IdForm::HexString),
    ("messages", "user", IdForm::HexString),
    ("files", "user", IdForm::ObjectId),
    ("keys", "userId", IdForm::ObjectId),
    ("memoryentries", "userId", IdForm::ObjectId),
    ("pluginauths", "userId", IdForm::HexString),
    ("prompts", "author", IdForm::ObjectId),
    ("promptgroups", "author", IdForm::ObjectId),
    ("presets", "user", IdForm::HexString),
    ("sessions", "user", IdForm::ObjectId),
    ("sharedlinks", "user", IdForm::HexString),
    ("toolcalls", "user", IdForm::ObjectId),
    ("tokens", "userId", IdForm::ObjectId),
    ("aclentries", "principalId", IdForm::ObjectId),
    // v0.8.8: OpenID refresh tokens bridged per user, keyed by the id as a string.
    ("refreshtokenbridges", "userId", IdForm::HexString),
];

/// Kept unless the declaration asks otherwise: billing history is an audit trail.
pub const TRANSACTIONS: (&str, &str, IdForm) = ("transactions", "user", IdForm::ObjectId);

/// What a cascade removed, per collection.
#[derive(Debug, Default)]
pub struct CascadeReport {
    pub deleted: Vec<(String, u64)>,
    pub groups_updated: u64,
}

impl CascadeReport {
    pub fn total(&self) -> u64 {
        self.deleted.iter().map(|(_, n)| n).sum()
    }
}

impl Store {
    /// Deletes the account `user_id` and everything of it. Safe to repeat.
    pub async fn delete_user_cascade(
        &self,
        user_id: ObjectId,
        delete_transactions: bool,
    ) -> Result<CascadeReport, StoreError> {
        let users = self.collection(collections::USERS);
        let stored = self.find_user_by_id(user_id).await?;
        users
            .update_one(
                doc! { "_id": user_id },
                doc! { "$set": { "agentTriggerDeletionStartedAt": DateTime::now() } },
            )
            .deadline("fencing the user")
            .await?;

        let hex = user_id.to_hex();
        let mut report = CascadeReport::default();
        let extra = delete_transactions.then_some(&TRANSACTIONS);
        for (collection, field, form) in CASCADE.iter().chain(extra) {
            let value = match form {
                IdForm::ObjectId => Bson::ObjectId(user_id),
                IdForm::HexString => Bson::String(hex.clone()),
            };
            let deleted = self
                .collection(collection)
                .delete_many(doc! { *field: value })
                .deadline("deleting user data")
                .await?
                .deleted_count;
            report.deleted.push((collection.to_string(), deleted));
        }

        // Members are stored as idOnTheSource when the user has one, else as the hex id.
        let id_on_the_source = stored.as_ref().and_then(|u| u.id_on_the_source.clone());
        let mut member_ids = vec![hex.clone()];
        member_ids.extend(id_on_the_source.clone());
        report.groups_updated = self
            .collection(collections::GROUPS)
            .update_many(
                doc! { "memberIds": { "$in": &member_ids } },
                doc! { "$pullAll": { "memberIds": &member_ids } },
            )
            .deadline("removing group memberships")
            .await?
            .modified_count;

        // The user's ban records and every cached copy of them (including checkBan's per-IP ones).
        self.lift(&BanTarget::User(hex.clone()), true).await?;

        if let Some(redis) = self.redis() {
            redis
                .invalidate_user(&hex, id_on_the_source.as_deref())
                .await?;
        }

        let deleted = users
            .delete_one(doc! { "_id": user_id })
            .deadline("deleting the user")
            .await?
            .deleted_count;
        report
            .deleted
            .push((collections::USERS.to_string(), deleted));
        Ok(report)
    }
}
