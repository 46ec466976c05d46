//! What LibreChatGroup and LibreChatRole share: the outcome of a reconcile, the grants they
//! give (planned in full before anything is written, so a bad grant writes nothing), and the
//! cache drops their writes owe.

use std::time::Duration;

use mongodb::bson::{oid::ObjectId, DateTime};

use super::error::ReconcileError;
use super::tenancy::Tenancy;
use crate::api::access::{AccessGrant, GrantStatus};
use crate::api::common::{condition, reason, Cond};
use crate::librechat::access::grants::Principal;
use crate::librechat::access::{AccessRecord, CacheDrop, RecordedGrant};
use crate::librechat::{Store, StoreError};

/// How soon an object waiting for something LibreChat does looks again.
pub const RETRY_PENDING: Duration = Duration::from_secs(5);
/// LibreChat drops a changed member's principals a second time after this, for other
/// processes that rebuilt them from the old state meanwhile.
pub const SECOND_DROP_AFTER: Duration = Duration::from_secs(3);

/// A reconcile's verdict on `Ready` and when to look again.
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

/// The verdict of a sync: a store failure is reported as waiting on the store, and kept
/// (for the backoff); any other error ends the reconcile.
pub fn verdict_of(
    result: Result<Verdict, ReconcileError>,
) -> Result<(Verdict, Option<ReconcileError>), ReconcileError> {
    match result {
        Ok(v) => Ok((v, None)),
        Err(ReconcileError::Store(e)) => Ok((
            Verdict::waiting(reason::STORE_ERROR, e.to_string()),
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
        let sharing = match tenancy.administers {
            true => Sharing::Permitted,
            false => sharing(store, kind, resource, tenancy).await?,
        };
        if sharing != Sharing::Permitted {
            // Reach the namespace held and lost is left out; reaching further is refused.
            if sharing == Sharing::OutOfHands || planned.recorded(record).is_some() {
                let label = format!("{kind} '{}'", grant.resource_id);
                plan.taken_back.push((label, not_shareable(tenancy)));
                continue;
            }
            return Ok(Err(not_permitted(kind, &grant.resource_id, tenancy)));
        }
        if let Some(principal) = principal {
            let existing = store.find_grant(principal, kind, resource).await?;
            let ours = planned.recorded(record).map(|r| r.entry);
            if existing.is_some_and(|e| Some(e.id) != ours) {
                return Ok(Err(GrantRefusal {
                    reason: reason::CONFLICT,
                    message: format!(
                        "the {kind} '{}' is already shared with this principal in LibreChat (by a person, not by this object): remove that share in LibreChat or drop this grant; nothing was written",
                        grant.resource_id
                    ),
                }));
            }
        }
        plan.planned.push(planned);
    }
    Ok(Ok(plan))
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

/// What a tenant may do with a resource, by the accounts that may share it (hold its SHARE
/// bit; LibreChat's own rule for sharing).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sharing {
    /// An account the namespace fully manages may share it.
    Permitted,
    /// Only accounts the namespace took and has since lost (outside its emailDomains, or made
    /// ADMIN where it may not hold ADMIN) may share it.
    OutOfHands,
    /// No account of the namespace's may share it.
    Foreign,
}

async fn sharing(
    store: &Store,
    kind: &str,
    resource: ObjectId,
    tenancy: &Tenancy,
) -> Result<Sharing, StoreError> {
    let mut lost = false;
    for sharer in store.resource_sharers(kind, resource).await? {
        let Some(claim) = store.find_claim_of_user(sharer).await? else {
            continue;
        };
        if !tenancy.held_here(&claim) {
            continue;
        }
        if tenancy.email_outside_domains(&claim.email).is_some() {
            lost = true;
            continue;
        }
        if tenancy.refuses_admin_accounts() {
            let account = store.find_user_by_id(sharer).await?;
            if account.is_some_and(|a| a.role.as_deref() == Some("ADMIN")) {
                lost = true;
                continue;
            }
        }
        return Ok(Sharing::Permitted);
    }
    Ok(if lost {
        Sharing::OutOfHands
    } else {
        Sharing::Foreign
    })
}

/// A refusal of an object LibreChat already holds writes nothing new, but first takes back
/// the grants the object gave on resources its namespace may no longer share: a refused spec
/// (a bad member, a bad new grant) must not keep that reach in force.
pub async fn refuse_holding(
    store: &Store,
    key: &str,
    uid: &str,
    tenancy: &Tenancy,
    record: Option<&AccessRecord>,
    refusal: Verdict,
) -> Result<Verdict, StoreError> {
    let Some(record) = record.filter(|_| !tenancy.administers) else {
        return Ok(refusal);
    };
    let mut lost = Vec::new();
    for given in &record.grants {
        if sharing(store, &given.resource_type, given.resource_id, tenancy).await?
            != Sharing::Permitted
        {
            lost.push(given);
        }
    }
    if lost.is_empty() {
        return Ok(refusal);
    }
    let owed = [CacheDrop::PromptAccess];
    store
        .promise_cache_drops(key, uid, &owed, DateTime::now())
        .await?;
    take_back(store, key, uid, &lost).await?;
    drop_promised(store, key, uid, &owed, false).await?;
    let labels: Vec<String> = lost
        .iter()
        .map(|g| format!("{} '{}'", g.resource_type, g.resource_id.to_hex()))
        .collect();
    let mut refusal = refusal;
    refusal.ready.message = format!(
        "{}. Taken back nonetheless, as given earlier and no longer this namespace's to give ({}): {}",
        refusal.ready.message,
        not_shareable(tenancy),
        labels.join(", ")
    );
    Ok(refusal)
}

/// Reports what a converged object left out because its namespace may no longer give it (a
/// membership, a grant): taken back, and a refusal a person fixes (by dropping it, or by the
/// instance admitting it again).
pub fn with_taken_back(verdict: Verdict, taken_back: &[(String, String)]) -> Verdict {
    let Some((_, why)) = taken_back.first() else {
        return verdict;
    };
    let labels: Vec<&str> = taken_back.iter().map(|(l, _)| l.as_str()).collect();
    let message = format!(
        "left out (what was given earlier is taken back): {}; {why}",
        labels.join(", ")
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
        if !written {
            // A person shared it with this principal since the plan: theirs, and the next
            // reconcile reports the conflict.
            store.forget_grant(key, uid, entry).await?;
            return Err(StoreError::Contended(
                "the resource was shared with this principal in LibreChat meanwhile",
            ));
        }
    }
    take_back(store, key, uid, &gone).await?;
    Ok(true)
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

/// The promise's due time: now, or the second drop's.
pub fn due(second: bool) -> DateTime {
    let later = if second {
        SECOND_DROP_AFTER
    } else {
        Duration::ZERO
    };
    DateTime::from_millis(DateTime::now().timestamp_millis() + later.as_millis() as i64)
}
