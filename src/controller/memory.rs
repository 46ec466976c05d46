//! What the operator remembers between reconciles of one object, in this process only: which
//! objects it verified against their ownership record (so a resync of a settled object is one
//! read), how often each object failed in a row (for its backoff), and the password hashes
//! made while an account could not be written yet. Nothing here comes from status, which
//! anyone with write access to the object could forge; a restart forgets it all, and the first
//! reconcile after it verifies everything again.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rand::Rng;

/// The first retry after a failure; doubled for every failure in a row.
const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// The longest wait between retries.
pub const BACKOFF_CAP: Duration = Duration::from_secs(300);

/// Objects verified in this process, each with the fingerprint of what was verified (generation,
/// password version, account id): a change of any of these voids it.
#[derive(Default)]
pub struct Settled {
    verified: Mutex<HashMap<String, String>>,
}

impl Settled {
    pub fn matches(&self, uid: &str, fingerprint: &str) -> bool {
        locked(&self.verified)
            .get(uid)
            .is_some_and(|f| f == fingerprint)
    }

    /// The account id a verified fingerprint ends with.
    pub fn verified_account(&self, uid: &str) -> Option<String> {
        locked(&self.verified)
            .get(uid)
            .and_then(|f| f.rsplit('/').next().map(str::to_string))
    }

    pub fn remember(&self, uid: &str, fingerprint: String) {
        locked(&self.verified).insert(uid.to_string(), fingerprint);
    }

    pub fn forget(&self, uid: &str) {
        locked(&self.verified).remove(uid);
    }
}

/// Buckets of [`NameEpochs`]: a fixed size, so churning names costs no memory.
const NAME_EPOCH_BUCKETS: usize = 4096;

/// How many times the group and role names of each bucket changed hands in this process (see
/// [`super::context::NameChange`]; keys from [`super::context::name_epoch_key`]). A settled
/// account's mark holds the count of the role it declares, so a role given up (replaced in
/// LibreChat under its name, say, with nothing of the account changed) sends the accounts
/// declaring it down the full path, which checks the role again. Names sharing a bucket void
/// each other's marks now and then, which costs a full reconcile, never a check skipped. The
/// hash is keyed at random per process, so a tenant cannot pick names that share a bucket with
/// another instance's roles and aim its churn at that instance's accounts.
pub struct NameEpochs {
    counts: Box<[std::sync::atomic::AtomicU64]>,
    keys: std::collections::hash_map::RandomState,
}

impl Default for NameEpochs {
    fn default() -> Self {
        let counts = (0..NAME_EPOCH_BUCKETS).map(|_| Default::default());
        NameEpochs {
            counts: counts.collect(),
            keys: Default::default(),
        }
    }
}

impl NameEpochs {
    pub fn bump(&self, key: &str) {
        self.bucket(key)
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn of(&self, key: &str) -> u64 {
        self.bucket(key).load(std::sync::atomic::Ordering::Relaxed)
    }

    fn bucket(&self, key: &str) -> &std::sync::atomic::AtomicU64 {
        &self.counts[self.index(key)]
    }

    fn index(&self, key: &str) -> usize {
        use std::hash::BuildHasher;
        self.keys.hash_one(key) as usize % self.counts.len()
    }
}

/// The map behind a lock; a reconcile that panicked while holding it left nothing half-done
/// in a map of whole entries, so a poisoned lock is used as it is.
fn locked<T>(map: &Mutex<T>) -> MutexGuard<'_, T> {
    map.lock().unwrap_or_else(|p| p.into_inner())
}

/// At most this many hashes wait for their accounts (a couple of hundred bytes each).
const HASHED_AHEAD_CAP: usize = 20_000;

/// Password hashes made before their account could be written (its instance was not Ready),
/// each for one object (by uid) and one version of its password Secret, so a Secret changed
/// since is hashed again and never written with the old hash. Two objects never share a hash,
/// even of the same password. Holds hashes only, never a password.
#[derive(Default)]
pub struct HashedAhead {
    hashes: Mutex<HashMap<String, (String, String)>>,
}

impl HashedAhead {
    /// The hash made for `uid`'s password at exactly `version`.
    pub fn hash_of(&self, uid: &str, version: &str) -> Option<String> {
        locked(&self.hashes)
            .get(uid)
            .filter(|(v, _)| v == version)
            .map(|(_, hash)| hash.clone())
    }

    /// Keeps `hash` for `uid`'s password at `version`, in place of any earlier version's;
    /// when full, a new object's hash is not kept (its account hashes when it is written).
    pub fn keep(&self, uid: &str, version: &str, hash: String) {
        let mut hashes = locked(&self.hashes);
        if hashes.len() < HASHED_AHEAD_CAP || hashes.contains_key(uid) {
            hashes.insert(uid.to_string(), (version.to_string(), hash));
        }
    }

    pub fn forget(&self, uid: &str) {
        locked(&self.hashes).remove(uid);
    }
}

