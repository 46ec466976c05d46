//! `LibreChatUser`: one LibreChat account, declared.
// kube's `printcolumn(...)` repeats the same keys once per column, which clippy misreads.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::{InstanceRef, SecretKeyRef};

/// Length of a generated password when `generate.length` is not given.
pub const DEFAULT_GENERATED_PASSWORD_LENGTH: u32 = 24;

/// One LibreChat account, kept as declared.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "librechat.ai",
    version = "v1alpha1",
    kind = "LibreChatUser",
    plural = "librechatusers",
    shortname = "lcu",
    category = "librechat",
    namespaced,
    status = "LibreChatUserStatus",
    doc = "A LibreChat account, created and kept as declared, and removed or released on deletion.",
    printcolumn(name = "Email", type_ = "string", json_path = ".spec.email"),
    printcolumn(name = "Role", type_ = "string", json_path = ".status.role"),
    printcolumn(
        name = "Provider",
        type_ = "string",
        json_path = ".spec.provider",
        priority = 1
    ),
    printcolumn(
        name = "Instance",
        type_ = "string",
        json_path = ".spec.instanceRef.name"
    ),
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
        name = "Verification",
        type_ = "string",
        json_path = ".status.verification.state",
        priority = 1
    ),
    printcolumn(
        name = "UserID",
        type_ = "string",
        json_path = ".status.userId",
        priority = 1
    ),
    printcolumn(
        name = "Balance",
        type_ = "integer",
        json_path = ".status.balance.tokenCredits",
        priority = 1
    ),
    printcolumn(
        name = "Terms",
        type_ = "boolean",
        json_path = ".status.termsAccepted",
        priority = 1
    ),
    printcolumn(
        name = "Plugins",
        type_ = "string",
        json_path = ".status.plugins",
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
    {"rule": "!has(self.password) || !has(self.provider) || self.provider == 'local'",
     "message": "password applies only to provider 'local'; SSO accounts log in through their identity provider"}
]))]
pub struct LibreChatUserSpec {
    /// The LibreChatInstance whose database holds this account. Immutable.
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "instanceRef is immutable"}]))]
    pub instance_ref: InstanceRef,
    /// The account's email, its identity in LibreChat. Stored trimmed and lower-cased. Immutable.
    #[schemars(length(min = 3, max = 254))]
    #[schemars(extend("x-kubernetes-validations" = [{"rule": "self == oldSelf", "message": "email is immutable: create a new LibreChatUser instead"}]))]
    pub email: String,
    /// Display name (3 to 80 characters, as LibreChat's registration requires).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 3, max = 80))]
    pub name: Option<String>,
    /// Username (2 to 80 characters, stored lower-cased; LibreChat does not require it to be unique).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 2, max = 80))]
    pub username: Option<String>,
    /// `USER` (default), `ADMIN`, or the name of a custom LibreChat role. Declared, it is kept;
    /// omitted, `USER` is set at creation and later changes (an SSO role sync, say) are left alone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64), regex(pattern = r"^[A-Za-z0-9_-]+$"))]
    pub role: Option<String>,
    /// How the person logs in: `local` (default, email and password) or an SSO provider, which
    /// pre-provisions the account without a password so that the first SSO login links to it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Provider")]
    pub provider: Option<Provider>,
    /// Whether the email counts as verified (default true). `true` marks the account verified
    /// and removes its pending verification links. `false` starts it unverified and issues
    /// LibreChat's own verification link once: emailed through the instance's `smtp` relay, or
    /// without one written to Secret `<name>-verification` (key `url`, or `token` without the
    /// instance's `domainClient`); the person verifying through LibreChat is LibreChat's
    /// decision and is never undone. An unverified local account cannot log in unless
    /// LibreChat has `ALLOW_UNVERIFIED_EMAIL_LOGIN=true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_verified: Option<bool>,
    /// Log the user out everywhere: set to the current time (RFC 3339, e.g.
    /// `2026-12-02T16:00:00Z`); every session of the account is deleted once, when the value
    /// moves past the one last applied (`status.actions.logout`). A time in the future is
    /// refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_at: Option<String>,
    /// Reset the account's two-factor authentication (a locked-out user): set to the current
    /// time; LibreChat's own 2FA disable write is applied once (`status.actions.resetTwoFactor`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_two_factor_at: Option<String>,
    /// Issue a new verification link (with `emailVerified: false`): set to the current time; one
    /// new link replaces the old ones (`status.actions.resendVerification`). A resync never
    /// issues one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_verification_at: Option<String>,
    /// The account's password (provider `local` only). Neither field: the account can log in
    /// only after a password reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<PasswordSource>,
    /// What deleting this object does to the account: `Retain` (default) leaves it in LibreChat,
    /// `Delete` removes it with all its data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "DeletionPolicy")]
    pub deletion_policy: Option<DeletionPolicy>,
    /// With `deletionPolicy: Delete`, also delete the user's billing `transactions` (default
    /// false: keep the audit trail).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_transactions: Option<bool>,
    /// Whether an existing LibreChat account with this email that no object manages may be
    /// taken over (default false). Adoption overwrites name, username, role and emailVerified
    /// with the declared values, and the password when one is declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopt: Option<bool>,
    /// Credits granted to the account and its auto-refill settings (LibreChat's balance).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<super::balance::UserBalance>,
    /// Plugins (tools, MCP servers, web search) installed on the account, with credentials
    /// from Secrets in this object's namespace, stored encrypted with the instance's
    /// `credentials`. Removing an entry uninstalls it and deletes the credentials the operator
    /// wrote (an MCP server's OAuth tokens, the person's own, stay); plugins installed in
    /// LibreChat itself are left alone. A tenant
    /// may declare them only on accounts it manages.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 64))]
    pub plugins: Vec<super::plugins::PluginSpec>,
}

