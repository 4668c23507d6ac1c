//! Password hashing off the request path: PBKDF2 runs on the blocking pool
//! with a bounded concurrency of its own (one permit per core by default), and
//! never while a database connection is held — handlers hash or verify
//! before or after their database calls, so a burst of logins cannot starve
//! the pool.

use std::time::Duration;

use tokio::sync::Semaphore;

use crate::crypto;
use crate::error::ApiError;

/// How long a request waits for a hashing slot before answering 503.
const QUEUE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct PasswordHasher {
    /// One permit per concurrent PBKDF2 computation.
    permits: Semaphore,
    iterations: u32,
}

impl PasswordHasher {
    /// `concurrency == 0`: one per available core.
    pub fn new(iterations: u32, concurrency: usize) -> PasswordHasher {
        let n = match concurrency {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(2),
            n => n,
        };
        PasswordHasher {
            permits: Semaphore::new(n),
            iterations,
        }
    }

    /// How many hashes may run at once.
    pub fn concurrency(&self) -> usize {
        self.permits.available_permits()
    }

    /// A new hash of `password` with the configured iterations.
    pub async fn hash(&self, password: String) -> Result<String, ApiError> {
        let iterations = self.iterations;
        self.run(move || crypto::hash_password(&password, iterations))
            .await
    }

    /// Whether `password` matches `stored` (false for a malformed hash).
    pub async fn verify(&self, password: String, stored: String) -> Result<bool, ApiError> {
        self.run(move || crypto::verify_password(&password, &stored))
            .await
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let _permit = tokio::time::timeout(QUEUE_TIMEOUT, self.permits.acquire())
            .await
            .map_err(|_| {
                tracing::warn!("password hashing is saturated; answering 503");
                ApiError::Unavailable
            })?
            .map_err(|_| ApiError::Unavailable)?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::Internal(anyhow::anyhow!("password hashing failed: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_and_verifies_with_bounded_concurrency() {
        let h = PasswordHasher::new(1_000, 2);
        assert_eq!(h.concurrency(), 2);
        let stored = h.hash("correct horse".into()).await.unwrap();
        assert!(h
            .verify("correct horse".into(), stored.clone())
            .await
            .unwrap());
        assert!(!h.verify("wrong horse".into(), stored).await.unwrap());
        assert_eq!(h.concurrency(), 2, "permits are given back");
    }
}
