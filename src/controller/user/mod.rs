//! The LibreChatUser reconciler, as its phases: resolve (instance, tenancy, spec, password),
//! a settled shortcut, claim (the ownership record), converge (the account, its follow-ups, its
//! password), report. Cleanup is in [`cleanup`].
//!
//! Every step before the first write only reads, so an invalid object or a missing Secret
//! writes nothing. The account an object writes is always the one its ownership record names,
//! never one its status names: status is writable by anyone who may edit the object.

mod account;
mod actions;
mod ahead;
mod balance;
mod claim;
mod cleanup;
mod plugins;
mod redis_out;
mod role_policy;

use std::sync::Arc;
use std::time::Duration;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;
use mongodb::bson::oid::ObjectId;

use super::audit::Change;
use super::connections::Stores;
use super::context::{name_epoch_key, Context};
use super::error::ReconcileError;
use super::instance::resync_period;
use super::password::{self, ResolvedPassword};
use super::report::report;
use super::status::now_rfc3339;
use super::target;
use super::tenancy::{owner_of, Tenancy};
use crate::api::common::{condition, reason, Cond, FINALIZER};
use crate::api::user::{ActionsStatus, DeletionPolicy, VerificationStatus};
use crate::api::validate::check_email;
use crate::api::{LibreChatInstance, LibreChatUser};
use crate::librechat::access::role_key;
use crate::librechat::ownership::Owner;
use crate::librechat::role_check::RoleCheck;
use crate::librechat::users::DesiredUser;
use crate::librechat::Store;

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
            FinalizerEvent::Cleanup(user) => cleanup::cleanup(&api, &user, &ctx).await,
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
    /// The role the account has in LibreChat.
    role: Option<String>,
    verification: Option<VerificationStatus>,
    actions: Option<ActionsStatus>,
    password_version: Option<String>,
    /// The minimum password length that version was checked against.
    password_min_length: Option<u32>,
    /// The instance it was applied to (`namespace/name`).
    instance: Option<String>,
    /// Whether LibreChat's data was written (stamps `lastSyncTime`).
    wrote: bool,
    /// When to look again; `None`: only when something it watches changes.
    requeue: Option<Duration>,
    /// The account's terms and balance as read; `None`: status keeps what it showed.
    mirror: Option<balance::Mirror>,
    /// The plugin keys installed as declared.
    plugins: Vec<String>,
}

impl Outcome {
    /// Not done, nothing written, waiting on a dependency that may come by itself.
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
            // Shown as it was, never used to find the account.
            user_id: status
                .and_then(|s| s.user_id.as_deref())
                .and_then(|h| ObjectId::parse_str(h).ok()),
            role: status.and_then(|s| s.role.clone()),
            verification: status.and_then(|s| s.verification.clone()),
            actions: status.and_then(|s| s.actions.clone()),
            password_version: status.and_then(|s| s.password_secret_version.clone()),
            password_min_length: status.and_then(|s| s.password_min_length),
            instance: status.and_then(|s| s.instance.clone()),
            wrote: false,
            requeue: Some(RETRY_WAITING),
            mirror: None,
            plugins: status.map(|s| s.plugins.clone()).unwrap_or_default(),
        }
    }

    /// Not done, nothing written, until a person changes something the operator watches (the
    /// object, its Secret, its instance, the other object of a conflict): no polling.
    fn stalled(reason: &str, message: impl Into<String>, user: &LibreChatUser) -> Self {
        Outcome {
            requeue: None,
            ..Outcome::waiting(reason, message, user)
        }
    }

    fn after(mut self, period: Duration) -> Self {
        self.requeue = Some(period);
        self
    }
}

