//! Stored formats: one serde type per kind of object Tally writes, each with one writer
//! ([`encode`]) and one reader ([`decode`]).
//!
//! Field order is the stored order (serde writes a struct's fields as declared), `Option`s
//! that are always written are stored as `null`, and every field a reader can do without has
//! a default, so objects written by earlier versions stay readable. Amounts are decimal text
//! (`"10.25"`), never JSON numbers, so no float ever touches a balance. The storage golden
//! (`tests/golden/storage/`) pins the bytes; the tests (`tests.rs`) decode every golden
//! object of these kinds and encode it back to the same bytes. Records and their
//! bookkeeping are in `records.rs`, the history kinds (journal, checkpoint, markers, dead
//! letters) in `history.rs`; the small kinds are here.
//!
//! Kinds defined elsewhere, next to the code that owns their invariants: a pending
//! transaction is a [`crate::txn::Transaction`] (its key name carries it too, see
//! [`crate::txn`]); the points inside the analytics objects are encoded by the pure
//! analytics module ([`crate::analytics::materialized`]), which also builds for wasm32.

use crate::error::{Error, Result};

use rust_decimal::Decimal;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;
use std::collections::BTreeMap;
use std::str::FromStr;

mod field_state;
mod history;
mod records;
#[cfg(test)]
mod tests;

pub(crate) use field_state::*;
pub(crate) use history::*;
pub(crate) use records::*;

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

fn is_zero(n: &u64) -> bool {
    *n == 0
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

/// An analytics inbox entry, `P/a/<resource>/<field>/in/<id>/<batch>`: what one committed
/// batch adds to each hour, day, week and month (see [`crate::fold`]). The delta's own
/// encoding is the pure analytics module's
/// ([`crate::analytics::materialized::delta_to_json`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct InboxDoc {
    /// `{object: {label: point}}`.
    pub(crate) delta: Value,
}

/// A packed analytics object, `P/a/<resource>/<field>/<name>` (`h/<month>` hours, `y/<year>`
/// days, weeks and months, `t/<label>` top records): its points as of fold `fold`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PackedDoc {
    /// The fold that last wrote it.
    pub(crate) fold: u64,
    /// `{label: point}` ([`crate::analytics::materialized::packed_to_json`]).
    pub(crate) p: Value,
}

/// The fold state of a field's analytics, `P/a/<resource>/<field>/fold` (see
/// [`crate::fold`]).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FoldDoc {
    /// The fold's sequence number.
    pub(crate) seq: u64,
    /// Inbox entries folded since the last flush that may still exist.
    #[serde(default)]
    pub(crate) keys: Vec<String>,
    /// The contribution of the folds since the packed objects were last written (a delta).
    pub(crate) plan: Value,
    /// Whether this fold writes `plan` to the packed objects.
    #[serde(default = "yes")]
    pub(crate) flush: bool,
    /// How many folds left out entries of their base state's.
    #[serde(default)]
    pub(crate) trim: u64,
    /// Per record: batches folded up to `low`, those in `above`, and when:
    /// `[low, [above…], at]`.
    #[serde(default)]
    pub(crate) folded: BTreeMap<String, (u64, Vec<u64>, i64)>,
    /// Since when every fold carries top objects; absent in states of earlier versions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) top: Option<i64>,
}

fn yes() -> bool {
    true
}
