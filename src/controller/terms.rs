//! The instance's terms-of-service version: applied once per version to the accounts (see
//! `librechat::terms`), mirrored into `status.terms`, and recorded in the audit trail.

use super::connections::Stores;
use super::context::Context;
use crate::api::balance::TermsStatus;
use crate::api::instance::LibreChatInstanceStatus;
use crate::api::LibreChatInstance;
use crate::controller::audit::Change;
use crate::librechat::StoreError;

/// Applies the declared terms version (nothing when none is declared) and mirrors it.
pub async fn apply(
    instance: &LibreChatInstance,
    ctx: &Context,
    stores: &Stores,
    status: &mut LibreChatInstanceStatus,
) -> Result<(), StoreError> {
    let Some(terms) = instance.spec.terms.as_ref() else {
        return Ok(());
    };
    let version = terms.version.trim();
    let applied = stores.store.apply_terms_version(version).await?;
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
        applied_version: Some(applied.version),
        applied_at,
        reset: Some(applied.reset),
    });
    Ok(())
}