/// Everything the reconcile resolved before touching the store.
struct Plan {
    instance: LibreChatInstance,
    stores: Stores,
    /// Why the instance is not Ready when only its Redis is out: an account may then be
    /// created (nothing of it is cached yet) or found needing no write, and nothing else is done.
    redis_out: Option<target::TargetProblem>,
    tenancy: Tenancy,
    email: String,
    desired: DesiredUser,
    password: Option<ResolvedPassword>,
    /// The password Secret's version when it was not read: the watch shows it at the version
    /// this process verified the account with, or at the version status says was applied
    /// (after a restart). Only an account that already has that version's password goes on
    /// without the value; creating one or applying it elsewhere resolves again, reading it.
    unread_password: Option<String>,
    owner: Owner,
    adopt: bool,
    resync: Duration,
    plugins: plugins::DesiredPlugins,
    /// The declared trigger fields of actions on someone's account (`logoutAt`,
    /// `resetTwoFactorAt`), which need the right to manage the account fully.
    account_actions: Vec<&'static str>,
    /// Whether `spec.balance` declares credit grants or auto-refill settings (writes to the
    /// account's balance, which adopting alone does not allow).
    declares_balance: bool,
    /// How often the declared role's name changed hands, as of the plan (see
    /// [`crate::controller::memory::NameEpochs`]): a change seen while the reconcile runs
    /// voids the mark it makes.
    role_epoch: u64,
}

impl Plan {
    fn store(&self) -> &Store {
        &self.stores.store
    }

    /// The version of the declared password's Secret, read or not.
    fn password_version(&self) -> Option<&str> {
        let read = self.password.as_ref().map(|p| p.version.as_str());
        read.or(self.unread_password.as_deref())
    }

    /// Whether a password is declared (read or not).
    fn declares_password(&self) -> bool {
        self.password_version().is_some()
    }

    /// Whether a password is declared and its value was not read.
    fn password_unread(&self) -> bool {
        self.password.is_none() && self.unread_password.is_some()
    }

    /// The minimum length the declared password is checked against.
    fn min_password_length(&self) -> Option<u32> {
        let min = self.instance.spec.min_password_length();
        self.declares_password().then_some(min)
    }

    /// A change made to this plan's account, for the audit trail.
    fn change(&self, action: &'static str, account: ObjectId, note: String) -> Change {
        let instance = target::instance_key(&self.instance);
        Change::applied(action, instance, Some(account.to_hex()), note)
    }
}

async fn apply(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    crate::controller::report::begin(api, user).await?;
    let (outcome, error) = match sync(user, ctx).await {
        Ok(o) => (o, None),
        Err(ReconcileError::Store(e)) => {
            let said = target::store_error_on(user, &e);
            let o = Outcome::waiting(reason::STORE_ERROR, said, user);
            (o, Some(ReconcileError::Store(e)))
        }
        Err(other) => return Err(other),
    };
    if outcome.ready.ok != Some(true) {
        ctx.settled.forget(&uid_of(user));
    }
    let requeue = outcome.requeue;
    publish_status(api, user, ctx, outcome).await?;
    crate::controller::report::next_action(error, requeue)
}

async fn publish_status(
    api: &Api<LibreChatUser>,
    user: &LibreChatUser,
    ctx: &Context,
    outcome: Outcome,
) -> Result<(), ReconcileError> {
    let mut status = user.status.clone().unwrap_or_default();
    status.user_id = outcome.user_id.map(|id| id.to_hex());
    status.role = outcome.role;
    status.verification = outcome.verification;
    status.actions = outcome.actions;
    status.password_secret_version = outcome.password_version;
    status.password_min_length = outcome.password_min_length;
    status.instance = outcome.instance;
    if let Some(mirror) = outcome.mirror {
        mirror.write_into(&mut status);
    }
    status.plugins = outcome.plugins;
    if outcome.wrote || status.last_sync_time.is_none() && outcome.ready.ok == Some(true) {
        status.last_sync_time = Some(now_rfc3339());
    }
    report(api, ctx, user, status, &[outcome.ready, outcome.password]).await?;
    Ok(())
}

fn uid_of(user: &LibreChatUser) -> String {
    user.uid().unwrap_or_default()
}

