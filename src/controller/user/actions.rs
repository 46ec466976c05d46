//! One-shot actions declared by trigger times (`logoutAt`, `resetTwoFactorAt`,
//! `resendVerificationAt`) and email verification. Each action is applied once per trigger
//! value: the ownership record keeps the value it was applied for, status mirrors it.

use std::collections::BTreeMap;

use super::{Outcome, Plan};
use crate::api::common::reason;
use crate::api::user::{
    ActionsStatus, AppliedAction, LibreChatUserSpec, VerificationState, VerificationStatus,
};
use crate::api::LibreChatUser;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::owned_secret::{self, OwnedSecretError};
use crate::controller::status::now_rfc3339;
use crate::controller::target::{configuration_for, mail_failure_for};
use crate::librechat::one_shot::{AppliedActions, OneShot};
use crate::librechat::ownership::{Claim, FollowUp};
use crate::librechat::users::StoredUser;
use crate::librechat::verification::{
    new_raw_verification_token, verification_link, IssuedVerification,
};
use crate::mail::Delivery;
use crate::metrics::SecretUse;

/// What the actions leave in status.
pub(super) struct ActionsReport {
    pub verification: Option<VerificationStatus>,
    pub actions: Option<ActionsStatus>,
}

/// The declared triggers that act on the account itself, by their API names.
pub(super) fn declared_account_actions(spec: &LibreChatUserSpec) -> Vec<&'static str> {
    let mut declared = Vec::new();
    if spec.logout_at.is_some() {
        declared.push("logoutAt");
    }
    if spec.reset_two_factor_at.is_some() {
        declared.push("resetTwoFactorAt");
    }
    declared
}

/// The actions on the account itself with the trigger each declares, if any.
fn requested_on_account(spec: &LibreChatUserSpec) -> [(OneShot, Option<&str>); 2] {
    [
        (OneShot::Logout, spec.logout_at.as_deref()),
        (OneShot::ResetTwoFactor, spec.reset_two_factor_at.as_deref()),
    ]
}

/// The trigger value `action` should be applied for now, if any: a trigger that moved past the
/// value last applied.
fn due(trigger: Option<&str>, applied: &AppliedActions, action: OneShot) -> Option<String> {
    let trigger = trigger?;
    let last = applied.get(action.as_str());
    let later = match last.and_then(|l| l.parse::<jiff::Timestamp>().ok()) {
        Some(last) => trigger.parse::<jiff::Timestamp>().is_ok_and(|at| at > last),
        None => last.map(String::as_str) != Some(trigger),
    };
    later.then(|| trigger.to_string())
}

/// Applies what is due. `stored` is the account as read before this reconcile corrected it.
pub(super) async fn apply(
    ctx: &Context,
    plan: &Plan,
    claim: &Claim,
    stored: &StoredUser,
    user: &LibreChatUser,
) -> Result<Result<ActionsReport, Outcome>, ReconcileError> {
    let spec = &user.spec;
    // Who may ask for these was settled before the first write (account::write_refused).
    let mut applied = claim.actions.clone();
    for (action, declared) in requested_on_account(spec) {
        if let Some(trigger) = due(declared, &claim.actions, action) {
            act_on_account(ctx, plan, stored, user, (action, &trigger)).await?;
            applied.insert(action.as_str().into(), trigger);
        }
    }
    let verification = match verify(ctx, plan, claim, stored, user).await? {
        Ok(v) => v,
        Err(mut waiting) => {
            // The link waits; the actions applied beside it are shown all the same.
            waiting.actions = actions_status(spec, user, &applied);
            return Ok(Err(waiting));
        }
    };
    if let Some(v) = &verification {
        if let Some(trigger) = v.1.clone() {
            applied.insert(OneShot::Verification.as_str().into(), trigger);
        }
    }
    Ok(Ok(ActionsReport {
        verification: verification.map(|v| v.0),
        actions: actions_status(spec, user, &applied),
    }))
}

