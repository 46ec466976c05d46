//! The instance's terms-of-service version: applied once per version to the accounts (see
//! `librechat::terms`), mirrored into `status.terms`, and recorded in the audit trail.

use super::connections::Stores;
use super::context::Context;
use crate::api::balance::TermsStatus;
use crate::api::instance::LibreChatInstanceStatus;
use crate::api::LibreChatInstance;
use crate::controller::audit::Change;
use crate::librechat::StoreError;

/// Applies the declared terms version and mirrors it. With none declared, a reset cut short
/// before its declaration was removed is finished (it may have reset some accounts already).
pub async fn apply(
    instance: &LibreChatInstance,
    ctx: &Context,
    stores: &Stores,
    status: &mut LibreChatInstanceStatus,
) -> Result<(), StoreError> {
    let applied = match instance.spec.terms.as_ref() {
        Some(terms) => {
            stores
                .store
                .apply_terms_version(terms.version.trim())
                .await?
        }
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
