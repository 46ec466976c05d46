//! `LibreChatInstance`: where one LibreChat deployment keeps its data, and who may manage
//! users in it.
// kube's `printcolumn(...)` repeats the same keys once per column, which clippy misreads.
#![allow(clippy::duplicated_attributes)]

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::common::SecretKeyRef;

/// LibreChat's own default for `MIN_PASSWORD_LENGTH`.
pub const DEFAULT_MIN_PASSWORD_LENGTH: u32 = 8;
/// LibreChat rejects longer passwords at registration and in the schema.
pub const MAX_PASSWORD_LENGTH: u32 = 128;
/// How often instances are health-checked and users compared with the database.
pub const DEFAULT_RESYNC_PERIOD: &str = "5m";

/// Declares one LibreChat deployment's MongoDB (and optional Redis), and the policy for the
/// users, bans and invites that point at it.
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "librechat.ai",
    version = "v1alpha1",
    kind = "LibreChatInstance",
    plural = "librechatinstances",
    shortname = "lci",
    category = "librechat",
    namespaced,
    status = "LibreChatInstanceStatus",
    doc = "A LibreChat deployment whose MongoDB (and Redis) the operator writes users, bans and invites into.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Mongo",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"MongoReachable\")].reason"
    ),
    printcolumn(
        name = "Redis",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"RedisReachable\")].reason"
    ),
    printcolumn(name = "Users", type_ = "integer", json_path = ".status.stats.users"),
    printcolumn(
        name = "Managed",
        type_ = "integer",
        json_path = ".status.stats.managedUsers"
    ),
    printcolumn(
        name = "Terms",
        type_ = "string",
        json_path = ".status.terms.appliedVersion",
        priority = 1
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Feed",
        type_ = "string",
        json_path = ".status.changeFeed",
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
pub struct LibreChatInstanceSpec {
    /// MongoDB that LibreChat uses (its `MONGO_URI`).
    pub mongo: MongoSpec,
    /// Redis that LibreChat uses, if any (`USE_REDIS`/`REDIS_URI`). Only caches live there; the
    /// operator invalidates them after changes so that LibreChat sees them at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisSpec>,
    /// LibreChat's `DOMAIN_CLIENT`, e.g. `https://chat.example.com`: the base URL of invite
    /// links and of the `url` key in generated password Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_client: Option<String>,
    /// Password rules mirrored from LibreChat's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_policy: Option<PasswordPolicy>,
    /// Namespaces whose users, bans and invites may point at this instance: names, or `["*"]`
    /// for all. Default: only the instance's own namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_namespaces: Option<Vec<String>>,
    /// Whether objects in namespaces other than the instance's own may declare `role: ADMIN`.
    /// Default false.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_admin: Option<bool>,
    /// What objects in the other allowed namespaces (tenants) may do beyond creating accounts
    /// and managing the accounts they created. Only the instance's own namespace administers
    /// the instance; see the README's security model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_policy: Option<TenantPolicy>,
    /// An SMTP relay for invitation emails (UserInvite `sendEmail`). Without it, invitation
    /// links are delivered only in Secrets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub smtp: Option<SmtpSpec>,
    /// How often the instance is health-checked and each user compared with the database
    /// (drift correction), as a duration such as `30s`, `5m`, `1h`. Default `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^([0-9]+(ms|s|m|h|d))+$"))]
    pub resync_period: Option<String>,
    /// How many accounts `deletionPolicy: Delete` objects of one namespace may delete per hour
    /// before further deletions wait for a person, so that a bad merge or a pruned folder
    /// cannot erase the deployment's users. Default: at most 10 per namespace per hour.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deletion_guard: Option<DeletionGuard>,
    /// Mirrors LibreChat's `balance` configuration (`librechat.yaml`), so that accounts the
    /// operator creates get the balance record LibreChat's registration would give them, and
    /// LibreChatUser credit grants can be applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub balance: Option<super::balance::BalanceConfig>,
    /// The terms of service in force: changing `version` makes every user accept them again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub terms: Option<super::balance::TermsSpec>,
    /// LibreChat's `CREDS_KEY`/`CREDS_IV`, needed only by users that declare plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<super::plugins::CredentialsSpec>,
    /// What this deployment's librechat.yaml imposes that the operator cannot see.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub librechat_yaml: Option<LibreChatYaml>,
}

/// What librechat.yaml sets, as far as the operator needs to know it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibreChatYaml {
    /// The `interface` keys librechat.yaml sets explicitly (e.g. `agents`, `prompts`,
    /// `mcpServers`). LibreChat re-imposes the matching permission types of USER and ADMIN at
    /// every start, so LibreChatRoles declaring them report `overriddenAtRestart`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface_keys: Option<Vec<String>>,
}

