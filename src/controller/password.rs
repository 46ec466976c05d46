//! Where a user's password comes from: the user's own Secret, or one the operator generates
//! and owns. Only resolves; applying it to LibreChat is the user reconciler's job.

use std::collections::BTreeMap;

use kube::ResourceExt;
use rand::Rng;

use super::owned_secret::{self, OwnedSecretError};
use super::secrets::{read_secret_key, secret_version, value_of, SecretError};
use crate::api::common::{reason, SecretKeyRef};
use crate::api::user::DEFAULT_GENERATED_PASSWORD_LENGTH;
use crate::api::validate::check_password;
use crate::api::LibreChatUser;
use crate::metrics::SecretUse;

/// A password ready to apply, never logged.
pub struct ResolvedPassword {
    pub value: String,
    pub version: String,
}

/// Why no usable password could be had; the message never contains the password.
#[derive(Debug)]
pub struct PasswordProblem {
    pub reason: &'static str,
    pub message: String,
}

impl From<SecretError> for PasswordProblem {
    fn from(e: SecretError) -> Self {
        PasswordProblem {
            reason: e.reason(),
            message: e.to_string(),
        }
    }
}

/// Key names in a generated password Secret.
const KEY_EMAIL: &str = "email";
const KEY_PASSWORD: &str = "password";
const KEY_URL: &str = "url";

/// The version of the password in `key` of a Secret at `secret_version`: the key is part of
/// it, so pointing `secretRef` at another key of the same Secret is a new password to apply.
/// The conventional key (the one generated Secrets use) is left implicit, so versions that
/// status recorded before the key was part of them stay valid.
pub fn version_of_key(secret_version: String, key: &str) -> String {
    match key {
        KEY_PASSWORD => secret_version,
        other => format!("{secret_version}#{other}"),
    }
}

/// Whether `recorded` (a status's `passwordSecretVersion`) names the password version
/// `current`. One recorded before the key was part of versions (no `#`) names the same Secret
/// version under any key as long as the spec is the one that status was written for
/// (`spec_unchanged`): the key cannot have moved since, and an upgrade re-applies nothing.
pub fn names_version(recorded: &str, current: &str, spec_unchanged: bool) -> bool {
    let before_keys = |secret: &str| !recorded.contains('#') && secret == recorded;
    recorded == current
        || (spec_unchanged
            && current
                .split_once('#')
                .is_some_and(|(secret, _)| before_keys(secret)))
}

/// Resolves the declared password; `Ok(None)` when none is declared.
pub async fn resolve(
    client: &kube::Client,
    user: &LibreChatUser,
    email: &str,
    min_length: u32,
    domain_client: Option<&str>,
) -> Result<Option<ResolvedPassword>, PasswordProblem> {
    let Some(source) = user.spec.password.as_ref() else {
        return Ok(None);
    };
    let namespace = user.namespace().unwrap_or_default();
    let resolved = if let Some(reference) = &source.secret_ref {
        let v = read_secret_key(client, &namespace, reference, SecretUse::Password).await?;
        ResolvedPassword {
            value: without_final_newline(v.value),
            version: version_of_key(v.version, &reference.key),
        }
    } else if let Some(generate) = &source.generate {
        let length = generate.length.unwrap_or(DEFAULT_GENERATED_PASSWORD_LENGTH);
        generated(
            client,
            user,
            &generate.secret_name,
            email,
            length,
            domain_client,
        )
        .await?
    } else {
        return Ok(None);
    };
    check_password(&resolved.value, min_length).map_err(|m| PasswordProblem {
        reason: reason::PASSWORD_INVALID,
        message: format!("{m}: put a valid password in the Secret"),
    })?;
    Ok(Some(resolved))
}

/// Reads the generated Secret, creating it first if it does not exist. A Secret of that name
/// that this object does not own is never touched.
async fn generated(
    client: &kube::Client,
    user: &LibreChatUser,
    secret_name: &str,
    email: &str,
    length: u32,
    domain_client: Option<&str>,
) -> Result<ResolvedPassword, PasswordProblem> {
    let secret =
        owned_secret::get_or_create(client, user, secret_name, SecretUse::Password, || {
            let mut data = BTreeMap::from([
                (KEY_EMAIL.to_string(), email.to_string()),
                (KEY_PASSWORD.to_string(), random_password(length)),
            ]);
            if let Some(base) = domain_client {
                data.insert(
                    KEY_URL.to_string(),
                    format!("{}/login", base.trim_end_matches('/')),
                );
            }
            data
        })
        .await
        .map_err(|e| match e {
            OwnedSecretError::NotOwned(_) => PasswordProblem {
                reason: reason::SECRET_NOT_OWNED,
                message: format!("{e}, or use password.secretRef to use it"),
            },
            OwnedSecretError::Secret(s) => s.into(),
        })?;
    let reference = SecretKeyRef {
        name: secret_name.to_string(),
        key: KEY_PASSWORD.to_string(),
    };
    let value = value_of(&secret, &reference)?;
    Ok(ResolvedPassword {
        value: value.value,
        version: secret_version(&secret),
    })
}

/// `kubectl create secret --from-file` keeps the file's final newline, which nobody types at
/// a login form; one final newline is therefore not part of the password.
pub(crate) fn without_final_newline(mut value: String) -> String {
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    value
}

/// A password from an unambiguous alphabet, drawn from the OS's random source.
fn random_password(length: u32) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789-_.";
    let mut rng = rand::rngs::OsRng;
    (0..length)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_version_recorded_before_keys_counts_only_for_an_unchanged_spec() {
        use super::names_version;
        assert!(names_version("u/7#alice", "u/7#alice", false));
        assert!(!names_version("u/7#alice", "u/7#bob", true));
        assert!(names_version("u/7", "u/7#alice", true));
        assert!(
            !names_version("u/7", "u/7#alice", false),
            "the key may have moved"
        );
        assert!(!names_version("u/6", "u/7#alice", true));
        assert!(!names_version("u/7", "u/8", true));
    }

    use super::random_password;

    #[test]
    fn one_final_newline_is_dropped() {
        assert_eq!(super::without_final_newline("secret\n".into()), "secret");
        assert_eq!(super::without_final_newline("secret\r\n".into()), "secret");
        assert_eq!(
            super::without_final_newline("secret\n\n".into()),
            "secret\n"
        );
        assert_eq!(super::without_final_newline(" secret ".into()), " secret ");
    }

    #[test]
    fn generated_passwords_have_the_length_and_differ() {
        let a = random_password(24);
        assert_eq!(a.chars().count(), 24);
        assert_ne!(a, random_password(24));
    }
}
