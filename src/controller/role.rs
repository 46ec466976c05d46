//! The LibreChatRole reconciler, as its phases: resolve the instance, validate the name and
//! permissions, check the namespace may change this role, plan the grants (reads only), claim
//! the role's name, converge the role and its grants, report. Deleting a custom role moves
//! its users to USER, as LibreChat's `deleteRoleByName` does; deleting the declaration of a
//! built-in role leaves its permissions as they are.

use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;

use super::access::{self, PlannedGrant, Verdict};
use super::audit::Change;
use super::context::{Context, NameChange};
use super::error::ReconcileError;
use super::opening::{self, Opening};
use super::report::{deletion_blocked, report};
use super::target::{self, Target};
use super::tenancy::Tenancy;
use crate::api::common::{reason, FINALIZER};
use crate::api::role::LibreChatRoleStatus;
use crate::api::LibreChatRole;
use crate::librechat::access::grants::Principal;
use crate::librechat::access::{role_key, AccessRecord, CacheDrop, Claim, Claimed};
use crate::librechat::ownership::Owner;
use crate::librechat::permissions::{is_built_in, overridden_at_restart};
use crate::librechat::{Store, StoreError};

pub async fn reconcile(
    role: Arc<LibreChatRole>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let api: Api<LibreChatRole> =
        Api::namespaced(ctx.client.clone(), &role.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, role, |event| async {
        match event {
            FinalizerEvent::Apply(r) => apply(&api, &r, &ctx).await,
            FinalizerEvent::Cleanup(r) => match cleanup(&r, &ctx).await {
                Err(ReconcileError::Blocked(why)) => deletion_blocked(&api, &ctx, &r, why).await,
                done => done,
            },
        }
    })
    .await
    .map_err(ReconcileError::from)
}

/// What the reconcile found, for status.
#[derive(Default)]
struct Found {
    users: Option<i64>,
    overridden: Vec<String>,
    grants: Vec<crate::api::access::GrantStatus>,
    instance: Option<String>,
}

async fn apply(
    api: &Api<LibreChatRole>,
    role: &LibreChatRole,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    super::report::begin(api, role).await?;
    let mut found = Found {
        instance: role.status.as_ref().and_then(|s| s.instance.clone()),
        users: role.status.as_ref().and_then(|s| s.users),
        ..Found::default()
    };
    let (verdict, error) = access::verdict_of(role, sync(role, ctx, &mut found).await)?;
    let status = LibreChatRoleStatus {
        users: found.users,
        overridden_at_restart: found.overridden,
        grants: found.grants,
        instance: found.instance,
        ..Default::default()
    };
    report(api, ctx, role, status, &[verdict.ready]).await?;
    super::report::next_action(error, verdict.requeue)
}

fn validate(role: &LibreChatRole) -> Result<(), String> {
    role.spec.check()
}

/// Whether the namespace may change this role: built-in roles only from the instance's own
/// namespace; custom roles from tenants only when the instance admits it.
fn permitted(role: &LibreChatRole, tenancy: &Tenancy) -> Result<(), String> {
    if is_built_in(&role.spec.name) && !tenancy.administers {
        return Err(format!(
            "the built-in role {} is shared by every team: {}",
            role.spec.name,
            tenancy.who_may("change it")
        ));
    }
    if !tenancy.administers && tenancy.lists_assignable(&role.spec.name) {
        // Every team may put its accounts in an assignable role: whoever declared it would
        // set the permissions of other teams' accounts.
        return Err(format!(
            "the role {} is listed in the instance's tenantPolicy.assignableRoles, so every team's accounts may be in it: {}",
            role.spec.name,
            tenancy.who_may("declare it")
        ));
    }
    if !tenancy.may_manage_roles {
        return Err(format!("namespace '{}' may not create or change roles: {} unless the instance sets tenantPolicy.manageRoles", tenancy.namespace, tenancy.who_may("do so")));
    }
    Ok(())
}

