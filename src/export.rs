//! `librechat-operator export`: the GitOps on-ramp. Reads an existing LibreChat database and
//! prints one `LibreChatUser` per account, with `adopt: true`, so that a deployment that already
//! has users can put them under management without recreating anyone. Passwords are not
//! exported: adopted accounts keep theirs until a password is declared.

use std::collections::HashSet;

use crate::api::user::{LibreChatUserSpec, Provider};
use crate::api::validate::{check_email, check_name, check_role, check_username};
use crate::api::{common::InstanceRef, LibreChatUser};
use crate::librechat::users::StoredUser;

/// Manifests for `users`, pointing at instance `instance` in `namespace`. Accounts whose email
/// LibreChat itself could not use are skipped and returned as notes.
pub fn manifests(
    users: &[StoredUser],
    instance: &str,
    namespace: &str,
) -> (Vec<LibreChatUser>, Vec<String>) {
    let mut names = HashSet::new();
    let mut out = Vec::new();
    let mut notes = Vec::new();
    for u in users {
        let Ok(email) = check_email(&u.email) else {
            notes.push(format!(
                "skipped account {}: its email is not valid",
                u.id.to_hex()
            ));
            continue;
        };
        let provider = u
            .provider
            .as_deref()
            .and_then(|p| serde_json::from_value::<Provider>(p.into()).ok());
        let role = u.role.clone().filter(|r| check_role(r).is_ok());
        let spec = LibreChatUserSpec {
            instance_ref: InstanceRef {
                name: instance.to_string(),
                namespace: None,
            },
            email: email.clone(),
            name: u.name.clone().filter(|n| check_name(n).is_ok()),
            username: u.username.clone().filter(|n| check_username(n).is_ok()),
            role: role.filter(|r| r != "USER"),
            provider: provider.filter(|p| *p != Provider::Local),
            // Not declared: `emailVerified: false` would have the operator issue a new
            // verification link (voiding the one LibreChat sent) to every unverified account
            // the export takes in. Whether the person verifies stays LibreChat's to record.
            email_verified: None,
            // Spelt out: deleting an exported object must never delete the account.
            deletion_policy: Some(crate::api::user::DeletionPolicy::Retain),
            adopt: Some(true),
            ..Default::default()
        };
        let mut user = LibreChatUser::new(&object_name(&email, &mut names), spec);
        user.metadata.namespace = Some(namespace.to_string());
        out.push(user);
    }
    (out, notes)
}

/// A DNS-1123 name from an email, unique among `taken`.
fn object_name(email: &str, taken: &mut HashSet<String>) -> String {
    let mut base: String = email
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    base = base
        .split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-");
    base.truncate(58);
    let base = base.trim_end_matches('-').to_string();
    let base = if base.is_empty() {
        "user".to_string()
    } else {
        base
    };
    let mut name = base.clone();
    let mut n = 2;
    while !taken.insert(name.clone()) {
        name = format!("{base}-{n}");
        n += 1;
    }
    name
}

/// The manifests as a multi-document YAML stream.
pub fn to_yaml(users: &[LibreChatUser]) -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for u in users {
        let mut value =
            serde_json::to_value(u).map_err(<serde_yaml::Error as serde::ser::Error>::custom)?;
        if let Some(obj) = value.as_object_mut() {
            obj.remove("status");
        }
        out.push_str("---\n");
        out.push_str(&serde_yaml::to_string(&value)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    fn stored(email: &str, role: &str, provider: &str) -> StoredUser {
        StoredUser {
            id: ObjectId::new(),
            email: email.into(),
            name: Some("Jane Doe".into()),
            username: Some("janed".into()),
            role: Some(role.into()),
            provider: Some(provider.into()),
            email_verified: true,
            password_hash: Some("$2a$10$x".into()),
            id_on_the_source: None,
            has_expiry: false,
            terms_accepted: false,
            terms_accepted_at: None,
        }
    }

    #[test]
    fn an_exported_account_is_described_without_anything_the_operator_would_act_on() {
        let mut unverified = stored("new@example.com", "USER", "local");
        unverified.email_verified = false;
        let (manifests, _) = manifests(&[unverified], "librechat", "lc");
        let spec = &manifests[0].spec;
        assert_eq!(spec.email_verified, None, "no verification link is issued");
        assert_eq!(
            spec.deletion_policy,
            Some(crate::api::user::DeletionPolicy::Retain)
        );
        assert_eq!(spec.adopt, Some(true));
    }

    #[test]
    fn exports_adoptable_manifests_with_unique_names() {
        let users = [
            stored("jane@example.com", "ADMIN", "local"),
            stored("jane@example.com.", "USER", "openid"),
            stored("bad", "USER", "local"),
        ];
        let (manifests, notes) = manifests(&users, "librechat", "lc");
        assert_eq!(
            manifests.len(),
            1 + usize::from(check_email("jane@example.com.").is_ok())
        );
        assert_eq!(
            notes.len(),
            1 + usize::from(check_email("jane@example.com.").is_err())
        );
        let first = &manifests[0];
        assert_eq!(first.metadata.name.as_deref(), Some("jane-example-com"));
        assert_eq!(first.spec.adopt, Some(true));
        assert_eq!(first.spec.role.as_deref(), Some("ADMIN"));
        assert!(
            first.spec.password.is_none(),
            "passwords are never exported"
        );
        let yaml = to_yaml(&manifests).unwrap();
        assert!(yaml.contains("adopt: true") && !yaml.contains("$2a$"));
        let mut taken = HashSet::new();
        assert_eq!(object_name("a@b.c", &mut taken), "a-b-c");
        assert_eq!(object_name("a.b@c", &mut taken), "a-b-c-2");
    }
}
