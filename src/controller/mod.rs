//! The Kubernetes half: one reconciler per kind, the shared context, and the wiring of
//! watches so that a change anywhere reaches the objects it affects.

pub mod access;
pub mod audit;
pub mod ban;
pub mod caches;
pub mod clients;
pub mod connections;
pub mod context;
pub mod credentials;
pub mod database_identity;
pub mod declared;
pub mod dependents;
pub mod error;
pub mod fanout;
pub mod feeds;
pub mod gone_watch;
pub mod group;
pub mod index;
pub mod instance;
pub mod instance_watch;
pub mod invite;
pub mod invite_rivals;
pub mod memory;
pub mod opening;
pub mod owned_secret;
pub mod password;
pub mod recorder;
pub mod relist;
pub mod report;
pub mod role;
pub mod scoped;
pub mod secret_watch;
pub mod secrets;
pub mod status;
pub mod target;
pub mod tenancy;
pub mod terms;
pub mod user;
pub mod user_watch;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::reflector::{ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Client, Resource, ResourceExt};

pub use context::{Context, FreedEmail, NameChange, Settings};
pub use error::ReconcileError;

use crate::api::common::{condition, find_condition, reason, AppliedToInstance};
use crate::api::validate::normalize_email;
use crate::api::{
    LibreChatGroup, LibreChatInstance, LibreChatRole, LibreChatUser, UserBan, UserInvite,
};
use crate::librechat::access::{group_key, role_key};
use crate::librechat::permissions::is_built_in;
use fanout::Fanout;
use feeds::InstanceChange;
use secret_watch::SecretMeta;
use user_watch::UserKey;

/// Why the operator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("the CRD for {kind} is not installed (or not readable with the operator's permissions): {source}. Install the CRDs first: `librechat-operator crds | kubectl apply -f -` or `kubectl apply -f crds/`")]
    CrdMissing {
        kind: &'static str,
        source: kube::Error,
    },
}

fn api_for<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with a clear message when a CRD is not served, instead of a crash loop of watch errors.
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<(), StartError> {
    async fn probe<K>(api: Api<K>, kind: &'static str) -> Result<(), StartError>
    where
        K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        api.list_metadata(&ListParams::default().limit(1))
            .await
            .map(|_| ())
            .map_err(|source| StartError::CrdMissing { kind, source })
    }
    probe(
        api_for::<LibreChatInstance>(client, namespace),
        "LibreChatInstance",
    )
    .await?;
    probe(api_for::<LibreChatUser>(client, namespace), "LibreChatUser").await?;
    probe(api_for::<UserBan>(client, namespace), "UserBan").await?;
    probe(api_for::<UserInvite>(client, namespace), "UserInvite").await?;
    probe(
        api_for::<LibreChatGroup>(client, namespace),
        "LibreChatGroup",
    )
    .await?;
    probe(api_for::<LibreChatRole>(client, namespace), "LibreChatRole").await?;
    Ok(())
}

/// How long one reconcile may take before it is abandoned and retried. Each store call has
/// its own, shorter deadline; this one bounds the sum (a cascade deletion makes many calls),
/// so that a hung call can never hold one of a kind's few reconcile slots for good.
pub const RECONCILE_DEADLINE: Duration = Duration::from_secs(120);

/// A failed reconcile is retried after a per-object exponential backoff with jitter, capped
/// (see [`memory::Backoff`]), so an outage is not met with a retry storm.
fn error_policy<K>(obj: Arc<K>, error: &ReconcileError, ctx: Arc<Context>) -> Action
where
    K: Resource<DynamicType = ()>,
{
    let kind = K::kind(&());
    crate::metrics::global().reconcile_failed(&kind, error.label());
    let wait = ctx.backoff.failed(&object_key(&*obj));
    crate::metrics::global()
        .set_in_backoff(&kind, ctx.backoff.in_backoff_under(&format!("{kind}/")));
    tracing::warn!(kind = %kind, name = %obj.meta().name.clone().unwrap_or_default(), namespace = ?obj.meta().namespace, error = %error, label = error.label(), retry_in_s = wait.as_secs(), "reconcile failed; retrying");
    Action::requeue(wait)
}

