//! Whether another namespace holds an email a tenant wants to invite: it owns the account, or
//! one of its LibreChatUsers or UserInvites declares the email on the same instance. Only a
//! declaration that could take effect counts: one of a namespace the instance admits, inside
//! that namespace's emailDomains; of invitations, one accepted, one whose link still works,
//! and one not issued yet only when it may still issue and came first. Otherwise anybody who may create an object in any namespace (or a tenant
//! declaring emails outside its domains) could keep every other tenant from inviting them,
//! and two tenants inviting one email at once would refuse each other for good.

use kube::ResourceExt;

use super::caches::{declaring, Source};
use super::context::Context;
use super::error::ReconcileError;
use super::target;
use super::tenancy::Tenancy;
use crate::api::invite::InvitePhase;
use crate::api::{LibreChatInstance, UserInvite};
use crate::librechat::invites::InviteRecord;
use crate::librechat::{Store, StoreError};

/// What is checked: the instance's database, the instance, the inviting namespace's tenancy
/// and the email.
pub type Checked<'a> = (&'a Store, &'a LibreChatInstance, &'a Tenancy, &'a str);

/// The invitation asking, and whether its link is issued (its record open).
pub struct Asking<'a> {
    pub invite: &'a UserInvite,
    pub issued: bool,
}

/// Why `this` may not invite the email, if it may not, as `from` tells.
pub async fn declared_elsewhere(
    ctx: &Context,
    (store, instance, tenancy, email): Checked<'_>,
    this: Asking<'_>,
    from: Source,
) -> Result<Option<String>, ReconcileError> {
    if tenancy.administers {
        return Ok(None);
    }
    // One answer whether another namespace owns the account or only declares it: which one
    // would tell a tenant about another team's pending invitations.
    let refusal = || {
        format!("{email} is owned or declared in another namespace; a tenant invites only emails no other namespace owns or declares. Nothing was issued")
    };
    if let Some(claim) = store.find_claim(email).await? {
        if claim.owner.namespace != tenancy.namespace {
            return Ok(Some(refusal()));
        }
    }
    let declaring = declaring(ctx, email, from).await?;
    let counts =
        |ns: Option<String>| rival_namespace(instance, tenancy, &ns.unwrap_or_default(), email);
    let user_elsewhere = declaring.users.iter().any(|u| {
        counts(u.namespace()) && target::points_at(&u.spec.instance_ref, u.as_ref(), instance)
    });
    if user_elsewhere {
        return Ok(Some(refusal()));
    }
    let rivals: Vec<_> = declaring
        .invites
        .iter()
        .filter(|i| i.namespace().as_deref() != Some(tenancy.namespace.as_str()))
        .filter(|i| target::points_at(&i.spec.instance_ref, i.as_ref(), instance))
        .collect();
    // One read for all of them: a tenant's many invitations of one email must not make
    // another tenant's checks slow.
    let uids: Vec<String> = rivals.iter().map(|i| i.uid().unwrap_or_default()).collect();
    let records = store.invite_records(&uids).await?;
    for rival in rivals {
        let admitted = counts(rival.namespace());
        let holds = match records.get(&rival.uid().unwrap_or_default()) {
            Some(record) => issued_holds(store, record, admitted).await?,
            None => admitted && unissued_holds(rival, &this),
        };
        if holds {
            return Ok(Some(refusal()));
        }
    }
    Ok(None)
}

/// Whether a declaration in `namespace` counts against `tenancy`'s: another namespace, which
/// the instance admits, and whose emailDomains let it declare `email`.
fn rival_namespace(
    instance: &LibreChatInstance,
    tenancy: &Tenancy,
    namespace: &str,
    email: &str,
) -> bool {
    namespace != tenancy.namespace
        && instance
            .spec
            .admits_namespace(&tenancy.instance_namespace, namespace)
        && Tenancy::of(instance, namespace)
            .email_outside_domains(email)
            .is_none()
}