async fn sync(user: &LibreChatUser, ctx: &Context) -> Result<Outcome, ReconcileError> {
    let plan = match resolve(user, ctx, Reading::UnlessUnchanged).await? {
        Ok(plan) => plan,
        Err(outcome) => {
            ahead::hash_while_waiting(user, ctx, &outcome.ready.reason).await;
            return Ok(outcome);
        }
    };
    if let Some(outcome) = balance::refusal(&plan, user) {
        // A balance it may no longer declare here: its auto-refill goes too (also when the
        // refusal names another cause first, such as the instance's balance turned off).
        let revoked =
            outcome.ready.reason == reason::NOT_PERMITTED || !plan.tenancy.may_grant_credits;
        settle_refused(ctx, user, &plan.instance, plan.store(), revoked).await?;
        return Ok(outcome);
    }
    if let Some(outcome) = settled(&plan, user, ctx).await? {
        return Ok(outcome);
    }
    // Past the settled check, an unread version must be one status records as applied: one
    // only this process verified (status not caught up, or a raised minimum) is read.
    let applied = |v: &String| applied_before(user, v, plan.instance.spec.min_password_length());
    if plan.unread_password.as_ref().is_some_and(|v| !applied(v)) {
        return sync_reading_password(user, ctx).await;
    }
    match claim_and_converge(ctx, &plan, user).await? {
        Converged::Done(outcome) => Ok(*outcome),
        Converged::NeedsPassword => sync_reading_password(user, ctx).await,
    }
}

