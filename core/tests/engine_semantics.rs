//! Plugin semantics (SPEC §2–§5): modes, argument forms, decimals, missing records, nested
//! paths, idempotency, ordering, recalculation, GC and events.

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;
use tally_core::clock::ManualClock;
use tally_core::store::Store;
use tally_core::store::memory::MemoryStore;
use tally_core::{Arg, ErrorCode, MutationOptions, MutationResult, Op};

fn sync_cfg() -> serde_json::Value {
    json!({ "resources": { "wallets": ["balance", "credits", "stats"] }, "consolidation": { "mode": "sync" } })
}

#[tokio::test]
async fn wallet_example_in_sync_mode_ends_at_750() {
    let i = instance(Arc::new(MemoryStore::new()), sync_cfg(), None, 1);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 0 }))
        .await
        .unwrap();
    assert_eq!(value(add(&i, "balance", "w1", 1000.0).await), Some(1000.0));
    let r = i
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Sub,
            &n(250.0),
            MutationOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(value(r), Some(750.0));
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(750.0));
}

#[tokio::test]
async fn ten_additions_of_a_tenth_are_exactly_one() {
    let i = instance(Arc::new(MemoryStore::new()), sync_cfg(), None, 2);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let mut last = None;
    for _ in 0..10 {
        last = value(add(&i, "balance", "w1", 0.1).await);
    }
    assert_eq!(last, Some(1.0));
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(1.0));
}

#[tokio::test]
async fn async_mode_returns_the_transaction_and_consolidates_later() {
    let clock = ManualClock::new(1_760_000_000_000);
    let i = instance(
        Arc::new(MemoryStore::new()),
        json!({ "resources": { "wallets": ["balance"] } }),
        Some(clock),
        3,
    );
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 10 }))
        .await
        .unwrap();
    let MutationResult::Transaction(tx) = add(&i, "balance", "w1", 5.0).await else {
        panic!("async returns a transaction")
    };
    assert_eq!(tx["operation"], "add");
    assert_eq!(tx["value"], json!(5.0));
    assert_eq!(tx["originalId"], "w1");
    assert_eq!(tx["applied"], false);
    assert_eq!(tx["cohortHour"], "2025-10-09T08");
    assert_eq!(tx["cohortWeek"], "2025-W41");
    assert!(tx["id"].as_str().unwrap().starts_with("tx-1760000000000-"));
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(10));
    assert_eq!(
        i.engine
            .consolidated_value("wallets", Some("balance"), "w1")
            .await
            .unwrap(),
        Some(15.0)
    );
    assert_eq!(
        w.get("w1").await.unwrap()["balance"],
        json!(10),
        "getConsolidatedValue writes nothing"
    );
    i.engine.run_pass().await.unwrap();
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(15.0));
}

#[tokio::test]
async fn negative_amounts_and_sub_of_negative_keep_their_sign() {
    let i = instance(Arc::new(MemoryStore::new()), sync_cfg(), None, 4);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 100 }))
        .await
        .unwrap();
    assert_eq!(value(add(&i, "balance", "w1", -5.0).await), Some(95.0));
    let r = i
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Sub,
            &n(-5.0),
            MutationOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(value(r), Some(100.0));
}

#[tokio::test]
async fn transactions_for_a_missing_record_stay_pending_until_it_is_inserted() {
    let i = instance(Arc::new(MemoryStore::new()), sync_cfg(), None, 5);
    let w = wallets(&i).await;
    assert_eq!(
        value(add(&i, "balance", "ghost", 5.0).await),
        None,
        "sync mode resolves to null"
    );
    assert_eq!(
        i.engine
            .consolidate("wallets", Some("balance"), "ghost")
            .await
            .unwrap(),
        None
    );
    assert!(
        !w.exists("ghost").await.unwrap(),
        "the plugin never creates records"
    );
    let rec = w
        .insert(&json!({ "id": "ghost", "balance": 1 }))
        .await
        .unwrap();
    assert_eq!(
        rec["balance"],
        json!(6.0),
        "insert applies pending transactions before it resolves"
    );
}

