//! Materialized analytics on a store: exact after a crash at any request, exact with several
//! instances racing, a constant number of reads per query, and kept after GC.

mod common;

use common::{Instance, instance, wallets};
use serde_json::{Value, json};
use std::sync::Arc;
use tally_core::analytics::points::Fact;
use tally_core::clock::{Clock, ManualClock};
use tally_core::queries::{FUNCTIONS, QueryPlan};
use tally_core::store::counting::CountingStore;
use tally_core::store::faulty::{FaultKind, FaultyStore};
use tally_core::store::memory::MemoryStore;
use tally_core::store::{PutMode, Store, list_all};
use tally_core::{Arg, MutationOptions, MutationResult, Op};

const ZONE: &str = "America/New_York";
/// 2025-11-02 04:30Z: 00:30 EDT on the 25-hour fall-back day.
const START: i64 = 1_762_057_800_000;

fn config(mode: &str) -> Value {
    json!({
        "resources": { "wallets": ["balance"] },
        "consolidation": { "mode": mode, "auto": false },
        "analytics": { "enabled": true },
        "cohort": { "timezone": ZONE },
    })
}

/// The queries compared, with their arguments after resource and field.
fn queries() -> Vec<(&'static str, Vec<Arg>)> {
    let o = |v: Value| Arg::Json(v);
    vec![
        ("getDayByHour", vec![Arg::String("2025-11-02".into())]),
        ("getMonthByDay", vec![Arg::String("2025-11".into())]),
        ("getYearByWeek", vec![Arg::String("2025".into())]),
        ("getYearByMonth", vec![Arg::String("2025".into())]),
        ("getAnalytics", vec![o(json!({ "period": "hour" }))]),
        ("getAnalytics", vec![o(json!({ "period": "week" }))]),
    ]
}

/// What the transaction-based (pure) computation gives for `facts`: the reference answer.
fn expected(i: &Instance, facts: &[Fact]) -> Vec<Value> {
    let env = i.engine.query_env();
    queries()
        .into_iter()
        .map(|(f, args)| {
            QueryPlan::parse(f, &args, &env)
                .unwrap()
                .execute(facts, &env)
        })
        .collect()
}

async fn answers(i: &Instance) -> Vec<Value> {
    let mut out = Vec::new();
    for (f, args) in queries() {
        out.push(
            i.engine
                .query(f, "wallets", "balance", &args)
                .await
                .unwrap(),
        );
    }
    out
}

async fn mutate(i: &Instance, id: &str, op: Op, v: f64) -> MutationResult {
    i.engine
        .mutate(
            "wallets",
            Some("balance"),
            id,
            op,
            &Arg::Number(v),
            MutationOptions::default(),
        )
        .await
        .unwrap()
}

/// An async mutation, as the fact analytics should count.
async fn mutate_async(i: &Instance, id: &str, op: Op, v: f64) -> Fact {
    let MutationResult::Transaction(tx) = mutate(i, id, op, v).await else {
        panic!("async mode answers with the transaction")
    };
    Fact::from_json(&tx).unwrap().0
}

/// Every applied transaction, read from the journals (a path independent of the analytics).
async fn applied_facts(i: &Instance) -> Vec<Fact> {
    let all = i
        .engine
        .field_transactions("wallets", "balance", None)
        .await
        .unwrap();
    all.applied.iter().map(Fact::from).collect()
}

/// The world before the crash: transactions on two records across the repeated 01:00 hour,
/// record `b` consolidated (so the crash meets a non-empty fold state). With `big`, `a` has
/// 300 transactions an hour apart, so that consolidation's fold writes the packed objects (a
/// flush) rather than only carrying its plan in the fold state. Built once per case; every
/// crash starts from a copy of its objects.
struct Before {
    objects: Vec<(String, Vec<u8>)>,
    facts: Vec<Fact>,
    now: i64,
}

