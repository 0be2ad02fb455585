//! S3 against a real server on loopback (`scripts/s3-server.sh start`, then source its env file):
//! the storage conformance suite, storage errors that name bucket and endpoint but never the
//! secret, request budgets measured by the counting store and by the server's own request log,
//! and exactly-once across OS processes with one of them killed by SIGKILL.
//!
//! Without `TALLY_S3_ENDPOINT` every test prints "skipped" and passes, unless
//! `TALLY_S3_REQUIRED` is set (the README's test command sets it), which makes them fail.
#![cfg(feature = "s3")]

mod common;
use common::*;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::Arc;
use tally_core::store::StoreError;
use tally_core::store::counting::{CountingStore, Counts};
use tally_core::{ErrorCode, MutationOptions, Op};

tally_core::conformance_tests!(
    s3,
    async {
        s3_connection("tally-conformance", "")
            .await
            .expect("guarded")
            .store
    },
    s3_endpoint().is_some()
);

/// A unique prefix per test run, so runs against one server never see each other's keys.
fn run_prefix(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{name}-{}-{nanos}", std::process::id())
}

fn storage_message(e: StoreError) -> String {
    let err = tally_core::Error::from(e);
    assert_eq!(err.code(), ErrorCode::Storage, "{err}");
    err.to_string()
}

#[tokio::test]
async fn storage_errors_name_bucket_and_endpoint_but_never_the_secret() {
    let Some(endpoint) = s3_endpoint() else {
        return;
    };
    let host = endpoint.split_once("://").unwrap().1;
    let secret = "Sup3r%2FSecret"; // URL-encoded "Sup3r/Secret"
    let open = |cs: String| tally_core::connection::open(&cs).unwrap().store;
    let mut messages = Vec::new();

    let missing = open(format!(
        "http://tally-test:{secret}@{host}/no-such-bucket-here/p"
    ));
    let m = storage_message(missing.get("p/k").await.unwrap_err());
    assert!(
        m.contains("no-such-bucket-here") && m.contains(&endpoint) && m.contains("does not exist"),
        "{m}"
    );
    messages.push(m);

    let wrong = open(format!(
        "http://tally-test:{secret}@127.0.0.1:9/tally-conformance/p"
    ));
    let m = storage_message(
        wrong
            .put("p/k", b"1".to_vec(), tally_core::store::PutMode::Overwrite)
            .await
            .unwrap_err(),
    );
    assert!(
        m.contains("tally-conformance")
            && m.contains("http://127.0.0.1:9")
            && m.contains("cannot reach"),
        "{m}"
    );
    messages.push(m);

    s3_connection("tally-conformance", "").await.unwrap();
    let denied = open(format!(
        "http://intruder:{secret}@{host}/tally-conformance/p"
    ));
    let m = storage_message(denied.list("p/", None).await.unwrap_err());
    assert!(
        m.contains("tally-conformance") && m.contains(&endpoint) && m.contains("access denied"),
        "{m}"
    );
    messages.push(m);
    for m in messages {
        assert!(!m.contains("Sup3r") && !m.contains("Secret"), "{m}");
    }
}

