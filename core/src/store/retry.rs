//! Retries with backoff over a backend whose single attempts can fail transiently (the S3
//! store, the simulator's store), and what a conditional write whose first attempt may have
//! landed is worth.
//!
//! A backend reports a failure worth another attempt as [`StoreError::Transient`], saying
//! whether the request may have taken effect (`ambiguous`: a timeout, a 5xx, a connection
//! lost after the request was sent). Reads, deletes and overwrites are retried up to
//! `max_attempts`, with jittered exponential backoff.
//!
//! A conditional write (create-only or compare-and-swap) is retried only while every failed
//! attempt is known not to have taken effect. After an attempt that may have landed, it is
//! never sent again: a second copy could land after the first was consumed (a create-only
//! transaction applied and deleted, then created again) or turn our own landed write into a
//! `412`. Instead the key is read once: when it holds exactly the bytes written, the write
//! is done; otherwise its outcome is unknown and the error says so
//! ([`StoreError::Backend`], never [`StoreError::Conflict`]): the write may still land. The
//! caller decides from what it reads next, and keeps whatever a landed write would need.

use super::cas::RetryPolicy;
use super::{ListPage, Object, PutMode, Store, StoreError, Version};
use crate::clock::Sleeper;
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// A store that retries its inner store's transient failures.
pub struct RetryingStore<S> {
    inner: S,
    max_attempts: u32,
    sleeper: Arc<dyn Sleeper>,
    retries: AtomicU64,
}

impl<S> std::fmt::Debug for RetryingStore<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RetryingStore")
            .field("max_attempts", &self.max_attempts)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl<S: Store> RetryingStore<S> {
    /// Retries `inner`'s transient failures, `max_attempts` attempts in all (at least one),
    /// sleeping with `sleeper` between them.
    pub fn new(inner: S, max_attempts: u32, sleeper: Arc<dyn Sleeper>) -> Self {
        RetryingStore {
            inner,
            max_attempts: max_attempts.max(1),
            sleeper,
            retries: AtomicU64::new(0),
        }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Attempts sent again after a transient failure, so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    async fn back_off(&self, attempt: u32) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.sleeper.sleep(backoff_ms(attempt)).await;
    }

    /// Runs `attempt` until it succeeds, fails for good or runs out of attempts; returns
    /// whether an attempt that may have taken effect was seen, with the result.
    pub async fn run<T, F, Fut>(&self, mut attempt: F) -> (bool, Result<T, StoreError>)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, StoreError>>,
    {
        let mut ambiguous_before = false;
        let policy = self.policy();
        for n in policy.attempts() {
            match attempt().await {
                Err(StoreError::Transient { message, ambiguous }) => {
                    ambiguous_before |= ambiguous;
                    if !policy.allows_after(n) {
                        let m = format!("{message} (gave up after {n} attempts)");
                        return (ambiguous_before, Err(StoreError::Backend(m)));
                    }
                    self.back_off(n).await;
                }
                other => return (ambiguous_before, other),
            }
        }
        (ambiguous_before, Err(gave_up()))
    }

    /// `max_attempts` attempts in all.
    fn policy(&self) -> RetryPolicy {
        RetryPolicy::AtMost(self.max_attempts)
    }
}

impl<S: Store> RetryingStore<S> {
    /// After a conditional write whose outcome is unknown: done when the key holds our bytes,
    /// otherwise still unknown.
    async fn settle(&self, key: &str, bytes: &[u8], message: &str) -> Result<Version, StoreError> {
        match self.get(key).await {
            Ok(Some(o)) if o.bytes == bytes => Ok(o.version),
            Ok(_) => Err(StoreError::Backend(format!(
                "outcome unknown: {message}; the write may still take effect"
            ))),
            Err(e) => Err(StoreError::Backend(format!(
                "outcome unknown: {message}; reading it back failed too ({e})"
            ))),
        }
    }
}

/// What a loop of no attempts at all says (none is: `max_attempts` is at least 1).
fn gave_up() -> StoreError {
    StoreError::Backend("no attempt was made".to_string())
}

/// Jittered exponential backoff in ms: about 50, 100, 200 … capped at 2,000.
pub fn backoff_ms(attempt: u32) -> u64 {
    let base = 50u64.saturating_mul(1 << attempt.min(6)).min(2000);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (base / 2).saturating_add(
        u64::from(nanos)
            .checked_rem((base / 2).saturating_add(1))
            .unwrap_or(0),
    )
}

#[async_trait]
impl<S: Store> Store for RetryingStore<S> {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.run(|| self.inner.get(key)).await.1
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        if mode == PutMode::Overwrite {
            return self
                .run(|| self.inner.put(key, bytes.clone(), PutMode::Overwrite))
                .await
                .1;
        }
        let policy = self.policy();
        for n in policy.attempts() {
            match self.inner.put(key, bytes.clone(), mode.clone()).await {
                Err(StoreError::Transient {
                    ambiguous: false,
                    message,
                }) => {
                    if !policy.allows_after(n) {
                        let m = format!("{message} (gave up after {n} attempts)");
                        return Err(StoreError::Backend(m));
                    }
                    self.back_off(n).await;
                }
                Err(StoreError::Transient {
                    ambiguous: true,
                    message,
                }) => {
                    // The read-back is a request the failure caused: counted with the retries.
                    self.retries.fetch_add(1, Ordering::Relaxed);
                    return self.settle(key, &bytes, &message).await;
                }
                other => return other,
            }
        }
        Err(gave_up())
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.run(|| self.inner.list(prefix, start_after)).await.1
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(|| self.inner.delete(key)).await.1
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.run(|| self.inner.delete_many(keys)).await.1
    }

    fn describe(&self) -> String {
        self.inner.describe()
    }

    fn retries(&self) -> u64 {
        self.retries().saturating_add(self.inner.retries())
    }
}
