//! ACL entries that give a group or a role access to a resource, written as LibreChat's
//! `grantPermission` writes them (contract-surface §5.2).

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::super::deadline::{DrainFind, MongoCall};
use super::super::error::StoreError;
use super::super::owned::{ACL_ENTRIES, PRINCIPAL_USER};
use super::super::Store;

/// `PermissionBits.SHARE`: who holds it on a resource may share it.
pub const SHARE_BIT: i32 = 8;

/// Who an ACL entry gives access to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Group(ObjectId),
    Role(String),
}

impl Principal {
    fn filter(&self) -> Document {
        match self {
            Principal::Group(id) => {
                doc! { "principalType": "group", "principalId": id, "principalModel": "Group" }
            }
            Principal::Role(name) => {
                doc! { "principalType": "role", "principalId": name, "principalModel": "Role" }
            }
        }
    }
}

/// The collection holding a resource type's documents.
fn resource_collection(resource_type: &str) -> &'static str {
    match resource_type {
        "agent" => "agents",
        "promptGroup" => "promptgroups",
        "mcpServer" => "mcpservers",
        _ => "skills",
    }
}

/// An existing entry for the same principal and resource.
#[derive(Clone, Debug)]
pub struct ExistingEntry {
    pub id: ObjectId,
    pub perm_bits: i32,
}

impl Store {
    /// The `_id` of the resource `id` names (its hex `_id`, or an agent's `agent_…` id), if it
    /// exists.
    pub async fn find_resource(
        &self,
        resource_type: &str,
        id: &str,
    ) -> Result<Option<ObjectId>, StoreError> {
        let filter = match ObjectId::parse_str(id) {
            Ok(oid) => doc! { "_id": oid },
            Err(_) => doc! { "id": id },
        };
        Ok(self
            .collection(resource_collection(resource_type))
            .find_one(filter)
            .projection(doc! { "_id": 1 })
            .deadline("reading a shared resource")
            .await?
            .and_then(|d| d.get_object_id("_id").ok()))
    }

    /// The accounts that may share the resource (their entry carries SHARE).
    pub async fn resource_sharers(
        &self,
        resource_type: &str,
        resource: ObjectId,
    ) -> Result<Vec<ObjectId>, StoreError> {
        let docs: Vec<Document> = self
            .collection(ACL_ENTRIES)
            .find(doc! {
                "principalType": PRINCIPAL_USER, "resourceType": resource_type,
                "resourceId": resource, "permBits": { "$bitsAllSet": SHARE_BIT },
            })
            .projection(doc! { "principalId": 1 })
            .drain("reading ACL entries")
            .await?;
        Ok(docs
            .iter()
            .filter_map(|d| d.get_object_id("principalId").ok())
            .collect())
    }

    /// The entry LibreChat would find for this principal and resource.
    pub async fn find_grant(
        &self,
        principal: &Principal,
        resource_type: &str,
        resource: ObjectId,
    ) -> Result<Option<ExistingEntry>, StoreError> {
        let mut filter = principal.filter();
        filter.insert("resourceType", resource_type);
        filter.insert("resourceId", resource);
        Ok(self
            .collection(ACL_ENTRIES)
            .find_one(filter)
            .deadline("reading ACL entries")
            .await?
            .and_then(|d| {
                Some(ExistingEntry {
                    id: d.get_object_id("_id").ok()?,
                    perm_bits: match d.get("permBits")? {
                        Bson::Int32(b) => *b,
                        Bson::Int64(b) => *b as i32,
                        Bson::Double(b) => *b as i32,
                        _ => 0,
                    },
                })
            }))
    }

    /// The seeded access role of a bundle (`agent_viewer`, …), when LibreChat seeded one.
    async fn access_role_id(
        &self,
        resource_type: &str,
        bundle: &str,
    ) -> Result<Option<ObjectId>, StoreError> {
        Ok(self
            .collection("accessroles")
            // The seeded, tenant-less one: `{accessRoleId, tenantId}` is what is unique.
            .find_one(doc! { "accessRoleId": format!("{resource_type}_{bundle}"), "tenantId": { "$exists": false } })
            .projection(doc! { "_id": 1 })
            .deadline("reading access roles")
            .await?
            .and_then(|d| d.get_object_id("_id").ok()))
    }

    /// `grantPermission`'s write: `permBits` and `grantedAt` (and `roleId` when LibreChat
    /// seeded that bundle) on (principal, resource), with the `_id` chosen by the caller so
    /// that the record can name the entry before it exists. Unlike LibreChat's upsert it never
    /// changes an entry it did not write: returns false, writing nothing, when one made in
    /// LibreChat (since the caller looked) holds the pair.
    pub async fn put_grant(
        &self,
        entry: ObjectId,
        principal: &Principal,
        resource_type: &str,
        resource: ObjectId,
        bundle: &str,
        perm_bits: i32,
    ) -> Result<bool, StoreError> {
        let mut filter = principal.filter();
        filter.insert("resourceType", resource_type);
        filter.insert("resourceId", resource);
        let now = DateTime::now();
        let mut set = doc! { "permBits": perm_bits, "grantedAt": now, "updatedAt": now };
        if let Some(role) = self.access_role_id(resource_type, bundle).await? {
            set.insert("roleId", role);
        }
        let mut ours = filter.clone();
        ours.insert("_id", entry);
        let updated = self
            .collection(ACL_ENTRIES)
            .update_one(ours, doc! { "$set": set.clone() })
            .deadline("granting access")
            .await?;
        if updated.matched_count > 0 {
            return Ok(true);
        }
        // Only `$setOnInsert`: an entry that appeared meanwhile is matched and left as it is.
        set.insert("_id", entry);
        set.insert("createdAt", now);
        set.insert("__v", 0);
        let inserted = self
            .collection(ACL_ENTRIES)
            .update_one(filter, doc! { "$setOnInsert": set })
            .upsert(true)
            .deadline("granting access")
            .await?;
        Ok(inserted.upserted_id.is_some())
    }

    /// Removes one entry this object wrote.
    pub async fn remove_grant(&self, entry: ObjectId) -> Result<(), StoreError> {
        self.delete_many(ACL_ENTRIES, doc! { "_id": entry })
            .await
            .map(|_| ())
    }
}
