//! Mutations: `add`/`sub`/`set` as one create-only PUT of a pending transaction, with its
//! timestamp and id, idempotency keys and their markers, and the answer to a duplicate.

use super::*;

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

/// What [`Engine::write_transaction`] found.
pub(crate) enum Written {
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

impl Engine {
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
    pub async fn mutate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
        op: Op,
        amount: &Arg,
        options: MutationOptions,
    ) -> Result<MutationResult> {
        check_record_id(id)?;
        let target = self.resolve(resource, field).await?;
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
            Written::Stored(tx) | Written::Existing(tx) => tx,
            Written::Duplicate(tx, marker) => {
                return self.answer_duplicate(&target, id, &tx, *marker).await;
            }
        };
        match self.config.mode {
            Mode::Async => Ok(MutationResult::Transaction(tx.to_json(self.zone(), false))),
            Mode::Sync => {
                let own = tx.key_name();
                let value = match self
                    .consolidator()
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
    ) -> Result<Written> {
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
                        return Ok(Written::Duplicate(tx, Box::new(first)));
                    }
                    None => tx,
                },
                None => tx,
            },
            // A create that landed can still be answered 412 (a proxy that sent it twice): it
            // is ours when the key holds our bytes.
            Err(StoreError::Conflict { .. })
                if tx.idempotency_key.is_none()
                    && self
                        .ports
                        .store
                        .get(&key)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|o| o.bytes == body) =>
            {
                tx
            }
            Err(StoreError::Conflict { .. }) if tx.idempotency_key.is_some() => {
                match self.ports.store.get(&key).await? {
                    Some(obj) => {
                        let first: Transaction = serde_json::from_slice(&obj.bytes)
                            .map_err(|e| Error::storage(format!("unreadable transaction: {e}")))?;
                        check_same(&first, &tx)?;
                        return Ok(Written::Existing(first));
                    }
                    None => {
                        let h = tx.idempotency_hash().unwrap_or_default();
                        match self.applied_idempotent(target, id, &h).await? {
                            Some(first) => return Ok(Written::Duplicate(tx, Box::new(first))),
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
        Ok(Written::Stored(stored))
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
                first.to_json(self.zone(), true),
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
}