async fn sync(
    role: &LibreChatRole,
    ctx: &Context,
    found: &mut Found,
) -> Result<Verdict, ReconcileError> {
    let name = &role.spec.name;
    let opening = Opening {
        object: role,
        instance_ref: &role.spec.instance_ref,
        key: role_key(name),
        invalid: validate(role).err(),
        name_taken,
    };
    let opened = match opening::open(ctx, opening, &mut found.instance).await? {
        Ok(o) => o,
        Err(verdict) => return Ok(verdict),
    };
    let held = opened.held();
    let (store, tenancy) = (held.store, held.tenancy);
    if let Err(why) = permitted(role, tenancy) {
        let message = format!("{why}; nothing was written");
        return Ok(held
            .refuse(Verdict::refused(reason::NOT_PERMITTED, message, None))
            .await?);
    }
    let principal = Principal::Role(name.clone());
    let grants = &role.spec.grants;
    let plan =
        match access::plan_grants(store, grants, tenancy, Some(&principal), held.record).await? {
            Ok(p) => p,
            Err(r) => return Ok(held.refuse(r.verdict(held.resync)).await?),
        };
    let record = match held.record {
        Some(r) => r.clone(),
        None => match claim(store, role, held.key, tenancy).await? {
            Ok(r) => r,
            Err(verdict) => return Ok(verdict),
        },
    };
    let (target, key) = (&opened.target, &opened.key);
    if let Some(verdict) = made_in_librechat(store, role, held.key, &record).await? {
        return Ok(given_up(ctx, target, held.key, verdict));
    }
    let verdict = converge(ctx, role, target, key, &record, &plan.planned, found).await?;
    Ok(access::with_taken_back(verdict, &plan.taken_back))
}

fn name_taken(role: &LibreChatRole, owner: &str) -> Verdict {
    Verdict::refused(
        reason::CONFLICT,
        format!("the LibreChat role '{}' is declared by {owner}: one object per role; nothing was written", role.spec.name),
        None,
    )
}

/// Takes the role's name in the record. A custom role that already exists in LibreChat (made
/// in its admin UI) is never taken over; a built-in role must exist (LibreChat creates it).
async fn claim(
    store: &Store,
    role: &LibreChatRole,
    key: &str,
    tenancy: &Tenancy,
) -> Result<Result<AccessRecord, Verdict>, StoreError> {
    let name = &role.spec.name;
    let exists = store.find_role(name).await?.is_some();
    if is_built_in(name) && !exists {
        return Ok(Err(Verdict::waiting(
            reason::ROLE_NOT_FOUND,
            format!("LibreChat has not created its built-in role {name} yet (it does at its first start); waiting for it"),
        )));
    }
    if !is_built_in(name) && exists {
        return Ok(Err(Verdict::refused(
            reason::ALREADY_EXISTS,
            format!("a LibreChat role named '{name}' already exists and no LibreChatRole created it: the operator does not take over roles made in LibreChat; choose another name"),
            None,
        )));
    }
    if !tenancy.administers && !exists && store.role_name_in_use(name).await? {
        let message = format!("LibreChat already uses the role name '{name}' (accounts, shares, system grants or config overrides name it), and a role a tenant declares under it would take that on: choose another name; nothing was written");
        return Ok(Err(Verdict::refused(reason::ALREADY_EXISTS, message, None)));
    }
    let owner = super::tenancy::owner_of(role);
    let target = mongodb::bson::oid::ObjectId::new();
    Ok(
        match store.claim_access(key, &owner, Claim::Role(target)).await? {
            Claimed::Ours(r) => {
                crate::fault::crash_point("after-role-claim");
                Ok(r)
            }
            Claimed::Taken(other) => Err(name_taken(role, &tenancy.names(&other))),
        },
    )
}