#[tokio::test]
async fn one_caller_s_mutations_apply_in_order_within_one_millisecond() {
    let clock = ManualClock::new(1_700_000_000_000);
    let i = instance(
        Arc::new(MemoryStore::new()),
        json!({ "resources": { "wallets": ["balance"] } }),
        Some(clock),
        6,
    );
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "a" })).await.unwrap();
    w.insert(&json!({ "id": "b" })).await.unwrap();
    for (id, ops) in [
        ("a", [(Op::Set, 100.0), (Op::Add, 5.0)]),
        ("b", [(Op::Add, 5.0), (Op::Set, 100.0)]),
    ] {
        for (op, v) in ops {
            i.engine
                .mutate("wallets", None, id, op, &n(v), MutationOptions::default())
                .await
                .unwrap();
        }
    }
    i.engine.consolidate_all().await.unwrap();
    assert_eq!(w.get("a").await.unwrap()["balance"], json!(105.0));
    assert_eq!(w.get("b").await.unwrap()["balance"], json!(100.0));
}

#[tokio::test]
async fn nested_json_paths_consolidate_independently_like_the_documentation() {
    let i = instance(
        Arc::new(MemoryStore::new()),
        json!({ "resources": { "urls": ["utmResults"] }, "consolidation": { "mode": "sync" } }),
        None,
        7,
    );
    let urls =
        i.db.create_resource(
            "urls",
            &json!({ "id": "string|optional", "link": "string|required", "utmResults": "json" }),
        )
        .await
        .unwrap();
    urls.insert(&json!({ "id": "url-1", "link": "https://example.com", "utmResults": {} }))
        .await
        .unwrap();
    for (p, v) in [
        ("utmResults.medium", 10.0),
        ("utmResults.source", 5.0),
        ("utmResults.campaign", 3.0),
        ("utmResults.medium", 5.0),
    ] {
        i.engine
            .mutate(
                "urls",
                Some(p),
                "url-1",
                Op::Add,
                &n(v),
                MutationOptions::default(),
            )
            .await
            .unwrap();
    }
    assert_eq!(
        urls.get("url-1").await.unwrap()["utmResults"],
        json!({ "medium": 15.0, "source": 5.0, "campaign": 3.0 })
    );
    let err = |p: &'static str| {
        let e = &i.engine;
        async move {
            e.mutate(
                "urls",
                Some(p),
                "url-1",
                Op::Add,
                &n(5.0),
                MutationOptions::default(),
            )
            .await
            .unwrap_err()
        }
    };
    let e = err("utmResults.medium.google").await;
    assert_eq!(e.code(), ErrorCode::InvalidPath);
    assert_eq!(
        e.message(),
        "Path \"utmResults.medium.google\" exceeds 1 level after 'json' field. Maximum nesting after 'json' is 1 level."
    );
    let e = err("link.nested").await;
    assert_eq!(
        (e.code(), e.message()),
        (
            ErrorCode::InvalidPath,
            "Field \"link\" is type \"string\" and cannot be nested"
        )
    );
    let objs =
        i.db.create_resource(
            "objs",
            &json!({ "utmResults": { "$$type": "object", "medium": "number|default:0" } }),
        )
        .await
        .unwrap();
    drop(objs);
    let j = instance(
        i.db.store().clone(),
        json!({ "resources": { "objs": ["utmResults"] } }),
        None,
        8,
    );
    let e = j
        .engine
        .mutate(
            "objs",
            Some("utmResults.invalid.path"),
            "o1",
            Op::Add,
            &n(1.0),
            MutationOptions::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.message()),
        (
            ErrorCode::InvalidPath,
            "Field \"invalid\" not found in \"utmResults\""
        )
    );
}

