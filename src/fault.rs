//! Crash points for the end-to-end tests that prove recovery: with
//! `LIBRECHAT_OPERATOR_CRASH_AT=<point>` in its environment, the process exits at once (as a
//! SIGKILL or an OOM kill would end it) when it reaches that point. Unset, a point costs one
//! load of a cached value. Points: `after-password-hash` (the new hash is written, the
//! sessions are not yet revoked), `after-role-change` (the role is written, the caches are not
//! yet dropped), `before-invite-email` (the right to send an invitation's email taken, the
//! email not yet handed to the relay), `after-invite-email` (the email went out, the status
//! says nothing yet),
//! `after-invite-secret` (an invitation's Secret with its link made, nothing recorded yet),
//! `after-grant-balance` (a grant is credited and marked pending, its transaction not yet
//! saved), `after-grant-transaction` (saved, the mark not yet removed), `after-terms-promise`
//! (a new terms version is recorded as pending, nobody reset yet), `after-terms-reset`
//! (acceptances reset, the version not yet marked done), `after-role-delete` (a custom role
//! deleted and its accounts moved to USER, its name not yet released), `after-ban-written`
//! (a `BANS:` document written, the user's sessions not yet ended), `after-ban-share-removed`
//! (a ban's share removed, the `BANS:` document not yet rewritten or lifted),
//! `after-account-insert` (an account inserted under its reserved id, the ownership record not
//! yet saying the operator created it), `after-deletion-fence` (an account's deletion fenced
//! its sign-in, its cached copies dropped, nothing of its data deleted yet),
//! `after-account-delete` (an account's document deleted, what a login may have re-created
//! meanwhile not yet swept), `after-refill-recorded` (declared auto-refill
//! settings recorded in the ownership record, not yet written to the balance record),
//! `after-refill-written` (written, the ownership record not yet saying so),
//! `after-two-factor-reset` (an account's second factor reset and recorded as done, LibreChat's
//! caches not yet dropped).
//!
//! Pause points, for tests of races: with `LIBRECHAT_OPERATOR_PAUSE_AT=<point>` a reconcile
//! that reaches the point waits [`PAUSE`] there (logging that it does), while the others go
//! on. Points: `before-account-create` (the policy checks are read, the account not yet
//! written), `before-role-permissions` (a custom role's record is checked against the role
//! LibreChat has, its permissions not yet read), `before-role-accounts-move` (a deleted
//! role's accounts are listed and their cache drops promised, not yet moved to USER),
//! `before-group-delete` (a deleted object's group is read as a local one, not yet deleted).

use std::sync::OnceLock;

/// The exit code of a deliberate crash, so a test can tell it from a real failure.
pub const CRASH_EXIT_CODE: i32 = 86;

/// Exits the process if the environment asks for a crash at `point`.
pub fn crash_point(point: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("LIBRECHAT_OPERATOR_CRASH_AT").ok());
    if wanted.as_deref() == Some(point) {
        eprintln!("crash point {point} reached: exiting as LIBRECHAT_OPERATOR_CRASH_AT asks");
        std::process::exit(CRASH_EXIT_CODE);
    }
}

/// How long a pause point holds its reconcile.
pub const PAUSE: std::time::Duration = std::time::Duration::from_secs(8);

/// Waits [`PAUSE`] if the environment asks for a pause at `point`.
pub async fn pause_point(point: &str) {
    static WANTED: OnceLock<Option<String>> = OnceLock::new();
    let wanted = WANTED.get_or_init(|| std::env::var("LIBRECHAT_OPERATOR_PAUSE_AT").ok());
    if wanted.as_deref() == Some(point) {
        eprintln!("pause point {point} reached: waiting as LIBRECHAT_OPERATOR_PAUSE_AT asks");
        tokio::time::sleep(PAUSE).await;
    }
}
