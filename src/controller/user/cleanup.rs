//! Deletion: `Retain` lets go of the account, `Delete` removes it with all its data. Only the
//! account the ownership record names for this very object is ever touched, and a tenant
//! deletes only accounts the operator created for it.

use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::ResourceExt;
use mongodb::bson::oid::ObjectId;

use super::{owner_of, publish_status, uid_of, Outcome};
use crate::api::common::reason;
use crate::api::user::DeletionPolicy;
use crate::api::{LibreChatInstance, LibreChatUser};
use crate::controller::audit::Change;
use crate::controller::connections::Stores;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::target;
use crate::controller::tenancy::Tenancy;
use crate::librechat::deletions::{Allowance, DeletionLimit};
use crate::librechat::ownership::Claim;
use crate::librechat::users::StoredUser;

/// The deletion guard counts deletions within this window.
const DELETION_WINDOW: Duration = Duration::from_secs(3600);

pub(super) async fn cleanup(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    ctx.settled.forget(&uid_of(user));
    ctx.hashed_ahead.forget(&uid_of(user));
    ctx.mail_failures.succeeded(&uid_of(user));
    let namespace = user.namespace().unwrap_or_default();
    let policy = user.spec.deletion_policy();
    let instance = target::find_instance(ctx, &user.spec.instance_ref, &namespace).await?;
    let Some(instance) = instance else {
        let recorded = user.status.as_ref().and_then(|s| s.instance.as_deref());
        return match policy {
            // Nothing to release where there is no database to reach.
            DeletionPolicy::Retain => Ok(Action::await_change()),
            DeletionPolicy::Delete if target::nothing_to_undo_without(recorded) => {
                Ok(Action::await_change())
            }
            DeletionPolicy::Delete => {
                let why = format!(
                    "LibreChatInstance '{}' no longer exists",
                    user.spec.instance_ref.name
                );
                blocked(api, user, ctx, &why).await
            }
        };
    };
    let needs_redis = policy == DeletionPolicy::Delete;
    let stores = match target::cleanup_stores(ctx, &instance, &namespace, needs_redis).await {
        Ok(s) => s,
        Err(why) => return blocked(api, user, ctx, &why).await,
    };
    // By the object's uid, not its spec's email (which an API server without the CEL
    // immutability rule lets change).
    let owner = owner_of(user);
    let claim = match stores.store.find_claim_of_owner(&owner.uid).await {
        Ok(c) => c,
        Err(e) => return blocked(api, user, ctx, &target::store_error_on(user, &e)).await,
    };
    let Some(claim) = claim else {
        return Ok(Action::await_change());
    };
    let email = claim.email.clone();
    let tenancy = Tenancy::of(&instance, &namespace);
    let policy = effective_policy(&claim, &tenancy, policy);
    // An account left behind keeps what it was given, but not a tenant's auto-refill: once
    // the object and its record are gone, nothing could take it back when the instance
    // revokes the namespace's right to declare it (an administrators' object keeps it, as
    // long as that namespace may still declare it).
    let withdraw_refill = !tenancy.administers || !tenancy.may_grant_credits;
    // What a write owed the account first: a deletion held (by the guard, say) must not keep
    // the sessions of an old password alive, and an account a crash left in a role whose
    // deletion raced its write goes to USER before its own deletion looks at its role.
    if let Err(e) = stores.store.finish_owed(&claim).await {
        return blocked(api, user, ctx, &target::store_error_on(user, &e)).await;
    }
    if policy == DeletionPolicy::Delete {
        let scope = Scope {
            instance: &instance,
            tenancy,
        };
        if let Err(hold) = delete_account(ctx, user, &stores, &claim, &scope).await {
            return held(api, user, ctx, hold).await;
        }
    }
    if withdraw_refill {
        if let Err(e) = stores.store.withdraw_refill(&claim).await {
            return blocked(api, user, ctx, &target::store_error_on(user, &e)).await;
        }
    }
    // Retain leaves the plugins installed, like the account; the record of them goes.
    if let Some(id) = claim.user_id {
        if let Err(e) = stores.store.forget_installed_plugins(id, &owner.uid).await {
            return blocked(api, user, ctx, &target::store_error_on(user, &e)).await;
        }
    }
    if let Err(e) = stores.store.release(&email, &owner.uid).await {
        return blocked(
            api,
            user,
            ctx,
            &format!(
                "could not release the account: {}",
                target::store_error_on(user, &e)
            ),
        )
        .await;
    }
    if policy != user.spec.deletion_policy() && !claim.deletion_started {
        let note = format!(
            "did not delete LibreChat account {email}: namespace '{namespace}' is no longer in the instance's allowedNamespaces, and what it declares since is not applied (deletionPolicy was not Delete while it was); it was released and stays"
        );
        let account = claim.user_id.map(|id| id.to_hex());
        let change = Change::applied("NotDeleted", target::instance_key(&instance), account, note);
        ctx.changed(user, change.refused()).await;
    } else if policy == DeletionPolicy::Retain {
        let note = format!("stopped managing LibreChat account {email}; the account stays");
        let account = claim.user_id.map(|id| id.to_hex());
        let instance = target::instance_key(&instance);
        let change = Change::applied("Released", instance, account, note);
        ctx.changed(user, change).await;
    }
    Ok(Action::await_change())
}