#[tokio::test]
async fn typed_objects_allow_any_depth_and_two_paths_of_one_record_both_survive() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = json!({ "resources": { "users": ["profile.stats.posts", "profile.stats.likes"] } });
    let a = instance(store.clone(), cfg.clone(), None, 9);
    let b = instance(store.clone(), cfg, None, 10);
    let users = a.db.create_resource("users", &json!({ "profile": { "$$type": "object", "stats": { "$$type": "object", "posts": "number|default:0", "likes": "number|default:0" } } })).await.unwrap();
    users
        .insert(&json!({ "id": "u1", "profile": { "stats": { "posts": 1, "likes": 2 } } }))
        .await
        .unwrap();
    for k in 0..20 {
        a.engine
            .mutate(
                "users",
                Some("profile.stats.posts"),
                "u1",
                Op::Add,
                &n(1.0),
                MutationOptions::default(),
            )
            .await
            .unwrap();
        b.engine
            .mutate(
                "users",
                Some("profile.stats.likes"),
                "u1",
                Op::Add,
                &n(f64::from(k)),
                MutationOptions::default(),
            )
            .await
            .unwrap();
    }
    let (r1, r2) = tokio::join!(a.engine.consolidate_all(), b.engine.consolidate_all());
    r1.unwrap();
    r2.unwrap();
    let u = users.get("u1").await.unwrap();
    assert_eq!(
        u["profile"]["stats"],
        json!({ "posts": 21.0, "likes": 192.0 })
    );
}

#[tokio::test]
async fn an_idempotency_key_changes_nothing_the_second_time_and_rejects_a_different_amount() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let i = instance(store.clone(), sync_cfg(), None, 11);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let opts = |k: &str| {
        MutationOptions::from_arg(&Arg::Json(
            json!({ "idempotencyKey": k, "source": "checkout" }),
        ))
        .unwrap()
    };
    let first = i
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Add,
            &n(10.0),
            opts("k1"),
        )
        .await
        .unwrap();
    add(&i, "balance", "w1", 1.0).await;
    let again = i
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Add,
            &n(10.0),
            opts("k1"),
        )
        .await
        .unwrap();
    assert_eq!(
        first, again,
        "resolves like the first: the value the first produced"
    );
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(11.0));
    let e = i
        .engine
        .mutate(
            "wallets",
            Some("balance"),
            "w1",
            Op::Add,
            &n(11.0),
            opts("k1"),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), ErrorCode::IdempotencyMismatch);
    // In async mode, before and after consolidation.
    let a = instance(
        store,
        json!({ "resources": { "wallets": ["balance"] } }),
        None,
        12,
    );
    let t1 = a
        .engine
        .mutate("wallets", None, "w1", Op::Add, &n(2.0), opts("k2"))
        .await
        .unwrap();
    let t2 = a
        .engine
        .mutate("wallets", None, "w1", Op::Add, &n(2.0), opts("k2"))
        .await
        .unwrap();
    assert_eq!(t1, t2);
    a.engine.consolidate_all().await.unwrap();
    let MutationResult::Transaction(t3) = a
        .engine
        .mutate("wallets", None, "w1", Op::Add, &n(2.0), opts("k2"))
        .await
        .unwrap()
    else {
        panic!()
    };
    a.engine.consolidate_all().await.unwrap();
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(13.0));
    let MutationResult::Transaction(t1) = t1 else {
        panic!()
    };
    assert_eq!(t3["id"], t1["id"], "the same transaction, now applied");
}

#[tokio::test]
async fn recalculate_rebuilds_from_history_even_after_gc() {
    let clock = ManualClock::new(1_700_000_000_000);
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" }, "garbageCollection": { "retention": 1 } });
    let i = instance(Arc::new(MemoryStore::new()), cfg, Some(clock.clone()), 13);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 100 }))
        .await
        .unwrap();
    for k in 0..5 {
        add(&i, "balance", "w1", 1.0).await;
        clock.advance(86_400_000 * (k + 1));
    }
    w.update("w1", &json!({ "balance": 0 })).await.unwrap();
    assert_eq!(
        i.engine.recalculate("wallets", None, "w1").await.unwrap(),
        Some(json!(105.0))
    );
    i.engine.run_gc().await.unwrap();
    let (chain, _) = i
        .engine
        .journal_chain("wallets", "balance", "w1")
        .await
        .unwrap();
    assert!(
        chain.len() < 5,
        "GC removed old journals (kept {})",
        chain.len()
    );
    w.update("w1", &json!({ "balance": 7 })).await.unwrap();
    assert_eq!(
        i.engine.recalculate("wallets", None, "w1").await.unwrap(),
        Some(json!(105.0))
    );
}

