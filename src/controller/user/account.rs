//! The converge phase: create or correct the account the claim names, within what the object's
//! tenancy allows, finish owed security follow-ups, and apply the password.

use mongodb::bson::oid::ObjectId;

use super::{actions, no_password_message, Converged, Outcome, Plan};
use crate::api::balance::UserBalanceStatus;
use crate::api::common::{condition, reason, Cond};
use crate::api::user::{Provider, VerificationState, VerificationStatus};
use crate::api::LibreChatUser;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::password::ResolvedPassword;
use crate::librechat::bans::BanShare;
use crate::librechat::one_shot::OneShot;
use crate::librechat::ownership::{Claim, FollowUp};
use crate::librechat::role_check::RoleCheck;
use crate::librechat::users::{as_created, drift, leaves_local_sign_in, Created, StoredUser};
use crate::librechat::StoreError;

/// The account the reconcile ended up with.
struct Account {
    stored: StoredUser,
    /// Whether the operator created it for this object (or its predecessor).
    created: bool,
    /// Whether its password was set at creation from the current Secret version.
    password_set: bool,
    wrote: bool,
    /// Whether this reconcile wrote the declared role to it (created with it, or put back).
    role_written: bool,
    /// The check that write owes (see `librechat::role_check`), if it owes one.
    role_check: Option<RoleCheck>,
}

pub(super) async fn converge(
    ctx: &Context,
    plan: &Plan,
    mut claim: Claim,
    user: &LibreChatUser,
    role_check: Option<RoleCheck>,
) -> Result<Converged, ReconcileError> {
    let store = plan.store();
    let by_claim = match claim.user_id {
        Some(id) => store.find_user_by_id(id).await?,
        None => None,
    };
    let existing = match by_claim {
        Some(u) => Some(u),
        None => store.find_user_by_email(&plan.email).await?,
    };
    let applied_here = |s: &StoredUser| password_applied_to(plan, user, s.id);
    if plan.password_unread() && !existing.as_ref().is_some_and(applied_here) {
        return Ok(Converged::NeedsPassword);
    }
    let account = match existing {
        None => {
            let replaces_deleted = claim.confirmed && claim.user_id.is_some();
            let created = create(ctx, plan, &claim, user, role_check.as_ref()).await?;
            if replaces_deleted {
                // As the record now says (see `renew_reservation`): the deleted account's
                // verification link is no link of the new one.
                claim.actions.remove(OneShot::Verification.as_str());
            }
            created
        }
        Some(stored) => match super::redis_out::while_out(plan, &claim, &stored, user).await? {
            Some(outcome) => return Ok(Converged::Done(Box::new(outcome))),
            None => take(ctx, plan, &claim, stored, user).await?,
        },
    };
    let mut account = match account {
        Ok(a) => a,
        Err(outcome) => return Ok(Converged::Done(Box::new(outcome))),
    };
    let left_role = plan
        .store()
        .finish_follow_ups(&claim, &account.stored)
        .await?;
    if left_role {
        // A write of an earlier reconcile raced its role's deletion: moved to USER just now.
        account.stored.role = Some("USER".into());
    }
    if let Err(outcome) = correct(ctx, plan, &mut account, user, role_check.as_ref()).await? {
        // Refused: an auto-refill the object may no longer keep (the instance revoked
        // grantCredits, or manageAdoptedAccounts for an adopted account) or no longer declares
        // goes all the same, or a team could keep a revoked right by keeping its object refused.
        let declares_refill =
            super::balance::declared(user).is_some_and(|b| b.auto_refill.is_some());
        let may_keep =
            plan.tenancy.may_grant_credits && (account.created || plan.tenancy.may_manage_adopted);
        if !(declares_refill && may_keep) {
            let id = account.stored.id;
            if store.withdraw_refill(&claim).await? {
                let withdrawn = super::balance::refill_withdrawn(&plan.instance, id, &plan.email);
                ctx.changed(user, withdrawn).await;
            }
        }
        return Ok(Converged::Done(Box::new(outcome)));
    }
    if let Some(outcome) = role_taken_away(plan, &account, user).await? {
        return Ok(Converged::Done(Box::new(outcome)));
    }
    let (password, version, rotated) = apply_password(ctx, plan, &account, user).await?;
    let report = actions::apply(ctx, plan, &claim, &account.stored, user).await?;
    // Whatever became of a verification link (a relay down may hold it for long): a rotated
    // plugin credential or a grant does not wait for the relay.
    let id = account.stored.id;
    let (balance, credited) = super::balance::converge(ctx, plan, &claim, user, id).await?;
    let plugins_wrote = super::plugins::apply(ctx, plan, id, user).await?;
    let (verification, actions, waiting) = match report {
        Ok(report) => (report.verification, report.actions, None),
        Err(w) => (w.verification.clone(), w.actions.clone(), Some(w)),
    };
    let mut outcome = Outcome {
        wrote: account.wrote || rotated || credited || plugins_wrote,
        password,
        password_version: version,
        verification,
        actions,
        ..in_sync_with(plan, user, &account.stored, balance)
    };
    if let Some(waiting) = waiting {
        // Only the link waits (for the relay, or its pace): status shows all else applied.
        outcome.ready = waiting.ready;
        outcome.requeue = waiting.requeue;
    }
    Ok(Converged::Done(Box::new(outcome)))
}

