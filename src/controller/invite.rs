//! The UserInvite reconciler: issue a token as LibreChat's `createInvite` does, hand the link
//! over in an owned Secret, and follow it to `Accepted` or `Expired`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;

use super::audit::Change;
use super::caches::Source;
use super::context::Context;
use super::error::ReconcileError;
use super::instance::resync_period;
use super::invite_rivals::{declared_elsewhere, Asking};
use super::owned_secret::{self, OwnedSecretError};
use super::report::report;
use super::secrets::value_of;
use super::target::{self, Target};
use super::tenancy::Tenancy;
use crate::api::common::{condition, reason, Cond, SecretKeyRef, FINALIZER};
use crate::api::invite::{InvitePhase, UserInviteStatus};
use crate::api::validate::normalize_email;
use crate::api::{LibreChatInstance, UserInvite};
use crate::librechat::invites::{hash_token, new_raw_token, InviteRecord};
use crate::librechat::{Store, StoreError};
use crate::metrics::SecretUse;

const KEY_TOKEN: &str = "token";
const KEY_URL: &str = "url";
const KEY_EMAIL: &str = "email";
const RETRY: Duration = Duration::from_secs(10);

pub async fn reconcile(
    invite: Arc<UserInvite>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let api: Api<UserInvite> =
        Api::namespaced(ctx.client.clone(), &invite.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, invite, |event| async {
        match event {
            FinalizerEvent::Apply(invite) => apply(&api, &invite, &ctx).await,
            FinalizerEvent::Cleanup(invite) => match cleanup(&invite, &ctx).await {
                Err(ReconcileError::Blocked(message)) => {
                    blocked(&api, &invite, &ctx, message).await
                }
                done => done,
            },
        }
    })
    .await
    .map_err(ReconcileError::from)
}

struct Outcome {
    ready: Cond,
    phase: Option<InvitePhase>,
    expires_at: Option<String>,
    user_id: Option<String>,
    /// Set when the invitation email went out in this reconcile.
    email_sent_at: Option<String>,
    instance: Option<String>,
    /// When to look again; `None`: only on a change of something watched.
    requeue: Option<Duration>,
}

impl Outcome {
    fn waiting(invite: &UserInvite, reason: &str, message: impl Into<String>) -> Self {
        let status = invite.status.clone().unwrap_or_default();
        Outcome {
            ready: Cond::new(condition::READY, false, reason, message),
            phase: status.phase,
            expires_at: status.expires_at,
            user_id: status.user_id,
            requeue: Some(RETRY),
            email_sent_at: None,
            instance: status.instance,
        }
    }

    /// A problem a person must fix: no polling.
    fn stalled(invite: &UserInvite, reason: &str, message: impl Into<String>) -> Self {
        Outcome {
            requeue: None,
            ..Outcome::waiting(invite, reason, message)
        }
    }
}

/// A change to an invitation, for the audit trail: the account it concerns does not exist yet,
/// so it is named by the invited email.
fn invite_change(
    action: &'static str,
    instance: &LibreChatInstance,
    email: &str,
    note: String,
) -> Change {
    let instance = target::instance_key(instance);
    Change::applied(action, instance, Some(format!("invite:{email}")), note)
}

fn secret_name(invite: &UserInvite) -> String {
    invite
        .spec
        .secret_name
        .clone()
        .unwrap_or_else(|| format!("{}-invite", invite.name_any()))
}

fn register_url(domain_client: &str, raw: &str) -> String {
    let encoded = percent_encoding::utf8_percent_encode(raw, percent_encoding::NON_ALPHANUMERIC);
    format!(
        "{}/register?token={encoded}",
        domain_client.trim_end_matches('/')
    )
}

async fn apply(
    api: &Api<UserInvite>,
    invite: &UserInvite,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    crate::controller::report::begin(api, invite).await?;
    let (outcome, error) = match sync(invite, ctx).await {
        Ok(o) => (o, None),
        Err(ReconcileError::Store(e)) => (
            Outcome::waiting(
                invite,
                reason::STORE_ERROR,
                target::store_error_on(invite, &e),
            ),
            Some(ReconcileError::Store(e)),
        ),
        Err(other) => return Err(other),
    };
    let requeue = outcome.requeue;
    publish(api, invite, ctx, outcome).await?;
    super::report::next_action(error, requeue)
}

/// A revocation that cannot finish now: said in status (and an event), like a blocked user or
/// ban deletion, and retried.
async fn blocked(
    api: &Api<UserInvite>,
    invite: &UserInvite,
    ctx: &Context,
    message: String,
) -> Result<Action, ReconcileError> {
    let outcome = Outcome::waiting(invite, reason::DELETE_BLOCKED, message.clone());
    publish(api, invite, ctx, outcome).await?;
    Err(ReconcileError::Blocked(message))
}

