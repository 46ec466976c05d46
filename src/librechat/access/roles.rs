//! LibreChat's `roles` (contract-surface §5.3): custom roles as `createRoleByName` stores
//! them, the declared keys of USER and ADMIN, and `deleteRoleByName`'s move to USER.

use mongodb::bson::{doc, oid::ObjectId, Bson, Document};

use super::super::deadline::{DrainFind, MongoCall};
use super::super::error::StoreError;
use super::super::owned::ACL_ENTRIES;
use super::super::permissions::{is_built_in, share_permission_type, Permissions};
use super::super::{collections, Store};

pub const ROLES: &str = "roles";
/// LibreChat's capability grants and per-principal config overrides (contract part II §5.4).
const SYSTEM_GRANTS: &str = "systemgrants";
const CONFIGS: &str = "configs";

/// A stored role as far as the operator reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredRole {
    pub id: Option<ObjectId>,
    pub description: Option<String>,
    pub permissions: Permissions,
}

fn permissions_of(d: &Document) -> Permissions {
    let Ok(perms) = d.get_document("permissions") else {
        return Permissions::new();
    };
    perms
        .iter()
        .filter_map(|(kind, keys)| {
            let keys = keys.as_document()?;
            let keys = keys
                .iter()
                .filter_map(|(k, v)| v.as_bool().map(|b| (k.clone(), b)))
                .collect();
            Some((kind.clone(), keys))
        })
        .collect()
}

fn permissions_doc(p: &Permissions) -> Document {
    p.iter()
        .map(|(kind, keys)| {
            let keys: Document = keys
                .iter()
                .map(|(k, v)| (k.clone(), Bson::Boolean(*v)))
                .collect();
            (kind.clone(), Bson::Document(keys))
        })
        .collect()
}

impl Store {
    pub async fn find_role(&self, name: &str) -> Result<Option<StoredRole>, StoreError> {
        Ok(self
            .collection(ROLES)
            .find_one(doc! { "name": name, "tenantId": { "$exists": false } })
            .deadline("reading a role")
            .await?
            .map(|d| StoredRole {
                id: d.get_object_id("_id").ok(),
                description: d.get_str("description").ok().map(String::from),
                permissions: permissions_of(&d),
            }))
    }

    /// Whether LibreChat's role of `account` (USER when it has none) lets it share a resource
    /// of `resource_type`: the type's `SHARE` permission, which LibreChat's permissions route
    /// requires beside the ACL entry's SHARE bit. A built-in role LibreChat has not written
    /// yet (a server never started: it writes USER and ADMIN at every start) restricts
    /// nothing; a custom role it does not have allows nothing.
    pub async fn account_may_share(
        &self,
        account: ObjectId,
        resource_type: &str,
    ) -> Result<bool, StoreError> {
        let Some(kind) = share_permission_type(resource_type) else {
            return Ok(true);
        };
        let Some(user) = self.find_user_by_id(account).await? else {
            return Ok(false);
        };
        let name = user.role.as_deref().unwrap_or("USER");
        Ok(match self.find_role(name).await? {
            Some(role) => role.permissions.get(kind).and_then(|k| k.get("SHARE")) == Some(&true),
            None => is_built_in(name),
        })
    }

    /// Creates a custom role holding exactly `permissions`, as `createRoleByName` stores it
    /// (no defaults filled in), under the `_id` its record chose. An upsert on the name, so a
    /// retry creates it once, and a role of the name made meanwhile in LibreChat is left as
    /// it is (its `_id` tells it apart).
    pub async fn create_role(
        &self,
        id: ObjectId,
        name: &str,
        description: &str,
        permissions: &Permissions,
    ) -> Result<(), StoreError> {
        let role = doc! {
            "_id": id, "name": name, "description": description,
            "permissions": permissions_doc(permissions), "__v": 0,
        };
        self.collection(ROLES)
            .update_one(
                doc! { "name": name, "tenantId": { "$exists": false } },
                doc! { "$setOnInsert": role },
            )
            .upsert(true)
            .deadline("creating a role")
            .await
            .map(|_| ())
    }

    /// Puts a custom role's description and whole permissions back as declared.
    pub async fn correct_role(
        &self,
        (name, id): (&str, Option<ObjectId>),
        description: &str,
        permissions: &Permissions,
    ) -> Result<(), StoreError> {
        let set = doc! { "description": description, "permissions": permissions_doc(permissions) };
        let mut filter = doc! { "name": name, "tenantId": { "$exists": false } };
        // The role read just before: not one made under the name since.
        if let Some(id) = id {
            filter.insert("_id", id);
        }
        self.collection(ROLES)
            .update_one(filter, doc! { "$set": set })
            .deadline("updating a role")
            .await
            .map(|_| ())
    }

