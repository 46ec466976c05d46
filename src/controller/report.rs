//! Reporting back on an object: conditions merged, status written only when it changed, and
//! an event when `Ready` fails for a new reason or recovers (an instance outage is told by the
//! instance alone). Shared by every kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::context::Context;
use super::status::write_status;
use crate::api::common::{
    condition, find_condition, merge_conditions, progress_conditions, Cond, STALLED_REASONS,
};
use crate::api::{LibreChatInstance, LibreChatUser, UserBan, UserInvite};

/// A kind whose status carries `observedGeneration` and conditions.
pub trait Reported:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug
{
    type Status: Serialize + PartialEq + Clone + Default;
    fn current(&self) -> Option<&Self::Status>;
    fn conditions(status: &Self::Status) -> &[Condition];
    fn stamp(status: &mut Self::Status, generation: Option<i64>, conditions: Vec<Condition>);
}

macro_rules! reported {
    ($($kind:ty => $status:ty),* $(,)?) => {$(
        impl Reported for $kind {
            type Status = $status;
            fn current(&self) -> Option<&$status> {
                self.status.as_ref()
            }
            fn conditions(status: &$status) -> &[Condition] {
                &status.conditions
            }
            fn stamp(status: &mut $status, generation: Option<i64>, conditions: Vec<Condition>) {
                status.observed_generation = generation;
                status.conditions = conditions;
            }
        }
    )*};
}

reported! {
    LibreChatInstance => crate::api::LibreChatInstanceStatus,
    LibreChatUser => crate::api::LibreChatUserStatus,
    UserBan => crate::api::UserBanStatus,
    UserInvite => crate::api::UserInviteStatus,
    crate::api::LibreChatGroup => crate::api::LibreChatGroupStatus,
    crate::api::LibreChatRole => crate::api::LibreChatRoleStatus,
}

/// Before the slow work on a new generation, says so: `observedGeneration` is the new one and
/// `Reconciling=True`, so kstatus (Flux's `wait`, Argo CD) never takes the previous
/// generation's `Ready` (or `Stalled`) for this one's. One write per generation; a resync
/// writes nothing. An object never reported on has no verdict to correct: its first status is
/// its outcome (a cold start of thousands of objects saves a write each).
pub async fn begin<K: Reported>(api: &Api<K>, obj: &K) -> Result<(), kube::Error> {
    let generation = obj.meta().generation;
    let Some(current) = obj.current() else {
        return Ok(());
    };
    let conditions = K::conditions(current);
    let seen = find_condition(conditions, condition::RECONCILING)
        .is_some_and(|c| c.observed_generation == generation);
    if seen {
        return Ok(());
    }
    let mut status = current.clone();
    let message = format!("applying generation {}", generation.unwrap_or_default());
    let wanted = [
        Cond::new(condition::RECONCILING, true, "Progressing", message),
        Cond::new(
            condition::STALLED,
            false,
            "Progressing",
            "a new generation is being applied",
        ),
    ];
    K::stamp(
        &mut status,
        generation,
        merge_conditions(conditions, &wanted, generation),
    );
    super::status::write_status(api, obj, Some(current), &status).await?;
    Ok(())
}

/// A cleanup that cannot finish now (`message`, what to do): said in status and an event
/// (`Ready=False`, `DeleteBlocked`), as a blocked user, ban or invitation deletion says it,
/// and retried.
pub async fn deletion_blocked<K: Reported>(
    api: &Api<K>,
    ctx: &Context,
    obj: &K,
    message: String,
) -> Result<kube::runtime::controller::Action, super::error::ReconcileError> {
    let status = obj.current().cloned().unwrap_or_default();
    let blocked = Cond::new(
        condition::READY,
        false,
        crate::api::common::reason::DELETE_BLOCKED,
        message.clone(),
    );
    report(api, ctx, obj, status, &[blocked]).await?;
    Err(super::error::ReconcileError::Blocked(message))
}

/// What a reconcile that reported its outcome returns: the store error it met (retried with
/// backoff), or the next look: after `requeue`, or (`None`) only when something watched
/// changes, for states a person must fix.
pub fn next_action(
    error: Option<super::error::ReconcileError>,
    requeue: Option<std::time::Duration>,
) -> Result<kube::runtime::controller::Action, super::error::ReconcileError> {
    use kube::runtime::controller::Action;
    match (error, requeue) {
        (Some(e), _) => Err(e),
        (None, Some(after)) => Ok(Action::requeue(spread(after))),
        (None, None) => Ok(Action::await_change()),
    }
}

/// A look-again time drawn from the last fifth of `period`: never later than the period
/// promises, and objects reconciled together (a cold start, an instance change) do not all
/// come due in the same second. Such a herd of thousands would otherwise queue ahead of a
/// deletion or a ban applied meanwhile for as long as the whole resync takes.
pub fn spread(period: std::time::Duration) -> std::time::Duration {
    use rand::Rng;
    period.mul_f64(rand::thread_rng().gen_range(0.8..=1.0))
}

