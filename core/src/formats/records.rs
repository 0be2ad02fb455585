//! Stored records: the document at `P/r/<resource>/<id>` (live or tombstone) and the
//! per-field bookkeeping inside it.

use super::{decode, encode, is_zero, lenient, present};
use crate::error::Result;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// A record, `P/r/<resource>/<id>` (or a host record's state object): the user's data and
/// Tally's bookkeeping per configured field; the tombstone of a deleted record also has `t`,
/// when it was deleted (see [`crate::records`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct RecordDoc {
    /// When it was deleted (epoch ms, the deleting machine's clock); tombstones only.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub(crate) t: Option<Value>,
    /// The data (`id` included).
    #[serde(default)]
    pub(crate) d: Map<String, Value>,
    /// The bookkeeping: a [`crate::formats::FieldState`] per field.
    #[serde(default)]
    pub(crate) m: Map<String, Value>,
}

/// A field's bookkeeping, in a record's `m` under the field's name (see
/// [`crate::formats::FieldState`], which reads and writes it).
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
