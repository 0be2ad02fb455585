//! Analytics benchmarks: aggregating 1,000,000 transactions into the four periods (pure: once
//! per period as four queries do, and laid out once as a prepared WASM set does), and
//! sync-mode mutation throughput of 16 concurrent writers with analytics off and on (memory
//! store), whose ratio the README reports. Run with `cargo bench -p tally-core --bench analytics`.

use criterion::{Criterion, criterion_group, criterion_main};
use rust_decimal::Decimal;
use serde_json::json;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::analytics::Columns;
use tally_core::analytics::materialized::PERIODS;
use tally_core::analytics::points::{Fact, aggregate};
use tally_core::clock::{IdSource, SplitMix, YieldSleeper};
use tally_core::store::Store;
use tally_core::store::counting::{CountingStore, Counts};
use tally_core::store::faulty::{FaultyStore, SleepFn};
use tally_core::store::memory::MemoryStore;
use tally_core::{Arg, Database, Engine, MutationOptions, Op, PluginConfig};

/// `n` transactions over 2025 on 1,000 records, deterministic.
fn facts(n: usize) -> Vec<Fact> {
    let rng = SplitMix::seeded(42);
    let year_ms = 365 * 86_400_000u64;
    let ids: Vec<Arc<str>> = (0..1000).map(|i| format!("r{i}").into()).collect();
    (0..n)
        .map(|_| {
            let r = rng.next_u64();
            Fact {
                record_id: ids[(r % 1000) as usize].clone(),
                timestamp_ms: 1_735_689_600_000 + ((r >> 10) % year_ms) as i64,
                operation: [Op::Add, Op::Sub, Op::Set][(r % 3) as usize],
                value: Decimal::new(((r >> 40) % 10_000) as i64, 2),
            }
        })
        .collect()
}

fn aggregate_one_million(c: &mut Criterion) {
    let all = facts(1_000_000);
    let zone: chrono_tz::Tz = "America/New_York".parse().unwrap();
    let mut g = c.benchmark_group("aggregate");
    g.sample_size(10).measurement_time(Duration::from_secs(20));
    g.bench_function("1M transactions into hour, day, week and month", |b| {
        b.iter(|| {
            for p in PERIODS {
                black_box(aggregate(&all, p, zone));
            }
        })
    });
    g.bench_function(
        "1M transactions laid out once, into hour, day, week and month",
        |b| {
            b.iter(|| {
                let columns = Columns::new(&all);
                for p in PERIODS {
                    black_box(columns.aggregate(p, zone));
                }
            })
        },
    );
    g.finish();
}

/// 16 writers, each `adds` sync adds on its own record, sharing one memory store through four
/// engines (as four processes would). Returns how long the adds took (setup excluded) and the
/// requests they made.
async fn sixteen_writers(analytics: bool, adds: usize, latency_ms: u64) -> (Duration, Counts) {
    let memory: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let slow: Arc<dyn Store> = if latency_ms == 0 {
        memory
    } else {
        let sleep: SleepFn = Arc::new(|ms| Box::pin(tokio::time::sleep(Duration::from_millis(ms))));
        Arc::new(FaultyStore::new(memory).with_latency(latency_ms, sleep))
    };
    let counting = Arc::new(CountingStore::new(slow));
    let store: Arc<dyn Store> = counting.clone();
    let options = json!({
        "resources": { "wallets": ["balance"] },
        "consolidation": { "mode": "sync", "auto": false },
        "analytics": { "enabled": analytics },
    });
    let mut engines = Vec::new();
    for k in 0..4 {
        let db = Database::new(store.clone(), "db");
        let config = PluginConfig::parse(&options).unwrap();
        let engine = Engine::standalone(config, &db)
            .ids(Arc::new(SplitMix::seeded(k)))
            .sleeper(Arc::new(YieldSleeper))
            .build();
        engine.attach(&db);
        let wallets = db
            .create_resource(
                "wallets",
                &json!({ "id": "string|required", "balance": "number|default:0" }),
            )
            .await
            .unwrap();
        if k == 0 {
            for w in 0..16 {
                wallets
                    .insert(&json!({ "id": format!("w{w}") }))
                    .await
                    .unwrap();
            }
        }
        engines.push(engine);
    }
    let before = counting.counts();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..16 {
        let engine = engines[w % 4].clone();
        tasks.push(tokio::spawn(async move {
            for _ in 0..adds {
                engine
                    .mutate(
                        "wallets",
                        Some("balance"),
                        &format!("w{w}"),
                        Op::Add,
                        &Arg::Number(1.0),
                        MutationOptions::default(),
                    )
                    .await
                    .unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    (start.elapsed(), counting.counts().since(&before))
}

fn sixteen_sync_writers(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // In memory (CPU-bound), and with 2 ms per request (closer to an object store, where the
    // number of requests decides).
    for (latency, adds) in [(0, 20), (2, 10)] {
        let mut g = c.benchmark_group(format!(
            "16 sync writers, {adds} adds each, {latency} ms per request"
        ));
        g.sample_size(10).measurement_time(Duration::from_secs(10));
        for analytics in [false, true] {
            let name = if analytics {
                "analytics on"
            } else {
                "analytics off"
            };
            let (_, counts) = rt.block_on(sixteen_writers(analytics, adds, latency));
            let per_add = |n: u64| n as f64 / (16 * adds) as f64;
            eprintln!(
                "{name}: {:.2} requests per add ({:.2} GET, {:.2} PUT, {:.2} LIST, {:.2} DELETE)",
                per_add(counts.total()),
                per_add(counts.get),
                per_add(counts.put),
                per_add(counts.list),
                per_add(counts.delete + counts.delete_many),
            );
            g.bench_function(name, |b| {
                b.iter_custom(|iters| {
                    (0..iters)
                        .map(|_| rt.block_on(sixteen_writers(analytics, adds, latency)).0)
                        .sum()
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, aggregate_one_million, sixteen_sync_writers);
criterion_main!(benches);