async fn publish(
    api: &Api<UserInvite>,
    invite: &UserInvite,
    ctx: &Context,
    outcome: Outcome,
) -> Result<(), ReconcileError> {
    let shown = invite.status.as_ref().and_then(|s| s.user_id.as_ref());
    if outcome.phase == Some(InvitePhase::Accepted) && outcome.user_id.is_none() && shown.is_some()
    {
        // An id an earlier build showed (or anyone wrote) for an account this invitation's
        // own link is not known to have registered: taken out, once (a merge patch keeps a
        // field the status leaves out).
        let cleared = serde_json::json!({ "status": { "userId": null } });
        let name = invite.name_any();
        api.patch_status(&name, &PatchParams::default(), &Patch::Merge(&cleared))
            .await?;
    }
    let status = UserInviteStatus {
        phase: outcome.phase,
        expires_at: outcome.expires_at,
        user_id: outcome.user_id,
        email_sent_at: outcome
            .email_sent_at
            .or_else(|| invite.status.as_ref().and_then(|s| s.email_sent_at.clone())),
        instance: outcome.instance,
        ..Default::default()
    };
    report(api, ctx, invite, status, &[outcome.ready]).await?;
    Ok(())
}

async fn sync(invite: &UserInvite, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let outcome = sync_token(invite, ctx).await?;
    let wanted = invite.spec.send_email.unwrap_or(false);
    let sent = invite
        .status
        .as_ref()
        .and_then(|s| s.email_sent_at.as_ref())
        .is_some();
    // Only a Ready invitation is mailed: one its namespace may no longer hold (refused, or
    // its instance going) keeps its phase in status but gets no email.
    let ready = outcome.ready.ok == Some(true);
    if wanted && !sent && ready && outcome.phase == Some(InvitePhase::Pending) {
        return deliver(invite, ctx, outcome).await;
    }
    Ok(outcome)
}

/// Emails the link once, through the instance's relay. A failure is reported and retried;
/// the link in the Secret works regardless.
async fn deliver(
    invite: &UserInvite,
    ctx: &Context,
    mut outcome: Outcome,
) -> Result<Outcome, ReconcileError> {
    let namespace = invite.namespace().unwrap_or_default();
    let instance = target::find_instance(ctx, &invite.spec.instance_ref, &namespace).await?;
    let uid = invite.uid().unwrap_or_default();
    let Some(instance) = instance else {
        outcome.ready = email_not_sent("the instance is gone".into());
        outcome.requeue = Some(RETRY);
        return Ok(outcome);
    };
    let (Some(smtp), Some(site)) = (
        instance.spec.smtp.as_ref(),
        instance.spec.domain_client.as_deref(),
    ) else {
        let why = if instance.spec.smtp.is_none() {
            "sendEmail is set but the instance declares no smtp relay"
        } else {
            "the instance has no domainClient, so there is no link to send"
        };
        outcome.ready = email_not_sent(why.to_string());
        outcome.requeue = None;
        return Ok(outcome);
    };
    let store = match ctx.connections.shared(&ctx.client, &instance).await {
        Ok(stores) => stores.store,
        // Not a blocked deletion (the metric and alert of those): a reason not to mail yet.
        Err(p) => {
            let namespace = invite.namespace().unwrap_or_default();
            let why = super::target::configuration_for(&instance, p.reason, &p.message, &namespace);
            outcome.ready = email_not_sent(why);
            outcome.requeue = Some(RETRY);
            return Ok(outcome);
        }
    };
    // Read before the right to send is taken: a failed read must not leave it taken.
    let record = store.invite_record(&uid).await?;
    if let Some(taken) = record.as_ref().filter(|r| r.email_sent) {
        if taken.email_handover_open {
            handover_unknown(invite, ctx, &store, &taken.email).await?;
        }
        outcome.email_sent_at = Some(super::status::now_rfc3339());
        return Ok(outcome);
    }
    let issued = record.map(|r| r.token_hash);
    let expires_at = outcome.expires_at.clone().unwrap_or_default();
    // Everything the email needs is read before the right to send it is taken: the right is
    // held only across the handover to the relay.
    let mail = match prepare(invite, ctx, &instance, smtp, site, issued.as_deref()).await {
        Ok(mail) => mail,
        Err(why) => {
            outcome.ready = email_not_sent(why);
            outcome.requeue = Some(RETRY);
            return Ok(outcome);
        }
    };
    // Paced before the right is taken: an email held back is never one "that may have gone".
    let email = normalize_email(&invite.spec.email);
    let turn = match ctx.mail_pacer.reserve(&email) {
        Ok(turn) => turn,
        Err(wait) => {
            outcome.ready = email_not_sent(format!(
            "an email went to {email} within the last {}s (one email per address per --mail-pace); this invitation goes in {}s",
            ctx.mail_pacer.pace().as_secs(),
            wait.as_secs() + 1
            ));
            outcome.requeue = Some(wait + Duration::from_millis(100));
            return Ok(outcome);
        }
    };
    // The right to send is taken in the database before sending: at most one email, even
    // if this process dies or the status write fails right after.
    if !store.take_invite_email(&uid).await? {
        outcome.email_sent_at = Some(super::status::now_rfc3339());
        return Ok(outcome);
    }
    crate::fault::crash_point("before-invite-email");
    let sent = mail.send(smtp, &email, site, &expires_at).await;
    // A failed handover gives the inbox's turn back (its error is reported, not paced).
    if sent.is_ok() {
        turn.used();
    }
    report_sent(invite, ctx, (&instance, &store), &email, sent, outcome).await
}

