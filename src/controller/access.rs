//! What LibreChatGroup and LibreChatRole share: the outcome of a reconcile, the grants they
//! give (planned in full before anything is written, so a bad grant writes nothing), and the
//! cache drops their writes owe.

use std::time::Duration;

use mongodb::bson::{oid::ObjectId, DateTime};

use super::error::ReconcileError;
use super::target::TargetProblem;
use super::tenancy::Tenancy;
use crate::api::access::{AccessGrant, GrantStatus};
use crate::api::common::{condition, reason, Cond};
use crate::librechat::access::grants::Principal;
use crate::librechat::access::{is_role_key, AccessRecord, CacheDrop, RecordedGrant};
use crate::librechat::{Store, StoreError};

/// How soon an object waiting for something LibreChat does looks again.
pub const RETRY_PENDING: Duration = Duration::from_secs(5);
/// LibreChat drops a changed member's principals a second time after this, for other
/// processes that rebuilt them from the old state meanwhile.
pub const SECOND_DROP_AFTER: Duration = Duration::from_secs(3);

/// A reconcile's verdict on `Ready` and when to look again.
#[derive(Clone)]
pub struct Verdict {
    pub ready: Cond,
    pub requeue: Option<Duration>,
}

impl Verdict {
    pub fn ready(reason: &str, message: impl Into<String>, requeue: Duration) -> Self {
        Verdict {
            ready: Cond::new(condition::READY, true, reason, message),
            requeue: Some(requeue),
        }
    }
    /// Transient: looked at again soon.
    pub fn waiting(reason: &str, message: impl Into<String>) -> Self {
        Verdict {
            ready: Cond::new(condition::READY, false, reason, message),
            requeue: Some(RETRY_PENDING),
        }
    }
    /// A person must act: looked at again on a change, or after `resync` for what LibreChat
    /// may change meanwhile.
    pub fn refused(reason: &str, message: impl Into<String>, resync: Option<Duration>) -> Self {
        Verdict {
            ready: Cond::new(condition::READY, false, reason, message),
            requeue: resync,
        }
    }
}

/// The verdict of a sync of `obj`: a store failure is reported as waiting on the store (as
/// the object's namespace may read it), and kept (for the backoff); any other error ends the
/// reconcile.
pub fn verdict_of<K>(
    obj: &K,
    result: Result<Verdict, ReconcileError>,
) -> Result<(Verdict, Option<ReconcileError>), ReconcileError>
where
    K: crate::api::common::AppliedToInstance + kube::Resource,
{
    match result {
        Ok(v) => Ok((v, None)),
        Err(ReconcileError::Store(e)) => Ok((
            Verdict::waiting(reason::STORE_ERROR, super::target::store_error_on(obj, &e)),
            Some(ReconcileError::Store(e)),
        )),
        Err(other) => Err(other),
    }
}

/// A grant whose resource exists and which the object may give.
#[derive(Clone, Debug)]
pub struct PlannedGrant {
    pub grant: AccessGrant,
    pub resource: ObjectId,
}

impl PlannedGrant {
    fn resource_type(&self) -> &'static str {
        self.grant.resource_type.as_str()
    }
    fn recorded<'r>(&self, record: Option<&'r AccessRecord>) -> Option<&'r RecordedGrant> {
        record?
            .grants
            .iter()
            .find(|g| g.resource_type == self.resource_type() && g.resource_id == self.resource)
    }
    pub fn status(&self) -> GrantStatus {
        GrantStatus {
            resource_type: self.resource_type().into(),
            resource_id: self.grant.resource_id.clone(),
            state: "Granted".into(),
            message: Some(format!(
                "{} ({})",
                self.grant.access.as_str(),
                self.resource.to_hex()
            )),
        }
    }
}

/// Why the grants cannot be given; nothing is written.
pub struct GrantRefusal {
    pub reason: &'static str,
    pub message: String,
}

impl GrantRefusal {
    /// A person fixes it; looked at again at `resync` for what LibreChat may change meanwhile.
    pub fn verdict(self, resync: Duration) -> Verdict {
        Verdict::refused(self.reason, self.message, Some(resync))
    }
}

