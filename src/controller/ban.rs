//! The UserBan reconciler, as its phases: validate the window, lift at the end (before
//! anything else, once), resolve and check the target within the object's tenancy, follow it
//! to the account that carries the identity now, write the ban's share, report. Deletion
//! lifts this ban's shares and nothing else.

use crate::librechat::bans::HeldBan;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;

use super::audit::Change;
use super::caches::user_named;
use super::context::Context;
use super::error::ReconcileError;
use super::instance::resync_period;
use super::report::report;
use super::target::{self, Target};
use super::tenancy::Tenancy;
use crate::api::ban::UserBanStatus;
use crate::api::common::{condition, reason, Cond, FINALIZER};
use crate::api::validate::{check_email, BanWindow};
use crate::api::{LibreChatInstance, UserBan};
use crate::librechat::bans::{email_subject, owner_subject, BanShare, BanTarget, Counters, Lifted};
use crate::librechat::{Store, StoreError};

/// How soon a ban waiting for its account looks again (accounts LibreChat registers itself
/// raise no Kubernetes event).
const RETRY_PENDING: Duration = Duration::from_secs(5);

pub async fn reconcile(ban: Arc<UserBan>, ctx: Arc<Context>) -> Result<Action, ReconcileError> {
    let api: Api<UserBan> =
        Api::namespaced(ctx.client.clone(), &ban.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, ban, |event| async {
        match event {
            FinalizerEvent::Apply(ban) => apply(&api, &ban, &ctx).await,
            FinalizerEvent::Cleanup(ban) => cleanup(&api, &ban, &ctx).await,
        }
    })
    .await
    .map_err(ReconcileError::from)
}

/// What the reconcile found, before it is written to status.
struct Outcome {
    ready: Cond,
    active: bool,
    user_id: Option<String>,
    expires_at: Option<String>,
    target: Option<String>,
    instance: Option<String>,
    /// When to look again; `None`: only on a change of something watched.
    requeue: Option<Duration>,
}

impl Outcome {
    fn waiting(ban: &UserBan, reason: &str, message: impl Into<String>) -> Self {
        let status = ban.status.clone().unwrap_or_default();
        Outcome {
            ready: Cond::new(condition::READY, false, reason, message),
            active: status.active.unwrap_or(false),
            user_id: status.user_id,
            expires_at: status.expires_at,
            target: status.target,
            instance: status.instance,
            requeue: Some(RETRY_PENDING),
        }
    }

    /// A problem a person must fix: no polling.
    fn stalled(ban: &UserBan, reason: &str, message: impl Into<String>) -> Self {
        Outcome {
            requeue: None,
            ..Outcome::waiting(ban, reason, message)
        }
    }
}

/// Who the ban is about: the store target now, and the identity it follows.
struct Banned {
    target: BanTarget,
    subject: Option<String>,
}

/// A change to a ban target, for the audit trail.
fn ban_change(
    action: &'static str,
    instance: &LibreChatInstance,
    banned: &BanTarget,
    note: String,
) -> Change {
    let account = match banned {
        BanTarget::User(id) => id.clone(),
        BanTarget::Ip(_) => target_label(banned),
    };
    Change::applied(action, target::instance_key(instance), Some(account), note)
}

fn target_label(t: &BanTarget) -> String {
    match t {
        BanTarget::User(id) => format!("user:{id}"),
        BanTarget::Ip(ip) => format!("ip:{ip}"),
    }
}

fn rfc3339(ms: i64) -> Option<String> {
    jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| t.to_string())
}

fn created_ms(ban: &UserBan) -> i64 {
    ban.metadata
        .creation_timestamp
        .as_ref()
        .map(|t| t.0.as_millisecond())
        .unwrap_or_else(|| jiff::Timestamp::now().as_millisecond())
}

async fn apply(api: &Api<UserBan>, ban: &UserBan, ctx: &Context) -> Result<Action, ReconcileError> {
    crate::controller::report::begin(api, ban).await?;
    let (outcome, error) = match sync(ban, ctx).await {
        Ok(o) => (o, None),
        Err(ReconcileError::Store(e)) => (
            Outcome::waiting(ban, reason::STORE_ERROR, target::store_error_on(ban, &e)),
            Some(ReconcileError::Store(e)),
        ),
        Err(other) => return Err(other),
    };
    let requeue = outcome.requeue;
    publish(api, ban, ctx, outcome).await?;
    super::report::next_action(error, requeue)
}