/// One request log line of the server (scripts: tests/s3/moto_serial.py).
fn server_counts(bucket: &str, from_line: usize) -> (Counts, usize) {
    let path = std::env::var("TALLY_S3_LOG").expect("TALLY_S3_LOG names the server's request log");
    let text = std::fs::read_to_string(path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut c = Counts::default();
    for line in &lines[from_line.min(lines.len())..] {
        let v: Value = serde_json::from_str(line).unwrap();
        if v["bucket"] != bucket {
            continue;
        }
        let query = v["query"].as_str().unwrap_or("");
        match v["method"].as_str().unwrap() {
            "PUT" => c.put += 1,
            "GET" if query.contains("list-type=2") => c.list += 1,
            "GET" => c.get += 1,
            "DELETE" => c.delete += 1,
            "POST" if query.contains("delete") => c.delete_many += 1,
            other => panic!("unexpected request {other} {line}"),
        }
    }
    (c, lines.len())
}

#[tokio::test]
async fn request_budgets_hold_on_s3_by_the_counting_store_and_by_the_server_log() {
    let bucket = "tally-budgets";
    let Some(conn) = s3_connection(bucket, &run_prefix("b")).await else {
        return;
    };
    let counting = Arc::new(CountingStore::new(conn.store.clone()));
    let total = counting.clone();
    let mut phases = 0;
    let start = server_counts(bucket, usize::MAX).1;
    // After every phase, all requests so far as the counting store saw them equal those in the
    // server's own log for this bucket.
    assert_request_budgets(counting, &conn.prefix, &[1, 10, 200], |phase, _| {
        let (seen, _) = server_counts(bucket, start);
        let counted = total.counts();
        phases += 1;
        assert_eq!(
            (seen.put, seen.get, seen.list, seen.delete, seen.delete_many),
            (
                counted.put,
                counted.get,
                counted.list,
                counted.delete,
                counted.delete_many
            ),
            "after {phase}: the server's log and the counting store disagree"
        );
    })
    .await;
    assert!(phases >= 8, "every phase was compared ({phases})");
}

// ---------------------------------------------------------------------------------------------
// Multi-process exactly-once.

const RECORDS: usize = 20;
const PER_WORKER: usize = 500;
const PATHS: [(&str, &str); 3] = [
    ("balance", "balance"),
    ("stats", "stats.a"),
    ("stats", "stats.b"),
];

/// The worker side: runs only when the parent test starts this binary with `TALLY_MP_ROLE`.
#[test]
fn multi_process_worker() {
    if std::env::var("TALLY_MP_ROLE").as_deref() != Ok("worker") {
        return;
    }
    let k: u64 = std::env::var("TALLY_MP_WORKER").unwrap().parse().unwrap();
    let prefix = std::env::var("TALLY_MP_PREFIX").unwrap();
    let ack_path = std::env::var("TALLY_MP_ACK").unwrap();
    let start: usize = std::env::var("TALLY_MP_START").unwrap().parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let conn = s3_connection("tally-multiprocess", &prefix).await.unwrap();
        let sync = k.is_multiple_of(2);
        let cfg = json!({
            "resources": { "wallets": ["balance", "stats"] },
            "consolidation": { "mode": if sync { "sync" } else { "async" }, "concurrency": 4 },
            "locks": { "timeout": 2 },
        });
        let inst = Arc::new(instance_at(
            conn.store,
            &conn.prefix,
            cfg,
            None,
            k * 1000 + start as u64,
        ));
        wallets(&inst).await;
        if !sync {
            spawn_background(inst.clone(), 400, None);
        }
        let mut ack = append_to(&ack_path);
        for step in start..PER_WORKER {
            use tally_core::clock::IdSource;
            // Each step is a function of (worker, step), so a restarted worker redoes the step
            // it was killed in with the same idempotency key: written once, whatever happened.
            let r = tally_core::clock::SplitMix::seeded((k << 32) | step as u64).next_u64();
            let key = format!("w{k}-s{step}");
            let rec = format!("r{}", r % RECORDS as u64);
            let (_, path) = PATHS[(r >> 8) as usize % PATHS.len()];
            let amount = ((r >> 16) % 50 + 1) as i64;
            // `set` only on stats.b, so balance and stats.a are checked as plain sums.
            let op = match (path, (r >> 24) % 10) {
                ("stats.b", 0) => Op::Set,
                (_, 0..=2) => Op::Sub,
                _ => Op::Add,
            };
            let res = inst
                .engine
                .mutate(
                    "wallets",
                    Some(path),
                    &rec,
                    op,
                    &n(amount as f64),
                    MutationOptions {
                        idempotency_key: Some(key.clone()),
                        ..MutationOptions::default()
                    },
                )
                .await;
            if let Err(e) = res {
                panic!("worker {k} step {step}: {e}");
            }
            let line = json!({ "worker": k, "step": step, "rec": rec, "path": path,
                               "op": format!("{op:?}"), "amount": amount, "id": key });
            writeln!(ack, "{line}").unwrap();
        }
    });
}

/// How many transactions the journals of every record hold.
async fn total_applied(i: &Instance) -> usize {
    let mut total = 0;
    for r in 0..RECORDS {
        for field in ["balance", "stats"] {
            let (chain, _) = i
                .engine
                .journal_chain("wallets", field, &format!("r{r}"))
                .await
                .unwrap();
            total += chain.iter().map(|j| j.transactions.len()).sum::<usize>();
        }
    }
    total
}

