//! `UserBan`: a ban that LibreChat's own `checkBan` enforces.
// kube's `printcolumn(...)` repeats the same keys once per column, which clippy misreads.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::InstanceRef;

/// Locks a user (or an IP address) out of LibreChat until the object is deleted or its end.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "librechat.ai",
    version = "v1alpha1",
    kind = "UserBan",
    plural = "userbans",
    shortname = "ban",
    shortname = "lcban",
    category = "librechat",
    namespaced,
    status = "UserBanStatus",
    doc = "A ban that LibreChat's checkBan enforces; lifted when the object is deleted or its time is up.",
    printcolumn(name = "User", type_ = "string", json_path = ".spec.userRef.name"),
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "IP", type_ = "string", json_path = ".spec.ip"),
    printcolumn(name = "Active", type_ = "boolean", json_path = ".status.active"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Condition",
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
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "[has(self.userRef), has(self.email), has(self.ip)].filter(x, x).size() == 1",
     "message": "set exactly one of userRef, email and ip"},
    {"rule": "!(has(self.duration) && has(self.until))", "message": "set at most one of duration and until"}
]))]
pub struct UserBanSpec {
    /// The LibreChatInstance whose users are banned. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "instanceRef is immutable"}]))]
    pub instance_ref: InstanceRef,
    /// A LibreChatUser in this namespace. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "the ban's target is immutable"}]))]
    pub user_ref: Option<UserRef>,
    /// The email of any LibreChat account, managed or not. Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "the ban's target is immutable"}]))]
    pub email: Option<String>,
    /// An IPv4 or IPv6 address, as LibreChat sees it (`req.ip` without the port). Immutable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "the ban's target is immutable"}]))]
    pub ip: Option<String>,
    /// How long the ban lasts from its creation, e.g. `90m`, `24h`, `7d`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub duration: Option<String>,
    /// When the ban ends (RFC 3339). Neither `duration` nor `until`: permanent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
    /// Why; shown in events and status.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub reason: Option<String>,
}

/// A LibreChatUser in the ban's namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct UserRef {
    /// Name of the LibreChatUser.
    pub name: String,
}

/// What the operator observed of the ban.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserBanStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Whether the ban is in force in LibreChat now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<bool>,
    /// The banned account's `_id` as hex (user and email bans).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// When the ban ends (RFC 3339); absent for a permanent ban.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The instance this object was applied to (`namespace/name`). `instanceRef` is immutable;
    /// the operator refuses to apply the object anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// What the ban was applied to (`user:<id>` or `ip:<address>`); the target cannot change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}
