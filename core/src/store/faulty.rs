//! A decorator that injects failures (fail the k-th request) and latency, for crash tests.

use super::{ListPage, Object, PutMode, Store, StoreError, Version};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What the k-th request does when it is chosen to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The request never reaches the store and returns an error (a crash before it).
    Before,
    /// The request reaches the store, then returns an error (a crash after it, the effect kept).
    After,
}

/// An async sleep used to add latency; injected so the core stays runtime-free.
pub type SleepFn = Arc<dyn Fn(u64) -> futures::future::BoxFuture<'static, ()> + Send + Sync>;

/// Wraps a store; fails the k-th request (1-based) and every later one while "crashed".
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    seen: AtomicU64,
    fail_at: AtomicU64,
    kind: std::sync::Mutex<FaultKind>,
    crashed: AtomicBool,
    sticky: bool,
    latency: Option<(u64, SleepFn)>,
}

impl std::fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyStore")
            .field("seen", &self.seen)
            .field("fail_at", &self.fail_at)
            .field("crashed", &self.crashed)
            .finish_non_exhaustive()
    }
}

impl FaultyStore {
    /// Wraps `inner` without faults.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        FaultyStore {
            inner,
            seen: AtomicU64::new(0),
            fail_at: AtomicU64::new(0),
            kind: std::sync::Mutex::new(FaultKind::Before),
            crashed: AtomicBool::new(false),
            sticky: true,
            latency: None,
        }
    }

    /// Fails request number `k` (1-based, counted from now on) the given way. When `sticky`
    /// (the default), every later request fails too, as after a process crash.
    pub fn fail_request(self, k: u64, kind: FaultKind) -> Self {
        self.fail_at.store(k, Ordering::SeqCst);
        *self.kind.lock().unwrap_or_else(|p| p.into_inner()) = kind;
        self
    }

    /// Only the chosen request fails; later ones pass (a transient fault).
    pub fn transient(mut self) -> Self {
        self.sticky = false;
        self
    }

    /// Adds `ms` of latency to every request, using `sleep`.
    pub fn with_latency(mut self, ms: u64, sleep: SleepFn) -> Self {
        self.latency = Some((ms, sleep));
        self
    }

    /// Requests seen so far (including failed ones).
    pub fn requests_seen(&self) -> u64 {
        self.seen.load(Ordering::SeqCst)
    }

    /// True once the chosen request has failed.
    pub fn has_failed(&self) -> bool {
        self.crashed.load(Ordering::SeqCst)
    }

    async fn run<T, F>(&self, op: F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = Result<T, StoreError>>,
    {
        if let Some((ms, sleep)) = &self.latency {
            sleep(*ms).await;
        }
        let n = self.seen.fetch_add(1, Ordering::SeqCst).saturating_add(1);
        if self.sticky && self.crashed.load(Ordering::SeqCst) {
            return Err(injected(n));
        }
        let at = self.fail_at.load(Ordering::SeqCst);
        if at != 0 && n == at {
            self.crashed.store(true, Ordering::SeqCst);
            let kind = *self.kind.lock().unwrap_or_else(|p| p.into_inner());
            if kind == FaultKind::After {
                let _ = op.await;
            }
            return Err(injected(n));
        }
        op.await
    }
}

fn injected(n: u64) -> StoreError {
    StoreError::Backend(format!("injected fault at request {n}"))
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.run(self.inner.get(key)).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        self.run(self.inner.put(key, bytes, mode)).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.run(self.inner.list(prefix, start_after)).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.run(self.inner.delete(key)).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.run(self.inner.delete_many(keys)).await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}