fn object_key<K: Resource<DynamicType = ()>>(obj: &K) -> String {
    let meta = obj.meta();
    format!(
        "{}/{}/{}",
        K::kind(&()),
        meta.namespace.clone().unwrap_or_default(),
        meta.name.clone().unwrap_or_default()
    )
}

/// Runs `reconcile` within [`RECONCILE_DEADLINE`] in a span naming the object, counting and
/// timing it, resetting the object's backoff when it succeeds, keeping the count of blocked
/// deletions, and forgetting the readiness of deleted objects.
async fn observed<K, Fut>(
    obj: Arc<K>,
    ctx: Arc<Context>,
    reconcile: fn(Arc<K>, Arc<Context>) -> Fut,
) -> Result<Action, ReconcileError>
where
    K: Resource<DynamicType = ()>,
    Fut: std::future::Future<Output = Result<Action, ReconcileError>>,
{
    use tracing::Instrument;
    let metrics = crate::metrics::global();
    let kind = K::kind(&());
    let meta = obj.meta();
    let namespace = meta.namespace.clone().unwrap_or_default();
    let name = meta.name.clone().unwrap_or_default();
    let span = tracing::info_span!("reconcile", kind = %kind, namespace = %namespace, name = %name);
    let _timer = metrics.reconcile_started(&kind);
    let key = object_key(&*obj);
    let obj_uid = meta.uid.clone();
    if meta.deletion_timestamp.is_some() {
        metrics.set_readiness(&kind, &format!("{namespace}/{name}"), None);
    }
    let result = match tokio::time::timeout(RECONCILE_DEADLINE, reconcile(obj, ctx.clone()))
        .instrument(span)
        .await
    {
        Ok(result) => result,
        Err(_) => Err(ReconcileError::Deadline(RECONCILE_DEADLINE)),
    };
    // A reconcile cut short (an error, or its deadline: the future is dropped mid-way) may
    // have written without finishing: the object takes the full path next time, not the
    // shortcut an earlier success remembered.
    if result.is_err() {
        if let Some(uid) = obj_uid.as_deref() {
            ctx.settled.forget(uid);
        }
    }
    let blocked = matches!(&result, Err(e) if e.label() == "blocked");
    metrics.set_deletion_blocked(&kind, &key, blocked);
    if result.is_ok() {
        ctx.backoff.succeeded(&key);
        metrics.set_in_backoff(&kind, ctx.backoff.in_backoff_under(&format!("{kind}/")));
    }
    result
}

/// The objects of one kind that an account change may concern, by `concerns(object, account
/// id, email after the change)`, and applied to the instance whose feed saw it. Waking is a
/// hint, never an identity: each woken object's reconcile reads the ownership record before
/// it writes.
fn woken_by<K>(
    objects: &Store<K>,
    change: &InstanceChange,
    concerns: fn(&K, &str, Option<&str>) -> bool,
) -> Vec<ObjectRef<K>>
where
    K: kube::Resource<DynamicType = ()> + AppliedToInstance + Clone + 'static,
{
    let account = &change.account;
    let id = account.user_id.to_hex();
    let email = account.email.as_deref().map(normalize_email);
    objects
        .state()
        .iter()
        .filter(|o| concerns(o, &id, email.as_deref()))
        .filter(|o| is_for(change, &***o))
        .map(|o| ObjectRef::from_obj(&**o))
        .collect()
}

/// Whether `change` came from the feed of the instance `obj` is applied to.
fn is_for<K: Resource + AppliedToInstance>(change: &InstanceChange, obj: &K) -> bool {
    let namespace = obj.meta().namespace.as_deref().unwrap_or_default();
    change.is_for(obj.instance_ref(), namespace)
}