/// When this reconcile wrote a custom role to the account and the role's deletion began
/// meanwhile: the account moved to USER (see `librechat::role_check`), and the outcome that
/// says why. A check a crash or a failure cut short is finished by the next reconcile, its
/// refusal or its deletion (`Store::finish_owed`).
async fn role_taken_away(
    plan: &Plan,
    account: &Account,
    user: &LibreChatUser,
) -> Result<Option<Outcome>, ReconcileError> {
    let Some(check) = account.role_check.as_ref() else {
        return Ok(None);
    };
    let (email, owner) = (&plan.email, &plan.owner.uid);
    let store = plan.store();
    if !store
        .check_written_role(email, owner, &account.stored, check)
        .await?
    {
        return Ok(None);
    }
    let message = format!(
        "role '{}' was being deleted as the account was written into it; the account was moved to USER, as the role's deletion moves its accounts",
        check.role
    );
    Ok(Some(Outcome::waiting(reason::NOT_PERMITTED, message, user)))
}

/// Records, before a write of the declared role, the check the write owes once made, if it
/// owes one (a role a LibreChatRole declares, as the role policy read it: see
/// `librechat::role_check`).
async fn promise_role_check(
    plan: &Plan,
    check: Option<&RoleCheck>,
) -> Result<Option<RoleCheck>, StoreError> {
    let Some(check) = check else {
        return Ok(None);
    };
    let (email, owner) = (&plan.email, &plan.owner.uid);
    plan.store().promise_role_check(email, owner, check).await?;
    Ok(Some(check.clone()))
}

/// [`in_sync`] with the balance status read for it.
pub(super) fn in_sync_with(
    plan: &Plan,
    user: &LibreChatUser,
    stored: &StoredUser,
    balance: Option<UserBalanceStatus>,
) -> Outcome {
    let mut outcome = in_sync(plan, user, stored);
    if let Some(mirror) = outcome.mirror.as_mut() {
        mirror.balance = balance;
    }
    outcome
}

/// Whether `stored` is the declared account as declared: the plan's email, no field drifted.
pub(super) fn matches_declaration(plan: &Plan, stored: &StoredUser) -> bool {
    stored.email == plan.email && drift(stored, &plan.desired).is_empty()
}

/// Whether the declaration, as it matches `stored` now, may be written to the account the
/// claim names (see [`write_refused`]).
pub(super) async fn may_write_as_is(
    plan: &Plan,
    claim: &Claim,
    stored: &StoredUser,
) -> Result<bool, StoreError> {
    let account = Account {
        stored: stored.clone(),
        created: claim.made_its_account(),
        password_set: false,
        wrote: false,
        role_written: false,
        role_check: None,
    };
    let refused = write_refused(plan, &account, &drift(stored, &plan.desired)).await?;
    Ok(refused.is_none())
}