/// The full path with the password Secret read.
async fn sync_reading_password(
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Outcome, ReconcileError> {
    let plan = match resolve(user, ctx, Reading::Always).await? {
        Ok(plan) => plan,
        Err(outcome) => return Ok(outcome),
    };
    match claim_and_converge(ctx, &plan, user).await? {
        Converged::Done(outcome) => Ok(*outcome),
        // A plan with the password read never needs it read.
        Converged::NeedsPassword => Ok(Outcome::waiting(
            reason::SECRET_NOT_FOUND,
            "the password Secret could not be read; retrying",
            user,
        )),
    }
}

async fn claim_and_converge(
    ctx: &Context,
    plan: &Plan,
    user: &LibreChatUser,
) -> Result<Converged, ReconcileError> {
    let role_check = match role_refusal(ctx, plan, user).await? {
        Ok(check) => check,
        Err(outcome) => return Ok(Converged::Done(Box::new(outcome))),
    };
    let claim = match claim::take_ownership(ctx, plan, user).await? {
        Ok(claim) => claim,
        Err(outcome) => return Ok(Converged::Done(Box::new(outcome))),
    };
    // Admitted (it resolved its instance): what its deletion will do is as declared now.
    let delete_declared = user.spec.deletion_policy() == DeletionPolicy::Delete;
    plan.store()
        .record_delete_declared(&claim, delete_declared)
        .await?;
    let converged = account::converge(ctx, plan, claim, user, role_check).await?;
    if let Converged::Done(outcome) = &converged {
        if let (Some(id), true) = (outcome.user_id, outcome.ready.ok == Some(true)) {
            ctx.settled
                .remember(&uid_of(user), settled_fingerprint(user, plan, id));
        }
    }
    Ok(converged)
}

/// Where converging an account ended.
enum Converged {
    Done(Box<Outcome>),
    /// The password's value is needed (to create the account, or for an account it was not
    /// applied to) and the plan did not read it; nothing was written to the account.
    NeedsPassword,
}

/// Whether `resolve` reads the password Secret.
#[derive(Clone, Copy, PartialEq)]
enum Reading {
    Always,
    /// Not when the watch shows it unchanged since this process verified the account.
    UnlessUnchanged,
}

/// What the object's namespace may not declare on this instance: an ADMIN account, an email
/// outside its domains (the role is [`role_refusal`]'s).
fn tenancy_refusal(user: &LibreChatUser, tenancy: &Tenancy, email: &str) -> Option<Outcome> {
    if user.spec.role() == "ADMIN" && !tenancy.may_hold_admin {
        let message = format!(
            "role ADMIN is not allowed from namespace '{}': {} unless the instance sets allowAdmin",
            tenancy.namespace,
            tenancy.who_may("declare ADMIN accounts")
        );
        return Some(Outcome::stalled(reason::ADMIN_NOT_ALLOWED, message, user));
    }
    if let Some(why) = tenancy.email_refusal(email) {
        return Some(Outcome::stalled(reason::NOT_PERMITTED, why, user));
    }
    None
}

/// Why the object may not put its account in the role it declares, checked before anything
/// is written (not on the settled path, which writes nothing: a role an account is in is in
/// use, and no other namespace can claim it meanwhile). What its claim still owes the account
/// is finished all the same, the check of a role write cut short included.
///
/// `Ok` holds the check a write of the declared role owes, if it owes one.
async fn role_refusal(
    ctx: &Context,
    plan: &Plan,
    user: &LibreChatUser,
) -> Result<Result<Option<RoleCheck>, Outcome>, ReconcileError> {
    let Some(role) = user.spec.role.as_deref() else {
        return Ok(Ok(None));
    };
    let (refused, check) = role_policy::refusal(plan.store(), &plan.tenancy, role).await?;
    let Some(why) = refused else {
        return Ok(Ok(check));
    };
    let revoked = !plan.tenancy.may_grant_credits;
    let moved = settle_refused(ctx, user, &plan.instance, plan.store(), revoked).await?;
    // Waiting, not stalled: a LibreChatRole applied with this object may not have claimed its
    // name yet.
    let message = match moved {
        true => format!(
            "{why}; the account was moved to USER, as the role's deletion moves its accounts"
        ),
        false => format!("{why}; nothing was written"),
    };
    Ok(Err(Outcome::waiting(reason::NOT_PERMITTED, message, user)))
}

/// Dereference and validate: reads only, but for what the object's claim still owes its
/// account (see [`Store::finish_owed_by`]), which a refusal does not hold up. `Err` is the
/// outcome to report.
async fn resolve(
    user: &LibreChatUser,
    ctx: &Context,
    reading: Reading,
) -> Result<Result<Plan, Outcome>, ReconcileError> {
    let namespace = user.namespace().unwrap_or_default();
    let (target, redis_out) = match target::resolve_mongo_first(
        ctx,
        &user.spec.instance_ref,
        &user.metadata,
    )
    .await?
    {
        Ok(found) => (found.target, found.redis_out),
        Err(p) => {
            let reference = &user.spec.instance_ref;
            if let Some(t) = target::promises_kept_on(ctx, &p, reference, &namespace).await {
                // No longer admitted at all: nor is its auto-refill.
                let settled = settle_refused(ctx, user, &t.instance, &t.stores.store, true);
                if let Err(e) = settled.await {
                    // The refusal is reported; the next look finishes this.
                    tracing::warn!(error = %e, "could not yet finish what a refused object owes its account");
                }
            }
            return Ok(Err(Outcome::waiting(p.reason, p.message, user)));
        }
    };
    let store = target.stores.store.clone();
    let instance = target.instance.clone();
    let planned = plan_on(user, ctx, reading, target, redis_out).await?;
    if planned.is_err() {
        // Refused for something else: an auto-refill it may no longer declare goes anyway,
        // or a team could keep a revoked right by keeping its object refused.
        let revoked = !Tenancy::of(&instance, &namespace).may_grant_credits;
        settle_refused(ctx, user, &instance, &store, revoked).await?;
    }
    Ok(planned)
}

/// Finishes what a refused object's claim owes its account and, when it may no longer declare
/// auto-refill (`revoked`), puts back the settings it wrote. Returns whether the account moved out of a role whose deletion raced its write (see
/// `librechat::role_check`).
async fn settle_refused(
    ctx: &Context,
    user: &LibreChatUser,
    instance: &LibreChatInstance,
    store: &Store,
    revoked: bool,
) -> Result<bool, ReconcileError> {
    let settled = store.settle_refused(&uid_of(user), revoked).await?;
    if let Some(id) = settled.refill_withdrawn_from {
        let email = &user.spec.email;
        ctx.changed(user, balance::refill_withdrawn(instance, id, email))
            .await;
    }
    Ok(settled.left_role)
}

/// The plan for `user` on its resolved instance, or why there is none.
async fn plan_on(
    user: &LibreChatUser,
    ctx: &Context,
    reading: Reading,
    target: target::Target,
    redis_out: Option<target::TargetProblem>,
) -> Result<Result<Plan, Outcome>, ReconcileError> {
    let spec = &user.spec;
    let status_instance = user.status.as_ref().and_then(|s| s.instance.as_deref());
    let store = &target.stores.store;
    let holds_here = || async {
        Ok::<_, ReconcileError>(store.find_claim_of_owner(&uid_of(user)).await?.is_some())
    };
    let elsewhere = target::applied_elsewhere(status_instance, &target.instance, holds_here);
    if let Some(applied) = elsewhere.await? {
        return Ok(Err(Outcome::stalled(reason::INVALID_SPEC, applied, user)));
    }
    let instance = target.instance;
    let tenancy = Tenancy::of(&instance, &user.namespace().unwrap_or_default());
    let email = match validate(user, &instance, &tenancy) {
        Ok(email) => email,
        Err(refused) => return Ok(Err(*refused)),
    };
    let (password, unread_password) =
        match read_password(user, ctx, reading, &email, &instance).await {
            Ok(read) => read,
            Err(refused) => return Ok(Err(refused)),
        };
    let plugins = match plugins::resolve(&ctx.client, user, &instance).await {
        Ok(p) => p,
        Err(p) => {
            let message = format!("{}; nothing was written", p.message);
            let outcome = match p.instance {
                true => Outcome::waiting(p.reason, message, user),
                false => Outcome::stalled(p.reason, message, user),
            };
            return Ok(Err(outcome));
        }
    };
    let desired = DesiredUser {
        email: email.clone(),
        name: spec.name.clone(),
        username: spec.username.clone(),
        role: spec.role.clone(),
        provider: spec.provider.map(|p| p.as_str().to_string()),
        email_verified: spec.email_verified,
        // LibreChat's expiry of an unverified registration is on accounts someone else made
        // (the operator writes none): it stays, whatever is written, unless the namespace
        // manages adopted accounts (or administers the instance). Decided by the namespace,
        // never by `adopt`, which a tenant may drop once it holds the account.
        keeps_account: tenancy.administers || tenancy.may_manage_adopted,
    };
    let role_epoch = spec.role.as_deref().map_or(0, |role| {
        let key = name_epoch_key(&target::instance_key(&instance), &role_key(role));
        ctx.name_epochs.of(&key)
    });
    Ok(Ok(Plan {
        role_epoch,
        resync: resync_period(&instance, ctx.settings.default_resync),
        instance,
        stores: target.stores,
        redis_out,
        tenancy,
        email,
        desired,
        password,
        unread_password,
        owner: owner_of(user),
        adopt: spec.adopt.unwrap_or(false),
        plugins,
        account_actions: actions::declared_account_actions(spec),
        declares_balance: balance::declared(user).is_some(),
    }))
}

/// The spec's own problems and the namespace's policy on it; the normalized email when it
/// may go on.
fn validate(
    user: &LibreChatUser,
    instance: &LibreChatInstance,
    tenancy: &Tenancy,
) -> Result<String, Box<Outcome>> {
    let problems = user.spec.problems(instance.spec.min_password_length());
    if !problems.is_empty() {
        let message = format!("{}; nothing was written", problems.join("; "));
        return Err(Box::new(Outcome::stalled(
            reason::INVALID_SPEC,
            message,
            user,
        )));
    }
    let email = check_email(&user.spec.email).unwrap_or_default();
    if let Some(refused) = tenancy_refusal(user, tenancy, &email) {
        return Err(Box::new(refused));
    }
    Ok(email)
}

/// The declared password: read from its Secret, or (reading `UnlessUnchanged`) only its
/// version, when status shows that version applied.
async fn read_password(
    user: &LibreChatUser,
    ctx: &Context,
    reading: Reading,
    email: &str,
    instance: &LibreChatInstance,
) -> Result<(Option<ResolvedPassword>, Option<String>), Outcome> {
    let min_length = instance.spec.min_password_length();
    let domain = instance.spec.domain_client.as_deref();
    let unread_password = match reading {
        Reading::UnlessUnchanged => unchanged_password(user, ctx, min_length).await,
        Reading::Always => None,
    };
    let read = match unread_password {
        Some(_) => Ok(None),
        None => password::resolve(&ctx.client, user, email, min_length, domain).await,
    };
    match read {
        Ok(password) => Ok((password, unread_password)),
        Err(p) => {
            let message = format!("password: {}; nothing was written", p.message);
            let mut o = Outcome::stalled(p.reason, message, user);
            o.password = Cond::new(condition::PASSWORD_READY, false, p.reason, p.message);
            Err(o)
        }
    }
}

/// What a settled object was verified for: a change of generation, password version,
/// instance or database connection (the instance's MongoDB URI) makes the next reconcile
/// verify the ownership record again.
/// The minimum password length is part of it: a password verified against a shorter
/// minimum is checked again.
fn settled_fingerprint(user: &LibreChatUser, plan: &Plan, id: ObjectId) -> String {
    // The instance's spec: a change of its tenant policy (a right revoked) is checked on the
    // full path, not passed over as settled; so is the declared role's changing hands.
    format!(
        "{}/{}/{}/{}/{}/{}/{}/{}",
        plan.role_epoch,
        user.metadata.generation.unwrap_or_default(),
        plan.password_version().unwrap_or("-"),
        plan.instance.spec.min_password_length(),
        plan.instance.uid().unwrap_or_default(),
        instance_digest(&plan.instance),
        plan.stores.database_epoch,
        id.to_hex()
    )
}

/// A digest of the instance's spec, its `resyncPeriod` and `deletionGuard` left out: they
/// change how often accounts are compared and how fast they may be deleted (read at each
/// deletion), never what an account may be, so tuning them (a bulk deletion's
/// `confirmedUntil`, say) does not send every account of the instance down the full path.
fn instance_digest(instance: &LibreChatInstance) -> String {
    use sha2::{Digest, Sha256};
    let mut spec = instance.spec.clone();
    spec.resync_period = None;
    spec.deletion_guard = None;
    match serde_json::to_vec(&spec) {
        Ok(bytes) => hex::encode(&Sha256::digest(&bytes)[..12]),
        // Never the same twice, so never settled: a digest that cannot be taken must not
        // make every spec read alike.
        Err(_) => format!("unhashable-{}", rand::random::<u64>()),
    }
}

/// The password Secret's version as the watch has it, when this process has verified the
/// account before or status says this version was applied: a version already applied needs
/// no value (not for the settled check, nor after a restart); any other version is read.
async fn unchanged_password(
    user: &LibreChatUser,
    ctx: &Context,
    min_length: u32,
) -> Option<String> {
    let source = user.spec.password.as_ref()?;
    let by_ref = source.secret_ref.as_ref();
    let name = by_ref
        .map(|r| r.name.as_str())
        .or(source.generate.as_ref().map(|g| g.secret_name.as_str()))?;
    let secret_version = ctx
        .secrets
        .version_of(&user.namespace().unwrap_or_default(), name)
        .await?;
    let watched = match by_ref {
        Some(reference) => super::password::version_of_key(secret_version, &reference.key),
        None => secret_version,
    };
    let verified = ctx.settled.verified_account(&uid_of(user)).is_some();
    (verified || applied_before(user, &watched, min_length)).then_some(watched)
}

/// Whether status says this version of the password was applied, checked against a minimum
/// length no lower than today's. Status is writable by whoever may edit the object, so this
/// only ever spares reading the Secret for the account status and the ownership record both
/// name (see `account::converge`): a forged status can at most keep that account's current
/// password, which its owner set through this very object.
fn applied_before(user: &LibreChatUser, version: &str, min_length: u32) -> bool {
    let Some(status) = user.status.as_ref() else {
        return false;
    };
    let spec_unchanged = status.observed_generation == user.metadata.generation;
    let recorded = status.password_secret_version.as_deref();
    recorded.is_some_and(|r| super::password::names_version(r, version, spec_unchanged))
        && status.password_min_length.is_some_and(|m| m >= min_length)
}

/// A resync of an object this process verified for exactly this declaration: one read of the
/// account, nothing written when it still matches. Anything else takes the full path, which
/// reads the ownership record before any write.
async fn settled(
    plan: &Plan,
    user: &LibreChatUser,
    ctx: &Context,
) -> Result<Option<Outcome>, ReconcileError> {
    let uid = uid_of(user);
    // Plugin credentials are compared on every resync, on the full path.
    if plan.plugins.declares_any() {
        return Ok(None);
    }
    let Some(id) = ctx.settled.verified_account(&uid) else {
        return Ok(None);
    };
    let Ok(id) = ObjectId::parse_str(&id) else {
        return Ok(None);
    };
    if !ctx
        .settled
        .matches(&uid, &settled_fingerprint(user, plan, id))
    {
        return Ok(None);
    }
    let stored = plan.store().find_user_by_id(id).await?;
    // An account LibreChat made ADMIN (or moved to a custom role) since is out of a tenant's
    // hands: the full path says so.
    let unchanged = stored.filter(|stored| account::matches_declaration(plan, stored));
    let Some(stored) = unchanged else {
        return Ok(None);
    };
    // A role other than the declared one (none declared: LibreChat's to decide; or moved
    // there by LibreChat since) is checked; the declared one was when the mark was made (a
    // write goes down the full path, which checks it again), so a settled resync of an
    // account in its team's own role reads nothing more.
    let declared_role = stored.role.as_deref() == plan.desired.role.as_deref();
    if !declared_role && account::held_role_refusal(plan, &stored).await?.is_some() {
        return Ok(None);
    }
    let Some(balance) = balance::settled_balance(plan, user, id).await? else {
        return Ok(None);
    };
    Ok(Some(account::in_sync_with(plan, user, &stored, balance)))
}
pub(super) fn no_password_message(user: &LibreChatUser) -> String {
    if user.spec.provider() == crate::api::user::Provider::Local {
        "no password declared: the account can log in only after a password reset".into()
    } else {
        format!(
            "{} accounts log in through their identity provider",
            user.spec.provider().as_str()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(spec: serde_json::Value) -> LibreChatInstance {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "librechat.ai/v1alpha1", "kind": "LibreChatInstance",
            "metadata": { "name": "lc", "namespace": "chat" }, "spec": spec,
        }))
        .unwrap()
    }

    /// A settled account is verified again when the instance's policy changes, not when only
    /// its resync period or its deletion guard does.
    #[test]
    fn the_settled_mark_outlives_a_new_resync_period_or_guard_but_not_a_new_policy() {
        let mongo = serde_json::json!({ "uriSecretRef": { "name": "s", "key": "mongo" } });
        let base = instance(serde_json::json!({ "mongo": mongo, "resyncPeriod": "5m" }));
        let retuned = instance(serde_json::json!({
            "mongo": mongo, "resyncPeriod": "1h",
            "deletionGuard": { "confirmedUntil": "2026-12-02T18:00:00Z" },
        }));
        let narrowed = instance(serde_json::json!({
            "mongo": mongo, "resyncPeriod": "5m", "allowedNamespaces": ["team-a"],
        }));
        assert_eq!(instance_digest(&base), instance_digest(&retuned));
        assert_ne!(instance_digest(&base), instance_digest(&narrowed));
    }
}
