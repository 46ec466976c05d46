//! The LibreChatInstance reconciler: reachability of MongoDB and Redis (checked often enough
//! that a stalled server shows within seconds), LibreChat's indexes, the `user-stats` counts,
//! and a finalizer: an instance is not deleted while objects that depend on it remain, since
//! their cleanups (lifting a ban, revoking an invite, deleting an account) need its database.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;

use super::connections::{unavailable_reason, ConnectProblem, Stores};
use super::context::Context;
use super::database_identity::{self, Leeway};
use super::error::ReconcileError;
use super::report::report;
use super::status::now_rfc3339;
use crate::api::common::{condition, reason, Cond, FINALIZER};
use crate::api::duration::parse_duration;
use crate::api::instance::{InstanceStats, LibreChatInstanceStatus};
use crate::api::LibreChatInstance;

/// How often reachability is checked, whatever the resync period: a stalled MongoDB must show
/// as `MongoReachable=False` within 30 s. A check is one ping per store, and status is written
/// only when it changes.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(10);
/// How long a reachability ping may take before the store counts as unreachable: longer than
/// the drivers' own connect and server selection timeouts, so that a stopped server is said
/// by the driver's error (which server, refused or timed out) every time, and only a server
/// that accepted the ping and never answered (stalled) by this deadline. Equal timeouts would
/// race, and the instance's message would alternate between the two texts.
const PING_DEADLINE: Duration =
    Duration::from_secs(crate::librechat::connect::CONNECT_TIMEOUT.as_secs() + 3);