/// Why the role LibreChat holds `stored` in puts it out of this object's hands, if it does
/// (see [`crate::controller::tenancy::Tenancy::role_refusal`]).
pub(super) async fn held_role_refusal(
    plan: &Plan,
    stored: &StoredUser,
) -> Result<Option<String>, StoreError> {
    let role = stored.role.as_deref();
    plan.tenancy
        .role_refusal(plan.store(), &plan.email, role)
        .await
}

/// The outcome of an account that matches its declaration (`stored` as read before any
/// correction: the declared fields are taken from the plan).
pub(super) fn in_sync(plan: &Plan, user: &LibreChatUser, stored: &StoredUser) -> Outcome {
    let id = stored.id;
    // An undeclared role is LibreChat's to decide; status shows the one the account has.
    let role = plan.desired.role.clone().or_else(|| stored.role.clone());
    let password = match plan.password_version() {
        None => Cond::new(
            condition::PASSWORD_READY,
            true,
            reason::NO_PASSWORD,
            no_password_message(user),
        ),
        Some(_) => Cond::new(
            condition::PASSWORD_READY,
            true,
            reason::PASSWORD_APPLIED,
            "the password from the Secret is applied",
        ),
    };
    let status = user.status.as_ref();
    // A resync sees the person verify through LibreChat; nothing else of these changes.
    let verification = status.and_then(|s| s.verification.clone()).map(|v| {
        if stored.email_verified {
            VerificationStatus {
                state: VerificationState::Verified,
                ..Default::default()
            }
        } else {
            v
        }
    });
    Outcome {
        verification,
        actions: status.and_then(|s| s.actions.clone()),
        ready: Cond::new(
            condition::READY,
            true,
            reason::RECONCILED,
            format!("LibreChat account {} matches the declaration", plan.email),
        ),
        password,
        user_id: Some(id),
        role: Some(role.unwrap_or_else(|| "USER".into())),
        password_version: plan.password_version().map(String::from),
        password_min_length: plan.min_password_length(),
        instance: Some(crate::controller::target::instance_key(&plan.instance)),
        wrote: false,
        requeue: Some(plan.resync),
        mirror: Some(super::balance::Mirror::of(stored)),
        plugins: plan.plugins.keys(),
    }
}

/// Creates the account under an id reserved in the claim first, so a crash or a race can
/// never make two, and carries over the bans that name this identity before it exists.
async fn create(
    ctx: &Context,
    plan: &Plan,
    claim: &Claim,
    user: &LibreChatUser,
    role_check: Option<&RoleCheck>,
) -> Result<Result<Account, Outcome>, ReconcileError> {
    let store = plan.store();
    let (email, uid) = (&plan.email, &plan.owner.uid);
    let hash = match &plan.password {
        Some(p) => Some(new_account_hash(ctx, uid, p).await?),
        None => None,
    };
    if let Some(gone) = claim.user_id.filter(|_| claim.confirmed) {
        // The account this claim named was deleted in LibreChat: a fresh id, so nothing of
        // the old account's leftovers attaches to the new one, and the record of what was
        // installed on it (the person's own replaced credentials among them) goes with it.
        store.forget_installed_plugins(gone, uid).await?;
        store.renew_reservation(email, uid, gone).await?;
    }
    let reserved = store.reserve_user_id(email, uid, ObjectId::new()).await?;
    // A ban that follows this identity is in force before the account can be used: one
    // declared from the admin's namespace or from this object's own (a tenant's ban of an
    // email it managed once does not reach an account made for another namespace).
    let may_carry = |share: &BanShare| plan.tenancy.declared_here_or_by_admin(&share.owner);
    store
        .carry_bans(&ban_subjects(plan), &reserved.to_hex(), may_carry)
        .await?;
    crate::fault::pause_point("before-account-create").await;
    let role_check = promise_role_check(plan, role_check).await?;
    let created = store.create_user(reserved, &plan.desired, hash).await?;
    ctx.hashed_ahead.forget(uid);
    match created {
        Created::Inserted(id) => {
            crate::fault::crash_point("after-account-insert");
            super::balance::start_balance(ctx, plan, user, id).await?;
            store.record_claimed_user(email, uid, id, true).await?;
            let note = format!("created LibreChat account {email} ({})", id.to_hex());
            ctx.changed(user, plan.change("Created", id, note)).await;
            let stored = as_created(id, &plan.desired, None);
            Ok(Ok(Account {
                stored,
                created: true,
                password_set: plan.password.is_some(),
                wrote: true,
                role_written: plan.desired.role.is_some(),
                role_check,
            }))
        }
        // Our own id: a concurrent reconcile of this object created it. Another id: LibreChat
        // registered this email between our look and our insert, which is an adoption.
        Created::AlreadyThere(found) => match store.find_user_by_id(found).await? {
            Some(stored) => match super::redis_out::waiting(plan, user) {
                Some(outcome) => Ok(Err(outcome)),
                // Our own insert may be the one that landed: the check is made all the same.
                None => Ok(take(ctx, plan, claim, stored, user)
                    .await?
                    .map(|taken| Account {
                        role_check,
                        ..taken
                    })),
            },
            None => Err(StoreError::EmailTaken(email.clone()).into()),
        },
    }
}

