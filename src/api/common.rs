//! Types shared by every kind: references, the condition vocabulary and helpers.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// API group of every kind this operator serves.
pub const GROUP: &str = "librechat.ai";
/// Finalizer that lets the operator clean up LibreChat state before an object disappears.
pub const FINALIZER: &str = "librechat.ai/cleanup";
/// Label put on every object the operator creates (generated Secrets, invite Secrets).
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY_VALUE: &str = "librechat-operator";

/// Points at the `LibreChatInstance` whose database this object is written to.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InstanceRef {
    /// Name of the LibreChatInstance.
    pub name: String,
    /// Namespace of the LibreChatInstance; defaults to this object's own namespace. The
    /// instance's `spec.allowedNamespaces` must admit this object's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// A kind whose objects are applied to one LibreChatInstance.
pub trait AppliedToInstance {
    fn instance_ref(&self) -> &InstanceRef;
    /// The instance its status says it was applied to (`namespace/name`), if any.
    fn applied_instance(&self) -> Option<&str>;
}

/// Implements [`AppliedToInstance`] for kinds whose spec holds `instance_ref`.
macro_rules! applied_to_instance {
    ($($kind:ty),*) => {$(
        impl AppliedToInstance for $kind {
            fn instance_ref(&self) -> &InstanceRef {
                &self.spec.instance_ref
            }
            fn applied_instance(&self) -> Option<&str> {
                self.status.as_ref()?.instance.as_deref()
            }
        }
    )*};
}
applied_to_instance!(
    super::LibreChatUser,
    super::UserInvite,
    super::UserBan,
    super::LibreChatGroup,
    super::LibreChatRole
);

/// A key inside a Secret in the same namespace as the object that refers to it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    /// Name of the Secret (same namespace as the referring object).
    pub name: String,
    /// Key inside the Secret's `data`.
    pub key: String,
}

/// Condition types used across kinds.
pub mod condition {
    pub const READY: &str = "Ready";
    pub const MONGO_REACHABLE: &str = "MongoReachable";
    pub const REDIS_REACHABLE: &str = "RedisReachable";
    pub const PASSWORD_READY: &str = "PasswordReady";
    /// kstatus' abnormal-true condition: the object cannot progress until a person acts.
    pub const STALLED: &str = "Stalled";
    /// kstatus' abnormal-true condition: the object is converging, or waiting for something
    /// transient (a dependency, a retry).
    pub const RECONCILING: &str = "Reconciling";
}

/// Reasons of `Ready=False` that only a person can resolve (a spec, a Secret, a policy, a
/// conflicting object): the object is `Stalled`, and GitOps tools fail fast with its message.
/// Every other `Ready=False` is `Reconciling`: it resolves by itself or by retrying, or by an
/// object that a GitOps sync applies moments later (a missing instance or Secret).
pub const STALLED_REASONS: &[&str] = &[
    reason::INVALID_SPEC,
    reason::SECRET_KEY_MISSING,
    reason::SECRET_NOT_OWNED,
    reason::INVALID_URI,
    reason::AUTHENTICATION_FAILED,
    reason::NAMESPACE_NOT_ALLOWED,
    reason::INSTANCE_FORBIDDEN,
    reason::ADMIN_NOT_ALLOWED,
    reason::CONFLICT,
    reason::ALREADY_EXISTS,
    reason::PASSWORD_INVALID,
    reason::NOT_PERMITTED,
    reason::IDENTITY_CHANGED,
    reason::DATABASE_CHANGED,
    reason::BALANCE_DISABLED,
    reason::CREDENTIALS_INVALID,
    reason::PLUGIN_INVALID,
    reason::RESOURCE_NOT_FOUND,
    "AlreadyRegistered",
];

/// The `Stalled` and `Reconciling` conditions that go with a `Ready` condition, both always
/// present as True or False, so kstatus, Flux and Argo CD read the object right.
pub fn progress_conditions(ready: &Cond) -> [Cond; 2] {
    let stalled = ready.ok == Some(false) && STALLED_REASONS.contains(&ready.reason.as_str());
    let reconciling = ready.ok != Some(true) && !stalled;
    // The API server refuses an empty condition message: the False side says what holds.
    let said = |on: bool, type_, otherwise: &str| {
        if on {
            Cond::new(type_, true, &ready.reason, ready.message.clone())
        } else {
            Cond::new(type_, false, &ready.reason, otherwise)
        }
    };
    let not_stalled = if ready.ok == Some(true) {
        "ready"
    } else {
        "retrying by itself"
    };
    let not_reconciling = if stalled {
        "waiting for a change of the object or of what it refers to"
    } else {
        "reconciled"
    };
    [
        said(stalled, condition::STALLED, not_stalled),
        said(reconciling, condition::RECONCILING, not_reconciling),
    ]
}

