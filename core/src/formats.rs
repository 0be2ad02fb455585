//! Stored formats: one serde type per kind of object Tally writes, each with one writer
//! ([`encode`]) and one reader ([`decode`]).
//!
//! Field order is the stored order (serde writes a struct's fields as declared), `Option`s
//! that are always written are stored as `null`, and every field a reader can do without has
//! a default, so objects written by earlier versions stay readable. Amounts are decimal text
//! (`"10.25"`), never JSON numbers, so no float ever touches a balance. The storage golden
//! (`tests/golden/storage/`) pins the bytes; the test at the bottom decodes every golden
//! object of these kinds and encodes it back to the same bytes.
//!
//! Kinds defined elsewhere, next to the code that owns their invariants: a pending
//! transaction is a [`crate::txn::Transaction`] (its key name carries it too, see
//! [`crate::txn`]); fold state, inbox entries and packed analytics are still built in
//! [`crate::rollups`] (issue 17 moves them here next).

use crate::error::{Error, Result};
use crate::txn::Transaction;
use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The bytes of a stored object.
pub(crate) fn encode<T: Serialize>(doc: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(doc).map_err(|e| Error::storage(e.to_string()))
}

/// A stored object of kind `what` at `key`, decoded; an unreadable one is a storage error
/// naming both.
pub(crate) fn decode<T: DeserializeOwned>(what: &str, key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| Error::storage(format!("unreadable {what} {key}: {e}")))
}

/// Reads a field that earlier versions may have stored in another shape as its default
/// instead (field by field, as the readers before these types did).
fn lenient<'de, D: Deserializer<'de>, T: DeserializeOwned + Default>(
    d: D,
) -> std::result::Result<T, D::Error> {
    let v = Value::deserialize(d)?;
    Ok(T::deserialize(v).unwrap_or_default())
}

/// An idempotency marker as a checkpoint names it: `[key, at, transaction id]`.
pub(crate) type StoredMarker = (String, i64, Option<String>);

/// Reads checkpoint markers: `[key, at, tx]`, or `[key, at]` as versions before the
/// transaction id wrote them; an entry of another shape is skipped.
fn markers<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Vec<StoredMarker>, D::Error> {
    let entries: Vec<Value> = lenient(d)?;
    Ok(entries
        .iter()
        .filter_map(|m| {
            let key = m.get(0)?.as_str()?.to_string();
            let at = m.get(1)?.as_i64()?;
            Some((
                key,
                at,
                m.get(2).and_then(Value::as_str).map(str::to_string),
            ))
        })
        .collect())
}

/// Reads a present field as `Some`, even when it is `null`.
fn present<'de, D: Deserializer<'de>>(d: D) -> std::result::Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// A decimal stored as its text (`"-1.5"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct DecimalText(pub(crate) Decimal);

impl Serialize for DecimalText {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for DecimalText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Decimal::from_str(&text)
            .map(DecimalText)
            .map_err(|e| serde::de::Error::custom(format!("\"{text}\" is not a decimal: {e}")))
    }
}

/// A record, `P/r/<resource>/<id>` (or a host record's state object): the user's data and
/// Tally's bookkeeping per configured field; the tombstone of a deleted record also has `t`,
/// when it was deleted (see [`crate::records`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordDoc {
    /// When it was deleted (epoch ms, the deleting machine's clock); tombstones only.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    t: Option<Value>,
    /// The data (`id` included).
    #[serde(default)]
    d: Map<String, Value>,
    /// The bookkeeping: a [`crate::consolidate::FieldState`] per field.
    #[serde(default)]
    m: Map<String, Value>,
}

/// A field's bookkeeping, in a record's `m` under the field's name (see
/// [`crate::consolidate::FieldState`], which reads and writes it).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct FieldStateDoc {
    /// Number of committed batches.
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) seq: u64,
    /// The last batch's name (`null` before the first).
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) batch: Option<String>,
    /// The batches before the last one, newest last.
    #[serde(default, deserialize_with = "lenient")]
    pub(crate) recent: Vec<String>,
    /// Batches of earlier incarnations of the id; stored only when not zero.
    #[serde(default, deserialize_with = "lenient", skip_serializing_if = "is_zero")]
    pub(crate) base: u64,
    /// The last journal's hash.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) hash: Option<String>,
    /// Key names of the last batch (bookkeeping of versions before `done`).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) keys: Option<Vec<String>>,
    /// Dead letters of the last batch: `[name, code, message]`.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) dead: Vec<(String, String, String)>,
    /// Recent batches: `[commit time, "token token …"]`.
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) done: Option<Vec<(i64, String)>>,
    /// The cohorts the record counts in (materialized analytics).
    #[serde(
        default,
        deserialize_with = "lenient",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) seen: Option<Value>,
}