async fn publish(
    api: &Api<UserBan>,
    ban: &UserBan,
    ctx: &Context,
    outcome: Outcome,
) -> Result<(), ReconcileError> {
    let status = UserBanStatus {
        active: Some(outcome.active),
        user_id: outcome.user_id,
        expires_at: outcome.expires_at,
        target: outcome.target,
        instance: outcome.instance,
        ..Default::default()
    };
    report(api, ctx, ban, status, &[outcome.ready]).await?;
    Ok(())
}

async fn sync(ban: &UserBan, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let namespace = ban.namespace().unwrap_or_default();
    let uid = ban.uid().unwrap_or_default();
    let reference = &ban.spec.instance_ref;
    let target = match target::resolve(ctx, reference, &ban.metadata).await? {
        Ok(t) => t,
        Err(p) => {
            if let Some(t) = target::promises_kept_on(ctx, &p, reference, &namespace).await {
                if let Err(e) = held_settled(&t.stores.store, &uid).await {
                    // The refusal is reported; the next look finishes this.
                    tracing::warn!(error = %e, "could not yet finish a ban change cut short");
                }
            }
            return Ok(Outcome::waiting(ban, p.reason, p.message));
        }
    };
    // Before anything may refuse the object: a refusal must not leave a ban recorded but
    // not in force (its sessions alive), nor a lift recorded but not done.
    let held = held_settled(&target.stores.store, &uid).await?;
    let outcome = judge(ban, ctx, &target, held).await?;
    keep_only_what_it_may_hold(ban, ctx, &target, outcome).await
}

/// The ban's verdict on its resolved instance: an invalid spec, applied elsewhere, or what
/// converging found.
async fn judge(
    ban: &UserBan,
    ctx: &Context,
    target: &Target,
    held: Vec<HeldBan>,
) -> Result<Outcome, ReconcileError> {
    let window = match ban.spec.window(created_ms(ban)) {
        Ok(w) => w,
        Err(problems) => {
            let message = format!("{}; nothing was written", problems.join("; "));
            return Ok(Outcome::stalled(ban, reason::INVALID_SPEC, message));
        }
    };
    let recorded = ban.status.as_ref().and_then(|s| s.instance.as_deref());
    let holds_here = || async { Ok::<_, ReconcileError>(!held.is_empty()) };
    if let Some(why) = target::applied_elsewhere(recorded, &target.instance, holds_here).await? {
        return Ok(Outcome::stalled(ban, reason::INVALID_SPEC, why));
    }
    let mut outcome = converge(ban, ctx, target, (&window, held)).await?;
    // Past the check, the instance it was applied to is this one, whatever status said.
    outcome.instance = Some(target::instance_key(&target.instance));
    Ok(outcome)
}

/// The ban's window ended, its target refused, or the ban in force.
async fn converge(
    ban: &UserBan,
    ctx: &Context,
    target: &Target,
    (window, held): (&BanWindow, Vec<HeldBan>),
) -> Result<Outcome, ReconcileError> {
    let now = jiff::Timestamp::now().as_millisecond();
    if window.end_ms.is_some_and(|end| end <= now) {
        return expire(ban, ctx, target, window).await;
    }
    let tenancy = Tenancy::of(&target.instance, &ban.namespace().unwrap_or_default());
    let banned = match resolve_target(ban, ctx, &target.stores.store, &tenancy).await? {
        Ok(b) => b,
        Err(refused) => return Ok(refused),
    };
    enforce(ban, ctx, target, (window, held), banned).await
}

/// The targets `uid`'s ban holds, what a crash or a failed call cut short finished first
/// (see [`Store::finish_cut_short`]).
async fn held_settled(store: &Store, uid: &str) -> Result<Vec<HeldBan>, StoreError> {
    let held = store.shares_of(uid).await?;
    match store.finish_cut_short(uid, &held).await? {
        true => store.shares_of(uid).await,
        false => Ok(held),
    }
}

