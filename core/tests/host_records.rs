//! Records in a host database without compare-and-swap (as s3db.js): exactly once through
//! Tally's state objects, the host copy kept up to date, carried-over transactions.

mod common;

use async_trait::async_trait;
use common::n;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tally_core::clock::{SplitMix, YieldSleeper};
use tally_core::records::s3db::{Host, HostRecords};
use tally_core::schema::Schema;
use tally_core::store::memory::MemoryStore;
use tally_core::store::{SharedStore, Store};
use tally_core::{Arg, Engine, MutationOptions, Op, PluginConfig, Result};

/// A host like s3db.js: whole-record read-modify-write, no conditions; it can drop writes
/// and lets tasks interleave between its read and its write.
#[derive(Default)]
struct FakeHost {
    records: Mutex<HashMap<String, Map<String, Value>>>,
    drop_writes: AtomicUsize,
    writes: AtomicUsize,
    /// Runs once after a read of this id returned: the user deletes the record meanwhile.
    after_get: Mutex<Option<(String, futures::future::BoxFuture<'static, ()>)>>,
}

impl FakeHost {
    fn insert(&self, id: &str, data: Value) {
        let Value::Object(m) = data else { panic!() };
        self.records.lock().unwrap().insert(id.to_string(), m);
    }
    fn field(&self, id: &str, path: &str) -> Option<Value> {
        let r = self.records.lock().unwrap();
        tally_core::schema::get_path(r.get(id)?, path).cloned()
    }
}

#[async_trait]
impl Host for FakeHost {
    async fn get(&self, _resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        tokio::task::yield_now().await;
        let found = self.records.lock().unwrap().get(id).cloned();
        let hook = {
            let mut h = self.after_get.lock().unwrap();
            match h.as_ref() {
                Some((hid, _)) if hid == id => h.take(),
                _ => None,
            }
        };
        if let Some((_, then)) = hook {
            then.await;
        }
        Ok(found)
    }
    async fn write(&self, _resource: &str, id: &str, changes: Map<String, Value>) -> Result<bool> {
        // Read, yield (other tasks run), write the whole record back: s3db.js's update.
        let Some(mut copy) = self.records.lock().unwrap().get(id).cloned() else {
            return Ok(false);
        };
        tokio::task::yield_now().await;
        self.writes.fetch_add(1, Ordering::SeqCst);
        if self
            .drop_writes
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |d| d.checked_sub(1))
            .is_ok()
        {
            return Ok(true);
        }
        for (path, v) in changes {
            tally_core::schema::set_path(&mut copy, &path, v);
        }
        let mut r = self.records.lock().unwrap();
        if !r.contains_key(id) {
            return Ok(false);
        }
        r.insert(id.to_string(), copy);
        Ok(true)
    }
}

fn engine(
    host: &Arc<FakeHost>,
    store: &SharedStore,
    mode: &str,
    seed: u64,
) -> (Arc<Engine>, Arc<HostRecords>) {
    engine_with(
        host,
        store,
        json!({ "consolidation": { "mode": mode } }),
        seed,
    )
}

/// [`engine`] with more options.
fn engine_with(
    host: &Arc<FakeHost>,
    store: &SharedStore,
    options: Value,
    seed: u64,
) -> (Arc<Engine>, Arc<HostRecords>) {
    let mut o = json!({
        "resources": { "wallets": ["balance", "credits", "stats"] },
        "verbose": false,
    });
    if let (Some(o), Value::Object(more)) = (o.as_object_mut(), options) {
        o.extend(more);
    }
    let config = PluginConfig::parse(&o).unwrap();
    let records = HostRecords::new(host.clone(), store.clone(), "tally", &config);
    records.set_schema(
        "wallets",
        Schema::parse(
            "wallets",
            &json!({ "balance": "number|default:0", "credits": "number|default:0", "stats": "json|optional" }),
        )
        .unwrap(),
    );
    let engine = Engine::builder(config, store.clone(), "tally", records.clone())
        .ids(Arc::new(SplitMix::seeded(seed)))
        .sleeper(Arc::new(YieldSleeper))
        .build();
    (engine, records)
}

