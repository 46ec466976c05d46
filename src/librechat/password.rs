//! Password hashing as LibreChat does it (bcrypt, cost 10), off the async runtime.
//!
//! A cost-10 hash costs tens of milliseconds of CPU. Running it on a Tokio worker would stall
//! every other reconcile on that worker, so it goes to the blocking pool, and a semaphore sized
//! to the cores keeps a burst of new users from queueing hundreds of threads.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::error::StoreError;

/// LibreChat's `bcrypt.genSaltSync(10)`.
pub const BCRYPT_COST: u32 = 10;

#[derive(Clone)]
pub struct Hasher {
    permits: Arc<Semaphore>,
}

impl Default for Hasher {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        Hasher {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl Hasher {
    /// A `$2b$10$` hash, which LibreChat's bcryptjs accepts like its own `$2a$`.
    pub async fn hash(&self, password: String) -> Result<String, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Hash(e.to_string()))?;
        crate::metrics::global().bcrypt_hashed();
        tokio::task::spawn_blocking(move || bcrypt::hash(password, BCRYPT_COST))
            .await
            .map_err(|e| StoreError::Hash(e.to_string()))?
            .map_err(|e| StoreError::Hash(e.to_string()))
    }

    /// Whether `password` matches `hash`; an unreadable hash counts as no match.
    pub async fn verify(&self, password: String, hash: String) -> Result<bool, StoreError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|e| StoreError::Hash(e.to_string()))?;
        tokio::task::spawn_blocking(move || bcrypt::verify(password, &hash).unwrap_or(false))
            .await
            .map_err(|e| StoreError::Hash(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_are_cost_10_and_verify() {
        let hasher = Hasher::default();
        let hash = hasher.hash("Jane-Fixture-Pass-2".into()).await.unwrap();
        assert!(hash.starts_with("$2b$10$"), "{hash}");
        assert!(hasher
            .verify("Jane-Fixture-Pass-2".into(), hash.clone())
            .await
            .unwrap());
        assert!(!hasher.verify("wrong".into(), hash).await.unwrap());
    }

    #[tokio::test]
    async fn librechat_hashes_verify() {
        // Written by LibreChat's bcryptjs (fixture users.local.json).
        let hash = "$2a$10$K0669NN20kv96HbUdSu46eBmoBBF5zcYMZwIclo/a8madA4Dw/bkq".to_string();
        assert!(Hasher::default()
            .verify("Jane-Fixture-Pass-2".into(), hash)
            .await
            .unwrap());
    }
}