fn spawn_worker(k: u64, prefix: &str, ack: &std::path::Path, start: usize) -> std::process::Child {
    std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "multi_process_worker",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TALLY_MP_ROLE", "worker")
        .env("TALLY_MP_WORKER", k.to_string())
        .env("TALLY_MP_PREFIX", prefix)
        .env("TALLY_MP_ACK", ack)
        .env("TALLY_MP_START", start.to_string())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

fn acked_lines(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_on_s3_with_one_killed_apply_every_transaction_exactly_once() {
    if s3_endpoint().is_none() {
        return;
    }
    let prefix = run_prefix("mp");
    let conn = s3_connection("tally-multiprocess", &prefix).await.unwrap();
    let cfg =
        json!({ "resources": { "wallets": ["balance", "stats"] }, "locks": { "timeout": 2 } });
    let parent = instance_at(conn.store.clone(), &conn.prefix, cfg, None, 7);
    let w = wallets(&parent).await;
    for r in 0..RECORDS {
        w.insert(&json!({ "id": format!("r{r}"), "balance": 0, "stats": { "a": 0, "b": 0 } }))
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let acks: Vec<std::path::PathBuf> =
        (0..4).map(|k| dir.path().join(format!("ack{k}"))).collect();
    let mut children: Vec<_> = (0..4u64)
        .map(|k| spawn_worker(k, &prefix, &acks[k as usize], 0))
        .collect();
    // Kill worker 3 (async mode) mid-run with SIGKILL, then start it again where it stopped.
    let victim = 3usize;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(300);
    while acked_lines(&acks[victim]).len() < PER_WORKER / 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "worker {victim} made no progress"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    children[victim].kill().unwrap(); // SIGKILL
    children[victim].wait().unwrap();
    let done = acked_lines(&acks[victim]).len();
    assert!(
        done < PER_WORKER,
        "the victim was killed before it finished"
    );
    children[victim] = spawn_worker(victim as u64, &prefix, &acks[victim], done);
    for (k, c) in children.iter_mut().enumerate() {
        let status = c.wait().unwrap();
        assert!(status.success(), "worker {k} failed: {status}");
    }
    let acked: Vec<Value> = acks.iter().flat_map(|p| acked_lines(p)).collect();
    assert_eq!(
        acked.len(),
        4 * PER_WORKER,
        "every mutation was acknowledged once"
    );

    parent.engine.consolidate_all().await.unwrap();
    let mut acked_ids: HashMap<String, &Value> = HashMap::new();
    for a in &acked {
        assert!(
            acked_ids
                .insert(a["id"].as_str().unwrap().to_string(), a)
                .is_none()
        );
    }
    for r in 0..RECORDS {
        let rec = format!("r{r}");
        let got = w.get(&rec).await.unwrap();
        for field in ["balance", "stats"] {
            let (chain, _) = parent
                .engine
                .journal_chain("wallets", field, &rec)
                .await
                .unwrap();
            let mut seen: HashMap<&str, usize> = HashMap::new();
            // Replay the batches: each starts where the previous one ended and applies its
            // transactions in (timestamp, id) order.
            let mut running: BTreeMap<String, Decimal> = BTreeMap::new();
            let mut sums: BTreeMap<String, Decimal> = BTreeMap::new();
            for j in &chain {
                for (path, (before, after)) in &j.values {
                    let cur = running.get(path).copied().unwrap_or_default();
                    assert_eq!(
                        cur, *before,
                        "{rec}.{path}: journal {} starts elsewhere",
                        j.seq
                    );
                    let mut txs: Vec<_> = j
                        .transactions
                        .iter()
                        .filter(|t| &t.field_path == path)
                        .collect();
                    txs.sort_by(|a, b| (a.timestamp_ms, &a.id).cmp(&(b.timestamp_ms, &b.id)));
                    let mut v = cur;
                    for t in txs {
                        let signed = match t.operation {
                            Op::Add => t.value,
                            Op::Sub => -t.value,
                            _ => {
                                v = t.value;
                                continue;
                            }
                        };
                        v += signed;
                        *sums.entry(path.clone()).or_default() += signed;
                    }
                    assert_eq!(v, *after, "{rec}.{path}: journal {} does not add up", j.seq);
                    running.insert(path.clone(), v);
                }
                for t in &j.transactions {
                    let key = t.idempotency_key.as_deref().unwrap_or("");
                    *seen.entry(key).or_default() += 1;
                    assert!(
                        acked_ids.contains_key(key),
                        "{rec}: unacknowledged transaction {key:?} applied"
                    );
                }
            }
            assert!(
                seen.values().all(|&c| c == 1),
                "{rec}.{field}: a transaction applied twice"
            );
            for a in acked.iter().filter(|a| {
                a["rec"] == rec.as_str() && a["path"].as_str().unwrap().starts_with(field)
            }) {
                let id = a["id"].as_str().unwrap();
                assert_eq!(
                    seen.get(id),
                    Some(&1),
                    "{rec}: acknowledged {a} not applied exactly once"
                );
            }
            for (_, path) in PATHS.iter().filter(|(f, _)| *f == field) {
                let stored = tally_core::schema::get_path(got.as_object().unwrap(), path)
                    .cloned()
                    .unwrap_or(json!(0));
                let want = running.get(*path).copied().unwrap_or_default();
                assert_eq!(
                    Decimal::from_str_exact(&stored.to_string()).unwrap(),
                    want,
                    "{rec}.{path}: the record differs from its applied history"
                );
                if *path != "stats.b" {
                    let acked_sum: i64 = acked
                        .iter()
                        .filter(|a| a["rec"] == rec.as_str() && a["path"] == *path)
                        .map(|a| {
                            let v = a["amount"].as_i64().unwrap();
                            if a["op"] == "Sub" { -v } else { v }
                        })
                        .sum();
                    let applied = sums.get(*path).copied().unwrap_or_default();
                    assert_eq!(
                        applied,
                        Decimal::from(acked_sum),
                        "{rec}.{path}: applied vs acknowledged"
                    );
                }
            }
        }
    }
    let applied_total: usize = total_applied(&parent).await;
    assert_eq!(
        applied_total,
        acked.len(),
        "every acknowledged mutation applied, nothing else"
    );
}
