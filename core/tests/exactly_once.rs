//! Exactly once: several engines sharing one store race mutations and consolidations; crashes
//! at every request of a consolidation; request budgets; a property test over interleavings.

mod common;
use common::*;
use proptest::prelude::*;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use tally_core::store::counting::CountingStore;
use tally_core::store::faulty::{FaultKind, FaultyStore};
use tally_core::store::memory::MemoryStore;
use tally_core::store::{Store, list_all};
use tally_core::{MutationOptions, MutationResult, Op};

/// Every acknowledged transaction id appears in exactly one committed journal of its record.
async fn assert_each_applied_once(i: &Instance, field: &str, id: &str, acked: &[String]) {
    let (chain, _) = i.engine.journal_chain("wallets", field, id).await.unwrap();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for j in &chain {
        for t in &j.transactions {
            *seen.entry(t.id.clone()).or_default() += 1;
        }
    }
    for t in acked {
        assert_eq!(
            seen.get(t).copied(),
            Some(1),
            "transaction {t} applied {:?} times",
            seen.get(t)
        );
    }
    assert!(
        seen.values().all(|&c| c == 1),
        "some transaction applied twice"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_instances_racing_mutations_and_consolidations_lose_nothing_and_apply_nothing_twice() {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = json!({ "resources": { "wallets": ["balance", "credits", "stats"] } });
    let insts: Vec<Arc<Instance>> = (0..4)
        .map(|k| Arc::new(instance(store.clone(), cfg.clone(), None, 100 + k)))
        .collect();
    let w = wallets(&insts[0]).await;
    for r in 0..3 {
        w.insert(&json!({ "id": format!("r{r}"), "balance": 0, "credits": 0, "stats": {} }))
            .await
            .unwrap();
    }
    let mut tasks = Vec::new();
    for (k, inst) in insts.iter().enumerate() {
        let inst = inst.clone();
        tasks.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            for step in 0..60u32 {
                let rec = format!("r{}", (step as usize + k) % 3);
                let (field, path) = match step % 4 {
                    0 => ("balance", "balance"),
                    1 => ("credits", "credits"),
                    2 => ("stats", "stats.a"),
                    _ => ("stats", "stats.b"),
                };
                let op = if step % 3 == 0 { Op::Sub } else { Op::Add };
                let amount = f64::from(step % 7) + 0.25;
                let r = inst
                    .engine
                    .mutate(
                        "wallets",
                        Some(path),
                        &rec,
                        op,
                        &n(amount),
                        MutationOptions::default(),
                    )
                    .await
                    .unwrap();
                let MutationResult::Transaction(tx) = r else {
                    panic!()
                };
                let signed = if op == Op::Sub { -amount } else { amount };
                acked.push((
                    rec.clone(),
                    field,
                    path.to_string(),
                    signed,
                    tx["id"].as_str().unwrap().to_string(),
                ));
                if step % 5 == k as u32 {
                    inst.engine
                        .consolidate("wallets", Some(field), &rec)
                        .await
                        .unwrap();
                }
                if step % 17 == 0 {
                    inst.engine.run_pass().await.unwrap();
                }
            }
            acked
        }));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.unwrap());
    }
    for inst in &insts {
        inst.engine.consolidate_all().await.unwrap();
    }
    let mut expected: HashMap<(String, String), f64> = HashMap::new();
    for (rec, _, path, signed, _) in &acked {
        *expected.entry((rec.clone(), path.clone())).or_default() += signed;
    }
    for r in 0..3 {
        let rec = format!("r{r}");
        let got = w.get(&rec).await.unwrap();
        for path in ["balance", "credits", "stats.a", "stats.b"] {
            let want = expected
                .get(&(rec.clone(), path.to_string()))
                .copied()
                .unwrap_or(0.0);
            let have = tally_core::schema::get_path(got.as_object().unwrap(), path)
                .and_then(|v| v.as_f64())
                .unwrap_or(0.0);
            assert!(
                (want - have).abs() < 1e-9,
                "{rec}.{path}: want {want}, have {have}"
            );
        }
        for field in ["balance", "credits", "stats"] {
            let ids: Vec<String> = acked
                .iter()
                .filter(|a| a.0 == rec && a.1 == field)
                .map(|a| a.4.clone())
                .collect();
            assert_each_applied_once(&insts[0], field, &rec, &ids).await;
        }
    }
    assert!(
        list_all(store.as_ref(), "db/t/").await.unwrap().is_empty(),
        "nothing left pending"
    );
}