/// Whether an issued rival (its record, the truth) holds the email: one accepted does while
/// the account is there (a tenant must not tell it from a pending invitation), one expired
/// does not; one open does while its namespace may declare the email (`admitted`), and after that
/// while its link still works (until its own reconcile takes the link out), so that two
/// working links never exist for one email.
async fn issued_holds(
    store: &Store,
    record: &InviteRecord,
    admitted: bool,
) -> Result<bool, StoreError> {
    match record.closed_as.as_deref() {
        // While the account is there: one deleted since frees the email.
        Some("Accepted") => Ok(store.find_user_by_email(&record.email).await?.is_some()),
        Some(_) => Ok(false),
        None if admitted => Ok(true),
        None => {
            let token = store.find_invite_token(&record.email, &record.token_hash);
            Ok(token.await?.is_some())
        }
    }
}

/// Whether a rival with no record holds the email against `this`: `this` is not issued
/// either (an issued link outranks any unissued one, so that the two never refuse each
/// other), and the rival may still issue (it has not ended, its spec is valid, its end is
/// ahead) and came first.
fn unissued_holds(rival: &UserInvite, this: &Asking<'_>) -> bool {
    // A status saying it ended is believed in that direction only: such an invitation never
    // issues a link again (see `closed_as`).
    let ended = matches!(
        rival.status.as_ref().and_then(|s| s.phase),
        Some(InvitePhase::Accepted | InvitePhase::Expired)
    );
    !this.issued && !ended && may_still_issue(rival) && came_first(rival, this.invite)
}

/// Whether an invitation not issued yet could be: its lifetime is one the operator takes and
/// its end is ahead (one refused as invalid, or past its end, never issues).
fn may_still_issue(invite: &UserInvite) -> bool {
    let Ok(lifetime) = invite.spec.lifetime() else {
        return false;
    };
    let created = invite.metadata.creation_timestamp.as_ref();
    let end = created.map(|t| t.0.as_millisecond() + lifetime.as_millis() as i64);
    end.is_none_or(|end| end > jiff::Timestamp::now().as_millisecond())
}

/// The earlier creation wins, the uid breaking a tie: both sides decide the same.
fn came_first(one: &UserInvite, other: &UserInvite) -> bool {
    let order = |i: &UserInvite| {
        let created = i.metadata.creation_timestamp.as_ref().map(|t| t.0);
        (created, i.uid().unwrap_or_default())
    };
    order(one) < order(other)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite(ns: &str, uid: &str, created: &str) -> UserInvite {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "UserInvite",
            "metadata": { "name": "i", "namespace": ns, "uid": uid, "creationTimestamp": created },
            "spec": { "instanceRef": { "name": "lc", "namespace": "chat" }, "email": "a@x.com" },
        }))
        .unwrap()
    }

    fn instance(mut spec: serde_json::Value) -> LibreChatInstance {
        spec["mongo"] = serde_json::json!({ "uriSecretRef": { "name": "s", "key": "k" } });
        serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatInstance",
            "metadata": { "name": "lc", "namespace": "chat" }, "spec": spec,
        }))
        .unwrap()
    }

    #[test]
    fn the_earlier_invitation_comes_first_on_both_sides() {
        let early = invite("a", "2", "2026-01-01T00:00:00Z");
        let late = invite("b", "1", "2026-01-01T00:00:01Z");
        assert!(came_first(&early, &late));
        assert!(!came_first(&late, &early));
        let twin = invite("c", "3", "2026-01-01T00:00:00Z");
        assert!(came_first(&early, &twin) != came_first(&twin, &early));
    }

    #[test]
    fn only_admitted_namespaces_inside_their_domains_are_rivals() {
        let lc = instance(serde_json::json!({
            "allowedNamespaces": ["a", "b"],
            "tenantPolicy": { "emailDomains": { "b": ["y.com"] } },
        }));
        let a = Tenancy::of(&lc, "a");
        assert!(!rival_namespace(&lc, &a, "a", "p@x.com"), "itself");
        assert!(
            !rival_namespace(&lc, &a, "stranger", "p@x.com"),
            "never admitted"
        );
        assert!(
            !rival_namespace(&lc, &a, "b", "p@x.com"),
            "outside b's domains"
        );
        assert!(rival_namespace(&lc, &a, "b", "p@y.com"));
        assert!(
            rival_namespace(&lc, &a, "chat", "p@x.com"),
            "the administrators"
        );
    }
}
