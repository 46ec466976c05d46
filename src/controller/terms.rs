//! The instance's terms-of-service version: applied once per version to the accounts (see
//! `librechat::terms`), mirrored into `status.terms`, and recorded in the audit trail.

use kube::api::Api;
use kube::ResourceExt;

use super::connections::Stores;
use super::context::Context;
use crate::api::balance::TermsStatus;
use crate::api::instance::LibreChatInstanceStatus;
use crate::api::LibreChatInstance;
use crate::controller::audit::Change;
use crate::librechat::terms::{AppliedTerms, TermsDeclarer, TermsHeld};
use crate::librechat::{Store, StoreError};

/// Why the declared version is not in force.
#[derive(Debug, thiserror::Error)]
pub enum TermsNotApplied {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("LibreChatInstance {name}, on the same database, declares terms version '{version}' (the terms are one per database: nothing was reset). Declare the same version on both, or remove it from one")]
    DeclaredElsewhere { name: String, version: String },
}

/// Applies the declared terms version and mirrors it. With none declared, a reset cut short
/// before its declaration was removed is finished (it may have reset some accounts already).
pub async fn apply(
    instance: &LibreChatInstance,
    ctx: &Context,
    stores: &Stores,
    status: &mut LibreChatInstanceStatus,
) -> Result<(), TermsNotApplied> {
    let applied = match instance.spec.terms.as_ref() {
        Some(terms) => declared(instance, ctx, &stores.store, terms.version.trim()).await?,
        None => match stores.store.finish_pending_terms().await? {
            Some(finished) => finished,
            None => return Ok(()),
        },
    };
    let version = applied.version.as_str();
    if let Some(count) = applied.accounts_reset {
        let (action, note) = if applied.reset {
            (
                "TermsReset",
                format!("terms version '{version}': reset the acceptance of {count} account(s); LibreChat asks every user to accept again"),
            )
        } else {
            (
                "TermsVersionRecorded",
                format!("terms version '{version}' recorded as the one current acceptances stand for (the first version declared resets nothing)"),
            )
        };
        let key = super::target::instance_key(instance);
        ctx.changed(instance, Change::applied(action, key, None, note))
            .await;
    }
    let applied_at = super::status::rfc3339_from_millis(applied.applied_at.timestamp_millis());
    status.terms = Some(TermsStatus {
        applied_version: Some(applied.version.clone()),
        applied_at,
        reset: Some(applied.reset),
    });
    Ok(())
}

/// Applies `version`, unless another instance on the same database recorded a different one
/// and still declares it.
async fn declared(
    instance: &LibreChatInstance,
    ctx: &Context,
    store: &Store,
    version: &str,
) -> Result<AppliedTerms, TermsNotApplied> {
    let uid = instance.uid().unwrap_or_default();
    let name = super::target::instance_key(instance);
    let by = TermsDeclarer {
        uid: &uid,
        name: &name,
    };
    let held = match store.apply_terms_version(version, &by, None).await? {
        Ok(applied) => return Ok(applied),
        Err(held) => held,
    };
    if still_declares_its_own(ctx, &held, version).await {
        return Err(TermsNotApplied::DeclaredElsewhere {
            name: held.name,
            version: held.version,
        });
    }
    match store
        .apply_terms_version(version, &by, Some(&held.uid))
        .await?
    {
        Ok(applied) => Ok(applied),
        Err(other) => Err(TermsNotApplied::DeclaredElsewhere {
            name: other.name,
            version: other.version,
        }),
    }
}

/// Whether the instance that recorded `held` (the same object: its uid) still declares a
/// version other than `version`. One that cannot be read counts as declaring it: a reset of
/// every acceptance is not made on a guess.
async fn still_declares_its_own(ctx: &Context, held: &TermsHeld, version: &str) -> bool {
    let Some((namespace, name)) = held.name.split_once('/') else {
        return true;
    };
    let api: Api<LibreChatInstance> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(other)) => {
            other.uid().as_deref() == Some(held.uid.as_str())
                && other
                    .spec
                    .terms
                    .as_ref()
                    .is_some_and(|t| t.version.trim() != version)
        }
        Ok(None) => false,
        Err(_) => true,
    }
}