/// A stored record document, decoded.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Document {
    /// The data (for a tombstone, the paths the last incarnation owned).
    pub(crate) data: Map<String, Value>,
    /// The bookkeeping.
    pub(crate) meta: Map<String, Value>,
    /// Whether it is the tombstone of a deleted record.
    pub(crate) deleted: bool,
    /// When a tombstone's record was deleted.
    pub(crate) deleted_at: Option<i64>,
}

/// Encodes a live record document.
pub(crate) fn encode_document(
    data: &Map<String, Value>,
    meta: &Map<String, Value>,
) -> Result<Vec<u8>> {
    encode(&RecordDoc {
        t: None,
        d: data.clone(),
        m: meta.clone(),
    })
}

/// Encodes the tombstone of a record deleted at `at` whose bookkeeping was `meta`; `data` is
/// kept for the record's next incarnation to know which paths were owned (never read back
/// as values).
pub(crate) fn encode_tombstone(
    data: &Map<String, Value>,
    meta: &Map<String, Value>,
    at: i64,
) -> Result<Vec<u8>> {
    encode(&RecordDoc {
        t: Some(Value::from(at)),
        d: data.clone(),
        m: retired_meta(meta),
    })
}

/// Decodes a document written by [`encode_document`] or [`encode_tombstone`].
pub(crate) fn decode_document(bytes: &[u8], resource: &str, id: &str) -> Result<Document> {
    let doc: RecordDoc = decode("record", &format!("\"{resource}/{id}\""), bytes)?;
    Ok(Document {
        data: doc.d,
        meta: doc.m,
        deleted: doc.t.is_some(),
        deleted_at: doc.t.as_ref().and_then(Value::as_i64),
    })
}

/// The bookkeeping of a deleted incarnation: each field's `base` becomes its batch count, so
/// a later incarnation starts after them.
pub(crate) fn retired_meta(meta: &Map<String, Value>) -> Map<String, Value> {
    meta.iter()
        .map(|(field, state)| {
            let mut state = state.clone();
            if let Value::Object(s) = &mut state {
                let seq = s.get("seq").cloned().unwrap_or(Value::from(0));
                s.insert("base".into(), seq);
            }
            (field.clone(), state)
        })
        .collect()
}

/// The journal of one committed batch, `P/j/<resource>/<field>/<id>/<batch>`: what the
/// batch applied and each path's value before and after. Journals form a hash chain (see
/// [`crate::verify`]): `prevHash` is the SHA-256 of the predecessor's bytes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct JournalDoc {
    /// The batch's sequence number.
    #[serde(default)]
    pub(crate) seq: u64,
    /// The name of the batch before it (`null` for the first).
    #[serde(default)]
    pub(crate) prev: Option<String>,
    /// The predecessor's hash (`null` for the first batch, or when the predecessor was
    /// written before journals were chained).
    #[serde(default)]
    pub(crate) prev_hash: Option<String>,
    /// The resource.
    #[serde(default)]
    pub(crate) resource: String,
    /// The configured field.
    #[serde(default)]
    pub(crate) field: String,
    /// The record id.
    #[serde(default)]
    pub(crate) record_id: String,
    /// When it was committed (epoch ms).
    #[serde(default)]
    pub(crate) committed_at: i64,
    /// The pending key names the batch consumed (dead letters included).
    #[serde(default)]
    pub(crate) keys: Vec<String>,
    /// The transactions it applied.
    pub(crate) transactions: Vec<Transaction>,
    /// Per path: the value before and after the batch.
    #[serde(default)]
    pub(crate) values: BTreeMap<String, BeforeAfter>,
    /// The batches of earlier incarnations of the id (see [`crate::records`]); stored only
    /// when not zero.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub(crate) base: u64,
    /// The transactions it set aside as dead letters; stored only when there are any.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) dead_letters: Vec<JournalDeadLetter>,
}

/// A path's value before and after a batch.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub(crate) struct BeforeAfter {
    /// Before.
    pub(crate) before: DecimalText,
    /// After.
    pub(crate) after: DecimalText,
}

