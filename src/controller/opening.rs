//! Where a LibreChatGroup's and a LibreChatRole's reconcile start: the instance resolved, the
//! object kept on the instance it was applied to, the record of its name read and checked to
//! be its own, and an invalid spec refused only then, so a refusal still takes back what the
//! namespace may no longer hold. And where their cleanup starts: the records the object holds,
//! found by its uid, not by its spec's name (which an API server without the CEL immutability
//! rules lets change).

use std::time::Duration;

use kube::{Resource, ResourceExt};

use super::access::{self, Held, Verdict};
use super::context::Context;
use super::error::ReconcileError;
use super::instance::resync_period;
use super::target::{self, Target};
use super::tenancy::{owner_of, Tenancy};
use crate::api::common::{reason, InstanceRef};
use crate::librechat::access::{AccessRecord, HANDED_OVER};

/// A group or role whose reconcile may go on: what both kinds hold from then on.
pub struct Opened {
    pub target: Target,
    pub tenancy: Tenancy,
    pub key: String,
    pub uid: String,
    /// The record of the name, this object's (another's ended the reconcile).
    pub record: Option<AccessRecord>,
    pub resync: Duration,
}

impl Opened {
    pub fn held(&self) -> Held<'_> {
        Held {
            store: &self.target.stores.store,
            key: &self.key,
            uid: &self.uid,
            record: self.record.as_ref(),
            tenancy: &self.tenancy,
            resync: self.resync,
        }
    }
}

/// How often a group or role on `target`'s instance is looked at again when settled.
pub fn resync(ctx: &Context, target: &Target) -> Duration {
    resync_period(&target.instance, ctx.settings.default_resync)
}

/// What an object needs to open: its instance reference, the key of its name's record, why
/// its spec is invalid if it is, and its message when another object holds the name.
pub struct Opening<'a, K> {
    pub object: &'a K,
    pub instance_ref: &'a InstanceRef,
    pub key: String,
    pub invalid: Option<String>,
    pub name_taken: fn(&K, &str) -> Verdict,
}

/// Opens the reconcile, or ends it with a verdict (no instance, applied to another instance,
/// the name held by another object, an invalid spec). `instance` is the status's record of
/// the instance the object was applied to, set here.
pub async fn open<K: Resource<DynamicType = ()>>(
    ctx: &Context,
    opening: Opening<'_, K>,
    instance: &mut Option<String>,
) -> Result<Result<Opened, Verdict>, ReconcileError> {
    let namespace = opening.object.namespace().unwrap_or_default();
    let target = match target::resolve(ctx, opening.instance_ref, opening.object.meta()).await? {
        Ok(t) => t,
        Err(p) => {
            let kept_on = target::promises_kept_on(ctx, &p, opening.instance_ref, &namespace);
            let kept_on = kept_on.await;
            let verdict = access::invalid_or_waiting(opening.invalid, p);
            return Ok(Err(match kept_on {
                Some(target) => refuse_taken_out(ctx, &target, opening.object, verdict).await,
                None => verdict,
            }));
        }
    };
    let uid = opening.object.uid().unwrap_or_default();
    let store = &target.stores.store;
    let holds_here = || async { Ok(!store.access_records_of(&uid).await?.is_empty()) };
    let elsewhere = target::applied_elsewhere::<ReconcileError, _>(
        instance.as_deref(),
        &target.instance,
        holds_here,
    );
    if let Some(why) = elsewhere.await? {
        return Ok(Err(Verdict::refused(reason::INVALID_SPEC, why, None)));
    }
    *instance = Some(target::instance_key(&target.instance));
    let tenancy = Tenancy::of(&target.instance, &namespace);
    let mut record = target.stores.store.access_record(&opening.key).await?;
    let handed = record.as_ref().is_some_and(|r| r.owner.uid == HANDED_OVER);
    if handed && tenancy.administers {
        let owner = owner_of(opening.object);
        record = target
            .stores
            .store
            .take_over_handed(&opening.key, &owner)
            .await?;
    }
    if let Some(r) = record.as_ref().filter(|r| r.owner.uid != uid) {
        return Ok(Err((opening.name_taken)(
            opening.object,
            &tenancy.names(&r.owner),
        )));
    }
    if record.is_none() {
        let held = target.stores.store.access_records_of(&uid).await?;
        if let Some((other, _)) = held.iter().find(|(k, _)| *k != opening.key) {
            let message = format!("the name is immutable: this object declares {other}; create a new object for another name. Nothing was written");
            return Ok(Err(Verdict::refused(reason::INVALID_SPEC, message, None)));
        }
    }
    let opened = Opened {
        resync: resync(ctx, &target),
        target,
        tenancy,
        key: opening.key,
        uid,
        record,
    };
    if let Some(why) = opening.invalid {
        return Ok(Err(opened.held().refuse(access::invalid_spec(why)).await?));
    }
    Ok(Ok(opened))
}