/// What the handover of the invitation email to the relay came to: sent (an event, the time
/// in status) or refused (the right to send goes back, retried).
async fn report_sent(
    invite: &UserInvite,
    ctx: &Context,
    (instance, store): (&crate::api::LibreChatInstance, &Store),
    email: &str,
    sent: Result<crate::mail::Delivery, crate::mail::MailError>,
    mut outcome: Outcome,
) -> Result<Outcome, ReconcileError> {
    let namespace = invite.namespace().unwrap_or_default();
    match sent.map_err(|e| target::mail_failure_for(instance, &e, &namespace)) {
        Ok(delivery) => {
            let uid = invite.uid().unwrap_or_default();
            ctx.mail_failures.succeeded(&uid);
            // Recorded before anything is said: a crash in between leaves an email the relay
            // took unsaid, never said to be unconfirmed.
            if let Err(e) = store.close_invite_email_handover(&uid).await {
                tracing::warn!(error = %e, "could not record the invitation email's handover");
            }
            crate::fault::crash_point("after-invite-email");
            outcome.email_sent_at = Some(super::status::now_rfc3339());
            let note = match delivery {
                crate::mail::Delivery::Confirmed => {
                    format!("the invitation link was emailed to {email}")
                }
                crate::mail::Delivery::Unconfirmed => format!("the invitation link was handed to the relay for {email}, which did not confirm it in time: it may not have arrived, and is not sent again (the link in the Secret works; re-create the invitation to mail a new one)"),
            };
            let change = invite_change("EmailSent", instance, email, note);
            ctx.changed(invite, change).await;
        }
        Err(why) => {
            store
                .return_invite_email(&invite.uid().unwrap_or_default())
                .await?;
            outcome.ready = email_not_sent(why);
            let uid = invite.uid().unwrap_or_default();
            outcome.requeue = Some(ctx.mail_failures.failed(&uid));
        }
    }
    Ok(outcome)
}

/// The right to send was taken and what came of the handover is unknown (the operator died,
/// or a call failed, in between): the email may or may not have gone. At most one email, so it
/// is not sent again; the people who asked for it are told so, once.
async fn handover_unknown(
    invite: &UserInvite,
    ctx: &Context,
    store: &Store,
    email: &str,
) -> Result<(), StoreError> {
    let note = format!("the invitation email to {email} may not have gone: the operator stopped (or a call failed) while handing it to the relay, and it is not sent twice (the link in the Secret works; re-create the invitation to mail a new one)");
    ctx.event(invite, true, "EmailUnconfirmed", note).await;
    store
        .close_invite_email_handover(&invite.uid().unwrap_or_default())
        .await
}

fn email_not_sent(why: String) -> Cond {
    Cond::new(
        condition::READY,
        false,
        "EmailNotSent",
        format!("{why}; the link in the Secret works meanwhile. The operator retries"),
    )
}

/// An invitation ready to mail: the relay's credentials and the link.
struct PreparedMail {
    /// User and password for the relay, if it takes any (never logged).
    credentials: Option<(String, String)>,
    link: String,
}

impl PreparedMail {
    async fn send(
        self,
        smtp: &crate::api::instance::SmtpSpec,
        to: &str,
        site: &str,
        expires_at: &str,
    ) -> Result<crate::mail::Delivery, crate::mail::MailError> {
        let invitation = crate::mail::Invitation {
            to,
            link: &self.link,
            expires_at,
            site,
        };
        crate::mail::send_invitation(smtp, self.credentials, &invitation).await
    }
}

/// Reads what mailing the link to `site` takes: the relay's credentials, and the link the
/// invite's Secret holds, if its token is the one `issued` (the hash recorded for this invite).
async fn prepare(
    invite: &UserInvite,
    ctx: &Context,
    instance: &crate::api::LibreChatInstance,
    smtp: &crate::api::instance::SmtpSpec,
    site: &str,
    issued: Option<&str>,
) -> Result<PreparedMail, String> {
    // The relay's Secret is the instance's configuration: named only to its own namespace.
    let namespace = invite.namespace().unwrap_or_default();
    let credentials = super::secrets::smtp_credentials(&ctx.client, instance, smtp)
        .await
        .map_err(|e| {
            target::configuration_for(instance, reason::DEPENDENCY_FAILED, &e, &namespace)
        })?;
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &namespace);
    let name = secret_name(invite);
    let secret = api
        .get_opt(&name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("Secret '{name}' is gone"))?;
    let raw = value_of(
        &secret,
        &SecretKeyRef {
            name: name.clone(),
            key: KEY_TOKEN.into(),
        },
    )
    .map_err(|e| e.to_string())?;
    // Only the link this invite issued is ever emailed: secretName may be edited to point at
    // any Secret of the namespace, and its `token` must not leave by mail.
    let issued_here =
        owned_secret::owned_by(&secret, invite) && issued == Some(hash_token(&raw.value).as_str());
    if !issued_here {
        return Err(format!("Secret '{name}' does not hold the link this UserInvite issued; point spec.secretName back at the Secret the operator created for it"));
    }
    Ok(PreparedMail {
        credentials,
        link: register_url(site, &raw.value),
    })
}

