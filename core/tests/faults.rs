//! The review's fault findings, each as the interleaving that broke it: a create-only write
//! delivered again after its key was consumed, a commit whose outcome is unknown, GC racing a
//! commit, a sync mutation racing another consolidator, a clock stepping back, and ids that
//! collide in the few random bits earlier versions kept.

mod common;
use async_trait::async_trait;
use common::*;
use futures::future::BoxFuture;
use serde_json::json;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tally_core::clock::{Clock, IdSource, ManualClock, YieldSleeper};
use tally_core::store::memory::MemoryStore;
use tally_core::store::{ListPage, Object, PutMode, Store, StoreError, Version, list_all};
use tally_core::{Arg, Database, Engine, MutationOptions, MutationResult, Op, PluginConfig};

type Hook = Box<dyn FnOnce() -> BoxFuture<'static, ()> + Send>;

/// A store decorator with scripted misbehaviour.
#[derive(Default)]
struct Scripted {
    inner: Arc<MemoryStore>,
    /// Deliver the first create-only put under `replay_under` (`/t/` when empty) again after
    /// this many record commits.
    replay_after_commits: Option<usize>,
    replay_under: &'static str,
    first_create: Mutex<Option<(String, Vec<u8>)>>,
    commits: AtomicUsize,
    /// The first compare-and-swap of this key lands, another writer swaps on top, and the
    /// caller hears an error (a response lost after the write took effect).
    land_then_fail: Option<String>,
    failed_once: AtomicBool,
    /// Runs once, right after a LIST of this prefix returns (or before it, with `before`).
    list_hook: Mutex<Option<(String, bool, Hook)>>,
}

#[async_trait]
impl Store for Scripted {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.inner.get(key).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        let under = if self.replay_under.is_empty() {
            "/t/"
        } else {
            self.replay_under
        };
        if mode == PutMode::Create && key.contains(under) && self.replay_after_commits.is_some() {
            let mut first = self.first_create.lock().unwrap();
            if first.is_none() {
                *first = Some((key.to_string(), bytes.clone()));
            }
        }
        let update = matches!(mode, PutMode::Update(_));
        let r = self.inner.put(key, bytes, mode).await;
        if update && r.is_ok() && key.contains("/r/") {
            let n = self.commits.fetch_add(1, Ordering::SeqCst) + 1;
            if Some(n) == self.replay_after_commits {
                let replay = self.first_create.lock().unwrap().clone();
                if let Some((k, b)) = replay {
                    // The late copy: what consumed it deleted it already.
                    assert!(
                        self.inner.get(&k).await.unwrap().is_none(),
                        "{k} still there"
                    );
                    self.inner.put(&k, b, PutMode::Create).await.unwrap();
                }
            }
            if self.land_then_fail.as_deref() == Some(key)
                && !self.failed_once.swap(true, Ordering::SeqCst)
            {
                let cur = self.inner.get(key).await.unwrap().unwrap();
                let mut doc: serde_json::Value = serde_json::from_slice(&cur.bytes).unwrap();
                doc["d"]["owner"] = json!("someone else");
                let body = serde_json::to_vec(&doc).unwrap();
                self.inner
                    .put(key, body, PutMode::Update(cur.version))
                    .await
                    .unwrap();
                return Err(StoreError::Backend(
                    "outcome unknown: connection reset".into(),
                ));
            }
        }
        r
    }
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        let hook = {
            let mut h = self.list_hook.lock().unwrap();
            match h.as_ref() {
                Some((p, _, _)) if p == prefix => h.take(),
                _ => None,
            }
        };
        match hook {
            Some((_, true, f)) => {
                f().await;
                self.inner.list(prefix, start_after).await
            }
            Some((_, false, f)) => {
                let page = self.inner.list(prefix, start_after).await;
                f().await;
                page
            }
            None => self.inner.list(prefix, start_after).await,
        }
    }
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

