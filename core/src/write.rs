//! Mutations: `add`/`sub`/`set` as one create-only PUT of a pending transaction, with its
//! timestamp and id, idempotency keys and their markers, and the answer to a duplicate.
//!
//! Also the carrying over of s3db.js 21.6.2's pending transactions (`plg_<resource>_tx_<field>`),
//! exactly once whoever does it and however often: each keeps its timestamp, and its old id is
//! the idempotency key, so a second carrier (another process, a restart) changes nothing.

use crate::amount::{Arg, amount_from_arg, decimal_to_f64, truncate};
use crate::clock::base36;
use crate::config::{Mode, PluginConfig};
use crate::consolidate::{Consolidated, Consolidator};
use crate::error::{Error, ErrorCode, Result};
use crate::formats::{self, JournalDoc, MarkerDoc};
use crate::keys::check_record_id;
use crate::ports::Ports;
use crate::resolve::{Target, resolve};
use crate::schema::number_at;
use crate::store::{PutMode, StoreError, cas};
use crate::txn::{Op, Transaction};
use rust_decimal::Decimal;
use serde_json::Value;
use std::sync::Mutex;

/// Options of a mutation (`{ idempotencyKey, source, metadata }`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MutationOptions {
    /// Deduplicates retries for the same resource, record and field path.
    pub idempotency_key: Option<String>,
    /// Free text stored with the transaction (at most 64 characters).
    pub source: Option<String>,
    /// Free-form JSON stored with the transaction (at most 4 KiB).
    pub metadata: Option<Value>,
}

impl MutationOptions {
    /// Reads the options argument; `undefined`/`null` mean none.
    pub fn from_arg(arg: &Arg) -> Result<MutationOptions> {
        let obj = match arg {
            Arg::Undefined | Arg::Null => return Ok(MutationOptions::default()),
            Arg::Json(Value::Object(m)) => m,
            other => {
                return Err(Error::invalid_argument(format!(
                    "options must be an object {{ idempotencyKey, source, metadata }} (got {})",
                    other.type_name()
                )));
            }
        };
        let text = |k: &str, max: usize| -> Result<Option<String>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => {
                    Ok(Some(s.clone()))
                }
                Some(v) => Err(Error::invalid_argument(format!(
                    "options.{k} must be a non-empty string of at most {max} characters (got {})",
                    truncate(&v.to_string(), 40)
                ))),
            }
        };
        let metadata = obj.get("metadata").filter(|v| !v.is_null()).cloned();
        if let Some(m) = &metadata
            && m.to_string().len() > 4096
        {
            return Err(Error::invalid_argument(
                "options.metadata must serialize to at most 4096 bytes",
            ));
        }
        Ok(MutationOptions {
            idempotency_key: text("idempotencyKey", 256)?,
            source: text("source", crate::keys::MAX_SOURCE_LEN)?,
            metadata,
        })
    }
}

/// What a mutation resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum MutationResult {
    /// Sync mode: the consolidated value at the path (`None` when the record does not exist).
    Value(Option<f64>),
    /// Async mode: the stored transaction (SPEC §4 shape).
    Transaction(Value),
}

/// What [`Writer::write_transaction`] found.
pub(crate) enum WriteOutcome {
    /// Stored now.
    Stored(Transaction),
    /// Stored earlier under the same idempotency key, still pending: that one.
    Existing(Transaction),
    /// Already applied under the same idempotency key: ours, and the applied marker.
    Duplicate(Transaction, Box<MarkerDoc>),
}

fn check_same(first: &Transaction, now: &Transaction) -> Result<()> {
    if first.operation != now.operation
        || first.value != now.value
        || first.field_path != now.field_path
    {
        return Err(Error::new(
            ErrorCode::IdempotencyMismatch,
            format!(
                "idempotency key \"{}\" was used for {} {} on \"{}\"; now {} {}",
                truncate(now.idempotency_key.as_deref().unwrap_or(""), 60),
                first.operation.as_str(),
                first.value,
                first.field_path,
                now.operation.as_str(),
                now.value
            ),
        ));
    }
    Ok(())
}

/// Writes transactions: mutations and carried-over ones.
#[derive(Clone, Copy)]
pub(crate) struct Writer<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The last ordering stamp and its per-millisecond sequence.
    pub(crate) stamp: &'a Mutex<(i64, u64)>,
    /// The exactly-once consolidation (and the pending reads).
    pub(crate) consolidator: Consolidator<'a>,
}

impl<'a> Writer<'a> {
    /// The clock's time, the ordering stamp and the id suffix of a new transaction. Stamps
    /// never go back within an engine (a clock stepped back keeps the last one, and counts
    /// on), so one caller's mutations sort in call order; the suffix is a 4-digit
    /// per-millisecond sequence and 12 random base-36 digits (62 bits), so processes never
    /// share ids or key names.
    pub(super) fn next_stamp(&self) -> (i64, i64, String) {
        const SEQ_LIMIT: u64 = 36 * 36 * 36 * 36;
        let clock = self.ports.clock.now_ms();
        let now = clock.max(0);
        let mut s = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now > s.0 {
            *s = (now, 0);
        } else if s.1.saturating_add(1) < SEQ_LIMIT {
            s.1 = s.1.saturating_add(1);
        } else {
            *s = (s.0.saturating_add(1), 0);
        }
        let suffix = format!(
            "{}{}",
            base36(s.1, 4),
            base36(self.ports.ids.next_u64(), 12)
        );
        (clock, s.0, suffix)
    }