/// What a watch calls with each object deleted: the email it declared is free, in every scope.
fn frees_email<K: Resource + 'static>(
    ctx: &Arc<Context>,
    email_of: fn(&K) -> &str,
) -> impl Fn(&K) + Send + 'static {
    let ctx = ctx.clone();
    move |gone| {
        let freed = FreedEmail::by(gone, email_of(gone));
        ctx.emails_freed.tell(Arc::new(freed));
    }
}

/// The invitations of other namespaces refused (`NotPermitted`) for an email whose
/// declaration went, which may have been why. A wake-up hint: each reconcile checks again.
fn refused_over(invites: &Store<UserInvite>, freed: &FreedEmail) -> Vec<ObjectRef<UserInvite>> {
    select(invites, |i: &UserInvite| {
        not_permitted(i)
            && i.namespace().as_deref() != Some(freed.namespace.as_str())
            && normalize_email(&i.spec.email) == freed.email
    })
}

/// Whether an invitation reads refused (`NotPermitted`).
fn not_permitted(invite: &UserInvite) -> bool {
    invite
        .status
        .as_ref()
        .is_some_and(|s| reads_not_permitted(&s.conditions))
}

/// Whether a user's `Ready` reads `Conflict` (its email managed by another object).
fn in_conflict(user: &LibreChatUser) -> bool {
    let conditions = user.status.as_ref().map(|s| s.conditions.as_slice());
    let ready = conditions.and_then(|c| find_condition(c, condition::READY));
    ready.is_some_and(|c| c.reason == reason::CONFLICT)
}

/// Whether `Ready` reads refused (`NotPermitted`).
fn reads_not_permitted(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
) -> bool {
    find_condition(conditions, condition::READY)
        .is_some_and(|c| c.status == "False" && c.reason == reason::NOT_PERMITTED)
}

/// Whether a change of the role name `change` names concerns `user`: it declares the role in
/// that instance, and the name was freed (one settled in it checks it again) or the user is
/// refused for it (the role created may let it go on).
fn concerned_by_role(user: &LibreChatUser, change: &NameChange) -> bool {
    let declared = user.spec.role.as_deref().map(role_key);
    declared.is_some_and(|key| change.concerns(user, &key))
        && (change.is_freed() || refused_for_role(user))
}

/// A user refused for the role it declares (`NotPermitted`): it may go on once the role is
/// created in LibreChat or its name freed.
fn refused_for_role(user: &LibreChatUser) -> bool {
    let refused = user
        .status
        .as_ref()
        .is_some_and(|s| reads_not_permitted(&s.conditions));
    refused && user.spec.role.is_some()
}

fn declares_custom_role(user: &LibreChatUser) -> bool {
    user.spec.role.as_deref().is_some_and(|r| !is_built_in(r))
}

/// An invite for the email an account now has (it registered).
fn invite_concerned(i: &UserInvite, _id: &str, email: Option<&str>) -> bool {
    email == Some(normalize_email(&i.spec.email).as_str())
}

/// Checks, before anything runs (and before a replica competes for leadership), that every
/// CRD is served in every watched namespace.
pub async fn preflight(client: &Client, settings: &Settings) -> Result<(), StartError> {
    if settings.namespaces.is_empty() {
        return check_crds(client, None).await;
    }
    for ns in &settings.namespaces {
        check_crds(client, Some(ns)).await?;
    }
    Ok(())
}

/// Logs what a controller stream reports beyond reconcile errors (those `error_policy` logs).
fn log_outcome<T>(
    kind: &'static str,
) -> impl FnMut(
    Result<T, kube::runtime::controller::Error<ReconcileError, watcher::Error>>,
) -> futures::future::Ready<()> {
    use kube::runtime::controller::Error;
    move |result| {
        match result {
            Err(Error::QueueError(e)) => {
                tracing::warn!(kind, error = %e, "watching failed; retrying (check RBAC and the API server)")
            }
            Err(Error::ReconcilerFailed(..)) | Ok(_) => {}
            Err(e) => tracing::debug!(kind, error = %e, "controller"),
        }
        futures::future::ready(())
    }
}