/// Whatever the verdict, a ban keeps in force only what its namespace may hold. Refused as
/// `NotPermitted` (the account left the namespace's management), it keeps nothing: its shares
/// are lifted as on deletion, so it neither bans an account the namespace no longer manages nor
/// follows the email to someone else's. A tenant's ban refused for anything else (an invalid
/// window, a changed target, its LibreChatUser gone or re-created) no longer says by its spec
/// what it bans, so each share it holds is checked by the account it was applied to: one the
/// namespace no longer manages (released, out of its domains, made ADMIN) is lifted, and what
/// it still holds is looked at again at the resync. Otherwise a tenant could freeze its ban, by
/// making its spec invalid, on an account it gave up.
async fn keep_only_what_it_may_hold(
    ban: &UserBan,
    ctx: &Context,
    target: &Target,
    outcome: Outcome,
) -> Result<Outcome, ReconcileError> {
    if outcome.ready.reason == reason::NOT_PERMITTED {
        let why = "this namespace may not ban it";
        lift(ban, ctx, target, |_| async { Ok(true) }, why).await?;
        return Ok(Outcome {
            active: false,
            ..outcome
        });
    }
    let tenancy = Tenancy::of(&target.instance, &ban.namespace().unwrap_or_default());
    if outcome.ready.ok == Some(true) || tenancy.administers {
        return Ok(outcome);
    }
    let store = &target.stores.store;
    let lost = |share: HeldBan| {
        let tenancy = &tenancy;
        async move { lost_by(store, tenancy, &share).await }
    };
    let why = "this namespace no longer manages the account";
    let (kept, lifted) = lift(ban, ctx, target, lost, why).await?;
    Ok(match (kept, lifted) {
        (true, _) => {
            let resync = resync_period(&target.instance, ctx.settings.default_resync);
            let requeue = outcome.requeue.map_or(resync, |r| r.min(resync));
            Outcome {
                requeue: Some(requeue),
                ..outcome
            }
        }
        (false, true) => Outcome {
            active: false,
            ..outcome
        },
        // Nothing held on the instance status names: not active, even where the status
        // written after an earlier lift was lost. Applied elsewhere, status keeps what it
        // showed of that instance.
        (false, false) if outcome.instance == Some(target::instance_key(&target.instance)) => {
            Outcome {
                active: false,
                ..outcome
            }
        }
        (false, false) => outcome,
    })
}

/// Whether the namespace lost the account a tenant's `share` bans: an account that exists and
/// that it does not manage now. An account that does not exist (deleted by its owner, or one
/// re-created under the identity but not inserted yet) is left to the account's own path,
/// which carries the ban to its successor: lifted here, the successor would start unbanned.
async fn lost_by(store: &Store, tenancy: &Tenancy, held: &HeldBan) -> Result<bool, StoreError> {
    let BanTarget::User(id) = &held.target else {
        // A tenant never holds an address (see `resolve_target`).
        return Ok(true);
    };
    let Ok(account) = mongodb::bson::oid::ObjectId::parse_str(id) else {
        return Ok(true);
    };
    if store.find_user_by_id(account).await?.is_none() {
        return Ok(false);
    }
    Ok(!tenancy.manages_account(store, account).await?)
}

/// Lifts this ban's shares that `lose` picks, recording each; returns whether it still holds
/// any, and whether it lifted any.
async fn lift<F, Fut>(
    ban: &UserBan,
    ctx: &Context,
    target: &Target,
    lose: F,
    why: &str,
) -> Result<(bool, bool), ReconcileError>
where
    F: Fn(HeldBan) -> Fut,
    Fut: std::future::Future<Output = Result<bool, StoreError>>,
{
    let store = &target.stores.store;
    let uid = ban.uid().unwrap_or_default();
    let (mut kept, mut lifted) = (false, false);
    for held in store.shares_of(&uid).await? {
        let banned = held.target.clone();
        if !lose(held).await? {
            kept = true;
            continue;
        }
        if store.unban(&banned, &uid, Counters::Keep).await? == Lifted::NotHeld {
            continue;
        }
        lifted = true;
        let note = format!("lifted the ban of {}: {why}", target_label(&banned));
        ctx.changed(ban, ban_change("Lifted", &target.instance, &banned, note))
            .await;
    }
    Ok((kept, lifted))
}

