//! Secrets the operator creates for an object (generated passwords, invite links): owned by
//! that object, labelled, and never written over when someone else owns a Secret of that name.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::ByteString;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::{Resource, ResourceExt};

use super::secrets::SecretError;
use crate::api::common::{MANAGED_BY_LABEL, MANAGED_BY_VALUE};
use crate::metrics::SecretUse;

/// Why an owned Secret could not be had.
#[derive(Debug, thiserror::Error)]
pub enum OwnedSecretError {
    #[error("Secret '{0}' exists and is not owned by this object; it is never overwritten. Choose another Secret name")]
    NotOwned(String),
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Whether `secret` is owned by `owner`.
pub fn owned_by<K: Resource>(secret: &Secret, owner: &K) -> bool {
    let uid = owner.meta().uid.clone().unwrap_or_default();
    secret.owner_references().iter().any(|o| o.uid == uid)
}

/// Returns the Secret `name` owned by `owner`, creating it with `data()` when it does not exist.
pub async fn get_or_create<K>(
    client: &kube::Client,
    owner: &K,
    name: &str,
    secret_use: SecretUse,
    data: impl FnOnce() -> BTreeMap<String, String>,
) -> Result<Secret, OwnedSecretError>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    let api_error = |source| {
        OwnedSecretError::Secret(SecretError::Api {
            name: name.to_string(),
            source,
        })
    };
    crate::metrics::global().secret_read(secret_use);
    let secret = match api.get_opt(name).await.map_err(api_error)? {
        Some(existing) => existing,
        None => match api
            .create(&PostParams::default(), &new_secret(owner, name, data()))
            .await
        {
            Ok(created) => created,
            // Created by a concurrent reconcile of the same object: use theirs.
            Err(kube::Error::Api(e)) if e.code == 409 => api.get(name).await.map_err(api_error)?,
            Err(e) => return Err(api_error(e)),
        },
    };
    if !owned_by(&secret, owner) {
        return Err(OwnedSecretError::NotOwned(name.to_string()));
    }
    Ok(secret)
}

/// Removes `keys` from the Secret `name` when `owner` owns it: that very version (a merge
/// patch carrying the version read), so a Secret changed meanwhile is read again by the
/// retry. True when a key was removed. (The operator may patch Secrets, never delete them.)
pub async fn remove_keys<K>(
    client: &kube::Client,
    owner: &K,
    name: &str,
    keys: &[&str],
    secret_use: SecretUse,
) -> Result<bool, kube::Error>
where
    K: Resource<DynamicType = ()>,
{
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    crate::metrics::global().secret_read(secret_use);
    let Some(secret) = api.get_opt(name).await? else {
        return Ok(false);
    };
    let held = secret
        .data
        .as_ref()
        .is_some_and(|d| keys.iter().any(|k| d.contains_key(*k)));
    if !owned_by(&secret, owner) || !held {
        return Ok(false);
    }
    let removed: serde_json::Map<String, serde_json::Value> = keys
        .iter()
        .map(|k| (k.to_string(), serde_json::Value::Null))
        .collect();
    let patch = serde_json::json!({
        "metadata": { "resourceVersion": secret.metadata.resource_version },
        "data": removed,
    });
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await?;
    Ok(true)
}

fn new_secret<K: Resource<DynamicType = ()>>(
    owner: &K,
    name: &str,
    data: BTreeMap<String, String>,
) -> Secret {
    let meta = owner.meta();
    let reference = OwnerReference {
        api_version: K::api_version(&()).into_owned(),
        kind: K::kind(&()).into_owned(),
        name: meta.name.clone().unwrap_or_default(),
        uid: meta.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: meta.namespace.clone(),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_string(),
                MANAGED_BY_VALUE.to_string(),
            )])),
            owner_references: Some(vec![reference]),
            ..Default::default()
        },
        data: Some(
            data.into_iter()
                .map(|(k, v)| (k, ByteString(v.into_bytes())))
                .collect(),
        ),
        type_: Some("Opaque".into()),
        ..Default::default()
    }
}

/// Writes `data` into the Secret `name` owned by `owner`: created when missing, its values
/// replaced when it is ours, never touched when it is not.
pub async fn put<K>(
    client: &kube::Client,
    owner: &K,
    name: &str,
    secret_use: SecretUse,
    data: BTreeMap<String, String>,
) -> Result<(), OwnedSecretError>
where
    K: Resource<DynamicType = ()>,
{
    let wanted = data.clone();
    let secret = get_or_create(client, owner, name, secret_use, || data).await?;
    let current: BTreeMap<String, String> = secret
        .data
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
        .collect();
    if current == wanted {
        return Ok(());
    }
    let namespace = owner.meta().namespace.clone().unwrap_or_default();
    let api: Api<Secret> = Api::namespaced(client.clone(), &namespace);
    // A strategic merge of `data` would keep keys that are no longer wanted: replace it whole.
    let patch = serde_json::json!({ "data": null, "stringData": wanted });
    api.patch(
        name,
        &kube::api::PatchParams::default(),
        &kube::api::Patch::Merge(&patch),
    )
    .await
    .map(|_| ())
    .map_err(|source| {
        OwnedSecretError::Secret(SecretError::Api {
            name: name.to_string(),
            source,
        })
    })
}
