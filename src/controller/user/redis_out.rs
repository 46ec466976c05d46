//! An existing account while only its instance's Redis is out. Nothing is written to it then:
//! LibreChat may serve a cached copy the operator could not drop. But an account that needs no
//! write at all stays Ready, whichever operator process verified it before: the outage changes
//! nothing LibreChat serves of it, and turning every settled object not Ready and back again
//! would cost two status writes each, the bulk of what a take-over after an outage has to do.
//!
//! Only reads happen here; the checks mirror the converge steps' own conditions for writing.

use super::{account, actions, Outcome, Plan};
use crate::api::LibreChatUser;
use crate::controller::error::ReconcileError;
use crate::librechat::ownership::Claim;
use crate::librechat::users::StoredUser;

/// What an existing account reports while only Redis is out (`None`: Redis is not out, go on):
/// Ready when converging would write nothing to it, else waiting for Redis.
pub(super) async fn while_out(
    plan: &Plan,
    claim: &Claim,
    stored: &StoredUser,
    user: &LibreChatUser,
) -> Result<Option<Outcome>, ReconcileError> {
    if plan.redis_out.is_none() {
        return Ok(None);
    }
    // Sessions a password change or a move off local sign-in ended stay ended: that needs
    // MongoDB alone, and waits for no Redis.
    if claim.user_id == Some(stored.id) {
        plan.store().finish_owed_revocation(claim, stored).await?;
    }
    if let Some(unchanged) = unchanged(plan, claim, stored, user).await? {
        return Ok(Some(unchanged));
    }
    Ok(waiting(plan, user))
}

/// What an account that needs a write reports while Redis is out (`None`: Redis is not out).
pub(super) fn waiting(plan: &Plan, user: &LibreChatUser) -> Option<Outcome> {
    let out = plan.redis_out.as_ref()?;
    Some(Outcome::waiting(out.reason, out.message.clone(), user))
}

/// The in-sync outcome when no converge step would write to the account; `None` when one
/// would (or might: declared plugins are compared only on the full path), or when the
/// object's spec changed since its status was last written: what status mirrors of actions and
/// verification is computed on the full path, so a new generation waits for it.
async fn unchanged(
    plan: &Plan,
    claim: &Claim,
    stored: &StoredUser,
    user: &LibreChatUser,
) -> Result<Option<Outcome>, ReconcileError> {
    // The claim's own account, nothing owed on it: no adoption, no follow-up to finish.
    let owes = !claim.follow_ups.is_empty() || claim.role_check.is_some();
    let own = claim.user_id == Some(stored.id) && claim.confirmed && !owes;
    let as_declared = account::matches_declaration(plan, stored);
    let password_applied =
        !plan.declares_password() || account::password_applied_to(plan, user, stored.id);
    let meta_generation = user.metadata.generation;
    let observed = user.status.as_ref().and_then(|s| s.observed_generation);
    let quiet = own
        && observed == meta_generation
        && as_declared
        && password_applied
        && actions::nothing_due(claim, stored, user)
        && account::may_write_as_is(plan, claim, stored).await?;
    if !quiet || !super::plugins::nothing_to_apply(plan, stored.id).await? {
        return Ok(None);
    }
    let Some(balance) = super::balance::unchanged_balance(plan, claim, user, stored.id).await?
    else {
        return Ok(None);
    };
    Ok(Some(account::in_sync_with(plan, user, stored, balance)))
}