/// What the deletion does with the account. A deletion that began finishes: `Retain` set
/// since (as a blocked deletion's message offers) would leave the account fenced from sign-in
/// with half its data gone. A namespace taken out of `allowedNamespaces` writes nothing new:
/// the policy is the one it declared while admitted (as its claim records it), not a switch
/// to `Delete` made since to wipe every account it made the moment it was frozen.
fn effective_policy(claim: &Claim, tenancy: &Tenancy, declared: DeletionPolicy) -> DeletionPolicy {
    if claim.deletion_started {
        return DeletionPolicy::Delete;
    }
    if tenancy.admitted {
        return declared;
    }
    match claim.delete_declared {
        Some(true) => declared,
        _ => DeletionPolicy::Retain,
    }
}

/// Where a deletion happens and what the deleting object may do there.
struct Scope<'a> {
    instance: &'a LibreChatInstance,
    tenancy: Tenancy,
}

impl Scope<'_> {
    fn change(&self, action: &'static str, account: ObjectId, note: String) -> Change {
        let instance = target::instance_key(self.instance);
        Change::applied(action, instance, Some(account.to_hex()), note)
    }
}

/// Why a deletion cannot finish now.
struct Hold {
    reason: &'static str,
    message: String,
}

impl From<String> for Hold {
    fn from(why: String) -> Self {
        Hold {
            reason: reason::DELETE_BLOCKED,
            message: blocked_message(&why),
        }
    }
}

impl Hold {
    /// A deletion that began and could not finish: no policy takes it back now.
    fn under_way(why: String) -> Self {
        Hold {
            reason: reason::DELETE_BLOCKED,
            message: format!("deletion is under way and blocked: {why}. It began (the account is fenced from sign-in, or about to be, and part of its data may be gone), so it finishes once this is fixed, whatever deletionPolicy says now. The operator retries"),
        }
    }
}

/// Deletes the claim's account with all its data, if this object may; otherwise says so in
/// an event and leaves the account (the claim is released either way).
async fn delete_account(
    ctx: &Context,
    user: &LibreChatUser,
    stores: &Stores,
    claim: &Claim,
    scope: &Scope<'_>,
) -> Result<(), Hold> {
    let tenancy = &scope.tenancy;
    let Some(id) = claim.user_id else {
        return Ok(());
    };
    let store = &stores.store;
    let stored = store
        .find_user_by_id(id)
        .await
        .map_err(|e| target::store_error_on(user, &e))?;
    let Some(stored) = stored else {
        if claim.deletion_started {
            // Gone after the deletion began (maybe this one, cut short after the account):
            // what a login re-created meanwhile goes too.
            let mut report = crate::librechat::cascade::CascadeReport::default();
            let swept = store.sweep_after_deletion(id, &mut report).await;
            swept.map_err(|e| Hold::under_way(target::store_error_on(user, &e)))?;
            // The audit line the interrupted deletion did not write.
            let note = format!(
                "deleted LibreChat account {} (its deletion finished after an interruption; {} documents swept last)",
                claim.email,
                report.total()
            );
            ctx.changed(user, scope.change("Deleted", id, note)).await;
        }
        return Ok(());
    };
    if !claim.deletion_started {
        let role = stored.role.as_deref();
        let held_role = tenancy.role_refusal(store, &claim.email, role).await;
        let held_role = held_role.map_err(|e| target::store_error_on(user, &e))?;
        if let Some(why) = deletion_refused(claim, &stored, tenancy, held_role) {
            let note = format!(
                "did not delete LibreChat account {}: {why}; it was released and stays",
                claim.email
            );
            let change = scope.change("NotDeleted", id, note).refused();
            ctx.changed(user, change).await;
            return Ok(());
        }
    }
    // Fixed when the deletion begins: a retry finishes the deletion that began.
    let delete_transactions = match claim.deletion_started {
        true => claim.deletion_takes_transactions,
        false => user.spec.delete_transactions.unwrap_or(false),
    };
    if !claim.deletion_started {
        guard(stores, user, &claim.email, scope).await?;
        store
            .mark_deletion_started(&claim.email, &claim.owner.uid, delete_transactions)
            .await
            .map_err(|e| target::store_error_on(user, &e))?;
    }
    let report = store
        .delete_user_cascade(id, delete_transactions)
        .await
        .map_err(|e| Hold::under_way(target::store_error_on(user, &e)))?;
    let note = format!(
        "deleted LibreChat account {} and {} documents of its data",
        claim.email,
        report.total()
    );
    ctx.changed(user, scope.change("Deleted", id, note)).await;
    Ok(())
}

