//! Hashing ahead. While a new account waits for its instance to be Ready again (its MongoDB or
//! Redis out), its password is hashed anyway, so that the account is written as soon as the
//! instance is back instead of after a queue of cost-10 hashes: a cold start interrupted by an
//! outage loses no hashing time to it.
//!
//! Only reads: the declared Secret is read as the reconcile itself would read it, for an
//! instance that exists and admits the namespace. Nothing is reported from here (the waiting
//! status says what is wrong) and nothing is written; the hash, never the password, waits in
//! [`HashedAhead`](crate::controller::memory::HashedAhead) for this object and this version of
//! its Secret, where [`account`](super::account) takes it.

use kube::ResourceExt;

use super::uid_of;
use crate::api::common::reason;
use crate::api::validate::check_email;
use crate::api::LibreChatUser;
use crate::controller::context::Context;
use crate::controller::tenancy::Tenancy;
use crate::controller::{password, target};

/// Hashes the password of an account not yet written when the reconcile waits because the
/// instance is not Ready; does nothing otherwise.
pub(super) async fn hash_while_waiting(user: &LibreChatUser, ctx: &Context, waiting_on: &str) {
    if waiting_on != reason::INSTANCE_NOT_READY || !awaits_creation(user) {
        return;
    }
    // A generated password would be a Secret written for an account that may never be: only
    // a password the object points at is read.
    let Some(reference) = user
        .spec
        .password
        .as_ref()
        .and_then(|p| p.secret_ref.as_ref())
    else {
        return;
    };
    let (uid, namespace) = (uid_of(user), user.namespace().unwrap_or_default());
    let watched = ctx
        .secrets
        .version_of(&namespace, &reference.name)
        .await
        .map(|v| password::version_of_key(v, &reference.key));
    if watched.is_some_and(|v| ctx.hashed_ahead.hash_of(&uid, &v).is_some()) {
        return;
    }
    let Ok(Ok(instance)) =
        target::admitted_instance(ctx, &user.spec.instance_ref, &namespace).await
    else {
        return;
    };
    // Being deleted, it may take no new object (`target::closed_to`) and waits for the rest
    // to go: nothing to hash for.
    if instance.metadata.deletion_timestamp.is_some() {
        return;
    }
    let min_length = instance.spec.min_password_length();
    if !user.spec.problems(min_length).is_empty() {
        return;
    }
    let email = check_email(&user.spec.email).unwrap_or_default();
    // An email the namespace may not declare is refused once the instance is back: no hash.
    if Tenancy::of(&instance, &namespace)
        .email_refusal(&email)
        .is_some()
    {
        return;
    }
    let Ok(Some(read)) = password::resolve(&ctx.client, user, &email, min_length, None).await
    else {
        return;
    };
    if ctx.hashed_ahead.hash_of(&uid, &read.version).is_some() {
        return;
    }
    // A failed hash is the reconcile's to meet again when the account is written.
    if let Ok(hash) = ctx.hasher.hash(read.value).await {
        ctx.hashed_ahead.keep(&uid, &read.version, hash);
    }
}

/// Whether the object has not written its account yet, as far as its status tells. Status is
/// no identity, and here it needs none: a wrong answer costs one hash or saves one, and
/// nothing is written either way.
fn awaits_creation(user: &LibreChatUser) -> bool {
    user.status
        .as_ref()
        .and_then(|s| s.user_id.as_ref())
        .is_none()
}
