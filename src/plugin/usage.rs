//! The MongoDB reads the plugin needs that the library has no lookup for: conversations and
//! messages per user as LibreChat's `user-stats` script counts them, and the operator's ban
//! and invite records that mention an account. Read-only, every call under the library's
//! deadline; nothing of Kubernetes here.

use futures::{StreamExt, TryStreamExt};
use mongodb::bson::{doc, oid::ObjectId, Bson, Document};
use serde::Serialize;

use crate::librechat::deadline::{DrainFind, MongoCall};
use crate::librechat::{bans, collections, invites, Store, StoreError};

/// LibreChat's `conversations` and `messages` collections; both keep the user as the `_id`'s
/// hex string.
const CONVERSATIONS: &str = "conversations";
const MESSAGES: &str = "messages";
/// Per-user counts in flight at once.
const CONCURRENT_COUNTS: usize = 8;

/// One line of `user-stats`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UserUsage {
    pub id: String,
    pub email: String,
    pub name: Option<String>,
    pub conversations: u64,
    pub messages: u64,
}

/// Every account with its conversation and message counts, in `user-stats`' order.
pub async fn per_user(store: &Store) -> Result<Vec<UserUsage>, StoreError> {
    let users: Vec<Document> = store
        .collection(collections::USERS)
        .find(doc! {})
        .projection(doc! { "email": 1, "name": 1 })
        .sort(doc! { "_id": 1 })
        .drain("listing users")
        .await?;
    let counted: Vec<UserUsage> = futures::stream::iter(users.iter().filter_map(|d| {
        let id = d.get_object_id("_id").ok()?;
        Some((id, d))
    }))
    .map(|(id, d): (ObjectId, &Document)| async move {
        // `user-stats` passes the ObjectId, which mongoose casts to the schema's String.
        let filter = doc! { "user": id.to_hex() };
        let conversations = store
            .collection(CONVERSATIONS)
            .count_documents(filter.clone())
            .deadline("counting conversations")
            .await?;
        let messages = store
            .collection(MESSAGES)
            .count_documents(filter)
            .deadline("counting messages")
            .await?;
        Ok::<_, StoreError>(UserUsage {
            id: id.to_hex(),
            email: d.get_str("email").unwrap_or_default().to_string(),
            name: d.get_str("name").ok().map(str::to_string),
            conversations,
            messages,
        })
    })
    .buffered(CONCURRENT_COUNTS)
    .try_collect()
    .await?;
    Ok(sorted_like_user_stats(counted))
}

/// `user-stats`' order: most conversations first, then most messages; ties keep the order the
/// accounts were read in (the script's sort is stable).
pub fn sorted_like_user_stats(mut rows: Vec<UserUsage>) -> Vec<UserUsage> {
    rows.sort_by(|a, b| {
        b.conversations
            .cmp(&a.conversations)
            .then(b.messages.cmp(&a.messages))
    });
    rows
}

/// One declared ban's share, as the operator recorded it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BanShareRecord {
    /// The `BANS:` key the share is on.
    pub key: String,
    /// The declaring object's uid (`librechat` for a ban LibreChat itself wrote).
    pub owner_uid: String,
    /// `namespace/name` of the declaring object.
    pub owner: String,
    /// Epoch ms; `None`: permanent.
    pub end_ms: Option<i64>,
    /// The identity the share names (`email:…`, `owner:…`), if any.
    pub subject: Option<String>,
}

/// The ban shares on account `user_hex`'s `BANS:` key, and those naming any of `subjects`
/// (see [`bans::subjects_of`]), wherever they are.
pub async fn ban_shares_about(
    store: &Store,
    user_hex: Option<&str>,
    subjects: &[String],
) -> Result<Vec<BanShareRecord>, StoreError> {
    let mut any = vec![doc! { "shares.subject": { "$in": subjects } }];
    if let Some(hex) = user_hex {
        any.push(doc! { "_id": bans::BanTarget::User(hex.to_string()).bans_key() });
    }
    let records: Vec<Document> = store
        .collection(bans::SHARES)
        .find(doc! { "$or": any })
        .drain("reading ban records")
        .await?;
    let own_key = user_hex.map(|h| bans::BanTarget::User(h.to_string()).bans_key());
    Ok(records
        .iter()
        .flat_map(|record| {
            let key = record.get_str("_id").unwrap_or_default().to_string();
            let whole_key = own_key.as_deref() == Some(key.as_str());
            record
                .get_array("shares")
                .map(|a| a.iter().filter_map(Bson::as_document).collect::<Vec<_>>())
                .unwrap_or_default()
                .into_iter()
                .map(move |s| share_record(&key, s))
                .filter(move |s| {
                    whole_key || s.subject.as_ref().is_some_and(|x| subjects.contains(x))
                })
        })
        .collect())
}

fn share_record(key: &str, share: &Document) -> BanShareRecord {
    BanShareRecord {
        key: key.to_string(),
        owner_uid: share.get_str("uid").unwrap_or_default().to_string(),
        owner: share.get_str("owner").unwrap_or_default().to_string(),
        end_ms: share.get_datetime("end").ok().map(|d| d.timestamp_millis()),
        subject: share.get_str("subject").ok().map(str::to_string),
    }
}

/// An invite the operator issued for an email.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InviteRecordOf {
    /// The UserInvite's uid.
    pub uid: String,
    /// `namespace/name` of the UserInvite.
    pub owner: String,
}

/// The operator's invite records for `email`.
pub async fn invite_records_for(
    store: &Store,
    email: &str,
) -> Result<Vec<InviteRecordOf>, StoreError> {
    let records: Vec<Document> = store
        .collection(invites::RECORDS)
        .find(doc! { "email": email })
        .projection(doc! { "owner": 1 })
        .drain("reading invite records")
        .await?;
    Ok(records
        .iter()
        .map(|r| InviteRecordOf {
            uid: r.get_str("_id").unwrap_or_default().to_string(),
            owner: r.get_str("owner").unwrap_or_default().to_string(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(email: &str, conversations: u64, messages: u64) -> UserUsage {
        UserUsage {
            id: String::new(),
            email: email.into(),
            name: None,
            conversations,
            messages,
        }
    }

    #[test]
    fn sorted_by_conversations_then_messages_ties_kept_in_order() {
        let sorted = sorted_like_user_stats(vec![
            row("a", 1, 9),
            row("b", 3, 0),
            row("c", 1, 20),
            row("d", 0, 0),
            row("e", 1, 9),
        ]);
        let order: Vec<&str> = sorted.iter().map(|r| r.email.as_str()).collect();
        assert_eq!(order, ["b", "c", "a", "e", "d"]);
    }

    #[test]
    fn a_share_reads_back_as_recorded() {
        let end = mongodb::bson::DateTime::from_millis(1_700_000_000_000);
        let share = doc! { "uid": "u1", "owner": "ns/ban", "start": end, "end": end, "subject": "email:a@b.c" };
        let record = share_record("BANS:abc", &share);
        assert_eq!(record.owner, "ns/ban");
        assert_eq!(record.end_ms, Some(1_700_000_000_000));
        let permanent = share_record("BANS:abc", &doc! { "uid": "u2", "end": Bson::Null });
        assert_eq!(permanent.end_ms, None);
        assert_eq!(permanent.subject, None);
    }
}