/// Logs the account out everywhere or resets its two-factor authentication, records the
/// trigger it was done for, and says so.
async fn act_on_account(
    ctx: &Context,
    plan: &Plan,
    stored: &StoredUser,
    user: &LibreChatUser,
    (action, trigger): (OneShot, &str),
) -> Result<(), ReconcileError> {
    let store = plan.store();
    let (event, note) = match action {
        OneShot::ResetTwoFactor => return reset_two_factor(ctx, plan, stored, user, trigger).await,
        // Verification links are issued by `verify`, with their own delivery.
        OneShot::Verification => return Ok(()),
        OneShot::Logout => {
            store.revoke_sessions(stored.id).await?;
            let what = format!("logged {} out everywhere", plan.email);
            ("LoggedOut", format!("{what} (logoutAt {trigger})"))
        }
    };
    store
        .record_action(&plan.email, &plan.owner.uid, action, trigger)
        .await?;
    ctx.changed(user, plan.change(event, stored.id, note)).await;
    Ok(())
}

/// Resets the account's two-factor authentication once for `trigger`. Recorded as done right
/// after the write, before LibreChat's caches are dropped (a follow-up promised before the
/// write, finished by a later reconcile if Redis fails it): a retry must never reset again a
/// second factor the person set up since, as the reset told them to.
async fn reset_two_factor(
    ctx: &Context,
    plan: &Plan,
    stored: &StoredUser,
    user: &LibreChatUser,
    trigger: &str,
) -> Result<(), ReconcileError> {
    let store = plan.store();
    let (email, owner) = (&plan.email, &plan.owner.uid);
    // LibreChat may hold the user document in its auth cache.
    store.promise(email, owner, FollowUp::DropCaches).await?;
    store.reset_two_factor(stored.id).await?;
    store
        .record_action(email, owner, OneShot::ResetTwoFactor, trigger)
        .await?;
    crate::fault::crash_point("after-two-factor-reset");
    let note = format!("reset two-factor authentication of {email} (resetTwoFactorAt {trigger})");
    ctx.changed(user, plan.change("TwoFactorReset", stored.id, note))
        .await;
    store.drop_user_caches(stored).await?;
    store.fulfilled(email, owner, FollowUp::DropCaches).await?;
    Ok(())
}

/// The `status.actions` mirror of what the record says was applied. `appliedAt` is kept from
/// status while the trigger is the same, so a resync does not move it.
fn actions_status(
    spec: &LibreChatUserSpec,
    user: &LibreChatUser,
    applied: &AppliedActions,
) -> Option<ActionsStatus> {
    let before = user.status.as_ref().and_then(|s| s.actions.clone());
    let mirror = |action: OneShot, declared: Option<&str>, previous: Option<AppliedAction>| {
        let requested = applied.get(action.as_str())?;
        // The record of the initial verification link is not a trigger anybody declared.
        declared?;
        Some(match previous {
            Some(p) if &p.requested_at == requested => p,
            _ => AppliedAction {
                requested_at: requested.clone(),
                applied_at: now_rfc3339(),
            },
        })
    };
    let before = before.unwrap_or_default();
    let status = ActionsStatus {
        logout: mirror(OneShot::Logout, spec.logout_at.as_deref(), before.logout),
        reset_two_factor: mirror(
            OneShot::ResetTwoFactor,
            spec.reset_two_factor_at.as_deref(),
            before.reset_two_factor,
        ),
        resend_verification: mirror(
            OneShot::Verification,
            spec.resend_verification_at.as_deref(),
            before.resend_verification,
        ),
    };
    (status != ActionsStatus::default()).then_some(status)
}

/// The trigger of the initial verification link, recorded like a declared one.
const INITIAL_LINK: &str = "initial";

