//! Password hashing as LibreChat does it: bcrypt, cost 10, a `$2b$` hash that LibreChat's
//! bcryptjs verifies like its own `$2a$`.
//!
//! The digests are computed by the [`HashPool`]'s threads (one per core, several passwords
//! interleaved per thread); salts come from the operating system's random source.

use std::sync::Arc;

use base64::Engine;
use rand::RngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::eks::{self, Digest};
use super::error::StoreError;
use super::hash_pool::HashPool;

/// LibreChat's `bcrypt.genSaltSync(10)`.
pub const BCRYPT_COST: u32 = 10;

/// The highest cost a stored hash is verified at (16 times a cost-10 hash). LibreChat writes
/// cost 10; a stored hash of cost 31 would hold a bcrypt thread for days, and whoever can write
/// the instance's MongoDB could plant one to stall every tenant's hashing. A hash above this
/// counts as no match, so the declared password is hashed again at cost 10.
pub const MAX_VERIFIED_COST: u32 = 14;

#[derive(Clone)]
pub struct Hasher {
    pool: Arc<HashPool>,
}

impl Default for Hasher {
    fn default() -> Self {
        Hasher {
            pool: Arc::new(HashPool::start(hashing_threads())),
        }
    }
}

/// The bcrypt threads: one per core the operator may use (its CPU limit included).
pub fn hashing_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// How many reconciles keep the bcrypt threads busy in a burst of new accounts: twice the
/// passwords they hash at once, so that the next batch is queued while one is computed.
pub fn concurrency_to_keep_hashing() -> usize {
    2 * hashing_threads() * eks::MAX_LANES
}

impl Hasher {
    /// A `$2b$10$` hash of `password` with a fresh random salt.
    pub async fn hash(&self, password: String) -> Result<String, StoreError> {
        let password = Zeroizing::new(password.into_bytes());
        let mut salt = [0u8; 16];
        rand::rngs::OsRng
            .try_fill_bytes(&mut salt)
            .map_err(|e| StoreError::Hash(format!("no random salt: {e}")))?;
        let digest = self.digest(password, salt, BCRYPT_COST).await?;
        crate::metrics::global().bcrypt_hashed();
        Ok(hash_string(BCRYPT_COST, &salt, &digest))
    }

    /// Whether `password` matches `hash` (`$2a$`, `$2b$` or `$2y$`, the versions LibreChat's
    /// bcryptjs reads); an unreadable hash, a `$2x$` one (which the bcrypt crate reads and
    /// bcryptjs refuses: LibreChat could never log in with it), or one of a cost outside
    /// bcrypt's 4 to [`MAX_VERIFIED_COST`], counts as no match, so it is written anew.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, StoreError> {
        let password = Zeroizing::new(password.into_bytes());
        if !["$2a$", "$2b$", "$2y$"].iter().any(|v| hash.starts_with(v)) {
            return Ok(false);
        }
        let Ok(parts) = hash.parse::<bcrypt::HashParts>() else {
            return Ok(false);
        };
        let cost = parts.get_cost();
        if !eks::COSTS.contains(&cost) || cost > MAX_VERIFIED_COST {
            return Ok(false);
        }
        let salt = parts.get_salt_raw();
        let digest = self.digest(password, salt, cost).await?;
        let ours = hash_string(cost, &salt, &digest);
        let theirs = parts.format_for_version(bcrypt::Version::TwoB);
        Ok(ours.as_bytes().ct_eq(theirs.as_bytes()).into())
    }

    async fn digest(
        &self,
        password: Zeroizing<Vec<u8>>,
        salt: [u8; 16],
        cost: u32,
    ) -> Result<Digest, StoreError> {
        self.pool
            .digest(password, salt, cost)
            .await
            .map_err(|e| StoreError::Hash(e.to_string()))
    }
}

/// `$2b$<cost>$<salt><digest>` in bcrypt's base64.
fn hash_string(cost: u32, salt: &[u8; 16], digest: &Digest) -> String {
    format!(
        "$2b${cost:02}${}{}",
        bcrypt::BASE_64.encode(salt),
        bcrypt::BASE_64.encode(digest)
    )
}

/// One cost-10 hash on the calling thread, alone: what `make bench` measures as the floor's
/// unit of work, with the operator's own code.
pub fn hash_alone_blocking(password: &str, salt: [u8; 16]) -> String {
    let lane = eks::Lane {
        password: password.as_bytes(),
        salt,
    };
    let [digest] = eks::bcrypt::<1>(BCRYPT_COST, &[lane]);
    hash_string(BCRYPT_COST, &salt, &digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_cost_10_and_verify() {
        let hasher = Hasher::default();
        let hash = hasher.hash("Jane-Fixture-Pass-2".into()).await.unwrap();
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        assert_eq!(hash.len(), 60);
        assert!(
            bcrypt::verify("Jane-Fixture-Pass-2", &hash).unwrap(),
            "the bcrypt crate agrees"
        );
        assert!(hasher
            .verify("Jane-Fixture-Pass-2".into(), hash.clone())
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), hash).await.unwrap());
    }

    #[tokio::test]
    async fn two_hashes_of_one_password_have_different_salts() {
        let hasher = Hasher::default();
        let (a, b) = tokio::join!(hasher.hash("same".into()), hasher.hash("same".into()));
        assert_ne!(a.unwrap()[7..29], b.unwrap()[7..29]);
    }

    #[tokio::test]
    async fn librechat_hashes_verify() {
        // Written by LibreChat's bcryptjs (fixture users.local.json).
        let hash = "$2a$10$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq".to_string();
        let hasher = Hasher::default();
        assert!(hasher
            .verify("Jane-Fixture-Pass-2".into(), hash.clone())
            .await
            .unwrap());
        assert!(!hasher
            .verify("Jane-Fixture-Pass-3".into(), hash)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn a_2x_hash_of_the_password_does_not_match() {
        // The fixture's hash under the `$2x$` version: the bcrypt crate verifies it, LibreChat's
        // bcryptjs refuses it, so an account holding it could never log in.
        let hash = "$2x$10$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq";
        assert!(bcrypt::verify("Jane-Fixture-Pass-2", hash).unwrap());
        let hasher = Hasher::default();
        assert!(!hasher
            .verify("Jane-Fixture-Pass-2".into(), hash.into())
            .await
            .unwrap());
        let y = hash.replace("$2x$", "$2y$");
        assert!(hasher
            .verify("Jane-Fixture-Pass-2".into(), y)
            .await
            .unwrap());
    }

    #[tokio::test]
    async fn unreadable_or_unbounded_hashes_do_not_match() {
        let hasher = Hasher::default();
        for hash in [
            "",
            "plain-text",
            "$2b$03$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq",
            "$2b$32$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq",
            // A planted cost-31 hash would hold a bcrypt thread for days: refused unhashed
            // (this test would not finish otherwise).
            "$2b$31$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq",
            "$2b$15$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq",
            "$3b$10$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq",
        ] {
            assert!(
                !hasher.verify("x".into(), hash.into()).await.unwrap(),
                "{hash}"
            );
        }
    }

    #[test]
    fn the_lone_hash_is_the_bcrypt_crates() {
        let salt = [7u8; 16];
        let ours = hash_alone_blocking("Bench-Password-1", salt);
        let theirs = bcrypt::hash_with_salt("Bench-Password-1", BCRYPT_COST, salt).unwrap();
        assert_eq!(ours, theirs.to_string());
    }
}
