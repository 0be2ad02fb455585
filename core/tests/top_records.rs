//! Field-wide audit views cost what is new, not the retained history (review finding 17):
//! with analytics on, `getTopRecords` reads the cohorts' top objects and `getCohortStats` the
//! hour points, plus the pending transactions; a pending key whose batch was applied and
//! folded counts once; a field folded by an earlier version is answered from its journals.

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tally_core::Arg;
use tally_core::clock::ManualClock;
use tally_core::store::counting::CountingStore;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{PutMode, Store, list_all};

/// 2026-01-05 10:00Z, a Monday.
const START: i64 = 1_767_607_200_000;
const HOUR: i64 = 3_600_000;

fn config(mode: &str) -> Value {
    json!({
        "resources": { "wallets": ["balance"] },
        "consolidation": { "mode": mode, "auto": false, "window": 6 },
        "analytics": { "enabled": true },
    })
}

async fn query(i: &Instance, f: &str, options: Value) -> Value {
    i.engine
        .query(f, "wallets", "balance", &[Arg::Json(options)])
        .await
        .unwrap()
}

async fn top(i: &Instance, options: Value) -> Value {
    query(i, "getTopRecords", options).await
}

/// `[(recordId, count, sum)]` of a top-records answer.
fn rows(v: &Value) -> Vec<(String, u64, f64)> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["recordId"].as_str().unwrap().to_string(),
                r["count"].as_u64().unwrap(),
                r["sum"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn row(id: &str, count: u64, sum: f64) -> (String, u64, f64) {
    (id.to_string(), count, sum)
}

#[tokio::test]
async fn top_records_and_cohort_stats_read_a_few_objects_whatever_the_history() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let store: Arc<dyn Store> = counting.clone();
    let clock = ManualClock::new(START);
    let i = instance(store.clone(), config("sync"), Some(clock.clone()), 1);
    let w = wallets(&i).await;
    for id in ["a", "b", "c"] {
        w.insert(&json!({ "id": id })).await.unwrap();
    }
    // 150 sync adds (150 journals) over three records and two days: a 1 each, b 2, c 3 on
    // the first day; the second day only c.
    for k in 0..120 {
        let (id, v) = [("a", 1.0), ("b", 2.0), ("c", 3.0)][k % 3];
        add(&i, "balance", id, v).await;
        clock.advance(60_000);
    }
    clock.set(START + 24 * HOUR);
    for _ in 0..30 {
        add(&i, "balance", "c", 3.0).await;
        clock.advance(60_000);
    }
    assert_eq!(list_all(store.as_ref(), "db/j/").await.unwrap().len(), 150);
    let cases = [
        (
            json!({ "period": "day", "date": "2026-01-05" }),
            vec![row("a", 40, 40.0), row("b", 40, 80.0), row("c", 40, 120.0)],
        ),
        (
            json!({ "period": "day", "date": "2026-01-05", "sortBy": "totalValue", "limit": 2 }),
            vec![row("c", 40, 120.0), row("b", 40, 80.0)],
        ),
        (
            json!({ "period": "week", "date": "2026-W02" }),
            vec![row("c", 70, 210.0), row("a", 40, 40.0), row("b", 40, 80.0)],
        ),
        (
            json!({ "period": "month" }),
            vec![row("c", 70, 210.0), row("a", 40, 40.0), row("b", 40, 80.0)],
        ),
        // The hours of a day add up to the day: its top object, not 24 of them.
        (
            json!({ "period": "hour", "date": "2026-01-06" }),
            vec![row("c", 30, 90.0)],
        ),
    ];
    for (options, expected) in cases {
        let before = counting.counts();
        let got = top(&i, options.clone()).await;
        let used = counting.counts().since(&before);
        assert_eq!(rows(&got), expected, "{options}");
        // The fold state (twice) and one top object; LISTs of the pending keys and of the inbox (and
        // of the top objects when no date is given): not a GET per journal.
        let lists = if options.get("date").is_some() { 2 } else { 3 };
        assert!(
            used.get <= 3 && used.list <= lists && used.writes() == 0,
            "{options}: {used:?}"
        );
    }
    // The last six hours: 30 applied transactions, in the current hour.
    clock.set(START + 24 * HOUR + 20 * 60_000);
    let before = counting.counts();
    let stats = i.engine.cohort_stats("wallets", "balance").await.unwrap();
    let used = counting.counts().since(&before);
    assert!(used.get <= 3 && used.list <= 2, "{used:?}");
    assert_eq!(stats.as_array().unwrap().len(), 6);
    assert_eq!(
        stats[0],
        json!({ "cohort": "2026-01-06T10", "pending": 0, "applied": 30, "total": 30 })
    );
    assert!(
        stats.as_array().unwrap()[1..]
            .iter()
            .all(|h| h["total"] == 0)
    );
}