/// A custom role claimed but not yet known created, which LibreChat has under another `_id`
/// than the record chose: made in LibreChat's admin UI meanwhile (after a crash between the
/// claim and the insert, or racing it), so never the operator's to set or delete. The claim is
/// given up, as it would not have been taken had the role been there first.
async fn made_in_librechat(
    store: &Store,
    role: &LibreChatRole,
    key: &str,
    record: &AccessRecord,
) -> Result<Option<Verdict>, StoreError> {
    let (false, Some(chosen)) = (is_built_in(&role.spec.name), pending_role_id(record)) else {
        return Ok(None);
    };
    if held_under_other_id(store, &role.spec.name, chosen).await? != Some(true) {
        return Ok(None);
    }
    // A record reclaimed to create the role again (LibreChat lost it) still holds the grants
    // given under the name, which LibreChat's role of the name would inherit.
    give_up_record(store, &role.spec.name, key, record).await?;
    Ok(Some(Verdict::refused(
        reason::ALREADY_EXISTS,
        format!("a LibreChat role named '{}' was made in LibreChat while this object was creating it: the operator does not take over roles made in LibreChat; choose another name", role.spec.name),
        None,
    )))
}

/// Gives the name up to a role LibreChat has under it that this object did not make: the
/// grants the record gave under the name go (they would reach every account in that role),
/// the drops that promises and any the record still owes are made before the record (which
/// holds the promises) goes.
async fn give_up_record(
    store: &Store,
    name: &str,
    key: &str,
    record: &AccessRecord,
) -> Result<(), StoreError> {
    let uid = &record.owner.uid;
    let principal = Principal::Role(name.to_string());
    access::converge_grants(store, key, uid, &principal, &[], record).await?;
    let owed = access::owed_with_recorded(vec![CacheDrop::PromptAccess], record);
    store.drop_owed_caches(&owed).await?;
    store.release_access(key, uid).await
}

/// The refusal of a role whose claim was given up to a role made in LibreChat under its name:
/// the name is told freed, so the accounts declaring it are checked again (their team no
/// longer holds the role) and objects refused over the name look again.
fn given_up(ctx: &Context, target: &Target, key: &str, refusal: Verdict) -> Verdict {
    ctx.name_changed(NameChange::freed(&target.instance, key));
    refusal
}

/// The record of a custom role this object created, followed by the role's `_id`, not its
/// name: one LibreChat no longer has (renamed or deleted in its admin UI) is claimed again
/// under a new `_id`, to be created again; one LibreChat has under another `_id` was made
/// there since, and is never written, filled or deleted by this object: its grants go (they
/// name the role by its name) and the claim is given up.
async fn still_ours(
    store: &Store,
    role: &LibreChatRole,
    key: &str,
    record: &AccessRecord,
) -> Result<Result<AccessRecord, Verdict>, StoreError> {
    let name = &role.spec.name;
    let (false, true, Some(created_id)) = (is_built_in(name), record.created, record.target) else {
        return Ok(Ok(record.clone()));
    };
    let uid = &record.owner.uid;
    match store.find_role(name).await? {
        Some(stored) if stored.id == Some(created_id) => Ok(Ok(record.clone())),
        Some(_) => {
            give_up_record(store, name, key, record).await?;
            Ok(Err(Verdict::refused(
                reason::ALREADY_EXISTS,
                format!("the LibreChat role '{name}' this object created is gone, and a role of the name was made in LibreChat since: the operator does not take over roles made in LibreChat; its grants were withdrawn. Choose another name"),
                None,
            )))
        }
        None => {
            let fresh = mongodb::bson::oid::ObjectId::new();
            store.reclaim_role(key, uid, fresh).await?;
            let mut reclaimed = record.clone();
            reclaimed.target = Some(fresh);
            reclaimed.created = false;
            Ok(Ok(reclaimed))
        }
    }
}