/// The limit on account deletions.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionGuard {
    /// Accounts that may be deleted within one hour by the objects of one namespace (default
    /// 10; 0 makes every deletion wait for `confirmedUntil`). Deletions beyond it wait, with
    /// reason `DeletionsRateLimited`. Each namespace has its own allowance: a tenant never
    /// spends the administrators' or another tenant's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0, max = 100000))]
    pub max_per_hour: Option<u32>,
    /// Confirms a bulk deletion: until this time (RFC 3339, e.g. `2026-12-02T18:00:00Z`) the
    /// limit does not apply. Back up LibreChat's database first, as LibreChat advises for bulk
    /// deletions; set it a few minutes ahead and let it lapse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed_until: Option<String>,
}

/// Where LibreChat's MongoDB is.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MongoSpec {
    /// Secret key holding the full `mongodb://` or `mongodb+srv://` URI, credentials included.
    /// The database is taken from the URI path (default `LibreChat`, as in LibreChat).
    pub uri_secret_ref: SecretKeyRef,
}

/// Where LibreChat's Redis is, and how LibreChat names its keys there.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisSpec {
    /// Secret key holding a `redis://` or `rediss://` URI. Without it the operator cannot
    /// invalidate LibreChat's caches, and changes show once LibreChat's cache entries expire.
    /// `rediss://` is TLS, the server's certificate checked against Mozilla's root
    /// certificates (built in); a URI ending in `#insecure` skips that check (a self-signed test
    /// server only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_secret_ref: Option<SecretKeyRef>,
    /// LibreChat's `REDIS_KEY_PREFIX` (default empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_prefix: Option<String>,
    /// Mirrors LibreChat's `USE_REDIS`; it changes the names of LibreChat's ban-cache keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_redis: Option<bool>,
}

/// The instance's rules for tenant namespaces.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TenantPolicy {
    /// Whether a tenant object that adopted an existing account (one the operator did not
    /// create for it) may change that account's role and password, and delete it with
    /// `deletionPolicy: Delete`. Default false: a tenant may adopt an unprivileged account to
    /// keep its name, username and email verification as declared, nothing more. A provider
    /// change is the instance's own namespace's, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_adopted_accounts: Option<bool>,
    /// Whether tenant objects may grant credits and set auto-refill (`spec.balance` of a
    /// LibreChatUser). Default false: credits are money-like, so only the instance's own
    /// namespace grants them unless this says otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grant_credits: Option<bool>,
    /// Whether tenant objects may create and change custom roles (LibreChatRole) and grant
    /// them access. Default false. The built-in USER and ADMIN roles are changed only from the
    /// instance's own namespace, whatever this says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manage_roles: Option<bool>,
    /// Custom roles (declared from the instance's namespace or made in LibreChat) that tenant
    /// LibreChatUsers may put their accounts in. A role carries its grants and permissions to
    /// every account in it, so a tenant may otherwise declare only `USER` and the custom roles
    /// its own namespace's LibreChatRoles declare; `ADMIN` is `allowAdmin`'s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignable_roles: Option<Vec<String>>,
    /// The email domains each tenant namespace may declare accounts (LibreChatUser, adopted
    /// or created) and issue invitations (UserInvite) for, by namespace, with `*` for every
    /// tenant: `{team-a: [a.example.com], "*": [example.com]}` lets team-a declare
    /// `@a.example.com` and `@example.com` emails and every other tenant `@example.com` only.
    /// `*.example.com` admits every subdomain of example.com (not example.com itself). A
    /// tenant whose email is in none of its domains gets `NotPermitted` and nothing is
    /// written; a tenant with no entry (and no `*`) may declare none. Unset: any email. Set it
    /// when tenants are teams of one organisation, so that no team can pre-provision (and
    /// then manage, ban or delete) the account of a person of another team before that person
    /// first signs in. The instance's own namespace is not limited.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_domains: Option<std::collections::BTreeMap<String, Vec<String>>>,
}