/// Writes `status` with `wanted` merged into the object's conditions, for the object's current
/// generation. Returns whether anything was written.
pub async fn report<K: Reported>(
    api: &Api<K>,
    ctx: &Context,
    obj: &K,
    mut status: K::Status,
    wanted: &[Cond],
) -> Result<bool, kube::Error> {
    let current = obj.current();
    let generation = obj.meta().generation;
    let existing = current.map(K::conditions).unwrap_or_default();
    let previous = find_condition(existing, condition::READY).cloned();
    let mut wanted = wanted.to_vec();
    if let Some(ready) = wanted.iter().find(|c| c.type_ == condition::READY) {
        wanted.extend(progress_conditions(ready));
    }
    let wanted = wanted.as_slice();
    K::stamp(
        &mut status,
        generation,
        merge_conditions(existing, wanted, generation),
    );
    let wrote = write_status(api, obj, current, &status).await?;
    if let Some(ready) = wanted.iter().find(|c| c.type_ == condition::READY) {
        let ok = ready.ok == Some(true);
        match previous {
            // The instance's outage is told once, by the instance's own event; each
            // dependent's status names it. An event on every one of thousands of dependents,
            // going down and again coming back, would only load the API server (and fill
            // etcd) just as the instance recovers.
            _ if waits_for_instance(ready, previous.as_ref()) => {}
            // A new failure, or a failure for another reason: tell whoever watches events.
            p if !ok
                && p.as_ref()
                    .is_none_or(|p| p.reason != ready.reason || p.status == "True") =>
            {
                // A new object waiting for what a sync applies moments later (its instance,
                // a Secret) is not a warning; a problem for a person, or a regression, is.
                let stalled = STALLED_REASONS.contains(&ready.reason.as_str());
                let warning = stalled || p.is_some();
                ctx.event(obj, warning, &ready.reason, ready.message.clone())
                    .await;
            }
            // Back to Ready after a failure.
            Some(p) if ok && p.status != "True" => {
                ctx.event(obj, false, &ready.reason, ready.message.clone())
                    .await
            }
            _ => {}
        }
    }
    Ok(wrote)
}

/// Whether `ready` only follows the instance: waiting for it, or back from waiting for it.
fn waits_for_instance(ready: &Cond, previous: Option<&Condition>) -> bool {
    let waiting = |reason: &str| reason == crate::api::common::reason::INSTANCE_NOT_READY;
    match ready.ok {
        Some(true) => previous.is_some_and(|p| p.status != "True" && waiting(&p.reason)),
        _ => waiting(&ready.reason),
    }
}

#[cfg(test)]
mod tests {
    use super::{spread, waits_for_instance};
    use crate::api::common::{condition, merge_conditions, reason, Cond};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;

    fn was(status: &str, why: &str) -> Condition {
        let ok = status == "True";
        let cond = Cond::new(condition::READY, ok, why, "m");
        merge_conditions(&[], &[cond], None).remove(0)
    }

    #[test]
    fn only_waiting_for_the_instance_and_coming_back_from_it_are_left_to_the_instance() {
        let waiting = Cond::new(condition::READY, false, reason::INSTANCE_NOT_READY, "w");
        let ready = Cond::new(condition::READY, true, "Reconciled", "ok");
        let broken = Cond::new(condition::READY, false, reason::STORE_ERROR, "e");
        assert!(waits_for_instance(&waiting, None));
        assert!(waits_for_instance(
            &waiting,
            Some(&was("True", "Reconciled"))
        ));
        assert!(waits_for_instance(
            &ready,
            Some(&was("False", reason::INSTANCE_NOT_READY))
        ));
        // Anything the object met by itself is still its own event.
        assert!(!waits_for_instance(
            &broken,
            Some(&was("True", "Reconciled"))
        ));
        assert!(!waits_for_instance(
            &ready,
            Some(&was("False", reason::STORE_ERROR))
        ));
        assert!(!waits_for_instance(
            &ready,
            Some(&was("True", reason::INSTANCE_NOT_READY))
        ));
    }

    use std::time::Duration;

    #[test]
    fn resyncs_are_spread_over_the_last_fifth_of_the_period_and_never_late() {
        let period = Duration::from_secs(300);
        let drawn: Vec<Duration> = (0..200).map(|_| spread(period)).collect();
        assert!(drawn
            .iter()
            .all(|d| *d >= period.mul_f64(0.8) && *d <= period));
        let earliest = drawn.iter().min().unwrap();
        let latest = drawn.iter().max().unwrap();
        assert!(
            *latest - *earliest > Duration::from_secs(30),
            "a herd stays a herd"
        );
    }
}
