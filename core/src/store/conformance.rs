//! The storage conformance suite: plain async functions, one per case of the [`Store`]
//! contract, run against every backend by [`crate::conformance_tests!`]. Each case works under
//! its own key prefix so cases may share a store. A failing case panics with what was wrong.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::arithmetic_side_effects
)]

use super::{PutMode, Store, StoreError, list_all};
use std::sync::Arc;

/// Writes `b"v"` at every key, `parallel` at a time.
async fn put_all(store: &Arc<dyn Store>, keys: &[String], parallel: usize) {
    use futures::StreamExt;
    let results: Vec<_> = futures::stream::iter(keys.iter().cloned())
        .map(|k| {
            let store = store.clone();
            async move { store.put(&k, b"v".to_vec(), PutMode::Overwrite).await }
        })
        .buffer_unordered(parallel)
        .collect()
        .await;
    for r in results {
        r.unwrap();
    }
}

/// A put, then a get, returns the bytes and the version; overwrite replaces; unknown keys read
/// as `None`.
pub async fn round_trip(store: Arc<dyn Store>, prefix: &str) {
    let key = format!("{prefix}/a/b.json");
    assert_eq!(
        store.get(&key).await.unwrap(),
        None,
        "missing key must read as None"
    );
    let v1 = store
        .put(&key, b"hello".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    let got = store.get(&key).await.unwrap().expect("object after put");
    assert_eq!(got.bytes, b"hello");
    assert_eq!(got.version, v1, "get must return the version put returned");
    let v2 = store
        .put(&key, b"world!".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    assert_ne!(v1, v2, "different content must get a different version");
    let got = store.get(&key).await.unwrap().unwrap();
    assert_eq!(got.bytes, b"world!");
    let empty = format!("{prefix}/empty");
    store
        .put(&empty, Vec::new(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get(&empty).await.unwrap().unwrap().bytes, b"");
}

/// A create-only put on an existing key fails with a conflict and leaves the object alone.
pub async fn create_only_on_existing_key_conflicts(store: Arc<dyn Store>, prefix: &str) {
    let key = format!("{prefix}/k");
    store
        .put(&key, b"first".to_vec(), PutMode::Create)
        .await
        .unwrap();
    let err = store
        .put(&key, b"second".to_vec(), PutMode::Create)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "got {err:?}");
    assert_eq!(store.get(&key).await.unwrap().unwrap().bytes, b"first");
}

/// An update against a stale version fails; against the current version it succeeds.
pub async fn update_against_stale_version_conflicts(store: Arc<dyn Store>, prefix: &str) {
    let key = format!("{prefix}/k");
    let v1 = store
        .put(&key, b"1".to_vec(), PutMode::Create)
        .await
        .unwrap();
    let v2 = store
        .put(&key, b"2".to_vec(), PutMode::Update(v1.clone()))
        .await
        .unwrap();
    let err = store
        .put(&key, b"3".to_vec(), PutMode::Update(v1))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "got {err:?}");
    assert_eq!(store.get(&key).await.unwrap().unwrap().bytes, b"2");
    store
        .put(&key, b"3".to_vec(), PutMode::Update(v2))
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().bytes, b"3");
}

/// An update of a key that does not exist fails and creates nothing.
pub async fn update_of_missing_key_is_not_found(store: Arc<dyn Store>, prefix: &str) {
    let key = format!("{prefix}/missing");
    let other = store
        .put(&format!("{prefix}/other"), b"x".to_vec(), PutMode::Create)
        .await
        .unwrap();
    let err = store
        .put(&key, b"x".to_vec(), PutMode::Update(other))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::NotFound { .. } | StoreError::Conflict { .. }
        ),
        "got {err:?}"
    );
    assert_eq!(
        store.get(&key).await.unwrap(),
        None,
        "nothing may be created"
    );
}

