//! Whether the operator keeps anything under an object's uid: an ownership claim, a ban share,
//! an invitation's token record, a group's or role's record, a plugin record. An object with
//! none of these never wrote through this database (or its cleanup already ran), so nothing
//! waits on its cleanup.

use std::collections::HashSet;

use mongodb::bson::{doc, Bson, Document};

use super::access::ACCESS_RECORDS;
use super::bans::SHARES;
use super::collections::OWNERS;
use super::deadline::{DrainFind, MongoCall};
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
    /// the number of uids. The values are read from the matching documents, not by
    /// `distinct`: a path through an array of documents (`shares.uid`) is flattened by
    /// MongoDB's `distinct` but not by every server speaking its protocol.
    pub async fn uids_with_records(&self, uids: &[String]) -> Result<HashSet<String>, StoreError> {
        let mut found = HashSet::new();
        if uids.is_empty() {
            return Ok(found);
        }
        for (collection, field) in OWNER_FIELDS {
            let holding = self
                .collection(collection)
                .find(doc! { field: { "$in": uids.to_vec() } })
                // The whole top-level field: a projection through an array is not read the
                // same way by every server either.
                .projection(doc! { field.split('.').next().unwrap_or(field): 1 })
                .drain("reading the operator's records")
                .await?;
            for record in &holding {
                found.extend(values_at(record, field));
            }
        }
        // A ban record lists every share of its target: keep only the uids asked about.
        let asked: HashSet<&str> = uids.iter().map(String::as_str).collect();
        found.retain(|uid| asked.contains(uid.as_str()));
        Ok(found)
    }
}

impl Store {
    /// Whether the operator keeps any record for one of `uids`: at most one small read per
    /// record field, stopping at the first found.
    pub async fn any_records(&self, uids: &[String]) -> Result<bool, StoreError> {
        if uids.is_empty() {
            return Ok(false);
        }
        // A thousand uids a read: one found is enough, and a query has a size limit.
        for some in uids.chunks(1000) {
            for (collection, field) in OWNER_FIELDS {
                let one = self
                    .collection(collection)
                    .find_one(doc! { field: { "$in": some.to_vec() } })
                    .projection(doc! { "_id": 1 })
                    .deadline("reading the operator's records")
                    .await?;
                if one.is_some() {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }
}

/// The strings at a dotted `path` of `record`, through arrays at any step.
fn values_at(record: &Document, path: &str) -> Vec<String> {
    let mut values = vec![Bson::Document(record.clone())];
    for step in path.split('.') {
        values = values
            .into_iter()
            .flat_map(|v| match v {
                Bson::Document(d) => d.get(step).cloned().into_iter().collect(),
                Bson::Array(items) => items
                    .into_iter()
                    .filter_map(|i| i.as_document().and_then(|d| d.get(step)).cloned())
                    .collect(),
                _ => Vec::new(),
            })
            .collect();
    }
    values
        .into_iter()
        .flat_map(|v| match v {
            Bson::Array(items) => items,
            other => vec![other],
        })
        .filter_map(|v| match v {
            Bson::String(s) => Some(s),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::values_at;
    use mongodb::bson::doc;

    #[test]
    fn values_are_read_through_arrays_of_documents_and_of_strings() {
        let ban = doc! { "_id": "BANS:x", "shares": [ { "uid": "a" }, { "uid": "b" } ], "settling": ["c"] };
        assert_eq!(values_at(&ban, "shares.uid"), ["a", "b"]);
        assert_eq!(values_at(&ban, "settling"), ["c"]);
        assert_eq!(values_at(&doc! { "_id": "u1" }, "_id"), ["u1"]);
        assert!(values_at(&doc! { "uid": 3 }, "uid").is_empty());
    }
}