/// LibreChat's `provider` values.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    #[default]
    Local,
    Openid,
    Google,
    Github,
    Discord,
    Facebook,
    Apple,
    Saml,
    Ldap,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Local => "local",
            Provider::Openid => "openid",
            Provider::Google => "google",
            Provider::Github => "github",
            Provider::Discord => "discord",
            Provider::Facebook => "facebook",
            Provider::Apple => "apple",
            Provider::Saml => "saml",
            Provider::Ldap => "ldap",
        }
    }
}

/// Where the password comes from: at most one of the two.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {"rule": "!(has(self.secretRef) && has(self.generate))", "message": "set at most one of secretRef and generate"}
]))]
pub struct PasswordSource {
    /// A Secret you own. Changing the value rotates the password and logs the user out
    /// everywhere.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_ref: Option<SecretKeyRef>,
    /// Let the operator generate a password into a Secret it creates and owns (keys `email`,
    /// `password`, and `url` when the instance has `domainClient`). Delete that Secret to
    /// rotate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generate: Option<GeneratePassword>,
}

/// A generated password.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GeneratePassword {
    /// Name of the Secret to create (same namespace). An existing Secret that the operator does
    /// not own is never overwritten.
    #[schemars(length(min = 1, max = 253))]
    pub secret_name: String,
    /// Password length (default 24; at least the instance's minimum, at most 128).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 8, max = 128))]
    pub length: Option<u32>,
}

/// What deleting the object does to the account.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum DeletionPolicy {
    /// Leave the account in LibreChat and stop managing it.
    #[default]
    Retain,
    /// Delete the account and all its data.
    Delete,
}

/// What the operator observed of the account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibreChatUserStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` and `PasswordReady`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// The account's MongoDB `_id` as hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// The role the account has in LibreChat: the declared one, or LibreChat's own choice
    /// where `role` is not declared.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Which version of the password Secret was applied (`<uid>/<resourceVersion>`, followed
    /// by `#<key>` for a key other than `password`); never the password or a hash of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_secret_version: Option<String>,
    /// The instance's minimum password length when that version was applied: a restarted
    /// operator takes the password as applied without reading its Secret again only while the
    /// minimum is not higher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_min_length: Option<u32>,
    /// The instance this object was applied to (`namespace/name`). `instanceRef` is immutable;
    /// the operator refuses to apply the object anywhere else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<String>,
    /// When the account was last compared with the declaration (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
    /// Whether the account accepted the current terms of service (read from LibreChat).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_accepted: Option<bool>,
    /// When the account accepted them (RFC 3339; LibreChat v0.8.8 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms_accepted_at: Option<String>,
    /// The account's credits and the grants applied (with LibreChat's balance enabled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<super::balance::UserBalanceStatus>,
    /// The plugin keys installed and credentialed as declared (never their credentials).
    #[serde(default)]
    pub plugins: Vec<String>,
    /// Email verification: `Verified`, or `Pending` with the link's expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<VerificationStatus>,
    /// The one-shot actions applied, by the trigger value that asked for them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actions: Option<ActionsStatus>,
}

/// Where the account's email verification stands.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerificationStatus {
    /// `Pending` (a link was issued and the person has not verified) or `Verified`.
    pub state: VerificationState,
    /// When the last link stops working (RFC 3339); LibreChat's links last 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// How the last link was delivered: `email` or `secret` (Secret `<name>-verification`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered_by: Option<String>,
}

#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
pub enum VerificationState {
    #[default]
    Pending,
    Verified,
}

/// The one-shot actions applied to the account.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ActionsStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout: Option<AppliedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_two_factor: Option<AppliedAction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resend_verification: Option<AppliedAction>,
}

/// One action, applied.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppliedAction {
    /// The trigger value it was applied for.
    pub requested_at: String,
    /// When the operator applied it (RFC 3339).
    pub applied_at: String,
}

impl LibreChatUserSpec {
    pub fn provider(&self) -> Provider {
        self.provider.unwrap_or_default()
    }
    pub fn role(&self) -> &str {
        self.role.as_deref().unwrap_or("USER")
    }
    pub fn email_verified(&self) -> bool {
        self.email_verified.unwrap_or(true)
    }
    pub fn deletion_policy(&self) -> DeletionPolicy {
        self.deletion_policy.unwrap_or_default()
    }
}
