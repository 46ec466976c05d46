//! One-shot actions on an account (log out everywhere, reset two-factor authentication, issue
//! a verification link), recorded in the ownership record by the trigger value that asked for
//! them, so a resync, a restart or another replica never repeats one.

use std::collections::BTreeMap;

use mongodb::bson::{doc, oid::ObjectId, Bson, DateTime, Document};

use super::collections;
use super::deadline::MongoCall;
use super::error::StoreError;
use super::Store;

/// The actions the record knows, by the name they are stored under.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum OneShot {
    Logout,
    ResetTwoFactor,
    Verification,
}

impl OneShot {
    pub fn as_str(self) -> &'static str {
        match self {
            OneShot::Logout => "logout",
            OneShot::ResetTwoFactor => "resetTwoFactor",
            OneShot::Verification => "verification",
        }
    }
}

/// Which trigger value each action was last applied for.
pub type AppliedActions = BTreeMap<String, String>;

pub(super) fn applied_from_doc(d: &Document) -> AppliedActions {
    d.get_document("actions")
        .map(|a| {
            a.iter()
                .filter_map(|(k, v)| v.as_str().map(|s| (k.clone(), s.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

impl Store {
    /// Records that `action` was applied for `trigger` (after the action: these actions are
    /// idempotent, so a crash before the record repeats a harmless write).
    pub async fn record_action(
        &self,
        email: &str,
        owner_uid: &str,
        action: OneShot,
        trigger: &str,
    ) -> Result<(), StoreError> {
        let field = format!("actions.{}", action.as_str());
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid },
                doc! { "$set": { field: trigger } },
            )
            .deadline("recording an action")
            .await
            .map(|_| ())
    }

    /// Takes the right to apply `action` for `trigger` before an action that must not happen
    /// twice (an email): true when this call took it.
    pub async fn take_action(
        &self,
        email: &str,
        owner_uid: &str,
        action: OneShot,
        trigger: &str,
    ) -> Result<bool, StoreError> {
        let field = format!("actions.{}", action.as_str());
        self.collection(collections::OWNERS)
            .update_one(
                doc! { "_id": email, "uid": owner_uid, field.clone(): { "$ne": trigger } },
                doc! { "$set": { field: trigger } },
            )
            .deadline("recording an action")
            .await
            .map(|r| r.modified_count == 1)
    }

    /// Gives back a right taken with [`Store::take_action`] when the action failed, restoring
    /// what was recorded before (`None`: nothing).
    pub async fn return_action(
        &self,
        email: &str,
        owner_uid: &str,
        action: OneShot,
        previous: Option<&str>,
    ) -> Result<(), StoreError> {
        let field = format!("actions.{}", action.as_str());
        let update = match previous {
            Some(p) => doc! { "$set": { field: p } },
            None => doc! { "$unset": { field: "" } },
        };
        self.collection(collections::OWNERS)
            .update_one(doc! { "_id": email, "uid": owner_uid }, update)
            .deadline("recording an action")
            .await
            .map(|_| ())
    }

    /// LibreChat's own 2FA disable write (`TwoFactorController.disable2FA`): all five fields.
    pub async fn reset_two_factor(&self, id: ObjectId) -> Result<(), StoreError> {
        let set = doc! {
            "twoFactorEnabled": false,
            "totpSecret": Bson::Null,
            "backupCodes": [],
            "pendingTotpSecret": Bson::Null,
            "pendingBackupCodes": [],
            "updatedAt": DateTime::now(),
        };
        self.collection(collections::USERS)
            .update_one(doc! { "_id": id }, doc! { "$set": set })
            .deadline("resetting two-factor authentication")
            .await
            .map(|_| ())
    }
}