/// An invalid spec, refused before anything is written.
pub fn invalid_spec(why: String) -> Verdict {
    Verdict::refused(
        reason::INVALID_SPEC,
        format!("{why}; nothing was written"),
        None,
    )
}

/// While the instance cannot be resolved: an invalid spec says so (a person fixes it either
/// way), any other object waits for the instance.
pub fn invalid_or_waiting(invalid: Option<String>, problem: TargetProblem) -> Verdict {
    match invalid {
        Some(why) => invalid_spec(why),
        None => Verdict::waiting(problem.reason, problem.message),
    }
}

/// The grants to give, and the ones given earlier that the namespace may no longer give
/// (labelled, with why): left out, so converging takes them back.
pub struct GrantPlan {
    pub planned: Vec<PlannedGrant>,
    pub taken_back: Vec<(String, String)>,
}

/// Finds every grant's resource and checks that the object may give it, before any write.
/// A tenant may grant only what one of the accounts it manages may share itself (LibreChat's
/// own rule for sharing: the SHARE bit), so a team cannot reach another team's agents. A
/// grant this object gave earlier on a resource no such account may share any more (the
/// account left the namespace's hands) is left out of the plan rather than refusing it all.
pub async fn plan_grants(
    store: &Store,
    grants: &[AccessGrant],
    tenancy: &Tenancy,
    principal: Option<&Principal>,
    record: Option<&AccessRecord>,
) -> Result<Result<GrantPlan, GrantRefusal>, StoreError> {
    let mut plan = GrantPlan {
        planned: Vec::new(),
        taken_back: Vec::new(),
    };
    for grant in grants {
        let kind = grant.resource_type.as_str();
        let Some(resource) = store.find_resource(kind, &grant.resource_id).await? else {
            if !tenancy.administers {
                // Said as a foreign resource is: a tenant must not learn which ids exist.
                return Ok(Err(not_permitted(kind, &grant.resource_id, tenancy)));
            }
            return Ok(Err(GrantRefusal {
                reason: reason::RESOURCE_NOT_FOUND,
                message: format!(
                    "the {kind} '{}' does not exist in LibreChat: fix the grant's resourceId (the {kind}'s _id); nothing was written",
                    grant.resource_id
                ),
            }));
        };
        let planned = PlannedGrant {
            grant: grant.clone(),
            resource,
        };
        if !tenancy.administers && !may_share(store, kind, resource, tenancy).await? {
            // A grant given earlier is left out (taken back); a new one is refused, saying no
            // more than for a resource that does not exist.
            if planned.recorded(record).is_none() {
                return Ok(Err(not_permitted(kind, &grant.resource_id, tenancy)));
            }
            let label = format!("{kind} '{}'", resource.to_hex());
            plan.taken_back.push((label, not_shareable(tenancy)));
            continue;
        }
        if let Some(refusal) = clash(store, &planned, &plan.planned, principal, record).await? {
            return Ok(Err(refusal));
        }
        plan.planned.push(planned);
    }
    Ok(Ok(plan))
}

/// Why `planned` cannot be given beside the grants planned before it, if it cannot: it names
/// a resource one of them names, or a person shared the resource with the principal already.
async fn clash(
    store: &Store,
    planned: &PlannedGrant,
    before: &[PlannedGrant],
    principal: Option<&Principal>,
    record: Option<&AccessRecord>,
) -> Result<Option<GrantRefusal>, StoreError> {
    let (kind, id) = (planned.resource_type(), &planned.grant.resource_id);
    let same = |p: &&PlannedGrant| p.resource_type() == kind && p.resource == planned.resource;
    if let Some(first) = before.iter().find(same) {
        return Ok(Some(GrantRefusal {
            reason: reason::INVALID_SPEC,
            message: format!(
                "the grants on {kind} '{}' and '{id}' name the same {kind}: list it once; nothing was written",
                first.grant.resource_id
            ),
        }));
    }
    let Some(principal) = principal else {
        return Ok(None);
    };
    let existing = store.find_grant(principal, kind, planned.resource).await?;
    let ours = planned.recorded(record).map(|r| r.entry);
    Ok(existing.filter(|e| Some(e.id) != ours).map(|_| GrantRefusal {
        reason: reason::CONFLICT,
        message: format!(
            "the {kind} '{id}' is already shared with this principal in LibreChat (by a person, not by this object): remove that share in LibreChat or drop this grant; nothing was written"
        ),
    }))
}

