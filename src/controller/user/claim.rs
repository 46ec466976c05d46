//! The claim phase: the ownership record decides which object may write an account.
//!
//! Only the object a record names may touch its account. An account nobody owns is taken over
//! only when adopting, or when its last owner was an object of this same namespace and name
//! that is gone (deleted while the operator could not clean up, then re-created).

use kube::api::Api;
use kube::ResourceExt;

use super::{Outcome, Plan};
use crate::api::common::reason;
use crate::api::user::DeletionPolicy;
use crate::api::LibreChatUser;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::librechat::ownership::{Claim, ClaimResult, Owner};

/// Claims the plan's email for this object, or says why not (as the outcome to report).
pub(super) async fn take_ownership(
    ctx: &Context,
    plan: &Plan,
    user: &LibreChatUser,
) -> Result<Result<Claim, Outcome>, ReconcileError> {
    let store = plan.store();
    let (email, owner) = (&plan.email, &plan.owner);
    let mut current = store.find_own_claim(email, &owner.uid).await?;
    if let Some(c) = current.as_ref().filter(|c| c.owner.uid == owner.uid) {
        return Ok(Ok(c.clone()));
    }
    // The email is immutable (a CEL rule, which old or CEL-less API servers drop): an object
    // that owns an account under another email must not claim a second one. Before any other
    // refusal: what it owes the account it manages is done whatever holds the new email.
    if let Some(previous) = store.find_claim_of_owner(&owner.uid).await? {
        if previous.email == *email {
            // The record is this object's after all: the start-up pass answered from before
            // its claim (a Store built anew, for a rotated URI, while a reconcile of the old
            // one was writing it). The database's own record is the answer.
            return Ok(Ok(previous));
        }
        // Refused, but what it owes the account it manages is still done.
        store.finish_owed(&previous).await?;
        let message = format!(
            "email is immutable: this object manages {}; create a new LibreChatUser for {email}",
            previous.email
        );
        return Ok(Err(Outcome::stalled(reason::INVALID_SPEC, message, user)));
    }
    if let Some(c) = &current {
        if owner_still_exists(ctx, &c.owner).await? {
            let message = format!("the account {email} is already managed by {}; nothing was changed. Remove one of the two objects", plan.tenancy.names(&c.owner));
            return Ok(Err(Outcome::stalled(reason::CONFLICT, message, user)));
        }
    }
    if let Some(stale) = current.take_if(|c| c.deletion_started) {
        // The gone object's deletion began and never finished (its finalizer was removed by
        // hand): it finishes before anyone takes the email, rather than handing over an
        // account fenced from sign-in with part of its data gone.
        store.finish_started_deletion(&stale).await?;
        store.release(email, &stale.owner.uid).await?;
    }
    let existing = store.find_user_by_email(email).await?;
    // The same declaration, re-created: it inherits what its predecessor owned.
    let inherited = current
        .as_ref()
        .filter(|c| same_declaration(&c.owner, owner))
        .and_then(|c| c.user_id)
        .filter(|id| existing.as_ref().is_some_and(|u| u.id == *id));
    if existing.is_some() && !plan.adopt && inherited.is_none() {
        let why = match &current {
            Some(c) => format!(
                "was managed by {}, which no longer exists",
                plan.tenancy.names(&c.owner)
            ),
            None => "is not managed by any object".to_string(),
        };
        let message = format!("a LibreChat account {email} already exists and {why}; set spec.adopt: true to take it over");
        return Ok(Err(
            Outcome::waiting(reason::ALREADY_EXISTS, message, user).after(plan.resync)
        ));
    }
    let adopting = existing.as_ref().filter(|_| inherited.is_none());
    if let Some(adopting) = adopting {
        if let Some(why) = super::account::refusal_to_adopt(plan, adopting).await? {
            return Ok(Err(Outcome::stalled(reason::NOT_PERMITTED, why, user)));
        }
    }
    if let Some(stale) = current {
        if let Some(account) = inherited {
            // What the predecessor installed goes with the account, not left as nobody's.
            store
                .hand_over_installed_plugins(account, &stale.owner.uid, &owner.uid)
                .await?;
        }
        // One atomic hand-over, so a crash cannot lose the link to the account.
        if inherited.is_some() && store.take_over(email, &stale.owner.uid, owner).await? {
            let claim = store
                .find_claim(email)
                .await?
                .filter(|c| c.owner.uid == owner.uid);
            if let Some(claim) = claim {
                return Ok(Ok(claim));
            }
        }
        // What a write of the gone object promised (its sessions ended after a password
        // change, caches dropped after a role change) is done before its record goes, and a
        // tenant's auto-refill goes with it (nothing could take it back later).
        store.finish_owed(&stale).await?;
        if stale.owner.namespace != plan.tenancy.instance_namespace {
            store.withdraw_refill(&stale).await?;
        }
        store.release(email, &stale.owner.uid).await?;
    }
    let delete_declared = user.spec.deletion_policy() == DeletionPolicy::Delete;
    match store.claim(email, owner, delete_declared).await? {
        ClaimResult::Ours(c) => Ok(Ok(c)),
        ClaimResult::Taken(c) => {
            let message = format!(
                "the account {email} was just claimed by {}; nothing was changed",
                plan.tenancy.names(&c.owner)
            );
            Ok(Err(Outcome::stalled(reason::CONFLICT, message, user)))
        }
    }
}

fn same_declaration(a: &Owner, b: &Owner) -> bool {
    a.kind == b.kind && a.namespace == b.namespace && a.name == b.name
}

/// Whether the object recorded as owner still exists (same uid). A claim whose owner is gone
/// (deleted while the operator was not running, or its instance was) is stale.
pub(super) async fn owner_still_exists(ctx: &Context, owner: &Owner) -> Result<bool, kube::Error> {
    let api: Api<LibreChatUser> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    Ok(api
        .get_opt(&owner.name)
        .await?
        .is_some_and(|u| u.uid().as_deref() == Some(owner.uid.as_str())))
}