/// Machine-readable reasons, shared so that tooling can match on them.
pub mod reason {
    pub const RECONCILED: &str = "Reconciled";
    pub const INVALID_SPEC: &str = "InvalidSpec";
    pub const SECRET_NOT_FOUND: &str = "SecretNotFound";
    pub const SECRET_KEY_MISSING: &str = "SecretKeyMissing";
    pub const SECRET_NOT_OWNED: &str = "SecretNotOwned";
    pub const INVALID_URI: &str = "InvalidURI";
    pub const UNREACHABLE: &str = "Unreachable";
    /// The store refused the operator's credentials (a person fixes the URI or the user).
    pub const AUTHENTICATION_FAILED: &str = "AuthenticationFailed";
    pub const REACHABLE: &str = "Reachable";
    pub const NOT_CONFIGURED: &str = "NotConfigured";
    pub const DEPENDENCY_FAILED: &str = "DependencyFailed";
    pub const INSTANCE_NOT_FOUND: &str = "InstanceNotFound";
    pub const INSTANCE_NOT_READY: &str = "InstanceNotReady";
    /// The operator may not read the instance (RBAC): only a person can grant it.
    pub const INSTANCE_FORBIDDEN: &str = "InstanceForbidden";
    pub const NAMESPACE_NOT_ALLOWED: &str = "NamespaceNotAllowed";
    pub const ADMIN_NOT_ALLOWED: &str = "AdminNotAllowed";
    pub const CONFLICT: &str = "Conflict";
    pub const ALREADY_EXISTS: &str = "AlreadyExists";
    pub const PASSWORD_INVALID: &str = "PasswordInvalid";
    pub const PASSWORD_APPLIED: &str = "PasswordApplied";
    pub const NO_PASSWORD: &str = "NoPassword";
    pub const STORE_ERROR: &str = "StoreError";
    pub const DELETE_BLOCKED: &str = "DeleteBlocked";
    /// A deletion waits for the instance's deletion guard (too many deletions this hour).
    pub const DELETIONS_RATE_LIMITED: &str = "DeletionsRateLimited";
    /// A verification link could not be delivered (the relay failed); retried.
    pub const VERIFICATION_NOT_SENT: &str = "VerificationNotSent";
    pub const BANNED: &str = "Banned";
    pub const EXPIRED: &str = "Expired";
    pub const USER_NOT_FOUND: &str = "UserNotFound";
    /// An email ban whose account does not exist yet: settled, not active.
    pub const AWAITING_ACCOUNT: &str = "AwaitingAccount";
    /// The object's tenancy does not allow what it declares.
    pub const NOT_PERMITTED: &str = "NotPermitted";
    /// The account the ownership record names no longer has the declared email.
    pub const IDENTITY_CHANGED: &str = "IdentityChanged";
    /// The instance's MongoDB URI reaches another database than the one its objects were
    /// written to (a person confirms a move by annotation).
    pub const DATABASE_CHANGED: &str = "DatabaseChanged";
    /// The instance is being deleted and waits for the objects that depend on it.
    pub const DEPENDENTS_REMAIN: &str = "DependentsRemain";
    /// A user declares a balance on an instance whose `balance.enabled` is not true.
    pub const BALANCE_DISABLED: &str = "BalanceDisabled";
    /// The instance's `CREDS_KEY`/`CREDS_IV` are missing or malformed, so plugin credentials
    /// cannot be stored.
    pub const CREDENTIALS_INVALID: &str = "CredentialsInvalid";
    /// A plugin's credentials are not what LibreChat would accept.
    pub const PLUGIN_INVALID: &str = "PluginInvalid";
    /// A grant names a LibreChat resource that does not exist.
    pub const RESOURCE_NOT_FOUND: &str = "ResourceNotFound";
    /// A built-in role LibreChat has not created yet (it does at its first start).
    pub const ROLE_NOT_FOUND: &str = "RoleNotFound";
    /// Some declared members have no account yet; they are added when they appear.
    pub const MEMBERS_PENDING: &str = "MembersPending";
    /// Declared permission types of USER/ADMIN that librechat.yaml re-imposes at restart.
    pub const OVERRIDDEN_AT_RESTART: &str = "OverriddenAtRestart";
}

/// One condition as the controller wants it; turned into a Kubernetes `Condition` by
/// [`merge_condition`], which keeps `lastTransitionTime` stable while the status holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cond {
    pub type_: &'static str,
    pub ok: Option<bool>,
    pub reason: String,
    pub message: String,
}