#[tokio::test]
async fn a_pending_key_applied_and_folded_counts_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let i = instance(store.clone(), config("async"), Some(clock.clone()), 2);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "a" })).await.unwrap();
    add(&i, "balance", "a", 5.0).await;
    add(&i, "balance", "a", 2.0).await;
    let keys = list_all(store.as_ref(), "db/t/").await.unwrap();
    assert_eq!(keys.len(), 2);
    let kept = store.get(&keys[0]).await.unwrap().unwrap().bytes;
    i.engine
        .consolidate("wallets", Some("balance"), "a")
        .await
        .unwrap();
    // The key is back before anyone deleted it for good (a create that landed late): its
    // batch is committed and folded, so it is no longer pending.
    store
        .put(&keys[0], kept.to_vec(), PutMode::Create)
        .await
        .unwrap();
    let day = query(
        &i,
        "getAnalytics",
        json!({ "period": "day", "date": "2026-01-05", "includePending": true }),
    )
    .await;
    assert_eq!(
        (day[0]["count"].as_u64(), day[0]["sum"].as_f64()),
        (Some(2), Some(7.0))
    );
    let t = top(&i, json!({ "period": "day", "date": "2026-01-05" })).await;
    assert_eq!(rows(&t), vec![row("a", 2, 7.0)]);
    let stats = i.engine.cohort_stats("wallets", "balance").await.unwrap();
    assert_eq!(
        (stats[0]["pending"].as_u64(), stats[0]["applied"].as_u64()),
        (Some(0), Some(2))
    );
    // A transaction not consolidated yet does count as pending.
    add(&i, "balance", "a", 1.0).await;
    let t = top(&i, json!({ "period": "day", "date": "2026-01-05" })).await;
    assert_eq!(rows(&t), vec![row("a", 3, 8.0)]);
    let stats = i.engine.cohort_stats("wallets", "balance").await.unwrap();
    assert_eq!(
        (stats[0]["pending"].as_u64(), stats[0]["applied"].as_u64()),
        (Some(1), Some(2))
    );
}

#[tokio::test]
async fn a_field_folded_by_an_earlier_version_answers_from_its_journals() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let i = instance(store.clone(), config("sync"), Some(clock.clone()), 3);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "a" })).await.unwrap();
    w.insert(&json!({ "id": "b" })).await.unwrap();
    add(&i, "balance", "a", 1.0).await;
    add(&i, "balance", "b", 4.0).await;
    // What an earlier version left: no top objects, a fold state without `top`.
    let mut doomed = Vec::new();
    for key in list_all(store.as_ref(), "db/a/").await.unwrap() {
        if key.contains("/t/") {
            doomed.push(key);
        } else if key.ends_with("/fold") {
            let mut state: Value =
                serde_json::from_slice(&store.get(&key).await.unwrap().unwrap().bytes).unwrap();
            let plan = state["plan"].as_object_mut().unwrap();
            plan.retain(|name, _| !name.starts_with("t/"));
            state.as_object_mut().unwrap().remove("top");
            store
                .put(
                    &key,
                    serde_json::to_vec(&state).unwrap(),
                    PutMode::Overwrite,
                )
                .await
                .unwrap();
        }
    }
    for key in doomed {
        store.delete(&key).await.unwrap();
    }
    let day = json!({ "period": "day", "date": "2026-01-05" });
    assert_eq!(
        rows(&top(&i, day.clone()).await),
        vec![row("a", 1, 1.0), row("b", 1, 4.0)]
    );
    // The next fold notes since when folds carry top objects: cohorts that began before are
    // still answered from the journals, later ones from the top objects.
    clock.set(START + 24 * HOUR);
    add(&i, "balance", "a", 1.0).await;
    let fold = list_all(store.as_ref(), "db/a/")
        .await
        .unwrap()
        .into_iter()
        .find(|k| k.ends_with("/fold"))
        .unwrap();
    let state: Value =
        serde_json::from_slice(&store.get(&fold).await.unwrap().unwrap().bytes).unwrap();
    assert_eq!(state["top"], json!(START + 24 * HOUR));
    clock.set(START + 48 * HOUR);
    add(&i, "balance", "b", 2.0).await;
    add(&i, "balance", "b", 2.0).await;
    let third = json!({ "period": "day", "date": "2026-01-07" });
    assert_eq!(rows(&top(&i, third).await), vec![row("b", 2, 4.0)]);
    assert_eq!(
        rows(&top(&i, day).await),
        vec![row("a", 1, 1.0), row("b", 1, 4.0)]
    );
    assert_eq!(
        rows(&top(&i, json!({ "period": "month" })).await),
        vec![row("b", 3, 8.0), row("a", 2, 2.0)]
    );
}