fn num(v: &Option<serde_json::Value>) -> Option<f64> {
    v.as_ref().and_then(|x| x.as_f64())
}

fn balance_of(v: &serde_json::Value) -> f64 {
    v["balance"].as_f64().unwrap()
}

/// A sync-mode process and an async-mode one on `store`, with record `w1`.
async fn sync_and_async(store: &Arc<dyn Store>) -> (Instance, Arc<Instance>) {
    let sync =
        json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } });
    let s = setup(store.clone(), sync, 1).await;
    let o = setup(
        store.clone(),
        json!({ "resources": { "wallets": ["balance"] } }),
        2,
    )
    .await;
    (s, Arc::new(o))
}

async fn setup(store: Arc<dyn Store>, options: serde_json::Value, seed: u64) -> Instance {
    let i = instance(store, options, None, seed);
    let w = wallets(&i).await;
    if !w.exists("w1").await.unwrap() {
        w.insert(&json!({ "id": "w1", "balance": 0 }))
            .await
            .unwrap();
    }
    i
}

#[tokio::test]
async fn a_create_delivered_again_after_its_key_was_consumed_is_never_applied_twice() {
    let scripted = Arc::new(Scripted {
        replay_after_commits: Some(2),
        ..Default::default()
    });
    let store: Arc<dyn Store> = scripted.clone();
    let sync =
        json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } });
    let a = setup(store.clone(), sync.clone(), 1).await;
    let b = setup(store.clone(), sync, 2).await;
    assert_eq!(value(add(&a, "balance", "w1", 1.0).await), Some(1.0)); // commit 1, key deleted
    assert_eq!(value(add(&b, "balance", "w1", 2.0).await), Some(3.0)); // commit 2, then the copy lands
    assert_eq!(value(add(&b, "balance", "w1", 3.0).await), Some(6.0));
    b.engine.consolidate_all().await.unwrap();
    let w = b.db.resource("wallets").await.unwrap();
    assert_eq!(
        balance_of(&w.get("w1").await.unwrap()),
        6.0,
        "the late copy was applied again"
    );
    let left = list_all(store.as_ref(), "db/t/").await.unwrap();
    assert!(
        left.is_empty(),
        "the late copy is removed, not left pending: {left:?}"
    );
}

#[tokio::test]
async fn a_commit_whose_outcome_is_unknown_is_decided_by_reading_the_record() {
    let scripted = Arc::new(Scripted {
        land_then_fail: Some("db/r/wallets/w1".into()),
        ..Default::default()
    });
    let store: Arc<dyn Store> = scripted.clone();
    let a = setup(
        store.clone(),
        json!({ "resources": { "wallets": ["balance"] } }),
        1,
    )
    .await;
    for _ in 0..70 {
        add(&a, "balance", "w1", 1.0).await;
    }
    let v = a
        .engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(70.0), "the landed commit is taken as done");
    assert!(scripted.failed_once.load(Ordering::SeqCst));
    let (chain, _) = a
        .engine
        .journal_chain("wallets", "balance", "w1")
        .await
        .unwrap();
    assert_eq!(chain.len(), 1, "the committed batch keeps its journal");
    assert_eq!(chain[0].transactions.len(), 70);
    let again = a
        .engine
        .recalculate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&again), Some(70.0));
    add(&a, "balance", "w1", 1.0).await;
    let v = a
        .engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(71.0));
}

