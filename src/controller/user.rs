//! The LibreChatUser reconciler: dereference the instance, validate, resolve the password,
//! claim the email, create or correct the account, apply the password, report.
//!
//! Every step before the first write only reads, so an invalid object or a missing Secret
//! writes nothing. A resync of a settled account is reads only.

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;
use mongodb::bson::oid::ObjectId;

use super::context::Context;
use super::error::ReconcileError;
use super::instance::resync_period;
use super::password::{self, ResolvedPassword};
use super::report::report;
use super::status::now_rfc3339;
use super::target::{self, Target};
use crate::api::common::{condition, reason, Cond, FINALIZER};
use crate::api::user::DeletionPolicy;
use crate::api::validate::check_email;
use crate::api::LibreChatUser;
use crate::librechat::ownership::{Claim, ClaimResult, Owner};
use crate::librechat::users::{Created, DesiredUser};
use crate::librechat::{Store, StoreError};

/// How soon a user waiting on something outside the object (instance, Secret) looks again,
/// in case no watch event tells it.
const RETRY_WAITING: Duration = Duration::from_secs(30);

pub async fn reconcile(
    user: Arc<LibreChatUser>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let api: Api<LibreChatUser> =
        Api::namespaced(ctx.client.clone(), &user.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, user, |event| async {
        match event {
            FinalizerEvent::Apply(user) => apply(&api, &user, &ctx).await,
            FinalizerEvent::Cleanup(user) => cleanup(&api, &user, &ctx).await,
        }
    })
    .await
    .map_err(ReconcileError::from)
}

/// Where an apply ended.
struct Outcome {
    ready: Cond,
    password: Cond,
    user_id: Option<ObjectId>,
    password_version: Option<String>,
    /// Whether LibreChat's data was written (stamps `lastSyncTime`).
    wrote: bool,
    requeue: Duration,
}

impl Outcome {
    /// Not done, nothing written: a problem a person must fix, or a dependency to wait for.
    fn waiting(reason: &str, message: impl Into<String>, user: &LibreChatUser) -> Self {
        let message = message.into();
        let status = user.status.as_ref();
        Outcome {
            password: Cond::unknown(
                condition::PASSWORD_READY,
                reason,
                "not applied: the account is not reconciled",
            ),
            ready: Cond::new(condition::READY, false, reason, message),
            user_id: status
                .and_then(|s| s.user_id.as_deref())
                .and_then(|h| ObjectId::parse_str(h).ok()),
            password_version: status.and_then(|s| s.password_secret_version.clone()),
            wrote: false,
            requeue: RETRY_WAITING,
        }
    }
}

async fn apply(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let result = sync(user, ctx).await;
    let (outcome, error) = match result {
        Ok(o) => (o, None),
        Err(ReconcileError::Store(e)) => {
            let o = Outcome::waiting(reason::STORE_ERROR, e.to_string(), user);
            (o, Some(ReconcileError::Store(e)))
        }
        Err(other) => return Err(other),
    };
    let requeue = outcome.requeue;
    publish_status(api, user, ctx, outcome).await?;
    match error {
        Some(e) => Err(e),
        None => Ok(Action::requeue(requeue)),
    }
}

async fn publish_status(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
    outcome: Outcome,
) -> Result<(), ReconcileError> {
    let mut status = user.status.clone().unwrap_or_default();
    status.user_id = outcome.user_id.map(|id| id.to_hex());
    status.password_secret_version = outcome.password_version;
    if outcome.wrote || status.last_sync_time.is_none() && outcome.ready.ok == Some(true) {
        status.last_sync_time = Some(now_rfc3339());
    }
    report(api, ctx, user, status, &[outcome.ready, outcome.password]).await?;
    Ok(())
}

fn owner_of(user: &LibreChatUser) -> Owner {
    Owner {
        kind: "LibreChatUser".into(),
        namespace: user.namespace().unwrap_or_default(),
        name: user.name_any(),
        uid: user.uid().unwrap_or_default(),
    }
}

