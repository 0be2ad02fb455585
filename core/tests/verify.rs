//! The tamper-evident audit trail: journals chained by SHA-256, `verify` naming the record
//! whose journal was changed, removed or reordered, or whose value its history does not
//! explain; clean after GC, and journals written before chaining verify as unchained.

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tally_core::clock::ManualClock;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{PutMode, Store, list_all};

const HOUR: i64 = 3_600_000;

async fn setup(options: Value, clock: Option<Arc<ManualClock>>) -> (Arc<dyn Store>, Instance) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let i = instance(store.clone(), options, clock, 1);
    let w = wallets(&i).await;
    for id in ["w1", "w2"] {
        w.insert(&json!({ "id": id, "balance": 0 })).await.unwrap();
    }
    (store, i)
}

fn sync() -> Value {
    json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } })
}

async fn verify(i: &Instance) -> Value {
    i.engine
        .verify("wallets", "balance", &["w1".into(), "w2".into()])
        .await
        .unwrap()
}

fn kinds(report: &Value) -> Vec<(String, String)> {
    report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap().to_string(),
                p["kind"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

async fn journals_of(store: &Arc<dyn Store>, id: &str) -> Vec<String> {
    list_all(store.as_ref(), &format!("db/j/wallets/balance/{id}/"))
        .await
        .unwrap()
}

async fn edit(store: &Arc<dyn Store>, key: &str, f: impl FnOnce(String) -> String) {
    let obj = store.get(key).await.unwrap().unwrap();
    let text = f(String::from_utf8(obj.bytes.to_vec()).unwrap());
    store
        .put(key, text.into_bytes(), PutMode::Overwrite)
        .await
        .unwrap();
}

/// Edits a stored JSON object in place.
async fn edit_json(store: &Arc<dyn Store>, key: &str, f: impl FnOnce(&mut Value)) {
    edit(store, key, |t| {
        let mut v: Value = serde_json::from_str(&t).unwrap();
        f(&mut v);
        v.to_string()
    })
    .await;
}

/// Whether `report` names `id` with a problem of `kind`.
fn names(report: &Value, id: &str, kind: &str) -> bool {
    kinds(report).contains(&(id.to_string(), kind.to_string()))
}

async fn five_adds_each(i: &Instance) {
    for k in 1..=5 {
        add(i, "balance", "w1", k as f64).await;
        add(i, "balance", "w2", 10.0).await;
    }
}

#[tokio::test]
async fn a_clean_history_verifies_with_every_link_hashed() {
    let (_, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    let r = verify(&i).await;
    assert_eq!(kinds(&r), vec![], "{r}");
    assert_eq!(
        (r["records"].as_u64(), r["journals"].as_u64()),
        (Some(2), Some(10))
    );
    assert_eq!(
        (r["chained"].as_u64(), r["unchained"].as_u64()),
        (Some(10), Some(0))
    );
    assert_eq!(r["heads"]["w1"]["seq"], 5);
    assert_eq!(r["digest"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn one_changed_byte_of_a_journal_is_named() {
    let (store, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    let before = verify(&i).await["digest"].clone();
    let keys = journals_of(&store, "w1").await;
    // Batch 2 added 2; make its journal say 3 (one byte), consistently with itself.
    edit(&store, &keys[1], |t| {
        t.replace("\"after\":\"3\"", "\"after\":\"4\"")
    })
    .await;
    let r = verify(&i).await;
    assert!(names(&r, "w1", "journal-changed"), "{r}");
    assert!(kinds(&r).iter().all(|(id, _)| id == "w1"), "{r}");
    // A byte that breaks the JSON is named too.
    edit(&store, &keys[3], |t| t.replacen('{', "[", 1)).await;
    let r = verify(&i).await;
    assert!(
        r["problems"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == "journal-changed" && p["key"] == keys[3].as_str()),
        "{r}"
    );
    assert_eq!(r["digest"], before, "the heads did not move");
}

#[tokio::test]
async fn a_removed_journal_is_named() {
    let (store, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    let keys = journals_of(&store, "w2").await;
    store.delete(&keys[2]).await.unwrap();
    let r = verify(&i).await;
    assert_eq!(
        kinds(&r),
        vec![("w2".into(), "journal-removed".into())],
        "{r}"
    );
    // Every journal of a record removed: the record the caller names is still checked.
    for k in journals_of(&store, "w1").await {
        store.delete(&k).await.unwrap();
    }
    let r = verify(&i).await;
    assert!(names(&r, "w1", "journal-removed"), "{r}");
}

#[tokio::test]
async fn reordered_journals_are_named() {
    let (store, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    let keys = journals_of(&store, "w1").await;
    let a = store.get(&keys[1]).await.unwrap().unwrap().bytes;
    let b = store.get(&keys[2]).await.unwrap().unwrap().bytes;
    store
        .put(&keys[1], b.to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    store
        .put(&keys[2], a.to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    let r = verify(&i).await;
    assert!(names(&r, "w1", "journal-reordered"), "{r}");
    assert!(names(&r, "w1", "journal-changed"), "{r}");
}

#[tokio::test]
async fn a_stored_value_its_history_does_not_explain_is_named() {
    let (_, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    let w = wallets(&i).await;
    w.patch("w2", &json!({ "balance": 51 })).await.unwrap();
    let r = verify(&i).await;
    assert_eq!(
        kinds(&r),
        vec![("w2".into(), "value-mismatch".into())],
        "{r}"
    );
    assert!(
        r["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("stored balance is 51; its history gives 50"),
        "{r}"
    );
}

#[tokio::test]
async fn a_journal_whose_transactions_do_not_give_its_values_is_named() {
    let (store, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    let keys = journals_of(&store, "w2").await;
    // Rewrite the head journal's amount and re-chain it, as a forger with no digest would.
    edit(&store, &keys[4], |t| {
        t.replace("\"value\":\"10\"", "\"value\":\"11\"")
    })
    .await;
    let forged = store.get(&keys[4]).await.unwrap().unwrap().bytes;
    let hash = tally_core::keys::sha256_hex(&forged);
    edit_json(&store, "db/r/wallets/w2", |v| {
        v["m"]["balance"]["hash"] = json!(hash);
    })
    .await;
    let r = verify(&i).await;
    assert_eq!(
        kinds(&r),
        vec![("w2".into(), "journal-inconsistent".into())],
        "{r}"
    );
}

#[tokio::test]
async fn a_history_collected_by_gc_still_verifies_from_its_checkpoint() {
    let clock = ManualClock::new(1_767_261_600_000);
    let mut options = sync();
    options["garbageCollection"] = json!({ "retention": 0 });
    let (store, i) = setup(options, Some(clock.clone())).await;
    for _ in 0..3 {
        five_adds_each(&i).await;
        clock.advance(HOUR);
        i.engine.run_gc().await.unwrap();
    }
    add(&i, "balance", "w1", 1.0).await;
    assert!(
        journals_of(&store, "w1").await.len() < 16,
        "GC collected journals"
    );
    let r = verify(&i).await;
    assert_eq!(kinds(&r), vec![], "{r}");
    // A checkpoint edited to another value is named.
    let cps = list_all(store.as_ref(), "db/c/wallets/balance/w2/")
        .await
        .unwrap();
    let last = cps.last().unwrap().clone();
    edit(&store, &last, |t| t.replace("\"150\"", "\"151\"")).await;
    let r = verify(&i).await;
    assert!(
        !kinds(&r).is_empty(),
        "an edited checkpoint went unnoticed: {r}"
    );
    assert!(kinds(&r).iter().all(|(id, _)| id == "w2"), "{r}");
}

#[tokio::test]
async fn journals_written_before_chaining_verify_as_unchained() {
    let (store, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    // As an earlier version wrote them: no prevHash in journals, no hash in bookkeeping.
    for id in ["w1", "w2"] {
        for k in journals_of(&store, id).await {
            edit_json(&store, &k, |v| {
                v.as_object_mut().unwrap().remove("prevHash");
            })
            .await;
        }
        edit_json(&store, &format!("db/r/wallets/{id}"), |v| {
            v["m"]["balance"].as_object_mut().unwrap().remove("hash");
        })
        .await;
    }
    let r = verify(&i).await;
    assert_eq!(kinds(&r), vec![], "{r}");
    assert_eq!(
        (r["chained"].as_u64(), r["unchained"].as_u64()),
        (Some(0), Some(10))
    );
    // The next batch starts a chain on top of them.
    add(&i, "balance", "w1", 1.0).await;
    let r = verify(&i).await;
    assert_eq!(kinds(&r), vec![], "{r}");
    assert_eq!(
        (r["chained"].as_u64(), r["unchained"].as_u64()),
        (Some(1), Some(10))
    );
}

#[tokio::test]
async fn edited_bookkeeping_is_named() {
    let (store, i) = setup(sync(), None).await;
    five_adds_each(&i).await;
    // The last batch's name removed, the value changed: the audit must not go quiet.
    edit_json(&store, "db/r/wallets/w1", |v| {
        v["m"]["balance"]["batch"] = Value::Null;
        v["d"]["balance"] = json!(999);
    })
    .await;
    // An incarnation boundary its last journal does not know.
    edit_json(&store, "db/r/wallets/w2", |v| {
        v["m"]["balance"]["base"] = json!(2);
    })
    .await;
    let r = verify(&i).await;
    assert!(names(&r, "w1", "bookkeeping-changed"), "{r}");
    assert!(names(&r, "w2", "bookkeeping-changed"), "{r}");
}

#[tokio::test]
async fn a_lost_first_commit_and_a_rolling_upgrade_are_not_problems() {
    let (store, i) = setup(sync(), None).await;
    // w1 never committed a batch; a consolidator wrote its first journal and died.
    put_lost_first_journal(&store, "w1", json!([])).await;
    for _ in 0..3 {
        add(&i, "balance", "w2", 1.0).await;
    }
    // The last commit by a process of the earlier version: no hash in the bookkeeping.
    edit_json(&store, "db/r/wallets/w2", |v| {
        v["m"]["balance"].as_object_mut().unwrap().remove("hash");
    })
    .await;
    let r = verify(&i).await;
    assert_eq!(kinds(&r), vec![], "{r}");
    let warned: Vec<&str> = r["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["kind"].as_str().unwrap())
        .collect();
    assert_eq!(warned, ["chain-downgraded"], "{r}");
}

#[tokio::test]
async fn values_beyond_double_precision_verify_as_stored() {
    let (_, i) = setup(sync(), None).await;
    add(&i, "balance", "w1", 1e16).await;
    add(&i, "balance", "w1", 1.0).await;
    let r = verify(&i).await;
    assert_eq!(kinds(&r), vec![], "{r}");
}
