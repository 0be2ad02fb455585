//! The checker: after a run (faults off, everything consolidated) it audits every record's
//! committed history against the ledger of what callers were told.

use super::workload::{Entry, Ledger, Outcome, PATHS, RECORDS, SimHost};
use super::world::World;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use tally_core::Op;
use tally_core::store::{Store, list_all};
use tally_core::txn::Transaction;

/// One committed batch of a record's field, from the archive of every journal written.
pub struct Batch {
    pub transactions: Vec<Transaction>,
    /// The incarnation of the id it was applied to (batches of earlier, deleted records
    /// come before `base`).
    pub base: u64,
}

fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    futures::executor::block_on(f)
}

fn number(v: Option<&Value>) -> Option<Decimal> {
    match v? {
        Value::Number(n) => Decimal::from_str(&n.to_string())
            .ok()
            .or_else(|| n.as_f64().and_then(|f| Decimal::try_from(f).ok())),
        Value::String(s) => Decimal::from_str(s).ok(),
        _ => None,
    }
}

fn at<'a>(data: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(data, |v, k| v.get(k))
}

/// The committed chain of `field` on record `id`, oldest first, walked from the record's
/// bookkeeping through every journal ever written (so GC does not hide history).
pub fn chain(
    world: &World,
    id: &str,
    field: &str,
    kept: bool,
    host: bool,
    problems: &mut Vec<String>,
) -> (Value, Vec<Batch>, u64) {
    let key = format!("db/r/wallets/{id}");
    let Some(obj) = block(world.direct().get(&key)).ok().flatten() else {
        // A host record's state object exists once a batch committed.
        if !host {
            problems.push(format!("record {id} is gone"));
        }
        return (Value::Null, Vec::new(), 0);
    };
    let doc: Value = serde_json::from_slice(&obj.bytes).unwrap_or(Value::Null);
    let archive = world.archive();
    let prefix = format!("db/j/wallets/{field}/{id}/");
    let mut out = Vec::new();
    let mut broken = false;
    let mut next = doc["m"][field]["batch"].as_str().map(str::to_string);
    let mut expect = doc["m"][field]["seq"].as_u64().unwrap_or(0);
    while let Some(batch) = next {
        let Some(bytes) = archive.get(&format!("{prefix}{batch}")) else {
            problems.push(format!(
                "{id}.{field}: committed batch {batch} has no journal"
            ));
            broken = true;
            break;
        };
        let live = format!("{prefix}{batch}");
        if kept && block(world.direct().get(&live)).ok().flatten().is_none() {
            problems.push(format!(
                "{id}.{field}: the audit trail lost committed batch {batch}"
            ));
        }
        let j: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
        let seq = j["seq"].as_u64().unwrap_or(0);
        if seq != expect {
            problems.push(format!(
                "{id}.{field}: batch {batch} has seq {seq}, expected {expect}"
            ));
        }
        expect = seq.saturating_sub(1);
        let transactions: Vec<Transaction> =
            serde_json::from_value(j["transactions"].clone()).unwrap_or_default();
        let base = j["base"].as_u64().unwrap_or(0);
        out.push(Batch { transactions, base });
        next = j["prev"].as_str().map(str::to_string);
    }
    if expect != 0 && !broken {
        problems.push(format!("{id}.{field}: chain ends at seq {}", expect + 1));
    }
    out.reverse();
    let base = doc["m"][field]["base"].as_u64().unwrap_or(0);
    (doc["d"].clone(), out, base)
}

fn reduce(v: Decimal, tx: &Transaction) -> Decimal {
    match tx.operation {
        Op::Set => tx.value,
        Op::Add => v + tx.value,
        Op::Sub => v - tx.value,
    }
}