async fn sync(user: &LibreChatUser, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let namespace = user.namespace().unwrap_or_default();
    let spec = &user.spec;

    // Dereference and validate: reads only.
    let target = match target::resolve(ctx, &spec.instance_ref, &namespace).await? {
        Ok(t) => t,
        Err(p) => return Ok(Outcome::waiting(p.reason, p.message, user)),
    };
    let Target { instance, stores } = target;
    let instance_ns = target::instance_namespace(&spec.instance_ref, &namespace);
    let problems = spec.problems(instance.spec.min_password_length());
    if !problems.is_empty() {
        return Ok(Outcome::waiting(
            reason::INVALID_SPEC,
            format!("{}; nothing was written", problems.join("; ")),
            user,
        ));
    }
    if spec.role() == "ADMIN" && !instance.spec.admits_admin(&instance_ns, &namespace) {
        return Ok(Outcome::waiting(
            reason::ADMIN_NOT_ALLOWED,
            format!("role ADMIN is not allowed from namespace '{namespace}': set allowAdmin on LibreChatInstance {instance_ns}/{}", instance.name_any()),
            user,
        ));
    }
    let email = check_email(&spec.email).unwrap_or_default();
    let password = match password::resolve(
        &ctx.client,
        user,
        &email,
        instance.spec.min_password_length(),
        instance.spec.domain_client.as_deref(),
    )
    .await
    {
        Ok(p) => p,
        Err(p) => {
            let mut o = Outcome::waiting(
                p.reason,
                format!("password: {}; nothing was written", p.message),
                user,
            );
            o.password = Cond::new(condition::PASSWORD_READY, false, p.reason, p.message);
            return Ok(o);
        }
    };
    let desired = DesiredUser {
        email: email.clone(),
        name: spec.name.clone(),
        username: spec.username.clone(),
        role: spec.role.clone(),
        provider: spec.provider.map(|p| p.as_str().to_string()),
        email_verified: spec.email_verified,
    };
    let store = &stores.store;

    // Ownership, then the account.
    let owner = owner_of(user);
    let adopt = spec.adopt.unwrap_or(false);
    // A settled object (Ready for this very generation) proved its claim when it got there;
    // only the operator moves claims, so a resync skips re-reading it: one read per resync.
    let settled_id = user
        .status
        .as_ref()
        .filter(|s| crate::api::common::is_ready(&s.conditions, user.metadata.generation))
        .and_then(|s| s.user_id.as_deref())
        .and_then(|h| ObjectId::parse_str(h).ok());
    let claim = match settled_id {
        Some(id) => Claim {
            email: email.clone(),
            owner: owner.clone(),
            user_id: Some(id),
            confirmed: true,
        },
        None => match take_ownership(ctx, store, user, &owner, &email, adopt).await? {
            Ok(c) => c,
            Err(waiting) => return Ok(waiting),
        },
    };

    let known_id = claim.user_id.or_else(|| {
        user.status
            .as_ref()
            .and_then(|s| s.user_id.as_deref())
            .and_then(|h| ObjectId::parse_str(h).ok())
    });
    let existing = match known_id {
        Some(id) => store.find_user_by_id(id).await?,
        None => None,
    };
    let existing = match existing {
        Some(u) => Some(u),
        None => store.find_user_by_email(&email).await?,
    };

    let mut wrote = false;
    let mut password_version = user
        .status
        .as_ref()
        .and_then(|s| s.password_secret_version.clone());
    let user_id = match existing {
        None => {
            let hash = match &password {
                Some(p) => Some(ctx.hasher.hash(p.value.clone()).await?),
                None => None,
            };
            if let Some(gone) = claim.user_id.filter(|_| claim.confirmed) {
                store.renew_reservation(&email, &owner.uid, gone).await?;
            }
            let reserved = store
                .reserve_user_id(&email, &owner.uid, ObjectId::new())
                .await?;
            let created = store.create_user(reserved, &desired, hash).await?;
            if let Created::AlreadyThere(found) = created {
                // Our own id means a concurrent reconcile of this object created it; another id
                // means LibreChat registered this email between our look and our insert.
                if found != reserved && !adopt {
                    store.release(&email, &owner.uid).await?;
                    return Ok(Outcome::waiting(
                        reason::ALREADY_EXISTS,
                        format!("a LibreChat account {email} appeared while it was being created; set spec.adopt: true to take it over"),
                        user,
                    ));
                }
            }
            let id = created.id();
            store.record_claimed_user(&email, &owner.uid, id).await?;
            wrote = true;
            if let Created::Inserted(_) = created {
                password_version = password.as_ref().map(|p| p.version.clone());
                ctx.event(
                    user,
                    false,
                    "Created",
                    format!("created LibreChat account {email} ({})", id.to_hex()),
                )
                .await;
            }
            id
        }
        Some(stored) => {
            if claim.user_id != Some(stored.id) {
                // The operator reserves an id before it creates an account, so an account with
                // another id was made by someone else: it is taken over only when adopting.
                if !adopt {
                    store.release(&email, &owner.uid).await?;
                    return Ok(Outcome::waiting(
                        reason::ALREADY_EXISTS,
                        format!("a LibreChat account {email} exists that this object did not create; set spec.adopt: true to take it over"),
                        user,
                    ));
                }
                store
                    .record_claimed_user(&email, &owner.uid, stored.id)
                    .await?;
                ctx.event(
                    user,
                    false,
                    "Adopted",
                    format!("took over the existing LibreChat account {email}"),
                )
                .await;
            } else if !claim.confirmed {
                // Created before a crash kept the claim from saying so.
                store
                    .record_claimed_user(&email, &owner.uid, stored.id)
                    .await?;
            }
            let changed = store.correct_user(&stored, &desired).await?;
            if !changed.is_empty() {
                wrote = true;
                let spec_changed = user.status.as_ref().and_then(|s| s.observed_generation)
                    != user.metadata.generation;
                let (event, verb) = if spec_changed {
                    ("Updated", "updated")
                } else {
                    ("DriftCorrected", "put back")
                };
                ctx.event(
                    user,
                    false,
                    event,
                    format!("{verb} {} of {email}", changed.join(", ")),
                )
                .await;
                if changed.contains(&"role") {
                    invalidate(store, stored.id, stored.id_on_the_source.as_deref()).await?;
                }
            }
            stored.id
        }
    };

    // The password: applied when its Secret version is new, and only re-hashed if it changed.
    let password_cond = match &password {
        None => {
            // Nothing declared: the account's password is LibreChat's business now.
            password_version = None;
            Cond::new(
                condition::PASSWORD_READY,
                true,
                reason::NO_PASSWORD,
                no_password_message(user),
            )
        }
        Some(p) if password_version.as_deref() == Some(p.version.as_str()) => Cond::new(
            condition::PASSWORD_READY,
            true,
            reason::PASSWORD_APPLIED,
            "the password from the Secret is applied",
        ),
        Some(p) => {
            if apply_password(ctx, store, user_id, p).await? {
                wrote = true;
                ctx.event(
                    user,
                    false,
                    "PasswordRotated",
                    format!("password of {email} changed; its sessions were revoked"),
                )
                .await;
            }
            password_version = Some(p.version.clone());
            Cond::new(
                condition::PASSWORD_READY,
                true,
                reason::PASSWORD_APPLIED,
                "the password from the Secret is applied",
            )
        }
    };

    Ok(Outcome {
        ready: Cond::new(
            condition::READY,
            true,
            reason::RECONCILED,
            format!("LibreChat account {email} matches the declaration"),
        ),
        password: password_cond,
        user_id: Some(user_id),
        password_version,
        wrote,
        requeue: resync_period(&instance, ctx.settings.default_resync),
    })
}

