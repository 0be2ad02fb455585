//! Transactions: the operation type, the stored object, and its encoding into a key name.
//!
//! A plain transaction lives entirely in its key name
//! `<ts13>,<rand9>,<op>,<amount>,<fieldPath>,<source>,<flags>` (components percent-encoded),
//! so a consolidation reads a whole batch with one LIST and no GETs. The body repeats it as
//! JSON for auditors. Two kinds carry data a name cannot hold and are read with a GET:
//! idempotent transactions, named `~<hash>` so that retries collide on a create-only put, and
//! transactions with `metadata` (flag `b`).

use crate::amount::{decimal_to_json, truncate};
use crate::calendar::{cohorts_of, iso_timestamp};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::{decode_component, encode_component};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use std::str::FromStr;

/// The three operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// Add the amount.
    Add,
    /// Subtract the amount.
    Sub,
    /// Replace the running value.
    Set,
}

impl Op {
    /// `add`, `sub` or `set`.
    pub fn as_str(self) -> &'static str {
        match self {
            Op::Add => "add",
            Op::Sub => "sub",
            Op::Set => "set",
        }
    }
    /// Parses `add`, `sub` or `set`.
    pub fn parse(s: &str) -> Option<Op> {
        match s {
            "add" => Some(Op::Add),
            "sub" => Some(Op::Sub),
            "set" => Some(Op::Set),
            _ => None,
        }
    }
}

/// One transaction. Amounts are stored as given, with their sign.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// `tx-<ms>-<9 base36>`.
    pub id: String,
    /// The record id.
    pub original_id: String,
    /// The configured (root) field.
    pub field: String,
    /// The dotted path written (equals `field` for plain fields).
    pub field_path: String,
    /// The amount as given.
    #[serde(with = "rust_decimal::serde::str")]
    pub value: Decimal,
    /// The operation.
    pub operation: Op,
    /// Epoch milliseconds (the clock's time; cohorts and analytics use it).
    pub timestamp_ms: i64,
    /// The engine's ordering stamp, when it differs from `timestamp_ms` (the clock stepped
    /// back, so the stamp kept the last one): reduction follows it, so one caller's
    /// mutations apply in call order whatever the clock does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_ms: Option<i64>,
    /// Where it came from (free text, at most 64 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The caller's idempotency key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<String>,
    /// Free-form caller data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

impl Transaction {
    /// The transaction as users see it (SPEC §4), cohorts in `zone`.
    pub fn to_json(&self, zone: Tz, applied: bool) -> Value {
        let c = cohorts_of(self.timestamp_ms, zone);
        let mut m = Map::new();
        m.insert("id".into(), json!(self.id));
        m.insert("originalId".into(), json!(self.original_id));
        m.insert("field".into(), json!(self.field));
        m.insert("fieldPath".into(), json!(self.field_path));
        m.insert("value".into(), decimal_to_json(self.value));
        m.insert("operation".into(), json!(self.operation.as_str()));
        m.insert("timestamp".into(), json!(iso_timestamp(self.timestamp_ms)));
        m.insert("cohortHour".into(), json!(c.hour));
        m.insert("cohortDate".into(), json!(c.date));
        m.insert("cohortWeek".into(), json!(c.week));
        m.insert("cohortMonth".into(), json!(c.month));
        m.insert("applied".into(), json!(applied));
        if let Some(s) = &self.source {
            m.insert("source".into(), json!(s));
        }
        if let Some(k) = &self.idempotency_key {
            m.insert("idempotencyKey".into(), json!(k));
        }
        if let Some(md) = &self.metadata {
            m.insert("metadata".into(), md.clone());
        }
        Value::Object(m)
    }

    /// The position in reduction order: the ordering stamp, then the id.
    pub fn order_key(&self) -> (i64, &str) {
        (self.order_ms.unwrap_or(self.timestamp_ms), &self.id)
    }

    /// The key name of this transaction (see the module documentation).
    pub fn key_name(&self) -> String {
        if let Some(h) = self.idempotency_hash() {
            return format!("~{h}");
        }
        let rand = self.id.rsplit('-').next().unwrap_or("");
        let mut flags = String::new();
        if self.metadata.is_some() {
            flags.push('b');
        }
        if self.order_ms.is_some() {
            flags.push_str(&format!("@{}", self.timestamp_ms));
        }
        format!(
            "{:013},{},{},{},{},{},{flags}",
            self.order_ms.unwrap_or(self.timestamp_ms).max(0),
            encode_component(rand),
            self.operation.as_str(),
            self.value.normalize(),
            encode_component(&self.field_path),
            encode_component(self.source.as_deref().unwrap_or("")),
        )
    }

