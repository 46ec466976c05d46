//! `LibreChatGroup`: a local LibreChat group, its members and what it is given access to.
// kube's `printcolumn(...)` repeats the same keys once per column, which clippy misreads.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::{AccessGrant, GrantStatus};
use super::common::InstanceRef;

/// A local LibreChat group (never an Entra-synced one), kept as declared.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "librechat.ai",
    version = "v1alpha1",
    kind = "LibreChatGroup",
    plural = "librechatgroups",
    shortname = "lcgroup",
    category = "librechat",
    namespaced,
    status = "LibreChatGroupStatus",
    doc = "A local LibreChat group with its members and grants; deleting the object deletes the group.",
    printcolumn(name = "Group", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Members", type_ = "integer", json_path = ".status.memberCount"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".spec.instanceRef.name",
        priority = 1
    ),
    printcolumn(
        name = "Message",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].message",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct LibreChatGroupSpec {
    /// The LibreChatInstance the group lives in. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "instanceRef is immutable"}]))]
    pub instance_ref: InstanceRef,
    /// The group's name in LibreChat, the group's identity for the operator. Immutable.
    #[schemars(length(min = 1, max = 500))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "the group name is immutable"}]))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 500))]
    pub email: Option<String>,
    /// Members: LibreChatUsers of this namespace and/or emails of LibreChat accounts. Members
    /// that do not exist yet are added when they appear.
    #[serde(default)]
    #[schemars(length(max = 500))]
    pub members: Vec<GroupMember>,
    /// Access given to the group on existing LibreChat resources.
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub grants: Vec<AccessGrant>,
}

/// One member: exactly one of `userRef` and `email` (checked by the controller, InvalidSpec).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GroupMember {
    /// A LibreChatUser in the group's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_ref: Option<MemberRef>,
    /// The email of a LibreChat account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 320))]
    pub email: Option<String>,
}

/// A LibreChatUser; members live in the group's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MemberRef {
    pub name: String,
    /// Must be the group's own namespace when set (a group cannot reach into another
    /// namespace's users).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

impl GroupMember {
    /// How status and messages name the member.
    pub fn label(&self) -> String {
        match (&self.user_ref, &self.email) {
            (Some(r), _) => format!("LibreChatUser {}", r.name),
            (None, Some(e)) => e.clone(),
            (None, None) => "(empty member)".into(),
        }
    }
}

/// What the operator observed of the group.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibreChatGroupStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The group's `_id` in LibreChat (hex).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    /// Declared members that are in the group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub member_count: Option<i64>,
    /// Declared members not found yet; added when they appear.
    #[serde(default)]
    pub pending_members: Vec<String>,
    #[serde(default)]
    pub grants: Vec<GrantStatus>,
    /// The instance this object was applied to (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl LibreChatGroupSpec {
    /// Problems LibreChat's admin API would refuse, or that cross out of `own` namespace.
    pub fn check(&self, own: &str) -> Result<(), String> {
        let spec = self;
        crate::librechat::names::check_shown_name("group", &spec.name)?;
        if spec.name.chars().count() > 500 {
            return Err("group name is longer than LibreChat's 500 characters".into());
        }
        if spec
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2000)
        {
            return Err("description is longer than LibreChat's 2000 characters".into());
        }
        if spec.email.as_ref().is_some_and(|e| e.chars().count() > 500) {
            return Err("email is longer than LibreChat's 500 characters".into());
        }
        // One address: its domain is what a tenant's emailDomains are checked against.
        if let Some(email) = &spec.email {
            super::validate::check_email(email).map_err(|why| format!("the group's {why}"))?;
        }
        if spec.members.len() > 500 {
            return Err("more than LibreChat's 500 members".into());
        }
        for m in &spec.members {
            match (&m.user_ref, &m.email) {
                (Some(r), None) if r.namespace.as_deref().is_none_or(|n| n == own) => {}
                (Some(r), None) => {
                    let other = r.namespace.as_deref().unwrap_or_default();
                    return Err(format!("member LibreChatUser {other}/{} is in another namespace: a group's members are LibreChatUsers of its own namespace '{own}' (or emails)", r.name));
                }
                (None, Some(e)) => {
                    super::validate::check_email(e)?;
                }
                _ => return Err("each member sets exactly one of userRef and email".into()),
            }
        }
        super::access::check_grants(&spec.grants)
    }
}
