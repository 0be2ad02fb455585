//! The folder store beyond the conformance suite: durability (directory syncs), ids that
//! differ only in case on case-insensitive file systems, and listings whose cost follows the
//! keys listed, not the folder's size (review findings 11, 12 and 18).

mod common;
use common::*;
use serde_json::json;
use std::sync::Arc;
use tally_core::store::fs::{FsStore, directory_syncs};
use tally_core::store::{PutMode, Store, list_all};

fn balance_of(v: &serde_json::Value) -> f64 {
    v["balance"].as_f64().unwrap()
}

#[tokio::test]
async fn the_folder_store_syncs_every_folder_it_changes() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let before = directory_syncs();
    store
        .put("a/b/c", b"x".to_vec(), PutMode::Create)
        .await
        .unwrap();
    // Two folders created (their parents synced), then the link (its folder synced).
    assert!(
        directory_syncs() - before >= 3,
        "a resolved create survives a power loss"
    );
    let before = directory_syncs();
    store
        .put("a/b/c", b"y".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    store.delete("a/b/c").await.unwrap();
    assert!(directory_syncs() - before >= 2, "renames and removals too");
}

/// Every file under `dir`, relative to it.
fn files_under(dir: &std::path::Path, rel: &str, out: &mut Vec<String>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let e = e.unwrap();
        let name = format!("{rel}{}", e.file_name().to_string_lossy());
        if e.file_type().unwrap().is_dir() {
            files_under(&e.path(), &format!("{name}/"), out);
        } else {
            out.push(name);
        }
    }
}

#[tokio::test]
async fn ids_that_differ_only_in_case_never_share_a_file_on_the_folder_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(FsStore::open(dir.path()).unwrap());
    let i = instance(
        store.clone(),
        json!({ "resources": { "wallets": ["balance"] } }),
        None,
        1,
    );
    let w = wallets(&i).await;
    for (id, v) in [("Alice", 1.0), ("alice", 2.0), ("ALICE^", 4.0)] {
        w.insert(&json!({ "id": id })).await.unwrap();
        add(&i, "balance", id, v).await;
    }
    let mut files = Vec::new();
    files_under(dir.path(), "", &mut files);
    // On APFS or NTFS two names equal but for case are one file.
    let mut folded: Vec<String> = files.iter().map(|f| f.to_lowercase()).collect();
    folded.sort();
    let before = folded.len();
    folded.dedup();
    assert_eq!(folded.len(), before, "names equal but for case: {files:?}");
    assert_eq!(
        list_all(store.as_ref(), "db/t/wallets/balance/Alice/")
            .await
            .unwrap()
            .len(),
        1
    );
    i.engine.consolidate_all().await.unwrap();
    for (id, v) in [("Alice", 1.0), ("alice", 2.0), ("ALICE^", 4.0)] {
        assert_eq!(balance_of(&w.get(id).await.unwrap()), v);
    }
    let mut ids = w.list_ids().await.unwrap();
    ids.sort();
    assert_eq!(ids, vec!["ALICE^", "Alice", "alice"]);
    // A folder an earlier version wrote (data, no `.tally-store`) keeps its plain names.
    let old = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(old.path().join("db/r/wallets")).unwrap();
    std::fs::write(
        old.path().join("db/r/wallets/Bob"),
        br#"{"d":{"balance":3},"m":{}}"#,
    )
    .unwrap();
    let legacy = FsStore::open(old.path()).unwrap();
    assert!(!legacy.encodes_case());
    assert!(legacy.get("db/r/wallets/Bob").await.unwrap().is_some());
    assert!(FsStore::open(dir.path()).unwrap().encodes_case());
}

#[tokio::test]
async fn the_pages_of_a_big_folder_read_it_once_and_a_deep_listing_skips_what_it_passed() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    for k in 0..2500 {
        let key = format!("t/w/f/one/{k:05}");
        store
            .put(&key, b"x".to_vec(), PutMode::Create)
            .await
            .unwrap();
    }
    let before = store.folder_reads();
    let keys = list_all(&store, "t/w/f/one/").await.unwrap();
    assert_eq!(keys.len(), 2500);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    assert_eq!(
        store.folder_reads() - before,
        1,
        "three pages, one read of the folder"
    );
    // 30 records of 100 keys: each page enters the folders from its cursor on, once.
    for r in 0..30 {
        for k in 0..100 {
            let key = format!("t/w/g/r{r:02}/{k:03}");
            store
                .put(&key, b"x".to_vec(), PutMode::Create)
                .await
                .unwrap();
        }
    }
    let before = store.folder_reads();
    let keys = list_all(&store, "t/w/g/").await.unwrap();
    assert_eq!(keys.len(), 3000);
    assert!(keys.windows(2).all(|w| w[0] < w[1]));
    let reads = store.folder_reads() - before;
    assert!(
        reads <= 34,
        "{reads} folder reads for 3 pages over 31 folders"
    );
}

#[tokio::test]
async fn deleting_the_last_key_of_a_folder_removes_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    for k in ["t/w/f/r1/a", "t/w/f/r1/b", "t/w/f/r2/a"] {
        store.put(k, b"x".to_vec(), PutMode::Create).await.unwrap();
    }
    store
        .delete_many(&["t/w/f/r1/a".into(), "t/w/f/r1/b".into()])
        .await
        .unwrap();
    assert!(
        !dir.path().join("t/w/f/r1").exists(),
        "an empty folder stays forever"
    );
    assert!(dir.path().join("t/w/f/r2").exists());
    store.delete("t/w/f/r2/a").await.unwrap();
    assert!(!dir.path().join("t").exists());
    // And a key written there again recreates its folders.
    store
        .put("t/w/f/r1/c", b"y".to_vec(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(list_all(&store, "t/").await.unwrap(), vec!["t/w/f/r1/c"]);
}

#[tokio::test]
async fn listings_keep_byte_order_with_capitals_encoded() {
    let dir = tempfile::tempdir().unwrap();
    let store = FsStore::open(dir.path()).unwrap();
    let mut keys = vec![
        "a/B", "a/^", "a/a", "a/Z/x", "a/^^", "a/b-c", "a/b/c", "a/b.c",
    ];
    for k in &keys {
        store.put(k, b"x".to_vec(), PutMode::Create).await.unwrap();
    }
    keys.sort();
    assert_eq!(list_all(&store, "a/").await.unwrap(), keys);
    let page = store.list("a/", Some("a/^")).await.unwrap();
    assert_eq!(
        page.keys,
        keys[keys.iter().position(|k| *k == "a/^").unwrap() + 1..]
    );
}
