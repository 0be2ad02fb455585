//! Simulated processes: engines with skewed clocks over the simulated store, and the callers
//! that drive them with a random workload, writing what each mutation answered to a ledger.

use super::world::{SimStore, World};
use async_trait::async_trait;
use futures::future::BoxFuture;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use tally_core::clock::Sleeper;
use tally_core::clock::{Clock, SplitMix, YieldSleeper};
use tally_core::records::s3db::{Host, HostRecords};
use tally_core::store::retry::RetryingStore;
use tally_core::{Arg, Database, Engine, MutationOptions, Op, PluginConfig};

/// Records every run works on (inserted before the workload starts).
pub const RECORDS: [&str; 2] = ["r0", "r1"];
/// Paths written: a plain field and two nested paths of a json field.
pub const PATHS: [&str; 3] = ["balance", "stats.a", "stats.b"];

/// A host database like s3db.js (the seam of `tally_core::records::s3db`): whole-record
/// read-modify-write with a yield between the read and the write, no conditions.
#[derive(Default)]
pub struct SimHost {
    pub records: Mutex<BTreeMap<String, Map<String, Value>>>,
}

#[async_trait]
impl Host for SimHost {
    async fn get(
        &self,
        _resource: &str,
        id: &str,
    ) -> tally_core::Result<Option<Map<String, Value>>> {
        YieldSleeper.sleep(0).await;
        Ok(self.records.lock().unwrap().get(id).cloned())
    }
    async fn write(
        &self,
        _resource: &str,
        id: &str,
        changes: Map<String, Value>,
    ) -> tally_core::Result<bool> {
        let Some(mut copy) = self.records.lock().unwrap().get(id).cloned() else {
            return Ok(false);
        };
        YieldSleeper.sleep(0).await;
        for (path, v) in changes {
            tally_core::schema::set_path(&mut copy, &path, v);
        }
        let mut records = self.records.lock().unwrap();
        if !records.contains_key(id) {
            return Ok(false);
        }
        records.insert(id.to_string(), copy);
        Ok(true)
    }
}

/// A process's clock: simulated time plus its own offset (skew, steps back).
pub struct SimClock {
    pub world: Arc<World>,
    pub offset: AtomicI64,
}

impl Clock for SimClock {
    fn now_ms(&self) -> i64 {
        self.world.now() + self.offset.load(Ordering::SeqCst)
    }
}

/// What a caller heard back from a mutation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Issued, no answer yet (or the caller crashed waiting).
    Issued,
    /// Resolved.
    Acked,
    /// Rejected.
    Failed,
}

/// One mutation, keyed in the ledger by its unique `source`.
#[derive(Debug, Clone)]
pub struct Entry {
    pub caller: String,
    pub step: u32,
    pub record: String,
    pub path: String,
    pub op: Op,
    pub amount: String,
    pub outcome: Outcome,
    /// Sync mode: the value the mutation resolved to.
    pub resolved: Option<f64>,
    /// A transaction of s3db.js 21.6.2 carried over (its own timestamp; no call order).
    pub carried: bool,
}

/// Every mutation issued in a run.
#[derive(Default)]
pub struct Ledger {
    pub entries: Mutex<BTreeMap<String, Entry>>,
}

/// The plugin configuration of a run.
pub fn config(sync: bool, retention_days: f64, analytics: bool) -> Value {
    json!({
        "resources": { "wallets": ["balance", "stats"] },
        "consolidation": { "mode": if sync { "sync" } else { "async" }, "auto": false },
        "garbageCollection": { "retention": retention_days },
        "checkpoints": { "enabled": true },
        "locks": { "timeout": 5 },
        "analytics": { "enabled": analytics },
    })
}

/// A simulated process: a database handle and an engine.
pub struct Process {
    pub name: String,
    pub db: Arc<Database>,
    pub engine: Arc<Engine>,
    pub clock: Arc<SimClock>,
    /// With records in a host database: the host and Tally's records over it.
    pub host: Option<(Arc<SimHost>, Arc<HostRecords>)>,
}