/// The end passed: this ban's shares are lifted once; the object stays as the audit record
/// and writes nothing on later resyncs.
async fn expire(
    ban: &UserBan,
    ctx: &Context,
    target: &Target,
    window: &BanWindow,
) -> Result<Outcome, ReconcileError> {
    let counters = counters_on_lift(&target.instance, ban);
    let lifted = lift_all(
        &target.stores.store,
        &ban.uid().unwrap_or_default(),
        counters,
    )
    .await?;
    let why = reason_suffix(ban);
    for (banned, _) in lifted.iter().filter(|(_, l)| *l != Lifted::NotHeld) {
        let note = format!("the ban of {} ended{why}", target_label(banned));
        let change = ban_change("Expired", &target.instance, banned, note);
        ctx.changed(ban, change).await;
    }
    let status = ban.status.clone().unwrap_or_default();
    Ok(Outcome {
        ready: Cond::new(
            condition::READY,
            true,
            reason::EXPIRED,
            "the ban has ended and was lifted",
        ),
        active: false,
        user_id: status.user_id,
        expires_at: window.end_ms.and_then(rfc3339),
        target: status.target,
        instance: Some(target::instance_key(&target.instance)),
        requeue: None,
    })
}

fn reason_suffix(ban: &UserBan) -> String {
    ban.spec
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default()
}

/// The ban is in force on the account (or address) it names now, and on nothing else.
async fn enforce(
    ban: &UserBan,
    ctx: &Context,
    target: &Target,
    (window, held): (&BanWindow, Vec<HeldBan>),
    banned: Banned,
) -> Result<Outcome, ReconcileError> {
    let store = &target.stores.store;
    let uid = ban.uid().unwrap_or_default();
    let label = target_label(&banned.target);
    let shares = held.iter().filter_map(|h| h.share.as_ref());
    if let Some(other) = shares.clone().find(|s| s.subject != banned.subject) {
        let message = format!(
            "the ban's target is immutable: it was applied to {}; delete this UserBan and create a new one",
            other.subject.as_deref().unwrap_or("an IP address")
        );
        return Ok(Outcome::stalled(ban, reason::INVALID_SPEC, message));
    }
    // A rewrite cut short (the sessions perhaps not ended yet) is done again, and so is one
    // for a window moved (an end brought earlier too: the document is rewritten from the
    // shares, not left at the longer end until the operator happens to lift it).
    // A tenant's ban bans the account alone (see `EffectiveBan::confined`); its shares written
    // before that was recorded are written again.
    let confined = !Tenancy::of(&target.instance, &ban.namespace().unwrap_or_default()).administers;
    let same_window = |s: &BanShare| {
        s.start_ms == window.start_ms && s.end_ms == window.end_ms && s.confined == confined
    };
    let current = held.iter().find(|h| {
        h.target == banned.target && h.share.as_ref().is_some_and(same_window) && !h.unsettled
    });
    let in_place = match current {
        Some(current) => store.ban_in_force(current, window.end_ms).await?,
        None => false,
    };
    if !in_place {
        let namespace = ban.namespace().unwrap_or_default();
        let user_id = match &banned.target {
            BanTarget::User(id) => Some(id.clone()),
            BanTarget::Ip(_) => None,
        };
        let share = BanShare {
            owner_uid: uid.clone(),
            owner: format!("{namespace}/{}", ban.name_any()),
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            user_id,
            subject: banned.subject.clone(),
            native_value: None,
            confined,
        };
        store.ban(&banned.target, &share).await?;
        let until = window
            .end_ms
            .and_then(rfc3339)
            .map(|t| format!(" until {t}"))
            .unwrap_or_else(|| " permanently".into());
        let note = format!(
            "banned {label}{until}{}; their sessions were revoked",
            reason_suffix(ban)
        );
        let change = ban_change("Banned", &target.instance, &banned.target, note);
        ctx.changed(ban, change).await;
    }
    // The identity moved to another account (re-created after a self-deletion, say): the ban
    // went with it (above), and only then does the old account's share go, so that no failed
    // call or crash in between leaves the identity unbanned.
    for old in held
        .iter()
        .map(|h| &h.target)
        .filter(|t| **t != banned.target)
    {
        store.unban(old, &uid, Counters::Keep).await?;
        let note = format!(
            "the banned identity now has account {label}; lifted the ban of {}",
            target_label(old)
        );
        let change = ban_change("Moved", &target.instance, old, note);
        ctx.changed(ban, change).await;
    }
    let now = jiff::Timestamp::now().as_millisecond();
    let resync = resync_period(&target.instance, ctx.settings.default_resync);
    let requeue = match window.end_ms {
        Some(end) => resync.min(Duration::from_millis((end - now).max(0) as u64 + 50)),
        None => resync,
    };
    Ok(Outcome {
        ready: Cond::new(condition::READY, true, reason::BANNED, ban_message(window)),
        active: true,
        user_id: match &banned.target {
            BanTarget::User(id) => Some(id.clone()),
            BanTarget::Ip(_) => None,
        },
        expires_at: window.end_ms.and_then(rfc3339),
        target: Some(label),
        instance: Some(target::instance_key(&target.instance)),
        requeue: Some(requeue),
    })
}

