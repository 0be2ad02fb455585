//! The README's demo: wallets in sync mode and page-view counters in async mode on the
//! embedded folder store, printing balances, what is pending, and what consolidation did.
//! Usage: `cargo run -p tally-core --example demo [folder]` (default `target/demo-data`).

use serde_json::json;
use std::sync::Arc;
use tally_core::store::counting::CountingStore;
use tally_core::store::fs::FsStore;
use tally_core::{Arg, Database, Engine, MutationOptions, MutationResult, Op, PluginConfig};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "target/demo-data".into());
    let _ = std::fs::remove_dir_all(&folder);
    let counting = Arc::new(CountingStore::new(Arc::new(FsStore::open(&folder)?)));
    let db = Database::new(counting.clone(), "demo");
    println!("Tally demo on the folder store at {folder}\n");

    // Wallets, sync mode: every mutation resolves to the consolidated balance.
    let wallets = db
        .create_resource(
            "wallets",
            &json!({ "id": "string|required", "balance": "number|default:0" }),
        )
        .await?;
    let sync = Engine::standalone(PluginConfig::parse(&json!({ "resources": { "wallets": ["balance"] }, "consolidation": { "mode": "sync" } }))?, &db).build();
    sync.attach(&db);
    println!("== Wallets (sync mode) ==");
    for (id, start) in [("alice", 0.0), ("bob", 50.0)] {
        wallets
            .insert(&json!({ "id": id, "balance": start }))
            .await?;
    }
    let steps = [
        ("alice", Op::Add, 1000.0),
        ("alice", Op::Sub, 250.0),
        ("bob", Op::Add, 0.1),
        ("bob", Op::Add, 0.2),
        ("alice", Op::Set, 42.0),
    ];
    for (id, op, amount) in steps {
        let before = counting.counts();
        let r = sync
            .mutate(
                "wallets",
                None,
                id,
                op,
                &Arg::Number(amount),
                MutationOptions::default(),
            )
            .await?;
        let MutationResult::Value(v) = r else {
            unreachable!()
        };
        println!(
            "  {id:<6} {:<3} {amount:>7}  -> balance {:>7}   ({} requests)",
            op.as_str(),
            v.unwrap_or(f64::NAN),
            counting.counts().since(&before).total()
        );
    }

    // Page views, async mode: mutations write one object; a background pass applies them.
    let pages = db
        .create_resource(
            "pages",
            &json!({ "id": "string|required", "views": "number|default:0" }),
        )
        .await?;
    let counters = Engine::standalone(
        PluginConfig::parse(&json!({ "resources": { "pages": ["views"] } }))?,
        &db,
    )
    .build();
    counters.attach(&db);
    println!("\n== Page views (async mode) ==");
    for id in ["home", "pricing", "docs"] {
        pages.insert(&json!({ "id": id })).await?;
    }
    let before = counting.counts();
    for (id, hits) in [("home", 7), ("pricing", 3), ("docs", 12)] {
        for _ in 0..hits {
            counters
                .mutate(
                    "pages",
                    None,
                    id,
                    Op::Add,
                    &Arg::Number(1.0),
                    MutationOptions::default(),
                )
                .await?;
        }
    }
    let writes = counting.counts().since(&before);
    println!(
        "  22 increments written with {} PUTs and {} other requests",
        writes.put,
        writes.total() - writes.put
    );
    println!("  {:<8} {:>7} {:>9}", "page", "stored", "pending");
    for id in ["home", "pricing", "docs"] {
        let stored = pages.get(id).await?["views"].as_f64().unwrap_or(0.0);
        let would = counters
            .consolidated_value("pages", None, id)
            .await?
            .unwrap_or(0.0);
        println!("  {id:<8} {stored:>7} {:>9}", would - stored);
    }
    let before = counting.counts();
    counters.run_pass().await?;
    let pass = counting.counts().since(&before);
    println!(
        "  background pass: {} requests for 3 records ({} LIST, {} GET, {} PUT, {} delete-many)",
        pass.total(),
        pass.list,
        pass.get,
        pass.put,
        pass.delete_many
    );
    for id in ["home", "pricing", "docs"] {
        println!("  {id:<8} {:>7} {:>9}", pages.get(id).await?["views"], 0);
    }
    let status = counters.run_status();
    println!(
        "\nconsolidation runs: {}, transactions applied: {}, errors: {}",
        status.runs, status.transactions_applied, status.errors
    );
    Ok(())
}