/// Runs every controller until a shutdown signal, over all namespaces or one set of them per
/// namespace listed.
pub async fn run(
    clients: clients::Clients,
    settings: Settings,
    health: crate::health::Health,
) -> Result<(), StartError> {
    preflight(&clients.request, &settings).await?;
    let ctx = Arc::new(Context::new(clients.request, settings.clone(), health));
    let client = clients.watch;
    if settings.namespaces.is_empty() {
        run_scope(client, None, ctx).await;
    } else {
        let scopes = settings
            .namespaces
            .iter()
            .map(|ns| run_scope(client.clone(), Some(ns.clone()), ctx.clone()));
        futures::future::join_all(scopes).await;
    }
    tracing::info!("controllers stopped");
    Ok(())
}

/// Every controller, watching one namespace or (with `None`) all of them.
async fn run_scope(client: Client, namespace: Option<String>, ctx: Arc<Context>) {
    let settings = ctx.settings.clone();
    let config = ControllerConfig::default().concurrency(settings.concurrency);

    let (shared_instances, instance_watch) = instance_watch::watch(
        api_for::<LibreChatInstance>(&client, namespace.as_deref()),
        &ctx.instances,
        namespace.clone(),
    );
    let watched = user_watch::watch(
        api_for::<LibreChatUser>(&client, namespace.as_deref()),
        frees_email(&ctx, |u: &LibreChatUser| &u.spec.email),
    );
    let user_changes = watched.changes.clone();
    let (secret_changes, secret_watch) =
        secret_watch::watch(&client, namespace.as_deref(), &ctx.secrets);

    let instances = Controller::new(
        api_for::<LibreChatInstance>(&client, namespace.as_deref()),
        watcher::Config::default(),
    )
    .with_config(config.clone());
    let instance_store = instances.store();
    let synced_instances = instances.store();
    let every_instance = instances.store();
    let instances_using_secrets = instances.store();
    let instances = instances
        .reconcile_on(secret_changes.wakes(
            move |secret: &SecretMeta| {
                let name = secret.name_any();
                select(&instance_store, |i: &LibreChatInstance| {
                    i.namespace() == secret.namespace() && instance_uses_secret(i, &name)
                })
            },
            move || all_of(&instances_using_secrets),
        ))
        // A deleting instance waits for its dependents: each one that goes wakes it.
        .reconcile_on(user_changes.wakes(
            |u: &LibreChatUser| {
                going_instance(u, &u.spec.instance_ref)
                    .into_iter()
                    .collect()
            },
            move || all_of(&every_instance),
        ))
        .watches(
            api_for::<UserBan>(&client, namespace.as_deref()),
            watcher::Config::default(),
            |b| going_instance(&b, &b.spec.instance_ref),
        )
        .watches(
            api_for::<UserInvite>(&client, namespace.as_deref()),
            watcher::Config::default(),
            |i| going_instance(&i, &i.spec.instance_ref),
        )
        .watches(
            api_for::<LibreChatGroup>(&client, namespace.as_deref()),
            watcher::Config::default(),
            |g| going_instance(&g, &g.spec.instance_ref),
        )
        .watches(
            api_for::<LibreChatRole>(&client, namespace.as_deref()),
            watcher::Config::default(),
            |r| going_instance(&r, &r.spec.instance_ref),
        )
        .shutdown_on_signal()
        .run(
            |o, c| observed(o, c, instance::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome("LibreChatInstance"));

    let users = Controller::for_stream(watched.trigger, watched.store.clone()).with_config(config);
    let synced_users = watched.store.clone();
    let users_reading_secrets = watched.store.clone();
    let every_user = watched.store.clone();
    let cached_users = watched.store.clone();
    let users_of_instance = watched.store.clone();
    let (by_role, every_refused_user) = (watched.store.clone(), watched.store.clone());
    let (by_freed_email, every_conflict) = (watched.store.clone(), watched.store.clone());
    let by_instance = watched.store;
    let list_gate = watched.list_gate;
    let (by_account, by_secret) = (watched.index.clone(), watched.index);
    let woken = ctx.feeds.subscribe().map(move |change| {
        let account = &change.account;
        let email = account.email.as_deref().map(normalize_email);
        let mut keys = vec![UserKey::Account(account.user_id.to_hex())];
        keys.extend(email.map(UserKey::Email));
        let of_instance = by_account.lookup(&keys).into_iter().filter(|r| {
            let user = users_of_instance.get(r);
            user.is_some_and(|u| is_for(&change, &*u))
        });
        futures::stream::iter(of_instance.collect::<Vec<_>>())
    });
    let users = users
        // LibreChat's own writes, seen through the instances' change streams.
        .reconcile_on(woken.flatten())
        // An object in Conflict waits for no timer: the owner of its email going wakes it,
        // in its own watch scope at once, and from any other namespace's scope when it is gone.
        .reconcile_on(watched.email_freed)
        .reconcile_on(ctx.emails_freed.wakes(
            move |freed: &FreedEmail| {
                select(&by_freed_email, |u: &LibreChatUser| {
                    in_conflict(u)
                        && u.namespace().as_deref() != Some(freed.namespace.as_str())
                        && normalize_email(&u.spec.email) == freed.email
                })
            },
            move || select(&every_conflict, in_conflict),
        ))
        // A user refused for its role waits for no timer: the role created in LibreChat (a
        // LibreChatRole applied with it), or its name freed by another namespace, wakes it. A
        // freed role wakes every user declaring it: one settled in it checks it again (its
        // team may no longer hold it: replaced in LibreChat under the name).
        .reconcile_on(ctx.names_changed.wakes(
            move |change: &NameChange| select(&by_role, |u| concerned_by_role(u, change)),
            // A change missed: every user it could have concerned.
            move || {
                select(&every_refused_user, |u| {
                    declares_custom_role(u) || refused_for_role(u)
                })
            },
        ))
        .reconcile_on(secret_changes.wakes(
            move |secret: &SecretMeta| {
                let namespace = secret.namespace().unwrap_or_default();
                let keys = [
                    UserKey::Secret {
                        namespace: namespace.clone(),
                        name: secret.name_any(),
                    },
                    UserKey::PluginsOfInstancesIn(namespace),
                ];
                let following = by_secret.lookup(&keys).into_iter();
                following
                    .filter(|r| {
                        let user = users_reading_secrets.get(r);
                        !user.is_some_and(|u| user_watch::has_read(&u, &secret.metadata))
                    })
                    .collect()
            },
            move || all_of(&every_user),
        ))
        .watches_instances(&ctx, by_instance)
        .shutdown_on_signal()
        .run(
            move |o, c| {
                list_gate.started(&o);
                observed(o, c, user::reconcile)
            },
            error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome("LibreChatUser"));

    // Woken by what a ban's reconcile acts on, not by status writes (a tenant patching a ban's
    // status in a loop would otherwise keep the workers busy).
    let (ban_trigger, ban_store) =
        declared::watch(api_for::<UserBan>(&client, namespace.as_deref()));
    let bans = Controller::for_stream(ban_trigger, ban_store)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency));
    let bans_by_user = bans.store();
    let synced_bans = bans.store();
    let bans_by_instance = bans.store();
    let every_ban = bans.store();
    let bans = bans
        .reconcile_on(user_changes.wakes(
            move |user: &LibreChatUser| {
                let email = normalize_email(&user.spec.email);
                select(&bans_by_user, |b: &UserBan| {
                    b.namespace() == user.namespace()
                        && b.spec
                            .user_ref
                            .as_ref()
                            .is_some_and(|r| r.name == user.name_any())
                        || b.spec.email.as_deref().map(normalize_email).as_deref()
                            == Some(email.as_str())
                })
            },
            move || all_of(&every_ban),
        ))
        .watches_instances(&ctx, bans_by_instance)
        .shutdown_on_signal()
        .run(
            |o, c| observed(o, c, ban::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome("UserBan"));

    let (invite_trigger, invite_store) = gone_watch::watch(
        api_for::<UserInvite>(&client, namespace.as_deref()),
        frees_email(&ctx, |i: &UserInvite| &i.spec.email),
    );
    let invites = Controller::for_stream(invite_trigger, invite_store)
        .with_config(ControllerConfig::default().concurrency(settings.concurrency));
    let invites_by_instance = invites.store();
    let synced_invites = invites.store();
    let invites_by_email = invites.store();
    let (refused_invites, every_invite) = (invites.store(), invites.store());
    ctx.caches.add_scope(cached_users, invites.store());
    let registered = ctx.feeds.subscribe().flat_map(move |change| {
        futures::stream::iter(woken_by(&invites_by_email, &change, invite_concerned))
    });
    let invites = invites
        // A registration through the link, seen through the instances' change streams.
        .reconcile_on(registered)
        // A tenant's invitation refused over another namespace's declaration of its email
        // waits for no timer: the declaration going wakes it.
        .reconcile_on(ctx.emails_freed.wakes(
            move |freed: &FreedEmail| refused_over(&refused_invites, freed),
            // Deletions missed (a burst beyond the channel): every refused invitation, not all.
            move || select(&every_invite, not_permitted),
        ))
        .watches_instances(&ctx, invites_by_instance)
        .shutdown_on_signal()
        .run(
            |o, c| observed(o, c, invite::reconcile),
            error_policy,
            ctx.clone(),
        )
        .for_each(log_outcome("UserInvite"));

    let (groups, synced_groups) =
        group_controller(&client, namespace.as_deref(), &user_changes, ctx.clone());
    let (roles, synced_roles) = role_controller(&client, namespace.as_deref(), ctx.clone());

    tracing::info!(
        namespace = namespace.as_deref().unwrap_or("<all>"),
        "controllers started"
    );
    // A deleted instance's pooled clients and change feed are dropped by its cleanup, and by
    // this sweep for one that went without it (its finalizer removed by hand).
    let sweep_store = synced_instances.clone();
    let sweep_ctx = ctx.clone();
    let sweep_scope = namespace.clone();
    let sweep = async move {
        loop {
            tokio::time::sleep(Duration::from_secs(60)).await;
            let live: std::collections::HashSet<String> = sweep_store
                .state()
                .iter()
                .map(|i| format!("{}/{}", i.namespace().unwrap_or_default(), i.name_any()))
                .collect();
            let in_scope = |key: &str| {
                sweep_scope
                    .as_deref()
                    .is_none_or(|ns| key.starts_with(&format!("{ns}/")))
            };
            let kept = |key: &str| live.contains(key) || !in_scope(key);
            sweep_ctx.connections.retain(kept).await;
            sweep_ctx.feeds.retain(kept);
        }
    };
    let synced = async {
        let all = futures::join!(
            synced_instances.wait_until_ready(),
            synced_users.wait_until_ready(),
            synced_bans.wait_until_ready(),
            synced_invites.wait_until_ready(),
            synced_groups.wait_until_ready(),
            synced_roles.wait_until_ready(),
            shared_instances.wait_until_ready()
        );
        let access = all.4.is_ok() && all.5.is_ok() && all.6.is_ok();
        if all.0.is_ok() && all.1.is_ok() && all.2.is_ok() && all.3.is_ok() && access {
            ctx.scope_synced();
        }
    };
    tokio::select! {
        _ = async { futures::join!(instances, users, bans, invites, groups, roles, synced) } => {}
        _ = sweep => {}
        _ = instance_watch => {}
        _ = secret_watch => {}
    }
}