impl Cond {
    pub fn new(type_: &'static str, ok: bool, reason: &str, message: impl Into<String>) -> Self {
        Cond {
            type_,
            ok: Some(ok),
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    pub fn unknown(type_: &'static str, reason: &str, message: impl Into<String>) -> Self {
        Cond {
            type_,
            ok: None,
            reason: reason.to_string(),
            message: message.into(),
        }
    }
    fn status_str(&self) -> &'static str {
        match self.ok {
            Some(true) => "True",
            Some(false) => "False",
            None => "Unknown",
        }
    }
}

/// Merges `wanted` into `existing`, returning the new list. A condition whose status did not
/// change keeps its `lastTransitionTime`, so watchers can tell how long a state has held.
pub fn merge_conditions(
    existing: &[Condition],
    wanted: &[Cond],
    generation: Option<i64>,
) -> Vec<Condition> {
    let mut out: Vec<Condition> = existing
        .iter()
        .filter(|c| !wanted.iter().any(|w| w.type_ == c.type_))
        .cloned()
        .collect();
    for w in wanted {
        let previous = existing.iter().find(|c| c.type_ == w.type_);
        let last_transition_time = match previous {
            Some(p) if p.status == w.status_str() => p.last_transition_time.clone(),
            _ => Time(jiff::Timestamp::now()),
        };
        out.push(Condition {
            type_: w.type_.to_string(),
            status: w.status_str().to_string(),
            reason: w.reason.clone(),
            message: w.message.clone(),
            observed_generation: generation,
            last_transition_time,
        });
    }
    out.sort_by(|a, b| a.type_.cmp(&b.type_));
    out
}

/// Finds a condition by type.
pub fn find_condition<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// Whether `Ready` is `True` for the given generation.
pub fn is_ready(conditions: &[Condition], generation: Option<i64>) -> bool {
    holds(conditions, condition::READY, generation)
}

/// Whether the condition `type_` is `True` for the given generation.
pub fn holds(conditions: &[Condition], type_: &str, generation: Option<i64>) -> bool {
    find_condition(conditions, type_).is_some_and(|c| {
        c.status == "True" && (generation.is_none() || c.observed_generation == generation)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_time_is_kept_while_status_holds() {
        let first = merge_conditions(
            &[],
            &[Cond::new(condition::READY, false, "A", "a")],
            Some(1),
        );
        let t0 = first[0].last_transition_time.clone();
        std::thread::sleep(std::time::Duration::from_millis(5));
        let second = merge_conditions(
            &first,
            &[Cond::new(condition::READY, false, "B", "b")],
            Some(2),
        );
        assert_eq!(second[0].last_transition_time, t0);
        assert_eq!(second[0].reason, "B");
        assert_eq!(second[0].observed_generation, Some(2));
        let third = merge_conditions(
            &second,
            &[Cond::new(condition::READY, true, "C", "c")],
            Some(2),
        );
        assert_ne!(third[0].last_transition_time, t0);
        assert!(is_ready(&third, Some(2)));
        assert!(!is_ready(&third, Some(3)));
    }

    #[test]
    fn kstatus_reads_ready_stalled_and_reconciling_right() {
        let status = |ready: Cond| {
            let [stalled, reconciling] = progress_conditions(&ready);
            (
                stalled.ok,
                reconciling.ok,
                stalled.message.is_empty() || reconciling.message.is_empty(),
            )
        };
        // Current: ready; Failed: a person must act; InProgress: it resolves by itself.
        assert_eq!(
            status(Cond::new(condition::READY, true, "Reconciled", "ok")),
            (Some(false), Some(false), false)
        );
        assert_eq!(
            status(Cond::new(
                condition::READY,
                false,
                reason::CONFLICT,
                "taken"
            )),
            (Some(true), Some(false), false)
        );
        assert_eq!(
            status(Cond::new(
                condition::READY,
                false,
                reason::INVALID_SPEC,
                "bad"
            )),
            (Some(true), Some(false), false)
        );
        assert_eq!(
            status(Cond::new(
                condition::READY,
                false,
                reason::STORE_ERROR,
                "down"
            )),
            (Some(false), Some(true), false)
        );
        assert_eq!(
            status(Cond::new(
                condition::READY,
                false,
                reason::INSTANCE_NOT_READY,
                "wait"
            )),
            (Some(false), Some(true), false)
        );
    }

    #[test]
    fn other_conditions_survive_a_merge() {
        let first = merge_conditions(
            &[],
            &[
                Cond::new(condition::READY, true, "A", "a"),
                Cond::new(condition::PASSWORD_READY, true, "P", "p"),
            ],
            Some(1),
        );
        let second = merge_conditions(
            &first,
            &[Cond::new(condition::READY, false, "B", "b")],
            Some(1),
        );
        assert_eq!(second.len(), 2);
        assert!(find_condition(&second, condition::PASSWORD_READY).is_some());
    }
}