fn ban_message(window: &BanWindow) -> String {
    match window.end_ms.and_then(rfc3339) {
        Some(t) => format!("banned until {t}; LibreChat's checkBan refuses the target"),
        None => "banned permanently; LibreChat's checkBan refuses the target".into(),
    }
}

/// The account (or address) the ban names now, within what the ban's namespace may reach: a
/// tenant bans only accounts owned from its own namespace; IP bans and bans of any other
/// account come only from the instance's namespace. `Err` is the outcome to report.
async fn resolve_target(
    ban: &UserBan,
    ctx: &Context,
    store: &Store,
    tenancy: &Tenancy,
) -> Result<Result<Banned, Outcome>, ReconcileError> {
    let spec = &ban.spec;
    if let Some(ip) = &spec.ip {
        if !tenancy.administers {
            let message = format!(
                "an IP ban can lock out everyone behind that address: {}. Nothing was written",
                tenancy.who_may("ban IP addresses")
            );
            return Ok(Err(Outcome::stalled(ban, reason::NOT_PERMITTED, message)));
        }
        let canonical = ip
            .trim()
            .parse::<std::net::IpAddr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| ip.clone());
        return Ok(Ok(Banned {
            target: BanTarget::Ip(canonical),
            subject: None,
        }));
    }
    if let Some(reference) = &spec.user_ref {
        return by_user_ref(ban, ctx, store, &reference.name, tenancy).await;
    }
    let email = check_email(spec.email.as_deref().unwrap_or_default()).unwrap_or_default();
    if let Some(why) = tenancy.email_refusal(&email) {
        return Ok(Err(Outcome::stalled(ban, reason::NOT_PERMITTED, why)));
    }
    let claim = match tenancy.administers {
        true => None,
        false => match store.find_claim(&email).await? {
            Some(c) if tenancy.fully_manages(&c) => Some(c),
            _ => return Ok(Err(not_managed_here(ban, &email, tenancy))),
        },
    };
    let subject = Some(email_subject(&email));
    let found = store.find_user_by_email(&email).await?;
    // The email is the tenant's only for the account its claim names: one a person registered
    // under it after that account went (or changed its email) is not the tenant's to ban.
    if let (Some(c), Some(u)) = (&claim, &found) {
        if c.user_id != Some(u.id) {
            return Ok(Err(not_managed_here(ban, &email, tenancy)));
        }
    }
    let role = found.as_ref().and_then(|u| u.role.as_deref());
    if let Some(why) = tenancy.role_refusal(store, &email, role).await? {
        return Ok(Err(role_not_bannable(ban, ctx, why)));
    }
    Ok(match found {
        Some(u) => Ok(Banned {
            target: BanTarget::User(u.id.to_hex()),
            subject,
        }),
        None => Err(awaiting_account(ban, &email)),
    })
}

/// A tenant's ban of an email no account of its own has: refused, so lifted where it was in
/// force (a change of the tenant's LibreChatUser of that email wakes it).
fn not_managed_here(ban: &UserBan, email: &str, tenancy: &Tenancy) -> Outcome {
    let message = format!(
        "{email} is not an account managed from namespace '{}': a tenant bans only accounts the operator created for it (or adopted ones under tenantPolicy.manageAdoptedAccounts), and {}. Nothing was written",
        tenancy.namespace,
        tenancy.who_may("ban any other account")
    );
    Outcome::stalled(ban, reason::NOT_PERMITTED, message)
}