fn not_permitted(kind: &str, resource_id: &str, tenancy: &Tenancy) -> GrantRefusal {
    GrantRefusal {
        reason: reason::NOT_PERMITTED,
        message: format!(
            "the {kind} '{resource_id}' may not be shared from namespace '{}': it does not exist, or {}. Nothing was written",
            tenancy.namespace,
            not_shareable(tenancy)
        ),
    }
}

fn not_shareable(tenancy: &Tenancy) -> String {
    format!(
        "no account this namespace manages may share it; {}",
        tenancy.who_may("share other resources")
    )
}

/// Whether an account the tenant manages fully may share the resource, by LibreChat's own
/// two rules for sharing: it holds the entry's SHARE bit, and its role has the type's SHARE
/// permission (a tenant must not share through the operator what the instance's roles keep
/// its people from sharing in LibreChat).
async fn may_share(
    store: &Store,
    kind: &str,
    resource: ObjectId,
    tenancy: &Tenancy,
) -> Result<bool, StoreError> {
    for sharer in store.resource_sharers(kind, resource).await? {
        if tenancy.manages_account(store, sharer).await?
            && store.account_may_share(sharer, kind).await?
        {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A refusal of an object LibreChat already holds writes nothing new, but first keeps the
/// cache drops its record still owes and takes back what its namespace may no longer give:
/// grants on resources no account it manages may share any more, and members it no longer
/// manages (outside its emailDomains, made ADMIN). A refused spec (an invalid one, a member or
/// grant it may not name) must not keep that reach in force; and since LibreChat may change
/// an account without any event, it is looked at again at the resync.
pub async fn refuse_holding(held: &Held<'_>, refusal: Verdict) -> Result<Verdict, StoreError> {
    let Held {
        store,
        key,
        uid,
        record,
        tenancy,
        resync,
    } = *held;
    let Some(record) = record else {
        return Ok(refusal);
    };
    let pending = settle_due_drops(store, key, uid, record).await?;
    let mut refusal = refusal;
    refusal.requeue = refusal.requeue.into_iter().chain(pending).min();
    if tenancy.administers {
        return Ok(refusal);
    }
    // A role's grants came from the right to manage roles: once withdrawn, they all go,
    // whatever the refusal (an invalid spec, a namespace taken out, the right itself).
    let mut labels = match is_role_key(key) && !tenancy.may_manage_roles {
        true => take_back_all_grants(held, record).await?,
        false => take_back_lost_grants(held, record).await?,
    };
    let members = take_back_lost_members(held, record).await?;
    let second_drop = (!members.is_empty()).then_some(SECOND_DROP_AFTER);
    labels.extend(members);
    let holds = !record.grants.is_empty() || !record.members.is_empty();
    let looks = [refusal.requeue, holds.then_some(resync), second_drop];
    refusal.requeue = looks.into_iter().flatten().min();
    if !labels.is_empty() {
        refusal.ready.message = format!(
            "{} (nothing new; what this namespace may no longer give was taken back: {})",
            refusal.ready.message,
            labels.join(", ")
        );
    }
    Ok(refusal)
}

/// What a group or role refusal holds to: the store, the object's record key, uid and record,
/// its namespace's standing, and when to look again.
#[derive(Clone, Copy)]
pub struct Held<'a> {
    pub store: &'a Store,
    pub key: &'a str,
    pub uid: &'a str,
    pub record: Option<&'a AccessRecord>,
    pub tenancy: &'a Tenancy,
    pub resync: Duration,
}

impl Held<'_> {
    /// [`refuse_holding`].
    pub async fn refuse(&self, refusal: Verdict) -> Result<Verdict, StoreError> {
        refuse_holding(self, refusal).await
    }
}

/// Removes the recorded grants whose resource no account the tenant manages may share any
/// more. Returns their labels.
async fn take_back_lost_grants(
    held: &Held<'_>,
    record: &AccessRecord,
) -> Result<Vec<String>, StoreError> {
    let (store, tenancy) = (held.store, held.tenancy);
    let mut lost = Vec::new();
    for given in &record.grants {
        if !may_share(store, &given.resource_type, given.resource_id, tenancy).await? {
            lost.push(given);
        }
    }
    take_back_grants(held, &lost).await
}

/// Removes every grant the record holds: the namespace lost the right the object used to give
/// them (a tenant's role once `tenantPolicy.manageRoles` is withdrawn). Returns their labels.
async fn take_back_all_grants(
    held: &Held<'_>,
    record: &AccessRecord,
) -> Result<Vec<String>, StoreError> {
    let all: Vec<&RecordedGrant> = record.grants.iter().collect();
    take_back_grants(held, &all).await
}

/// Removes `lost`, the prompt-access cache drop promised first. Returns their labels.
async fn take_back_grants(
    held: &Held<'_>,
    lost: &[&RecordedGrant],
) -> Result<Vec<String>, StoreError> {
    let (store, key, uid) = (held.store, held.key, held.uid);
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let owed = [CacheDrop::PromptAccess];
    store
        .promise_cache_drops(key, uid, &owed, DateTime::now())
        .await?;
    take_back(store, key, uid, lost).await?;
    drop_promised(store, key, uid, &owed, false).await?;
    Ok(lost
        .iter()
        .map(|g| format!("{} '{}'", g.resource_type, g.resource_id.to_hex()))
        .collect())
}

/// Removes the recorded members of the record's group whose accounts the tenant no longer
/// manages, owing their principal caches a second drop. Returns their labels.
async fn take_back_lost_members(
    held: &Held<'_>,
    record: &AccessRecord,
) -> Result<Vec<String>, StoreError> {
    let (store, key, uid, tenancy) = (held.store, held.key, held.uid, held.tenancy);
    let Some(group) = record.target else {
        return Ok(Vec::new());
    };
    let mut lost = Vec::new();
    for member in &record.members {
        let account = store.find_user_by_member_id(member).await?;
        let managed = match account {
            Some(a) => tenancy.may_group(store, a.id).await?,
            None => false,
        };
        if !managed {
            lost.push(member.clone());
        }
    }
    if lost.is_empty() {
        return Ok(Vec::new());
    }
    let owed: Vec<CacheDrop> = lost.iter().cloned().map(CacheDrop::Principals).collect();
    store
        .promise_cache_drops(key, uid, &owed, due(true))
        .await?;
    store.remove_group_members(group, &lost).await?;
    store.forget_members(key, uid, &lost).await?;
    store.drop_owed_caches(&owed).await?;
    Ok(lost.iter().map(|m| format!("member {m}")).collect())
}

/// Reports what a converged object left out because its namespace may no longer give it (a
/// membership, a grant): taken back, and a refusal a person fixes (by dropping it, or by the
/// instance admitting it again).
pub fn with_taken_back(verdict: Verdict, taken_back: &[(String, String)]) -> Verdict {
    if taken_back.is_empty() {
        return verdict;
    }
    let labels: Vec<&str> = taken_back.iter().map(|(l, _)| l.as_str()).collect();
    let mut whys: Vec<&str> = Vec::new();
    for (_, why) in taken_back {
        if !whys.contains(&why.as_str()) {
            whys.push(why);
        }
    }
    let message = format!(
        "left out (what was given earlier is taken back): {}; {}",
        labels.join(", "),
        whys.join("; ")
    );
    Verdict::refused(reason::NOT_PERMITTED, message, verdict.requeue)
}

async fn take_back(
    store: &Store,
    key: &str,
    uid: &str,
    gone: &[&RecordedGrant],
) -> Result<(), StoreError> {
    for old in gone {
        store.remove_grant(old.entry).await?;
        store.forget_grant(key, uid, old.entry).await?;
    }
    Ok(())
}

/// Gives the planned grants and takes back the recorded ones no longer declared. Each new
/// entry is recorded before it is written. Returns whether anything changed.
pub async fn converge_grants(
    store: &Store,
    key: &str,
    uid: &str,
    principal: &Principal,
    planned: &[PlannedGrant],
    record: &AccessRecord,
) -> Result<bool, StoreError> {
    let mut writes = Vec::new();
    for plan in planned {
        let recorded = plan.recorded(Some(record));
        let existing = store
            .find_grant(principal, plan.resource_type(), plan.resource)
            .await?;
        let bits = plan.grant.access.bits();
        let in_place = recorded.is_some_and(|r| {
            existing
                .as_ref()
                .is_some_and(|e| e.id == r.entry && e.perm_bits == bits)
        });
        if !in_place {
            writes.push((plan, recorded.map(|r| r.entry)));
        }
    }
    let gone: Vec<&RecordedGrant> = record
        .grants
        .iter()
        .filter(|r| {
            !planned
                .iter()
                .any(|p| p.resource_type() == r.resource_type && p.resource == r.resource_id)
        })
        .collect();
    if writes.is_empty() && gone.is_empty() {
        return Ok(false);
    }
    let owed = [CacheDrop::PromptAccess];
    store
        .promise_cache_drops(key, uid, &owed, DateTime::now())
        .await?;
    for (plan, entry) in writes {
        give(store, (key, uid), principal, plan, entry).await?;
    }
    take_back(store, key, uid, &gone).await?;
    Ok(true)
}

/// Writes one planned grant under its recorded entry, recording a new entry first.
async fn give(
    store: &Store,
    (key, uid): (&str, &str),
    principal: &Principal,
    plan: &PlannedGrant,
    entry: Option<ObjectId>,
) -> Result<(), StoreError> {
    let entry = match entry {
        Some(e) => e,
        None => {
            let recorded = RecordedGrant {
                resource_type: plan.resource_type().into(),
                resource_id: plan.resource,
                entry: ObjectId::new(),
            };
            store.record_grant(key, uid, &recorded).await?;
            recorded.entry
        }
    };
    let bundle = plan.grant.access;
    let (kind, bits) = (plan.resource_type(), bundle.bits());
    let written = store
        .put_grant(entry, principal, kind, plan.resource, bundle.as_str(), bits)
        .await?;
    if written {
        return Ok(());
    }
    // A person shared it with this principal since the plan: theirs, and the next reconcile
    // reports the conflict.
    store.forget_grant(key, uid, entry).await?;
    Err(StoreError::Contended(
        "the resource was shared with this principal in LibreChat meanwhile",
    ))
}

/// Keeps the record's cache-drop promises that are due: drops them and settles them. Returns
/// how long until the rest are due.
pub async fn settle_due_drops(
    store: &Store,
    key: &str,
    uid: &str,
    record: &AccessRecord,
) -> Result<Option<Duration>, StoreError> {
    if record.cache_drops.is_empty() {
        return Ok(None);
    }
    let now = DateTime::now().timestamp_millis();
    let due = record
        .cache_drops_due
        .map(|d| d.timestamp_millis())
        .unwrap_or(now);
    if due > now {
        return Ok(Some(Duration::from_millis((due - now) as u64)));
    }
    store.drop_owed_caches(&record.cache_drops).await?;
    store
        .settle_cache_drops(key, uid, &record.cache_drops)
        .await?;
    Ok(None)
}

/// Drops `owed` now, after promising them (with a second drop due shortly for member
/// changes, as LibreChat does for cross-process caches).
pub async fn drop_promised(
    store: &Store,
    key: &str,
    uid: &str,
    owed: &[CacheDrop],
    second: bool,
) -> Result<(), StoreError> {
    store.drop_owed_caches(owed).await?;
    if !second {
        store.settle_cache_drops(key, uid, owed).await?;
    }
    Ok(())
}

/// What a cleanup owes: the drops its removal makes stale and those the record still owes
/// (a removal cut short after its first write finds fewer members or accounts the second
/// time; an earlier change's second drop may be pending).
pub fn owed_with_recorded(mut owed: Vec<CacheDrop>, record: &AccessRecord) -> Vec<CacheDrop> {
    for drop in &record.cache_drops {
        if !owed.contains(drop) {
            owed.push(drop.clone());
        }
    }
    owed
}

/// The promise's due time: now, or the second drop's.
pub fn due(second: bool) -> DateTime {
    let later = if second {
        SECOND_DROP_AFTER
    } else {
        Duration::ZERO
    };
    DateTime::from_millis(DateTime::now().timestamp_millis() + later.as_millis() as i64)
}