/// The LibreChatGroup controller: woken by its instance, by the LibreChatUsers it names, and
/// by accounts appearing for the emails it names (through the instances' change streams).
fn group_controller(
    client: &Client,
    namespace: Option<&str>,
    user_changes: &Fanout<LibreChatUser>,
    ctx: Arc<Context>,
) -> (impl std::future::Future<Output = ()>, Store<LibreChatGroup>) {
    let config = ControllerConfig::default().concurrency(ctx.settings.concurrency);
    let (trigger, store) = declared::watch(api_for::<LibreChatGroup>(client, namespace));
    let groups = Controller::for_stream(trigger, store).with_config(config);
    let synced = groups.store();
    let by_instance = groups.store();
    let by_user = groups.store();
    let by_email = groups.store();
    let every_group = groups.store();
    let by_name = groups.store();
    let appeared = ctx.feeds.subscribe().flat_map(move |change| {
        futures::stream::iter(woken_by(&by_email, &change, group_concerned))
    });
    let every_group_named = groups.store();
    let freed = ctx.names_changed.wakes(
        move |change: &NameChange| {
            select(&by_name, |g: &LibreChatGroup| {
                change.is_freed() && change.concerns(g, &group_key(&g.spec.name))
            })
        },
        move || all_of(&every_group_named),
    );
    let run = groups
        .reconcile_on(appeared)
        .reconcile_on(freed)
        .reconcile_on(user_changes.wakes(
            move |user: &LibreChatUser| {
                select(&by_user, |g: &LibreChatGroup| {
                    g.namespace() == user.namespace()
                        && g.spec.members.iter().any(|m| {
                            m.user_ref
                                .as_ref()
                                .is_some_and(|r| r.name == user.name_any())
                        })
                })
            },
            move || all_of(&every_group),
        ))
        .watches_instances(&ctx, by_instance)
        .shutdown_on_signal()
        .run(|o, c| observed(o, c, group::reconcile), error_policy, ctx)
        .for_each(log_outcome("LibreChatGroup"));
    (run, synced)
}