async fn mutate(e: &Engine, field: &str, id: &str, op: Op, v: f64) -> tally_core::MutationResult {
    e.mutate(
        "wallets",
        Some(field),
        id,
        op,
        &n(v),
        MutationOptions::default(),
    )
    .await
    .unwrap()
}

async fn consolidate(e: &Engine, field: &str, id: &str) -> Value {
    tally_core::calls::call(
        e,
        "wallets",
        "consolidate",
        &[Arg::String(id.into()), Arg::String(field.into())],
    )
    .await
    .unwrap()
}

/// A JSON number as f64 (the host may hold `10` or `10.0`).
fn num(v: Option<Value>) -> Option<f64> {
    v.and_then(|v| v.as_f64())
}

/// Inserts host record `w1` with `data`, then runs what the plugin's afterInsert hook runs.
async fn insert_with_hook(host: &FakeHost, records: &HostRecords, data: Value) {
    host.insert("w1", data.clone());
    let Value::Object(inserted) = data else {
        unreachable!()
    };
    records.inserted("wallets", "w1", &inserted).await.unwrap();
}

fn setup() -> (Arc<FakeHost>, SharedStore) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    (Arc::new(FakeHost::default()), store)
}

#[tokio::test]
async fn sync_mutations_start_from_the_host_value_and_write_the_result_back() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 100, "owner": "ann" }));
    let (e, _) = engine(&host, &store, "sync", 1);
    assert_eq!(
        common::value(mutate(&e, "balance", "w1", Op::Add, 50.0).await),
        Some(150.0)
    );
    assert_eq!(
        common::value(mutate(&e, "balance", "w1", Op::Sub, 0.5).await),
        Some(149.5)
    );
    assert_eq!(num(host.field("w1", "balance")), Some(149.5));
    assert_eq!(host.field("w1", "owner"), Some(json!("ann")));
}

#[tokio::test]
async fn transactions_for_a_missing_host_record_wait_for_it() {
    let (host, store) = setup();
    let (e, _) = engine(&host, &store, "async", 2);
    mutate(&e, "balance", "late", Op::Add, 7.0).await;
    assert_eq!(consolidate(&e, "balance", "late").await, Value::Null);
    assert!(host.field("late", "balance").is_none());
    host.insert("late", json!({ "id": "late", "balance": 3 }));
    assert_eq!(
        consolidate(&e, "balance", "late").await.as_f64(),
        Some(10.0)
    );
    assert_eq!(num(host.field("late", "balance")), Some(10.0));
}

