//! LibreChat v0.8.8's role permissions (contract-surface §5.3): every permission type and its
//! keys, which librechat.yaml `interface` key imposes each type at startup, and the names
//! LibreChat accepts for a role.

use std::collections::BTreeMap;

/// The built-in roles; LibreChat creates them at startup and refuses custom roles so named.
pub const BUILT_IN_ROLES: &[&str] = &["USER", "ADMIN"];

/// `(permission type, its keys, the librechat.yaml interface key that imposes it)`.
pub const PERMISSION_TYPES: &[(&str, &[&str], &str)] = &[
    ("BOOKMARKS", &["USE"], "bookmarks"),
    (
        "PROMPTS",
        &["USE", "CREATE", "SHARE", "SHARE_PUBLIC"],
        "prompts",
    ),
    (
        "MEMORIES",
        &["USE", "CREATE", "UPDATE", "READ", "OPT_OUT"],
        "memories",
    ),
    (
        "AGENTS",
        &["USE", "CREATE", "SHARE", "SHARE_PUBLIC"],
        "agents",
    ),
    ("MULTI_CONVO", &["USE"], "multiConvo"),
    ("TEMPORARY_CHAT", &["USE"], "temporaryChat"),
    ("RUN_CODE", &["USE"], "runCode"),
    ("WEB_SEARCH", &["USE"], "webSearch"),
    ("MARKETPLACE", &["USE"], "marketplace"),
    ("FILE_SEARCH", &["USE"], "fileSearch"),
    ("FILE_CITATIONS", &["USE"], "fileCitations"),
    (
        "PEOPLE_PICKER",
        &["VIEW_USERS", "VIEW_GROUPS", "VIEW_ROLES"],
        "peoplePicker",
    ),
    (
        "MCP_SERVERS",
        &["USE", "CREATE", "SHARE", "SHARE_PUBLIC", "CONFIGURE_OBO"],
        "mcpServers",
    ),
    (
        "REMOTE_AGENTS",
        &["USE", "CREATE", "SHARE", "SHARE_PUBLIC"],
        "remoteAgents",
    ),
    (
        "SKILLS",
        &["USE", "CREATE", "SHARE", "SHARE_PUBLIC"],
        "skills",
    ),
    (
        "SHARED_LINKS",
        &["CREATE", "SHARE", "SHARE_PUBLIC"],
        "sharedLinks",
    ),
    ("SCHEDULES", &["USE", "CREATE"], "schedules"),
];

/// The permission type whose `SHARE` key lets a role's accounts share a resource of this ACL
/// `resourceType` (LibreChat's permissions route checks it beside the entry's SHARE bit);
/// `None` for a type not gated so.
pub fn share_permission_type(resource_type: &str) -> Option<&'static str> {
    match resource_type {
        "agent" => Some("AGENTS"),
        "promptGroup" => Some("PROMPTS"),
        "mcpServer" => Some("MCP_SERVERS"),
        "skill" => Some("SKILLS"),
        "remoteAgent" => Some("REMOTE_AGENTS"),
        _ => None,
    }
}

/// Permissions as LibreChat stores them: `{TYPE: {KEY: bool}}`.
pub type Permissions = BTreeMap<String, BTreeMap<String, bool>>;

