//! The UserBan reconciler: resolve the target, write the ban's share, lift it on deletion or
//! at its end.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;

use super::context::Context;
use super::error::ReconcileError;
use super::instance::resync_period;
use super::report::report;
use super::target;
use crate::api::ban::UserBanStatus;
use crate::api::common::{condition, reason, Cond, FINALIZER};
use crate::api::validate::{check_email, BanWindow};
use crate::api::{LibreChatUser, UserBan};
use crate::librechat::bans::{BanShare, BanTarget, Lifted};
use crate::librechat::Store;

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
    requeue: Duration,
}

impl Outcome {
    fn waiting(ban: &UserBan, reason: &str, message: impl Into<String>, requeue: Duration) -> Self {
        let status = ban.status.clone().unwrap_or_default();
        Outcome {
            ready: Cond::new(condition::READY, false, reason, message),
            active: status.active.unwrap_or(false),
            user_id: status.user_id,
            expires_at: status.expires_at,
            target: status.target,
            requeue,
        }
    }
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
    let (outcome, error) = match sync(ban, ctx).await {
        Ok(o) => (o, None),
        Err(ReconcileError::Store(e)) => (
            Outcome::waiting(ban, reason::STORE_ERROR, e.to_string(), RETRY_PENDING),
            Some(ReconcileError::Store(e)),
        ),
        Err(other) => return Err(other),
    };
    let requeue = outcome.requeue;
    publish(api, ban, ctx, outcome).await?;
    match error {
        Some(e) => Err(e),
        None => Ok(Action::requeue(requeue)),
    }
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
        ..Default::default()
    };
    report(api, ctx, ban, status, &[outcome.ready]).await?;
    Ok(())
}

async fn sync(ban: &UserBan, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let namespace = ban.namespace().unwrap_or_default();
    let spec = &ban.spec;
    let window = match spec.window(created_ms(ban)) {
        Ok(w) => w,
        Err(problems) => {
            return Ok(Outcome::waiting(
                ban,
                reason::INVALID_SPEC,
                format!("{}; nothing was written", problems.join("; ")),
                resync_default(ctx),
            ))
        }
    };
    let target = match target::resolve(ctx, &spec.instance_ref, &namespace).await? {
        Ok(t) => t,
        Err(p) => return Ok(Outcome::waiting(ban, p.reason, p.message, RETRY_PENDING)),
    };
    let store = &target.stores.store;
    let resync = resync_period(&target.instance, ctx.settings.default_resync);

    let banned = match resolve_target(ban, ctx, store, &namespace).await? {
        Ok(t) => t,
        Err((reason, message)) => return Ok(Outcome::waiting(ban, reason, message, RETRY_PENDING)),
    };
    let label = target_label(&banned);
    let recorded = ban.status.as_ref().and_then(|s| s.target.clone());
    if recorded.as_deref().is_some_and(|r| r != label) {
        return Ok(Outcome::waiting(
            ban,
            reason::INVALID_SPEC,
            format!("the ban's target cannot change (it was applied to {}); delete this UserBan and create a new one", recorded.unwrap_or_default()),
            resync,
        ));
    }
    let user_id = match &banned {
        BanTarget::User(id) => Some(id.clone()),
        BanTarget::Ip(_) => None,
    };
    let now = jiff::Timestamp::now().as_millisecond();
    let was_active = ban.status.as_ref().and_then(|s| s.active).unwrap_or(false);
    let why = spec
        .reason
        .as_deref()
        .map(|r| format!(" ({r})"))
        .unwrap_or_default();

    if window.end_ms.is_some_and(|end| end <= now) {
        // The end passed: lift this ban's share; the object stays as the audit record.
        if was_active || recorded.is_some() {
            store.unban(&banned, &ban.uid().unwrap_or_default()).await?;
            if was_active {
                ctx.event(
                    ban,
                    false,
                    "Expired",
                    format!("the ban of {label} ended{why}"),
                )
                .await;
            }
        }
        return Ok(Outcome {
            ready: Cond::new(
                condition::READY,
                true,
                reason::EXPIRED,
                "the ban has ended and was lifted",
            ),
            active: false,
            user_id,
            expires_at: window.end_ms.and_then(rfc3339),
            target: Some(label),
            requeue: resync,
        });
    }

    // A settled ban costs one read per resync; a missing or changed one is (re)written.
    let unchanged = was_active
        && ban.status.as_ref().and_then(|s| s.observed_generation) == ban.metadata.generation
        && recorded.as_deref() == Some(label.as_str());
    if !(unchanged && store.ban_in_force(&banned, window.end_ms).await?) {
        let share = BanShare {
            owner_uid: ban.uid().unwrap_or_default(),
            owner: format!("{namespace}/{}", ban.name_any()),
            start_ms: window.start_ms,
            end_ms: window.end_ms,
            user_id: user_id.clone(),
        };
        store.ban(&banned, &share).await?;
        if !was_active {
            let until = window
                .end_ms
                .and_then(rfc3339)
                .map(|t| format!(" until {t}"))
                .unwrap_or_else(|| " permanently".into());
            ctx.event(
                ban,
                false,
                "Banned",
                format!("banned {label}{until}{why}; their sessions were revoked"),
            )
            .await;
        }
    }
    let requeue = match window.end_ms {
        Some(end) => resync.min(Duration::from_millis((end - now).max(0) as u64 + 50)),
        None => resync,
    };
    Ok(Outcome {
        ready: Cond::new(condition::READY, true, reason::BANNED, ban_message(&window)),
        active: true,
        user_id,
        expires_at: window.end_ms.and_then(rfc3339),
        target: Some(label),
        requeue,
    })
}