/// Email verification: returns the status and, when a link was issued, the trigger recorded.
async fn verify(
    ctx: &Context,
    plan: &Plan,
    claim: &Claim,
    stored: &StoredUser,
    user: &LibreChatUser,
) -> Result<Result<Option<(VerificationStatus, Option<String>)>, Outcome>, ReconcileError> {
    let previous = user.status.as_ref().and_then(|s| s.verification.clone());
    let verified = VerificationStatus {
        state: VerificationState::Verified,
        ..Default::default()
    };
    match user.spec.email_verified {
        // Not declared: verification is LibreChat's business alone.
        None => return Ok(Ok(None)),
        Some(false) => {}
        Some(true) => return marked_verified(plan, stored, previous, verified).await,
    }
    if stored.email_verified {
        // The person verified through LibreChat: LibreChat's decision, never undone.
        return Ok(Ok(Some((verified, None))));
    }
    let Some(trigger) = link_due(user, claim) else {
        let pending = previous.unwrap_or_default();
        return Ok(Ok(Some((pending, None))));
    };
    match issue_link(ctx, plan, (claim, stored), user, &trigger).await? {
        Ok(status) => Ok(Ok(Some((status, Some(trigger))))),
        Err(outcome) => Ok(Err(outcome)),
    }
}

/// The trigger a verification link is due for on an unverified account, if one is: the
/// initial link, or a `resendVerificationAt` past the one last applied.
fn link_due(user: &LibreChatUser, claim: &Claim) -> Option<String> {
    let recorded = claim.actions.get(OneShot::Verification.as_str());
    match (user.spec.resend_verification_at.as_deref(), recorded) {
        (None, None) => Some(INITIAL_LINK.to_string()),
        (declared, _) => due(declared, &claim.actions, OneShot::Verification),
    }
}

/// Whether [`apply`] would write nothing to this account: no trigger past the one last
/// applied, no link to issue, no pending link to void.
pub(super) fn nothing_due(claim: &Claim, stored: &StoredUser, user: &LibreChatUser) -> bool {
    let account_action_due = requested_on_account(&user.spec)
        .into_iter()
        .any(|(action, declared)| due(declared, &claim.actions, action).is_some());
    let verification_due = match user.spec.email_verified {
        None => false,
        Some(_) if stored.email_verified => false,
        Some(true) => true,
        Some(false) => link_due(user, claim).is_some(),
    };
    !account_action_due && !verification_due
}

/// `emailVerified: true`: when this reconcile marked the account verified, LibreChat's pending
/// links are void and go.
async fn marked_verified(
    plan: &Plan,
    stored: &StoredUser,
    previous: Option<VerificationStatus>,
    verified: VerificationStatus,
) -> Result<Result<Option<(VerificationStatus, Option<String>)>, Outcome>, ReconcileError> {
    if !stored.email_verified {
        plan.store()
            .delete_verification_tokens(stored.id, &plan.email)
            .await?;
    }
    Ok(Ok(previous.map(|_| (verified, None))))
}

/// A link not emailed yet: the address was mailed within the pace. Looked at again when the
/// address's turn comes, not before.
fn paced(ctx: &Context, email: &str, wait: std::time::Duration, user: &LibreChatUser) -> Outcome {
    let message = format!(
        "an email went to {email} within the last {}s (one email per address per --mail-pace; LibreChat's own resend allows 2 in 2 minutes); this verification link goes in {}s",
        ctx.mail_pacer.pace().as_secs(),
        wait.as_secs() + 1
    );
    let turn = wait + std::time::Duration::from_millis(100);
    Outcome::waiting(reason::VERIFICATION_NOT_SENT, message, user).after(turn)
}

