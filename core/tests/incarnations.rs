//! Delete and re-create of an id (review finding 8, and 19 for what a deleted record leaves):
//! a new record of the same id inherits nothing of the old one's values, applied transactions
//! or history, while transactions still pending at the deletion apply to it.

mod common;
use async_trait::async_trait;
use common::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tally_core::clock::ManualClock;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{ListPage, Object, PutMode, Store, StoreError, Version, list_all};

/// A memory store whose deletes of pending transactions can be held back: a consolidator
/// that crashed right after its commit, before removing the keys it applied.
#[derive(Default)]
struct KeepsPending {
    inner: MemoryStore,
    hold: AtomicBool,
}

#[async_trait]
impl Store for KeepsPending {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        self.inner.put(key, bytes, mode).await
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.delete_many(&[key.to_string()]).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let keys: Vec<String> = keys
            .iter()
            .filter(|k| !(self.hold.load(Ordering::SeqCst) && k.contains("/t/")))
            .cloned()
            .collect();
        self.inner.delete_many(&keys).await
    }
    fn describe(&self) -> String {
        "keeps-pending".into()
    }
}

fn options(mode: &str) -> serde_json::Value {
    json!({
        "resources": { "wallets": ["balance"] },
        "consolidation": { "mode": mode },
        "garbageCollection": { "retention": 0 },
    })
}

/// The resource, with record `w1` at 0.
async fn with_w1(i: &Instance) -> tally_core::records::Resource {
    let w = wallets(i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    w
}

/// An instance on a manual clock (GC compares commit times with "now").
fn at_clock(store: Arc<dyn Store>, mode: &str) -> (Instance, Arc<ManualClock>) {
    let clock = ManualClock::new(1_780_000_000_000);
    (
        instance(store, options(mode), Some(clock.clone()), 1),
        clock,
    )
}

async fn balance(i: &Instance) -> f64 {
    let w = wallets(i).await;
    w.get("w1").await.unwrap()["balance"].as_f64().unwrap()
}

async fn recalculate(i: &Instance) -> Option<f64> {
    i.engine
        .recalculate("wallets", Some("balance"), "w1")
        .await
        .unwrap()
        .and_then(|v| v.as_f64())
}

async fn consolidate(i: &Instance) -> Option<f64> {
    i.engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap()
        .and_then(|v| v.as_f64())
}

#[tokio::test]
async fn keys_applied_to_a_deleted_record_are_never_applied_to_the_next_one() {
    let store = Arc::new(KeepsPending::default());
    let i = instance(store.clone(), options("async"), None, 1);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    store.hold.store(true, Ordering::SeqCst);
    add(&i, "balance", "w1", 5.0).await;
    add(&i, "balance", "w1", 7.0).await;
    assert_eq!(consolidate(&i).await, Some(12.0));
    let left = list_all(store.as_ref(), "db/t/").await.unwrap();
    assert_eq!(left.len(), 2, "the crash left the applied keys: {left:?}");
    store.hold.store(false, Ordering::SeqCst);
    // Still pending at the deletion: waits for the id to exist again, then applies.
    add(&i, "balance", "w1", 3.0).await;
    w.delete("w1").await.unwrap();
    assert!(!w.exists("w1").await.unwrap());
    assert_eq!(w.count().await.unwrap(), 0);
    w.insert(&json!({ "id": "w1", "balance": 100 }))
        .await
        .unwrap();
    assert_eq!(consolidate(&i).await, Some(103.0));
    assert_eq!(
        balance(&i).await,
        103.0,
        "the old incarnation's 5 and 7 came back"
    );
    assert!(list_all(store.as_ref(), "db/t/").await.unwrap().is_empty());
    // The audit trail of the new record starts with it.
    assert_eq!(recalculate(&i).await, Some(103.0));
}

#[tokio::test]
async fn recalculate_of_a_new_incarnation_never_returns_the_old_value() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (i, clock) = at_clock(store.clone(), "sync");
    let w = with_w1(&i).await;
    assert_eq!(value(add(&i, "balance", "w1", 5.0).await), Some(5.0));
    assert_eq!(value(add(&i, "balance", "w1", 2.0).await), Some(7.0));
    // Retention 0: the journals go, a checkpoint of the old record's 7 stays.
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    assert!(!list_all(store.as_ref(), "db/c/").await.unwrap().is_empty());
    w.delete("w1").await.unwrap();
    w.insert(&json!({ "id": "w1", "balance": 10 }))
        .await
        .unwrap();
    assert_eq!(value(add(&i, "balance", "w1", 1.0).await), Some(11.0));
    assert_eq!(recalculate(&i).await, Some(11.0));
    assert_eq!(balance(&i).await, 11.0);
    // With GC through the new history too.
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    assert_eq!(recalculate(&i).await, Some(11.0));
}

#[tokio::test]
async fn gc_collects_the_history_of_a_deleted_record() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let (i, clock) = at_clock(store.clone(), "sync");
    let w = with_w1(&i).await;
    for _ in 0..3 {
        add(&i, "balance", "w1", 1.0).await;
    }
    w.delete("w1").await.unwrap();
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    let journals = list_all(store.as_ref(), "db/j/").await.unwrap();
    assert!(
        journals.is_empty(),
        "a deleted record's journals stay: {journals:?}"
    );
    let checkpoints = list_all(store.as_ref(), "db/c/").await.unwrap();
    assert!(
        checkpoints.is_empty(),
        "nothing replays them: {checkpoints:?}"
    );
}