/// A process; with `host`, its records live in that host database (the s3db.js seam) and
/// Tally's state objects beside them, otherwise in Tally's own database.
pub fn process(
    world: &Arc<World>,
    name: &str,
    options: &Value,
    seed: u64,
    offset: i64,
    host: Option<&Arc<SimHost>>,
) -> Process {
    // What the S3 store does: one attempt per request, retried by the retrying store.
    let sim = SimStore {
        world: world.clone(),
        name: name.to_string(),
    };
    let store = Arc::new(RetryingStore::new(sim, 4, Arc::new(YieldSleeper)));
    let config = PluginConfig::parse(options).expect("valid configuration");
    let clock = Arc::new(SimClock {
        world: world.clone(),
        offset: AtomicI64::new(offset),
    });
    // Tombstones stamped and aged by the simulated clock, never the wall clock: a run
    // depends on its seed alone.
    let db = Database::with_sources(
        store.clone(),
        "db",
        clock.clone() as Arc<dyn Clock>,
        Arc::new(SplitMix::seeded(seed ^ 0xDB)),
    );
    let records = host.map(|h| {
        let records = HostRecords::with_timing(
            h.clone() as Arc<dyn Host>,
            store.clone(),
            "db",
            &config,
            Arc::new(YieldSleeper),
            None,
            clock.clone() as Arc<dyn Clock>,
        );
        (h.clone(), records)
    });
    let builder = match &records {
        Some((_, r)) => Engine::builder(config, store, "db", r.clone()),
        None => Engine::standalone(config, &db),
    };
    let engine = builder
        .ids(Arc::new(SplitMix::seeded(seed)))
        .sleeper(Arc::new(YieldSleeper))
        .clock(clock.clone() as Arc<dyn Clock>)
        .build();
    if host.is_none() {
        engine.attach(&db);
    }
    Process {
        name: name.to_string(),
        db,
        engine,
        clock,
        host: records,
    }
}

/// The data every record is inserted with (at the start, and when created again).
pub fn initial(id: &str) -> Value {
    json!({ "id": id, "balance": 0, "stats": {} })
}

/// Inserts `id` unless it exists; on a host, after forgetting what Tally held of an earlier
/// record of the id (the plugin's afterDelete hook). False when it could not be done.
pub async fn ensure_record(p: &Process, id: &str) -> bool {
    match &p.host {
        Some((host, records)) => {
            if host.records.lock().unwrap().contains_key(id) {
                // Created by a caller that crashed before the plugin's afterInsert hook: it
                // runs now (it does nothing unless the id was deleted before).
                let Value::Object(m) = initial(id) else {
                    return false;
                };
                return records.inserted("wallets", id, &m).await.is_ok();
            }
            if records.forget("wallets", id).await.is_err() {
                return false;
            }
            let Value::Object(m) = initial(id) else {
                return false;
            };
            host.records
                .lock()
                .unwrap()
                .insert(id.to_string(), m.clone());
            // The plugin's afterInsert hook (retried here: without it a write of the old
            // record landing late on the new host copy would become the new record's base).
            for _ in 0..5 {
                if records.inserted("wallets", id, &m).await.is_ok() {
                    break;
                }
            }
            true
        }
        None => {
            let Ok(r) = p.db.resource("wallets").await else {
                return false;
            };
            match r.insert(&initial(id)).await {
                Ok(_) => true,
                Err(e) => e.code() == tally_core::ErrorCode::Conflict,
            }
        }
    }
}

/// The user deletes `id` and creates it again (a new incarnation, starting from
/// [`initial`]).
async fn recreate(p: &Process, world: &World, caller: &str, id: &str) {
    match &p.host {
        Some((host, _)) => {
            host.records.lock().unwrap().remove(id);
        }
        None => {
            if let Ok(r) = p.db.resource("wallets").await {
                let _ = r.delete(id).await;
            }
        }
    }
    let mut done = false;
    for _ in 0..5 {
        if ensure_record(p, id).await {
            done = true;
            break;
        }
    }
    world.note(|| format!("{caller}: deleted and created {id} again: {done}"));
}

/// The resource every run uses.
pub fn schema() -> Value {
    json!({ "id": "string|required", "balance": "number|default:0", "stats": "json|optional" })
}

/// What a caller's workload includes beyond mutations, consolidations and passes.
#[derive(Debug, Clone, Copy)]
pub struct Mix {
    /// Garbage collection.
    pub gc: bool,
    /// Deleting a record and creating it again.
    pub deletes: bool,
    /// Carrying over s3db.js 21.6.2 transactions.
    pub carry: bool,
}

/// A caller: `steps` random operations, one after another, on `p`.
pub fn caller(
    p: Arc<Process>,
    world: Arc<World>,
    ledger: Arc<Ledger>,
    caller: String,
    steps: u32,
    mix: Mix,
) -> BoxFuture<'static, ()> {
    let Mix { gc, deletes, carry } = mix;
    Box::pin(async move {
        for step in 0..steps {
            let roll = world.random(100);
            let record = RECORDS[world.random(RECORDS.len() as u64) as usize];
            let path = PATHS[world.random(PATHS.len() as u64) as usize];
            let field = path.split('.').next().unwrap_or(path);
            if roll < 5 && carry {
                carry_over(&p, &world, &ledger, &caller, step, record, path).await;
            } else if roll < 70 {
                mutate(&p, &world, &ledger, &caller, step, record, path).await;
            } else if roll < 80 {
                let _ = p.engine.consolidate("wallets", Some(field), record).await;
            } else if roll < 88 {
                let _ = p.engine.run_pass().await;
            } else if roll < 94 {
                if gc {
                    let _ = p.engine.run_gc().await;
                }
            } else if roll < 98 {
                let _ = p.engine.recalculate("wallets", Some(field), record).await;
            } else if roll == 99 && deletes {
                recreate(&p, &world, &caller, record).await;
            } else {
                let _ = p
                    .engine
                    .consolidated_value("wallets", Some(path), record)
                    .await;
            }
        }
    })
}

