//! What reads cost and show: the audit views read committed history only (review finding
//! 25: a journal left by a lost commit applied nothing), one record's views read that record
//! only, and passes leave a missing record alone for a while (finding 19).

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;
use tally_core::store::Store;
use tally_core::store::memory::MemoryStore;

#[tokio::test]
async fn a_lost_commits_journal_never_shows_its_transactions_as_applied() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let i = instance(
        store.clone(),
        json!({ "resources": { "wallets": ["balance"] } }),
        None,
        1,
    );
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    add(&i, "balance", "w1", 5.0).await;
    let pending = i
        .engine
        .field_transactions("wallets", "balance", None)
        .await
        .unwrap()
        .pending;
    assert_eq!(pending.len(), 1);
    // A consolidator wrote its journal, then lost the compare-and-swap and crashed.
    put_lost_first_journal(&store, "w1", json!(pending)).await;
    let seen = i
        .engine
        .field_transactions("wallets", "balance", None)
        .await
        .unwrap();
    assert!(
        seen.applied.is_empty(),
        "a lost commit counted as applied: {:?}",
        seen.applied
    );
    assert_eq!(seen.pending.len(), 1, "the transaction is still pending");
    // Once consolidated it is applied, once.
    i.engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    let seen = i
        .engine
        .field_transactions("wallets", "balance", None)
        .await
        .unwrap();
    assert_eq!((seen.applied.len(), seen.pending.len()), (1, 0));
}

#[tokio::test]
async fn one_records_raw_events_read_that_records_history_only() {
    use tally_core::store::counting::CountingStore;
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn Store> = counting.clone();
    let options =
        json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } });
    let i = instance(store.clone(), options, None, 1);
    let w = wallets(&i).await;
    for r in 0..30 {
        let id = format!("r{r:02}");
        w.insert(&json!({ "id": id, "balance": 0 })).await.unwrap();
        for _ in 0..4 {
            add(&i, "balance", &id, 1.0).await;
        }
    }
    let before = counting.counts();
    let args = [tally_core::Arg::Json(json!({ "recordId": "r07" }))];
    let rows = i
        .engine
        .query("getRawEvents", "wallets", "balance", &args)
        .await
        .unwrap();
    assert_eq!(rows.as_array().map(Vec::len), Some(4));
    let run = counting.counts().since(&before);
    // Its bookkeeping and its 4 journals, not the field's 120.
    assert!(run.get <= 6, "{run:?}");
}

#[tokio::test]
async fn passes_leave_a_missing_record_alone_for_a_while() {
    use tally_core::clock::ManualClock;
    use tally_core::store::counting::CountingStore;
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn Store> = counting.clone();
    let clock = ManualClock::new(1_767_261_600_000);
    let options = json!({ "resources": { "wallets": ["balance"] } });
    let i = instance(store.clone(), options, Some(clock.clone()), 1);
    let w = wallets(&i).await;
    // Transactions for a record deleted (or not created yet): they wait for it.
    add(&i, "balance", "gone", 1.0).await;
    let pass_gets = || async {
        let before = counting.counts();
        i.engine.run_pass().await.unwrap();
        counting.counts().since(&before).get
    };
    assert!(pass_gets().await >= 1, "the first pass reads the record");
    assert_eq!(pass_gets().await, 0, "the next one leaves it alone");
    clock.advance(31_000);
    assert!(pass_gets().await >= 1, "after 30 s it is read again");
    assert_eq!(pass_gets().await, 0);
    // Created: the insert applies its transactions at once, and passes take it up again.
    w.insert(&json!({ "id": "gone", "balance": 1 }))
        .await
        .unwrap();
    assert_eq!(w.get("gone").await.unwrap()["balance"], json!(2.0));
    add(&i, "balance", "gone", 1.0).await;
    i.engine.run_pass().await.unwrap();
    assert_eq!(
        w.get("gone").await.unwrap()["balance"],
        json!(3.0),
        "a pass still left the record alone"
    );
}
