//! Who an object is to the instance it points at. The instance's own namespace administers it;
//! every other admitted namespace is a tenant, which reaches only what it owns. Every kind asks
//! here, so the rules live in one place.

use kube::ResourceExt;

use crate::api::LibreChatInstance;

/// What an object in one namespace may do on one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenancy {
    /// The object's namespace.
    pub namespace: String,
    /// The instance's namespace.
    pub instance_namespace: String,
    /// The object lives in the instance's namespace: it administers the instance.
    pub administers: bool,
    /// It may declare (or adopt) an ADMIN account.
    pub may_hold_admin: bool,
    /// It may change role, provider and password of an account it adopted, and delete it.
    pub may_manage_adopted: bool,
    /// It may grant credits and set auto-refill.
    pub may_grant_credits: bool,
    /// It may create and change custom roles.
    pub may_manage_roles: bool,
}

impl Tenancy {
    pub fn of(instance: &LibreChatInstance, namespace: &str) -> Self {
        let instance_namespace = instance.namespace().unwrap_or_default();
        let spec = &instance.spec;
        Tenancy {
            administers: namespace == instance_namespace,
            may_hold_admin: spec.admits_admin(&instance_namespace, namespace),
            may_manage_adopted: spec.admits_managing_adopted(&instance_namespace, namespace),
            may_grant_credits: spec.admits_granting_credits(&instance_namespace, namespace),
            may_manage_roles: spec.admits_managing_roles(&instance_namespace, namespace),
            namespace: namespace.to_string(),
            instance_namespace,
        }
    }

    /// The sentence a refusal ends with: who can allow it.
    pub fn who_may(&self, what: &str) -> String {
        format!(
            "only objects in the instance's namespace '{}' may {what}",
            self.instance_namespace
        )
    }
}