async fn mutate(
    p: &Process,
    world: &World,
    ledger: &Ledger,
    caller: &str,
    step: u32,
    record: &str,
    path: &str,
) {
    let kind = world.random(10);
    let (op, amount) = match kind {
        0 => (Op::Set, format!("{}", world.random(50))),
        1..=2 => (Op::Sub, format!("{}.5", world.random(9))),
        3 => (Op::Add, "1".to_string()),
        _ => (Op::Add, format!("{}.25", world.random(9))),
    };
    let source = format!("{caller}-{step}");
    let idempotent = world.random(10) < 3;
    ledger.entries.lock().unwrap().insert(
        source.clone(),
        Entry {
            caller: caller.to_string(),
            step,
            record: record.to_string(),
            path: path.to_string(),
            op,
            amount: amount.clone(),
            outcome: Outcome::Issued,
            resolved: None,
            carried: false,
        },
    );
    let options = MutationOptions {
        idempotency_key: idempotent.then(|| format!("k-{source}")),
        source: Some(source.clone()),
        metadata: None,
    };
    let value: f64 = amount.parse().unwrap_or(0.0);
    // A careful caller retries an idempotent mutation with the same key.
    let attempts = if idempotent { 3 } else { 1 };
    let mut result = None;
    for _ in 0..attempts {
        let r = p
            .engine
            .mutate(
                "wallets",
                Some(path),
                record,
                op,
                &Arg::Number(value),
                options.clone(),
            )
            .await;
        let ok = r.is_ok();
        result = Some(r);
        if ok {
            break;
        }
    }
    let mut entries = ledger.entries.lock().unwrap();
    let Some(e) = entries.get_mut(&source) else {
        return;
    };
    match result {
        Some(Ok(r)) => {
            e.outcome = Outcome::Acked;
            if let tally_core::MutationResult::Value(v) = r {
                e.resolved = v;
            }
        }
        _ => e.outcome = Outcome::Failed,
    }
    world.note(|| {
        format!(
            "{caller}: {source} {:?} {amount} on {record}.{path}: {:?}",
            op, e.outcome
        )
    });
}

/// Carries over a transaction s3db.js 21.6.2 left pending (as its resource API returns it),
/// then, one time in three, carries it over again as a second process would.
async fn carry_over(
    p: &Process,
    world: &World,
    ledger: &Ledger,
    caller: &str,
    step: u32,
    record: &str,
    path: &str,
) {
    let (op, amount) = match world.random(3) {
        0 => (Op::Sub, format!("{}.5", world.random(9))),
        _ => (Op::Add, format!("{}.25", world.random(9))),
    };
    let source = format!("{caller}-{step}");
    ledger.entries.lock().unwrap().insert(
        source.clone(),
        Entry {
            caller: caller.to_string(),
            step,
            record: record.to_string(),
            path: path.to_string(),
            op,
            amount: amount.clone(),
            outcome: Outcome::Issued,
            resolved: None,
            carried: true,
        },
    );
    let at = chrono::DateTime::from_timestamp_millis(p.clock.now_ms())
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let tx = json!({
        "id": format!("tx-{}-{}", p.clock.now_ms(), world.random(1 << 40)),
        "originalId": record,
        "field": path.split('.').next().unwrap_or(path),
        "fieldPath": path,
        "operation": if op == Op::Sub { "sub" } else { "add" },
        "value": amount.parse::<f64>().unwrap_or(0.0),
        "timestamp": at,
        "source": source,
        "applied": false,
    });
    let times = if world.random(3) == 0 { 2 } else { 1 };
    let mut ok = false;
    for _ in 0..times {
        ok |= p.engine.carry_over("wallets", &tx).await.is_ok();
    }
    if let Some(e) = ledger.entries.lock().unwrap().get_mut(&source) {
        e.outcome = if ok { Outcome::Acked } else { Outcome::Failed };
    }
    world.note(|| {
        format!("{caller}: {source} carried over {op:?} {amount} on {record}.{path}: {ok}")
    });
}