/// Issues one verification link for `trigger`: emailed through the instance's relay when it
/// has one, otherwise written to the object's Secret.
async fn issue_link(
    ctx: &Context,
    plan: &Plan,
    (claim, stored): (&Claim, &StoredUser),
    user: &LibreChatUser,
    trigger: &str,
) -> Result<Result<VerificationStatus, Outcome>, ReconcileError> {
    let (store, email, uid) = (plan.store(), plan.email.as_str(), plan.owner.uid.as_str());
    let by_email = plan.instance.spec.smtp.is_some() && plan.instance.spec.domain_client.is_some();
    // The inbox's turn, given back if nothing is handed to the relay.
    let turn = match by_email.then(|| ctx.mail_pacer.reserve(email)) {
        Some(Err(wait)) => return Ok(Err(paced(ctx, email, wait, user))),
        Some(Ok(turn)) => Some(turn),
        None => None,
    };
    let raw = new_raw_verification_token();
    let hash = ctx.hasher.hash(raw.clone()).await?;
    let previous = claim.actions.get(OneShot::Verification.as_str());
    let right = LinkRight {
        store,
        email,
        uid,
        previous: previous.map(String::as_str),
        by_email,
    };
    if !right.take(trigger).await? {
        return Ok(Ok(VerificationStatus::default()));
    }
    let issued = IssuedVerification::now();
    if let Err(e) = store
        .issue_verification(&issued, (stored.id, email), &hash)
        .await
    {
        // The write may have been applied before its answer was lost.
        right.take_back(&issued).await?;
        return Err(e.into());
    }
    let expires_at = jiff::Timestamp::from_millisecond(issued.expires_ms)
        .map(|t| t.to_string())
        .unwrap_or_default();
    let delivery = match deliver(ctx, plan, (stored, user), by_email, (&raw, &expires_at)).await {
        Ok(delivery) => delivery,
        Err(why) => {
            // Nobody received this link: it goes, and the person's newest own link (if any)
            // is again the one LibreChat checks.
            right.take_back(&issued).await?;
            let message = format!("the verification link could not be delivered: {why}");
            let mut waiting = Outcome::waiting(reason::VERIFICATION_NOT_SENT, message, user);
            waiting.requeue = Some(ctx.mail_failures.failed(uid));
            return Ok(Err(waiting));
        }
    };
    if let Some(turn) = turn {
        turn.used();
    }
    ctx.mail_failures.succeeded(uid);
    // Delivered: the older links are void, as LibreChat's resend voids them. Not a reason to
    // fail the delivery's report: LibreChat checks the newest link, which is this one.
    if let Err(e) = store
        .void_other_verifications(stored.id, email, &issued)
        .await
    {
        tracing::warn!(error = %e, "could not delete the verification links older than the one delivered");
    }
    if !by_email {
        store
            .record_action(email, uid, OneShot::Verification, trigger)
            .await?;
    }
    let how = (by_email, delivery);
    Ok(Ok(
        report_issued(ctx, plan, stored, user, how, expires_at).await
    ))
}

/// The right to email one verification link (taken only with a relay), and what goes when the
/// link reaches nobody: the right is given back and the link withdrawn.
struct LinkRight<'a> {
    store: &'a crate::librechat::Store,
    email: &'a str,
    uid: &'a str,
    /// The trigger recorded before, put back with the right.
    previous: Option<&'a str>,
    by_email: bool,
}

impl LinkRight<'_> {
    /// At most one email per trigger, even if this process dies right after sending. Taken
    /// before the token is written: a right already taken (a send that may have gone, a stale
    /// read) writes nothing, so the person's own pending links stay as they are.
    async fn take(&self, trigger: &str) -> Result<bool, crate::librechat::StoreError> {
        if !self.by_email {
            return Ok(true);
        }
        let action = OneShot::Verification;
        self.store
            .take_action(self.email, self.uid, action, trigger)
            .await
    }

    /// Withdraws `issued` and gives the right back: both tried, whichever fails.
    async fn take_back(&self, issued: &IssuedVerification) -> Result<(), ReconcileError> {
        let withdrawn = self.store.withdraw_verification(issued).await;
        if self.by_email {
            let action = OneShot::Verification;
            self.store
                .return_action(self.email, self.uid, action, self.previous)
                .await?;
        }
        Ok(withdrawn?)
    }
}

/// Hands the link to the relay, or writes it to the object's Secret.
async fn deliver(
    ctx: &Context,
    plan: &Plan,
    (stored, user): (&StoredUser, &LibreChatUser),
    by_email: bool,
    (raw, expires_at): (&str, &str),
) -> Result<Delivery, String> {
    if by_email {
        return deliver_by_email(ctx, plan, stored, raw, expires_at).await;
    }
    let in_secret = deliver_in_secret(ctx, plan, user, raw, expires_at).await;
    in_secret.map(|()| Delivery::Confirmed)
}