/// An object of a namespace taken out of `allowedNamespaces` (see
/// [`target::promises_kept_on`]) writes nothing new, but each of its records is refused as any
/// refusal is: the cache drops it owes are made, and what the namespace may no longer give is
/// taken back (grants whose sharer left its hands, members it no longer manages), or the
/// refusal the administrators use to revoke a team would keep those shares in force. Looked
/// at again at the resync, not every few seconds: the instance's changes wake it.
async fn refuse_taken_out<K: ResourceExt>(
    ctx: &Context,
    target: &Target,
    object: &K,
    refusal: Verdict,
) -> Verdict {
    let namespace = object.namespace().unwrap_or_default();
    let uid = object.uid().unwrap_or_default();
    let tenancy = Tenancy::of(&target.instance, &namespace);
    let store = &target.stores.store;
    let resync = resync(ctx, target);
    let mut verdict = Verdict {
        requeue: Some(resync),
        ..refusal
    };
    let records = match store.access_records_of(&uid).await {
        Ok(records) => records,
        Err(e) => return retry_soon(verdict, &e),
    };
    for (key, record) in &records {
        let held = Held {
            store,
            key,
            uid: &uid,
            record: Some(record),
            tenancy: &tenancy,
            resync,
        };
        let fallback = verdict.clone();
        verdict = match held.refuse(verdict).await {
            Ok(v) => v,
            Err(e) => return retry_soon(fallback, &e),
        };
    }
    verdict
}

/// The refusal is reported all the same; what it owes is tried again shortly.
fn retry_soon(mut verdict: Verdict, error: &crate::librechat::StoreError) -> Verdict {
    tracing::warn!(%error, "could not yet finish what a refused object owes");
    verdict.requeue = Some(access::RETRY_PENDING);
    verdict
}

/// The instance of an object being deleted and the records it holds there (`key` prefixed
/// `kind:`, with the name after it); `None` when there is nothing to undo (see
/// [`target::cleanup_target`]; `recorded` is the status's record of the instance).
pub async fn records_to_undo<K: ResourceExt>(
    ctx: &Context,
    object: &K,
    (instance_ref, recorded): (&InstanceRef, Option<&str>),
    (kind, undoing): (&str, &str),
) -> Result<Option<(Target, Vec<HeldRecord>)>, ReconcileError> {
    let namespace = object.namespace().unwrap_or_default();
    let at = (recorded, undoing);
    let Some(target) = target::cleanup_target(ctx, instance_ref, &namespace, at).await? else {
        return Ok(None);
    };
    let uid = object.uid().unwrap_or_default();
    let prefix = format!("{kind}:");
    let held = target.stores.store.access_records_of(&uid).await?;
    let records = held
        .into_iter()
        .filter_map(|(key, record)| {
            let name = key.strip_prefix(&prefix)?.to_string();
            Some(HeldRecord { name, key, record })
        })
        .collect();
    Ok(Some((target, records)))
}

/// One record an object holds: the group's or role's name, the record's key, the record.
pub struct HeldRecord {
    pub name: String,
    pub key: String,
    pub record: AccessRecord,
}