/// The fold state's bytes, and its key.
async fn fold_state(store: &Arc<dyn Store>) -> (String, Vec<u8>) {
    let key = "db/a/wallets/balance/fold".to_string();
    let bytes = store.get(&key).await.unwrap().unwrap().bytes.to_vec();
    (key, bytes)
}

#[tokio::test]
async fn a_batch_committed_but_not_folded_yet_still_counts() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let i = instance(store.clone(), config("sync"), Some(clock.clone()), 4);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "a" })).await.unwrap();
    add(&i, "balance", "a", 1.0).await;
    let (key, before) = fold_state(&store).await;
    // The second batch commits and its keys go, but its fold is lost (the state is put back
    // as it was): its inbox entry waits for the next fold.
    add(&i, "balance", "a", 2.0).await;
    store.put(&key, before, PutMode::Overwrite).await.unwrap();
    assert!(list_all(store.as_ref(), "db/t/").await.unwrap().is_empty());
    let day = json!({ "period": "day", "date": "2026-01-05" });
    assert_eq!(rows(&top(&i, day.clone()).await), vec![row("a", 2, 3.0)]);
    let stats = i.engine.cohort_stats("wallets", "balance").await.unwrap();
    assert_eq!(stats[0]["applied"], json!(2));
    let with_pending = json!({ "period": "day", "date": "2026-01-05", "includePending": true });
    assert_eq!(
        query(&i, "getAnalytics", with_pending).await[0]["sum"],
        json!(3.0)
    );
}

#[tokio::test]
async fn a_late_pending_key_counts_once_after_its_fold_is_forgotten() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let i = instance(store.clone(), config("async"), Some(clock.clone()), 5);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "a" })).await.unwrap();
    w.insert(&json!({ "id": "b" })).await.unwrap();
    add(&i, "balance", "a", 5.0).await;
    let key = list_all(store.as_ref(), "db/t/").await.unwrap().remove(0);
    let kept = store.get(&key).await.unwrap().unwrap().bytes.to_vec();
    i.engine
        .consolidate("wallets", Some("balance"), "a")
        .await
        .unwrap();
    store.put(&key, kept, PutMode::Create).await.unwrap();
    // Twenty minutes on, folds of another record forget which batches of `a` they folded.
    for _ in 0..2 {
        clock.advance(20 * 60_000);
        add(&i, "balance", "b", 1.0).await;
        i.engine
            .consolidate("wallets", Some("balance"), "b")
            .await
            .unwrap();
    }
    let (_, state) = fold_state(&store).await;
    let state: Value = serde_json::from_slice(&state).unwrap();
    assert!(
        state["folded"].get("a").is_none(),
        "the fold state still remembers a: {state}"
    );
    let day = json!({ "period": "day", "date": "2026-01-05" });
    assert_eq!(
        rows(&top(&i, day).await),
        vec![row("b", 2, 2.0), row("a", 1, 5.0)]
    );
}
