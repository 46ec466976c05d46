//! `LibreChatRole`: a custom LibreChat role and its permissions, or the declared part of a
//! built-in one (USER, ADMIN).
// kube's `printcolumn(...)` repeats the same keys once per column, which clippy misreads.
#![allow(clippy::duplicated_attributes)]

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::access::{AccessGrant, GrantStatus};
use super::common::InstanceRef;

/// A LibreChat role, kept as declared.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "librechat.ai",
    version = "v1alpha1",
    kind = "LibreChatRole",
    plural = "librechatroles",
    shortname = "lcrole",
    category = "librechat",
    namespaced,
    status = "LibreChatRoleStatus",
    doc = "A custom LibreChat role with its permissions (deleting it moves its users to USER), or the declared permission types of USER or ADMIN.",
    printcolumn(name = "Role", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.users"),
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
pub struct LibreChatRoleSpec {
    /// The LibreChatInstance the role lives in. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "instanceRef is immutable"}]))]
    pub instance_ref: InstanceRef,
    /// The role's name in LibreChat: a custom name, or exactly `USER` or `ADMIN` to declare
    /// permission types of a built-in role. Immutable.
    #[schemars(length(min = 1, max = 500))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "the role name is immutable"}]))]
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 2000))]
    pub description: Option<String>,
    /// `{TYPE: {KEY: true|false}}` in LibreChat's own shape, e.g. `AGENTS: {USE: true,
    /// SHARE: false}`. A custom role holds exactly these (LibreChat denies what is missing);
    /// on USER and ADMIN only the declared keys are set.
    #[serde(default)]
    pub permissions: BTreeMap<String, BTreeMap<String, bool>>,
    /// Access given to everyone with this role on existing LibreChat resources.
    #[serde(default)]
    #[schemars(length(max = 200))]
    pub grants: Vec<AccessGrant>,
}

/// What the operator observed of the role.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibreChatRoleStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// How many LibreChat accounts have this role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users: Option<i64>,
    /// Declared permission types that LibreChat re-imposes from librechat.yaml at its next
    /// start (built-in roles only; see the instance's `librechatYaml.interfaceKeys`).
    #[serde(default)]
    pub overridden_at_restart: Vec<String>,
    #[serde(default)]
    pub grants: Vec<GrantStatus>,
    /// The instance this object was applied to (`namespace/name`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
}

impl LibreChatRoleSpec {
    /// Problems LibreChat would refuse: the name, unknown permission types or keys, grants.
    pub fn check(&self) -> Result<(), String> {
        crate::librechat::permissions::check_role_name(&self.name, false)?;
        crate::librechat::permissions::check_permissions(&self.permissions)?;
        if self
            .description
            .as_ref()
            .is_some_and(|d| d.chars().count() > 2000)
        {
            return Err("description is longer than 2000 characters".into());
        }
        super::access::check_grants(&self.grants)
    }
}
