//! Who an object is to the instance it points at. The instance's own namespace administers it;
//! every other admitted namespace is a tenant, which reaches only what it owns. Every kind asks
//! here, so the rules live in one place.

use kube::{Resource, ResourceExt};

use mongodb::bson::oid::ObjectId;

use crate::api::LibreChatInstance;
use crate::librechat::access::role_key;
use crate::librechat::ownership::{Claim, Owner};
use crate::librechat::permissions::is_built_in;
use crate::librechat::{Store, StoreError};

/// What an object in one namespace may do on one instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tenancy {
    /// The object's namespace.
    pub namespace: String,
    /// The instance's namespace.
    pub instance_namespace: String,
    /// The object lives in the instance's namespace: it administers the instance.
    pub administers: bool,
    /// The instance admits the namespace now; one taken out of `allowedNamespaces` writes
    /// nothing new, a deletion of an account included.
    pub admitted: bool,
    /// It may declare (or adopt) an ADMIN account.
    pub may_hold_admin: bool,
    /// It may change role and password of an account it adopted, and delete it.
    pub may_manage_adopted: bool,
    /// It may grant credits and set auto-refill.
    pub may_grant_credits: bool,
    /// It may create and change custom roles.
    pub may_manage_roles: bool,
    /// Custom roles the instance lets tenants put accounts in (beyond their own roles).
    pub assignable_roles: Vec<String>,
    /// The email domains it may declare accounts and invitations for (`None`: any).
    pub email_domains: Option<Vec<String>>,
}

impl Tenancy {
    /// How a status of this namespace may name `owner`, the object holding what it asked for:
    /// by kind, namespace and name within the owner's own namespace and to the instance's
    /// namespace (which administers every tenant); to any other tenant only as an object in
    /// another namespace. A refused claim must not tell one tenant what another declares.
    pub fn names(&self, owner: &crate::librechat::ownership::Owner) -> String {
        if self.administers || owner.namespace == self.namespace {
            owner.to_string()
        } else {
            format!("a {} in another namespace", owner.kind)
        }
    }

    pub fn of(instance: &LibreChatInstance, namespace: &str) -> Self {
        let instance_namespace = instance.namespace().unwrap_or_default();
        let spec = &instance.spec;
        Tenancy {
            administers: namespace == instance_namespace,
            admitted: spec.admits_namespace(&instance_namespace, namespace),
            may_hold_admin: spec.admits_admin(&instance_namespace, namespace),
            may_manage_adopted: spec.admits_managing_adopted(&instance_namespace, namespace),
            may_grant_credits: spec.admits_granting_credits(&instance_namespace, namespace),
            may_manage_roles: spec.admits_managing_roles(&instance_namespace, namespace),
            assignable_roles: spec.tenant_assignable_roles(),
            email_domains: spec.tenant_email_domains(&instance_namespace, namespace),
            namespace: namespace.to_string(),
            instance_namespace,
        }
    }

    /// Whether `claim` gives this namespace its account to manage fully (ban it, share what it
    /// may share): the claim is from here, and the operator created the account for it or the
    /// instance lets tenants manage what they adopt. Adopting alone keeps a name as declared.
    /// An account whose email the instance's `tenantPolicy.emailDomains` no longer admits for
    /// this namespace is not managed by it any more, whenever it was claimed.
    pub fn fully_manages(&self, claim: &Claim) -> bool {
        claim.owner.namespace == self.namespace
            && (claim.made_its_account() || self.may_manage_adopted)
            && self.email_outside_domains(&claim.email).is_none()
    }

    /// Whether this namespace manages `account` fully now (may share what it may share), as
    /// the account and its ownership record stand, not as any status says.
    pub async fn manages_account(
        &self,
        store: &Store,
        account: ObjectId,
    ) -> Result<bool, StoreError> {
        self.still_holds(store, account, |c| self.fully_manages(c))
            .await
    }

    /// Whether `account` may still be in this namespace's groups: claimed here (adopted is
    /// enough) and inside its emailDomains.
    pub async fn may_group(&self, store: &Store, account: ObjectId) -> Result<bool, StoreError> {
        let claimed_here = |c: &Claim| {
            c.owner.namespace == self.namespace && self.email_outside_domains(&c.email).is_none()
        };
        self.still_holds(store, account, claimed_here).await
    }