async fn before(big: bool) -> Before {
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let setup = instance(base.clone(), config("async"), Some(clock.clone()), 7);
    let w = wallets(&setup).await;
    for id in ["a", "b"] {
        w.insert(&json!({ "id": id })).await.unwrap();
    }
    let mut facts = Vec::new();
    for (id, op, v) in [
        ("a", Op::Add, 5.0),
        ("a", Op::Sub, 2.0),
        ("b", Op::Add, 1.5),
        ("a", Op::Set, 10.0),
        ("b", Op::Add, 0.1),
    ] {
        facts.push(mutate_async(&setup, id, op, v).await);
        clock.advance(40 * 60_000);
    }
    for _ in 0..if big { 300 } else { 0 } {
        facts.push(mutate_async(&setup, "a", Op::Add, 1.0).await);
        clock.advance(3_600_000);
    }
    setup
        .engine
        .consolidate("wallets", None, "b")
        .await
        .unwrap();
    let mut objects = Vec::new();
    for key in list_all(base.as_ref(), "").await.unwrap() {
        let object = base.get(&key).await.unwrap().unwrap();
        objects.push((key, object.bytes));
    }
    Before {
        objects,
        facts,
        now: clock.now_ms(),
    }
}

/// One consolidation of record `a` through a store that fails request `k`, then a fresh
/// instance consolidates; the analytics must equal the pure computation over the facts.
/// Returns how many requests the crashing consolidation made.
async fn crash_at(world: &Before, k: u64, kind: FaultKind, big: bool) -> u64 {
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    for (key, bytes) in &world.objects {
        base.put(key, bytes.clone(), PutMode::Create).await.unwrap();
    }
    let clock = ManualClock::new(world.now);
    let faulty = Arc::new(FaultyStore::new(base.clone()).fail_request(k, kind));
    let crashing = instance(faulty.clone(), config("async"), Some(clock.clone()), 8);
    let _ = crashing.engine.consolidate("wallets", None, "a").await;
    let seen = faulty.requests_seen();
    let fresh = instance(base.clone(), config("async"), Some(clock), 9);
    fresh
        .engine
        .consolidate("wallets", None, "a")
        .await
        .unwrap();
    let what = format!("crash at request {k} ({kind:?}, big: {big})");
    let got = answers(&fresh).await;
    assert_eq!(got, expected(&fresh, &world.facts), "{what}");
    if big && k == u64::MAX {
        let packed = list_all(base.as_ref(), "db/a/wallets/balance/h/")
            .await
            .unwrap();
        assert!(
            !packed.is_empty(),
            "the big batch was flushed to packed objects"
        );
    }
    // Later folds (a background pass) change nothing.
    fresh.engine.run_pass().await.unwrap();
    assert_eq!(answers(&fresh).await, got, "{what}, after a pass");
    seen
}

/// A crash before or after every request of one consolidation (`big`: one that flushes).
/// Four tests, so the test harness runs them on every core.
async fn crash_at_every_request(kind: FaultKind, big: bool) {
    let world = before(big).await;
    let total = crash_at(&world, u64::MAX, kind, big).await;
    assert!(
        total >= 8,
        "a clean consolidation with analytics makes {total} requests"
    );
    for k in 1..=total {
        crash_at(&world, k, kind, big).await;
    }
}

#[tokio::test]
async fn a_crash_before_any_request_neither_loses_nor_double_counts_analytics() {
    crash_at_every_request(FaultKind::Before, false).await;
}

#[tokio::test]
async fn a_crash_after_any_request_neither_loses_nor_double_counts_analytics() {
    crash_at_every_request(FaultKind::After, false).await;
}

#[tokio::test]
async fn a_crash_before_any_request_of_a_flushing_fold_neither_loses_nor_double_counts() {
    crash_at_every_request(FaultKind::Before, true).await;
}