#[tokio::test]
async fn a_host_copy_that_lags_never_becomes_the_base_and_is_repaired() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let (e, _) = engine(&host, &store, "async", 3);
    mutate(&e, "balance", "w1", Op::Add, 10.0).await;
    // Every host write of this consolidation is lost (a crash right after the commit point).
    host.drop_writes.store(100, Ordering::SeqCst);
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(10.0));
    assert_eq!(
        num(host.field("w1", "balance")),
        Some(0.0),
        "the host copy lags"
    );
    host.drop_writes.store(0, Ordering::SeqCst);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    assert_eq!(
        consolidate(&e, "balance", "w1").await.as_f64(),
        Some(15.0),
        "the base is Tally's state, not the lagging copy"
    );
    assert_eq!(num(host.field("w1", "balance")), Some(15.0));
    // With nothing pending, a consolidation still repairs a lagging copy.
    host.drop_writes.store(100, Ordering::SeqCst);
    mutate(&e, "balance", "w1", Op::Add, 1.0).await;
    consolidate(&e, "balance", "w1").await;
    host.drop_writes.store(0, Ordering::SeqCst);
    assert_eq!(num(host.field("w1", "balance")), Some(15.0));
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(16.0));
    assert_eq!(num(host.field("w1", "balance")), Some(16.0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_fields_of_one_record_consolidated_concurrently_by_two_processes_both_survive() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0, "credits": 0 }));
    let a = engine(&host, &store, "sync", 4).0;
    let b = engine(&host, &store, "sync", 5).0;
    let mut tasks = Vec::new();
    for i in 0..40 {
        let (e, field) = if i % 2 == 0 {
            (a.clone(), "balance")
        } else {
            (b.clone(), "credits")
        };
        tasks.push(tokio::spawn(async move {
            mutate(&e, field, "w1", Op::Add, 1.0).await
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(consolidate(&a, "balance", "w1").await.as_f64(), Some(20.0));
    assert_eq!(consolidate(&b, "credits", "w1").await.as_f64(), Some(20.0));
    assert_eq!(num(host.field("w1", "balance")), Some(20.0));
    assert_eq!(num(host.field("w1", "credits")), Some(20.0));
}

#[tokio::test]
async fn nested_paths_follow_the_host_schema() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "stats": { "clicks": 1 } }));
    let (e, _) = engine(&host, &store, "sync", 6);
    assert_eq!(
        common::value(mutate(&e, "stats.clicks", "w1", Op::Add, 2.0).await),
        Some(3.0)
    );
    assert_eq!(num(host.field("w1", "stats.clicks")), Some(3.0));
    let err = e
        .mutate(
            "wallets",
            Some("stats.a.b"),
            "w1",
            Op::Add,
            &n(1.0),
            MutationOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code().as_str(), "ERR_INVALID_PATH");
}

#[tokio::test]
async fn a_forgotten_record_created_again_starts_from_its_own_value() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let (e, records) = engine(&host, &store, "sync", 7);
    mutate(&e, "balance", "w1", Op::Add, 9.0).await;
    host.records.lock().unwrap().remove("w1");
    records.forget("wallets", "w1").await.unwrap();
    insert_with_hook(&host, &records, json!({ "id": "w1", "balance": 1 })).await;
    assert_eq!(
        common::value(mutate(&e, "balance", "w1", Op::Add, 1.0).await),
        Some(2.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn carried_over_transactions_apply_once_in_their_own_order_whoever_imports_them() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 5 }));
    let a = engine(&host, &store, "async", 8).0;
    let b = engine(&host, &store, "async", 9).0;
    // 21.6.2's log: set 100 at t=1000, add 10 at t=1000 (same millisecond, later id), sub 3.
    let old = [
        ("tx-1000-a", Op::Set, 100, 1000),
        ("tx-1000-b", Op::Add, 10, 1000),
        ("tx-2000-c", Op::Sub, 3, 2000),
    ];
    let mut tasks = Vec::new();
    for e in [a.clone(), b.clone(), a.clone()] {
        tasks.push(tokio::spawn(async move {
            let mut fresh = 0;
            // Imported in reverse, so only the timestamps can give the order.
            for (key, op, v, ts) in old.iter().rev() {
                if e.import_transaction(
                    "wallets",
                    "balance",
                    "w1",
                    *op,
                    Decimal::from(*v),
                    *ts,
                    None,
                    key,
                )
                .await
                .unwrap()
                {
                    fresh += 1;
                }
            }
            fresh
        }));
    }
    let mut fresh = 0;
    for t in tasks {
        fresh += t.await.unwrap();
    }
    assert_eq!(
        fresh, 3,
        "each old transaction is carried over by exactly one importer"
    );
    assert_eq!(consolidate(&b, "balance", "w1").await.as_f64(), Some(107.0));
    // Importing again after they were applied changes nothing.
    for (key, op, v, ts) in old {
        assert!(
            !a.import_transaction(
                "wallets",
                "balance",
                "w1",
                op,
                Decimal::from(v),
                ts,
                None,
                key
            )
            .await
            .unwrap()
        );
    }
    assert_eq!(consolidate(&a, "balance", "w1").await.as_f64(), Some(107.0));
    assert_eq!(num(host.field("w1", "balance")), Some(107.0));
}

