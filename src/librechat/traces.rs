//! Whether the operator keeps anything under an object's uid: an ownership claim, a ban share,
//! an invitation's token record, a group's or role's record, a plugin record. An object with
//! none of these never wrote through this database (or its cleanup already ran), so nothing
//! waits on its cleanup.

use std::collections::HashSet;

use mongodb::bson::{doc, Bson};

use super::access::ACCESS_RECORDS;
use super::bans::SHARES;
use super::collections::OWNERS;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::invites::RECORDS as INVITE_RECORDS;
use super::plugins::PLUGIN_RECORDS;
use super::Store;

/// Each record collection and the fields that name the uid of the object that wrote it.
const OWNER_FIELDS: [(&str, &str); 6] = [
    (OWNERS, "uid"),
    (ACCESS_RECORDS, "uid"),
    (SHARES, "shares.uid"),
    (SHARES, "settling"),
    (INVITE_RECORDS, "_id"),
    (PLUGIN_RECORDS, "owner"),
];

impl Store {
    /// Which of `uids` the operator keeps records for. One read per record field, whatever
    /// the number of uids.
    pub async fn uids_with_records(&self, uids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        if uids.is_empty() {
            return Ok(found);
        }
        for (collection, field) in OWNER_FIELDS {
            let values = self
                .collection(collection)
                .distinct(field, doc! { field: { "$in": uids.to_vec() } })
                .deadline("reading the operator's records")
                .await?;
            found.extend(values.into_iter().filter_map(|v| match v {
                Bson::String(s) => Some(s),
                _ => None,
            }));
        }
        // A ban record lists every share of its target: keep only the uids asked about.
        let asked: HashSet<&str> = uids.iter().map(String::as_str).collect();
        found.retain(|uid| asked.contains(uid.as_str()));
        Ok(found)
    }
}