/// The hash a new account is written with: the one made while it waited for its instance,
/// when it is of this very version of the password Secret, else a new one. Kept until the
/// account is written, so a write that fails does not cost the hash again.
async fn new_account_hash(
    ctx: &Context,
    uid: &str,
    password: &ResolvedPassword,
) -> Result<String, StoreError> {
    if let Some(hash) = ctx.hashed_ahead.hash_of(uid, &password.version) {
        return Ok(hash);
    }
    let hash = ctx.hasher.hash(password.value.clone()).await?;
    ctx.hashed_ahead.keep(uid, &password.version, hash.clone());
    Ok(hash)
}

/// The identities a ban can name this account by: its email, and the object that owns it.
pub(crate) fn ban_subjects(plan: &Plan) -> Vec<String> {
    crate::librechat::bans::subjects_of(&plan.email, &plan.owner.uid)
}

/// Takes an existing account: the claim's own (created by the operator), or one adopted now,
/// within the object's tenancy.
async fn take(
    ctx: &Context,
    plan: &Plan,
    claim: &Claim,
    stored: StoredUser,
    user: &LibreChatUser,
) -> Result<Result<Account, Outcome>, ReconcileError> {
    let store = plan.store();
    let (email, uid) = (&plan.email, &plan.owner.uid);
    if stored.email != *email {
        // Still this object's account: what a write owed it is done before the refusal.
        store.finish_owed(claim).await?;
        let message = format!("the account this object owns ({}) now has the email {}; nothing was written. Fix the email in LibreChat or re-create this object", stored.id.to_hex(), stored.email);
        return Ok(Err(Outcome::stalled(
            reason::IDENTITY_CHANGED,
            message,
            user,
        )));
    }
    let ours = claim.user_id == Some(stored.id);
    if ours {
        let created = claim.made_its_account();
        if !claim.confirmed {
            // Created before a crash kept the claim from saying so.
            super::balance::start_balance(ctx, plan, user, stored.id).await?;
            store
                .record_claimed_user(email, uid, stored.id, true)
                .await?;
        }
        return Ok(Ok(Account {
            stored,
            created,
            password_set: false,
            wrote: false,
            role_written: false,
            role_check: None,
        }));
    }
    if let Some(gone) = claim.user_id.filter(|_| claim.confirmed) {
        // The claim's own account was deleted in LibreChat (this one was found by its email):
        // the record of what was installed on it goes with it, whatever happens to this one.
        store.forget_installed_plugins(gone, uid).await?;
    }
    // Not made by this claim: someone else made it, so it is an adoption.
    if !plan.adopt {
        store.release(email, uid).await?;
        let message = format!("a LibreChat account {email} exists that this object did not create; set spec.adopt: true to take it over");
        return Ok(Err(
            Outcome::waiting(reason::ALREADY_EXISTS, message, user).after(plan.resync)
        ));
    }
    // A refused adoption holds no claim, so it blocks nobody who may take the account.
    if let Some(why) = refusal_to_adopt(plan, &stored).await? {
        store.release(email, uid).await?;
        return Ok(Err(Outcome::stalled(reason::NOT_PERMITTED, why, user)));
    }
    if let Some(why) = managed_under_another_email(ctx, plan, &stored).await? {
        store.release(email, uid).await?;
        // Looked at again at the resync: the other object's going frees another email than
        // this one's, and so wakes nothing here.
        let outcome = Outcome::waiting(reason::CONFLICT, why, user).after(plan.resync);
        return Ok(Err(outcome));
    }
    store
        .record_claimed_user(email, uid, stored.id, false)
        .await?;
    let note = format!("took over the existing LibreChat account {email}");
    ctx.changed(user, plan.change("Adopted", stored.id, note))
        .await;
    Ok(Ok(Account {
        stored,
        created: false,
        password_set: false,
        wrote: true,
        role_written: false,
        role_check: None,
    }))
}