async fn converge(
    ctx: &Context,
    role: &LibreChatRole,
    target: &Target,
    key: &str,
    record: &AccessRecord,
    planned: &[PlannedGrant],
    found: &mut Found,
) -> Result<Verdict, ReconcileError> {
    let store = &target.stores.store;
    let uid = role.uid().unwrap_or_default();
    let name = &role.spec.name;
    access::settle_due_drops(store, key, &uid, record).await?;
    let record = match still_ours(store, role, key, record).await? {
        Ok(record) => record,
        Err(refused) => return Ok(given_up(ctx, target, key, refused)),
    };
    let record = &record;
    let instance = target::instance_key(&target.instance);
    crate::fault::pause_point("before-role-permissions").await;
    let changed = converge_permissions(store, role, (key, record), &uid).await?;
    if let Some(refused) = made_in_librechat(store, role, key, record).await? {
        return Ok(given_up(ctx, target, key, refused));
    }
    if !record.created {
        // LibreChat has the role now: accounts may be put in it (those waiting are woken).
        store.mark_created(key, &uid).await?;
        ctx.name_changed(NameChange::role_created(&target.instance, key));
    }
    if let Some(what) = changed {
        let note = format!("role {name}: {what}");
        ctx.changed(
            role,
            Change::applied("RoleChanged", instance.clone(), None, note),
        )
        .await;
    }
    let principal = Principal::Role(name.clone());
    if access::converge_grants(store, key, &uid, &principal, planned, record).await? {
        access::drop_promised(store, key, &uid, &[CacheDrop::PromptAccess], false).await?;
        let note = format!("role {name}: grants now {}", planned.len());
        ctx.changed(role, Change::applied("GrantsChanged", instance, None, note))
            .await;
    }
    found.users = Some(store.count_role_users(name).await? as i64);
    found.grants = planned.iter().map(PlannedGrant::status).collect();
    let mut verdict = report_built_in(role, target, found, opening::resync(ctx, target));
    if !target.stores.redis_configured {
        verdict.ready.message.push_str(NO_REDIS);
    }
    Ok(verdict)
}

/// Writes the declared permissions where they differ, promising the `ROLES:<name>` drop
/// first. Returns what changed.
async fn converge_permissions(
    store: &Store,
    role: &LibreChatRole,
    (key, record): (&str, &AccessRecord),
    uid: &str,
) -> Result<Option<&'static str>, StoreError> {
    let name = &role.spec.name;
    let declared = &role.spec.permissions;
    let description = role.spec.description.clone().unwrap_or_default();
    let stored = store.find_role(name).await?;
    let change = match &stored {
        // Created by this object and gone since `still_ours` read it (renamed or deleted in
        // LibreChat just now): created again only under an `_id` the record holds first,
        // which the next try's `still_ours` claims. Created here, it would be a role the
        // record does not name, taken for one made in LibreChat at the next reconcile.
        None if !is_built_in(name) && record.created && record.target.is_some() => {
            return Err(StoreError::Contended(
                "the role this object created went while it was being converged; it is claimed again and created at the next try",
            ))
        }
        None if !is_built_in(name) => "created",
        None => return Ok(None),
        // Made in LibreChat while this object was creating it, or since `still_ours` read
        // the one it created: not written (the next check refuses it).
        Some(s) if !is_built_in(name) && record.target.is_some_and(|t| s.id != Some(t)) => {
            return Ok(None)
        }
        Some(s) if is_built_in(name) => {
            let same = declared.iter().all(|(t, keys)| {
                keys.iter()
                    .all(|(k, v)| s.permissions.get(t).and_then(|m| m.get(k)) == Some(v))
            });
            if same {
                return Ok(None);
            } else {
                "declared permissions set"
            }
        }
        Some(s) => {
            if s.permissions == *declared && s.description.as_deref().unwrap_or("") == description {
                return Ok(None);
            }
            "put back as declared"
        }
    };
    let owed = [CacheDrop::Role(name.clone())];
    store
        .promise_cache_drops(key, uid, &owed, access::due(false))
        .await?;
    match (&stored, is_built_in(name)) {
        (None, _) => {
            // The `_id` the record chose; a record of an earlier version may have none, and gets
            // a new one (bson's default `ObjectId` is a newly generated one).
            let id = pending_role_id(record).unwrap_or_default();
            store.create_role(id, name, &description, declared).await?
        }
        (Some(_), true) => store.set_role_keys(name, declared).await?,
        (Some(s), false) => {
            let role = (name.as_str(), s.id);
            store.correct_role(role, &description, declared).await?
        }
    }
    access::drop_promised(store, key, uid, &owed, false).await?;
    Ok(Some(change))
}