    /// Whether the account's claim passes `claim_ok` and the account is in no role out of this
    /// namespace's reach (see [`Tenancy::role_refusal`]).
    async fn still_holds(
        &self,
        store: &Store,
        account: ObjectId,
        claim_ok: impl Fn(&Claim) -> bool,
    ) -> Result<bool, StoreError> {
        let claim = store.find_claim_of_user(account).await?;
        let Some(claim) = claim.filter(|c| claim_ok(c)) else {
            return Ok(false);
        };
        if self.administers {
            return Ok(true);
        }
        let Some(stored) = store.find_user_by_id(account).await? else {
            return Ok(false);
        };
        let refused = self.role_refusal(store, &claim.email, stored.role.as_deref());
        Ok(refused.await?.is_none())
    }

    /// Why this namespace may not touch an account LibreChat holds in `stored_role`, if it may
    /// not (see [`Tenancy::held_role_refusal`]). Read only for a custom role the instance does
    /// not list: whether it is this namespace's own.
    pub async fn role_refusal(
        &self,
        store: &Store,
        email: &str,
        stored_role: Option<&str>,
    ) -> Result<Option<String>, StoreError> {
        let owns = match stored_role.filter(|r| self.may_not_assign(r)) {
            Some(role) => self.owns_role(store, role).await?,
            None => false,
        };
        Ok(self.held_role_refusal(email, stored_role, |_| owns))
    }

    /// Whether the custom role LibreChat has as `role` is the one a LibreChatRole of this
    /// namespace created: its ownership record says so, the role was created (not claimed
    /// only), and LibreChat's role of the name is the one it created (its `_id`; records of
    /// versions that kept no `_id` are taken at their word): LibreChat's admins may delete it
    /// and make one of theirs under the name, whatever the record still says until the
    /// object's next reconcile. A role being deleted is still its own (its accounts move to
    /// USER as it goes; putting more in it is the role policy's to refuse).
    pub async fn owns_role(&self, store: &Store, role: &str) -> Result<bool, StoreError> {
        let record = store.access_record(&role_key(role)).await?;
        let Some(record) = record.filter(|r| {
            r.owner.kind == "LibreChatRole" && r.owner.namespace == self.namespace && r.created
        }) else {
            return Ok(false);
        };
        let stored = store.find_role(role).await?;
        Ok(stored.is_some_and(|s| record.target.is_none() || s.id == record.target))
    }

    /// Why this namespace may not touch an account LibreChat holds in `stored_role`, if it may
    /// not. An ADMIN account is only for namespaces the instance lets hold ADMIN; an account in
    /// a custom role only for one that could have put it there itself (the instance lists the
    /// role in `tenantPolicy.assignableRoles`, or it is its own: `own`). LibreChat's admins
    /// may move an account a tenant created into either: from then on it is theirs, and the
    /// tenant neither writes it (its password, a role back) nor bans, groups or deletes it.
    fn held_role_refusal(
        &self,
        email: &str,
        stored_role: Option<&str>,
        own: impl FnOnce(&str) -> bool,
    ) -> Option<String> {
        let role = stored_role?;
        if role == "ADMIN" {
            return self.refuses_admin_accounts().then(|| {
                format!(
                    "the account {email} is an ADMIN account: {} unless the instance sets allowAdmin",
                    self.who_may("manage it")
                )
            });
        }
        (self.may_not_assign(role) && !own(role)).then(|| {
            format!(
                "the account {email} is in role '{role}', a custom role this namespace neither declares nor may assign (LibreChat's administrators may have moved it there): {} unless the instance lists the role in tenantPolicy.assignableRoles",
                self.who_may("manage it")
            )
        })
    }

    /// Whether `role` is a custom role this namespace may not put accounts in by the
    /// instance's word alone (its own LibreChatRoles aside).
    fn may_not_assign(&self, role: &str) -> bool {
        !self.administers && !is_built_in(role) && !self.lists_assignable(role)
    }

    /// Whether an ADMIN account is out of this namespace's hands (then an account's stored
    /// role is worth reading before touching it).
    pub fn refuses_admin_accounts(&self) -> bool {
        !self.administers && !self.may_hold_admin
    }

    /// Whether the instance lets tenants put accounts in the custom role `role`.
    pub fn lists_assignable(&self, role: &str) -> bool {
        self.assignable_roles.iter().any(|r| r == role)
    }