#[tokio::test]
async fn a_deleted_record_is_not_listed_and_its_id_can_be_inserted_again() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let i = instance(store.clone(), options("sync"), None, 1);
    let w = wallets(&i).await;
    for id in ["w0", "w1", "w2"] {
        w.insert(&json!({ "id": id, "balance": 0 })).await.unwrap();
    }
    add(&i, "balance", "w1", 4.0).await;
    w.delete("w1").await.unwrap();
    // No DELETE: one landing late could remove a record created again meanwhile.
    assert!(store.get("db/r/wallets/w1").await.unwrap().is_some());
    assert!(!w.exists("w1").await.unwrap());
    assert_eq!(w.list_ids().await.unwrap(), vec!["w0", "w2"]);
    assert_eq!(w.count().await.unwrap(), 2);
    assert_eq!(consolidate(&i).await, None, "a tombstone is no record");
    assert_eq!(
        w.delete("w1").await.unwrap_err().code().as_str(),
        "ERR_RECORD_NOT_FOUND"
    );
    w.insert(&json!({ "id": "w1", "balance": 1 }))
        .await
        .unwrap();
    assert_eq!(w.list_ids().await.unwrap(), vec!["w0", "w1", "w2"]);
    assert_eq!(value(add(&i, "balance", "w1", 1.0).await), Some(2.0));
    let err = w.insert(&json!({ "id": "w1" })).await.unwrap_err();
    assert_eq!(err.code().as_str(), "ERR_CONFLICT");
}

/// A memory store whose first record compare-and-swap lands; then, as scripted, the record
/// is deleted at once, the caller hears a 412 (its own second copy) or an error (the
/// response was lost), and the next read of the record fails.
#[derive(Default)]
struct LandsThen {
    inner: MemoryStore,
    done: AtomicBool,
    delete: bool,
    answer_412: bool,
    fail_read_after: bool,
    fail_next_read: AtomicBool,
}

#[async_trait]
impl Store for LandsThen {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        if key.contains("/r/") && self.fail_next_read.swap(false, Ordering::SeqCst) {
            return Err(StoreError::Backend("connection reset".into()));
        }
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        let update = matches!(mode, PutMode::Update(_)) && key.contains("/r/");
        let v = self.inner.put(key, bytes, mode).await?;
        if update && !self.done.swap(true, Ordering::SeqCst) {
            self.fail_next_read
                .store(self.fail_read_after, Ordering::SeqCst);
            if self.delete {
                let cur = self.inner.get(key).await?.unwrap();
                let doc: serde_json::Value = serde_json::from_slice(&cur.bytes).unwrap();
                let tomb = serde_json::to_vec(&json!({ "t": 1, "m": doc["m"] })).unwrap();
                self.inner
                    .put(key, tomb, PutMode::Update(cur.version))
                    .await?;
            }
            return Err(match self.answer_412 {
                true => StoreError::Conflict { key: key.into() },
                false => StoreError::Backend("outcome unknown: connection reset".into()),
            });
        }
        Ok(v)
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        "lands-then".into()
    }
}

/// Record `w1` with 5 pending on `store`, then one consolidation through its script.
async fn consolidate_through(store: Arc<LandsThen>) -> Instance {
    let i = instance(store.clone(), options("async"), None, 1);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    add(&i, "balance", "w1", 5.0).await;
    let _ = i.engine.consolidate("wallets", Some("balance"), "w1").await;
    i
}

#[tokio::test]
async fn a_commit_whose_record_was_deleted_right_after_keeps_its_journal() {
    for answer_412 in [false, true] {
        let store = Arc::new(LandsThen {
            delete: true,
            answer_412,
            ..Default::default()
        });
        let i = consolidate_through(store.clone()).await;
        let journals = list_all(store.as_ref(), "db/j/").await.unwrap();
        assert_eq!(
            journals.len(),
            1,
            "412: {answer_412}: the committed batch taken for lost"
        );
        assert!(
            list_all(store.as_ref(), "db/t/").await.unwrap().is_empty(),
            "412: {answer_412}: the applied key stays pending"
        );
        // The 5 belongs to the deleted record: a new one of the id starts from its own value.
        let w = wallets(&i).await;
        w.insert(&json!({ "id": "w1", "balance": 1 }))
            .await
            .unwrap();
        assert_eq!(consolidate(&i).await, Some(1.0));
    }
}

#[tokio::test]
async fn a_412_that_cannot_be_checked_drops_nothing() {
    // The commit lands, a 412 comes back, and the read that would tell fails.
    let store = Arc::new(LandsThen {
        answer_412: true,
        fail_read_after: true,
        ..Default::default()
    });
    let i = consolidate_through(store.clone()).await;
    assert_eq!(
        list_all(store.as_ref(), "db/j/").await.unwrap().len(),
        1,
        "a committed batch's journal was dropped on a guess"
    );
    assert_eq!(consolidate(&i).await, Some(5.0));
    assert_eq!(
        i.engine
            .recalculate("wallets", Some("balance"), "w1")
            .await
            .unwrap(),
        Some(json!(5.0))
    );
}