async fn sync_token(invite: &UserInvite, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let namespace = invite.namespace().unwrap_or_default();
    // The instance first: a namespace no longer admitted has its link suspended whatever
    // else is wrong with the spec (`expiresIn` may be edited into an invalid one).
    let target = match target::resolve(ctx, &invite.spec.instance_ref, &invite.metadata).await? {
        Ok(t) => t,
        Err(p) => {
            // The refusal is what the status says; a failed suspension is tried again.
            if let Err(e) = suspend_link(invite, ctx, &p, &namespace).await {
                tracing::warn!(invite = %invite.name_any(), %namespace, error = %e, "could not suspend the invitation link; retrying at the next reconcile");
            }
            return Ok(Outcome::waiting(invite, p.reason, p.message));
        }
    };
    let lifetime = match invite.spec.lifetime() {
        Ok(l) => l,
        Err(problems) => {
            return Ok(Outcome::stalled(
                invite,
                reason::INVALID_SPEC,
                format!("{}; nothing was written", problems.join("; ")),
            ))
        }
    };
    let recorded = invite.status.as_ref().and_then(|s| s.instance.as_deref());
    let uid = invite.uid().unwrap_or_default();
    let store = &target.stores.store;
    let holds_here =
        || async { Ok::<_, ReconcileError>(store.invite_record(&uid).await?.is_some()) };
    if let Some(why) = target::applied_elsewhere(recorded, &target.instance, holds_here).await? {
        return Ok(Outcome::stalled(invite, reason::INVALID_SPEC, why));
    }
    let mut outcome = follow(invite, ctx, &target, lifetime).await?;
    outcome.instance = Some(target::instance_key(&target.instance));
    Ok(outcome)
}

/// How the invitation ended, if it did: from its record, or from a status that says so
/// (recorded then).
async fn closed_as(
    store: &Store,
    uid: &str,
    recorded: Option<&InviteRecord>,
    phase: Option<InvitePhase>,
) -> Result<Option<InvitePhase>, StoreError> {
    let said = match phase {
        Some(done @ (InvitePhase::Accepted | InvitePhase::Expired)) => Some(done),
        _ => None,
    };
    let Some(record) = recorded else {
        return Ok(said);
    };
    match (record.closed_as.as_deref(), said) {
        (Some("Accepted"), _) => Ok(Some(InvitePhase::Accepted)),
        (Some(_), _) => Ok(Some(InvitePhase::Expired)),
        (None, Some(done)) => {
            let how = match done {
                InvitePhase::Accepted => "Accepted",
                _ => "Expired",
            };
            // Its link ends with it.
            store.take_out_invite_link(uid, &record.token_hash).await?;
            store.close_invite(uid, how, None).await?;
            Ok(Some(done))
        }
        (None, None) => Ok(None),
    }
}

/// A namespace taken out of the instance's `allowedNamespaces` invites nobody any more: the
/// link it issued stops working (its token goes). The record stays, so admitting the namespace
/// again puts the same link back (as a link used without registering is), until it expires.
async fn suspend_link(
    invite: &UserInvite,
    ctx: &Context,
    problem: &target::TargetProblem,
    namespace: &str,
) -> Result<(), ReconcileError> {
    let reference = &invite.spec.instance_ref;
    let Some(target) = target::promises_kept_on(ctx, problem, reference, namespace).await else {
        return Ok(());
    };
    let store = &target.stores.store;
    let Some(record) = store
        .invite_record(&invite.uid().unwrap_or_default())
        .await?
    else {
        return Ok(());
    };
    let why = format!("the instance no longer admits namespace '{namespace}'");
    take_link_out(invite, ctx, &target, &record, &why).await?;
    Ok(())
}

/// An issued invitation of an email its namespace's emailDomains no longer admit: its link
/// stops working as a suspended one does (admitting the domain again puts it back until it
/// expires), and it is neither mailed nor given a longer life meanwhile.
async fn outside_domains(
    invite: &UserInvite,
    ctx: &Context,
    target: &Target,
    record: &InviteRecord,
    why: String,
    resync: Duration,
) -> Result<Outcome, ReconcileError> {
    take_link_out(invite, ctx, target, record, &why).await?;
    let message = format!("{why}; the invitation's link no longer works (admitting the domain again puts it back until it expires)");
    let refused = Outcome::stalled(invite, reason::NOT_PERMITTED, message);
    Ok(Outcome {
        requeue: Some(resync),
        ..refused
    })
}