/// A host whose reads fail `failures` times first (as s3db.js's HTTP client does under load),
/// or never answer.
struct FlakyHost {
    inner: Arc<FakeHost>,
    failures: AtomicUsize,
    hang: bool,
}

#[async_trait]
impl Host for FlakyHost {
    async fn get(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        if self.hang {
            futures::future::pending::<()>().await;
        }
        if self
            .failures
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |f| f.checked_sub(1))
            .is_ok()
        {
            return Err(tally_core::Error::storage(
                "host database read failed: The stream has already been transformed",
            ));
        }
        self.inner.get(resource, id).await
    }
    async fn write(&self, resource: &str, id: &str, changes: Map<String, Value>) -> Result<bool> {
        self.inner.write(resource, id, changes).await
    }
}

fn flaky_engine(host: Arc<FlakyHost>, store: &SharedStore) -> Arc<Engine> {
    let config =
        PluginConfig::parse(&json!({ "resources": { "wallets": ["balance"] }, "verbose": false }))
            .unwrap();
    let records = HostRecords::with_timing(
        host,
        store.clone(),
        "tally",
        &config,
        Arc::new(tally_core::clock::TokioSleeper),
        Some(200),
        Arc::new(tally_core::clock::SystemClock),
    );
    Engine::builder(config, store.clone(), "tally", records)
        .ids(Arc::new(SplitMix::seeded(9)))
        .sleeper(Arc::new(YieldSleeper))
        .build()
}

#[tokio::test]
async fn a_transient_host_failure_is_retried_like_a_storage_failure() {
    let (inner, store) = setup();
    inner.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let host = Arc::new(FlakyHost {
        inner: inner.clone(),
        failures: AtomicUsize::new(3),
        hang: false,
    });
    let e = flaky_engine(host, &store);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    let v = e
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(v), Some(5.0), "three failed reads, then it works");
    assert_eq!(num(inner.field("w1", "balance")), Some(5.0));
}

#[tokio::test]
async fn a_host_call_that_never_answers_fails_instead_of_hanging() {
    let (inner, store) = setup();
    inner.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let host = Arc::new(FlakyHost {
        inner,
        failures: AtomicUsize::new(0),
        hang: true,
    });
    let e = flaky_engine(host, &store);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    let r = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        e.consolidate("wallets", Some("balance"), "w1"),
    )
    .await
    .expect("the consolidation returns");
    let err = r.unwrap_err();
    assert!(err.message().contains("gave no answer"), "{err:?}");
}

#[tokio::test]
async fn a_deletion_racing_a_consolidation_leaves_no_state_behind() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let (e, records) = engine(&host, &store, "async", 9);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    // The consolidation reads the host record; the user deletes it right then, and the
    // plugin's afterDelete hook forgets the state.
    let (h, r) = (host.clone(), records.clone());
    *host.after_get.lock().unwrap() = Some((
        "w1".into(),
        Box::pin(async move {
            h.records.lock().unwrap().remove("w1");
            r.forget("wallets", "w1").await.unwrap();
        }),
    ));
    assert_eq!(
        consolidate(&e, "balance", "w1").await,
        Value::Null,
        "a deleted record was consolidated into a ghost state"
    );
    // The 5 still waits for the id; a new record of it starts from its own value, once the
    // afterInsert hook said so.
    host.insert("w1", json!({ "id": "w1", "balance": 1 }));
    assert_eq!(
        consolidate(&e, "balance", "w1").await,
        Value::Null,
        "waits for the hook"
    );
    insert_with_hook(&host, &records, json!({ "id": "w1", "balance": 1 })).await;
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(6.0));
    assert_eq!(num(host.field("w1", "balance")), Some(6.0));
}

