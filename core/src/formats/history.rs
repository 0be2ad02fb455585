//! The history kinds: journals, checkpoints, idempotency markers and dead letters.

use super::{DecimalText, StoredMarker, is_zero, markers};
use crate::txn::Transaction;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

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
