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
    let db = Database::new(store, "db");
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
