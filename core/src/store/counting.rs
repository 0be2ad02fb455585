//! A decorator that counts requests by kind, and what became of them: for cost assertions,
//! benchmarks and the metrics (every store a connection string opens is wrapped in one).

use super::{ListPage, Object, PutMode, Store, StoreError, Version};
use async_trait::async_trait;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Request counts by kind. A delete-many counts as one `delete_many` request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// GET requests.
    pub get: u64,
    /// PUT requests (any mode).
    pub put: u64,
    /// LIST requests (one per page).
    pub list: u64,
    /// Single DELETE requests.
    pub delete: u64,
    /// Multi-object delete requests.
    pub delete_many: u64,
    /// Conditional writes refused because the object changed, existed or was gone.
    pub conflicts: u64,
    /// Requests that failed otherwise (after the retries of a store that retries).
    pub failures: u64,
    /// Attempts the wrapped store sent again after a transient failure, and read-backs of
    /// conditional writes whose outcome was unknown.
    pub retries: u64,
}

impl Counts {
    /// Every request.
    pub fn total(&self) -> u64 {
        [self.get, self.put, self.list, self.delete, self.delete_many]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
    /// Requests that write (PUT, DELETE, delete-many).
    pub fn writes(&self) -> u64 {
        [self.put, self.delete, self.delete_many]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b))
    }
    /// The difference `self - earlier`.
    pub fn since(&self, earlier: &Counts) -> Counts {
        Counts {
            get: self.get.saturating_sub(earlier.get),
            put: self.put.saturating_sub(earlier.put),
            list: self.list.saturating_sub(earlier.list),
            delete: self.delete.saturating_sub(earlier.delete),
            delete_many: self.delete_many.saturating_sub(earlier.delete_many),
            conflicts: self.conflicts.saturating_sub(earlier.conflicts),
            failures: self.failures.saturating_sub(earlier.failures),
            retries: self.retries.saturating_sub(earlier.retries),
        }
    }
}

/// Wraps a store and counts the requests that reach it.
pub struct CountingStore {
    inner: Arc<dyn Store>,
    get: AtomicU64,
    put: AtomicU64,
    list: AtomicU64,
    delete: AtomicU64,
    delete_many: AtomicU64,
    conflicts: AtomicU64,
    failures: AtomicU64,
}

impl std::fmt::Debug for CountingStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CountingStore")
            .field("counts", &self.request_counts())
            .finish_non_exhaustive()
    }
}

impl CountingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn Store>) -> Self {
        CountingStore {
            inner,
            get: AtomicU64::new(0),
            put: AtomicU64::new(0),
            list: AtomicU64::new(0),
            delete: AtomicU64::new(0),
            delete_many: AtomicU64::new(0),
            conflicts: AtomicU64::new(0),
            failures: AtomicU64::new(0),
        }
    }

    /// The counts so far.
    pub fn counts(&self) -> Counts {
        Counts {
            get: self.get.load(Ordering::SeqCst),
            put: self.put.load(Ordering::SeqCst),
            list: self.list.load(Ordering::SeqCst),
            delete: self.delete.load(Ordering::SeqCst),
            delete_many: self.delete_many.load(Ordering::SeqCst),
            conflicts: self.conflicts.load(Ordering::SeqCst),
            failures: self.failures.load(Ordering::SeqCst),
            retries: self.inner.retries(),
        }
    }

    /// Counts what became of a request.
    fn outcome<T>(&self, r: Result<T, StoreError>) -> Result<T, StoreError> {
        match &r {
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                self.conflicts.fetch_add(1, Ordering::SeqCst);
            }
            Err(_) => {
                self.failures.fetch_add(1, Ordering::SeqCst);
            }
            Ok(_) => {}
        }
        r
    }
}

#[async_trait]
impl Store for CountingStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.get.fetch_add(1, Ordering::SeqCst);
        self.outcome(self.inner.get(key).await)
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        self.put.fetch_add(1, Ordering::SeqCst);
        self.outcome(self.inner.put(key, bytes, mode).await)
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.list.fetch_add(1, Ordering::SeqCst);
        self.outcome(self.inner.list(prefix, start_after).await)
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete.fetch_add(1, Ordering::SeqCst);
        self.outcome(self.inner.delete(key).await)
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.delete_many.fetch_add(1, Ordering::SeqCst);
        self.outcome(self.inner.delete_many(keys).await)
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
    fn retries(&self) -> u64 {
        self.inner.retries()
    }
    fn request_counts(&self) -> Option<Counts> {
        Some(self.counts())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn counts_requests_and_refused_conditional_writes() {
        let s = CountingStore::new(Arc::new(MemoryStore::new()));
        let v = s.put("k", b"a".to_vec(), PutMode::Create).await.unwrap();
        assert!(s.put("k", b"b".to_vec(), PutMode::Create).await.is_err());
        let stale = Version("stale".into());
        assert!(
            s.put("k", b"c".to_vec(), PutMode::Update(stale))
                .await
                .is_err()
        );
        s.put("k", b"d".to_vec(), PutMode::Update(v)).await.unwrap();
        s.get("k").await.unwrap();
        let c = s.counts();
        assert_eq!((c.put, c.get, c.conflicts, c.failures), (4, 1, 2, 0));
        assert_eq!(s.request_counts(), Some(c));
    }
}
