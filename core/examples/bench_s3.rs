//! Benchmark (not a test): add throughput and consolidation latency on an S3 server, with the
//! requests each operation makes. Usage: `bash scripts/bench-s3.sh` (starts the local server
//! and runs this in release mode), or set `TALLY_S3_URL=http://KEY:SECRET@host:port/bucket/prefix`
//! to point it at another S3-compatible endpoint.

use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tally_core::store::counting::{CountingStore, Counts};
use tally_core::{Arg, Database, Engine, MutationOptions, Op, PluginConfig};

fn per_op(c: &Counts, n: usize) -> String {
    let n = n as f64;
    format!(
        "{:.2} req/op (PUT {:.2}, GET {:.2}, LIST {:.2}, DELETE {:.2})",
        c.total() as f64 / n,
        c.put as f64 / n,
        c.get as f64 / n,
        c.list as f64 / n,
        (c.delete + c.delete_many) as f64 / n
    )
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let url = std::env::var("TALLY_S3_URL")
        .map_err(|_| "set TALLY_S3_URL (scripts/bench-s3.sh does it)")?;
    let run = format!("bench-{}", std::process::id());
    let conn = tally_core::connection::open(&url)?;
    let counting = Arc::new(CountingStore::new(conn.store.clone()));
    let db = Database::new(counting.clone(), &format!("{}/{run}", conn.prefix));
    println!(
        "Tally on {} ({})",
        conn.store.describe(),
        tally_core::connection::redact(&url)
    );
    let wallets = db
        .create_resource(
            "wallets",
            &json!({ "id": "string|required", "balance": "number|default:0" }),
        )
        .await?;
    let engine = |mode: &str| -> Result<Arc<Engine>, tally_core::Error> {
        let cfg = PluginConfig::parse(&json!({ "resources": { "wallets": ["balance"] },
            "consolidation": { "mode": mode, "auto": false } }))?;
        let e = Engine::standalone(cfg, &db).build();
        e.attach(&db);
        Ok(e)
    };
    let asyncs = engine("async")?;
    let syncs = engine("sync")?;
    for i in 0..16 {
        wallets
            .insert(&json!({ "id": format!("w{i}"), "balance": 0 }))
            .await?;
    }
    let add = |e: Arc<Engine>, id: String| async move {
        e.mutate(
            "wallets",
            None,
            &id,
            Op::Add,
            &Arg::Number(1.0),
            MutationOptions::default(),
        )
        .await
    };

    // Async adds: one at a time, then 16 at once.
    let n = 300;
    let before = counting.counts();
    let t = Instant::now();
    for i in 0..n {
        add(asyncs.clone(), format!("w{}", i % 16)).await?;
    }
    let secs = t.elapsed().as_secs_f64();
    println!(
        "async add, sequential:      {:>7.0} adds/s   {}",
        n as f64 / secs,
        per_op(&counting.counts().since(&before), n)
    );
    let before = counting.counts();
    let t = Instant::now();
    let tasks: Vec<_> = (0..16)
        .map(|w| {
            let e = asyncs.clone();
            tokio::spawn(async move {
                for _ in 0..n / 16 {
                    add(e.clone(), format!("w{w}")).await?;
                }
                Ok::<_, tally_core::Error>(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let done = (n / 16) * 16;
    println!(
        "async add, 16 concurrent:   {:>7.0} adds/s   {}",
        done as f64 / t.elapsed().as_secs_f64(),
        per_op(&counting.counts().since(&before), done)
    );
    asyncs.consolidate_all().await?;

    // Sync adds (each consolidates before it resolves).
    let mut lat = Vec::new();
    let before = counting.counts();
    for i in 0..100 {
        let t = Instant::now();
        add(syncs.clone(), format!("w{}", i % 16)).await?;
        lat.push(t.elapsed());
    }
    println!(
        "sync add, sequential:       median {:>6.1} ms   {}",
        median(lat).as_secs_f64() * 1000.0,
        per_op(&counting.counts().since(&before), 100)
    );

    // Consolidation latency by number of pending transactions.
    for pending in [1usize, 100, 1000] {
        for _ in 0..pending {
            add(asyncs.clone(), "w0".into()).await?;
        }
        let before = counting.counts();
        let t = Instant::now();
        asyncs.consolidate("wallets", None, "w0").await?;
        let c = counting.counts().since(&before);
        println!(
            "consolidate {pending:>4} pending:   {:>8.1} ms   {} requests (PUT {}, GET {}, LIST {}, DELETE-MANY {})",
            t.elapsed().as_secs_f64() * 1000.0,
            c.total(),
            c.put,
            c.get,
            c.list,
            c.delete_many
        );
    }
    Ok(())
}
