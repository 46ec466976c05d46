//! The instance's `CREDS_KEY`/`CREDS_IV` (spec.credentials), read and validated. Only users
//! that declare plugins need them; the instance reports a problem with them in its Ready
//! message without being less ready for it.

use kube::ResourceExt;

use super::secrets::{read_secret, value_of};
use crate::api::common::{reason, SecretKeyRef};
use crate::api::plugins::{CREDS_IV, CREDS_KEY};
use crate::api::LibreChatInstance;
use crate::librechat::creds::Creds;
use crate::metrics::SecretUse;

/// Why the credentials cannot be used; never holds a value.
#[derive(Debug)]
pub struct CredsProblem {
    pub reason: &'static str,
    pub message: String,
}

/// The instance's credentials, validated. Errors name the Secret, never a value.
pub async fn instance_creds(
    client: &kube::Client,
    instance: &LibreChatInstance,
) -> Result<Creds, CredsProblem> {
    let namespace = instance.namespace().unwrap_or_default();
    let context = format!("LibreChatInstance {namespace}/{}", instance.name_any());
    let Some(spec) = &instance.spec.credentials else {
        let message = format!("{context} sets no spec.credentials.secretRef: plugin credentials are encrypted with LibreChat's CREDS_KEY and CREDS_IV");
        return Err(CredsProblem {
            reason: reason::CREDENTIALS_INVALID,
            message,
        });
    };
    let name = &spec.secret_ref.name;
    let context = format!("credentials of {context}");
    let problem = |reason, e: &dyn std::fmt::Display| CredsProblem {
        reason,
        message: format!("{context}: {e}"),
    };
    let secret = read_secret(client, &namespace, name, SecretUse::Instance)
        .await
        .map_err(|e| problem(e.reason(), &e))?;
    let value = |key: &str| {
        let reference = SecretKeyRef {
            name: name.clone(),
            key: key.into(),
        };
        value_of(&secret, &reference).map_err(|e| problem(e.reason(), &e))
    };
    let (key, iv) = (value(CREDS_KEY)?, value(CREDS_IV)?);
    Creds::from_hex(&key.value, &iv.value).map_err(|e| {
        let message = format!("Secret '{name}': {e}");
        problem(reason::CREDENTIALS_INVALID, &message)
    })
}

/// A note for the instance's Ready message when it declares credentials that cannot be used.
pub async fn credentials_note(
    client: &kube::Client,
    instance: &LibreChatInstance,
) -> Option<String> {
    instance.spec.credentials.as_ref()?;
    instance_creds(client, instance)
        .await
        .err()
        .map(|p| format!("{} ({}): users with plugins wait", p.message, p.reason))
}