#[tokio::test]
async fn a_crash_after_any_request_of_a_flushing_fold_neither_loses_nor_double_counts() {
    crash_at_every_request(FaultKind::After, true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_sync_writers_on_four_instances_count_every_transaction_once() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let insts: Vec<Arc<Instance>> = (0..4)
        .map(|k| {
            Arc::new(instance(
                store.clone(),
                config("sync"),
                Some(clock.clone()),
                50 + k,
            ))
        })
        .collect();
    let w = wallets(&insts[0]).await;
    for r in 0..6 {
        w.insert(&json!({ "id": format!("r{r}") })).await.unwrap();
    }
    let mut tasks = Vec::new();
    for writer in 0..16usize {
        let inst = insts[writer % 4].clone();
        let clock = clock.clone();
        tasks.push(tokio::spawn(async move {
            for step in 0..12usize {
                let id = format!("r{}", (writer + step) % 6);
                let op = [Op::Add, Op::Sub, Op::Add][step % 3];
                mutate(&inst, &id, op, (step + 1) as f64).await;
                clock.advance(7 * 60_000);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let facts = applied_facts(&insts[0]).await;
    assert_eq!(facts.len(), 16 * 12, "every mutation applied once");
    let got = answers(&insts[1]).await;
    assert_eq!(got, expected(&insts[1], &facts));
    let day = &got[1][0];
    assert_eq!(day["count"], json!(16 * 12));
    assert_eq!(day["recordCount"], json!(6));
}

#[tokio::test]
async fn queries_read_a_constant_number_of_objects_whatever_the_range() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let clock = ManualClock::new(1_735_732_800_000); // 2025-01-01 12:00Z
    let i = instance(counting.clone(), config("sync"), Some(clock.clone()), 3);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w" })).await.unwrap();
    // A transaction every ~3.5 days through 2025: 105 days, 53 weeks, 12 months.
    for _ in 0..105 {
        mutate(&i, "w", Op::Add, 1.0).await;
        clock.advance(84 * 3_600_000);
    }
    clock.set(1_748_779_200_000); // 2025-06-01 12:00Z
    let cases: Vec<(&str, Vec<Arg>, u64)> = vec![
        ("getYearByDay", vec![Arg::String("2025".into())], 2),
        ("getYearByWeek", vec![Arg::String("2025".into())], 3),
        ("getYearByMonth", vec![Arg::String("2025".into())], 2),
        ("getMonthByHour", vec![Arg::String("2025-03".into())], 2),
        ("getDayByHour", vec![Arg::String("2025-03-09".into())], 2),
        ("getLastNHours", vec![Arg::Number(24.0)], 3),
        ("getLastNDays", vec![Arg::Number(365.0)], 3),
        ("getLastNMonths", vec![Arg::Number(12.0)], 3),
    ];
    for (f, args, gets) in cases {
        let before = counting.counts();
        let pts = i
            .engine
            .query(f, "wallets", "balance", &args)
            .await
            .unwrap();
        let used = counting.counts().since(&before);
        assert!(
            used.get <= gets && used.list == 0 && used.writes() == 0,
            "{f} used {used:?}"
        );
        assert!(pts.is_array(), "{f} answers points");
    }
    let year = i
        .engine
        .query(
            "getYearByDay",
            "wallets",
            "balance",
            &[Arg::String("2025".into())],
        )
        .await
        .unwrap();
    let total: u64 = year
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 105);
    assert!(FUNCTIONS.contains(&"getYearByDay"));
}

#[tokio::test]
async fn analytics_outlive_garbage_collection() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let clock = ManualClock::new(START);
    let mut cfg = config("sync");
    cfg["garbageCollection"] = json!({ "retention": 0 });
    let i = instance(store.clone(), cfg, Some(clock.clone()), 5);
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w" })).await.unwrap();
    for v in [1.0, 2.0, 3.0, 4.0] {
        mutate(&i, "w", Op::Add, v).await;
        clock.advance(3_600_000);
    }
    let facts = applied_facts(&i).await;
    assert_eq!(facts.len(), 4);
    let before = answers(&i).await;
    assert_eq!(before, expected(&i, &facts));
    clock.advance(86_400_000);
    i.engine.run_gc().await.unwrap();
    let kept = i
        .engine
        .field_transactions("wallets", "balance", None)
        .await
        .unwrap();
    assert!(
        kept.applied.len() < facts.len(),
        "GC removed applied transactions"
    );
    assert_eq!(answers(&i).await, before);
}