/// Says a delivered link in an event and returns the status that names it.
async fn report_issued(
    ctx: &Context,
    plan: &Plan,
    stored: &StoredUser,
    user: &LibreChatUser,
    (by_email, delivery): (bool, Delivery),
    expires_at: String,
) -> VerificationStatus {
    let how = if by_email { "email" } else { "secret" };
    let unconfirmed = match delivery {
        Delivery::Confirmed => "",
        Delivery::Unconfirmed => " (the relay did not confirm it in time: it may not have arrived, and is not sent again; set resendVerificationAt to send a new one)",
    };
    let email = &plan.email;
    let note = format!(
        "issued a verification link for {email}, delivered by {how}, valid until {expires_at}{unconfirmed}"
    );
    ctx.changed(user, plan.change("VerificationIssued", stored.id, note))
        .await;
    VerificationStatus {
        state: VerificationState::Pending,
        expires_at: Some(expires_at),
        delivered_by: Some(how.into()),
    }
}

async fn deliver_by_email(
    ctx: &Context,
    plan: &Plan,
    stored: &StoredUser,
    raw: &str,
    expires_at: &str,
) -> Result<Delivery, String> {
    let instance = &plan.instance;
    let (Some(smtp), Some(site)) = (&instance.spec.smtp, &instance.spec.domain_client) else {
        return Err("the instance declares no smtp relay and domainClient".into());
    };
    // The relay and its Secret are the instance's configuration: named only to its namespace.
    let namespace = plan.tenancy.namespace.as_str();
    let credentials = crate::controller::secrets::smtp_credentials(&ctx.client, instance, smtp)
        .await
        .map_err(|e| configuration_for(instance, reason::DEPENDENCY_FAILED, &e, namespace))?;
    let link = verification_link(site, raw, &plan.email);
    let name = stored.name.as_deref().unwrap_or(&plan.email);
    let message = crate::mail::Verification {
        to: &plan.email,
        name,
        link: &link,
        expires_at,
    };
    let delivery = crate::mail::send_verification(smtp, credentials, &message)
        .await
        .map_err(|e| mail_failure_for(instance, &e, namespace))?;
    Ok(delivery)
}

/// The Secret that holds the link when there is no relay.
pub(super) fn verification_secret_name(user: &LibreChatUser) -> String {
    format!("{}-verification", kube::ResourceExt::name_any(user))
}

async fn deliver_in_secret(
    ctx: &Context,
    plan: &Plan,
    user: &LibreChatUser,
    raw: &str,
    expires_at: &str,
) -> Result<(), String> {
    let mut data = BTreeMap::from([
        ("email".to_string(), plan.email.clone()),
        ("token".to_string(), raw.to_string()),
        ("expiresAt".to_string(), expires_at.to_string()),
    ]);
    if let Some(site) = &plan.instance.spec.domain_client {
        data.insert("url".into(), verification_link(site, raw, &plan.email));
    }
    let name = verification_secret_name(user);
    owned_secret::put(&ctx.client, user, &name, SecretUse::Verification, data)
        .await
        .map_err(|e: OwnedSecretError| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn applied(action: OneShot, value: &str) -> AppliedActions {
        BTreeMap::from([(action.as_str().to_string(), value.to_string())])
    }

    #[test]
    fn a_trigger_applies_once_and_again_only_when_it_moves_on() {
        let none = AppliedActions::new();
        let t1 = "2026-12-02T10:00:00Z";
        let t2 = "2026-12-02T11:00:00Z";
        assert_eq!(due(Some(t1), &none, OneShot::Logout).as_deref(), Some(t1));
        assert_eq!(due(None, &none, OneShot::Logout), None);
        let done = applied(OneShot::Logout, t1);
        assert_eq!(due(Some(t1), &done, OneShot::Logout), None, "a resync");
        assert_eq!(due(Some(t2), &done, OneShot::Logout).as_deref(), Some(t2));
        let later = applied(OneShot::Logout, t2);
        assert_eq!(due(Some(t1), &later, OneShot::Logout), None, "moved back");
        let initial = applied(OneShot::Verification, INITIAL_LINK);
        assert_eq!(
            due(Some(t1), &initial, OneShot::Verification).as_deref(),
            Some(t1)
        );
    }
}