/// The resync period an instance declares (or the operator's default).
pub fn resync_period(instance: &LibreChatInstance, default: Duration) -> Duration {
    instance
        .spec
        .resync_period
        .as_deref()
        .and_then(|p| parse_duration(p).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(default)
        // A period the spec check refuses (under a second) must not spin the reconciler.
        .max(MIN_RESYNC_PERIOD)
}

/// The shortest resync the operator keeps, whatever the spec says.
const MIN_RESYNC_PERIOD: Duration = Duration::from_secs(1);

pub async fn reconcile(
    instance: Arc<LibreChatInstance>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let namespace = instance.namespace().unwrap_or_default();
    let api: Api<LibreChatInstance> = Api::namespaced(ctx.client.clone(), &namespace);
    if !ctx.settings.may_hold_instances(&namespace) {
        return ignore(&api, instance, &ctx, &namespace).await;
    }
    finalizer(&api, FINALIZER, instance, |event| async {
        match event {
            FinalizerEvent::Apply(instance) => apply(&api, &instance, &ctx).await,
            FinalizerEvent::Cleanup(instance) => cleanup(&api, &instance, &ctx).await,
        }
    })
    .await
    .map_err(ReconcileError::from)
}

/// An instance outside `--instance-namespaces`: it says why it is ignored, never gets the
/// finalizer, and one that has it from before goes without a cleanup (nothing is connected
/// through it any more, to undo or to write).
async fn ignore(
    api: &Api<LibreChatInstance>,
    instance: Arc<LibreChatInstance>,
    ctx: &Context,
    namespace: &str,
) -> Result<Action, ReconcileError> {
    if instance.metadata.deletion_timestamp.is_some() {
        let nothing = |_| async { Ok::<_, ReconcileError>(Action::await_change()) };
        return finalizer(api, FINALIZER, instance, nothing)
            .await
            .map_err(ReconcileError::from);
    }
    let instance = instance.as_ref();
    let message = ctx.settings.not_an_instance_namespace(namespace);
    let conds = vec![
        Cond::unknown(
            condition::MONGO_REACHABLE,
            reason::NOT_PERMITTED,
            "not checked",
        ),
        Cond::unknown(
            condition::REDIS_REACHABLE,
            reason::NOT_PERMITTED,
            "not checked",
        ),
        Cond::new(condition::READY, false, reason::NOT_PERMITTED, message),
    ];
    let status = instance.status.clone().unwrap_or_default();
    report(api, ctx, instance, status, &conds).await?;
    Ok(Action::await_change())
}

async fn apply(
    api: &Api<LibreChatInstance>,
    instance: &LibreChatInstance,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    super::report::begin(api, instance).await?;
    let mut status = instance.status.clone().unwrap_or_default();
    let (conds, _healthy) = check(instance, ctx, &mut status).await;
    report(api, ctx, instance, status, &conds).await?;
    let period = resync_period(instance, ctx.settings.default_resync);
    Ok(Action::requeue(period.min(HEALTH_INTERVAL)))
}

/// Deletion waits until no object points at the instance any more: their cleanups need its
/// database. Status and an event say which objects remain.
async fn cleanup(
    api: &Api<LibreChatInstance>,
    instance: &LibreChatInstance,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    // The dependents' cleanups connect through the cached stores: a Secret rotated while the
    // instance is being deleted (the old credentials revoked) must reach them too.
    let stores = ctx.connections.stores_for(&ctx.client, instance).await;
    if !super::target::dependents_see_the_deletion(ctx, instance).await {
        let why = "waiting for the operator's watch of instances to see the deletion before listing what depends on it";
        return Err(ReconcileError::Blocked(why.into()));
    }
    // The dependents' cleanups run only in the instance's own database, settled here as in a
    // check (before the list below, whose look at other namespaces' records goes through it):
    // when the URI reaches another, that is what holds them, and the administrators read it.
    let database = match &stores {
        Ok(stores) => {
            let judged = confirm_database(instance, ctx, stores).await;
            // An outage while refused keeps the refusal said (no message alternating).
            judged.err().and_then(|_| stores.identity.refusal())
        }
        Err(_) => None,
    };
    let remaining = super::dependents::of(ctx, instance).await?;
    if remaining.is_empty() {
        ctx.connections.forget(instance).await;
        ctx.feeds.forget(&super::target::instance_key(instance));
        return Ok(Action::await_change());
    }
    let shown: Vec<&str> = remaining.iter().take(10).map(String::as_str).collect();
    let more = remaining.len().saturating_sub(shown.len());
    let in_question = database
        .filter(|p| p.reason == reason::DATABASE_CHANGED)
        .map(|p| format!(". Their cleanups wait: {}", p.message))
        .unwrap_or_default();
    let message = format!(
        "deletion waits for {} object(s) that point at this instance: {}{}. Delete them first (their cleanups lift bans, revoke invites and delete or release accounts in this instance's database); the instance goes once they are gone{in_question}",
        remaining.len(),
        shown.join(", "),
        if more > 0 { format!(" and {more} more") } else { String::new() }
    );
    let status = instance.status.clone().unwrap_or_default();
    let waiting = Cond::new(
        condition::READY,
        false,
        reason::DEPENDENTS_REMAIN,
        message.clone(),
    );
    report(api, ctx, instance, status, &[waiting]).await?;
    Err(ReconcileError::Blocked(message))
}

/// Checks every dependency, refreshing stats and indexes when MongoDB answers. Returns the
/// conditions and whether the instance is Ready.
async fn check(
    instance: &LibreChatInstance,
    ctx: &Context,
    status: &mut LibreChatInstanceStatus,
) -> (Vec<Cond>, bool) {
    if let Some(problem) = instance.spec.problems().first().cloned() {
        let conds = vec![
            Cond::unknown(
                condition::MONGO_REACHABLE,
                reason::INVALID_SPEC,
                "not checked: the spec is invalid",
            ),
            Cond::unknown(
                condition::REDIS_REACHABLE,
                reason::INVALID_SPEC,
                "not checked: the spec is invalid",
            ),
            Cond::new(condition::READY, false, reason::INVALID_SPEC, problem),
        ];
        return (conds, false);
    }
    let stores = match ctx.connections.stores_for(&ctx.client, instance).await {
        Ok(s) => s,
        Err(problem) => {
            let mut conds = vec![Cond::new(
                problem.condition,
                false,
                problem.reason,
                problem.message.clone(),
            )];
            if problem.condition == condition::REDIS_REACHABLE {
                conds.push(Cond::unknown(
                    condition::MONGO_REACHABLE,
                    reason::DEPENDENCY_FAILED,
                    "not checked",
                ));
            } else {
                conds.push(Cond::unknown(
                    condition::REDIS_REACHABLE,
                    reason::DEPENDENCY_FAILED,
                    "not checked: MongoDB comes first",
                ));
            }
            conds.push(Cond::new(
                condition::READY,
                false,
                problem.reason,
                problem.message,
            ));
            return (conds, false);
        }
    };

    let mongo = match tokio::time::timeout(PING_DEADLINE, stores.store.ping()).await {
        Err(_) => Cond::new(
            condition::MONGO_REACHABLE,
            false,
            reason::UNREACHABLE,
            format!("MongoDB did not answer a ping within {}s: the server may be stalled or overloaded; the operator keeps checking", PING_DEADLINE.as_secs()),
        ),
        Ok(Ok(())) => Cond::new(
            condition::MONGO_REACHABLE,
            true,
            reason::REACHABLE,
            "MongoDB answers",
        ),
        Ok(Err(e)) => Cond::new(
            condition::MONGO_REACHABLE,
            false,
            unavailable_reason(&e),
            e.to_string(),
        ),
    };
    let redis = match (&stores.redis_problem, stores.store.connected_redis()) {
        (Some(p), _) => Cond::new(condition::REDIS_REACHABLE, false, p.reason, p.message.clone()),
        (None, Some(cache)) => match cache.ping().await {
            Ok(()) => Cond::new(condition::REDIS_REACHABLE, true, reason::REACHABLE, "Redis answers"),
            Err(e) => Cond::new(condition::REDIS_REACHABLE, false, unavailable_reason(&e), e.to_string()),
        },
        (None, None) => Cond::unknown(
            condition::REDIS_REACHABLE,
            reason::NOT_CONFIGURED,
            "no Redis configured: LibreChat's caches cannot be invalidated, so changes show once they expire, and role changes only once LibreChat restarts (it caches roles with no expiry)",
        ),
    };
    let mongo_ok = mongo.ok == Some(true);
    let redis_ok = !stores.redis_configured || redis.ok == Some(true);

    let mut notes = Vec::new();
    if mongo_ok {
        match confirm_database(instance, ctx, &stores).await {
            // Not set again once the API server is seen dropping it: each check would
            // otherwise write the status anew.
            Ok(mark) => match stores.identity.record_lost(instance, &mark) {
                true => notes.push(PRUNED_DATABASE_ID.into()),
                false => status.database_id = Some(mark),
            },
            Err(problem) => {
                let stopped = Cond::new(condition::READY, false, problem.reason, problem.message);
                return (vec![mongo, redis, stopped], false);
            }
        }
        if !stores.indexes_ensured.load(Ordering::Relaxed) {
            match stores.store.ensure_indexes().await {
                Ok(report) => {
                    if !report.created.is_empty() {
                        tracing::info!(instance = %instance.name_any(), created = ?report.created, "created LibreChat indexes");
                    }
                    // A timeout is tried again at the next check, not reported as a refusal.
                    if !report.failed.is_empty() && !report.retry {
                        ctx.event(
                            instance,
                            true,
                            "IndexesIncomplete",
                            format!("MongoDB refused: {}", report.failed.join("; ")),
                        )
                        .await;
                    }
                    // A passing failure is tried again at the next check; a refusal
                    // would only repeat itself.
                    stores
                        .indexes_ensured
                        .store(!report.retry, Ordering::Relaxed);
                }
                Err(e) => notes.push(format!("indexes not checked: {e}")),
            }
        }
        if let Err(e) = refresh_stats(instance, ctx, &stores, status).await {
            notes.push(format!("stats not refreshed: {e}"));
        }
        let key = super::target::instance_key(instance);
        let mode = ctx.feeds.ensure(&key, &stores.store);
        // A feed being opened again (after a restart) keeps the mode shown until it is known:
        // a restart does not flap the status to Starting and back.
        if mode != super::feeds::FeedMode::Starting || status.change_feed.is_none() {
            status.change_feed = Some(mode.as_str().to_string());
        }
        if let Err(e) = super::terms::apply(instance, ctx, &stores, status).await {
            notes.push(format!("terms version not applied: {e}"));
        }
    }
    notes.extend(super::credentials::credentials_note(&ctx.client, instance).await);

    let ready = match (mongo_ok, redis_ok) {
        (true, true) => Cond::new(
            condition::READY,
            true,
            reason::RECONCILED,
            ready_message(&notes),
        ),
        (false, _) => Cond::new(
            condition::READY,
            false,
            mongo.reason.as_str(),
            format!("MongoDB: {}", mongo.message),
        ),
        (true, false) => Cond::new(
            condition::READY,
            false,
            redis.reason.as_str(),
            format!("Redis: {}", redis.message),
        ),
    };
    let healthy = ready.ok == Some(true);
    (vec![mongo, redis, ready], healthy)
}

/// The mark of the database the instance's connection reaches, when its objects may be
/// written there; checked before anything is written (indexes, terms), the mark read again at
/// each check. The database is the instance's when it is the one recorded; when none is
/// recorded, when the objects applied to the instance wrote there (or none keeps records);
/// and any while nothing points at the instance (there is nothing to strand) or the
/// annotation confirms the move to it. The verdict is told to the dependents waiting on it.
async fn confirm_database(
    instance: &LibreChatInstance,
    ctx: &Context,
    stores: &Stores,
) -> Result<String, ConnectProblem> {
    let judged = judge_database(instance, ctx, stores).await;
    stores.identity.publish(&judged);
    judged
}

async fn judge_database(
    instance: &LibreChatInstance,
    ctx: &Context,
    stores: &Stores,
) -> Result<String, ConnectProblem> {
    let identity = &stores.identity;
    // A re-read that fails (a slow read after a quick ping) keeps the database settled: only
    // another mark stops the instance; the next check reads again.
    let _ = identity.look_again(&stores.store).await;
    if let Some(mark) = identity.settled().await {
        return Ok(mark);
    }
    if database_identity::recorded_mark(instance).is_none() {
        let keeping = async {
            super::dependents::keeping_records(ctx, instance)
                .await
                .map_err(listing_failed)
        };
        identity
            .first_settling(&stores.store, instance, keeping)
            .await?;
    }
    let store = &stores.store;
    match identity.settle(store, instance, Leeway::Annotated).await {
        Err(p)
            if p.reason == reason::DATABASE_CHANGED && !pointed_at(ctx, stores, instance).await =>
        {
            identity.settle(store, instance, Leeway::Any).await
        }
        judged => judged,
    }
}

/// Whether any object points at the instance (a count that stands a minute while it does).
async fn pointed_at(ctx: &Context, stores: &Stores, instance: &LibreChatInstance) -> bool {
    if stores.identity.recently_pointed_at() {
        return true;
    }
    let nothing = super::dependents::of(ctx, instance)
        .await
        .is_ok_and(|remaining| remaining.is_empty());
    if !nothing {
        stores.identity.note_pointed_at();
    }
    !nothing
}

fn listing_failed(e: kube::Error) -> ConnectProblem {
    ConnectProblem {
        condition: condition::MONGO_REACHABLE,
        reason: reason::UNREACHABLE,
        message: format!("could not list the objects that point at this instance, to tell whether the database the URI reaches is theirs: {e}; retrying"),
    }
}

/// What an instance whose API server drops `status.databaseId` says: the protection against a
/// URI switched to another database needs it.
const PRUNED_DATABASE_ID: &str = "status.databaseId is not kept (the LibreChatInstance CRD in the cluster is older than this operator): apply the chart's CRDs (files/crds), or a URI switched to another database goes unnoticed";

/// The longest the instance's stats go without a recount.
const STATS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// Counts the `user-stats` figures once per resync period (at most a minute) (reachability is checked more
/// often). Counts that did not move keep their timestamp, so a quiet instance is not rewritten.
async fn refresh_stats(
    instance: &LibreChatInstance,
    ctx: &Context,
    stores: &Stores,
    status: &mut LibreChatInstanceStatus,
) -> Result<(), crate::librechat::StoreError> {
    // Counts are cheap: at least once a minute, so `kubectl get lci` is current soon after a
    // sync, whatever the resync period.
    let period = resync_period(instance, ctx.settings.default_resync).min(STATS_INTERVAL);
    let due = status.stats.is_none()
        || stores
            .stats_taken
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none_or(|t| t.elapsed() >= period);
    if !due {
        return Ok(());
    }
    let s = stores.store.stats().await?;
    *stores.stats_taken.lock().unwrap_or_else(|p| p.into_inner()) = Some(std::time::Instant::now());
    let fresh = InstanceStats {
        users: s.users,
        managed_users: s.managed_users,
        verified_users: s.verified_users,
        active_bans: s.active_bans,
        pending_invites: s.pending_invites,
        updated_at: None,
    };
    let unchanged = status.stats.as_ref().is_some_and(|old| {
        InstanceStats {
            updated_at: None,
            ..old.clone()
        } == fresh
    });
    if !unchanged {
        status.stats = Some(InstanceStats {
            updated_at: Some(now_rfc3339()),
            ..fresh
        });
    }
    Ok(())
}

fn ready_message(notes: &[String]) -> String {
    if notes.is_empty() {
        "connected; users, bans and invites can be managed".into()
    } else {
        format!("connected; {}", notes.join("; "))
    }
}