#[tokio::test]
async fn gc_racing_a_commit_keeps_committed_history() {
    let scripted = Arc::new(Scripted::default());
    let store: Arc<dyn Store> = scripted.clone();
    let clock = ManualClock::new(1_764_000_000_000);
    let sync =
        json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } });
    let a = instance(store.clone(), sync.clone(), Some(clock.clone()), 1);
    wallets(&a)
        .await
        .insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    for _ in 0..20 {
        add(&a, "balance", "w1", 1.0).await;
        clock.advance(10);
    }
    clock.advance(10 * 60 * 1000);
    let b = Arc::new(instance(store.clone(), sync, Some(clock.clone()), 2));
    let racer = b.clone();
    *scripted.list_hook.lock().unwrap() = Some((
        "db/j/wallets/balance/w1/".into(),
        false,
        Box::new(move || {
            Box::pin(async move {
                add(&racer, "balance", "w1", 1.0).await;
            })
        }),
    ));
    a.engine.run_gc().await.unwrap();
    assert!(scripted.list_hook.lock().unwrap().is_none(), "the race ran");
    let journals = list_all(store.as_ref(), "db/j/wallets/balance/w1/")
        .await
        .unwrap();
    assert_eq!(
        journals.len(),
        21,
        "retention is 30 days: nothing committed may go"
    );
    let v = a
        .engine
        .recalculate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(21.0));
}

#[tokio::test]
async fn a_sync_mutation_resolves_to_a_value_that_includes_itself() {
    let scripted = Arc::new(Scripted::default());
    let store: Arc<dyn Store> = scripted.clone();
    let (s, o) = sync_and_async(&store).await;
    let other = o.clone();
    // The other consolidator commits after S read the record and before S lists.
    *scripted.list_hook.lock().unwrap() = Some((
        "db/t/wallets/balance/w1/".into(),
        true,
        Box::new(move || {
            Box::pin(async move {
                other
                    .engine
                    .consolidate("wallets", Some("balance"), "w1")
                    .await
                    .unwrap();
            })
        }),
    ));
    assert_eq!(value(add(&s, "balance", "w1", 7.0).await), Some(7.0));
}

#[tokio::test]
async fn one_callers_mutations_apply_in_call_order_when_the_clock_steps_back() {
    let clock = ManualClock::new(1_764_000_001_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = instance(
        store,
        json!({ "resources": { "wallets": ["balance"] } }),
        Some(clock.clone()),
        1,
    );
    wallets(&a)
        .await
        .insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    let set = a
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Set,
            &n(100.0),
            MutationOptions::default(),
        )
        .await
        .unwrap();
    clock.set(1_764_000_000_990); // NTP steps the clock back 10 ms
    let added = add(&a, "balance", "w1", 5.0).await;
    let (MutationResult::Transaction(t1), MutationResult::Transaction(t2)) = (set, added) else {
        panic!("async mode answers transactions")
    };
    // The timestamp is the clock's (cohorts follow it); the order is the caller's.
    assert_eq!(t1["timestamp"], json!("2025-11-24T16:00:01.000Z"));
    assert_eq!(t2["timestamp"], json!("2025-11-24T16:00:00.990Z"));
    let v = a
        .engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(105.0));
}

/// Random numbers that agree with another process's in their low base-36 digits.
struct Correlated(u64);
impl IdSource for Correlated {
    fn next_u64(&self) -> u64 {
        7 + self.0 * 36u64.pow(5)
    }
}

#[tokio::test]
async fn ids_keep_enough_random_bits_that_two_processes_never_share_a_key() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(1_764_000_000_000);
    let cfg = PluginConfig::parse(&json!({ "resources": { "wallets": ["balance"] } })).unwrap();
    let mut engines = Vec::new();
    for k in 1..=2u64 {
        let db = Database::new(store.clone(), "db");
        let e = Engine::standalone(cfg.clone(), &db)
            .ids(Arc::new(Correlated(k)))
            .sleeper(Arc::new(YieldSleeper))
            .clock(clock.clone() as Arc<dyn Clock>)
            .build();
        e.attach(&db);
        engines.push((db, e));
    }
    let w = engines[0]
        .0
        .create_resource(
            "wallets",
            &json!({ "id": "string", "balance": "number|default:0" }),
        )
        .await
        .unwrap();
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let mut ids = Vec::new();
    for (_, e) in &engines {
        let r = e
            .mutate(
                "wallets",
                Some("balance"),
                "w1",
                Op::Add,
                &Arg::Number(1.0),
                MutationOptions::default(),
            )
            .await
            .expect("an increment in the same millisecond as another process's");
        let MutationResult::Transaction(t) = r else {
            panic!()
        };
        ids.push(t["id"].as_str().unwrap().to_string());
    }
    assert_ne!(ids[0], ids[1]);
    let v = engines[0]
        .1
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(2.0));
}

