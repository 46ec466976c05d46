//! LibreChat's `groups` (contract-surface §5.1). The operator writes only local groups it
//! created; Entra-synced groups (`source: entra`) are LibreChat's sync's alone.

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::super::deadline::{DrainFind, MongoCall};
use super::super::error::StoreError;
use super::super::owned::ACL_ENTRIES;
use super::super::users::StoredUser;
use super::super::{collections, Store};

/// A group's declared fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupFields {
    pub name: String,
    pub description: Option<String>,
    pub email: Option<String>,
}

/// What LibreChat stores in `memberIds` for a user: `idOnTheSource`, else the id as hex.
pub fn member_id(user: &StoredUser) -> String {
    user.id_on_the_source
        .clone()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| user.id.to_hex())
}

/// A stored group as far as the operator reads it.
#[derive(Clone, Debug)]
pub struct StoredGroup {
    pub id: ObjectId,
    pub source: String,
    pub fields: GroupFields,
    pub member_ids: Vec<String>,
}

fn stored_group(d: &Document) -> Option<StoredGroup> {
    let opt = |k: &str| d.get_str(k).ok().map(String::from);
    Some(StoredGroup {
        id: d.get_object_id("_id").ok()?,
        source: opt("source").unwrap_or_else(|| "local".into()),
        fields: GroupFields {
            name: opt("name").unwrap_or_default(),
            description: opt("description"),
            email: opt("email"),
        },
        member_ids: d
            .get_array("memberIds")
            .map(|a| {
                a.iter()
                    .filter_map(|v| v.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

impl Store {
    pub async fn find_group(&self, id: ObjectId) -> Result<Option<StoredGroup>, StoreError> {
        Ok(self
            .collection(collections::GROUPS)
            .find_one(doc! { "_id": id })
            .deadline("reading a group")
            .await?
            .and_then(|d| stored_group(&d)))
    }

    /// Every group, local or synced, that lists `member` (a [`member_id`]).
    pub async fn groups_with_member(&self, member: &str) -> Result<Vec<StoredGroup>, StoreError> {
        let found: Vec<Document> = self
            .collection(collections::GROUPS)
            .find(doc! { "memberIds": member })
            .drain("reading the groups of an account")
            .await?;
        Ok(found.iter().filter_map(stored_group).collect())
    }

    /// Another group of that name, local or synced, other than `except`.
    pub async fn group_named(
        &self,
        name: &str,
        except: ObjectId,
    ) -> Result<Option<StoredGroup>, StoreError> {
        Ok(self
            .collection(collections::GROUPS)
            .find_one(doc! { "name": name, "_id": { "$ne": except } })
            .deadline("reading a group")
            .await?
            .and_then(|d| stored_group(&d)))
    }

    /// Creates the local group with the `_id` chosen in the record, as LibreChat's
    /// `createGroup` would (an upsert on `_id`, so a retry after a crash creates it once).
    pub async fn create_group(&self, id: ObjectId, fields: &GroupFields) -> Result<(), StoreError> {
        let now = DateTime::now();
        let mut group = doc! {
            "name": &fields.name, "memberIds": [], "source": "local",
            "createdAt": now, "updatedAt": now, "__v": 0,
        };
        put_optional(&mut group, "description", fields.description.as_deref());
        put_optional(&mut group, "email", fields.email.as_deref());
        self.collection(collections::GROUPS)
            .update_one(doc! { "_id": id }, doc! { "$setOnInsert": group })
            .upsert(true)
            .deadline("creating a group")
            .await
            .map(|_| ())
    }

    /// Puts name, description and email back as declared: a rename in LibreChat's admin UI
    /// too (left, it would be "corrected" at every resync without ever changing).
    pub async fn correct_group(
        &self,
        id: ObjectId,
        fields: &GroupFields,
    ) -> Result<(), StoreError> {
        let mut set = doc! { "name": &fields.name, "updatedAt": DateTime::now() };
        let mut unset = Document::new();
        for (key, value) in [
            ("description", &fields.description),
            ("email", &fields.email),
        ] {
            match value {
                Some(v) => set.insert(key, v),
                None => unset.insert(key, ""),
            };
        }
        let mut update = doc! { "$set": set };
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        self.collection(collections::GROUPS)
            .update_one(local(id), update)
            .deadline("updating a group")
            .await
            .map(|_| ())
    }

    /// `addUserToGroup` for several members: `$addToSet`.
    pub async fn add_group_members(&self, id: ObjectId, ids: &[String]) -> Result<(), StoreError> {
        let update = doc! { "$addToSet": { "memberIds": { "$each": ids } } };
        self.change_members(local(id), update, ids).await
    }

    /// `removeUserFromGroup` for several members: `$pullAll`.
    pub async fn remove_group_members(
        &self,
        id: ObjectId,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let update = doc! { "$pullAll": { "memberIds": ids } };
        self.change_members(local(id), update, ids).await
    }

    /// Takes the members the operator added out of a group LibreChat has since linked to a
    /// directory group (whatever its `source` now): they are the operator's to remove.
    pub async fn withdraw_members_from_linked(
        &self,
        id: ObjectId,
        ids: &[String],
    ) -> Result<(), StoreError> {
        let update = doc! { "$pullAll": { "memberIds": ids } };
        self.change_members(doc! { "_id": id }, update, ids).await
    }

    /// Applies a change of `ids` to the group `filter` selects, stamping `updatedAt`.
    async fn change_members(
        &self,
        filter: Document,
        mut update: Document,
        ids: &[String],
    ) -> Result<(), StoreError> {
        if ids.is_empty() {
            return Ok(());
        }
        update.insert("$set", doc! { "updatedAt": DateTime::now() });
        self.collection(collections::GROUPS)
            .update_one(filter, update)
            .deadline("changing group members")
            .await
            .map(|_| ())
    }

    /// Deletes the local group `id` as LibreChat's admin API does: the group, its ACL entries
    /// and its config overrides. The group goes first, by a filter on its source, so that one
    /// LibreChat linked to a directory since it was read keeps its shares: then nothing is
    /// deleted and the call fails as contended (the next reconcile releases it as linked). A
    /// retry after a failure midway finds the group gone and finishes the rest.
    pub async fn delete_local_group(&self, id: ObjectId) -> Result<(), StoreError> {
        self.delete_many(collections::GROUPS, local(id)).await?;
        if self.find_group(id).await?.is_some() {
            return Err(StoreError::Contended(
                "LibreChat linked the group to a directory while it was being deleted",
            ));
        }
        self.delete_many(
            ACL_ENTRIES,
            doc! { "principalType": "group", "principalId": id },
        )
        .await?;
        self.delete_many(
            "configs",
            doc! { "principalType": "group", "principalId": id.to_hex() },
        )
        .await?;
        Ok(())
    }
}

/// The group `id` while it is a local group: LibreChat's directory sync alone changes the
/// members of a group linked to a directory.
fn local(id: ObjectId) -> Document {
    doc! { "_id": id, "source": "local" }
}

fn put_optional(d: &mut Document, key: &str, value: Option<&str>) {
    if let Some(v) = value {
        d.insert(key, Bson::String(v.to_string()));
    }
}