/// What is wrong with declared permissions: unknown types and keys, named with what is known.
pub fn check_permissions(permissions: &Permissions) -> Result<(), String> {
    let mut problems = Vec::new();
    for (kind, keys) in permissions {
        let Some((_, known, _)) = PERMISSION_TYPES.iter().find(|(t, _, _)| t == kind) else {
            let all: Vec<&str> = PERMISSION_TYPES.iter().map(|(t, _, _)| *t).collect();
            problems.push(format!(
                "unknown permission type '{kind}' (LibreChat v0.8.8 knows {})",
                all.join(", ")
            ));
            continue;
        };
        for key in keys.keys().filter(|k| !known.contains(&k.as_str())) {
            problems.push(format!(
                "unknown permission '{kind}.{key}' ({kind} has {})",
                known.join(", ")
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Why LibreChat would refuse `name` for a role (its admin API and `createRoleByName`), with
/// `custom` when the name must not be a built-in one.
pub fn check_role_name(name: &str, custom: bool) -> Result<(), String> {
    super::names::check_shown_name("role", name)?;
    if name.chars().count() > 500 {
        return Err("role name is longer than LibreChat's 500 characters".into());
    }
    if matches!(name, "members" | "permissions") {
        return Err(format!("'{name}' is reserved by LibreChat's admin API"));
    }
    let built_in = BUILT_IN_ROLES.iter().find(|b| b.eq_ignore_ascii_case(name));
    match built_in {
        Some(b) if custom || *b != name => Err(format!(
            "'{name}' is the built-in role {b}: LibreChat refuses a custom role named so (in any letter case); declare the built-in role with the exact name {b}"
        )),
        _ => Ok(()),
    }
}

/// Whether `name` is exactly a built-in role.
pub fn is_built_in(name: &str) -> bool {
    BUILT_IN_ROLES.contains(&name)
}

/// The declared permission types of a built-in role that LibreChat re-imposes at its next
/// start, given the `interface` keys its librechat.yaml sets (`updateInterfacePermissions`).
/// USER's `MCP_SERVERS.CREATE: true` is forced back to false unless the yaml sets
/// `interface.mcpServers`.
pub fn overridden_at_restart(
    role: &str,
    permissions: &Permissions,
    yaml_interface_keys: &[String],
) -> Vec<String> {
    let set = |key: &str| yaml_interface_keys.iter().any(|k| k == key);
    let mut out = Vec::new();
    for (kind, keys) in permissions {
        let Some((_, _, interface)) = PERMISSION_TYPES.iter().find(|(t, _, _)| t == kind) else {
            continue;
        };
        let mcp_create_forced = role == "USER"
            && kind == "MCP_SERVERS"
            && keys.get("CREATE") == Some(&true)
            && !set("mcpServers");
        if set(interface) || mcp_create_forced {
            out.push(kind.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn perms(entries: &[(&str, &[(&str, bool)])]) -> Permissions {
        entries
            .iter()
            .map(|(t, keys)| {
                (
                    t.to_string(),
                    keys.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn unknown_types_and_keys_are_named() {
        assert!(
            check_permissions(&perms(&[("AGENTS", &[("USE", true), ("SHARE", false)])])).is_ok()
        );
        let e = check_permissions(&perms(&[("AGENT", &[("USE", true)])])).unwrap_err();
        assert!(e.contains("unknown permission type 'AGENT'"), "{e}");
        let e = check_permissions(&perms(&[("SCHEDULES", &[("SHARE", true)])])).unwrap_err();
        assert!(
            e.contains("'SCHEDULES.SHARE'") && e.contains("USE, CREATE"),
            "{e}"
        );
    }

    #[test]
    fn role_names_follow_librechat() {
        assert!(check_role_name("ANALYST", true).is_ok());
        assert!(check_role_name("USER", false).is_ok());
        assert!(check_role_name("USER", true).is_err());
        assert!(check_role_name("admin", false).is_err());
        assert!(check_role_name("Admin", true).is_err());
        assert!(check_role_name(" ANALYST", true).is_err());
        assert!(check_role_name("members", true).is_err());
        assert!(check_role_name("a\u{7}b", true).is_err());
        assert!(check_role_name(&"x".repeat(501), true).is_err());
    }

    #[test]
    fn yaml_set_types_are_overridden_at_restart() {
        let p = perms(&[
            ("AGENTS", &[("USE", true)]),
            ("PROMPTS", &[("USE", true)]),
            ("MCP_SERVERS", &[("CREATE", true)]),
        ]);
        let keys = vec!["agents".to_string()];
        assert_eq!(
            overridden_at_restart("USER", &p, &keys),
            ["AGENTS", "MCP_SERVERS"]
        );
        assert_eq!(overridden_at_restart("ADMIN", &p, &keys), ["AGENTS"]);
        let keys = vec!["agents".to_string(), "mcpServers".to_string()];
        assert_eq!(
            overridden_at_restart("USER", &p, &keys),
            ["AGENTS", "MCP_SERVERS"]
        );
        assert!(
            overridden_at_restart("USER", &perms(&[("PROMPTS", &[("USE", true)])]), &[]).is_empty()
        );
    }
}