#[tokio::test]
async fn analytics_of_amounts_near_the_decimal_limit_never_panic() {
    let clock = ManualClock::new(1_764_000_000_000); // 2025-11-24T16:00Z
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "analytics": { "enabled": true } });
    let a = instance(store, cfg, Some(clock.clone()), 1);
    let w = wallets(&a).await;
    for id in ["w1", "w2", "w3"] {
        w.insert(&json!({ "id": id })).await.unwrap();
    }
    for id in ["w1", "w2"] {
        a.engine
            .mutate(
                "wallets",
                Some("balance"),
                id,
                Op::Set,
                &n(7e28),
                MutationOptions::default(),
            )
            .await
            .unwrap();
        a.engine
            .consolidate("wallets", Some("balance"), id)
            .await
            .unwrap();
    }
    let day = || async {
        a.engine
            .query(
                "getDayByHour",
                "wallets",
                "balance",
                &[Arg::String("2025-11-24".into())],
            )
            .await
            .unwrap()
    };
    let points = day().await;
    assert_eq!(points[0]["count"], json!(2), "{points}");
    add(&a, "balance", "w3", 1.0).await;
    a.engine.consolidate_all().await.unwrap();
    let points = day().await;
    assert_eq!(
        points[0]["count"],
        json!(3),
        "later adds still count: {points}"
    );
    assert_eq!(balance_of(&w.get("w3").await.unwrap()), 1.0);
}