    /// The hash that names an idempotent transaction (and its applied marker).
    pub fn idempotency_hash(&self) -> Option<String> {
        self.idempotency_key
            .as_deref()
            .map(|k| idempotency_hash(&self.field_path, k))
    }
}

/// The hash naming an idempotency key for a field path.
pub fn idempotency_hash(field_path: &str, key: &str) -> String {
    crate::keys::short_hash(&[field_path, key], 12)
}

/// What a key name says about its transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum NameInfo {
    /// The whole transaction.
    Complete(Box<Transaction>),
    /// The transaction must be read from its body (idempotent or with metadata).
    NeedsBody,
}

/// Decodes a key name written by [`Transaction::key_name`].
pub fn parse_key_name(name: &str, record_id: &str, field: &str) -> Result<NameInfo> {
    let bad = || {
        Error::storage(format!(
            "unreadable transaction key \"{}\"",
            truncate(name, 80)
        ))
    };
    if name.starts_with('~') {
        return Ok(NameInfo::NeedsBody);
    }
    let parts: Vec<&str> = name.split(',').collect();
    let [ts, rand, op, amount, path, source, flags] = parts[..] else {
        return Err(bad());
    };
    if flags.contains('b') {
        return Ok(NameInfo::NeedsBody);
    }
    let stamp: i64 = ts.parse().map_err(|_| bad())?;
    // `@<ms>`: the clock's time, when the ordering stamp in front differs from it.
    let clock_ms = match flags.split_once('@') {
        Some((_, ms)) => Some(ms.parse::<i64>().map_err(|_| bad())?),
        None => None,
    };
    let rand = decode_component(rand).ok_or_else(bad)?;
    let source = decode_component(source).ok_or_else(bad)?;
    Ok(NameInfo::Complete(Box::new(Transaction {
        id: format!("tx-{stamp}-{rand}"),
        original_id: record_id.to_string(),
        field: field.to_string(),
        field_path: decode_component(path).ok_or_else(bad)?,
        value: Decimal::from_str(amount).map_err(|_| bad())?,
        operation: Op::parse(op).ok_or_else(bad)?,
        timestamp_ms: clock_ms.unwrap_or(stamp),
        order_ms: clock_ms.map(|_| stamp),
        source: (!source.is_empty()).then_some(source),
        idempotency_key: None,
        metadata: None,
    })))
}

/// The default reduction: `set` replaces, `add` adds, `sub` subtracts. Fails on overflow.
pub fn reduce_default(start: Decimal, txs: &[&Transaction]) -> Result<Decimal> {
    let mut v = start;
    for tx in txs {
        v = match tx.operation {
            Op::Set => Some(tx.value),
            Op::Add => v.checked_add(tx.value),
            Op::Sub => v.checked_sub(tx.value),
        }
        .ok_or_else(|| {
            Error::new(
                crate::ErrorCode::InvalidAmount,
                format!(
                    "value of \"{}\" on record \"{}\" overflows the exact decimal range",
                    tx.field_path, tx.original_id
                ),
            )
        })?;
    }
    Ok(v)
}

/// True when an error folding a transaction is the transaction's own (it fails however
/// often it is tried), not the storage's or the record's.
pub fn is_poison(e: &Error) -> bool {
    matches!(
        e.code(),
        ErrorCode::InvalidAmount | ErrorCode::InvalidArgument
    )
}

/// The code of a poison error as kept in the bookkeeping (`ERR_INVALID_ARGUMENT` or
/// `ERR_INVALID_AMOUNT`).
pub(crate) fn poison_code(code: &str) -> ErrorCode {
    if code == ErrorCode::InvalidArgument.as_str() {
        ErrorCode::InvalidArgument
    } else {
        ErrorCode::InvalidAmount
    }
}

/// A transaction set aside, with why.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    /// The pending key name it had.
    pub name: String,
    /// The transaction.
    pub transaction: Transaction,
    /// Why it could not be applied.
    pub error: Error,
}

impl DeadLetter {
    /// As the bookkeeping names it: pending key name, error code, message.
    pub(crate) fn stored(&self) -> (String, String, String) {
        let code = self.error.code().as_str().to_string();
        (self.name.clone(), code, self.error.message().to_string())
    }
}
