//! The audit views read committed history only (review finding 25): a journal left by a lost
//! commit applied nothing, so its transactions show as pending until a commit applies them.

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{PutMode, Store};

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
        .field_transactions("wallets", "balance")
        .await
        .unwrap()
        .pending;
    assert_eq!(pending.len(), 1);
    // A consolidator wrote its journal, then lost the compare-and-swap and crashed.
    let journal = json!({
        "seq": 1, "prev": null, "resource": "wallets", "field": "balance", "recordId": "w1",
        "committedAt": 1, "keys": [], "transactions": pending,
        "values": { "balance": { "before": "0", "after": "5" } },
    });
    store
        .put(
            "db/j/wallets/balance/w1/0000000001-000000001-lostlostlost",
            serde_json::to_vec(&journal).unwrap(),
            PutMode::Create,
        )
        .await
        .unwrap();
    let seen = i
        .engine
        .field_transactions("wallets", "balance")
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
        .field_transactions("wallets", "balance")
        .await
        .unwrap();
    assert_eq!((seen.applied.len(), seen.pending.len()), (1, 0));
}
