//! The account's balance and terms: what the object may declare (checked before any write),
//! the balance record of a new account, per-user auto-refill, credit grants (each once,
//! see `librechat::balance`), and what status mirrors of them.

use mongodb::bson::oid::ObjectId;

use super::{Outcome, Plan};
use crate::api::balance::{AutoRefill, UserBalance, UserBalanceStatus};
use crate::api::common::reason;
use crate::api::{LibreChatInstance, LibreChatUser};
use crate::controller::audit::Change;
use crate::controller::context::Context;
use crate::controller::error::ReconcileError;
use crate::controller::status::rfc3339_from_millis;
use crate::controller::target;
use crate::librechat::balance::{
    grant_scope, grant_transaction_id, BalanceConfig, GrantResult, Refill, RefillUpdate,
    StoredBalance,
};
use crate::librechat::ownership::Claim;
use crate::librechat::users::StoredUser;
use crate::librechat::StoreError;

/// What status shows of the account's terms and balance.
#[derive(Clone, Debug, Default, PartialEq)]
pub(super) struct Mirror {
    pub terms_accepted: bool,
    pub terms_accepted_at: Option<String>,
    pub balance: Option<UserBalanceStatus>,
}

impl Mirror {
    pub fn of(stored: &StoredUser) -> Self {
        Mirror {
            terms_accepted: stored.terms_accepted,
            terms_accepted_at: stored
                .terms_accepted_at
                .and_then(|t| rfc3339_from_millis(t.timestamp_millis())),
            balance: None,
        }
    }

    pub fn write_into(self, status: &mut crate::api::LibreChatUserStatus) {
        status.terms_accepted = Some(self.terms_accepted);
        status.terms_accepted_at = self.terms_accepted_at;
        if self.balance.is_some() {
            status.balance = self.balance;
        }
    }
}

pub(super) fn declared(user: &LibreChatUser) -> Option<&UserBalance> {
    user.spec
        .balance
        .as_ref()
        .filter(|b| !b.grants.is_empty() || b.auto_refill.is_some())
}

/// Why the object may not declare its balance here, if it may not (nothing is written then).
pub(super) fn refusal(plan: &Plan, user: &LibreChatUser) -> Option<Outcome> {
    declared(user)?;
    if !plan.instance.spec.balance_config().enabled() {
        let message = "spec.balance needs LibreChat's balance: set balance.enabled: true on the instance (as in librechat.yaml); nothing was written";
        return Some(Outcome::stalled(reason::BALANCE_DISABLED, message, user));
    }
    if !plan.tenancy.may_grant_credits {
        let message = format!(
            "spec.balance (credit grants, auto-refill) is not allowed from namespace '{}': {} unless the instance's tenantPolicy.grantCredits is true. Nothing it declares is written (auto-refill settings it set before are put back)",
            plan.tenancy.namespace,
            plan.tenancy.who_may("grant credits")
        );
        return Some(Outcome::stalled(reason::NOT_PERMITTED, message, user));
    }
    None
}

/// The balance record LibreChat's registration gives a new account, when its balance config
/// would: enabled with a non-zero start balance. Safe to repeat.
pub(super) async fn start_balance(
    ctx: &Context,
    plan: &Plan,
    user: &LibreChatUser,
    id: ObjectId,
) -> Result<(), ReconcileError> {
    let config = plan.instance.spec.balance_config();
    if !config.enabled() || config.start_balance() == 0 {
        return Ok(());
    }
    let refill = config.auto_refill().map(refill_of).unwrap_or_default();
    let store = plan.store();
    if store
        .ensure_balance_record(id, config.start_balance(), &refill)
        .await?
    {
        let note = format!(
            "gave {} the start balance of {} credits",
            plan.email,
            config.start_balance()
        );
        ctx.changed(user, plan.change("BalanceCreated", id, note))
            .await;
    }
    Ok(())
}

/// What LibreChat's balance configuration, as the instance mirrors it, gives and keeps.
fn librechat_config(plan: &Plan) -> BalanceConfig {
    let config = plan.instance.spec.balance_config();
    BalanceConfig {
        start_balance: config.start_balance(),
        yaml_refill: config.auto_refill().map(refill_of),
    }
}