#[tokio::test]
async fn consolidated_event_fires_once_per_explicit_consolidation() {
    let i = instance(
        Arc::new(MemoryStore::new()),
        json!({ "resources": { "wallets": ["balance"] } }),
        None,
        14,
    );
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let s = seen.clone();
    i.engine
        .events()
        .on(move |e| s.lock().unwrap().push(e.name().to_string()));
    add(&i, "balance", "w1", 3.0).await;
    assert_eq!(
        i.engine.consolidate("wallets", None, "w1").await.unwrap(),
        Some(json!(3.0))
    );
    assert_eq!(
        *seen.lock().unwrap(),
        vec!["plg:eventual-consistency:consolidated".to_string()]
    );
}

#[tokio::test]
async fn a_pass_lease_left_by_a_crashed_process_is_taken_over_after_locks_timeout() {
    let t0 = 1_760_000_000_000;
    let clock = ManualClock::new(t0);
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "locks": { "timeout": 30 } });
    let a = instance(store.clone(), cfg.clone(), Some(clock.clone()), 1);
    let b = instance(store.clone(), cfg, Some(clock.clone()), 2);
    let w = wallets(&a).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    add(&a, "balance", "w1", 5.0).await;
    // Process A took the pass lease and died before finishing its pass.
    let lease = tally_core::keys::Layout::new("db").lease("wallets", "balance");
    let held = json!({ "owner": "crashed", "expiresAt": t0 + 30_000 });
    store
        .put(
            &lease,
            serde_json::to_vec(&held).unwrap(),
            tally_core::store::PutMode::Create,
        )
        .await
        .unwrap();
    // (balance, records with pending transactions) after a pass by B.
    let pass = || async {
        b.engine.run_pass().await.unwrap();
        let pending = b.engine.pending_record_ids("wallets", "balance").await;
        (
            w.get("w1").await.unwrap()["balance"].clone(),
            pending.unwrap(),
        )
    };
    clock.advance(29_000);
    assert_eq!(
        pass().await,
        (json!(0.0), vec!["w1".to_string()]),
        "the lease is still held"
    );
    clock.advance(1_001);
    assert_eq!(pass().await, (json!(5.0), vec![]), "taken over after 30 s");
    let released: serde_json::Value =
        serde_json::from_slice(&store.get(&lease).await.unwrap().unwrap().bytes).unwrap();
    assert_eq!(released["expiresAt"], 0, "released after the pass");
}

/// A store whose clock moves on a second with every record written (a slow pass).
struct Ticking {
    inner: MemoryStore,
    clock: Arc<ManualClock>,
    lease_puts: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl Store for Ticking {
    async fn get(
        &self,
        key: &str,
    ) -> Result<Option<tally_core::store::Object>, tally_core::store::StoreError> {
        self.inner.get(key).await
    }
    async fn put(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: tally_core::store::PutMode,
    ) -> Result<tally_core::store::Version, tally_core::store::StoreError> {
        if key.contains("/r/") {
            self.clock.advance(1_000);
        }
        if key.contains("/l/") {
            self.lease_puts
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        self.inner.put(key, bytes, mode).await
    }
    async fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<tally_core::store::ListPage, tally_core::store::StoreError> {
        self.inner.list(prefix, start_after).await
    }
    async fn delete(&self, key: &str) -> Result<(), tally_core::store::StoreError> {
        self.inner.delete(key).await
    }
    async fn delete_many(&self, keys: &[String]) -> Result<(), tally_core::store::StoreError> {
        self.inner.delete_many(keys).await
    }
    fn describe(&self) -> String {
        "ticking".into()
    }
}

#[tokio::test]
async fn a_pass_longer_than_its_lease_renews_it_and_releases_only_its_own() {
    let clock = ManualClock::new(1_760_000_000_000);
    let ticking = Arc::new(Ticking {
        inner: MemoryStore::new(),
        clock: clock.clone(),
        lease_puts: Default::default(),
    });
    let store: Arc<dyn Store> = ticking.clone();
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "locks": { "timeout": 30 },
                      "consolidation": { "concurrency": 1 } });
    let a = instance(store.clone(), cfg, Some(clock.clone()), 1);
    let w = wallets(&a).await;
    for r in 0..250 {
        let id = format!("w{r:03}");
        w.insert(&json!({ "id": id })).await.unwrap();
        add(&a, "balance", &id, 1.0).await;
    }
    ticking
        .lease_puts
        .store(0, std::sync::atomic::Ordering::SeqCst);
    a.engine.run_pass().await.unwrap();
    assert!(
        a.engine
            .pending_record_ids("wallets", "balance")
            .await
            .unwrap()
            .is_empty()
    );
    // Taken, renewed before each later chunk of 100 records (100 s > 15 s), released.
    assert_eq!(
        ticking.lease_puts.load(std::sync::atomic::Ordering::SeqCst),
        4
    );
}

