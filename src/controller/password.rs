//! Where a user's password comes from: the user's own Secret, or one the operator generates
//! and owns. Only resolves; applying it to LibreChat is the user reconciler's job.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};
use rand::Rng;

use super::secrets::{read_secret_key, secret_version, value_of, SecretError};
use crate::api::common::{reason, SecretKeyRef, MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::api::user::DEFAULT_GENERATED_PASSWORD_LENGTH;
use crate::api::validate::check_password;
use crate::api::LibreChatUser;

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
        let v = read_secret_key(client, &namespace, reference).await?;
        ResolvedPassword {
            value: v.value,
            version: v.version,
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
    let namespace = user.namespace().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let reference = SecretKeyRef {
        name: secret_name.to_string(),
        key: KEY_PASSWORD.to_string(),
    };
    let api_error = |source| {
        PasswordProblem::from(SecretError::Api {
            name: secret_name.to_string(),
            source,
        })
    };
    let secret = match api.get_opt(secret_name).await.map_err(api_error)? {
        Some(existing) => existing,
        None => {
            let secret = new_secret(
                user,
                secret_name,
                email,
                &random_password(length),
                domain_client,
            );
            match api.create(&PostParams::default(), &secret).await {
                Ok(created) => created,
                // Created by a concurrent reconcile of the same object: read theirs.
                Err(kube::Error::Api(e)) if e.code == 409 => {
                    api.get(secret_name).await.map_err(api_error)?
                }
                Err(e) => return Err(api_error(e)),
            }
        }
    };
    let uid = user.uid().unwrap_or_default();
    let owned = secret.owner_references().iter().any(|o| o.uid == uid);
    if !owned {
        return Err(PasswordProblem {
            reason: reason::SECRET_NOT_OWNED,
            message: format!(
                "Secret '{secret_name}' exists and is not owned by this LibreChatUser; it is never overwritten. Choose another generate.secretName, or use password.secretRef to use it"
            ),
        });
    }
    let value = value_of(&secret, &reference)?;
    Ok(ResolvedPassword {
        value: value.value,
        version: secret_version(&secret),
    })
}

fn new_secret(
    user: &LibreChatUser,
    name: &str,
    email: &str,
    password: &str,
    domain_client: Option<&str>,
) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(KEY_EMAIL.to_string(), ByteString(email.as_bytes().to_vec()));
    data.insert(
        KEY_PASSWORD.to_string(),
        ByteString(password.as_bytes().to_vec()),
    );
    if let Some(base) = domain_client {
        data.insert(
            KEY_URL.to_string(),
            ByteString(format!("{}/login", base.trim_end_matches('/')).into_bytes()),
        );
    }
    let owner = OwnerReference {
        api_version: LibreChatUser::api_version(&()).into_owned(),
        kind: LibreChatUser::kind(&()).into_owned(),
        name: user.name_any(),
        uid: user.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: user.namespace(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            owner_references: Some(vec![owner]),
            ..Default::default()
        },
        data: Some(data),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
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
    use super::random_password;

    #[test]
    fn generated_passwords_have_the_length_and_differ() {
        let a = random_password(24);
        assert_eq!(a.chars().count(), 24);
        assert_ne!(a, random_password(24));
    }
}
