//! The check a write of a custom role to an account owes: the role's deletion (by the object
//! that declared it) may have begun between the writer's policy read and its write, after the
//! deletion moved the role's accounts to USER, which would leave this one in a role LibreChat
//! no longer has (denied everything, the name blocked for every team, and inherited by whoever
//! declares it next). The role written is recorded in the account's ownership record before
//! the write (`roleCheck`), so a crash or a failed call between the write and the check leaves
//! it to the next reconcile, the object's refusal or its deletion, whatever is declared by
//! then. Only that case moves the account: a role LibreChat's admins replaced under the name,
//! or any other role the account is in now, is LibreChat's to decide.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::{doc, Document};

use super::access::role_key;
use super::collections;
use super::deadline::MongoCall;
use super::ownership::{Claim, FollowUp};
use super::users::StoredUser;
use super::{Store, StoreError};

/// A role a LibreChatRole declares, written to an account and not yet checked: its name, and
/// the `_id` its record named when the writer's policy read it (none in records of versions
/// that kept no `_id`).
#[derive(Clone, Debug, PartialEq)]
pub struct RoleCheck {
    pub role: String,
    pub role_id: Option<ObjectId>,
}

impl RoleCheck {
    pub(super) fn from_record(record: &Document) -> Option<RoleCheck> {
        let check = record.get_document("roleCheck").ok()?;
        Some(RoleCheck {
            role: check.get_str("role").ok()?.to_string(),
            role_id: check.get_object_id("roleId").ok(),
        })
    }

    fn as_doc(&self) -> Document {
        let mut check = doc! { "role": &self.role };
        if let Some(id) = self.role_id {
            check.insert("roleId", id);
        }
        check
    }
}

impl Store {
    /// Records, before a role a LibreChatRole declares is written to the account the claim of
    /// `email` by `owner_uid` names, that the write must be checked (see the module).
    pub async fn promise_role_check(
        &self,
        email: &str,
        owner_uid: &str,
        check: &RoleCheck,
    ) -> Result<(), StoreError> {
        let filter = doc! { "_id": email, "uid": owner_uid };
        let set = doc! { "$set": { "roleCheck": check.as_doc() } };
        self.note_role_check(filter, set).await
    }

    /// Checks the write `check` recorded to `stored` (the claim's account; its `role` as read
    /// before the write is not used): moves it to USER, its caches dropped, if it is in the
    /// role and the role's deletion raced the write, then records the check as done. Returns
    /// whether it moved.
    pub async fn check_written_role(
        &self,
        email: &str,
        owner_uid: &str,
        stored: &StoredUser,
        check: &RoleCheck,
    ) -> Result<bool, StoreError> {
        let mut left = false;
        if self.deleted_under(check).await? {
            // Only if it is still in the role (read in the update itself): the deletion may
            // have moved it already, or LibreChat's admins elsewhere. A drop owed before is
            // left owed when nothing moved.
            self.promise(email, owner_uid, FollowUp::DropCaches).await?;
            left = self.leave_role(stored.id, &check.role).await?;
            if left {
                self.drop_user_caches(stored).await?;
                self.fulfilled(email, owner_uid, FollowUp::DropCaches)
                    .await?;
            }
        }
        // This check only: a newer write's promise stays.
        let filter = doc! { "_id": email, "uid": owner_uid, "roleCheck": check.as_doc() };
        self.note_role_check(filter, doc! { "$unset": { "roleCheck": "" } })
            .await?;
        Ok(left)
    }

    /// The check `claim` still owes its account `stored`, if it owes one (see
    /// [`Store::check_written_role`]). Returns whether the account moved to USER.
    pub async fn finish_role_check(
        &self,
        claim: &Claim,
        stored: &StoredUser,
    ) -> Result<bool, StoreError> {
        let Some(check) = claim.role_check.as_ref() else {
            return Ok(false);
        };
        self.check_written_role(&claim.email, &claim.owner.uid, stored, check)
            .await
    }

    /// Whether the role `check` names is being deleted, or was, by the LibreChatRole that
    /// declared it: its record says so, or names another `_id` now (the name released and
    /// claimed again), or neither a record nor a role of the name is left. A role of the name
    /// under no record, or one handed to the administrators, is not (LibreChat's, or theirs).
    async fn deleted_under(&self, check: &RoleCheck) -> Result<bool, StoreError> {
        match self.access_record(&role_key(&check.role)).await? {
            Some(record) if record.owner.kind == "LibreChatRole" => {
                let claimed_again = check.role_id.is_some_and(|id| record.target != Some(id));
                Ok(claimed_again || record.releasing)
            }
            Some(_) => Ok(false),
            None => Ok(self.find_role(&check.role).await?.is_none()),
        }
    }

    async fn note_role_check(&self, filter: Document, update: Document) -> Result<(), StoreError> {
        self.collection(collections::OWNERS)
            .update_one(filter, update)
            .deadline("recording a role check")
            .await
            .map(|_| ())
    }
}