/// Audits the store against the ledger; returns what is wrong.
pub fn audit(world: &World, ledger: &Ledger, kept: bool, host: Option<&SimHost>) -> Vec<String> {
    let mut problems = Vec::new();
    let pending = block(list_all(world.direct(), "db/t/")).unwrap_or_default();
    if !pending.is_empty() {
        problems.push(format!(
            "{} transactions still pending, e.g. {}",
            pending.len(),
            pending[0]
        ));
    }
    let entries = ledger.entries.lock().unwrap().clone();
    let mut applied: HashMap<String, usize> = HashMap::new();
    // Per caller, the positions of its applied mutations in (record, path) history order.
    let mut order: HashMap<(String, String, String), Vec<(u32, String)>> = HashMap::new();
    for id in RECORDS {
        for field in ["balance", "stats"] {
            let (data, batches, base) =
                chain(world, id, field, kept, host.is_some(), &mut problems);
            let mut values: BTreeMap<String, Decimal> = BTreeMap::new();
            // Per path, the value after each batch, to check sync answers.
            let mut after: HashMap<String, Vec<Decimal>> = HashMap::new();
            let mut batch_of: HashMap<String, usize> = HashMap::new();
            let mut incarnation = 0;
            // Where records of the id created again start, by batch index.
            let mut created_again: Vec<usize> = Vec::new();
            for (k, b) in batches.iter().enumerate() {
                if b.base != incarnation {
                    // A new record of the id starts from its inserted values (all 0).
                    values.clear();
                    incarnation = b.base;
                    created_again.push(k);
                }
                for tx in &b.transactions {
                    let source = tx.source.clone().unwrap_or_default();
                    *applied.entry(source.clone()).or_default() += 1;
                    batch_of.insert(source.clone(), k);
                    let v = values.get(&tx.field_path).copied().unwrap_or_default();
                    values.insert(tx.field_path.clone(), reduce(v, tx));
                    match entries.get(&source) {
                        None => problems.push(format!(
                            "{id}: applied a transaction nobody issued: {}",
                            tx.id
                        )),
                        Some(e) => {
                            check_entry(e, id, tx, &mut problems);
                            if e.outcome == Outcome::Acked && !e.carried {
                                order
                                    .entry((
                                        e.caller.clone(),
                                        id.to_string(),
                                        tx.field_path.clone(),
                                    ))
                                    .or_default()
                                    .push((e.step, source.clone()));
                            }
                        }
                    }
                }
                for p in PATHS.iter().filter(|p| p.split('.').next() == Some(field)) {
                    let v = values.get(*p).copied().unwrap_or_default();
                    after.entry(p.to_string()).or_default().push(v);
                }
            }
            if base != incarnation {
                values.clear(); // created again, with nothing applied since
                created_again.push(batches.len());
            }
            for p in PATHS.iter().filter(|p| p.split('.').next() == Some(field)) {
                let expected = values.get(*p).copied().unwrap_or_default();
                // A host record's state keeps each path Tally wrote under its dotted name.
                let stored = number(data.get(*p).or_else(|| at(&data, p))).unwrap_or_default();
                if let Some(h) = host {
                    // After the final consolidation the host copy shows the state's values.
                    let copy = h
                        .records
                        .lock()
                        .unwrap()
                        .get(id)
                        .cloned()
                        .map(Value::Object);
                    let shown = copy
                        .as_ref()
                        .and_then(|c| number(at(c, p)))
                        .unwrap_or_default();
                    if shown != expected {
                        problems.push(format!(
                            "host copy of {id}.{p} shows {shown}, the state holds {expected}"
                        ));
                    }
                }
                if stored != expected {
                    problems.push(format!(
                        "{id}.{p} holds {stored}, but its applied transactions reduce to {expected}"
                    ));
                }
            }
            for (source, e) in entries.iter().filter(|(_, e)| e.record == id) {
                let (Some(resolved), Some(&k)) = (e.resolved, batch_of.get(source)) else {
                    continue;
                };
                let Some(series) = after.get(&e.path) else {
                    continue;
                };
                // A caller that heard back after the record was deleted and created again may
                // be told the new record's value.
                let recreated = created_again.iter().any(|&c| c > k) && resolved == 0.0;
                let includes = recreated
                    || series[k..]
                        .iter()
                        .any(|v| v.to_string().parse::<f64>().ok() == Some(resolved));
                if !includes {
                    problems.push(format!(
                        "sync {source} on {id}.{} resolved to {resolved}, a value from before it was applied",
                        e.path
                    ));
                }
            }
        }
    }
    for (source, e) in &entries {
        let n = applied.get(source).copied().unwrap_or(0);
        match (e.outcome, n) {
            (Outcome::Acked, 1) | (Outcome::Failed | Outcome::Issued, 0 | 1) => {}
            (Outcome::Acked, 0) => {
                problems.push(format!("{source} was acknowledged but never applied"))
            }
            (_, n) => problems.push(format!("{source} ({:?}) was applied {n} times", e.outcome)),
        }
    }
    for ((caller, id, path), mut steps) in order {
        // A transaction applied twice is reported above; order is about the others.
        steps.retain(|(_, source)| applied.get(source) == Some(&1));
        let in_history: Vec<u32> = steps.iter().map(|s| s.0).collect();
        steps.sort();
        let sorted: Vec<u32> = steps.iter().map(|s| s.0).collect();
        if in_history != sorted {
            problems.push(format!(
                "{caller}'s mutations of {id}.{path} applied out of call order: {in_history:?}"
            ));
        }
    }
    problems
}

fn check_entry(e: &Entry, id: &str, tx: &Transaction, problems: &mut Vec<String>) {
    let amount = Decimal::from_str(&e.amount).unwrap_or_default();
    if e.record != id || e.path != tx.field_path || e.op != tx.operation || amount != tx.value {
        problems.push(format!(
            "{} applied as {:?} {} on {id}.{}, issued as {:?} {} on {}.{}",
            tx.source.as_deref().unwrap_or("?"),
            tx.operation,
            tx.value,
            tx.field_path,
            e.op,
            e.amount,
            e.record,
            e.path
        ));
    }
}

/// The analytics queries compared with the transaction-based (pure) computation.
pub fn analytics_queries() -> Vec<(&'static str, Vec<tally_core::Arg>)> {
    use tally_core::Arg;
    vec![
        ("getDayByHour", vec![Arg::String("2025-11-24".into())]),
        ("getMonthByDay", vec![Arg::String("2025-11".into())]),
        ("getYearByWeek", vec![Arg::String("2025".into())]),
        ("getYearByMonth", vec![Arg::String("2025".into())]),
        (
            "getAnalytics",
            vec![Arg::Json(serde_json::json!({ "period": "hour" }))],
        ),
        // Top records from the cohorts' top objects, against the same transactions.
        (
            "getTopRecords",
            vec![Arg::Json(
                serde_json::json!({ "period": "day", "date": "2025-11", "limit": 20 }),
            )],
        ),
        (
            "getTopRecords",
            vec![Arg::Json(
                serde_json::json!({ "period": "hour", "sortBy": "totalValue", "limit": 20 }),
            )],
        ),
        (
            "getTopRecords",
            vec![Arg::Json(
                serde_json::json!({ "period": "week", "date": "2025", "limit": 3 }),
            )],
        ),
    ]
}

/// Every transaction applied to `field` on any record, as analytics facts.
pub fn applied_facts(world: &World, field: &str) -> Vec<tally_core::analytics::points::Fact> {
    let mut ignored = Vec::new();
    RECORDS
        .iter()
        .flat_map(|id| chain(world, id, field, false, true, &mut ignored).1)
        .flat_map(|b| b.transactions)
        .map(|t| tally_core::analytics::points::Fact::from(&t))
        .collect()
}