/// Deletes an issued invitation's token while its record stays, said once.
async fn take_link_out(
    invite: &UserInvite,
    ctx: &Context,
    target: &Target,
    record: &InviteRecord,
    why: &str,
) -> Result<(), StoreError> {
    let store = &target.stores.store;
    let token = store.find_invite_token(&record.email, &record.token_hash);
    if token.await?.is_some() {
        let uid = invite.uid().unwrap_or_default();
        store.take_out_invite_link(&uid, &record.token_hash).await?;
        let note = format!(
            "the invitation link of {} no longer works: {why}",
            record.email
        );
        let change = invite_change("Suspended", &target.instance, &record.email, note);
        ctx.changed(invite, change).await;
    }
    Ok(())
}

/// Issues the token, or follows it to `Accepted` or `Expired`.
async fn follow(
    invite: &UserInvite,
    ctx: &Context,
    target: &Target,
    lifetime: Duration,
) -> Result<Outcome, ReconcileError> {
    let namespace = invite.namespace().unwrap_or_default();
    let store = &target.stores.store;
    let resync = resync_period(&target.instance, ctx.settings.default_resync);
    let email = normalize_email(&invite.spec.email);
    let uid = invite.uid().unwrap_or_default();
    let created = invite
        .metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond());
    let expires_ms = created + lifetime.as_millis() as i64;
    let expires_at = jiff::Timestamp::from_millisecond(expires_ms)
        .ok()
        .map(|t| t.to_string());
    let now = jiff::Timestamp::now().as_millisecond();
    let phase = invite.status.as_ref().and_then(|s| s.phase);

    let recorded = store.invite_record(&uid).await?;
    // Accepted and Expired are final: renewing is deleting and re-applying. The record says
    // so, not the status anyone may write (clearing it must not revive a link); a status
    // that says so is believed only in that direction, and closes a record of an earlier
    // version that did not.
    let tenancy = Tenancy::of(&target.instance, &namespace);
    if let Some(closed) = closed_as(store, &uid, recorded.as_ref(), phase).await? {
        // Only the account the operator saw this invitation's own link register: not one a
        // status (anyone's edit) or another way brought about.
        let accepted_by = recorded.as_ref().and_then(|r| r.accepted_by);
        let shown = match accepted_by.filter(|_| closed == InvitePhase::Accepted) {
            Some(account) => shown_account(store, &tenancy, &email, account).await?,
            None => None,
        };
        return Ok(finished(closed, expires_at, shown));
    }
    if let Some(applied) = recorded.as_ref().filter(|r| r.email != email) {
        let message = format!("the invite's email is immutable: this invite was issued for {}; delete it and create a new one for {email}", applied.email);
        return Ok(Outcome::stalled(invite, reason::INVALID_SPEC, message));
    }
    // Before anything is read of the email: a namespace outside its domains learns nothing
    // of the account. An invitation issued before the policy said so runs its course.
    // An invitation issued before loses its link, as one of a namespace taken out does.
    if let Some(why) = tenancy.email_outside_domains(&email) {
        return match &recorded {
            None => {
                refused_unissued(
                    invite,
                    ctx,
                    reason::NOT_PERMITTED,
                    format!("{why}; nothing was written"),
                )
                .await
            }
            Some(record) => outside_domains(invite, ctx, target, record, why, resync).await,
        };
    }
    let account = store.find_user_by_email(&email).await?;
    let recorded_end = recorded.as_ref().and_then(|r| r.expires_at_ms);
    let taken_out = recorded.as_ref().is_some_and(|r| r.link_taken_out);
    let Some(token_hash) = recorded.map(|r| r.token_hash) else {
        if now >= expires_ms {
            // Refused (or waiting for its Secret) for longer than its lifetime: it ends
            // without a link ever issued, rather than issue (and mail) one already dead, or
            // stay refused for ever.
            withdraw_unissued_link(invite, ctx).await?;
            let note = format!("the invitation of {email} expired before a link was issued");
            let change = invite_change("Expired", &target.instance, &email, note);
            ctx.changed(invite, change).await;
            return Ok(finished(InvitePhase::Expired, expires_at, None));
        }
        // Before whether the account exists: another team's account and another team's
        // pending invitation must read the same to a tenant.
        let checked = (store, &target.instance, &tenancy, email.as_str());
        if let Some(why) =
            declared_elsewhere(ctx, checked, unissued(invite), Source::Caches).await?
        {
            return declared_elsewhere_refusal(invite, ctx, why, resync).await;
        }
        if account.is_some() {
            let why = format!("a LibreChat account {email} already exists; nothing was issued. Delete this UserInvite");
            return refused_unissued(invite, ctx, "AlreadyRegistered", why).await;
        }
        return issue(invite, ctx, target, &email, expires_ms, expires_at, resync).await;
    };

    let token = store.find_invite_token(&email, &token_hash).await?;
    if let Some(account) = account {
        // Its own link registered the account if its token went without the operator taking
        // it out; otherwise the account came about another way.
        let used_here = token.is_none() && !taken_out;
        if token.is_some() {
            // The link can no longer register anyone.
            store.take_out_invite_link(&uid, &token_hash).await?;
        }
        let accepted_by = used_here.then_some(account.id);
        store.close_invite(&uid, "Accepted", accepted_by).await?;
        ctx.event(invite, false, "Accepted", format!("{email} registered"))
            .await;
        let shown = match accepted_by {
            Some(account) => shown_account(store, &tenancy, &email, account).await?,
            None => None,
        };
        return Ok(finished(InvitePhase::Accepted, expires_at, shown));
    }
    // The end its link was given counts too: a lifetime lengthened after it passed (while
    // the invitation was refused, or suspended) does not bring a dead link back.
    let given_end = recorded_end.or(token.as_ref().and_then(|t| t.expires_at_ms));
    if now >= expires_ms || given_end.is_some_and(|end| now >= end) {
        store.take_out_invite_link(&uid, &token_hash).await?;
        store.close_invite(&uid, "Expired", None).await?;
        let note = format!("the invitation of {email} expired unused");
        let change = invite_change("Expired", &target.instance, &email, note);
        ctx.changed(invite, change).await;
        return Ok(finished(InvitePhase::Expired, expires_at, None));
    }
    if recorded_end != Some(expires_ms) {
        store.record_invite_end(&uid, expires_ms).await?;
    }
    // A mark a crash or a failed call left behind while the link works again.
    if taken_out && token.is_some() {
        store.mark_invite_link_taken_out(&uid, false).await?;
    }
    match token {
        Some(t) if t.expires_at_ms != Some(expires_ms) => {
            store.set_invite_expiry(&token_hash, expires_ms).await?
        }
        Some(_) => {}
        None => {
            // LibreChat deletes the token before it validates the registration form, so a
            // failed attempt (say, a short password) burns the link; it is put back. Not for
            // a tenant whose email another namespace declared meanwhile (its namespace was
            // taken out of the instance and admitted again, say): a link is never written
            // over another team's declaration.
            let checked = (store, &target.instance, &tenancy, email.as_str());
            for from in [Source::Caches, Source::ApiServer] {
                if let Some(why) = declared_elsewhere(
                    ctx,
                    checked,
                    Asking {
                        invite,
                        issued: true,
                    },
                    from,
                )
                .await?
                {
                    // Looked at again at the resync too (a deletion a watch missed).
                    let refused = Outcome::stalled(invite, reason::NOT_PERMITTED, why);
                    return Ok(Outcome {
                        requeue: Some(resync),
                        ..refused
                    });
                }
            }
            store
                .ensure_invite_token(&email, &token_hash, expires_ms)
                .await?;
            if taken_out {
                store.mark_invite_link_taken_out(&uid, false).await?;
            }
            let note = format!(
                "the invitation link of {email} works again (it was used without registering, or its namespace was admitted again)"
            );
            let change = invite_change("Restored", &target.instance, &email, note);
            ctx.changed(invite, change).await;
        }
    }
    let domain_client = target.instance.spec.domain_client.as_deref();
    refresh_url(ctx, invite, domain_client).await?;
    Ok(pending(
        expires_at,
        expires_ms,
        now,
        resync,
        domain_client.is_some(),
    ))
}