#[tokio::test]
async fn a_record_deleted_without_forget_is_retired_by_gc_before_it_returns() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let (e, records) = engine(&host, &store, "async", 10);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(5.0));
    // Deleted behind the plugin's back (a crash before its afterDelete hook ran).
    host.records.lock().unwrap().remove("w1");
    e.run_gc().await.unwrap();
    insert_with_hook(&host, &records, json!({ "id": "w1", "balance": 0 })).await;
    mutate(&e, "balance", "w1", Op::Add, 1.0).await;
    assert_eq!(
        consolidate(&e, "balance", "w1").await.as_f64(),
        Some(1.0),
        "the new record inherited the old balance"
    );
    assert_eq!(num(host.field("w1", "balance")), Some(1.0));
}

#[tokio::test]
async fn a_late_write_of_a_deleted_record_never_becomes_the_base_of_the_next_one() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let (e, records) = engine(&host, &store, "async", 11);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(5.0));
    host.records.lock().unwrap().remove("w1");
    records.forget("wallets", "w1").await.unwrap();
    insert_with_hook(&host, &records, json!({ "id": "w1", "balance": 1 })).await;
    // A host write of the old record (its 5) that was in flight lands now.
    host.records
        .lock()
        .unwrap()
        .get_mut("w1")
        .unwrap()
        .insert("balance".into(), json!(5));
    mutate(&e, "balance", "w1", Op::Add, 2.0).await;
    assert_eq!(
        consolidate(&e, "balance", "w1").await.as_f64(),
        Some(3.0),
        "the old record's value became the new one's base"
    );
    assert_eq!(num(host.field("w1", "balance")), Some(3.0));
}

#[tokio::test]
async fn sub_keys_of_a_json_attribute_that_tally_does_not_write_stay_the_users() {
    let (host, store) = setup();
    host.insert(
        "w1",
        json!({ "id": "w1", "stats": { "clicks": 0, "label": "a" } }),
    );
    let (e, _) = engine(&host, &store, "async", 12);
    mutate(&e, "stats.clicks", "w1", Op::Add, 2.0).await;
    assert_eq!(
        consolidate(&e, "stats.clicks", "w1").await.as_f64(),
        Some(2.0)
    );
    // The user changes another sub-key through the host database.
    let stats = json!({ "clicks": 2, "label": "b", "views": 7 });
    host.records
        .lock()
        .unwrap()
        .get_mut("w1")
        .unwrap()
        .insert("stats".into(), stats);
    mutate(&e, "stats.clicks", "w1", Op::Add, 1.0).await;
    assert_eq!(
        consolidate(&e, "stats.clicks", "w1").await.as_f64(),
        Some(3.0)
    );
    assert_eq!(num(host.field("w1", "stats.clicks")), Some(3.0));
    assert_eq!(
        (
            host.field("w1", "stats.label"),
            host.field("w1", "stats.views")
        ),
        (Some(json!("b")), Some(json!(7))),
        "Tally's state reverted what the user wrote"
    );
}

#[tokio::test]
async fn a_record_created_again_without_its_hook_starts_from_its_host_copy_not_the_old_state() {
    let (host, store) = setup();
    host.insert("w1", json!({ "id": "w1", "balance": 0 }));
    let options = json!({ "consolidation": { "mode": "async" }, "locks": { "timeout": 0.001 } });
    let (e, records) = engine_with(&host, &store, options, 13);
    mutate(&e, "balance", "w1", Op::Add, 5.0).await;
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(5.0));
    host.records.lock().unwrap().remove("w1");
    records.forget("wallets", "w1").await.unwrap();
    // Created again by a process without the plugin's afterInsert hook.
    host.insert("w1", json!({ "id": "w1", "balance": 2 }));
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    consolidate(&e, "balance", "w1").await;
    assert_eq!(
        num(host.field("w1", "balance")),
        Some(2.0),
        "the deleted record's value was written onto the new one"
    );
    mutate(&e, "balance", "w1", Op::Add, 1.0).await;
    assert_eq!(consolidate(&e, "balance", "w1").await.as_f64(), Some(3.0));
}