/// Listing returns only keys under the prefix, in byte order, in pages of at most 1,000, and
/// honours start-after.
pub async fn list_by_prefix_in_key_order_with_start_after_beyond_1000_keys(
    store: Arc<dyn Store>,
    prefix: &str,
) {
    let n = 1234usize;
    let mut expected: Vec<String> = (0..n).map(|i| format!("{prefix}/in/{i:05}")).collect();
    expected.push(format!("{prefix}/in/sub/deeper"));
    put_all(&store, &expected, 64).await;
    store
        .put(&format!("{prefix}/inx"), b"v".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    store
        .put(&format!("{prefix}/i"), b"v".to_vec(), PutMode::Overwrite)
        .await
        .unwrap();
    expected.sort();
    let first = store.list(&format!("{prefix}/in/"), None).await.unwrap();
    assert_eq!(first.keys.len(), 1000, "a page holds at most 1,000 keys");
    assert!(first.truncated, "a full first page must say more follow");
    assert_eq!(first.keys[..], expected[..1000]);
    let all = list_all(store.as_ref(), &format!("{prefix}/in/"))
        .await
        .unwrap();
    assert_eq!(all, expected, "all keys, in order, only under the prefix");
    let after = store
        .list(&format!("{prefix}/in/"), Some(&expected[1200]))
        .await
        .unwrap();
    assert_eq!(after.keys[..], expected[1201..]);
    assert!(!after.truncated);
    let partial = list_all(store.as_ref(), &format!("{prefix}/in/0001"))
        .await
        .unwrap();
    assert_eq!(
        partial.len(),
        10,
        "a prefix may end inside a segment (00010..00019)"
    );
    let none = store
        .list(&format!("{prefix}/nothing/"), None)
        .await
        .unwrap();
    assert!(none.keys.is_empty() && !none.truncated);
}

/// Deleting a key, twice, succeeds; delete-many removes what exists and ignores the rest.
pub async fn delete_and_delete_many_are_idempotent(store: Arc<dyn Store>, prefix: &str) {
    let key = format!("{prefix}/d");
    store
        .put(&key, b"x".to_vec(), PutMode::Create)
        .await
        .unwrap();
    store.delete(&key).await.unwrap();
    store.delete(&key).await.unwrap();
    assert_eq!(store.get(&key).await.unwrap(), None);
    let keys: Vec<String> = (0..5).map(|i| format!("{prefix}/m/{i}")).collect();
    for k in &keys[..3] {
        store.put(k, b"x".to_vec(), PutMode::Create).await.unwrap();
    }
    store.delete_many(&keys).await.unwrap();
    store.delete_many(&keys).await.unwrap();
    assert!(
        list_all(store.as_ref(), &format!("{prefix}/m/"))
            .await
            .unwrap()
            .is_empty()
    );
    // A deleted key can be created again.
    store
        .put(&key, b"y".to_vec(), PutMode::Create)
        .await
        .unwrap();
    assert_eq!(store.get(&key).await.unwrap().unwrap().bytes, b"y");
}

/// Of 32 concurrent create-only puts on one key exactly one wins, and its body is stored.
pub async fn concurrent_create_only_puts_have_exactly_one_winner(
    store: Arc<dyn Store>,
    prefix: &str,
) {
    for round in 0..3 {
        let key = format!("{prefix}/race-{round}");
        let puts = (0..32).map(|i| {
            let store = store.clone();
            let key = key.clone();
            async move {
                (
                    i,
                    store
                        .put(&key, format!("writer-{i}").into_bytes(), PutMode::Create)
                        .await,
                )
            }
        });
        let results = futures::future::join_all(puts).await;
        let winners: Vec<usize> = results
            .iter()
            .filter(|(_, r)| r.is_ok())
            .map(|(i, _)| *i)
            .collect();
        assert_eq!(winners.len(), 1, "round {round}: winners {winners:?}");
        for (_, r) in &results {
            if let Err(e) = r {
                assert!(matches!(e, StoreError::Conflict { .. }), "loser got {e:?}");
            }
        }
        let body = store.get(&key).await.unwrap().unwrap().bytes;
        assert_eq!(body, format!("writer-{}", winners[0]).into_bytes());
    }
}

/// 32 concurrent read/compare-and-swap increments of one counter object end at exactly 32.
pub async fn concurrent_compare_and_swap_increments_lose_nothing(
    store: Arc<dyn Store>,
    prefix: &str,
) {
    let key = format!("{prefix}/counter");
    store
        .put(&key, b"0".to_vec(), PutMode::Create)
        .await
        .unwrap();
    let incs = (0..32).map(|_| {
        let store = store.clone();
        let key = key.clone();
        async move {
            loop {
                let cur = store.get(&key).await.unwrap().unwrap();
                let n: u64 = String::from_utf8(cur.bytes).unwrap().parse().unwrap();
                let next = (n + 1).to_string().into_bytes();
                match store.put(&key, next, PutMode::Update(cur.version)).await {
                    Ok(_) => return,
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => panic!("increment failed: {e}"),
                }
            }
        }
    });
    futures::future::join_all(incs).await;
    let body = store.get(&key).await.unwrap().unwrap().bytes;
    assert_eq!(body, b"32");
}

/// Generates one `#[tokio::test]` per conformance case for a backend:
/// `conformance_tests!(memory, async { Arc::new(MemoryStore::new()) as Arc<dyn Store> });`
/// An optional third argument is a guard expression returning `bool`; when false each test
/// prints "skipped" and returns. The guard itself decides whether a missing backend is an
/// error: the S3 guard panics when `TALLY_S3_REQUIRED` is set, so CI cannot skip it silently.
#[macro_export]
macro_rules! conformance_tests {
    ($backend:ident, $make:expr) => {
        $crate::conformance_tests!($backend, $make, true);
    };
    ($backend:ident, $make:expr, $guard:expr) => {
        mod $backend {
            #[allow(unused_imports)]
            use super::*;
            $crate::conformance_tests!(@case $make, $guard, round_trip);
            $crate::conformance_tests!(@case $make, $guard, create_only_on_existing_key_conflicts);
            $crate::conformance_tests!(@case $make, $guard, update_against_stale_version_conflicts);
            $crate::conformance_tests!(@case $make, $guard, update_of_missing_key_is_not_found);
            $crate::conformance_tests!(@case $make, $guard, list_by_prefix_in_key_order_with_start_after_beyond_1000_keys);
            $crate::conformance_tests!(@case $make, $guard, delete_and_delete_many_are_idempotent);
            $crate::conformance_tests!(@case $make, $guard, concurrent_create_only_puts_have_exactly_one_winner);
            $crate::conformance_tests!(@case $make, $guard, concurrent_compare_and_swap_increments_lose_nothing);
        }
    };
    (@case $make:expr, $guard:expr, $case:ident) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn $case() {
            if !$guard {
                eprintln!("skipped: this backend is not available here (see above)");
                return;
            }
            let store = $make.await;
            let prefix = format!("conf-{}-{}", stringify!($case), std::process::id());
            $crate::store::conformance::$case(store, &prefix).await;
        }
    };
}
