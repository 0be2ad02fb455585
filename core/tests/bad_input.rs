//! Bad input gets an error with a stable code and writes nothing; the folder store never
//! reaches outside its base folder.

mod common;
use common::*;
use serde_json::{Value, json};
use std::sync::Arc;
use tally_core::store::Store;
use tally_core::store::counting::CountingStore;
use tally_core::store::memory::MemoryStore;
use tally_core::{Arg, ErrorCode, MutationOptions, Op, PluginConfig};

/// (resource, field, record id, amount, options, expected code)
type Case<'a> = (&'a str, Option<&'a str>, &'a str, Arg, Value, ErrorCode);

#[tokio::test]
async fn bad_mutations_fail_with_a_code_and_write_nothing() {
    let counting = Arc::new(CountingStore::new(Arc::new(MemoryStore::new())));
    let i = instance(
        counting.clone(),
        json!({ "resources": { "wallets": ["balance", "credits", "stats"], "urls": ["utmResults"] } }),
        None,
        1,
    );
    let w = wallets(&i).await;
    w.insert(&json!({ "id": "w1" })).await.unwrap();
    i.db.create_resource(
        "urls",
        &json!({ "link": "string|required", "utmResults": "json" }),
    )
    .await
    .unwrap();
    let long = "x".repeat(129);
    let s = |v: &str| Arg::String(v.into());
    let cases: Vec<Case> = vec![
        (
            "wallets",
            Some("balance"),
            "w1",
            n(f64::NAN),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(f64::INFINITY),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(f64::NEG_INFINITY),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            s("5"),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            Arg::Null,
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            Arg::Undefined,
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            Arg::Json(json!({ "v": 1 })),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            Arg::Json(json!([1])),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            Arg::Bool(true),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            Arg::Function,
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1e300),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(-1e300),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1e-40),
            Value::Null,
            ErrorCode::InvalidAmount,
        ),
        (
            "wallets",
            Some("balance"),
            "",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("balance"),
            &long,
            n(1.0),
            Value::Null,
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("nope"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownField,
        ),
        (
            "wallets",
            Some(""),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownField,
        ),
        (
            "wallets",
            None,
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownField,
        ),
        (
            "wallets",
            Some("owner"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownField,
        ),
        (
            "wallets",
            Some("bal ance"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownField,
        ),
        (
            "wallets",
            Some("balance."),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "wallets",
            Some("balance..x"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "wallets",
            Some("../balance"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "wallets",
            Some("balance.x"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "wallets",
            Some("stats.a.b"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "wallets",
            Some("owner.x"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "urls",
            Some("link.nested"),
            "u1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "urls",
            Some("utmResults.medium.google"),
            "u1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "urls",
            Some("missing.x"),
            "u1",
            n(1.0),
            Value::Null,
            ErrorCode::InvalidPath,
        ),
        (
            "nope",
            Some("balance"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownResource,
        ),
        (
            "../etc",
            Some("balance"),
            "w1",
            n(1.0),
            Value::Null,
            ErrorCode::UnknownResource,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!("not options"),
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!({ "idempotencyKey": 5 }),
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!({ "idempotencyKey": "" }),
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!({ "source": "s".repeat(65) }),
            ErrorCode::InvalidArgument,
        ),
        // Within 64 characters, but too long for a file name once percent-encoded.
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!({ "source": "Ж".repeat(40) }),
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!({ "source": "😀".repeat(20) }),
            ErrorCode::InvalidArgument,
        ),
        (
            "wallets",
            Some("balance"),
            "w1",
            n(1.0),
            json!({ "metadata": { "big": "m".repeat(5000) } }),
            ErrorCode::InvalidArgument,
        ),
    ];
    assert!(cases.len() >= 30);
    for (res, field, id, amount, opts, code) in cases {
        let before = counting.counts();
        let result = match MutationOptions::from_arg(&Arg::from_json(&opts)) {
            Ok(o) => i.engine.mutate(res, field, id, Op::Add, &amount, o).await,
            Err(e) => Err(e),
        };
        let err = result.expect_err(&format!("{res} {field:?} {id:?} {amount:?} must fail"));
        assert_eq!(
            err.code(),
            code,
            "{res} {field:?} {id:?} {amount:?}: {}",
            err.message()
        );
        assert!(!err.message().is_empty());
        let c = counting.counts().since(&before);
        assert_eq!(c.writes(), 0, "{res} {field:?} {id:?} wrote {c:?}");
    }
}

#[test]
fn invalid_configurations_name_the_option() {
    let cases = [
        (
            json!({ "resources": { "wallets": [] } }),
            "resource \"wallets\" must have at least one field",
        ),
        (
            json!({ "resources": { "wallets": "balance" } }),
            "resource \"wallets\" must have at least one field",
        ),
        (
            json!({ "resources": [{ "fields": ["a"] }] }),
            "each resource must have a \"resource\" name",
        ),
        (
            json!({ "resources": [{ "resource": "w", "fields": [""] }] }),
            "field name cannot be empty for resource \"w\"",
        ),
        (
            json!({ "resources": [{ "resource": "w", "fields": [{}] }] }),
            "field config must have a \"field\" name for resource \"w\"",
        ),
        (
            json!({ "resources": [{ "resource": "w", "fields": [{ "field": "a", "reducer": 1 }] }] }),
            "reducer must be a function for field \"a\"",
        ),
        (
            json!({ "resources": [{ "resource": "w", "fields": [42] }] }),
            "invalid field config type for resource \"w\"",
        ),
        (
            json!({ "resources": [{ "resource": "w", "fields": [null] }] }),
            "invalid field config type for resource \"w\"",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "consolidation": { "mode": "fast" } }),
            "consolidation.mode",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "consolidation": { "interval": -1 } }),
            "consolidation.interval",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "consolidation": { "concurrency": 0 } }),
            "consolidation.concurrency",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "analytics": { "periods": ["year"] } }),
            "analytics.periods",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "analytics": { "metrics": ["median"] } }),
            "analytics.metrics",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "cohort": { "timezone": "Mars/Base" } }),
            "cohort.timezone",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "locks": { "timeout": 0 } }),
            "locks.timeout",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "garbageCollection": { "retention": -1 } }),
            "garbageCollection.retention",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "checkpoints": { "strategy": "weekly" } }),
            "checkpoints.strategy",
        ),
        (
            json!({ "resources": { "w": ["a", "a"] } }),
            "configured twice",
        ),
        (json!({ "resources": { "../w": ["a"] } }), "resource name"),
        (json!({ "resources": { "w": ["a/b"] } }), "field"),
        (
            json!({ "mode": "x", "resources": { "w": ["a"] } }),
            "consolidation.mode",
        ),
        (
            json!({ "resources": { "w": ["a"] }, "logLevel": "loud" }),
            "logLevel",
        ),
    ];
    for (opts, needle) in cases {
        let err = PluginConfig::parse(&opts).expect_err(&format!("{opts} must be rejected"));
        assert_eq!(err.code(), ErrorCode::InvalidConfig);
        assert!(err.message().contains(needle), "{opts}: {}", err.message());
    }
    let ok =
        PluginConfig::parse(&json!({ "resource": "wallets", "field": "balance", "mode": "sync" }))
            .unwrap();
    assert_eq!(ok.resources[0].fields[0].field, "balance");
    assert_eq!(ok.mode, tally_core::config::Mode::Sync);
    let d = PluginConfig::parse(&json!({})).unwrap();
    assert_eq!(
        (
            d.interval_s,
            d.window_h,
            d.concurrency,
            d.lock_timeout_s,
            d.gc_retention_days
        ),
        (300.0, 24.0, 5, 300.0, 30.0)
    );
}

