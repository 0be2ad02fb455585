//! GC and `recalculate` cost in proportion to the work since the last run, not to the
//! retained history (review finding 17): journal names carry their commit time, a checkpoint
//! is written at each hour's last batch, and the next run starts from it.

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;
use tally_core::clock::ManualClock;
use tally_core::store::counting::CountingStore;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{Store, list_all};

const HOUR: i64 = 3_600_000;

#[tokio::test]
async fn gc_and_recalculate_read_what_came_since_the_last_checkpoint() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn Store> = counting.clone();
    // 2026-01-01T10:00Z, a 30-day retention: nothing is old enough to go.
    let clock = ManualClock::new(1_767_261_600_000);
    let options =
        json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } });
    let i = instance(store.clone(), options, Some(clock.clone()), 1);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    for _ in 0..200 {
        add(&i, "balance", "w1", 1.0).await;
        clock.advance(1_000);
    }
    // Still within the hour of those batches: no checkpoint yet, and no journal read.
    let before = counting.counts();
    i.engine.run_gc().await.unwrap();
    let run = counting.counts().since(&before);
    assert_eq!(run.get, 1, "only the record's bookkeeping: {run:?}");
    // The next hour: the 200 journals are read once, and a checkpoint of the hour written.
    clock.advance(HOUR);
    let before = counting.counts();
    i.engine.run_gc().await.unwrap();
    let run = counting.counts().since(&before);
    assert!(run.get >= 200 && run.get <= 203, "{run:?}");
    assert_eq!(list_all(store.as_ref(), "db/c/").await.unwrap().len(), 1);
    // Five more batches, another hour: five journals read, not 205.
    for _ in 0..5 {
        add(&i, "balance", "w1", 1.0).await;
    }
    clock.advance(HOUR);
    let before = counting.counts();
    i.engine.run_gc().await.unwrap();
    let run = counting.counts().since(&before);
    assert!(run.get <= 8, "{run:?}");
    // recalculate replays from the newest checkpoint: 205 is still the sum of all 205 adds.
    add(&i, "balance", "w1", 1.0).await;
    let before = counting.counts();
    let v = i
        .engine
        .recalculate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(v.and_then(|v| v.as_f64()), Some(206.0));
    let run = counting.counts().since(&before);
    assert!(run.get <= 8, "{run:?}");
    // Nothing was collected: the audit trail keeps all 206 journals.
    assert_eq!(list_all(store.as_ref(), "db/j/").await.unwrap().len(), 206);
}

/// Adds 1 to `w1` with idempotency key `k`.
async fn keyed_add(i: &Instance, k: &str) -> tally_core::MutationResult {
    let options = tally_core::MutationOptions {
        idempotency_key: Some(k.into()),
        ..Default::default()
    };
    i.engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            tally_core::Op::Add,
            &n(1.0),
            options,
        )
        .await
        .unwrap()
}

/// A sync-mode instance with GC retention 0, on a manual clock, with record `w1` at 0.
async fn retention_zero() -> (Arc<dyn Store>, Arc<ManualClock>, Instance) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(1_767_261_600_000);
    let options = json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" },
                          "garbageCollection": { "retention": 0 } });
    let i = instance(store.clone(), options, Some(clock.clone()), 1);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    (store, clock, i)
}

#[tokio::test]
async fn markers_go_with_their_transactions_and_never_before_the_window() {
    let (store, clock, i) = retention_zero().await;
    for k in ["a", "b"] {
        keyed_add(&i, k).await;
    }
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    assert!(
        list_all(store.as_ref(), "db/j/").await.unwrap().is_empty(),
        "retention 0"
    );
    assert_eq!(
        list_all(store.as_ref(), "db/i/").await.unwrap().len(),
        2,
        "too young to go"
    );
    // A reused key within the window is still a duplicate.
    let again = keyed_add(&i, "a").await;
    assert_eq!(value(again), Some(2.0));
    clock.advance(16 * 60 * 1000);
    i.engine.run_gc().await.unwrap();
    assert!(list_all(store.as_ref(), "db/i/").await.unwrap().is_empty());
    // A later batch makes the bookkeeping forget the key too; reused then, it is a new
    // transaction, with a new marker at the same key, which must outlive the old one's entry
    // in the checkpoint.
    assert_eq!(value(add(&i, "balance", "w1", 1.0).await), Some(3.0));
    let reused = keyed_add(&i, "a").await;
    assert_eq!(value(reused), Some(4.0));
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    assert_eq!(
        list_all(store.as_ref(), "db/i/").await.unwrap().len(),
        1,
        "the new marker went with the old one"
    );
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    assert_eq!(list_all(store.as_ref(), "db/i/").await.unwrap().len(), 1);
    assert_eq!(
        value(add(&i, "balance", "w1", 1.0).await),
        Some(5.0),
        "recalculate-safe after every GC"
    );
}

#[tokio::test]
async fn gc_never_collects_another_transactions_marker_at_the_same_key() {
    let (store, clock, i) = retention_zero().await;
    keyed_add(&i, "a").await;
    clock.advance(1);
    i.engine.run_gc().await.unwrap();
    // Meanwhile (another GC collected it, and the key was used again) the marker at that key
    // names another transaction.
    let markers = list_all(store.as_ref(), "db/i/").await.unwrap();
    assert_eq!(markers.len(), 1);
    let other = json!({ "transaction": { "id": "tx-1-someoneelse" }, "at": 1 });
    store
        .put(
            &markers[0],
            serde_json::to_vec(&other).unwrap(),
            tally_core::store::PutMode::Overwrite,
        )
        .await
        .unwrap();
    clock.advance(16 * 60 * 1000);
    i.engine.run_gc().await.unwrap();
    assert_eq!(
        list_all(store.as_ref(), "db/i/").await.unwrap(),
        markers,
        "GC collected a marker that is not the one it carried"
    );
}