/// A dead letter as its batch's journal names it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct JournalDeadLetter {
    /// The dead letter's name.
    pub(crate) name: String,
    /// The transaction's id.
    pub(crate) id: String,
    /// Why it could not be applied.
    pub(crate) error: String,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A checkpoint, `P/c/<resource>/<field>/<id>/<seq>-<time>`: every path's value after batch
/// `seq`, so the journals it covers can go (see [`crate::gc`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct CheckpointDoc {
    /// The batch it follows.
    #[serde(default)]
    pub(crate) seq: u64,
    /// That batch's commit time (epoch ms).
    #[serde(default)]
    pub(crate) at: i64,
    /// Every path's value after it.
    #[serde(default)]
    pub(crate) values: BTreeMap<String, DecimalText>,
    /// The hash of batch `seq`'s journal: the checkpoint's place in the hash chain (absent
    /// in checkpoints written before journals were chained).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) hash: Option<String>,
    /// Idempotency markers of collected transactions still too young to go, as
    /// `[key, at, transaction id]`; stored only when there are any.
    #[serde(
        default,
        deserialize_with = "markers",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub(crate) markers: Vec<StoredMarker>,
}

/// An idempotency marker, `P/i/<resource>/<field>/<id>/<hash>`: the applied transaction that
/// first used an idempotency key, so a retry is answered instead of applied again.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MarkerDoc {
    /// The transaction.
    pub(crate) transaction: Transaction,
    /// The batch that applied it (`null` when unknown).
    #[serde(default)]
    pub(crate) batch: Option<String>,
    /// When the marker was written (epoch ms).
    #[serde(default)]
    pub(crate) at: i64,
}

/// What GC reads of an idempotency marker: the id of the transaction it names and when it
/// was written, each when present (a marker it cannot fully decode still names its owner).
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MarkerHead {
    /// The transaction (read as far as its id).
    #[serde(default)]
    transaction: Value,
    /// When the marker was written (epoch ms).
    #[serde(default)]
    at: Value,
}

impl MarkerHead {
    /// The id of the transaction it names.
    pub(crate) fn transaction_id(&self) -> Option<&str> {
        self.transaction.get("id").and_then(Value::as_str)
    }
    /// When it was written.
    pub(crate) fn at(&self) -> Option<i64> {
        self.at.as_i64()
    }
}

/// A dead letter, `P/d/<resource>/<field>/<id>/<name>`: a transaction that can never be
/// applied as it is, with why (see [`crate::dead_letters`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DeadLetterDoc {
    /// Its name (the pending key name it had).
    pub(crate) name: String,
    /// The record id.
    pub(crate) record_id: String,
    /// The transaction.
    pub(crate) transaction: Transaction,
    /// Why it could not be applied.
    pub(crate) error: ErrorDoc,
    /// The batch that set it aside (`null` when unknown).
    #[serde(default)]
    pub(crate) batch: Option<String>,
    /// When it was set aside (epoch ms).
    #[serde(default)]
    pub(crate) at: i64,
}

/// An error as stored: its stable code and message.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ErrorDoc {
    /// The `ERR_*` code.
    pub(crate) code: String,
    /// The message.
    pub(crate) message: String,
}

/// The lease of a field's background passes, `P/l/<resource>/<field>`: who holds it and
/// until when; released as `{"owner": "", "expiresAt": 0}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct LeaseDoc {
    /// A random name of the holder (empty when released).
    #[serde(default)]
    pub(crate) owner: String,
    /// When it expires (epoch ms; 0 when released).
    #[serde(default)]
    pub(crate) expires_at: i64,
}

/// A resource definition, `P/s/<resource>`: its name and attributes as given.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ResourceDoc {
    /// The resource name.
    pub(crate) name: String,
    /// The attributes, in s3db.js's notation.
    #[serde(default)]
    pub(crate) attributes: Value,
}

#[cfg(test)]
mod tests {
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
        let state: FieldStateDoc = serde_json::from_str(
            r#"{"seq":4,"batch":"b","recent":[],"dead":[["n","c"]],"done":"x"}"#,
        )
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
        let err =
            decode::<CheckpointDoc>("checkpoint", "k", br#"{"values":{"a":"x"}}"#).unwrap_err();
        assert!(
            err.message().contains("unreadable checkpoint k"),
            "{}",
            err.message()
        );
        let ok = decode::<CheckpointDoc>("checkpoint", "k", br#"{"seq":2}"#).unwrap();
        assert_eq!((ok.seq, ok.at, ok.values.len()), (2, 0, 0));
    }
}
