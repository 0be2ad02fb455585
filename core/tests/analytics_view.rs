//! Answers that add pending transactions to materialized analytics stay exact when another
//! process consolidates in the middle of the reads (second review of the analytics view):
//! a batch committed after the inbox was listed, and entries a later fold deleted before it
//! was listed, each count once.

mod common;
use async_trait::async_trait;
use common::*;
use futures::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use tally_core::Arg;
use tally_core::clock::ManualClock;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{ListPage, Object, PutMode, Store, StoreError, Version};

/// 2026-01-05 10:00Z.
const START: i64 = 1_767_607_200_000;

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A store that runs a hook once, before the first GET or LIST whose key or prefix contains
/// a marker: another process's work landing between two reads.
struct HookStore {
    inner: Arc<dyn Store>,
    hook: Mutex<Option<(String, Hook)>>,
}

impl HookStore {
    fn arm(&self, marker: &str, hook: Hook) {
        *self.hook.lock().unwrap() = Some((marker.to_string(), hook));
    }

    async fn maybe_run(&self, key: &str) {
        let hook = {
            let mut slot = self.hook.lock().unwrap();
            match slot.as_ref() {
                Some((marker, _)) if key.contains(marker.as_str()) => slot.take().map(|(_, h)| h),
                _ => None,
            }
        };
        if let Some(h) = hook {
            h().await;
        }
    }
}

#[async_trait]
impl Store for HookStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.maybe_run(key).await;
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        self.inner.put(key, bytes, mode).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.maybe_run(prefix).await;
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        "hooked".into()
    }
}

fn config() -> Value {
    json!({
        "resources": { "wallets": ["balance"] },
        "consolidation": { "mode": "async", "auto": false },
        "analytics": { "enabled": true },
    })
}

/// A querying instance behind the hook store, and another process on the same storage.
async fn setup() -> (Arc<HookStore>, Instance, Arc<Instance>) {
    let inner: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let hooked = Arc::new(HookStore {
        inner: inner.clone(),
        hook: Mutex::new(None),
    });
    let clock = ManualClock::new(START);
    let q = instance(hooked.clone(), config(), Some(clock.clone()), 1);
    let other = Arc::new(instance(inner, config(), Some(clock), 2));
    let w = wallets(&q).await;
    w.insert(&json!({ "id": "a" })).await.unwrap();
    add(&q, "balance", "a", 5.0).await;
    (hooked, q, other)
}

fn consolidate_a(other: &Arc<Instance>, times: usize) -> Hook {
    let other = other.clone();
    Box::new(move || {
        Box::pin(async move {
            for _ in 0..times {
                other
                    .engine
                    .consolidate("wallets", Some("balance"), "a")
                    .await
                    .unwrap();
            }
        })
    })
}

async fn top_of_day(q: &Instance) -> Value {
    q.engine
        .query(
            "getTopRecords",
            "wallets",
            "balance",
            &[Arg::Json(json!({ "period": "day", "date": "2026-01-05" }))],
        )
        .await
        .unwrap()
}

async fn day_with_pending(q: &Instance) -> (Value, Value) {
    let p = q
        .engine
        .query(
            "getAnalytics",
            "wallets",
            "balance",
            &[Arg::Json(
                json!({ "period": "day", "date": "2026-01-05", "includePending": true }),
            )],
        )
        .await
        .unwrap();
    (p[0]["count"].clone(), p[0]["sum"].clone())
}

#[tokio::test]
async fn a_batch_committed_while_the_objects_are_read_counts_once() {
    let (hooked, q, other) = setup().await;
    // The pending key is listed, then the state and the inbox are read; while the top object
    // is read, the other process commits and folds the batch and deletes the key.
    hooked.arm("/t/2026-01-05", consolidate_a(&other, 1));
    let top = top_of_day(&q).await;
    assert_eq!(top, json!([{ "recordId": "a", "count": 1, "sum": 5.0 }]));
    add(&q, "balance", "a", 2.0).await;
    hooked.arm("/h/2026-01", consolidate_a(&other, 1));
    let hours = q
        .engine
        .query(
            "getDayByHour",
            "wallets",
            "balance",
            &[
                Arg::String("2026-01-05".into()),
                Arg::Json(json!({ "includePending": true })),
            ],
        )
        .await
        .unwrap();
    assert_eq!(
        (hours[0]["count"].clone(), hours[0]["sum"].clone()),
        (json!(2), json!(7.0))
    );
}

#[tokio::test]
async fn entries_a_later_fold_deleted_before_the_inbox_was_listed_still_count() {
    let (hooked, q, other) = setup().await;
    // Before the inbox is listed: a fold takes the batch's entry (not flushed), and a
    // consolidation with nothing to do deletes the entries that fold took.
    hooked.arm("/in/", consolidate_a(&other, 2));
    assert_eq!(day_with_pending(&q).await, (json!(1), json!(5.0)));
    add(&q, "balance", "a", 2.0).await;
    hooked.arm("/in/", consolidate_a(&other, 2));
    let top = top_of_day(&q).await;
    assert_eq!(top, json!([{ "recordId": "a", "count": 2, "sum": 7.0 }]));
}
