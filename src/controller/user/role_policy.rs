//! Which roles a tenant may put its accounts in. A role carries its permissions and its grants
//! (ACL entries on agents and prompts, system grants such as `access:admin`) to every account
//! in it, so declaring someone else's custom role is a privilege escalation like `ADMIN`.

use crate::controller::tenancy::Tenancy;
use crate::librechat::access::{role_key, AccessRecord};
use crate::librechat::permissions::is_built_in;
use crate::librechat::role_check::RoleCheck;
use crate::librechat::{Store, StoreError};

/// Why an object of `tenancy` may not hold an account in `role`, if it may not. `USER` is
/// everyone's; `ADMIN` is `allowAdmin`'s and checked apart. A tenant's custom roles are those
/// its own namespace's LibreChatRoles declare (the operator's access record names the owner)
/// and those the instance lists in `tenantPolicy.assignableRoles`. A role a tenant's
/// LibreChatRole declares is that tenant's alone: whoever holds the name sets the permissions
/// of every account in it, so neither the administrators nor another tenant put accounts in
/// it (a tenant claiming a name first must not come to govern the administrators' accounts).
///
/// Also returns, for a role a LibreChatRole declares, the check a write of it owes (see
/// `librechat::role_check`), made from the record read here: the role's deletion may finish
/// before the write.
pub(super) async fn refusal(
    store: &Store,
    tenancy: &Tenancy,
    role: &str,
) -> Result<(Option<String>, Option<RoleCheck>), StoreError> {
    if is_built_in(role) {
        return Ok((None, None));
    }
    let record = store.access_record(&role_key(role)).await?;
    let declared = record.as_ref().filter(|r| r.owner.kind == "LibreChatRole");
    let check = declared.map(|r| RoleCheck {
        role: role.to_string(),
        role_id: r.target,
    });
    Ok((refusal_given(store, tenancy, role, declared).await?, check))
}

async fn refusal_given(
    store: &Store,
    tenancy: &Tenancy,
    role: &str,
    declared: Option<&AccessRecord>,
) -> Result<Option<String>, StoreError> {
    match declared.map(|r| (r.releasing, r.owner.namespace.as_str())) {
        Some((_, namespace)) if namespace == tenancy.namespace && !tenancy.may_manage_roles => {
            // The right its roles came from is withdrawn: no account goes into them, or the
            // namespace would keep that right by keeping its LibreChatRole refused.
            Ok(Some(format!(
                "role '{role}' is declared by a LibreChatRole of namespace '{}', which the instance no longer lets manage roles (tenantPolicy.manageRoles), so its accounts are not put in it; choose another role",
                tenancy.namespace
            )))
        }
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