/// Why `stored` is not free to adopt although no record claims its email: another object's
/// record names the account under the email it had (changed since outside the operator, so
/// that object reads `IdentityChanged`). Two records naming one account would let either
/// object's deletion delete what the other manages.
async fn managed_under_another_email(
    ctx: &Context,
    plan: &Plan,
    stored: &StoredUser,
) -> Result<Option<String>, ReconcileError> {
    // Every record naming it (the index is not unique): a stale one must not hide a live one.
    for other in plan.store().find_claims_of_user(stored.id).await? {
        if other.owner.uid == plan.owner.uid
            || !super::claim::owner_still_exists(ctx, &other.owner).await?
        {
            continue;
        }
        return Ok(Some(format!(
            "the account {} is managed by {} (declared under the email it had before it was changed in LibreChat); nothing was changed. Fix the email in LibreChat or remove one of the two objects",
            plan.email,
            plan.tenancy.names(&other.owner)
        )));
    }
    Ok(None)
}

/// Why this object may not adopt `stored` as declared, checked before it claims the email
/// so that a refused adoption never holds (even briefly) a record naming it, and again as it
/// takes the account. The account's role is read once for both checks.
pub(super) async fn refusal_to_adopt(
    plan: &Plan,
    stored: &StoredUser,
) -> Result<Option<String>, StoreError> {
    if held_role_refusal(plan, stored).await?.is_some() {
        return Ok(Some(adoption_refused(plan)));
    }
    let adopted = Account {
        stored: stored.clone(),
        created: false,
        password_set: false,
        wrote: true,
        role_written: false,
        role_check: None,
    };
    let changed = drift(stored, &plan.desired);
    Ok(write_refused_given(plan, &adopted, &changed, None))
}

/// Why this object may not adopt an account whose role it may not hold. The message is the
/// same whatever the role: a tenant must not learn another account's role by trying to adopt
/// it.
fn adoption_refused(plan: &Plan) -> String {
    format!(
        "the account {} holds a role this namespace may not hold or assign (ADMIN needs the instance's allowAdmin; a custom role, its tenantPolicy.assignableRoles); {}. It was not touched",
        plan.email,
        plan.tenancy.who_may("adopt it")
    )
}

/// Why the declaration may not be written to this account, if it may not: a tenant changes
/// role and password only of accounts the operator created for it (unless the instance's
/// tenantPolicy says otherwise), only the instance's own namespace changes a provider, and a
/// password goes onto an SSO account only when that namespace converts it explicitly.
async fn write_refused(
    plan: &Plan,
    account: &Account,
    changed: &[&str],
) -> Result<Option<String>, StoreError> {
    // A role this reconcile wrote itself was checked before the write (and is checked again
    // after it, see `role_taken_away`, for a deletion that began in between).
    let held_role = match account.role_written {
        true => None,
        false => held_role_refusal(plan, &account.stored).await?,
    };
    Ok(write_refused_given(plan, account, changed, held_role))
}

