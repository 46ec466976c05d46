//! `UserInvite`: an invitation link that LibreChat's registration accepts.
// kube's `printcolumn(...)` repeats the same keys once per column, which clippy misreads.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::InstanceRef;

/// LibreChat's own invite lifetime.
pub const DEFAULT_INVITE_LIFETIME: &str = "168h";

/// An invitation for one email address; the link lands in a Secret.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "librechat.ai",
    version = "v1alpha1",
    kind = "UserInvite",
    plural = "userinvites",
    shortname = "inv",
    shortname = "lcinv",
    category = "librechat",
    namespaced,
    status = "UserInviteStatus",
    doc = "An invitation link that LibreChat's registration accepts, delivered in a Secret.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Expires", type_ = "string", json_path = ".status.expiresAt"),
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
pub struct UserInviteSpec {
    /// The LibreChatInstance to invite into. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "instanceRef is immutable"}]))]
    pub instance_ref: InstanceRef,
    /// Who is invited. Stored trimmed and lower-cased. Immutable.
    #[schemars(length(min = 3, max = 254))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "email is immutable"}]))]
    pub email: String,
    /// How long the link stays valid (default `168h`, LibreChat's own lifetime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub expires_in: Option<String>,
    /// The Secret that receives keys `url` and `token` (default `<name>-invite`), owned by this
    /// object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    /// Also email the link to the invitee through the instance's `smtp` relay (default false:
    /// the Secret is the delivery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_email: Option<bool>,
}

/// Where the invitation stands.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, JsonSchema)]
pub enum InvitePhase {
    /// The link works and has not been used.
    Pending,
    /// An account with this email now exists.
    Accepted,
    /// The link's time ran out before it was used.
    Expired,
}

/// What the operator observed of the invitation.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserInviteStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// `Pending`, `Accepted` or `Expired`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "InvitePhase")]
    pub phase: Option<InvitePhase>,
    /// When the link stops working (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// The account's `_id` as hex, once accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The instance this object was applied to (`namespace/name`). `instanceRef` is immutable;
    /// the operator refuses to apply the object anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// When the invitation email was handed to the SMTP relay (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_sent_at: Option<String>,
}