/// The id of the account an accepted invitation ended in, as its status may show it: not an
/// account another namespace holds (made for another team's LibreChatUser meanwhile, say), nor
/// one of an email outside the namespace's domains now.
async fn shown_account(
    store: &Store,
    tenancy: &Tenancy,
    email: &str,
    account: mongodb::bson::oid::ObjectId,
) -> Result<Option<String>, StoreError> {
    if !tenancy.administers {
        let held_elsewhere = store
            .find_claim(email)
            .await?
            .is_some_and(|c| c.owner.namespace != tenancy.namespace);
        if held_elsewhere || tenancy.email_outside_domains(email).is_some() {
            return Ok(None);
        }
    }
    Ok(Some(account.to_hex()))
}

/// The outcome of an invite that reached `Accepted` or `Expired`, which are final.
fn finished(phase: InvitePhase, expires_at: Option<String>, user_id: Option<String>) -> Outcome {
    let (reason, message) = match phase {
        InvitePhase::Accepted => ("Accepted", "the invitation was used; the account exists"),
        _ => (
            reason::EXPIRED,
            "the invitation expired unused; delete and re-apply it to invite again",
        ),
    };
    Outcome {
        ready: Cond::new(condition::READY, true, reason, message),
        phase: Some(phase),
        expires_at,
        user_id,
        requeue: None,
        email_sent_at: None,
        instance: None,
    }
}