/// A group that names the email an account now has.
fn group_concerned(g: &LibreChatGroup, _id: &str, email: Option<&str>) -> bool {
    email.is_some_and(|email| {
        g.spec
            .members
            .iter()
            .any(|m| m.email.as_deref().map(normalize_email).as_deref() == Some(email))
    })
}

/// The LibreChatRole controller, woken by its instance (tenancy and librechat.yaml keys live
/// there).
fn role_controller(
    client: &Client,
    namespace: Option<&str>,
    ctx: Arc<Context>,
) -> (impl std::future::Future<Output = ()>, Store<LibreChatRole>) {
    let config = ControllerConfig::default().concurrency(ctx.settings.concurrency);
    let (trigger, store) = declared::watch(api_for::<LibreChatRole>(client, namespace));
    let roles = Controller::for_stream(trigger, store).with_config(config);
    let synced = roles.store();
    let by_instance = roles.store();
    let by_name = roles.store();
    let every_role = roles.store();
    let run = roles
        .reconcile_on(ctx.names_changed.wakes(
            move |change: &NameChange| {
                select(&by_name, |r: &LibreChatRole| {
                    change.is_freed() && change.concerns(r, &role_key(&r.spec.name))
                })
            },
            move || all_of(&every_role),
        ))
        .watches_instances(&ctx, by_instance)
        .shutdown_on_signal()
        .run(|o, c| observed(o, c, role::reconcile), error_policy, ctx)
        .for_each(log_outcome("LibreChatRole"));
    (run, synced)
}