/// Said of a role on an instance without Redis: each LibreChat process caches every role it
/// read, with no expiry (contract-surface §5.3), and nothing can drop that cache.
const NO_REDIS: &str = ". The instance has no Redis: each LibreChat process keeps the roles it read cached until it restarts, so restart LibreChat for a change of this role to take effect";

/// Ready, saying for USER and ADMIN which declared types librechat.yaml re-imposes at
/// LibreChat's next start (or the rule, when the instance does not list its yaml's keys).
fn report_built_in(
    role: &LibreChatRole,
    target: &Target,
    found: &mut Found,
    resync: std::time::Duration,
) -> Verdict {
    let name = &role.spec.name;
    let grants = found.grants.len();
    if !is_built_in(name) {
        return Verdict::ready(
            reason::RECONCILED,
            format!("custom role {name} holds its declared permissions and {grants} grant(s)"),
            resync,
        );
    }
    let Some(keys) = target.instance.spec.yaml_interface_keys() else {
        return Verdict::ready(
            reason::RECONCILED,
            format!("declared permissions of {name} are set; LibreChat re-imposes at every start each permission type whose `interface` key its librechat.yaml sets (and USER's MCP_SERVERS.CREATE unless it sets interface.mcpServers): list those keys in the instance's spec.librechatYaml.interfaceKeys to see which declared types that affects"),
            resync,
        );
    };
    found.overridden = overridden_at_restart(name, &role.spec.permissions, keys);
    if found.overridden.is_empty() {
        Verdict::ready(
            reason::RECONCILED,
            format!("declared permissions of {name} are set; librechat.yaml imposes none of them"),
            resync,
        )
    } else {
        Verdict::ready(
            reason::OVERRIDDEN_AT_RESTART,
            format!("declared permissions of {name} are set, but LibreChat re-imposes {} from librechat.yaml at its next start: remove those types here or the keys from librechat.yaml's interface section", found.overridden.join(", ")),
            resync,
        )
    }
}

/// A custom role this object created goes as `deleteRoleByName` does: its users move to USER
/// (their caches dropped), then the role and its cached copy. Grants this object gave go.
async fn cleanup(role: &LibreChatRole, ctx: &Context) -> Result<Action, ReconcileError> {
    let undoing = ("role", "remove the LibreChat role");
    let recorded = role.status.as_ref().and_then(|s| s.instance.as_deref());
    let reference = (&role.spec.instance_ref, recorded);
    if let Some((target, held)) = opening::records_to_undo(ctx, role, reference, undoing).await? {
        for h in held {
            remove_role(ctx, role, &target, (&h.name, &h.key), &h.record).await?;
        }
    }
    Ok(Action::await_change())
}

/// Removes what one record `key` of the object names: its grants, and a custom role with its
/// users moved to USER; then the record.
async fn remove_role(
    ctx: &Context,
    role: &LibreChatRole,
    target: &Target,
    (name, key): (&str, &str),
    record: &AccessRecord,
) -> Result<(), ReconcileError> {
    let store = &target.stores.store;
    let uid = &record.owner.uid;
    let principal = Principal::Role(name.to_string());
    access::converge_grants(store, key, uid, &principal, &[], record).await?;
    let removal = vec![CacheDrop::PromptAccess, CacheDrop::Role(name.to_string())];
    let mut owed = access::owed_with_recorded(removal, record);
    // A tenant's role the instance has since listed as assignable may hold other teams'
    // accounts: it stays, and its record goes to the instance's namespace, whose own object
    // of the name takes it over.
    let tenancy = Tenancy::of(&target.instance, &role.namespace().unwrap_or_default());
    let left_to_admins = !tenancy.administers && tenancy.lists_assignable(name);
    if !is_built_in(name) && !left_to_admins && ours_to_delete(store, name, record).await? {
        store
            .begin_release(key, uid, &owed, access::due(false))
            .await?;
        let moved = move_accounts_to_user(store, (name, record), (key, uid), &mut owed).await?;
        let (reason, note) = match moved {
            Moved::All(moved) => {
                store.delete_role(name, record.target).await?;
                crate::fault::crash_point("after-role-delete");
                let note = format!("deleted role {name}; {moved} account(s) moved to USER");
                ("RoleDeleted", note)
            }
            Moved::UntilReplaced(moved) => ("RoleLeft", format!("{moved} account(s) moved to USER; the role {name} was then deleted or replaced in LibreChat, and what LibreChat has under the name stays")),
        };
        let instance = target::instance_key(&target.instance);
        ctx.changed(role, Change::applied(reason, instance, None, note))
            .await;
    }
    store.drop_owed_caches(&owed).await?;
    match left_to_admins {
        true => {
            store.settle_cache_drops(key, uid, &owed).await?;
            let administrators = administrators_of(&target.instance);
            store.hand_over_access(key, uid, &administrators).await?;
        }
        false => store.release_access(key, uid).await?,
    }
    ctx.name_changed(NameChange::freed(&target.instance, key));
    Ok(())
}