/// [`write_refused`], with why the account's role puts it out of this object's hands.
fn write_refused_given(
    plan: &Plan,
    account: &Account,
    changed: &[&str],
    held_role: Option<String>,
) -> Option<String> {
    let stored = &account.stored;
    let stored_provider = stored.provider.as_deref().unwrap_or("local");
    let declared_provider = plan.desired.provider.as_deref();
    if declared_provider.is_some_and(|p| p != stored_provider) && !plan.tenancy.administers {
        // The provider decides who signs in: LibreChat links an OpenID login to an `openid`
        // account by its email, and a stored password logs in whatever the provider says. A
        // tenant moving an account on or off an identity provider, even one it created, could
        // catch a person's SSO sign-in on an account whose password it knows.
        // A tenant is not told which provider: it may be probing accounts it does not manage.
        let how = match plan.tenancy.administers {
            true => format!("through '{stored_provider}'"),
            false => "in another way than declared".to_string(),
        };
        return Some(format!(
            "the account {} signs in {how}; only the instance's namespace '{}' changes how an existing account signs in. Nothing was written",
            plan.email, plan.tenancy.instance_namespace
        ));
    }
    if plan.declares_password() && stored_provider != "local" {
        let converts = plan.desired.provider.as_deref() == Some(Provider::Local.as_str());
        if !(converts && plan.tenancy.administers) {
            let how = match plan.tenancy.administers {
                true => format!("'{stored_provider}'"),
                false => "an identity provider".to_string(),
            };
            return Some(format!(
                "the account {} signs in through {how}, so no password is written to it; to convert it to a local account, declare provider: local from the instance's namespace '{}'",
                plan.email, plan.tenancy.instance_namespace
            ));
        }
    }
    if let Some(why) = held_role {
        return Some(format!("{why}. Nothing was written"));
    }
    if account.created || plan.tenancy.may_manage_adopted {
        return None;
    }
    let mut forbidden: Vec<&str> = changed
        .iter()
        .copied()
        .filter(|f| matches!(*f, "role" | "emailVerified"))
        .collect();
    // A verification link voids the owner's own pending links and, with a mail relay, mails
    // them at every `resendVerificationAt`: not for an account the object only adopted.
    if plan.desired.email_verified == Some(false) && !stored.email_verified {
        forbidden.push("emailVerified");
    }
    if plan.declares_password() {
        forbidden.push("password");
    }
    if plan.plugins.declares_any() {
        forbidden.push("plugins");
    }
    if plan.declares_balance {
        forbidden.push("balance");
    }
    // Logging the owner out or stripping their second factor are takeover steps.
    forbidden.extend(plan.account_actions.iter().copied());
    (!forbidden.is_empty()).then(|| {
        format!(
            "this object adopted the account {} and may not change its {}: {} unless the instance's tenantPolicy.manageAdoptedAccounts is true. Nothing was written",
            plan.email,
            forbidden.join(", "),
            plan.tenancy.who_may("change them")
        )
    })
}

/// Puts the declared fields back, promising a cache drop before a role change.
async fn correct(
    ctx: &Context,
    plan: &Plan,
    account: &mut Account,
    user: &LibreChatUser,
    role_check: Option<&RoleCheck>,
) -> Result<Result<(), Outcome>, ReconcileError> {
    let changed = drift(&account.stored, &plan.desired);
    if let Some(why) = write_refused(plan, account, &changed).await? {
        return Ok(Err(Outcome::stalled(reason::NOT_PERMITTED, why, user)));
    }
    if changed.is_empty() {
        return Ok(Ok(()));
    }
    let store = plan.store();
    let cached = changed.contains(&"role");
    // Moving a local account onto an identity provider takes its password away (see
    // correct_user); the sessions it opened end with it.
    let signs_out = leaves_local_sign_in(&account.stored, &plan.desired);
    if cached {
        store
            .promise(&plan.email, &plan.owner.uid, FollowUp::DropCaches)
            .await?;
        account.role_check = promise_role_check(plan, role_check).await?;
    }
    if signs_out {
        store
            .promise(&plan.email, &plan.owner.uid, FollowUp::RevokeSessions)
            .await?;
    }
    if changed.contains(&"emailVerified") {
        // The person's pending links are void once the account is verified. They go first:
        // after the write, a failed call or a crash would leave them for good, since the next
        // look finds the account verified already and owes it nothing.
        store
            .delete_verification_tokens(account.stored.id, &plan.email)
            .await?;
    }
    store.correct_user(&account.stored, &plan.desired).await?;
    account.role_written = cached;
    // Sessions end before the caches are dropped: a failing Redis must not keep them alive.
    if signs_out {
        store.revoke_sessions(account.stored.id).await?;
        store
            .fulfilled(&plan.email, &plan.owner.uid, FollowUp::RevokeSessions)
            .await?;
        account.stored.password_hash = None;
    }
    if cached {
        crate::fault::crash_point("after-role-change");
        store.drop_user_caches(&account.stored).await?;
        store
            .fulfilled(&plan.email, &plan.owner.uid, FollowUp::DropCaches)
            .await?;
    }
    account.wrote = true;
    let spec_changed =
        user.status.as_ref().and_then(|s| s.observed_generation) != user.metadata.generation;
    let (event, verb) = if spec_changed {
        ("Updated", "updated")
    } else {
        ("DriftCorrected", "put back")
    };
    let note = format!("{verb} {} of {}", changed.join(", "), plan.email);
    ctx.changed(user, plan.change(event, account.stored.id, note))
        .await;
    Ok(Ok(()))
}