/// Why this object may not delete `stored`, the account its claim names, if it may not
/// (`held_role`: why the role LibreChat holds it in puts it out of the object's hands).
fn deletion_refused(
    claim: &Claim,
    stored: &StoredUser,
    tenancy: &Tenancy,
    held_role: Option<String>,
) -> Option<String> {
    if stored.email != claim.email {
        Some(format!(
            "the account now has the email {}, not {}",
            stored.email, claim.email
        ))
    } else if !claim.made_its_account() && !tenancy.may_manage_adopted {
        Some(format!(
            "this object adopted the account rather than creating it, and {} unless the instance's tenantPolicy.manageAdoptedAccounts is true",
            tenancy.who_may("delete adopted accounts")
        ))
    } else {
        held_role.or_else(|| tenancy.email_outside_domains(&claim.email))
    }
}

/// The instance's deletion guard: one more deletion within the hourly limit of the object's
/// namespace, or a person's confirmation; otherwise the deletion waits.
async fn guard(
    stores: &Stores,
    user: &LibreChatUser,
    email: &str,
    scope: &Scope<'_>,
) -> Result<(), Hold> {
    let spec = &scope.instance.spec;
    let now_ms = jiff::Timestamp::now().as_millisecond();
    let limit = DeletionLimit {
        max: spec.deletions_per_hour(),
        window: DELETION_WINDOW,
        confirmed: spec.deletions_confirmed_at(now_ms),
    };
    let namespace = user.namespace().unwrap_or_default();
    let _serialized = stores.deletion_guard.lock().await;
    let allowance = stores
        .store
        .reserve_deletion(&uid_of(user), &namespace, email, limit)
        .await
        .map_err(|e| target::store_error_on(user, &e))?;
    match allowance {
        Allowance::Granted => Ok(()),
        Allowance::Exhausted { used, frees_at_ms } => Err(Hold {
            reason: reason::DELETIONS_RATE_LIMITED,
            message: rate_limited_message(scope, &namespace, used, limit.max, frees_at_ms),
        }),
    }
}

/// Why a deletion waits for the guard. The count is the object's own namespace's, so a
/// tenant reads its own deletions, nothing of the others'.
fn rate_limited_message(
    scope: &Scope<'_>,
    namespace: &str,
    used: u64,
    max: u32,
    frees_at_ms: i64,
) -> String {
    let at = jiff::Timestamp::from_millisecond(frees_at_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let instance = scope.instance;
    format!(
        "deletion waits for the deletion guard: {used} LibreChat accounts were deleted from namespace '{namespace}' in the last hour; LibreChatInstance {} allows {max} per namespace per hour (spec.deletionGuard.maxPerHour). It goes ahead by itself after {at}. To let it through now, an admin of namespace '{}' raises maxPerHour or sets deletionGuard.confirmedUntil a few minutes ahead (back up the database first); to keep the account instead, set deletionPolicy: Retain",
        target::instance_key(instance),
        instance.namespace().unwrap_or_default()
    )
}

fn blocked_message(why: &str) -> String {
    format!(
        "deletion is blocked: {why}. The operator retries; to abandon the account instead, set deletionPolicy: Retain"
    )
}

/// A deletion that cannot finish now: said in status and an event, and retried.
async fn blocked(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
    why: &str,
) -> Result<Action, ReconcileError> {
    held(api, user, ctx, Hold::from(why.to_string())).await
}

async fn held(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
    hold: Hold,
) -> Result<Action, ReconcileError> {
    let outcome = Outcome::waiting(hold.reason, hold.message.clone(), user);
    publish_status(api, user, ctx, outcome).await?;
    Err(ReconcileError::Blocked(hold.message))
}