/// The largest amount seen: a reducer a binding would provide (`reducer(current, tx)` in JS).
struct Largest;

#[async_trait::async_trait]
impl tally_core::engine::Reducer for Largest {
    async fn reduce(
        &self,
        start: rust_decimal::Decimal,
        txs: &[&tally_core::txn::Transaction],
        _zone: chrono_tz::Tz,
    ) -> tally_core::Result<rust_decimal::Decimal> {
        Ok(txs
            .iter()
            .map(|t| t.value)
            .fold(start, rust_decimal::Decimal::max))
    }
}

#[tokio::test]
async fn a_custom_reducer_decides_the_consolidated_value() {
    let i = instance(
        Arc::new(MemoryStore::new()),
        json!({ "resources": [{ "resource": "wallets", "fields": [{ "field": "balance", "reducer": { "$function": 7 } }] }],
                "consolidation": { "mode": "sync" } }),
        None,
        3,
    );
    i.engine.set_reducer(7, Arc::new(Largest));
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let mut seen = Vec::new();
    for v in [5.0, 3.0, 9.0, 2.0] {
        seen.push(value(add(&i, "balance", "w1", v).await));
    }
    assert_eq!(seen, [Some(5.0), Some(5.0), Some(9.0), Some(9.0)]);
    assert_eq!(w.get("w1").await.unwrap()["balance"], json!(9.0));
}

/// The checkpoints GC leaves for `w1` after adds of 1 at 0, 10, 60 and 125 minutes past
/// `t0` and one two days later: `(seq, balance)` of each.
async fn checkpoints_after_gc(strategy: &str) -> Vec<(u64, String)> {
    let t0 = 1_700_000_000_000 - 1_700_000_000_000 % 86_400_000; // a UTC midnight
    let clock = ManualClock::new(t0);
    let cfg = json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" },
                      "garbageCollection": { "retention": 1 }, "checkpoints": { "strategy": strategy } });
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let i = instance(store.clone(), cfg, Some(clock.clone()), 14);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1", "balance": 100 }))
        .await
        .unwrap();
    for minute in [0, 10, 60, 125, 2 * 24 * 60] {
        clock.set(t0 + minute * 60_000);
        add(&i, "balance", "w1", 1.0).await;
    }
    i.engine.run_gc().await.unwrap();
    let prefix = tally_core::keys::Layout::new("db").checkpoints("wallets", "balance", "w1");
    let mut out = Vec::new();
    for key in tally_core::store::list_all(store.as_ref(), &prefix)
        .await
        .unwrap()
    {
        let cp: serde_json::Value =
            serde_json::from_slice(&store.get(&key).await.unwrap().unwrap().bytes).unwrap();
        out.push((
            cp["seq"].as_u64().unwrap(),
            cp["values"]["balance"].as_str().unwrap().to_string(),
        ));
    }
    assert_eq!(
        i.engine.recalculate("wallets", None, "w1").await.unwrap(),
        Some(json!(105.0)),
        "recalculate is exact after GC"
    );
    out
}

#[tokio::test]
async fn gc_leaves_a_checkpoint_at_every_hour_or_day_boundary_it_collects() {
    let hourly = checkpoints_after_gc("hourly").await;
    assert_eq!(
        hourly,
        [(2, "102".into()), (3, "103".into()), (4, "104".into())]
    );
    let daily = checkpoints_after_gc("daily").await;
    assert_eq!(daily, [(4, "104".to_string())]);
}