fn refill_of(r: AutoRefill) -> Refill {
    let d = Refill::default();
    Refill {
        enabled: r.enabled.unwrap_or(d.enabled),
        interval_value: r.interval_value.unwrap_or(d.interval_value),
        interval_unit: r
            .interval_unit
            .map(|u| u.as_str().to_string())
            .unwrap_or(d.interval_unit),
        amount: r.amount.unwrap_or(d.amount),
    }
}

fn refill_update(r: &AutoRefill) -> RefillUpdate {
    RefillUpdate {
        enabled: r.enabled,
        interval_value: r.interval_value,
        interval_unit: r.interval_unit.map(|u| u.as_str().to_string()),
        amount: r.amount,
    }
}

/// Applies the declared auto-refill settings and every grant not yet applied. Returns the
/// status to show and whether anything was written.
pub(super) async fn converge(
    ctx: &Context,
    plan: &Plan,
    claim: &Claim,
    user: &LibreChatUser,
    id: ObjectId,
) -> Result<(Option<UserBalanceStatus>, bool), ReconcileError> {
    let mut wrote = converge_refill(ctx, plan, claim, user, id).await?;
    let Some(declared) = declared(user) else {
        return Ok((observe(plan, user, id).await?, wrote));
    };
    let store = plan.store();
    let ids = grant_ids(plan, claim, declared, id);
    let due = grants_due(plan, id, &ids).await?;
    let granting: Vec<ObjectId> = due.iter().flatten().copied().collect();
    for (grant, tx) in declared.grants.iter().zip(due) {
        let Some(tx) = tx else {
            continue;
        };
        // problems() refused non-integer credits before anything was written.
        let credits = grant.credits().unwrap_or_default();
        // Credited now, or by a reconcile that crashed before its audit line (which is written
        // only once the grant is finished): either way the audit trail gets it now, once.
        let result = store.apply_grant(id, tx, credits, &granting).await?;
        let verb = match result {
            GrantResult::Applied => "granted",
            GrantResult::AlreadyApplied { .. } => "finished granting",
        };
        let credits = result.credited(credits);
        let why = grant
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let note = format!(
            "{verb} {credits} credits to {} (grant '{}'){why}",
            plan.email, grant.id
        );
        ctx.changed(user, plan.change("CreditsGranted", id, note))
            .await;
        wrote = true;
    }
    // Every declared grant is given now; the claim remembers them beyond this account.
    let unrecorded: Vec<&str> = declared
        .grants
        .iter()
        .zip(&ids)
        .filter(|(_, ids)| !ids.given)
        .map(|(g, _)| g.id.as_str())
        .collect();
    store
        .record_grants_given(&claim.email, &claim.owner.uid, &unrecorded)
        .await?;
    Ok((observe(plan, user, id).await?, wrote))
}

/// Applies the declared auto-refill settings, or puts back those the object wrote before and
/// no longer declares. Returns whether the balance record was written.
async fn converge_refill(
    ctx: &Context,
    plan: &Plan,
    claim: &Claim,
    user: &LibreChatUser,
    id: ObjectId,
) -> Result<bool, ReconcileError> {
    let store = plan.store();
    let change = match declared(user).and_then(|b| b.auto_refill.as_ref()) {
        Some(refill) => {
            let update = refill_update(refill);
            let set = store
                .set_refill(claim, id, &update, &librechat_config(plan))
                .await?;
            let note = format!("set the auto-refill settings of {}", plan.email);
            set.then(|| plan.change("AutoRefillSet", id, note))
        }
        None => {
            let put_back = store.withdraw_refill(claim).await?;
            put_back.then(|| refill_withdrawn(&plan.instance, id, &plan.email))
        }
    };
    let Some(change) = change else {
        return Ok(false);
    };
    ctx.changed(user, change).await;
    Ok(true)
}

/// The audit entry of auto-refill settings put back as they were before the object set them.
pub(super) fn refill_withdrawn(instance: &LibreChatInstance, id: ObjectId, email: &str) -> Change {
    let note = format!(
        "put back the auto-refill settings of {email} as they were before this object set them"
    );
    Change::applied(
        "AutoRefillWithdrawn",
        target::instance_key(instance),
        Some(id.to_hex()),
        note,
    )
}

/// A declared grant's transaction ids: by its scope (object and account), and by the
/// object's uid, which grants applied before the scope were keyed by; and whether the claim
/// records it given (to this account or to one LibreChat deleted since).
struct GrantIds {
    scoped: ObjectId,
    by_uid: ObjectId,
    given: bool,
}