fn ban_message(window: &BanWindow) -> String {
    match window.end_ms.and_then(rfc3339) {
        Some(t) => format!("banned until {t}; LibreChat's checkBan refuses the target"),
        None => "banned permanently; LibreChat's checkBan refuses the target".into(),
    }
}

fn resync_default(ctx: &Context) -> Duration {
    ctx.settings.default_resync
}

/// The account (or address) the ban is about; `Err` says why it cannot be had yet.
async fn resolve_target(
    ban: &UserBan,
    ctx: &Context,
    store: &Store,
    namespace: &str,
) -> Result<Result<BanTarget, (&'static str, String)>, ReconcileError> {
    let spec = &ban.spec;
    if let Some(ip) = &spec.ip {
        let canonical = ip
            .trim()
            .parse::<std::net::IpAddr>()
            .map(|a| a.to_string())
            .unwrap_or_else(|_| ip.clone());
        return Ok(Ok(BanTarget::Ip(canonical)));
    }
    if let Some(reference) = &spec.user_ref {
        let users: Api<LibreChatUser> = Api::namespaced(ctx.client.clone(), namespace);
        let Some(user) = users.get_opt(&reference.name).await? else {
            return Ok(Err((reason::USER_NOT_FOUND, format!("LibreChatUser '{}' not found in this namespace; the ban applies as soon as it exists", reference.name))));
        };
        let same_instance = user.spec.instance_ref.name == spec.instance_ref.name
            && target::instance_namespace(&user.spec.instance_ref, namespace)
                == target::instance_namespace(&spec.instance_ref, namespace);
        if !same_instance {
            return Ok(Err((
                reason::INVALID_SPEC,
                format!(
                    "LibreChatUser '{}' belongs to another LibreChatInstance than this ban",
                    reference.name
                ),
            )));
        }
        return Ok(match user.status.and_then(|s| s.user_id) {
            Some(id) => Ok(BanTarget::User(id)),
            None => Err((reason::USER_NOT_FOUND, format!("LibreChatUser '{}' has no LibreChat account yet; the ban applies as soon as it does", reference.name))),
        });
    }
    let email = check_email(spec.email.as_deref().unwrap_or_default()).unwrap_or_default();
    Ok(match store.find_user_by_email(&email).await? {
        Some(u) => Ok(BanTarget::User(u.id.to_hex())),
        None => Err((reason::USER_NOT_FOUND, format!("no LibreChat account has the email {email} yet; the ban applies as soon as one does"))),
    })
}

/// Deletion lifts this ban's share (the whole ban when it was the last one).
async fn cleanup(
    api: &Api<UserBan>,
    ban: &UserBan,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let namespace = ban.namespace().unwrap_or_default();
    let Some(instance) = target::find_instance(ctx, &ban.spec.instance_ref, &namespace).await?
    else {
        // No instance, no database to lift the ban from.
        return Ok(Action::await_change());
    };
    let uid = ban.uid().unwrap_or_default();
    // The shares say what this ban holds, even if a crash kept it out of the status.
    let lifted = match ctx.connections.shared(&ctx.client, &instance).await {
        Ok(stores) => match stores.redis_unavailable().await {
            Some(why) => Err(why),
            None => lift_all(&stores.store, &uid)
                .await
                .map_err(|e| e.to_string()),
        },
        Err(p) => Err(p.message),
    };
    match lifted {
        Ok(results) => {
            for (banned, lifted) in results {
                let note = match lifted {
                    Lifted::Free => format!("lifted the ban of {}", target_label(&banned)),
                    Lifted::StillBanned => format!(
                        "lifted this ban of {}; other bans keep it banned",
                        target_label(&banned)
                    ),
                };
                ctx.event(ban, false, "Lifted", note).await;
            }
            Ok(Action::await_change())
        }
        Err(why) => {
            let message = format!("lifting the ban is blocked: {why}. The operator retries");
            publish(
                api,
                ban,
                ctx,
                Outcome::waiting(ban, reason::DELETE_BLOCKED, message.clone(), RETRY_PENDING),
            )
            .await?;
            Err(ReconcileError::Blocked(message))
        }
    }
}

async fn lift_all(
    store: &Store,
    uid: &str,
) -> Result<Vec<(BanTarget, Lifted)>, crate::librechat::StoreError> {
    let mut results = Vec::new();
    for banned in store.ban_targets_of(uid).await? {
        let lifted = store.unban(&banned, uid).await?;
        results.push((banned, lifted));
    }
    Ok(results)
}