/// An SMTP relay.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SmtpSpec {
    /// Host name of the relay.
    #[schemars(length(min = 1, max = 253))]
    pub host: String,
    /// Port (default 587 with `starttls`, 465 with `tls`, 25 with `none`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// The sender, e.g. `LibreChat <noreply@example.com>`.
    #[schemars(length(min = 3))]
    pub from: String,
    /// A Secret (same namespace) with keys `username` and `password`; omit for a relay that
    /// needs no login.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret_ref: Option<SecretNameRef>,
    /// `starttls` (default), `tls` (TLS from the first byte), or `none` (plain text: only for a
    /// relay on a trusted network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SmtpSecurity")]
    pub security: Option<SmtpSecurity>,
}

/// How the connection to the relay is protected.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpSecurity {
    #[default]
    Starttls,
    Tls,
    None,
}

/// A Secret in the same namespace, by name.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
pub struct SecretNameRef {
    /// Name of the Secret.
    pub name: String,
}

/// Password rules.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PasswordPolicy {
    /// LibreChat's `MIN_PASSWORD_LENGTH` (default 8). Passwords are at most 128 characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 128))]
    pub min_length: Option<u32>,
}

/// What the operator observed of the instance.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct LibreChatInstanceStatus {
    /// The generation the conditions describe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `MongoReachable`, `RedisReachable` and `Ready`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    /// Counts in the style of LibreChat's `user-stats` script, refreshed every resync period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stats: Option<InstanceStats>,
    /// How the operator learns of LibreChat's own writes to accounts (a registration, an edit
    /// by hand, a self-deletion): `ChangeStream` (a MongoDB change stream, within moments; a
    /// replica set offers one), `Resync` (the server offers none: at the next resync), or
    /// `Starting`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub change_feed: Option<String>,
    /// The identity mark of the database this instance's objects are written to (a document
    /// of the operator's in that database, carried along by a dump and restore). A URI that
    /// reaches a database with another mark, or none, stops the instance (`DatabaseChanged`)
    /// until the annotation `librechat.ai/replace-database` names this mark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub database_id: Option<String>,
    /// The terms version applied to the accounts.
    // Written as null when none is: a merge patch then removes the version an instance showed
    // before another instance's version came into force on its database.
    #[serde(default)]
    pub terms: Option<super::balance::TermsStatus>,
}

/// Account counts of the instance's database.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceStats {
    /// Every account in LibreChat's `users` collection.
    pub users: u64,
    /// Accounts owned by a LibreChatUser.
    pub managed_users: u64,
    /// Accounts with a verified email.
    pub verified_users: u64,
    /// Bans in force (user and IP).
    pub active_bans: u64,
    /// Invitations not yet used or expired.
    pub pending_invites: u64,
    /// When these counts were taken (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// Account deletions allowed per hour when the instance does not say.
pub const DEFAULT_DELETIONS_PER_HOUR: u32 = 10;

impl LibreChatInstance {
    /// The conditions its status holds (none before its first status).
    pub fn conditions(&self) -> &[Condition] {
        self.status.as_ref().map_or(&[], |s| &s.conditions)
    }
}

impl LibreChatInstanceSpec {
    /// Deletions allowed per hour by the deletion guard.
    pub fn deletions_per_hour(&self) -> u32 {
        self.deletion_guard
            .as_ref()
            .and_then(|g| g.max_per_hour)
            .unwrap_or(DEFAULT_DELETIONS_PER_HOUR)
    }

