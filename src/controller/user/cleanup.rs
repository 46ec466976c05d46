//! Deletion: `Retain` lets go of the account, `Delete` removes it with all its data. Only the
//! account the ownership record names for this very object is ever touched, and a tenant
//! deletes only accounts the operator created for it.

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;

use super::{owner_of, publish_status, uid_of, Outcome};
use crate::api::common::reason;
use crate::api::user::DeletionPolicy;
use crate::api::validate::normalize_email;
use crate::api::LibreChatUser;
use crate::controller::connections::Stores;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::target;
use crate::controller::tenancy::Tenancy;
use crate::librechat::ownership::Claim;

pub(super) async fn cleanup(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    ctx.settled.forget(&uid_of(user));
    let namespace = user.namespace().unwrap_or_default();
    let policy = user.spec.deletion_policy();
    let instance = target::find_instance(ctx, &user.spec.instance_ref, &namespace).await?;
    let Some(instance) = instance else {
        return match policy {
            // Nothing to release where there is no database to reach.
            DeletionPolicy::Retain => Ok(Action::await_change()),
            DeletionPolicy::Delete => {
                let why = format!(
                    "LibreChatInstance '{}' no longer exists",
                    user.spec.instance_ref.name
                );
                blocked(api, user, ctx, &why).await
            }
        };
    };
    let stores = match ctx.connections.shared(&ctx.client, &instance).await {
        Ok(s) => s,
        Err(p) => return blocked(api, user, ctx, &p.message).await,
    };
    if policy == DeletionPolicy::Delete {
        if let Some(why) = stores.redis_unavailable().await {
            return blocked(api, user, ctx, &why).await;
        }
    }
    let email = normalize_email(&user.spec.email);
    let owner = owner_of(user);
    let claim = match stores.store.find_claim(&email).await {
        Ok(c) => c.filter(|c| c.owner.uid == owner.uid),
        Err(e) => return blocked(api, user, ctx, &e.to_string()).await,
    };
    let Some(claim) = claim else {
        return Ok(Action::await_change());
    };
    if policy == DeletionPolicy::Delete {
        let tenancy = Tenancy::of(&instance, &namespace);
        if let Err(why) = delete_account(ctx, user, &stores, &claim, &tenancy).await {
            return blocked(api, user, ctx, &why).await;
        }
    }
    if let Err(e) = stores.store.release(&email, &owner.uid).await {
        return blocked(
            api,
            user,
            ctx,
            &format!("could not release the account: {e}"),
        )
        .await;
    }
    if policy == DeletionPolicy::Retain {
        let note = format!("stopped managing LibreChat account {email}; the account stays");
        ctx.event(user, false, "Released", note).await;
    }
    Ok(Action::await_change())
}

/// Deletes the claim's account with all its data, if this object may; otherwise says so in
/// an event and leaves the account (the claim is released either way).
async fn delete_account(
    ctx: &Context,
    user: &LibreChatUser,
    stores: &Stores,
    claim: &Claim,
    tenancy: &Tenancy,
) -> Result<(), String> {
    let Some(id) = claim.user_id else {
        return Ok(());
    };
    let store = &stores.store;
    let stored = store.find_user_by_id(id).await.map_err(|e| e.to_string())?;
    let Some(stored) = stored else {
        return Ok(());
    };
    let refusal = if stored.email != claim.email {
        Some(format!(
            "the account now has the email {}, not {}",
            stored.email, claim.email
        ))
    } else if !claim.created && !tenancy.may_manage_adopted {
        Some(format!(
            "this object adopted the account rather than creating it, and {} unless the instance's tenantPolicy.manageAdoptedAccounts is true",
            tenancy.who_may("delete adopted accounts")
        ))
    } else {
        None
    };
    if let Some(why) = refusal {
        let note = format!(
            "did not delete LibreChat account {}: {why}; it was released and stays",
            claim.email
        );
        ctx.event(user, true, "NotDeleted", note).await;
        return Ok(());
    }
    let delete_transactions = user.spec.delete_transactions.unwrap_or(false);
    let report = store
        .delete_user_cascade(id, delete_transactions)
        .await
        .map_err(|e| e.to_string())?;
    let note = format!(
        "deleted LibreChat account {} and {} documents of its data",
        claim.email,
        report.total()
    );
    ctx.event(user, false, "Deleted", note).await;
    Ok(())
}

/// A deletion that cannot finish now: said in status and an event, and retried.
async fn blocked(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
    why: &str,
) -> Result<Action, ReconcileError> {
    let message = format!(
        "deletion is blocked: {why}. The operator retries; to abandon the account instead, set deletionPolicy: Retain"
    );
    let outcome = Outcome::waiting(reason::DELETE_BLOCKED, message.clone(), user);
    publish_status(api, user, ctx, outcome).await?;
    Err(ReconcileError::Blocked(message))
}