/// Claims `email` for this object, or says why not (as the outcome to report). Only the
/// object that owns an email may touch its account; an account nobody owns is taken over only
/// when adopting, or when its last owner was an object of this same namespace and name that
/// is gone (deleted while the operator could not clean up, then re-created).
async fn take_ownership(
    ctx: &Context,
    store: &Store,
    user: &LibreChatUser,
    owner: &Owner,
    email: &str,
    adopt: bool,
) -> Result<Result<Claim, Outcome>, ReconcileError> {
    let claim = match store.find_claim(email).await? {
        Some(c) if c.owner.uid == owner.uid => c,
        Some(c) if owner_still_exists(ctx, &c.owner).await? => {
            return Ok(Err(Outcome::waiting(
                reason::CONFLICT,
                format!("the account {email} is already managed by {}; nothing was changed. Remove one of the two objects", c.owner),
                user,
            )));
        }
        stale => {
            // Old API servers drop the CEL rule that keeps email immutable: an object that
            // already owns an account under another email must not claim a second one.
            let owned_id = user
                .status
                .as_ref()
                .and_then(|s| s.user_id.as_deref())
                .and_then(|h| ObjectId::parse_str(h).ok());
            if let Some(id) = owned_id {
                if let Some(previous) = store
                    .find_claim_of_user(id)
                    .await?
                    .filter(|c| c.owner.uid == owner.uid && c.email != email)
                {
                    return Ok(Err(Outcome::waiting(
                        reason::INVALID_SPEC,
                        format!("email is immutable: this object manages {}; create a new LibreChatUser for {email}", previous.email),
                        user,
                    )));
                }
            }
            let existing = store.find_user_by_email(email).await?;
            // The same declaration, re-created: it inherits what its predecessor owned.
            let inherited = stale
                .as_ref()
                .filter(|c| {
                    c.owner.kind == owner.kind
                        && c.owner.namespace == owner.namespace
                        && c.owner.name == owner.name
                })
                .and_then(|c| c.user_id)
                .filter(|id| existing.as_ref().is_some_and(|u| u.id == *id));
            if existing.is_some() && !adopt && inherited.is_none() {
                let why = match &stale {
                    Some(c) => format!("was managed by {}, which no longer exists", c.owner),
                    None => "is not managed by any object".to_string(),
                };
                return Ok(Err(Outcome::waiting(
                    reason::ALREADY_EXISTS,
                    format!("a LibreChat account {email} already exists and {why}; set spec.adopt: true to take it over"),
                    user,
                )));
            }
            if let Some(c) = stale {
                // One atomic hand-over, so a crash cannot lose the link to the account.
                if inherited.is_some() && store.take_over(email, &c.owner.uid, owner).await? {
                    return Ok(Ok(Claim {
                        email: email.to_string(),
                        owner: owner.clone(),
                        user_id: inherited,
                        confirmed: true,
                    }));
                }
                store.release(email, &c.owner.uid).await?;
            }
            match store.claim(email, owner).await? {
                ClaimResult::Ours(c) => c,
                ClaimResult::Taken(c) => {
                    return Ok(Err(Outcome::waiting(
                        reason::CONFLICT,
                        format!(
                            "the account {email} was just claimed by {}; nothing was changed",
                            c.owner
                        ),
                        user,
                    )));
                }
            }
        }
    };
    Ok(Ok(claim))
}