    /// Whether an object labelled `namespace/name` lives in this namespace or the instance's.
    pub fn declared_here_or_by_admin(&self, owner_label: &str) -> bool {
        let namespace = owner_label.split('/').next().unwrap_or_default();
        namespace == self.namespace || namespace == self.instance_namespace
    }

    /// Why this namespace may not declare an account or invitation for `email` (`None`: it
    /// may), for a refusal that wrote nothing.
    pub fn email_refusal(&self, email: &str) -> Option<String> {
        self.email_outside_domains(email)
            .map(|rule| format!("{rule}; nothing was written"))
    }

    /// The emailDomains rule `email` falls outside of for this namespace (`None`: inside).
    /// Names only this namespace's own domains: another tenant's are not its business.
    pub fn email_outside_domains(&self, email: &str) -> Option<String> {
        let domains = self.email_domains.as_ref()?;
        let domain = email
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        if domains.iter().any(|d| domain_admits(d, &domain)) {
            return None;
        }
        let admitted = match domains.is_empty() {
            true => "none".to_string(),
            false => domains.join(", "),
        };
        Some(format!(
            "namespace '{}' may declare emails only in its domains ({admitted}) and '{domain}' is not one of them: the instance's tenantPolicy.emailDomains says which",
            self.namespace
        ))
    }

    /// The sentence a refusal ends with: who can allow it.
    pub fn who_may(&self, what: &str) -> String {
        format!(
            "only objects in the instance's namespace '{}' may {what}",
            self.instance_namespace
        )
    }
}

/// Whether `pattern` (`example.com`, or `*.example.com` for its subdomains) admits `domain`.
fn domain_admits(pattern: &str, domain: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(parent) => domain
            .strip_suffix(parent)
            .is_some_and(|sub| sub.len() > 1 && sub.ends_with('.')),
        None => pattern == domain,
    }
}

