//! Round trips of every golden object through its type, and the shapes earlier versions
//! stored.

use super::*;

use std::path::{Path, PathBuf};

fn golden_files(kind: &str) -> Vec<(String, Vec<u8>)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden/storage");
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = ["sync", "async"]
        .iter()
        .map(|p| root.join(p).join(kind))
        .collect();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn round_trip<T: Serialize + DeserializeOwned>(kind: &str, at_least: usize) {
    let files = golden_files(kind);
    assert!(
        files.len() >= at_least,
        "{kind}: {} golden objects",
        files.len()
    );
    for (path, bytes) in files {
        let doc: T = decode(kind, &path, &bytes).unwrap();
        assert_eq!(
            String::from_utf8(encode(&doc).unwrap()).unwrap(),
            String::from_utf8(bytes).unwrap(),
            "{path}"
        );
    }
}

#[test]
fn every_golden_object_decodes_and_encodes_to_the_same_bytes() {
    round_trip::<JournalDoc>("j", 6);
    round_trip::<CheckpointDoc>("c", 11);
    round_trip::<MarkerDoc>("i", 3);
    round_trip::<DeadLetterDoc>("d", 1);
    round_trip::<LeaseDoc>("l", 1);
    round_trip::<ResourceDoc>("s", 2);
    round_trip::<RecordDoc>("r", 4);
    // Analytics: the fold states, inbox entries and packed objects under `a/`.
    let analytics = golden_files("a");
    let (mut folds, mut inbox, mut packed) = (0, 0, 0);
    for (path, bytes) in &analytics {
        let again = if path.ends_with("/fold") {
            folds += 1;
            encode(&decode::<FoldDoc>("fold", path, bytes).unwrap()).unwrap()
        } else if path.contains("/in/") {
            inbox += 1;
            encode(&decode::<InboxDoc>("inbox entry", path, bytes).unwrap()).unwrap()
        } else {
            packed += 1;
            encode(&decode::<PackedDoc>("packed", path, bytes).unwrap()).unwrap()
        };
        assert_eq!(
            String::from_utf8_lossy(&again),
            String::from_utf8_lossy(bytes),
            "{path}"
        );
    }
    assert!(
        folds >= 2 && inbox >= 2 && packed >= 10,
        "{folds} {inbox} {packed}"
    );
}

#[test]
fn every_golden_field_state_decodes_and_encodes_to_the_same_bytes() {
    let mut n = 0;
    for (path, bytes) in golden_files("r") {
        let doc: RecordDoc = decode("record", &path, &bytes).unwrap();
        if doc.t.is_some() {
            // A tombstone's bookkeeping is a live one with `base` appended (see
            // `retired_meta`), in that order.
            continue;
        }
        for (field, state) in &doc.m {
            let typed: FieldStateDoc = serde_json::from_value(state.clone()).unwrap();
            let again = serde_json::to_string(&typed).unwrap();
            assert_eq!(
                again,
                serde_json::to_string(state).unwrap(),
                "{path} {field}"
            );
            n += 1;
        }
    }
    assert!(n >= 3, "{n} field states");
}

#[test]
fn shapes_earlier_versions_wrote_stay_readable() {
    // Markers without the transaction id, and one of no known shape.
    let cp: CheckpointDoc = decode(
        "checkpoint",
        "k",
        br#"{"seq":1,"markers":[["m1",5],["m2",6,"tx-1"],"junk"]}"#,
    )
    .unwrap();
    assert_eq!(
        cp.markers,
        vec![
            ("m1".into(), 5, None),
            ("m2".into(), 6, Some("tx-1".into()))
        ]
    );
    // A tombstone is one whatever its time says.
    assert!(
        decode_document(br#"{"t":null,"d":{},"m":{}}"#, "r", "i")
            .unwrap()
            .deleted
    );
    assert!(
        !decode_document(br#"{"d":{},"m":{}}"#, "r", "i")
            .unwrap()
            .deleted
    );
    // Bookkeeping: a field of another shape is that field's default, the rest stands.
    let state: FieldStateDoc =
        serde_json::from_str(r#"{"seq":4,"batch":"b","recent":[],"dead":[["n","c"]],"done":"x"}"#)
            .unwrap();
    assert_eq!(
        (
            state.seq,
            state.batch.as_deref(),
            state.dead.len(),
            state.done
        ),
        (4, Some("b"), 0, None)
    );
}

#[test]
fn a_bad_decimal_is_a_storage_error_naming_the_object() {
    let err = decode::<CheckpointDoc>("checkpoint", "k", br#"{"values":{"a":"x"}}"#).unwrap_err();
    assert!(
        err.message().contains("unreadable checkpoint k"),
        "{}",
        err.message()
    );
    let ok = decode::<CheckpointDoc>("checkpoint", "k", br#"{"seq":2}"#).unwrap();
    assert_eq!((ok.seq, ok.at, ok.values.len()), (2, 0, 0));
}