fn pending(
    expires_at: Option<String>,
    expires_ms: i64,
    now: i64,
    resync: Duration,
    has_url: bool,
) -> Outcome {
    let message = if has_url {
        "the link in the Secret's `url` key registers the invitee, even with ALLOW_REGISTRATION off"
            .to_string()
    } else {
        "the instance has no domainClient, so the Secret holds the token alone: the link is <LibreChat URL>/register?token=<token>".to_string()
    };
    Outcome {
        ready: Cond::new(
            condition::READY,
            true,
            if has_url { "Pending" } else { "TokenOnly" },
            message,
        ),
        phase: Some(InvitePhase::Pending),
        expires_at,
        user_id: None,
        requeue: Some(resync.min(Duration::from_millis((expires_ms - now).max(0) as u64 + 50))),
        email_sent_at: None,
        instance: None,
    }
}

/// First issue: the Secret (with the raw token) first, then the record, then the token, so a
/// crash at any point is finished by the next reconcile with the same token.
#[allow(clippy::too_many_arguments)]
async fn issue(
    invite: &UserInvite,
    ctx: &Context,
    target: &Target,
    email: &str,
    expires_ms: i64,
    expires_at: Option<String>,
    resync: Duration,
) -> Result<Outcome, ReconcileError> {
    let store = &target.stores.store;
    let domain_client = target.instance.spec.domain_client.as_deref();
    let name = secret_name(invite);
    let raw = match link_to_issue(invite, ctx, email, domain_client).await {
        Ok(raw) => raw,
        Err(waiting) => return Ok(waiting),
    };
    // The caches answered every try until now; a cache can lag, so before a link exists the
    // API server says whether another namespace declares the email (once per link, and
    // never for an invitation still waiting for its Secret).
    let tenancy = Tenancy::of(&target.instance, &invite.namespace().unwrap_or_default());
    let checked = (store, &target.instance, &tenancy, email);
    if let Some(why) = declared_elsewhere(ctx, checked, unissued(invite), Source::ApiServer).await?
    {
        return declared_elsewhere_refusal(invite, ctx, why, resync).await;
    }
    let hash = hash_token(&raw);
    let owner = format!(
        "{}/{}",
        invite.namespace().unwrap_or_default(),
        invite.name_any()
    );
    store
        .record_invite(
            &invite.uid().unwrap_or_default(),
            &owner,
            (email, &hash),
            expires_ms,
        )
        .await?;
    store.ensure_invite_token(email, &hash, expires_ms).await?;
    let note = format!("invitation for {email} issued; the link is in Secret {name}");
    let change = invite_change("Invited", &target.instance, email, note);
    ctx.changed(invite, change).await;
    let now = jiff::Timestamp::now().as_millisecond();
    Ok(pending(
        expires_at,
        expires_ms,
        now,
        resync,
        domain_client.is_some(),
    ))
}

/// The raw token of the link about to be issued, from the invitation's own Secret: made with
/// a new link when missing, and given a new link when a refusal took its link away (no record
/// names a token yet, so a new one is as good). `Err`: why the invitation waits.
async fn link_to_issue(
    invite: &UserInvite,
    ctx: &Context,
    email: &str,
    domain_client: Option<&str>,
) -> Result<String, Outcome> {
    let name = secret_name(invite);
    let new_link = || {
        let raw = new_raw_token();
        let mut data = BTreeMap::from([(KEY_EMAIL.to_string(), email.to_string())]);
        if let Some(base) = domain_client {
            data.insert(KEY_URL.to_string(), register_url(base, &raw));
        }
        data.insert(KEY_TOKEN.to_string(), raw);
        data
    };
    let waiting = |e: OwnedSecretError| match e {
        OwnedSecretError::NotOwned(_) => {
            Outcome::waiting(invite, reason::SECRET_NOT_OWNED, e.to_string())
        }
        OwnedSecretError::Secret(e) => Outcome::waiting(invite, e.reason(), e.to_string()),
    };
    let client = &ctx.client;
    let secret = owned_secret::get_or_create(client, invite, &name, SecretUse::Invite, new_link)
        .await
        .map_err(waiting)?;
    crate::fault::crash_point("after-invite-secret");
    if !secret
        .data
        .as_ref()
        .is_some_and(|d| d.contains_key(KEY_TOKEN))
    {
        let link = new_link();
        let raw = link[KEY_TOKEN].clone();
        owned_secret::put(client, invite, &name, SecretUse::Invite, link)
            .await
            .map_err(waiting)?;
        return Ok(raw);
    }
    let key = SecretKeyRef {
        name: name.clone(),
        key: KEY_TOKEN.into(),
    };
    value_of(&secret, &key).map(|v| v.value).map_err(|e| {
        let message = format!("{e}; delete the Secret to issue a new link");
        Outcome::waiting(invite, e.reason(), message)
    })
}