    /// Sets the declared keys of a built-in role, leaving every other key as LibreChat keeps
    /// it (the per-key merge of LibreChat's `updateAccessPermissions`).
    pub async fn set_role_keys(
        &self,
        name: &str,
        permissions: &Permissions,
    ) -> Result<(), StoreError> {
        let set: Document = permissions
            .iter()
            .flat_map(|(kind, keys)| {
                keys.iter()
                    .map(move |(k, v)| (format!("permissions.{kind}.{k}"), Bson::Boolean(*v)))
            })
            .collect();
        if set.is_empty() {
            return Ok(());
        }
        self.collection(ROLES)
            .update_one(
                doc! { "name": name, "tenantId": { "$exists": false } },
                doc! { "$set": set },
            )
            .deadline("updating a role")
            .await
            .map(|_| ())
    }

    /// Whether anything in LibreChat already names the role `name` (no role document need
    /// exist): its accounts, or shares, system grants or config overrides for it as a
    /// principal. A role created under that name would inherit them.
    pub async fn role_name_in_use(&self, name: &str) -> Result<bool, StoreError> {
        if self
            .collection(collections::USERS)
            .find_one(doc! { "role": name })
            .deadline("reading a role's users")
            .await?
            .is_some()
        {
            return Ok(true);
        }
        let as_principal = doc! { "principalType": "role", "principalId": name };
        for collection in [ACL_ENTRIES, SYSTEM_GRANTS, CONFIGS] {
            let found = self
                .collection(collection)
                .find_one(as_principal.clone())
                .projection(doc! { "_id": 1 })
                .deadline("reading what names a role")
                .await?;
            if found.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Accounts with the role.
    pub async fn count_role_users(&self, name: &str) -> Result<u64, StoreError> {
        self.count_users(doc! { "role": name }).await
    }

    /// The accounts with the role: ids and `idOnTheSource`.
    pub async fn role_users(
        &self,
        name: &str,
    ) -> Result<Vec<(ObjectId, Option<String>)>, StoreError> {
        let users: Vec<Document> = self
            .collection(collections::USERS)
            .find(doc! { "role": name })
            .projection(doc! { "_id": 1, "idOnTheSource": 1 })
            .drain("listing a role's users")
            .await?;
        Ok(users
            .iter()
            .filter_map(|d| {
                let id = d.get_object_id("_id").ok()?;
                Some((id, d.get_str("idOnTheSource").ok().map(String::from)))
            })
            .collect())
    }

    /// Moves the listed accounts still in role `name` to USER, as `deleteRoleByName` moves a
    /// deleted role's users; only these, so that every account moved is one whose caches the
    /// caller has promised to drop. Returns how many moved.
    pub async fn move_to_user(
        &self,
        name: &str,
        users: &[(ObjectId, Option<String>)],
    ) -> Result<u64, StoreError> {
        let users: Vec<ObjectId> = users.iter().map(|(id, _)| *id).collect();
        let result = self
            .collection(collections::USERS)
            .update_many(
                doc! { "_id": { "$in": users }, "role": name },
                doc! { "$set": { "role": "USER" } },
            )
            .deadline("moving a role's users to USER")
            .await?;
        Ok(result.modified_count)
    }

    /// Deletes the custom role `name` (its accounts moved first: [`Store::move_to_user`]).
    pub async fn delete_role(&self, name: &str, id: Option<ObjectId>) -> Result<(), StoreError> {
        let mut filter = doc! { "name": name, "tenantId": { "$exists": false } };
        // Only the role the operator created: one LibreChat's admins made under the name
        // meanwhile (another `_id`) stays.
        if let Some(id) = id {
            filter.insert("_id", id);
        }
        self.delete_many(ROLES, filter).await?;
        Ok(())
    }

    /// Moves the account `user` out of role `name` to USER, if it is still in it (as
    /// [`Store::delete_role`] moves a deleted role's accounts). Returns whether it moved.
    pub async fn leave_role(&self, user: ObjectId, name: &str) -> Result<bool, StoreError> {
        let result = self
            .collection(collections::USERS)
            .update_one(
                doc! { "_id": user, "role": name },
                doc! { "$set": { "role": "USER" } },
            )
            .deadline("moving an account out of a deleted role")
            .await?;
        Ok(result.modified_count > 0)
    }

    /// Drops LibreChat's cached copy of the role (`ROLES:<name>`, no TTL).
    pub async fn drop_role_cache(&self, name: &str) -> Result<(), StoreError> {
        if let Some(redis) = self.redis()? {
            redis.delete(&[redis.keyv_key("ROLES", name)]).await?;
        }
        Ok(())
    }
}