fn no_password_message(user: &LibreChatUser) -> String {
    if user.spec.provider() == crate::api::user::Provider::Local {
        "no password declared: the account can log in only after a password reset".into()
    } else {
        format!(
            "{} accounts log in through their identity provider",
            user.spec.provider().as_str()
        )
    }
}

/// Sets the password if it differs from the stored one, logging the user out everywhere.
/// Returns whether it changed.
async fn apply_password(
    ctx: &Context,
    store: &Store,
    user_id: ObjectId,
    password: &ResolvedPassword,
) -> Result<bool, StoreError> {
    let stored = store.find_user_by_id(user_id).await?;
    if let Some(hash) = stored.and_then(|u| u.password_hash) {
        if ctx.hasher.verify(password.value.clone(), hash).await? {
            return Ok(false);
        }
    }
    let hash = ctx.hasher.hash(password.value.clone()).await?;
    store.set_password_hash(user_id, &hash).await?;
    store.revoke_sessions(user_id).await?;
    Ok(true)
}

async fn invalidate(
    store: &Store,
    user_id: ObjectId,
    id_on_the_source: Option<&str>,
) -> Result<(), StoreError> {
    if let Some(redis) = store.redis() {
        redis
            .invalidate_user(&user_id.to_hex(), id_on_the_source)
            .await?;
    }
    Ok(())
}

