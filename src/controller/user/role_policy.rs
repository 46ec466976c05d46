//! Which roles a tenant may put its accounts in. A role carries its permissions and its grants
//! (ACL entries on agents and prompts, system grants such as `access:admin`) to every account
//! in it, so declaring someone else's custom role is a privilege escalation like `ADMIN`.

use super::Plan;
use crate::controller::tenancy::Tenancy;
use crate::librechat::access::role_key;
use crate::librechat::ownership::{Claim, FollowUp};
use crate::librechat::permissions::is_built_in;
use crate::librechat::users::StoredUser;
use crate::librechat::{Store, StoreError};

/// Why an object of `tenancy` may not hold an account in `role`, if it may not. `USER` is
/// everyone's; `ADMIN` is `allowAdmin`'s and checked apart. A tenant's custom roles are those
/// its own namespace's LibreChatRoles declare (the operator's access record names the owner)
/// and those the instance lists in `tenantPolicy.assignableRoles`. A role a tenant's
/// LibreChatRole declares is that tenant's alone: whoever holds the name sets the permissions
/// of every account in it, so neither the administrators nor another tenant put accounts in
/// it (a tenant claiming a name first must not come to govern the administrators' accounts).
pub(super) async fn refusal(
    store: &Store,
    tenancy: &Tenancy,
    role: &str,
) -> Result<Option<String>, StoreError> {
    if is_built_in(role) {
        return Ok(None);
    }
    let record = store.access_record(&role_key(role)).await?;
    let declared = record.as_ref().filter(|r| r.owner.kind == "LibreChatRole");
    match declared.map(|r| (r.releasing, r.owner.namespace.as_str())) {
        Some((releasing, namespace)) if namespace == tenancy.namespace => {
            // Only while LibreChat has it: not before it is created, nor once its deletion
            // began (which moves its accounts to USER) until the name is released, nor once
            // LibreChat's admins replaced it under the name.
            if tenancy.administers || (!releasing && tenancy.owns_role(store, role).await?) {
                return Ok(None);
            }
            Ok(Some(format!(
                "role '{role}' is declared by a LibreChatRole in namespace '{}' but LibreChat does not have the role it created (not created yet, being deleted, or replaced in LibreChat under the name); waiting for it",
                tenancy.namespace
            )))
        }
        Some((_, namespace)) if namespace != tenancy.instance_namespace => {
            Ok(Some(tenants_role(tenancy, role, namespace)))
        }
        _ if tenancy.administers || tenancy.lists_assignable(role) => Ok(None),
        _ => Ok(Some(format!(
            "role '{role}' is neither declared by a LibreChatRole in namespace '{}' nor listed in the instance's tenantPolicy.assignableRoles, so its accounts may not be put in it: {}",
            tenancy.namespace,
            tenancy.who_may("assign other roles")
        ))),
    }
}

/// Why a role a tenant's LibreChatRole declares is not for an object of another namespace.
/// The administrators read which namespace holds it; a tenant reads only that another does.
fn tenants_role(tenancy: &Tenancy, role: &str, holder: &str) -> String {
    let held_by = match tenancy.administers {
        true => format!("namespace '{holder}'"),
        false => "another namespace".to_string(),
    };
    format!(
        "role '{role}' is declared by a LibreChatRole of {held_by}, which sets the permissions of every account in it, so accounts of namespace '{}' are not put in it; choose another role (a LibreChatRole of this instance's namespace for the administrators' roles)",
        tenancy.namespace
    )
}

/// Whether writing `role` to an account promises [`FollowUp::CheckRole`]: a custom role may
/// stop being the object's to hold between the policy's read and the write.
pub(super) fn checked_after_write(role: &str) -> bool {
    !is_built_in(role)
}

/// Checks again, after the account `stored` was written with the custom role `role`, that
/// the role is still the object's to hold, and records the promised check as done. The policy
/// was read before the write; a role whose deletion began in between has moved its accounts
/// to USER already and would leave this one in a role LibreChat no longer has (denied
/// everything, the name blocked for every team, and inherited by whoever declares it next).
/// The deletion marks the role `releasing` before it moves accounts, so either it moves this
/// one or this check sees the mark. Returns why the account moved, if it did.
pub(super) async fn recheck_after_write(
    plan: &Plan,
    stored: &StoredUser,
    role: &str,
) -> Result<Option<String>, StoreError> {
    let (store, email, owner) = (plan.store(), &plan.email, &plan.owner.uid);
    let moved = leave_if_refused(store, &plan.tenancy, email, owner, stored, role).await?;
    store.fulfilled(email, owner, FollowUp::CheckRole).await?;
    Ok(moved)
}

/// The check a role write promised that a crash or a failed call cut short (see
/// [`recheck_after_write`]), for an object that may be refused before it reaches its account
/// again: without it, the refusal (the role being deleted) would keep the account in the
/// role for good. Only the role the object declares is checked, the one it wrote: a role
/// LibreChat's admins moved the account to since is theirs to decide. `claim` is updated to
/// what it still owes. Returns why the account moved, if it did.
pub(super) async fn finish_owed_check(
    store: &Store,
    tenancy: &Tenancy,
    claim: &mut Claim,
    declared: Option<&str>,
) -> Result<Option<String>, StoreError> {
    if !claim.follow_ups.contains(&FollowUp::CheckRole) {
        return Ok(None);
    }
    let stored = match claim.user_id {
        Some(id) => store.find_user_by_id(id).await?,
        None => None,
    };
    let written = stored.filter(|s| s.role.is_some() && s.role.as_deref() == declared);
    let (email, owner) = (claim.email.clone(), claim.owner.uid.clone());
    let moved = match (written, declared) {
        (Some(stored), Some(role)) if checked_after_write(role) => {
            leave_if_refused(store, tenancy, &email, &owner, &stored, role).await?
        }
        _ => None,
    };
    store.fulfilled(&email, &owner, FollowUp::CheckRole).await?;
    let dropped = moved.is_some();
    claim
        .follow_ups
        .retain(|f| *f != FollowUp::CheckRole && !(dropped && *f == FollowUp::DropCaches));
    Ok(moved)
}

/// Moves `stored` out of `role` to USER, as the role's deletion would, if `tenancy` may not
/// hold accounts in it; its caches dropped (promised before the move, as every role change's
/// is). Returns why, if it moved.
async fn leave_if_refused(
    store: &Store,
    tenancy: &Tenancy,
    email: &str,
    owner: &str,
    stored: &StoredUser,
    role: &str,
) -> Result<Option<String>, StoreError> {
    let Some(why) = refusal(store, tenancy, role).await? else {
        return Ok(None);
    };
    store.promise(email, owner, FollowUp::DropCaches).await?;
    store.leave_role(stored.id, role).await?;
    store.drop_user_caches(stored).await?;
    store.fulfilled(email, owner, FollowUp::DropCaches).await?;
    Ok(Some(why))
}
