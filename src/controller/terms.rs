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
    #[error("LibreChatInstance {}, on the same database, declares terms version '{}'{} (the terms are one per database: nothing was reset). Declare the same version on both, or remove it from one", .0.name, .0.version, if *.1 { "" } else { " as far as its record says: the operator cannot read that instance now" })]
    DeclaredElsewhere(TermsHeld, bool),
}

/// What the instance a terms record names declares now, compared with a version.
enum Declaration {
    /// The same version.
    This,
    /// Another version.
    Another,
    /// None: it is gone, re-created (another uid), or declares no version.
    Nothing,
    /// It could not be read.
    Unknown,
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
        Some(terms) => match declared(instance, ctx, &stores.store, terms.version.trim()).await {
            Ok(applied) => applied,
            Err(e) => {
                // Not the version this instance asked for: nothing to mirror as applied.
                if matches!(e, TermsNotApplied::DeclaredElsewhere(..)) {
                    status.terms = None;
                }
                return Err(e);
            }
        },
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
        Ok(applied) => {
            if let Some(other) = &applied.declared_elsewhere {
                // In force, and the record names another instance: it is named there until
                // it stops declaring this version, so that a third instance's version waits
                // for this one too.
                if let Declaration::Nothing = declaration_of(ctx, other, version).await {
                    // A record changed meanwhile is judged again at the next check.
                    let _named = store.apply_terms_version(version, &by, Some(other)).await?;
                }
            }
            return Ok(applied);
        }
        Err(held) => held,
    };
    match declaration_of(ctx, &held, version).await {
        Declaration::Another => Err(TermsNotApplied::DeclaredElsewhere(held, true)),
        Declaration::Unknown => Err(TermsNotApplied::DeclaredElsewhere(held, false)),
        Declaration::This | Declaration::Nothing => {
            match store.apply_terms_version(version, &by, Some(&held)).await? {
                Ok(applied) => Ok(applied),
                Err(other) => Err(TermsNotApplied::DeclaredElsewhere(other, true)),
            }
        }
    }
}

/// What the instance `held` names (the same object: its uid) declares now, compared with
/// `version`. A reset of every acceptance is not made on a guess: one that cannot be read is
/// `Unknown`, and holds the record.
async fn declaration_of(ctx: &Context, held: &TermsHeld, version: &str) -> Declaration {
    let Some((namespace, name)) = held.name.split_once('/') else {
        return Declaration::Unknown;
    };
    let api: Api<LibreChatInstance> = Api::namespaced(ctx.client.clone(), namespace);
    match api.get_opt(name).await {
        Ok(Some(named)) if named.uid().as_deref() == Some(held.uid.as_str()) => {
            match named.spec.terms.as_ref().map(|t| t.version.trim()) {
                Some(v) if v == version => Declaration::This,
                Some(_) => Declaration::Another,
                None => Declaration::Nothing,
            }
        }
        Ok(_) => Declaration::Nothing,
        Err(_) => Declaration::Unknown,
    }
}
