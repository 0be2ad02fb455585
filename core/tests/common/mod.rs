//! Shared test harness: engines over one store, as separate processes would share a bucket.
#![allow(dead_code)]

use serde_json::{Value, json};
use std::sync::Arc;
use tally_core::clock::{Clock, ManualClock, SplitMix, YieldSleeper};
use tally_core::records::Resource;
use tally_core::store::Store;
use tally_core::{Arg, Database, Engine, MutationOptions, MutationResult, Op, PluginConfig};

/// One "process": its own database handle and engine over a shared store.
pub struct Instance {
    pub db: Arc<Database>,
    pub engine: Arc<Engine>,
}

pub fn instance(
    store: Arc<dyn Store>,
    options: Value,
    clock: Option<Arc<ManualClock>>,
    seed: u64,
) -> Instance {
    instance_at(store, "db", options, clock, seed)
}

/// An instance whose database lives under `prefix` in the store.
pub fn instance_at(
    store: Arc<dyn Store>,
    prefix: &str,
    options: Value,
    clock: Option<Arc<ManualClock>>,
    seed: u64,
) -> Instance {
    // With a fixed clock, the database's deletion times and generated ids are fixed too.
    let db = match &clock {
        Some(c) => Database::with_sources(
            store,
            prefix,
            c.clone() as Arc<dyn Clock>,
            Arc::new(SplitMix::seeded(seed.wrapping_add(0xDB))),
        ),
        None => Database::new(store, prefix),
    };
    let config = PluginConfig::parse(&options).expect("valid config");
    let mut b = Engine::standalone(config, &db)
        .ids(Arc::new(SplitMix::seeded(seed)))
        .sleeper(Arc::new(YieldSleeper));
    if let Some(c) = clock {
        b = b.clock(c as Arc<dyn Clock>);
    }
    let engine = b.build();
    engine.attach(&db);
    Instance { db, engine }
}

pub async fn wallets(i: &Instance) -> Resource {
    i.db
        .create_resource(
            "wallets",
            &json!({ "id": "string|required", "balance": "number|default:0", "credits": "number|default:0",
                     "stats": "json|optional", "owner": "string|optional" }),
        )
        .await
        .unwrap()
}

pub fn n(v: f64) -> Arg {
    Arg::Number(v)
}

pub async fn add(i: &Instance, field: &str, id: &str, v: f64) -> MutationResult {
    i.engine
        .mutate(
            "wallets",
            Some(field),
            id,
            Op::Add,
            &n(v),
            MutationOptions::default(),
        )
        .await
        .unwrap()
}

pub fn value(r: MutationResult) -> Option<f64> {
    match r {
        MutationResult::Value(v) => v,
        other => panic!("expected a value, got {other:?}"),
    }
}

/// The local S3 server the test scripts start (`scripts/s3-server.sh`), if any. Panics when
/// `TALLY_S3_REQUIRED` is set and no server is configured, so the suite is never skipped in CI.
#[cfg(feature = "s3")]
pub fn s3_endpoint() -> Option<String> {
    match std::env::var("TALLY_S3_ENDPOINT") {
        Ok(e) if !e.is_empty() => Some(e),
        _ => {
            assert!(
                std::env::var_os("TALLY_S3_REQUIRED").is_none(),
                "TALLY_S3_REQUIRED is set but TALLY_S3_ENDPOINT is not: start scripts/s3-server.sh"
            );
            eprintln!(
                "S3 tests skipped: TALLY_S3_ENDPOINT is not set (scripts/s3-server.sh start)"
            );
            None
        }
    }
}

/// A connection string for `bucket` on the local S3 server, with the test credentials.
#[cfg(feature = "s3")]
pub fn s3_connection_string(bucket: &str, prefix: &str) -> Option<String> {
    let endpoint = s3_endpoint()?;
    let key = std::env::var("TALLY_S3_ACCESS_KEY").unwrap_or_else(|_| "test".into());
    let secret = std::env::var("TALLY_S3_SECRET_KEY").unwrap_or_else(|_| "test".into());
    let rest = endpoint.split_once("://").map(|x| x.1).unwrap_or(&endpoint);
    Some(format!("http://{key}:{secret}@{rest}/{bucket}/{prefix}"))
}

