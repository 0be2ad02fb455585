//! In-memory store: a sorted map behind a mutex; named buckets are shared within a process.

use super::{ListPage, Object, PAGE_SIZE, PutMode, Store, StoreError, Version, validate_key};
use async_trait::async_trait;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, OnceLock};

/// A store held in memory. Every operation is atomic under one lock.
#[derive(Default)]
pub struct MemoryStore {
    name: String,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Inner {
    objects: BTreeMap<String, Object>,
    next_version: u64,
}

impl MemoryStore {
    /// A new, private, empty store.
    pub fn new() -> Self {
        Self::named("private")
    }

    fn named(name: &str) -> Self {
        MemoryStore {
            name: name.to_string(),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The process-wide store for `bucket`: two callers naming the same bucket share data, as
    /// two `S3db` instances on the same `memory://bucket` do.
    pub fn shared(bucket: &str) -> Arc<MemoryStore> {
        static BUCKETS: OnceLock<Mutex<HashMap<String, Arc<MemoryStore>>>> = OnceLock::new();
        let buckets = BUCKETS.get_or_init(Default::default);
        let mut map = buckets.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(bucket.to_string())
            .or_insert_with(|| Arc::new(MemoryStore::named(bucket)))
            .clone()
    }

    /// Number of objects held (for tests and diagnostics).
    pub fn len(&self) -> usize {
        self.lock().objects.len()
    }

    /// True when the store holds no object.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        validate_key(key)?;
        Ok(self.lock().objects.get(key).cloned())
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        validate_key(key)?;
        let mut inner = self.lock();
        match (&mode, inner.objects.get(key)) {
            (PutMode::Create, Some(_)) => {
                return Err(StoreError::Conflict { key: key.into() });
            }
            (PutMode::Update(_), None) => return Err(StoreError::NotFound { key: key.into() }),
            (PutMode::Update(v), Some(cur)) if &cur.version != v => {
                return Err(StoreError::Conflict { key: key.into() });
            }
            _ => {}
        }
        inner.next_version = inner.next_version.saturating_add(1);
        let version = Version(format!("m{}", inner.next_version));
        inner.objects.insert(
            key.to_string(),
            Object {
                bytes,
                version: version.clone(),
            },
        );
        Ok(version)
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        let inner = self.lock();
        let mut keys = Vec::new();
        let mut truncated = false;
        use std::ops::Bound;
        let lower = match start_after {
            Some(a) if a >= prefix => Bound::Excluded(a.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        for key in inner
            .objects
            .range::<String, _>((lower, Bound::Unbounded))
            .map(|(k, _)| k)
        {
            if !key.starts_with(prefix) {
                break;
            }
            if keys.len() == PAGE_SIZE {
                truncated = true;
                break;
            }
            keys.push(key.clone());
        }
        Ok(ListPage { keys, truncated })
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        validate_key(key)?;
        self.lock().objects.remove(key);
        Ok(())
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        for key in keys {
            validate_key(key)?;
        }
        let mut inner = self.lock();
        for key in keys {
            inner.objects.remove(key);
        }
        Ok(())
    }

    fn describe(&self) -> String {
        format!("memory://{}", self.name)
    }
}