/// Runs one consolidation of 5 pending transactions through a store that fails request `k`.
async fn crash_at(k: u64, kind: FaultKind) -> (u64, bool) {
    let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let cfg = json!({ "resources": { "wallets": ["balance"] } });
    let setup = instance(base.clone(), cfg.clone(), None, 7);
    let w = wallets(&setup).await;
    w.insert(&json!({ "id": "w1", "balance": 100 }))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for v in [1.0, 2.0, 3.0, 4.0, 5.0] {
        let MutationResult::Transaction(tx) = add(&setup, "balance", "w1", v).await else {
            panic!()
        };
        ids.push(tx["id"].as_str().unwrap().to_string());
    }
    let faulty = Arc::new(FaultyStore::new(base.clone()).fail_request(k, kind));
    let crashing = instance(faulty.clone(), cfg.clone(), None, 8);
    let failed = crashing
        .engine
        .consolidate("wallets", None, "w1")
        .await
        .is_err();
    let seen = faulty.requests_seen();
    let fresh = instance(base.clone(), cfg, None, 9);
    fresh
        .engine
        .consolidate("wallets", None, "w1")
        .await
        .unwrap();
    assert_eq!(
        w.get("w1").await.unwrap()["balance"],
        json!(115.0),
        "crash at request {k} ({kind:?})"
    );
    assert_each_applied_once(&fresh, "balance", "w1", &ids).await;
    assert!(list_all(base.as_ref(), "db/t/").await.unwrap().is_empty());
    (seen, failed)
}

#[tokio::test]
async fn a_crash_at_any_request_of_a_consolidation_neither_loses_nor_doubles() {
    let (total, failed) = crash_at(u64::MAX, FaultKind::Before).await;
    assert!(
        !failed && total >= 4,
        "a clean consolidation makes {total} requests"
    );
    for k in 1..=total {
        for kind in [FaultKind::Before, FaultKind::After] {
            crash_at(k, kind).await;
        }
    }
}

#[tokio::test]
async fn a_crash_between_writing_a_transaction_and_resolving_applies_it_at_most_once() {
    for kind in [FaultKind::Before, FaultKind::After] {
        for k in 1..=6 {
            let base: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let cfg = json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } });
            let setup = instance(base.clone(), cfg.clone(), None, 1);
            let w = wallets(&setup).await;
            w.insert(&json!({ "id": "w1", "balance": 0 }))
                .await
                .unwrap();
            let faulty = Arc::new(FaultyStore::new(base.clone()).fail_request(k, kind));
            let crashing = instance(faulty, cfg.clone(), None, 2);
            let r = crashing
                .engine
                .mutate(
                    "wallets",
                    None,
                    "w1",
                    Op::Add,
                    &n(7.0),
                    MutationOptions::default(),
                )
                .await;
            let fresh = instance(base.clone(), cfg, None, 3);
            fresh.engine.consolidate_all().await.unwrap();
            let stored = w.get("w1").await.unwrap()["balance"].as_f64().unwrap();
            assert!(
                stored == 0.0 || stored == 7.0,
                "applied at most once: k={k} {kind:?} stored {stored}"
            );
            if r.is_ok() || kind == FaultKind::After && k >= 2 {
                assert_eq!(stored, 7.0, "a resolved mutation is durable");
            }
        }
    }
}

#[tokio::test]
async fn request_budgets_hold_with_analytics_off() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    assert_request_budgets(counting, "db", &[1, 10, 1000], |_, _| {}).await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, .. ProptestConfig::default() })]
    /// Random interleavings of mutations and consolidations across three instances: the final
    /// value is the sum of every acknowledged amount and each is applied exactly once.
    #[test]
    fn random_interleavings_across_instances_apply_every_transaction_exactly_once(
        steps in proptest::collection::vec((0usize..3, 0u8..4, 1u32..50), 1..40)
    ) {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(3).enable_all().build().unwrap();
        rt.block_on(async move {
            let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
            let cfg = json!({ "resources": { "wallets": ["balance"] } });
            let insts: Vec<Arc<Instance>> = (0..3).map(|k| Arc::new(instance(store.clone(), cfg.clone(), None, 500 + k as u64))).collect();
            let w = wallets(&insts[0]).await;
            w.insert(&json!({ "id": "p", "balance": 0 })).await.unwrap();
            let tasks: Vec<_> = steps.into_iter().map(|(who, what, amount)| {
                let inst = insts[who].clone();
                tokio::spawn(async move {
                    match what {
                        0 | 1 => {
                            let op = if what == 0 { Op::Add } else { Op::Sub };
                            let r = inst.engine.mutate("wallets", None, "p", op, &n(f64::from(amount)), MutationOptions::default()).await.unwrap();
                            let MutationResult::Transaction(tx) = r else { panic!() };
                            Some((tx["id"].as_str().unwrap().to_string(), if what == 0 { f64::from(amount) } else { -f64::from(amount) }))
                        }
                        2 => { inst.engine.consolidate("wallets", None, "p").await.unwrap(); None }
                        _ => { inst.engine.run_pass().await.unwrap(); None }
                    }
                })
            }).collect();
            let mut acked = Vec::new();
            for t in tasks {
                if let Some(a) = t.await.unwrap() { acked.push(a); }
            }
            insts[1].engine.consolidate_all().await.unwrap();
            let total: f64 = acked.iter().map(|a| a.1).sum();
            assert_eq!(w.get("p").await.unwrap()["balance"].as_f64().unwrap(), total);
            let ids: Vec<String> = acked.into_iter().map(|a| a.0).collect();
            assert_each_applied_once(&insts[2], "balance", "p", &ids).await;
        });
    }
}