#[tokio::test]
async fn the_folder_store_never_reads_or_writes_outside_its_base() {
    let outer = tempfile::tempdir().unwrap();
    let base = outer.path().join("base");
    let fs_store = Arc::new(tally_core::store::fs::FsStore::open(&base).unwrap());
    for key in [
        "../escape",
        "a/../../escape",
        "/abs",
        "a//b",
        ".hidden/x",
        "a/./b",
        "a\\..\\b",
        "",
        "a b",
    ] {
        assert!(
            fs_store
                .put(key, b"x".to_vec(), tally_core::store::PutMode::Overwrite)
                .await
                .is_err(),
            "{key:?}"
        );
        assert!(fs_store.get(key).await.is_err(), "{key:?}");
    }
    let i = instance(
        fs_store.clone() as Arc<dyn Store>,
        json!({ "resources": { "wallets": ["balance"] } }),
        None,
        3,
    );
    let w = wallets(&i).await;
    // Any id s3db.js allows is a record of its own, and stays inside the base folder.
    let ids = [
        "../../escape",
        "..",
        ".",
        "a/b",
        "a%2Fb",
        "%",
        ".hidden",
        "user 1",
        "José",
        "日本",
        "Alice",
        "alice",
        "tab\there",
        "a\\b",
        "a\0b",
        "%2e%2e",
        "a b",
    ];
    for (k, id) in ids.iter().enumerate() {
        w.insert(&json!({ "id": id })).await.unwrap();
        let r = i
            .engine
            .mutate(
                "wallets",
                None,
                id,
                Op::Add,
                &n(k as f64 + 1.0),
                MutationOptions::default(),
            )
            .await
            .unwrap();
        assert!(matches!(r, tally_core::MutationResult::Transaction(_)));
    }
    i.engine.consolidate_all().await.unwrap();
    for (k, id) in ids.iter().enumerate() {
        let rec = w.get(id).await.unwrap();
        assert_eq!(rec["id"], json!(id));
        assert_eq!(rec["balance"].as_f64(), Some(k as f64 + 1.0), "{id:?}");
    }
    let mut listed = w.list_ids().await.unwrap();
    listed.sort();
    let mut expected: Vec<String> = ids.iter().map(|s| s.to_string()).collect();
    expected.sort();
    assert_eq!(listed, expected);
    for (id, code) in [
        ("", ErrorCode::InvalidArgument),
        (&"x".repeat(129)[..], ErrorCode::InvalidArgument),
    ] {
        let e = i
            .engine
            .mutate(
                "wallets",
                None,
                id,
                Op::Add,
                &n(1.0),
                MutationOptions::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(e.code(), code);
    }
    assert!(i.db.create_resource("../x", &json!({})).await.is_err());
    let escaped: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        escaped,
        vec![std::ffi::OsString::from("base")],
        "nothing written beside the base folder"
    );
}
