//! The LibreChatGroup reconciler, as its phases: resolve the instance, validate, find the
//! members and plan the grants (reads only), claim the group's name, converge the group, its
//! members and its grants, report. Deletion deletes the group, as LibreChat's admin API does.

use std::collections::BTreeSet;
use std::sync::Arc;

use kube::api::Api;
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{finalizer, Event as FinalizerEvent};
use kube::ResourceExt;
use mongodb::bson::oid::ObjectId;

use super::access::{self, PlannedGrant, Verdict};
use super::audit::Change;
use super::caches::user_named;
use super::context::{Context, NameChange};
use super::error::ReconcileError;
use super::opening::{self, Opening};
use super::report::{deletion_blocked, report};
use super::target::{self, Target};
use super::tenancy::{owner_of, Tenancy};
use crate::api::common::{reason, FINALIZER};
use crate::api::group::{GroupMember, LibreChatGroupStatus};
use crate::api::validate::normalize_email;
use crate::api::LibreChatGroup;
use crate::librechat::access::grants::Principal;
use crate::librechat::access::groups::{member_id, GroupFields, StoredGroup};
use crate::librechat::access::{group_key, AccessRecord, CacheDrop, Claim, Claimed};
use crate::librechat::{Store, StoreError};

pub async fn reconcile(
    group: Arc<LibreChatGroup>,
    ctx: Arc<Context>,
) -> Result<Action, ReconcileError> {
    let api: Api<LibreChatGroup> =
        Api::namespaced(ctx.client.clone(), &group.namespace().unwrap_or_default());
    finalizer(&api, FINALIZER, group, |event| async {
        match event {
            FinalizerEvent::Apply(g) => apply(&api, &g, &ctx).await,
            FinalizerEvent::Cleanup(g) => match cleanup(&g, &ctx).await {
                Err(ReconcileError::Blocked(why)) => deletion_blocked(&api, &ctx, &g, why).await,
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
    group_id: Option<String>,
    member_count: Option<i64>,
    pending: Vec<String>,
    grants: Vec<crate::api::access::GrantStatus>,
    instance: Option<String>,
}

async fn apply(
    api: &Api<LibreChatGroup>,
    group: &LibreChatGroup,
    ctx: &Context,
) -> Result<Action, ReconcileError> {
    super::report::begin(api, group).await?;
    let mut found = Found {
        instance: group.status.as_ref().and_then(|s| s.instance.clone()),
        group_id: group.status.as_ref().and_then(|s| s.group_id.clone()),
        ..Found::default()
    };
    let (verdict, error) = access::verdict_of(group, sync(group, ctx, &mut found).await)?;
    let status = LibreChatGroupStatus {
        group_id: found.group_id,
        member_count: found.member_count,
        pending_members: found.pending,
        grants: found.grants,
        instance: found.instance,
        ..Default::default()
    };
    report(api, ctx, group, status, &[verdict.ready]).await?;
    super::report::next_action(error, verdict.requeue)
}

/// Spec problems LibreChat's admin API would refuse, or that cross a namespace.
fn validate(group: &LibreChatGroup) -> Result<(), String> {
    group.spec.check(&group.namespace().unwrap_or_default())
}

async fn sync(
    group: &LibreChatGroup,
    ctx: &Context,
    found: &mut Found,
) -> Result<Verdict, ReconcileError> {
    let opening = Opening {
        object: group,
        instance_ref: &group.spec.instance_ref,
        key: group_key(&group.spec.name),
        invalid: validate(group).err(),
        name_taken,
    };
    let opened = match opening::open(ctx, opening, &mut found.instance).await? {
        Ok(o) => o,
        Err(verdict) => return Ok(verdict),
    };
    let held = opened.held();
    let (store, tenancy) = (held.store, held.tenancy);
    if let Some(why) = foreign_email(group, tenancy) {
        let refusal = Verdict::refused(reason::NOT_PERMITTED, why, None);
        return Ok(held.refuse(refusal).await?);
    }
    let members = match resolve_members(ctx, store, group, tenancy).await? {
        Ok(m) => m,
        Err(refusal) => return Ok(held.refuse(refusal).await?),
    };
    let principal = held.record.and_then(|r| r.target).map(Principal::Group);
    let grants = &group.spec.grants;
    let plan =
        match access::plan_grants(store, grants, tenancy, principal.as_ref(), held.record).await? {
            Ok(p) => p,
            Err(r) => return Ok(held.refuse(r.verdict(held.resync)).await?),
        };
    let record = match held.record {
        Some(r) => r.clone(),
        None => match claim(store, group, held.key, tenancy).await? {
            Ok(r) => r,
            Err(verdict) => return Ok(verdict),
        },
    };
    let declared = Declared {
        record,
        members,
        plan,
    };
    let (target, key) = (&opened.target, &opened.key);
    converge_declared(ctx, group, target, key, declared, found).await
}

/// What a group is converged to: its record, the members and grants it may give.
struct Declared {
    record: AccessRecord,
    members: Members,
    plan: access::GrantPlan,
}

/// Converges the group without the members and grants its namespace may no longer give, and
/// says so.
async fn converge_declared(
    ctx: &Context,
    group: &LibreChatGroup,
    target: &Target,
    key: &str,
    declared: Declared,
    found: &mut Found,
) -> Result<Verdict, ReconcileError> {
    let Declared {
        record,
        mut members,
        plan,
    } = declared;
    let mut taken_back = std::mem::take(&mut members.left_out);
    taken_back.extend(plan.taken_back);
    let verdict = converge(
        ctx,
        group,
        target,
        key,
        record,
        members,
        plan.planned,
        found,
    )
    .await?;
    Ok(access::with_taken_back(verdict, &taken_back))
}

/// Why the group's own email is not the namespace's to give, if it is not: LibreChat's people
/// picker finds groups by their email, and a tenant's group must not pass for another team's
/// list address (the same rule as for its accounts and members).
fn foreign_email(group: &LibreChatGroup, tenancy: &Tenancy) -> Option<String> {
    let email = normalize_email(group.spec.email.as_deref()?);
    let why = tenancy.email_outside_domains(&email)?;
    Some(format!("the group's email: {why}. Nothing was written"))
}

fn name_taken(group: &LibreChatGroup, owner: &str) -> Verdict {
    Verdict::refused(
        reason::CONFLICT,
        format!("the LibreChat group '{}' is managed by {owner}: one object per group name; nothing was written", group.spec.name),
        None,
    )
}

/// Takes the group's name in the record, with the `_id` the group will have; a group of that
/// name that LibreChat (or a person, or Entra sync) made is never taken over.
async fn claim(
    store: &Store,
    group: &LibreChatGroup,
    key: &str,
    tenancy: &Tenancy,
) -> Result<Result<AccessRecord, Verdict>, StoreError> {
    let id = ObjectId::new();
    if store.group_named(&group.spec.name, id).await?.is_some() {
        return Ok(Err(Verdict::refused(
            reason::ALREADY_EXISTS,
            format!("a LibreChat group named '{}' already exists and no LibreChatGroup created it: the operator does not take over groups made in LibreChat or synced from Entra ID; choose another name", group.spec.name),
            None,
        )));
    }
    let owner = owner_of(group);
    Ok(
        match store.claim_access(key, &owner, Claim::Group(id)).await? {
            Claimed::Ours(r) => Ok(r),
            Claimed::Taken(other) => Err(name_taken(group, &tenancy.names(&other))),
        },
    )
}

/// The declared members found in LibreChat (their `memberIds` values) and the ones not yet.
struct Members {
    ids: BTreeSet<String>,
    pending: Vec<String>,
    /// Members the namespace may no longer name (outside its emailDomains, or made ADMIN in
    /// LibreChat), with why: left out, so a membership given before is taken back.
    left_out: Vec<(String, String)>,
}

/// Finds each member's account through the ownership record (never through status). A tenant
/// may name only accounts it manages.
async fn resolve_members(
    ctx: &Context,
    store: &Store,
    group: &LibreChatGroup,
    tenancy: &Tenancy,
) -> Result<Result<Members, Verdict>, ReconcileError> {
    let mut members = Members {
        ids: BTreeSet::new(),
        pending: Vec::new(),
        left_out: Vec::new(),
    };
    for member in &group.spec.members {
        let claim = match (&member.user_ref, &member.email) {
            (Some(r), _) => match user_named(ctx, &tenancy.namespace, &r.name).await? {
                Some(u) => store
                    .find_claim_of_owner(&u.uid().unwrap_or_default())
                    .await?
                    .filter(|c| c.owner.namespace == tenancy.namespace),
                None => None,
            },
            (None, Some(email)) => {
                let email = normalize_email(email);
                if let Some(why) = tenancy.email_outside_domains(&email) {
                    members.left_out.push((member.label(), why));
                    continue;
                }
                let claim = store.find_claim(&email).await?;
                if !tenancy.administers
                    && claim
                        .as_ref()
                        .is_none_or(|c| c.owner.namespace != tenancy.namespace)
                {
                    return Ok(Err(not_permitted(member, tenancy)));
                }
                match claim {
                    Some(c) => Some(c),
                    None => {
                        add_by_email(store, &email, &mut members).await?;
                        continue;
                    }
                }
            }
            (None, None) => None,
        };
        if let Some(why) = claim
            .as_ref()
            .and_then(|c| tenancy.email_outside_domains(&c.email))
        {
            members.left_out.push((member.label(), why));
            continue;
        }
        let account = match claim.and_then(|c| c.user_id) {
            Some(id) => store.find_user_by_id(id).await?,
            None => None,
        };
        match account {
            Some(a) => match tenancy
                .role_refusal(store, &a.email, a.role.as_deref())
                .await?
            {
                Some(why) => members.left_out.push((member.label(), why)),
                None => {
                    members.ids.insert(member_id(&a));
                }
            },
            None => members.pending.push(member.label()),
        }
    }
    Ok(Ok(members))
}

/// An email no object manages (only the instance's namespace may name one).
async fn add_by_email(store: &Store, email: &str, members: &mut Members) -> Result<(), StoreError> {
    match store.find_user_by_email(email).await? {
        Some(a) => {
            members.ids.insert(member_id(&a));
        }
        None => members.pending.push(email.to_string()),
    }
    Ok(())
}

/// The `source` of a group LibreChat's own users manage by its members (the operator's).
const LOCAL_SOURCE: &str = "local";

/// A group LibreChat linked to a directory group: sharing with an Entra ID group whose email
/// an existing group has turns that group into the Entra group (`source: entra`), and from
/// then on LibreChat's sign-in sync sets its members. That was LibreChat's decision: the
/// operator writes nothing more to it.
fn linked_to_directory(source: &str) -> Verdict {
    Verdict::refused(
        reason::CONFLICT,
        format!("LibreChat linked this group to a directory group (source '{source}'; someone shared with the {source} group of the same email): its members now come from the directory, so the members and grants this object added were taken out, and the operator no longer changes it. Delete this object to release it: the group stays, with what was shared with it"),
        None,
    )
}

fn not_permitted(member: &GroupMember, tenancy: &Tenancy) -> Verdict {
    Verdict::refused(
        reason::NOT_PERMITTED,
        format!(
            "member {} is not an account this namespace manages: a tenant's group may hold only accounts of LibreChatUsers in '{}'; {}. Nothing was written",
            member.label(),
            tenancy.namespace,
            tenancy.who_may("add other accounts")
        ),
        None,
    )
}

#[allow(clippy::too_many_arguments)]
async fn converge(
    ctx: &Context,
    group: &LibreChatGroup,
    target: &Target,
    key: &str,
    record: AccessRecord,
    members: Members,
    planned: Vec<PlannedGrant>,
    found: &mut Found,
) -> Result<Verdict, ReconcileError> {
    let store = &target.stores.store;
    let uid = group.uid().unwrap_or_default();
    let Some(id) = record.target else {
        return Err(StoreError::Contended("the group record has no group id").into());
    };
    let mut second_drop = access::settle_due_drops(store, key, &uid, &record).await?;
    found.group_id = Some(id.to_hex());
    let fields = GroupFields {
        name: group.spec.name.clone(),
        description: group.spec.description.clone(),
        email: group.spec.email.clone(),
    };
    let instance = target::instance_key(&target.instance);
    let stored = match store.find_group(id).await? {
        Some(g) => g,
        None => {
            store.create_group(id, &fields).await?;
            let note = format!(
                "created LibreChat group '{}' ({})",
                fields.name,
                id.to_hex()
            );
            ctx.changed(
                group,
                Change::applied("GroupCreated", instance.clone(), None, note),
            )
            .await;
            store.find_group(id).await?.ok_or(StoreError::Contended(
                "the group vanished after its creation",
            ))?
        }
    };
    if stored.source != LOCAL_SOURCE {
        // What this object put in it goes at once, not at its deletion: anything shared with
        // the directory group now reaches the group's members, and a tenant must not get its
        // own accounts there by having LibreChat link its group to a directory group's email.
        let added_there = record.members.iter().any(|m| stored.member_ids.contains(m));
        if added_there || !record.grants.is_empty() {
            withdraw_from_linked(store, key, &uid, &record, &stored).await?;
        }
        return Ok(linked_to_directory(&stored.source));
    }
    if stored.fields != fields {
        store.correct_group(id, &fields).await?;
    }
    let current: BTreeSet<&String> = stored.member_ids.iter().collect();
    let add: Vec<String> = members
        .ids
        .iter()
        .filter(|m| !current.contains(m))
        .cloned()
        .collect();
    let remove: Vec<String> = record
        .members
        .iter()
        .filter(|m| !members.ids.contains(*m) && current.contains(m))
        .cloned()
        .collect();
    let stale_record: Vec<String> = record
        .members
        .iter()
        .filter(|m| !members.ids.contains(*m) && !current.contains(m))
        .cloned()
        .collect();
    store.forget_members(key, &uid, &stale_record).await?;
    if !add.is_empty() || !remove.is_empty() {
        let owed: Vec<CacheDrop> = add
            .iter()
            .chain(&remove)
            .map(|m| CacheDrop::Principals(m.clone()))
            .collect();
        store
            .promise_cache_drops(key, &uid, &owed, access::due(true))
            .await?;
        store.record_members(key, &uid, &add).await?;
        store.add_group_members(id, &add).await?;
        store.remove_group_members(id, &remove).await?;
        store.forget_members(key, &uid, &remove).await?;
        store.drop_owed_caches(&owed).await?;
        second_drop = Some(access::SECOND_DROP_AFTER);
        let note = format!(
            "group '{}': added {} member(s), removed {}",
            fields.name,
            add.len(),
            remove.len()
        );
        ctx.changed(
            group,
            Change::applied("MembersChanged", instance.clone(), None, note),
        )
        .await;
    }
    let principal = Principal::Group(id);
    if access::converge_grants(store, key, &uid, &principal, &planned, &record).await? {
        let owed = [CacheDrop::PromptAccess];
        access::drop_promised(store, key, &uid, &owed, false).await?;
        let note = format!("group '{}': grants now {}", fields.name, planned.len());
        ctx.changed(
            group,
            Change::applied("GrantsChanged", instance, None, note),
        )
        .await;
    }
    found.member_count = Some(members.ids.len() as i64);
    found.grants = planned.iter().map(PlannedGrant::status).collect();
    let resync = opening::resync(ctx, target);
    let requeue = second_drop.map_or(resync, |d| d.min(resync));
    Ok(if members.pending.is_empty() {
        Verdict::ready(
            reason::RECONCILED,
            format!(
                "group '{}' has its {} declared member(s) and {} grant(s)",
                fields.name,
                members.ids.len(),
                planned.len()
            ),
            requeue,
        )
    } else {
        found.pending = members.pending.clone();
        Verdict::ready(
            reason::MEMBERS_PENDING,
            format!(
                "group '{}' has {} member(s); not found yet (added when their accounts appear): {}",
                fields.name,
                members.ids.len(),
                members.pending.join(", ")
            ),
            requeue.min(access::RETRY_PENDING * 6),
        )
    })
}

/// Deletes the group this object created (with its ACL entries and config overrides, as
/// LibreChat's admin API does) and drops its members' cached principals. The groups are found
/// by the object's records, not by its spec's name (which an API server without the CEL
/// immutability rule lets change).
async fn cleanup(group: &LibreChatGroup, ctx: &Context) -> Result<Action, ReconcileError> {
    let undoing = ("group", "delete the LibreChat group");
    let recorded = group.status.as_ref().and_then(|s| s.instance.as_deref());
    let reference = (&group.spec.instance_ref, recorded);
    if let Some((target, held)) = opening::records_to_undo(ctx, group, reference, undoing).await? {
        for h in held {
            remove_group(ctx, group, &target, (&h.name, &h.key), &h.record).await?;
        }
    }
    Ok(Action::await_change())
}

/// Lets go of a group LibreChat linked to a directory group: it stays, with the shares its
/// people made; only the grants the operator recorded go (by their entries), then the record.
async fn release_linked_group(
    ctx: &Context,
    group: &LibreChatGroup,
    target: &Target,
    (name, key): (&str, &str),
    record: &AccessRecord,
    linked: &StoredGroup,
) -> Result<(), ReconcileError> {
    let store = &target.stores.store;
    let owed = withdraw_from_linked(store, key, &record.owner.uid, record, linked).await?;
    // The second drop the record promised (another LibreChat process may have rebuilt a
    // member's principals from the old membership meanwhile), before the record that holds
    // the promise goes, as a deleted group's.
    tokio::time::sleep(access::SECOND_DROP_AFTER).await;
    store.drop_owed_caches(&owed).await?;
    let note = format!(
        "released LibreChat group '{name}': LibreChat linked it to a {} group, so it stays",
        linked.source
    );
    let instance = target::instance_key(&target.instance);
    let change = Change::applied("GroupReleased", instance, None, note);
    ctx.changed(group, change).await;
    Ok(())
}

/// Takes out of a group LibreChat linked to a directory group what the record `key` put
/// there: its grants (by their entries) and the members the operator added (the directory's
/// stay), their cached principals and the prompt access dropped as promised (once: returns
/// the drops, whose second drop is due later).
async fn withdraw_from_linked(
    store: &Store,
    key: &str,
    uid: &str,
    record: &AccessRecord,
    linked: &StoredGroup,
) -> Result<Vec<CacheDrop>, ReconcileError> {
    let principal = Principal::Group(linked.id);
    access::converge_grants(store, key, uid, &principal, &[], record).await?;
    let added: Vec<String> = record
        .members
        .iter()
        .filter(|m| linked.member_ids.contains(m))
        .cloned()
        .collect();
    let owed = owed_on_removal(&added, record);
    store
        .promise_cache_drops(key, uid, &owed, access::due(false))
        .await?;
    store
        .withdraw_members_from_linked(linked.id, &added)
        .await?;
    store.drop_owed_caches(&owed).await?;
    store.forget_members(key, uid, &added).await?;
    Ok(owed)
}

/// Deletes one group the object's record `key` names, then the record.
async fn remove_group(
    ctx: &Context,
    group: &LibreChatGroup,
    target: &Target,
    (name, key): (&str, &str),
    record: &AccessRecord,
) -> Result<(), ReconcileError> {
    let store = &target.stores.store;
    let uid = &record.owner.uid;
    if let Some(id) = record.target {
        let stored = store.find_group(id).await?;
        if let Some(linked) = stored.as_ref().filter(|g| g.source != LOCAL_SOURCE) {
            release_linked_group(ctx, group, target, (name, key), record, linked).await?;
            return release_record(ctx, target, key, uid).await;
        }
        crate::fault::pause_point("before-group-delete").await;
        let members = stored.map(|g| g.member_ids).unwrap_or_default();
        let owed = owed_on_removal(&members, record);
        store
            .promise_cache_drops(key, uid, &owed, access::due(false))
            .await?;
        store.delete_local_group(id).await?;
        store.drop_owed_caches(&owed).await?;
        tokio::time::sleep(access::SECOND_DROP_AFTER).await;
        store.drop_owed_caches(&owed).await?;
        let note = format!(
            "deleted LibreChat group '{name}' ({} member(s))",
            members.len()
        );
        let instance = target::instance_key(&target.instance);
        let change = Change::applied("GroupDeleted", instance, None, note);
        ctx.changed(group, change).await;
    }
    release_record(ctx, target, key, uid).await
}

/// The group's record goes, and its name is free for another object.
async fn release_record(
    ctx: &Context,
    target: &Target,
    key: &str,
    uid: &str,
) -> Result<(), ReconcileError> {
    target.stores.store.release_access(key, uid).await?;
    ctx.name_changed(NameChange::freed(&target.instance, key));
    Ok(())
}

/// What taking `members` out of a group owes LibreChat's caches: their principals and the
/// prompt access, with any drop the record still owes.
fn owed_on_removal(members: &[String], record: &AccessRecord) -> Vec<CacheDrop> {
    let mut owed: Vec<CacheDrop> = members.iter().cloned().map(CacheDrop::Principals).collect();
    owed.push(CacheDrop::PromptAccess);
    access::owed_with_recorded(owed, record)
}