/// Wakes the objects of a controller that point at an instance whenever what they read of it
/// changes, whichever scope watches the instance.
trait WatchesInstances<K: Resource<DynamicType = ()> + Clone + 'static> {
    fn watches_instances(self, ctx: &Context, objects: Store<K>) -> Self;
}

impl<K> WatchesInstances<K> for Controller<K>
where
    K: Resource<DynamicType = ()>
        + AppliedToInstance
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    fn watches_instances(self, ctx: &Context, objects: Store<K>) -> Self {
        let everything = objects.clone();
        self.reconcile_on(ctx.instances.changes.wakes(
            move |instance: &LibreChatInstance| {
                select(&objects, |o: &K| {
                    target::points_at(o.instance_ref(), o, instance)
                })
            },
            move || all_of(&everything),
        ))
    }
}

/// The instance `obj` points at, when `obj` is going away (its instance may be waiting for it).
fn going_instance<K: Resource>(
    obj: &K,
    reference: &crate::api::common::InstanceRef,
) -> Option<ObjectRef<LibreChatInstance>> {
    obj.meta().deletion_timestamp.as_ref()?;
    let own_ns = obj.meta().namespace.clone().unwrap_or_default();
    Some(ObjectRef::new(&reference.name).within(&target::instance_namespace(reference, &own_ns)))
}