/// Failures in a row per object, turned into capped exponential delays with jitter, so a
/// dependency that is down is not hammered by every object at once.
#[derive(Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// Counts a failure of `key` and returns how long to wait before the next try.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = locked(&self.failures);
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        delay(*count, rand::thread_rng().gen_range(0.5..1.0))
    }

    pub fn succeeded(&self, key: &str) {
        locked(&self.failures).remove(key);
    }

    /// How many objects are waiting out a backoff.
    pub fn in_backoff(&self) -> usize {
        locked(&self.failures).len()
    }

    /// How many objects whose key starts with `prefix` are waiting out a backoff.
    pub fn in_backoff_under(&self, prefix: &str) -> usize {
        locked(&self.failures)
            .keys()
            .filter(|k| k.starts_with(prefix))
            .count()
    }
}

/// The wait after `failures` failures in a row: `BACKOFF_BASE · 2^(failures-1)`, capped, times
/// `jitter` (0.5 to 1: "equal jitter", never less than half the nominal wait).
fn delay(failures: u32, jitter: f64) -> Duration {
    let exponent = failures.saturating_sub(1).min(16);
    let nominal = BACKOFF_BASE.saturating_mul(1 << exponent).min(BACKOFF_CAP);
    nominal.mul_f64(jitter.clamp(0.5, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes share no bucket layout: names a tenant finds sharing a bucket with
    /// another instance's role in one run do not in the next.
    #[test]
    fn name_epoch_buckets_are_keyed_per_process() {
        let (one, other) = (NameEpochs::default(), NameEpochs::default());
        let keys: Vec<String> = (0..64).map(|i| format!("chat/x|role:R{i}")).collect();
        let layout =
            |epochs: &NameEpochs| -> Vec<usize> { keys.iter().map(|k| epochs.index(k)).collect() };
        assert_ne!(layout(&one), layout(&other));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap_and_resets_on_success() {
        assert_eq!(delay(1, 1.0), Duration::from_secs(2));
        assert_eq!(delay(2, 1.0), Duration::from_secs(4));
        assert_eq!(delay(5, 1.0), Duration::from_secs(32));
        assert_eq!(delay(40, 1.0), BACKOFF_CAP);
        assert_eq!(delay(3, 0.5), Duration::from_secs(4));
        let b = Backoff::default();
        let first = b.failed("a");
        let mut later = first;
        for _ in 0..20 {
            later = b.failed("a");
        }
        assert!(first <= Duration::from_secs(2) && later >= BACKOFF_CAP / 2);
        assert_eq!(b.in_backoff(), 1);
        b.failed("UserBan/ns/x");
        assert_eq!(b.in_backoff_under("UserBan/"), 1);
        assert_eq!(b.in_backoff_under("UserInvite/"), 0);
        b.succeeded("UserBan/ns/x");
        b.succeeded("a");
        assert_eq!(b.in_backoff(), 0);
        assert!(b.failed("a") <= Duration::from_secs(2));
    }

    #[test]
    fn a_hash_made_ahead_is_for_one_object_and_one_password_version() {
        let ahead = HashedAhead::default();
        ahead.keep("u1", "secret-uid/7", "$2b$10$first".into());
        assert_eq!(
            ahead.hash_of("u1", "secret-uid/7").as_deref(),
            Some("$2b$10$first")
        );
        // The Secret changed since: the old hash is never the answer.
        assert_eq!(ahead.hash_of("u1", "secret-uid/8"), None);
        // Another object with a Secret of the same version gets nothing of u1's.
        assert_eq!(ahead.hash_of("u2", "secret-uid/7"), None);
        ahead.keep("u1", "secret-uid/8", "$2b$10$second".into());
        assert_eq!(ahead.hash_of("u1", "secret-uid/7"), None);
        assert_eq!(
            ahead.hash_of("u1", "secret-uid/8").as_deref(),
            Some("$2b$10$second")
        );
        ahead.forget("u1");
        assert_eq!(ahead.hash_of("u1", "secret-uid/8"), None);
    }

    #[test]
    fn hashes_made_ahead_are_bounded() {
        let ahead = HashedAhead::default();
        for i in 0..HASHED_AHEAD_CAP {
            ahead.keep(&format!("u{i}"), "v", "h".into());
        }
        ahead.keep("one-too-many", "v", "h".into());
        assert_eq!(ahead.hash_of("one-too-many", "v"), None);
        // One already kept still gets its newer version's hash.
        ahead.keep("u0", "v2", "h2".into());
        assert_eq!(ahead.hash_of("u0", "v2").as_deref(), Some("h2"));
    }

    #[test]
    fn a_changed_fingerprint_is_not_settled() {
        let s = Settled::default();
        s.remember("u1", "3/v1/abc".into());
        assert!(s.matches("u1", "3/v1/abc"));
        assert!(!s.matches("u1", "4/v1/abc"));
        s.forget("u1");
        assert!(!s.matches("u1", "3/v1/abc"));
    }
}