#[tokio::test]
async fn a_transaction_that_overflows_is_set_aside_and_the_records_later_ones_still_apply() {
    for mode in ["async", "sync"] {
        let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
        let cfg =
            json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": mode } });
        let a = instance(store.clone(), cfg, None, 1);
        let w = wallets(&a).await;
        w.insert(&json!({ "id": "w1", "balance": 0 }))
            .await
            .unwrap();
        let mut events = a.engine.events().subscribe();
        let big = |engine: Arc<Engine>| async move {
            engine
                .mutate(
                    "wallets",
                    Some("balance"),
                    "w1",
                    Op::Add,
                    &n(5e28),
                    MutationOptions::default(),
                )
                .await
        };
        big(a.engine.clone()).await.unwrap();
        let second = big(a.engine.clone()).await;
        match mode {
            // A sync caller hears why; an async one stored a transaction.
            "sync" => assert!(
                matches!(&second, Err(e) if e.code() == tally_core::ErrorCode::InvalidAmount && e.message().contains("dead letter")),
                "{second:?}"
            ),
            _ => assert!(second.is_ok(), "{second:?}"),
        }
        for _ in 0..10 {
            add(&a, "balance", "w1", 1.0).await;
        }
        a.engine.consolidate_all().await.unwrap();
        let balance = balance_of(&w.get("w1").await.unwrap());
        assert_eq!(balance, 5e28 + 10.0, "{mode}");
        assert!(
            list_all(store.as_ref(), "db/t/").await.unwrap().is_empty(),
            "{mode}: nothing left pending"
        );
        let dead = a.engine.dead_letters("wallets", "balance").await.unwrap();
        assert_eq!(dead.len(), 1, "{mode}: {dead:?}");
        assert_eq!(dead[0]["error"]["code"], json!("ERR_INVALID_AMOUNT"));
        let status = a.engine.status().await.unwrap();
        assert_eq!(status["deadLetters"]["wallets.balance"], json!(1));
        let mut named = false;
        while let Ok(e) = events.try_recv() {
            if let tally_core::events::Event::ConsolidationError { error, .. } = e {
                named |= error.message().contains("dead letter")
                    && error
                        .message()
                        .contains(dead[0]["transaction"]["id"].as_str().unwrap());
            }
        }
        assert!(named, "{mode}: a consolidation-error names the transaction");
        // Retried, it overflows again and is set aside again; discarded, it is gone.
        let name = dead[0]["name"].as_str().unwrap().to_string();
        a.engine
            .retry_dead_letter("wallets", "balance", "w1", &name)
            .await
            .unwrap();
        a.engine.consolidate_all().await.unwrap();
        let dead = a.engine.dead_letters("wallets", "balance").await.unwrap();
        assert_eq!(dead.len(), 1, "{mode}: set aside again under a new name");
        assert_ne!(dead[0]["name"].as_str().unwrap(), name);
        let name = dead[0]["name"].as_str().unwrap().to_string();
        a.engine
            .discard_dead_letter("wallets", "balance", "w1", &name)
            .await
            .unwrap();
        assert!(
            a.engine
                .dead_letters("wallets", "balance")
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(balance_of(&w.get("w1").await.unwrap()), 5e28 + 10.0);
    }
}

#[tokio::test]
async fn gc_with_retention_zero_removes_every_applied_transaction_and_recalculate_stays_exact() {
    let clock = ManualClock::new(1_764_000_000_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" },
                      "garbageCollection": { "retention": 0 } });
    let a = instance(store.clone(), cfg, Some(clock.clone()), 1);
    wallets(&a)
        .await
        .insert(&json!({ "id": "w1", "balance": 10 }))
        .await
        .unwrap();
    for v in [1.0, 2.0, 3.0] {
        add(&a, "balance", "w1", v).await;
        clock.advance(1000);
    }
    let mut events = a.engine.events().subscribe();
    a.engine.run_gc().await.unwrap();
    let journals = list_all(store.as_ref(), "db/j/").await.unwrap();
    assert!(
        journals.is_empty(),
        "the latest batch's journal goes too: {journals:?}"
    );
    let mut deleted = 0;
    while let Ok(e) = events.try_recv() {
        if let tally_core::events::Event::GcCompleted { deleted_count, .. } = e {
            deleted += deleted_count;
        }
    }
    assert_eq!(deleted, 3, "gc-completed counts the journals removed");
    let v = a
        .engine
        .recalculate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(16.0));
    assert_eq!(value(add(&a, "balance", "w1", 4.0).await), Some(20.0));
    let v = a
        .engine
        .recalculate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(20.0));
}

#[tokio::test]
async fn an_analytics_inbox_entry_delivered_again_after_it_was_folded_is_not_counted_twice() {
    let scripted = Arc::new(Scripted {
        replay_after_commits: Some(69),
        replay_under: "/a/wallets/balance/in/",
        ..Default::default()
    });
    let store: Arc<dyn Store> = scripted.clone();
    let clock = ManualClock::new(1_764_000_000_000);
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" },
                      "analytics": { "enabled": true } });
    let a = instance(store.clone(), cfg, Some(clock.clone()), 1);
    let w = wallets(&a).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    // A plan of more than 64 entries is flushed and its entries deleted: fold enough.
    for _ in 0..70 {
        add(&a, "balance", "w1", 1.0).await;
    }
    a.engine.consolidate_all().await.unwrap();
    add(&a, "balance", "w1", 1.0).await;
    let day = a
        .engine
        .query(
            "getDayByHour",
            "wallets",
            "balance",
            &[Arg::String("2025-11-24".into())],
        )
        .await
        .unwrap();
    assert_eq!(day[0]["count"], json!(71), "{day}");
    assert_eq!(balance_of(&w.get("w1").await.unwrap()), 71.0);
}