/// The ids of each declared grant, in declaration order.
fn grant_ids(
    plan: &Plan,
    claim: &Claim,
    declared: &UserBalance,
    account: ObjectId,
) -> Vec<GrantIds> {
    let scope = grant_scope(&plan.owner.namespace, &plan.owner.name, account);
    declared
        .grants
        .iter()
        .map(|g| GrantIds {
            scoped: grant_transaction_id(&scope, &g.id),
            by_uid: grant_transaction_id(&plan.owner.uid, &g.id),
            given: claim.grants_given.contains(&g.id),
        })
        .collect()
}

/// For each grant, the transaction still to apply (`None`: finished): one cut short (the
/// balance still carries its mark) is finished under its own id; one the claim records given,
/// or saved under either id, is done; any other is applied under its scoped id.
async fn grants_due(
    plan: &Plan,
    account: ObjectId,
    grants: &[GrantIds],
) -> Result<Vec<Option<ObjectId>>, StoreError> {
    if grants.is_empty() {
        return Ok(Vec::new());
    }
    let store = plan.store();
    let all: Vec<ObjectId> = grants.iter().flat_map(|g| [g.scoped, g.by_uid]).collect();
    let earlier: Vec<ObjectId> = grants.iter().map(|g| g.by_uid).collect();
    let saved = store.finished_grants(&all, &earlier).await?;
    let marked = match store.find_balance(account).await? {
        Some(b) => b.pending_transaction(),
        None => None,
    };
    Ok(grants
        .iter()
        .map(|g| match marked {
            Some(m) if m == g.scoped || m == g.by_uid => Some(m),
            _ if g.given || saved.contains(&g.scoped) || saved.contains(&g.by_uid) => None,
            _ => Some(g.scoped),
        })
        .collect())
}

/// The balance status when converging would write nothing to the balance (every declared grant
/// finished, the auto-refill settings as declared); `None` otherwise.
pub(super) async fn unchanged_balance(
    plan: &Plan,
    claim: &Claim,
    user: &LibreChatUser,
    id: ObjectId,
) -> Result<Option<Option<UserBalanceStatus>>, StoreError> {
    let refill_declared = declared(user).is_some_and(|b| b.auto_refill.is_some());
    if claim.refill.is_some() && !refill_declared {
        // Settings it wrote and no longer declares: to be put back.
        return Ok(None);
    }
    if let Some(declared) = declared(user) {
        let due = grants_due(plan, id, &grant_ids(plan, claim, declared, id)).await?;
        if due.iter().any(Option::is_some) {
            return Ok(None);
        }
    }
    settled_balance(plan, user, id).await
}

/// The balance status, read from LibreChat (`None` when LibreChat's balance is off). Grants
/// count as applied once converge has run for this generation.
pub(super) async fn observe(
    plan: &Plan,
    user: &LibreChatUser,
    id: ObjectId,
) -> Result<Option<UserBalanceStatus>, StoreError> {
    if !plan.instance.spec.balance_config().enabled() {
        return Ok(None);
    }
    let stored = plan.store().find_balance(id).await?;
    Ok(Some(status_of(stored.as_ref(), user)))
}

fn status_of(stored: Option<&StoredBalance>, user: &LibreChatUser) -> UserBalanceStatus {
    UserBalanceStatus {
        token_credits: stored.map(|b| b.token_credits),
        grants_applied: declared(user)
            .map(|b| b.grants.iter().map(|g| g.id.clone()).collect())
            .unwrap_or_default(),
    }
}

/// For the settled shortcut: the balance status, or `None` when the stored auto-refill
/// settings no longer match the declaration, so the full path puts them back; but not over
/// the yaml's settings, which LibreChat's login sync writes when its yaml enables auto-refill
/// (LibreChat's decision, see `Store::set_refill`). One read, shared with status.
pub(super) async fn settled_balance(
    plan: &Plan,
    user: &LibreChatUser,
    id: ObjectId,
) -> Result<Option<Option<UserBalanceStatus>>, StoreError> {
    let Some(refill) = declared(user).and_then(|b| b.auto_refill.as_ref()) else {
        return observe(plan, user, id).await.map(Some);
    };
    let stored = plan.store().find_balance(id).await?;
    let config = librechat_config(plan);
    Ok(stored
        .filter(|s| {
            refill_update(refill).matches(&s.refill) || config.synced_by_librechat(&s.refill)
        })
        .map(|s| Some(status_of(Some(&s), user))))
}
