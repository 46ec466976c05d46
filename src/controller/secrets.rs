//! Reading values out of Secrets, with errors that name the Secret and key but never the value.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::{Api, Client};

use crate::api::common::{reason, SecretKeyRef};
use crate::metrics::SecretUse;

/// A value read from a Secret, and which version of the Secret it came from.
pub struct SecretValue {
    pub value: String,
    /// `<uid>/<resourceVersion>`: changes whenever the Secret is replaced or edited.
    pub version: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("Secret '{name}' not found in namespace '{namespace}' (Secrets are read from the referring object's namespace): create it")]
    NotFound { namespace: String, name: String },
    #[error("Secret '{name}' has no key '{key}': add the key or fix the reference")]
    KeyMissing { name: String, key: String },
    #[error("key '{key}' of Secret '{name}' is empty: put the value in it")]
    Empty { name: String, key: String },
    #[error("key '{key}' of Secret '{name}' is not UTF-8 text")]
    NotText { name: String, key: String },
    #[error("reading Secret '{name}' failed: {source}")]
    Api { name: String, source: kube::Error },
}

impl SecretError {
    /// The condition reason that reports this error.
    pub fn reason(&self) -> &'static str {
        match self {
            SecretError::NotFound { .. } => reason::SECRET_NOT_FOUND,
            SecretError::KeyMissing { .. }
            | SecretError::Empty { .. }
            | SecretError::NotText { .. } => reason::SECRET_KEY_MISSING,
            SecretError::Api { .. } => reason::DEPENDENCY_FAILED,
        }
    }
}

/// Version string of a Secret, as recorded in status.
pub fn secret_version(secret: &Secret) -> String {
    meta_version(&secret.metadata)
}

/// Version string of a Secret from its metadata alone: `uid/resourceVersion`, so that a
/// Secret deleted and created again under the same name is a new version.
pub fn meta_version(meta: &ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.uid.as_deref().unwrap_or_default(),
        meta.resource_version.as_deref().unwrap_or_default()
    )
}

/// Reads one key of a Secret as trimmed-of-nothing text. A trailing newline, which
/// `kubectl create secret --from-file` often leaves, is kept only for passwords' sake by the
/// caller deciding; URIs are trimmed by their readers.
pub async fn read_secret_key(
    client: &Client,
    namespace: &str,
    reference: &SecretKeyRef,
    secret_use: SecretUse,
) -> Result<SecretValue, SecretError> {
    let secret = read_secret(client, namespace, &reference.name, secret_use).await?;
    value_of(&secret, reference)
}

/// Reads a whole Secret of `namespace`.
pub async fn read_secret(
    client: &Client,
    namespace: &str,
    name: &str,
    secret_use: SecretUse,
) -> Result<Secret, SecretError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    crate::metrics::global().secret_read(secret_use);
    api.get_opt(name)
        .await
        .map_err(|source| SecretError::Api {
            name: name.to_string(),
            source,
        })?
        .ok_or_else(|| SecretError::NotFound {
            namespace: namespace.to_string(),
            name: name.to_string(),
        })
}

/// The key names of a Secret (`data` and `stringData`), sorted and unique.
pub fn keys_of(secret: &Secret) -> Vec<String> {
    let data = secret.data.iter().flat_map(|d| d.keys());
    let string_data = secret.string_data.iter().flat_map(|d| d.keys());
    let keys: std::collections::BTreeSet<&String> = data.chain(string_data).collect();
    keys.into_iter().cloned().collect()
}

/// Extracts one key of an already-read Secret.
pub fn value_of(secret: &Secret, reference: &SecretKeyRef) -> Result<SecretValue, SecretError> {
    let missing = || SecretError::KeyMissing {
        name: reference.name.clone(),
        key: reference.key.clone(),
    };
    let bytes = match (
        secret.data.as_ref().and_then(|d| d.get(&reference.key)),
        secret.string_data.as_ref(),
    ) {
        (Some(b), _) => b.0.clone(),
        (None, Some(sd)) => sd
            .get(&reference.key)
            .ok_or_else(missing)?
            .clone()
            .into_bytes(),
        (None, None) => return Err(missing()),
    };
    let value = String::from_utf8(bytes).map_err(|_| SecretError::NotText {
        name: reference.name.clone(),
        key: reference.key.clone(),
    })?;
    if value.trim().is_empty() {
        return Err(SecretError::Empty {
            name: reference.name.clone(),
            key: reference.key.clone(),
        });
    }
    Ok(SecretValue {
        value,
        version: secret_version(secret),
    })
}

/// The login of the instance's SMTP relay (Secret keys `username` and `password` in the
/// instance's namespace), if it declares one. Errors name the Secret, never a value.
pub async fn smtp_credentials(
    client: &Client,
    instance: &crate::api::LibreChatInstance,
    smtp: &crate::api::instance::SmtpSpec,
) -> Result<Option<(String, String)>, String> {
    let Some(reference) = &smtp.credentials_secret_ref else {
        return Ok(None);
    };
    let namespace = kube::ResourceExt::namespace(instance).unwrap_or_default();
    let read = |key: &str| SecretKeyRef {
        name: reference.name.clone(),
        key: key.into(),
    };
    let user = read_secret_key(client, &namespace, &read("username"), SecretUse::Instance)
        .await
        .map_err(|e| e.to_string())?;
    let password = read_secret_key(client, &namespace, &read("password"), SecretUse::Instance)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Some((user.value, password.value)))
}