/// Whether status says this version of the password was applied to this very account (the
/// one the ownership record led to): an account LibreChat registered again under the email,
/// or one status names falsely, gets the password applied.
pub(super) fn password_applied_to(plan: &Plan, user: &LibreChatUser, id: ObjectId) -> bool {
    let Some(status) = user.status.as_ref() else {
        return false;
    };
    let id = id.to_hex();
    let spec_unchanged = status.observed_generation == user.metadata.generation;
    let recorded = status.password_secret_version.as_deref();
    let applied = match (recorded, plan.password_version()) {
        (Some(r), Some(current)) => {
            crate::controller::password::names_version(r, current, spec_unchanged)
        }
        _ => false,
    };
    applied && status.user_id.as_deref() == Some(id.as_str())
}

/// Applies the password when its Secret version is new; re-hashes only a changed password,
/// and then always ends the account's sessions (promised first, so a crash cannot skip it).
/// Returns the PasswordReady condition, the applied version, and whether it rotated.
async fn apply_password(
    ctx: &Context,
    plan: &Plan,
    account: &Account,
    user: &LibreChatUser,
) -> Result<(Cond, Option<String>, bool), ReconcileError> {
    let applied = Cond::new(
        condition::PASSWORD_READY,
        true,
        reason::PASSWORD_APPLIED,
        "the password from the Secret is applied",
    );
    let Some(version) = plan.password_version() else {
        let none = Cond::new(
            condition::PASSWORD_READY,
            true,
            reason::NO_PASSWORD,
            no_password_message(user),
        );
        return Ok((none, None, false));
    };
    let already = account.password_set || password_applied_to(plan, user, account.stored.id);
    // `converge` goes on with an unread password only for the account it was applied to.
    let (Some(password), false) = (&plan.password, already) else {
        return Ok((applied, Some(version.to_string()), false));
    };
    let store = plan.store();
    let id = account.stored.id;
    if let Some(hash) = account.stored.password_hash.clone() {
        if ctx.hasher.verify(password.value.clone(), hash).await? {
            return Ok((applied, Some(password.version.clone()), false));
        }
    }
    let hash = ctx.hasher.hash(password.value.clone()).await?;
    store
        .promise(&plan.email, &plan.owner.uid, FollowUp::RevokeSessions)
        .await?;
    store.set_password_hash(id, &hash).await?;
    crate::fault::crash_point("after-password-hash");
    store.revoke_sessions(id).await?;
    store
        .fulfilled(&plan.email, &plan.owner.uid, FollowUp::RevokeSessions)
        .await?;
    let note = format!(
        "password of {} changed; its sessions were revoked",
        plan.email
    );
    ctx.changed(user, plan.change("PasswordRotated", id, note))
        .await;
    Ok((applied, Some(password.version.clone()), true))
}