/// A tenant's ban of an account that is ADMIN, or in a custom role out of its reach (moved
/// there in LibreChat, perhaps after the tenant created it): refused, and so lifted where it
/// was in force. LibreChat may move the account back without any Kubernetes event, so it is
/// looked at again at the resync.
fn role_not_bannable(ban: &UserBan, ctx: &Context, why: String) -> Outcome {
    Outcome {
        requeue: Some(ctx.settings.default_resync),
        ..Outcome::stalled(
            ban,
            reason::NOT_PERMITTED,
            format!("{why}; the ban is not in force"),
        )
    }
}

/// An email ban whose account does not exist yet: settled (`Ready=True`, not active), like a
/// pending invite, and applied as soon as an account has the email.
fn awaiting_account(ban: &UserBan, email: &str) -> Outcome {
    let message = format!(
        "no LibreChat account has the email {email} yet; the ban applies as soon as one does"
    );
    Outcome {
        ready: Cond::new(condition::READY, true, reason::AWAITING_ACCOUNT, message),
        active: false,
        ..Outcome::waiting(ban, reason::AWAITING_ACCOUNT, "")
    }
}

/// A `userRef` ban: whatever account the LibreChatUser's ownership record names now (never
/// what its status says).
async fn by_user_ref(
    ban: &UserBan,
    ctx: &Context,
    store: &Store,
    name: &str,
    tenancy: &Tenancy,
) -> Result<Result<Banned, Outcome>, ReconcileError> {
    let namespace = tenancy.namespace.as_str();
    let Some(user) = user_named(ctx, namespace, name).await? else {
        return Ok(Err(user_gone(ban, store, tenancy, name).await?));
    };
    let same_instance = user.spec.instance_ref.name == ban.spec.instance_ref.name
        && target::instance_namespace(&user.spec.instance_ref, namespace)
            == target::instance_namespace(&ban.spec.instance_ref, namespace);
    if !same_instance {
        let message =
            format!("LibreChatUser '{name}' belongs to another LibreChatInstance than this ban");
        return Ok(Err(Outcome::stalled(ban, reason::INVALID_SPEC, message)));
    }
    let owner_uid = user.uid().unwrap_or_default();
    let claim = store.find_claim_of_owner(&owner_uid).await?;
    if let Some(why) = claim.as_ref().and_then(|c| tenancy.email_refusal(&c.email)) {
        return Ok(Err(Outcome::stalled(ban, reason::NOT_PERMITTED, why)));
    }
    if let Some(adopted) = claim
        .as_ref()
        .filter(|c| !tenancy.administers && !tenancy.fully_manages(c))
    {
        let message = format!(
            "LibreChatUser '{name}' adopted the account {} rather than having it created, and a tenant bans an adopted account only under the instance's tenantPolicy.manageAdoptedAccounts; {}. Nothing was written",
            adopted.email,
            tenancy.who_may("ban it otherwise")
        );
        return Ok(Err(Outcome::stalled(ban, reason::NOT_PERMITTED, message)));
    }
    let account = claim
        .filter(|c| c.confirmed)
        .and_then(|c| Some((c.user_id?, c.email)));
    if let Some((id, email)) = account.as_ref().filter(|_| !tenancy.administers) {
        let stored = store.find_user_by_id(*id).await?;
        let role = stored.as_ref().and_then(|u| u.role.as_deref());
        if let Some(why) = tenancy.role_refusal(store, email, role).await? {
            return Ok(Err(role_not_bannable(ban, ctx, why)));
        }
    }
    Ok(match account.map(|(id, _)| id) {
        Some(id) => Ok(Banned { target: BanTarget::User(id.to_hex()), subject: Some(owner_subject(&owner_uid)) }),
        None => Err(Outcome::waiting(ban, reason::USER_NOT_FOUND, format!("LibreChatUser '{name}' owns no LibreChat account yet; the ban applies as soon as it does"))),
    })
}