/// Whether the object recorded as owner still exists (same uid). A claim whose owner is gone
/// (deleted while the operator was not running, or its instance was) is stale.
async fn owner_still_exists(ctx: &Context, owner: &Owner) -> Result<bool, kube::Error> {
    let api: Api<LibreChatUser> = Api::namespaced(ctx.client.clone(), &owner.namespace);
    Ok(api
        .get_opt(&owner.name)
        .await?
        .is_some_and(|u| u.uid().as_deref() == Some(owner.uid.as_str())))
}

/// Deletion: `Retain` lets go of the account, `Delete` removes it and all its data. Only an
/// account this object owns is ever touched.
async fn cleanup(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    let namespace = user.namespace().unwrap_or_default();
    let policy = user.spec.deletion_policy();
    let email = crate::api::validate::normalize_email(&user.spec.email);
    let owner = owner_of(user);

    let instance = target::find_instance(ctx, &user.spec.instance_ref, &namespace).await?;
    let stores = match &instance {
        Some(i) => ctx
            .connections
            .shared(&ctx.client, i)
            .await
            .map_err(|p| p.message),
        None => Err(format!(
            "LibreChatInstance '{}' no longer exists",
            user.spec.instance_ref.name
        )),
    };
    let stores = match (stores, policy) {
        (Ok(s), _) => s,
        // Nothing to release where there is no database to reach.
        (Err(_), DeletionPolicy::Retain) => return Ok(Action::await_change()),
        (Err(why), DeletionPolicy::Delete) => return blocked(api, user, ctx, &why).await,
    };
    if policy == DeletionPolicy::Delete {
        if let Some(why) = stores.redis_unavailable().await {
            return blocked(api, user, ctx, &why).await;
        }
    }
    let store = &stores.store;
    let claim = match store.find_claim(&email).await {
        Ok(c) => c,
        Err(e) => return blocked_or(api, user, ctx, policy, e).await,
    };
    let Some(claim) = claim.filter(|c| c.owner.uid == owner.uid) else {
        return Ok(Action::await_change());
    };
    if policy == DeletionPolicy::Delete {
        let user_id = claim.user_id.or_else(|| {
            user.status
                .as_ref()
                .and_then(|s| s.user_id.as_deref())
                .and_then(|h| ObjectId::parse_str(h).ok())
        });
        if let Some(id) = user_id {
            match store
                .delete_user_cascade(id, user.spec.delete_transactions.unwrap_or(false))
                .await
            {
                Ok(report) => {
                    ctx.event(
                        user,
                        false,
                        "Deleted",
                        format!(
                            "deleted LibreChat account {email} and {} documents of its data",
                            report.total()
                        ),
                    )
                    .await;
                }
                Err(e) => return blocked(api, user, ctx, &e.to_string()).await,
            }
        }
    }
    if let Err(e) = store.release(&email, &owner.uid).await {
        return blocked_or(api, user, ctx, policy, e).await;
    }
    if policy == DeletionPolicy::Retain {
        ctx.event(
            user,
            false,
            "Released",
            format!("stopped managing LibreChat account {email}; the account stays"),
        )
        .await;
    }
    Ok(Action::await_change())
}

async fn blocked_or(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
    policy: DeletionPolicy,
    e: StoreError,
) -> Result<Action, ReconcileError> {
    match policy {
        DeletionPolicy::Delete => blocked(api, user, ctx, &e.to_string()).await,
        DeletionPolicy::Retain => {
            blocked(
                api,
                user,
                ctx,
                &format!("could not release the account: {e}"),
            )
            .await
        }
    }
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