/// The owner an ownership or access record names for `object`: its kind, namespace, name
/// and uid (the uid is what identifies it; the rest is for people).
pub fn owner_of<K: Resource<DynamicType = ()>>(object: &K) -> Owner {
    Owner {
        kind: K::kind(&()).to_string(),
        namespace: object.namespace().unwrap_or_default(),
        name: object.name_any(),
        uid: object.uid().unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::librechat::ownership::Owner;
    fn tenant_assigning(assignable: &[&str]) -> Tenancy {
        Tenancy {
            assignable_roles: assignable.iter().map(|r| r.to_string()).collect(),
            ..tenant(false)
        }
    }

    #[test]
    fn a_tenant_keeps_no_account_in_a_role_it_could_not_have_put_it_in() {
        let refused = |t: &Tenancy, stored: &str, own: bool| {
            t.held_role_refusal("a@example.com", Some(stored), |_| own)
                .is_some()
        };
        let t = tenant_assigning(&[]);
        assert!(refused(&t, "STAFF", false));
        assert!(refused(&t, "ADMIN", false));
        assert!(!refused(&t, "USER", false));
        // Its own role (its LibreChatRole's record), or one the instance lists.
        assert!(!refused(&t, "TEAMX", true));
        assert!(!refused(&tenant_assigning(&["STAFF"]), "STAFF", false));
        let allowed_admin = Tenancy {
            may_hold_admin: true,
            ..tenant_assigning(&[])
        };
        assert!(!refused(&allowed_admin, "ADMIN", false));
        assert!(refused(&allowed_admin, "STAFF", false));
        let admin = Tenancy {
            administers: true,
            may_hold_admin: true,
            ..tenant_assigning(&[])
        };
        assert!(!refused(&admin, "STAFF", false));
        assert!(!refused(&admin, "ADMIN", false));
    }

    fn tenant(may_manage_adopted: bool) -> Tenancy {
        Tenancy {
            namespace: "team-a".into(),
            instance_namespace: "chat".into(),
            administers: false,
            admitted: true,
            may_hold_admin: false,
            may_manage_adopted,
            may_grant_credits: false,
            may_manage_roles: false,
            assignable_roles: Vec::new(),
            email_domains: None,
        }
    }

    fn claim(namespace: &str, created: bool) -> Claim {
        Claim {
            email: "a@example.com".into(),
            owner: Owner {
                kind: "LibreChatUser".into(),
                namespace: namespace.into(),
                name: "a".into(),
                uid: "uid-a".into(),
            },
            user_id: None,
            confirmed: true,
            created,
            role_check: None,
            ..Claim::default()
        }
    }

    #[test]
    fn an_adopted_account_is_fully_managed_only_under_manage_adopted_accounts() {
        assert!(tenant(false).fully_manages(&claim("team-a", true)));
        assert!(!tenant(false).fully_manages(&claim("team-a", false)));
        assert!(tenant(true).fully_manages(&claim("team-a", false)));
        assert!(!tenant(true).fully_manages(&claim("team-b", true)));
    }

    #[test]
    fn an_account_outside_the_namespaces_email_domains_is_not_managed_whenever_claimed() {
        let limited = |domains: &[&str]| Tenancy {
            email_domains: Some(domains.iter().map(|d| d.to_string()).collect()),
            ..tenant(true)
        };
        assert!(limited(&["example.com"]).fully_manages(&claim("team-a", true)));
        assert!(!limited(&["team.example.com"]).fully_manages(&claim("team-a", true)));
        assert!(!limited(&[]).fully_manages(&claim("team-a", true)));
    }

    #[test]
    fn a_refusal_names_another_tenants_object_only_to_its_namespace_and_the_admins() {
        let theirs = claim("team-b", true).owner;
        let ours = claim("team-a", true).owner;
        assert_eq!(
            tenant(false).names(&theirs),
            "a LibreChatUser in another namespace"
        );
        assert_eq!(tenant(false).names(&ours), "LibreChatUser team-a/a");
        let admin = Tenancy {
            namespace: "chat".into(),
            administers: true,
            ..tenant(false)
        };
        assert_eq!(admin.names(&theirs), "LibreChatUser team-b/a");
    }

    #[test]
    fn a_tenant_declares_only_emails_in_its_own_domains() {
        let mut instance = LibreChatInstance::new("lc", Default::default());
        instance.metadata.namespace = Some("chat".into());
        let domains = [
            ("team-a", vec!["A.example.com", "*.labs.example.com"]),
            ("*", vec!["example.org"]),
            ("team-b", vec!["b.example.com"]),
        ];
        instance.spec.tenant_policy = Some(crate::api::instance::TenantPolicy {
            email_domains: Some(
                domains
                    .iter()
                    .map(|(ns, d)| (ns.to_string(), d.iter().map(|x| x.to_string()).collect()))
                    .collect(),
            ),
            ..Default::default()
        });
        let team_a = Tenancy::of(&instance, "team-a");
        for admitted in [
            "ceo@a.example.com",
            "x@eu.labs.example.com",
            "y@example.org",
        ] {
            assert_eq!(team_a.email_refusal(admitted), None, "{admitted}");
        }
        // Another team's domain, the parent of a wildcard, a look-alike suffix.
        for refused in [
            "ceo@b.example.com",
            "x@labs.example.com",
            "x@evillabs.example.com",
            "x@a.example.com.evil.io",
        ] {
            let why = team_a.email_refusal(refused).expect(refused);
            // Its own domains, lower-cased, never another tenant's.
            assert!(
                why.contains("(*.labs.example.com, a.example.com, example.org)"),
                "{why}"
            );
        }
        // A tenant without an entry gets `*`'s; the instance's own namespace is not limited.
        assert_eq!(
            Tenancy::of(&instance, "team-c").email_refusal("z@example.org"),
            None
        );
        assert!(Tenancy::of(&instance, "team-c")
            .email_refusal("z@a.example.com")
            .is_some());
        assert_eq!(
            Tenancy::of(&instance, "chat").email_refusal("root@anything.io"),
            None
        );
        // Unset: any email.
        instance.spec.tenant_policy = None;
        assert_eq!(
            Tenancy::of(&instance, "team-a").email_refusal("ceo@b.example.com"),
            None
        );
    }

    #[test]
    fn bans_carry_from_this_namespace_and_the_instances_only() {
        let t = tenant(false);
        assert!(t.declared_here_or_by_admin("team-a/grudge"));
        assert!(t.declared_here_or_by_admin("chat/ban"));
        assert!(!t.declared_here_or_by_admin("team-b/grudge"));
        // A namespace whose name starts like this one's is another namespace.
        assert!(!t.declared_here_or_by_admin("team-a-x/grudge"));
    }
}