/// A `userRef` ban whose LibreChatUser is not there: it waits for it, but a tenant's ban that
/// holds the account it named goes (`NotPermitted`, lifted). The object went: deleted with
/// `Retain`, its account is nobody's (the administrators or another team may take it), and a
/// tenant bans only accounts it manages; deleted with `Delete`, the account is gone too.
async fn user_gone(
    ban: &UserBan,
    store: &Store,
    tenancy: &Tenancy,
    name: &str,
) -> Result<Outcome, ReconcileError> {
    let holds = !store
        .shares_of(&ban.uid().unwrap_or_default())
        .await?
        .is_empty();
    if tenancy.administers || !holds {
        let message = format!("LibreChatUser '{name}' not found in this namespace; the ban applies as soon as it exists");
        return Ok(Outcome::waiting(ban, reason::USER_NOT_FOUND, message));
    }
    let message = format!(
        "LibreChatUser '{name}' is gone, so the account it banned is no longer managed from namespace '{}': a tenant's ban goes with its account (lifted); it applies again to an account a LibreChatUser '{name}' has here",
        tenancy.namespace
    );
    Ok(Outcome::waiting(ban, reason::NOT_PERMITTED, message))
}

/// Deletion lifts this ban's shares (the whole ban where it was the last one). Without its
/// instance or a declared Redis it waits, rather than leave a ban behind.
async fn cleanup(
    api: &Api<UserBan>,
    ban: &UserBan,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let namespace = ban.namespace().unwrap_or_default();
    let instance = target::find_instance(ctx, &ban.spec.instance_ref, &namespace).await?;
    let recorded = ban.status.as_ref().and_then(|s| s.instance.as_deref());
    if instance.is_none() && target::nothing_to_undo_without(recorded) {
        return Ok(Action::await_change());
    }
    let uid = ban.uid().unwrap_or_default();
    let lifted = match &instance {
        None => Err(format!("LibreChatInstance '{}' no longer exists, so the ban cannot be lifted from its database; re-create the instance (the ban stays in force meanwhile)", ban.spec.instance_ref.name)),
        Some(instance) => match target::cleanup_stores(ctx, instance, &namespace, true).await {
            Ok(stores) => lift_all(&stores.store, &uid, counters_on_lift(instance, ban))
                .await
                .map_err(|e| target::store_error_on(ban, &e)),
            Err(why) => Err(why),
        },
    };
    match (lifted, instance) {
        (Ok(results), Some(instance)) => {
            for (banned, lifted) in results {
                let note = match lifted {
                    Lifted::NotHeld => continue,
                    Lifted::Free => format!("lifted the ban of {}", target_label(&banned)),
                    Lifted::StillBanned => format!(
                        "lifted this ban of {}; other bans keep it banned",
                        target_label(&banned)
                    ),
                };
                let change = ban_change("Lifted", &instance, &banned, note);
                ctx.changed(ban, change).await;
            }
            Ok(Action::await_change())
        }
        (Ok(_), None) => Ok(Action::await_change()),
        (Err(why), _) => {
            let message = format!("lifting the ban is blocked: {why}. The operator retries");
            let outcome = Outcome::waiting(ban, reason::DELETE_BLOCKED, message.clone());
            publish(api, ban, ctx, outcome).await?;
            Err(ReconcileError::Blocked(message))
        }
    }
}

/// Only the instance's administrators forgive: their ban's end (or deletion) clears the
/// violation counters LibreChat kept for the account. A tenant's ban leaves them, so banning
/// and lifting its own account is no way to wipe LibreChat's record of what it did.
fn counters_on_lift(instance: &LibreChatInstance, ban: &UserBan) -> Counters {
    match Tenancy::of(instance, &ban.namespace().unwrap_or_default()).administers {
        true => Counters::Reset,
        false => Counters::Keep,
    }
}

async fn lift_all(
    store: &Store,
    uid: &str,
    counters: Counters,
) -> Result<Vec<(BanTarget, Lifted)>, StoreError> {
    let mut results = Vec::new();
    for held in store.shares_of(uid).await? {
        let lifted = store.unban(&held.target, uid, counters).await?;
        results.push((held.target, lifted));
    }
    Ok(results)
}