/// Opens `bucket` on the local S3 server, creating it when needed.
#[cfg(feature = "s3")]
pub async fn s3_connection(
    bucket: &str,
    prefix: &str,
) -> Option<tally_core::connection::Connection> {
    let url = url::Url::parse(&s3_connection_string(bucket, prefix)?).unwrap();
    let (options, prefix) = tally_core::connection::s3_options(&url).unwrap();
    let s3 = Arc::new(tally_core::store::s3::S3Store::new(options));
    s3.ensure_bucket().await.unwrap();
    Some(tally_core::connection::Connection { store: s3, prefix })
}

/// The request budgets of one add and one consolidation, on any store behind a counting
/// decorator: an async add is one PUT; a sync add at most 6 requests; consolidating N pending
/// transactions at most 8 requests with one LIST and ceil(N/1000) delete-many; an idle pass one
/// LIST per field. `observe(phase, counts)` sees each phase's counts (to compare them with a
/// server's own log).
pub async fn assert_request_budgets(
    counting: Arc<tally_core::store::counting::CountingStore>,
    prefix: &str,
    pending: &[usize],
    mut observe: impl FnMut(&str, &tally_core::store::counting::Counts),
) {
    let store: Arc<dyn Store> = counting.clone();
    let a = instance_at(
        store.clone(),
        prefix,
        json!({ "resources": { "wallets": ["balance", "credits"] } }),
        None,
        1,
    );
    let w = wallets(&a).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    let before = counting.counts();
    add(&a, "balance", "w1", 1.0).await;
    let c = counting.counts().since(&before);
    observe("async add", &c);
    assert_eq!(
        (c.put, c.get, c.list, c.delete, c.delete_many),
        (1, 0, 0, 0, 0),
        "async add = one write"
    );
    a.engine.consolidate_all().await.unwrap();

    let s = instance_at(
        store.clone(),
        prefix,
        json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } }),
        None,
        2,
    );
    add(&s, "balance", "w1", 1.0).await; // a new process reads the resource definition once
    for _ in 0..3 {
        let before = counting.counts();
        add(&s, "balance", "w1", 1.0).await;
        let c = counting.counts().since(&before);
        observe("sync add", &c);
        assert!(c.total() <= 6, "sync add made {c:?}");
    }
    for &n_pending in pending {
        for _ in 0..n_pending {
            add(&a, "balance", "w1", 1.0).await;
        }
        let before = counting.counts();
        a.engine
            .consolidate("wallets", Some("balance"), "w1")
            .await
            .unwrap();
        let c = counting.counts().since(&before);
        observe(&format!("consolidate {n_pending} pending"), &c);
        let allowance = n_pending.div_ceil(1000) as u64;
        assert!(
            c.total() <= 8,
            "consolidating {n_pending} pending made {c:?}"
        );
        assert!(c.delete_many <= allowance, "{c:?}");
        assert_eq!(c.list, 1, "{c:?}");
    }
    let before = counting.counts();
    a.engine.run_pass().await.unwrap();
    let c = counting.counts().since(&before);
    observe("idle pass", &c);
    assert_eq!(
        (c.list, c.total()),
        (2, 2),
        "idle pass: one LIST per configured field, {c:?}"
    );
}

/// A worker process's background work: a consolidation pass every `every_ms`, and GC every
/// `gc_every` passes when given (like the plugin's timers).
#[cfg(feature = "s3")]
pub fn spawn_background(inst: Arc<Instance>, every_ms: u64, gc_every: Option<u64>) {
    tokio::spawn(async move {
        let mut n = 0u64;
        loop {
            tokio::time::sleep(std::time::Duration::from_millis(every_ms)).await;
            let _ = inst.engine.run_pass().await;
            n += 1;
            if gc_every.is_some_and(|g| n.is_multiple_of(g)) {
                let _ = inst.engine.run_gc().await;
            }
        }
    });
}

/// A file a worker appends its ledger lines to.
pub fn append_to(path: &str) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap()
}

/// Writes what a consolidator that lost its first commit of `wallets.balance` on `id` leaves:
/// the journal of batch 1, applying `transactions` (0 → 5), that nothing names.
pub async fn put_lost_first_journal(store: &Arc<dyn Store>, id: &str, transactions: Value) {
    let journal = json!({
        "seq": 1, "prev": null, "resource": "wallets", "field": "balance", "recordId": id,
        "committedAt": 1, "keys": [], "transactions": transactions,
        "values": { "balance": { "before": "0", "after": "5" } },
    });
    store
        .put(
            &format!("db/j/wallets/balance/{id}/0000000001-000000001-lostlostlost"),
            serde_json::to_vec(&journal).unwrap(),
            tally_core::store::PutMode::Create,
        )
        .await
        .unwrap();
}