/// References to every object in `store`.
fn all_of<K>(store: &Store<K>) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    select(store, |_| true)
}

/// References to the objects in `store` that satisfy `wanted`.
fn select<K>(store: &Store<K>, wanted: impl Fn(&K) -> bool) -> Vec<ObjectRef<K>>
where
    K: Resource<DynamicType = ()> + Clone + 'static,
{
    store
        .state()
        .into_iter()
        .filter(|o| wanted(o))
        .map(|o| ObjectRef::from_obj(&*o))
        .collect()
}

fn instance_uses_secret(instance: &LibreChatInstance, secret: &str) -> bool {
    let credentials = instance.spec.credentials.as_ref();
    credentials.is_some_and(|c| c.secret_ref.name == secret)
        || instance.spec.mongo.uri_secret_ref.name == secret
        || instance
            .spec
            .redis
            .as_ref()
            .and_then(|r| r.uri_secret_ref.as_ref())
            .is_some_and(|r| r.name == secret)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;
    use mongodb::bson::oid::ObjectId;
    use serde_json::json;

    use super::*;
    use crate::librechat::changes::AccountChange;

    fn invites(objects: &[(&str, &str, serde_json::Value)]) -> Store<UserInvite> {
        let mut writer = Writer::<UserInvite>::default();
        for (namespace, name, instance_ref) in objects {
            let invite: UserInvite = serde_json::from_value(json!({
                "apiVersion": "librechat.ai/v1alpha1", "kind": "UserInvite",
                "metadata": { "name": name, "namespace": namespace },
                "spec": { "instanceRef": instance_ref, "email": "Shared@Example.com" },
            }))
            .unwrap();
            writer.apply_watcher_event(&Event::Apply(invite));
        }
        writer.as_reader()
    }

    fn registered_in(instance: &str) -> InstanceChange {
        InstanceChange {
            instance: Arc::from(instance),
            account: AccountChange {
                user_id: ObjectId::new(),
                email: Some("shared@example.com".into()),
            },
        }
    }

    fn names(refs: Vec<ObjectRef<UserInvite>>) -> Vec<String> {
        let mut names: Vec<String> = refs.into_iter().map(|r| r.name).collect();
        names.sort();
        names
    }

    /// The attack: a tenant runs an instance of its own (allowed where `instanceNamespaces` is
    /// unset) on a database it controls, and writes accounts there with the emails of other
    /// instances' objects, over and over, to have the operator reconcile them all. A change
    /// wakes only the objects applied to the instance whose feed saw it.
    #[test]
    fn a_tenants_own_database_wakes_only_its_own_instances_objects() {
        let store = invites(&[
            ("admins", "theirs", json!({ "name": "lc" })),
            (
                "tenant",
                "also-theirs",
                json!({ "name": "lc", "namespace": "admins" }),
            ),
            ("tenant", "mine", json!({ "name": "own" })),
            (
                "tenant",
                "mine-spelt-out",
                json!({ "name": "own", "namespace": "tenant" }),
            ),
        ]);
        let from_tenant = woken_by(&store, &registered_in("tenant/own"), invite_concerned);
        assert_eq!(names(from_tenant), ["mine", "mine-spelt-out"]);
        let from_admins = woken_by(&store, &registered_in("admins/lc"), invite_concerned);
        assert_eq!(names(from_admins), ["also-theirs", "theirs"]);
        // Same name, another namespace: another instance.
        assert!(woken_by(&store, &registered_in("other/lc"), invite_concerned).is_empty());
    }
}
