//! What the operator remembers between reconciles of one object, in this process only: which
//! objects it verified against their ownership record (so a resync of a settled object is one
//! read), and how often each object failed in a row (for its backoff). Nothing here comes from
//! status, which anyone with write access to the object could forge; a restart forgets it all,
//! and the first reconcile after it verifies everything again.

use std::collections::HashMap;
use std::sync::Mutex;
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
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .is_some_and(|f| f == fingerprint)
    }

    /// The account id a verified fingerprint ends with.
    pub fn verified_account(&self, uid: &str) -> Option<String> {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(uid)
            .and_then(|f| f.rsplit('/').next().map(str::to_string))
    }

    pub fn remember(&self, uid: &str, fingerprint: String) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(uid.to_string(), fingerprint);
    }

    pub fn forget(&self, uid: &str) {
        self.verified
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(uid);
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
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let count = failures.entry(key.to_string()).or_insert(0);
        *count = count.saturating_add(1);
        delay(*count, rand::thread_rng().gen_range(0.5..1.0))
    }

    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// How many objects are waiting out a backoff.
    pub fn in_backoff(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// How many objects whose key starts with `prefix` are waiting out a backoff.
    pub fn in_backoff_under(&self, prefix: &str) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
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
    fn a_changed_fingerprint_is_not_settled() {
        let s = Settled::default();
        s.remember("u1", "3/v1/abc".into());
        assert!(s.matches("u1", "3/v1/abc"));
        assert!(!s.matches("u1", "4/v1/abc"));
        s.forget("u1");
        assert!(!s.matches("u1", "3/v1/abc"));
    }
}
