//! Storage golden: every object a fixed workload leaves in a folder store, byte for byte.
//!
//! A fixed clock, fixed id seeds and one task make the workload deterministic: sync wallets
//! with analytics (hour, day, week, month), checkpoints, idempotency keys, a nested path,
//! `recalculate` and a GC pass after the retention; an async counter consolidated in the
//! background pass; then journals, markers, packed analytics and pending transactions that
//! stay; a record with a generated id, deleted (tombstone and mark); one deleted and created
//! again (a journal with `base`); a dead letter. The folder it leaves (hidden `.tally-*` working folders aside) must equal
//! `tests/golden/storage/` file for file, byte for byte. This pins the stored formats for
//! the redesign (issue 17): a refactor that changes one byte of one object fails here.
//! `TALLY_UPDATE_GOLDEN=1` rewrites the folder after an intended format change.

mod common;

use common::{add, instance_at, n};
use serde_json::json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tally_core::calendar::parse_timestamp;
use tally_core::clock::ManualClock;
use tally_core::store::Store;
use tally_core::store::fs::FsStore;
use tally_core::{Arg, MutationOptions, Op};

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/storage")
}

/// Every file under `dir` except hidden folders, by relative path.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if path.is_dir() {
                if !name.starts_with(".tally-") {
                    stack.push(path);
                }
            } else {
                let rel = path
                    .strip_prefix(dir)
                    .unwrap()
                    .to_string_lossy()
                    .replace('\\', "/");
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

async fn workload(folder: &Path) {
    let store: Arc<dyn Store> = Arc::new(FsStore::open(folder).unwrap());
    let clock = ManualClock::new(parse_timestamp("2025-06-01T10:00:00Z").unwrap());
    let sync = instance_at(
        store.clone(),
        "sync",
        json!({
            "resources": { "wallets": ["balance", "stats.points"] },
            "consolidation": { "mode": "sync" },
            "analytics": { "enabled": true, "periods": ["hour", "day", "week", "month"] },
            "checkpoints": { "enabled": true, "strategy": "daily" },
            "garbageCollection": { "retention": 7 },
        }),
        Some(clock.clone()),
        7,
    );
    let wallets = sync
        .db
        .create_resource(
            "wallets",
            &json!({ "id": "string|required", "balance": "number|default:0",
                     "stats": { "$$type": "object", "points": "number|default:0" } }),
        )
        .await
        .unwrap();
    wallets
        .insert(&json!({ "id": "alice", "balance": 0 }))
        .await
        .unwrap();
    wallets
        .insert(&json!({ "id": "Bob", "balance": 5, "stats": { "points": 1 } }))
        .await
        .unwrap();
    let mutate = |field: &'static str, id: &'static str, op: Op, v: f64, key: Option<&str>| {
        let engine = sync.engine.clone();
        let options = MutationOptions {
            idempotency_key: key.map(str::to_string),
            source: Some("golden".into()),
            metadata: key.map(|k| json!({ "key": k })),
        };
        async move {
            engine
                .mutate("wallets", Some(field), id, op, &n(v), options)
                .await
                .unwrap()
        }
    };
    for day in 0..3 {
        mutate("balance", "alice", Op::Add, 10.25, None).await;
        mutate("balance", "Bob", Op::Sub, 1.5, None).await;
        clock.advance(5 * HOUR);
        let key = format!("pay-{day}");
        for _ in 0..2 {
            // The second is a retry with the same idempotency key.
            mutate("balance", "alice", Op::Add, 2.0, Some(&key)).await;
        }
        mutate("stats.points", "Bob", Op::Add, 3.0, None).await;
        clock.advance(DAY - 5 * HOUR);
    }
    mutate("balance", "Bob", Op::Set, 100.0, None).await;
    sync.engine
        .recalculate("wallets", Some("balance"), "alice")
        .await
        .unwrap();
    sync.engine
        .query(
            "getDayByHour",
            "wallets",
            "balance",
            &[Arg::String("2025-06-02".into())],
        )
        .await
        .unwrap();

    let asynchronous = instance_at(
        store.clone(),
        "async",
        json!({ "resources": { "counters": ["clicks"] }, "analytics": { "enabled": true } }),
        Some(clock.clone()),
        11,
    );
    let counters = asynchronous
        .db
        .create_resource(
            "counters",
            &json!({ "id": "string|required", "clicks": "number|default:0" }),
        )
        .await
        .unwrap();
    counters.insert(&json!({ "id": "home" })).await.unwrap();
    for i in 0..5 {
        click(&asynchronous).await;
        clock.advance(10 * 60_000 * (i + 1));
    }
    asynchronous.engine.run_pass().await.unwrap();

    // Past the 7-day retention: GC removes applied journals and markers.
    clock.advance(10 * DAY);
    mutate("balance", "alice", Op::Add, 1.0, None).await;
    sync.engine.run_gc().await.unwrap();
    asynchronous.engine.run_gc().await.unwrap();

    // After GC, objects of every kind that stay: journals and idempotency markers, enough
    // folds that one writes packed analytics objects, and transactions still pending.
    for i in 0..3 {
        mutate("balance", "alice", Op::Add, 0.5, Some(&format!("late-{i}"))).await;
        clock.advance(HOUR);
    }
    // A plan of more than 256 cohort points makes the fold write the packed objects.
    for _ in 0..260 {
        click(&asynchronous).await;
        clock.advance(HOUR);
    }
    asynchronous.engine.run_pass().await.unwrap();
    // A record inserted without an id (a generated one) and deleted: its tombstone and mark.
    let carol = wallets.insert(&json!({ "balance": 3 })).await.unwrap();
    let carol = carol["id"].as_str().unwrap().to_string();
    add(&sync, "balance", &carol, 1.0).await;
    clock.advance(HOUR);
    wallets.delete(&carol).await.unwrap();
    // Deleted and created again: the new incarnation's journal carries `base`.
    wallets.insert(&json!({ "id": "dave" })).await.unwrap();
    add(&sync, "balance", "dave", 4.0).await;
    wallets.delete("dave").await.unwrap();
    wallets.insert(&json!({ "id": "dave" })).await.unwrap();
    add(&sync, "balance", "dave", 2.0).await;
    // Two sums past the exact decimal range: the second is set aside as a dead letter.
    counters.insert(&json!({ "id": "big" })).await.unwrap();
    for _ in 0..2 {
        asynchronous
            .engine
            .mutate(
                "counters",
                Some("clicks"),
                "big",
                Op::Add,
                &n(5e28),
                MutationOptions::default(),
            )
            .await
            .unwrap();
    }
    asynchronous.engine.run_pass().await.unwrap();
    // Left pending.
    for _ in 0..2 {
        click(&asynchronous).await;
    }
}

async fn click(i: &common::Instance) {
    i.engine
        .mutate(
            "counters",
            Some("clicks"),
            "home",
            Op::Add,
            &n(1.0),
            MutationOptions::default(),
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn a_fixed_workload_leaves_the_same_objects_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    workload(dir.path()).await;
    let got = files(dir.path());
    let golden = golden_dir();
    if std::env::var_os("TALLY_UPDATE_GOLDEN").is_some() {
        let _ = std::fs::remove_dir_all(&golden);
        for (rel, bytes) in &got {
            let path = golden.join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, bytes).unwrap();
        }
    }
    let want = files(&golden);
    let missing: Vec<_> = want.keys().filter(|k| !got.contains_key(*k)).collect();
    let extra: Vec<_> = got.keys().filter(|k| !want.contains_key(*k)).collect();
    let changed: Vec<_> = want
        .keys()
        .filter(|k| got.get(*k).is_some_and(|g| g != &want[*k]))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty() && changed.is_empty(),
        "stored objects differ from tests/golden/storage (TALLY_UPDATE_GOLDEN=1 rewrites it after \
         an intended format change)\nmissing: {missing:?}\nextra: {extra:?}\nchanged: {changed:?}\n\
         first change, got:\n{}",
        changed
            .first()
            .map(|k| String::from_utf8_lossy(&got[*k]).to_string())
            .unwrap_or_default()
    );
    assert!(
        want.len() >= 40,
        "the workload stores {} objects",
        want.len()
    );
}

#[tokio::test]
async fn the_workload_is_deterministic() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    workload(a.path()).await;
    workload(b.path()).await;
    assert_eq!(files(a.path()), files(b.path()));
}