#[tokio::test]
async fn a_sync_mutation_set_aside_by_another_consolidator_rejects_with_why() {
    let scripted = Arc::new(Scripted::default());
    let store: Arc<dyn Store> = scripted.clone();
    let (s, o) = sync_and_async(&store).await;
    o.engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Set,
            &n(7e28),
            MutationOptions::default(),
        )
        .await
        .unwrap();
    o.engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    let other = o.clone();
    // The other consolidator finds S's overflowing add first and sets it aside.
    *scripted.list_hook.lock().unwrap() = Some((
        "db/t/wallets/balance/w1/".into(),
        true,
        Box::new(move || {
            Box::pin(async move {
                other
                    .engine
                    .consolidate("wallets", Some("balance"), "w1")
                    .await
                    .unwrap();
            })
        }),
    ));
    let r = s
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Add,
            &n(5e28),
            MutationOptions::default(),
        )
        .await;
    assert!(
        matches!(&r, Err(e) if e.code() == tally_core::ErrorCode::InvalidAmount && e.message().contains("dead letter")),
        "{r:?}"
    );
    assert_eq!(
        o.engine
            .dead_letters("wallets", "balance")
            .await
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn an_idempotency_key_reused_right_after_gc_is_still_a_duplicate_not_a_lost_mutation() {
    let clock = ManualClock::new(1_764_000_000_000);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg =
        json!({ "resources": { "wallets": ["balance"] }, "garbageCollection": { "retention": 0 } });
    let a = instance(store, cfg, Some(clock.clone()), 1);
    let w = wallets(&a).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let keyed = || MutationOptions {
        idempotency_key: Some("pay-1".into()),
        ..Default::default()
    };
    let first = a
        .engine
        .mutate("wallets", Some("balance"), "w1", Op::Add, &n(5.0), keyed())
        .await
        .unwrap();
    a.engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    clock.advance(1000);
    a.engine.run_gc().await.unwrap();
    let again = a
        .engine
        .mutate("wallets", Some("balance"), "w1", Op::Add, &n(5.0), keyed())
        .await
        .unwrap();
    let (MutationResult::Transaction(t1), MutationResult::Transaction(t2)) = (first, again) else {
        panic!("async mode answers transactions")
    };
    assert_eq!(
        t2["id"], t1["id"],
        "answered like the first, not stored anew and dropped"
    );
    a.engine.consolidate_all().await.unwrap();
    assert_eq!(balance_of(&w.get("w1").await.unwrap()), 5.0);
}

/// A memory store that records how many requests were in flight at once.
#[derive(Default)]
struct Overlap {
    inner: MemoryStore,
    now: AtomicUsize,
    most: AtomicUsize,
}

impl Overlap {
    async fn enter<T>(&self, f: impl std::future::Future<Output = T>) -> T {
        let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(n, Ordering::SeqCst);
        tokio::task::yield_now().await;
        let r = f.await;
        self.now.fetch_sub(1, Ordering::SeqCst);
        r
    }
}

#[async_trait]
impl Store for Overlap {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        self.enter(self.inner.get(key)).await
    }
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        self.enter(self.inner.put(key, bytes, mode)).await
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
        "overlap".into()
    }
}

#[tokio::test]
async fn consolidation_reads_bodies_and_writes_markers_side_by_side() {
    let store = Arc::new(Overlap::default());
    let cfg = json!({ "resources": { "wallets": ["balance"] },
                      "consolidation": { "markAppliedConcurrency": 8 } });
    let a = setup(store.clone(), cfg, 1).await;
    for k in 0..40 {
        let opts = MutationOptions {
            idempotency_key: Some(format!("k{k}")),
            ..Default::default()
        };
        a.engine
            .mutate("wallets", Some("balance"), "w1", Op::Add, &n(1.0), opts)
            .await
            .unwrap();
    }
    store.most.store(0, Ordering::SeqCst);
    let v = a
        .engine
        .consolidate("wallets", Some("balance"), "w1")
        .await
        .unwrap();
    assert_eq!(num(&v), Some(40.0));
    let most = store.most.load(Ordering::SeqCst);
    assert!(
        (2..=8).contains(&most),
        "40 bodies and 40 markers, {most} at a time (markAppliedConcurrency 8)"
    );
}