/// How many of a deleted role's accounts moved to USER, and whether the role was still the
/// record's at the end.
enum Moved {
    All(u64),
    UntilReplaced(u64),
}

/// Rounds of [`move_accounts_to_user`] before the deletion waits for its next try.
const MOVE_ROUNDS: usize = 5;

/// Moves the role's accounts to USER, each one's cache drops promised on the record before it
/// moves: an account LibreChat puts in the role meanwhile is listed (and its caches owed) by
/// the next round, never moved unlisted with a cached copy still naming the deleted role.
/// Each round first checks the role is still the one the record created: the accounts of a
/// role LibreChat's admins made under the name meanwhile are theirs, and stay. Refuses, to be
/// tried again, while accounts keep joining.
async fn move_accounts_to_user(
    store: &Store,
    (name, record): (&str, &AccessRecord),
    (key, uid): (&str, &str),
    owed: &mut Vec<CacheDrop>,
) -> Result<Moved, StoreError> {
    let mut moved = 0;
    for _ in 0..MOVE_ROUNDS {
        if !ours_to_delete(store, name, record).await? {
            return Ok(Moved::UntilReplaced(moved));
        }
        let users = store.role_users(name).await?;
        if users.is_empty() {
            return Ok(Moved::All(moved));
        }
        owed.extend(
            users
                .iter()
                .map(|(id, source)| CacheDrop::User(id.to_hex(), source.clone())),
        );
        store
            .promise_cache_drops(key, uid, owed, access::due(false))
            .await?;
        crate::fault::pause_point("before-role-accounts-move").await;
        moved += store.move_to_user(name, &users).await?;
    }
    Err(StoreError::Contended(
        "accounts kept being put in the role while its deletion moved them to USER",
    ))
}

/// Whether the custom role `name` is the one this record created: stored under the `_id`
/// the record holds (created, or about to be after a crash). A role of the name made in
/// LibreChat meanwhile stays, with its accounts in it.
async fn ours_to_delete(
    store: &Store,
    name: &str,
    record: &AccessRecord,
) -> Result<bool, StoreError> {
    // Records of earlier versions chose no `_id`: the role of the name is theirs.
    let Some(chosen) = record.target else {
        return Ok(true);
    };
    Ok(held_under_other_id(store, name, chosen).await? == Some(false))
}

/// The `_id` a claimed custom role is to have, while it is not known created (`None` once it
/// is, and for records of earlier versions, which chose none).
fn pending_role_id(record: &AccessRecord) -> Option<mongodb::bson::oid::ObjectId> {
    record.target.filter(|_| !record.created)
}

/// Whether LibreChat has the role `name` under another `_id` than `chosen`; `None` when it
/// has no such role.
async fn held_under_other_id(
    store: &Store,
    name: &str,
    chosen: mongodb::bson::oid::ObjectId,
) -> Result<Option<bool>, StoreError> {
    Ok(store.find_role(name).await?.map(|s| s.id != Some(chosen)))
}

/// The owner a record handed over to the instance's administrators names: the instance.
fn administrators_of(instance: &crate::api::LibreChatInstance) -> Owner {
    Owner {
        kind: "LibreChatInstance".into(),
        namespace: instance.namespace().unwrap_or_default(),
        name: instance.name_any(),
        uid: crate::librechat::access::HANDED_OVER.into(),
    }
}