/// An invitation refused before it was ever issued keeps no link: a Secret made for it (just
/// before a refusal at the last check, or before a crash) holds a token no record names,
/// which works nowhere while looking like an invitation. Its link is taken out (the Secret,
/// owned by the invitation, goes with it); a later permission puts a new one in.
async fn refused_unissued(
    invite: &UserInvite,
    ctx: &Context,
    reason: &str,
    why: String,
) -> Result<Outcome, ReconcileError> {
    match withdraw_unissued_link(invite, ctx).await {
        Ok(()) => Ok(Outcome::stalled(invite, reason, why)),
        // The refusal is said all the same (it is also what a freed email wakes); the link
        // is taken out at the retry.
        Err(e) => {
            let message =
                format!("{why}. The link in its Secret could not be taken out yet ({e}); retried");
            Ok(Outcome::waiting(invite, reason, message))
        }
    }
}

/// Refused because another namespace declares the email, which may change with no person
/// involved: the declaration's deletion wakes this invitation, and the resync catches one
/// the watches missed (deleted while a watch was re-listing).
async fn declared_elsewhere_refusal(
    invite: &UserInvite,
    ctx: &Context,
    why: String,
    resync: Duration,
) -> Result<Outcome, ReconcileError> {
    let refused = refused_unissued(invite, ctx, reason::NOT_PERMITTED, why).await?;
    // The sooner of the resync and a retry the refusal asks for (a link to take out still).
    let requeue = refused.requeue.map_or(resync, |r| r.min(resync));
    Ok(Outcome {
        requeue: Some(requeue),
        ..refused
    })
}

/// Takes a link no record names out of the invitation's Secret (see [`refused_unissued`]).
async fn withdraw_unissued_link(invite: &UserInvite, ctx: &Context) -> Result<(), ReconcileError> {
    let name = secret_name(invite);
    let keys = [KEY_TOKEN, KEY_URL];
    if owned_secret::remove_keys(&ctx.client, invite, &name, &keys, SecretUse::Invite).await? {
        let note = format!("took the link out of Secret {name}: it was never issued");
        ctx.event(invite, false, "LinkWithdrawn", note).await;
    }
    Ok(())
}

/// Keeps the Secret's `url` in step with the instance's `domainClient`.
async fn refresh_url(
    ctx: &Context,
    invite: &UserInvite,
    domain_client: Option<&str>,
) -> Result<(), ReconcileError> {
    let Some(base) = domain_client else {
        return Ok(());
    };
    let api: Api<Secret> =
        Api::namespaced(ctx.client.clone(), &invite.namespace().unwrap_or_default());
    let name = secret_name(invite);
    crate::metrics::global().secret_read(SecretUse::Invite);
    let Some(secret) = api.get_opt(&name).await? else {
        return Ok(());
    };
    if !owned_secret::owned_by(&secret, invite) {
        return Ok(());
    }
    let Ok(raw) = value_of(
        &secret,
        &SecretKeyRef {
            name: name.clone(),
            key: KEY_TOKEN.into(),
        },
    ) else {
        return Ok(());
    };
    let want = register_url(base, &raw.value);
    let have = secret
        .data
        .as_ref()
        .and_then(|d| d.get(KEY_URL))
        .map(|b| b.0.clone());
    if have.as_deref() != Some(want.as_bytes()) {
        let patch = serde_json::json!({ "stringData": { KEY_URL: want } });
        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
    }
    Ok(())
}

/// Deleting a pending invite revokes its token at once. Without its instance it waits, rather
/// than leave a live token behind.
async fn cleanup(invite: &UserInvite, ctx: &Context) -> Result<Action, ReconcileError> {
    // The failed handovers counted for the relay's backoff go with the object.
    ctx.mail_failures
        .succeeded(&invite.uid().unwrap_or_default());
    let namespace = invite.namespace().unwrap_or_default();
    let reference = &invite.spec.instance_ref;
    let Some(instance) = target::find_instance(ctx, reference, &namespace).await? else {
        let recorded = invite.status.as_ref().and_then(|s| s.instance.as_deref());
        if target::nothing_to_undo_without(recorded) {
            return Ok(Action::await_change());
        }
        return Err(ReconcileError::Blocked(format!(
            "revoking the invitation is blocked: LibreChatInstance '{}' no longer exists, so its token cannot be deleted from its database; re-create the instance. The operator retries",
            invite.spec.instance_ref.name
        )));
    };
    let stores = target::cleanup_stores(ctx, &instance, &namespace, false)
        .await
        .map_err(|why| {
            ReconcileError::Blocked(format!("revoking the invitation is blocked: {why}"))
        })?;
    let store = &stores.store;
    let uid = invite.uid().unwrap_or_default();
    if let Some(record) = store.invite_record(&uid).await? {
        store.delete_invite_token(&record.token_hash).await?;
        store.forget_invite(&uid).await?;
        if invite.status.as_ref().and_then(|s| s.phase) == Some(InvitePhase::Pending) {
            let note = "the invitation link no longer works".to_string();
            let change = invite_change("Revoked", &instance, &record.email, note);
            ctx.changed(invite, change).await;
        }
    }
    Ok(Action::await_change())
}

fn unissued(invite: &UserInvite) -> Asking<'_> {
    Asking {
        invite,
        issued: false,
    }
}