    /// Whether a person confirmed bulk deletions until after `now_ms`.
    pub fn deletions_confirmed_at(&self, now_ms: i64) -> bool {
        self.deletion_guard
            .as_ref()
            .and_then(|g| g.confirmed_until.as_deref())
            .and_then(|t| t.parse::<jiff::Timestamp>().ok())
            .is_some_and(|until| until.as_millisecond() > now_ms)
    }

    pub fn min_password_length(&self) -> u32 {
        self.password_policy
            .as_ref()
            .and_then(|p| p.min_length)
            .unwrap_or(DEFAULT_MIN_PASSWORD_LENGTH)
    }

    pub fn redis_key_prefix(&self) -> String {
        self.redis
            .as_ref()
            .and_then(|r| r.key_prefix.clone())
            .unwrap_or_default()
    }

    pub fn use_redis(&self) -> bool {
        self.redis
            .as_ref()
            .and_then(|r| r.use_redis)
            .unwrap_or(false)
    }

    /// Whether an object in `namespace` may point at this instance, which lives in `own_namespace`.
    pub fn admits_namespace(&self, own_namespace: &str, namespace: &str) -> bool {
        if namespace == own_namespace {
            return true;
        }
        self.allowed_namespaces
            .as_ref()
            .is_some_and(|list| list.iter().any(|n| n == "*" || n == namespace))
    }

    /// Whether an object in `namespace` may declare an ADMIN account, or adopt one.
    pub fn admits_admin(&self, own_namespace: &str, namespace: &str) -> bool {
        namespace == own_namespace || self.allow_admin.unwrap_or(false)
    }

    /// Whether an object in `namespace` may grant credits and set auto-refill.
    pub fn admits_granting_credits(&self, own_namespace: &str, namespace: &str) -> bool {
        namespace == own_namespace
            || self
                .tenant_policy
                .as_ref()
                .and_then(|p| p.grant_credits)
                .unwrap_or(false)
    }

    /// The custom roles the instance lets tenants put their accounts in.
    pub fn tenant_assignable_roles(&self) -> Vec<String> {
        self.tenant_policy
            .as_ref()
            .and_then(|p| p.assignable_roles.clone())
            .unwrap_or_default()
    }

    /// The email domains an object in `namespace` may declare (`None`: any).
    pub fn tenant_email_domains(
        &self,
        own_namespace: &str,
        namespace: &str,
    ) -> Option<Vec<String>> {
        if namespace == own_namespace {
            return None;
        }
        let by_namespace = self.tenant_policy.as_ref()?.email_domains.as_ref()?;
        let mut domains: Vec<String> = [namespace, "*"]
            .iter()
            .filter_map(|key| by_namespace.get(*key))
            .flatten()
            .map(|d| d.to_ascii_lowercase())
            .collect();
        domains.sort();
        domains.dedup();
        Some(domains)
    }

    /// Whether an object in `namespace` may create and change custom roles.
    pub fn admits_managing_roles(&self, own_namespace: &str, namespace: &str) -> bool {
        namespace == own_namespace
            || self
                .tenant_policy
                .as_ref()
                .and_then(|p| p.manage_roles)
                .unwrap_or(false)
    }

    /// The librechat.yaml `interface` keys declared, if the instance says.
    pub fn yaml_interface_keys(&self) -> Option<&[String]> {
        self.librechat_yaml
            .as_ref()
            .and_then(|y| y.interface_keys.as_deref())
    }

    /// LibreChat's balance configuration as declared (disabled when absent).
    pub fn balance_config(&self) -> super::balance::BalanceConfig {
        self.balance.clone().unwrap_or_default()
    }

    /// Whether an object in `namespace` may change role and password of an account
    /// it adopted, and delete it.
    pub fn admits_managing_adopted(&self, own_namespace: &str, namespace: &str) -> bool {
        namespace == own_namespace
            || self
                .tenant_policy
                .as_ref()
                .and_then(|p| p.manage_adopted_accounts)
                .unwrap_or(false)
    }
}