    /// Writes a transaction and, in sync mode, consolidates the record.
    pub(crate) async fn mutate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
        op: Op,
        amount: &Arg,
        options: MutationOptions,
    ) -> Result<MutationResult> {
        check_record_id(id)?;
        let target = resolve(self.config, self.ports.records.as_ref(), resource, field).await?;
        let value = amount_from_arg(amount, &format!("amount for \"{}\"", target.path))?;
        let (ts, stamp, suffix) = self.next_stamp();
        let tx = Transaction {
            id: format!("tx-{stamp}-{suffix}"),
            original_id: id.to_string(),
            field: target.field.field.clone(),
            field_path: target.path.clone(),
            value,
            operation: op,
            timestamp_ms: ts,
            order_ms: (stamp != ts).then_some(stamp),
            source: options.source,
            idempotency_key: options.idempotency_key,
            metadata: options.metadata,
        };
        let tx = match self.write_transaction(&target, id, tx).await? {
            WriteOutcome::Stored(tx) | WriteOutcome::Existing(tx) => tx,
            WriteOutcome::Duplicate(tx, marker) => {
                return self.answer_duplicate(&target, id, &tx, *marker).await;
            }
        };
        match self.config.mode {
            Mode::Async => Ok(MutationResult::Transaction(
                tx.to_json(self.config.timezone, false),
            )),
            Mode::Sync => {
                let own = tx.key_name();
                let value = match self
                    .consolidator
                    .consolidate_record_with(&target.resource, &target.field, id, Some(&own))
                    .await?
                {
                    Consolidated::Missing => None,
                    Consolidated::Done { data, .. } => number_at(&data, &target.path),
                };
                Ok(MutationResult::Value(value))
            }
        }
    }

    /// Stores a transaction create-only; with an idempotency key, a transaction already
    /// stored or applied under the same key wins and is returned instead.
    pub(crate) async fn write_transaction(
        &self,
        target: &Target,
        id: &str,
        tx: Transaction,
    ) -> Result<WriteOutcome> {
        let prefix = self
            .ports
            .layout
            .pending(&target.resource, &target.field.field, id);
        let name = tx.key_name();
        // Every store holds names of at most 255 bytes (a file name) and keys of at most 1,024:
        // a long unicode source or path, or a long id, is refused before anything is written.
        let stored = crate::keys::stored_segment_len(&name);
        if stored > crate::keys::MAX_SEGMENT_LEN || prefix.len().saturating_add(name.len()) > 1024 {
            return Err(Error::invalid_argument(format!(
                "the transaction for record \"{}\" at \"{}\" does not fit a storage key once encoded ({} bytes for its name, at most 255; {} for the key, at most 1024): use a shorter source, path or id",
                truncate(id, 40),
                truncate(&target.path, 40),
                stored,
                prefix.len().saturating_add(name.len())
            )));
        }
        let key = format!("{prefix}{name}");
        let body = serde_json::to_vec(&tx).map_err(|e| Error::storage(e.to_string()))?;
        let stored = match self
            .ports
            .store
            .put(&key, body.clone(), PutMode::Create)
            .await
        {
            Ok(_) => match tx.idempotency_hash() {
                Some(h) => match self.applied_idempotent(target, id, &h).await? {
                    // Our write duplicated an applied transaction: undo it, answer like the first.
                    Some(first) => {
                        self.ports.store.delete(&key).await?;
                        return Ok(WriteOutcome::Duplicate(tx, Box::new(first)));
                    }
                    None => tx,
                },
                None => tx,
            },
            // A create that landed can still be answered 412 (a proxy that sent it twice): it
            // is ours when the key holds our bytes.
            Err(StoreError::Conflict { .. })
                if tx.idempotency_key.is_none()
                    && cas::holds(self.ports.store.as_ref(), &key, &body).await =>
            {
                tx
            }
            Err(StoreError::Conflict { .. }) if tx.idempotency_key.is_some() => {
                match self.ports.store.get(&key).await? {
                    Some(obj) => {
                        let first: Transaction = serde_json::from_slice(&obj.bytes)
                            .map_err(|e| Error::storage(format!("unreadable transaction: {e}")))?;
                        check_same(&first, &tx)?;
                        return Ok(WriteOutcome::Existing(first));
                    }
                    None => {
                        let h = tx.idempotency_hash().unwrap_or_default();
                        match self.applied_idempotent(target, id, &h).await? {
                            Some(first) => return Ok(WriteOutcome::Duplicate(tx, Box::new(first))),
                            None => {
                                return Err(Error::new(
                                    ErrorCode::Conflict,
                                    "idempotent transaction changed while being written; retry",
                                ));
                            }
                        }
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(WriteOutcome::Stored(stored))
    }

    pub(super) async fn applied_idempotent(
        &self,
        target: &Target,
        id: &str,
        hash: &str,
    ) -> Result<Option<MarkerDoc>> {
        let key = self
            .ports
            .layout
            .idempotency(&target.resource, &target.field.field, id, hash);
        match self.ports.store.get(&key).await? {
            Some(obj) => Ok(Some(formats::decode(
                "idempotency marker",
                &key,
                &obj.bytes,
            )?)),
            None => Ok(None),
        }
    }

    pub(super) async fn answer_duplicate(
        &self,
        target: &Target,
        id: &str,
        tx: &Transaction,
        marker: MarkerDoc,
    ) -> Result<MutationResult> {
        let first = marker.transaction;
        check_same(&first, tx)?;
        match self.config.mode {
            Mode::Async => Ok(MutationResult::Transaction(
                first.to_json(self.config.timezone, true),
            )),
            Mode::Sync => {
                let batch = marker.batch.as_deref().unwrap_or_default();
                let key = format!(
                    "{}{batch}",
                    self.ports
                        .layout
                        .journals(&target.resource, &target.field.field, id)
                );
                // The value right after its batch, from the journal; without one (collected),
                // the record's current value.
                let after = match self.ports.store.get(&key).await? {
                    Some(obj) => formats::decode::<JournalDoc>("journal", &key, &obj.bytes)
                        .ok()
                        .and_then(|j| j.values.get(&first.field_path).map(|v| v.after.0)),
                    None => None,
                };
                match after {
                    Some(v) => Ok(MutationResult::Value(Some(decimal_to_f64(v)))),
                    None => Ok(MutationResult::Value(
                        self.consolidate_target(target, id).await?,
                    )),
                }
            }
        }
    }

    /// Carries over one transaction written elsewhere (s3db.js 21.6.2's transaction
    /// resources) with its own timestamp, exactly once per `key`: returns false when a
    /// transaction with that key was already carried over (pending or applied).
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn import_transaction(
        &self,
        resource: &str,
        path: &str,
        id: &str,
        op: Op,
        value: Decimal,
        timestamp_ms: i64,
        source: Option<String>,
        key: &str,
    ) -> Result<bool> {
        check_record_id(id)?;
        let target = resolve(
            self.config,
            self.ports.records.as_ref(),
            resource,
            Some(path),
        )
        .await?;
        // The old id's random part orders transactions of one millisecond as before.
        let suffix = match key.rsplit('-').next() {
            Some(r)
                if !r.is_empty()
                    && r.len() <= 12
                    && r.bytes().all(|b| b.is_ascii_alphanumeric()) =>
            {
                r.to_ascii_lowercase()
            }
            _ => crate::keys::short_hash(&[key], 9),
        };
        let tx = Transaction {
            id: format!("tx-{timestamp_ms}-{suffix}"),
            original_id: id.to_string(),
            field: target.field.field.clone(),
            field_path: target.path.clone(),
            value,
            operation: op,
            timestamp_ms,
            order_ms: None,
            source,
            idempotency_key: Some(key.to_string()),
            metadata: None,
        };
        Ok(matches!(
            self.write_transaction(&target, id, tx).await?,
            WriteOutcome::Stored(_)
        ))
    }

    /// Carries over one 21.6.2 transaction object (`{ id, originalId, field, fieldPath,
    /// operation, value, timestamp, source }`, as its resource API returns it).
    pub(crate) async fn carry_over(&self, resource: &str, tx: &Value) -> Result<bool> {
        let bad = |what: &str| {
            Error::invalid_argument(format!(
                "21.6.2 transaction {} of \"{resource}\" has no usable {what}",
                crate::amount::truncate(&tx["id"].to_string(), 60)
            ))
        };
        let op = tx["operation"]
            .as_str()
            .and_then(Op::parse)
            .ok_or_else(|| bad("operation"))?;
        let value = tx["value"].as_f64().ok_or_else(|| bad("value"))?;
        let value = crate::amount::decimal_from_f64(value).map_err(|_| bad("value"))?;
        let ts = tx["timestamp"]
            .as_str()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
            .map(|t| t.timestamp_millis())
            .ok_or_else(|| bad("timestamp"))?;
        let id = tx["originalId"].as_str().ok_or_else(|| bad("originalId"))?;
        let key = tx["id"].as_str().ok_or_else(|| bad("id"))?;
        let path = tx["fieldPath"]
            .as_str()
            .filter(|p| !p.is_empty())
            .or(tx["field"].as_str())
            .ok_or_else(|| bad("field"))?;
        let source = tx["source"].as_str().map(str::to_string);
        self.import_transaction(resource, path, id, op, value, ts, source, key)
            .await
    }

    async fn consolidate_target(&self, target: &Target, id: &str) -> Result<Option<f64>> {
        match self
            .consolidator
            .consolidate_record(&target.resource, &target.field, id)
            .await?
        {
            Consolidated::Missing => Ok(None),
            Consolidated::Done { data, .. } => Ok(number_at(&data, &target.path)),
        }
    }
}
