//! Planning a batch (protocol steps 1–3): read the record and its pending keys, tell the
//! stale from the fresh, and fold the fresh ones into the new values, writing nothing.

use super::*;

impl<'a> Consolidator<'a> {
    /// Reads the pending transactions of a field: one LIST page per 1,000, plus a GET for each
    /// one whose name does not carry it whole.
    pub(crate) async fn pending_transactions(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<Vec<Transaction>> {
        Ok(self
            .pending_named(resource, field, record)
            .await?
            .into_iter()
            .map(|(_, tx)| tx)
            .collect())
    }

    /// [`Consolidator::pending_transactions`], each with its key name (under its record's folder).
    pub(crate) async fn pending_named(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<Vec<(String, Transaction)>> {
        let fc = field_config(self.config, resource, field)?;
        let mut out = Vec::new();
        let prefix = self.ports.layout.pending_field(resource, &fc.field);
        // One record's: only its own keys are listed (they sort under its folder).
        let listed = match record {
            Some(id) => self.ports.layout.pending(resource, &fc.field, id),
            None => prefix.clone(),
        };
        for key in list_all(self.ports.store.as_ref(), &listed).await? {
            let Some((id, name)) = split_record_key(&prefix, &key) else {
                continue;
            };
            let record_prefix = self.ports.layout.pending(resource, &fc.field, &id);
            if let Some(tx) = self
                .read_pending(resource, &fc, &id, &record_prefix, name)
                .await?
            {
                out.push((name.to_string(), tx));
            }
        }
        Ok(out)
    }

    /// Reads the record and its pending transactions and computes the result, writing nothing;
    /// with `all`, every pending transaction (a read-only view), otherwise at most
    /// [`MAX_BATCH`] of them (a batch to commit).
    pub(crate) async fn plan(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        all: bool,
    ) -> Result<Option<BatchPlan>> {
        let read_at = self.ports.now_ms();
        let Some(record) = self.ports.records.load(resource, id).await? else {
            return Ok(None);
        };
        let state = FieldState::of(&record.meta, &fc.field);
        let prefix = self.ports.layout.pending(resource, &fc.field, id);
        let names: Vec<String> = list_all(self.ports.store.as_ref(), &prefix)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&prefix).map(str::to_string))
            .collect();
        let applied: HashSet<String> = match (&state.done, &state.keys) {
            (Some(done), _) => done.iter().flat_map(|(_, t)| t.iter().cloned()).collect(),
            _ if state.batch.is_none() => HashSet::new(),
            (None, Some(keys)) => keys.iter().map(|k| key_token(k).to_string()).collect(),
            // Bookkeeping of an older version without the key list: the journal has it.
            (None, None) if names.is_empty() => HashSet::new(),
            (None, None) => self
                .journal_keys(resource, &fc.field, id, &state)
                .await?
                .iter()
                .map(|k| key_token(k).to_string())
                .collect(),
        };
        let (mut stale, unread): (Vec<String>, Vec<String>) = names
            .into_iter()
            .partition(|name| applied.contains(key_token(name)));
        // Names that need their body (idempotent or with metadata) are read side by side,
        // `consolidation.markAppliedConcurrency` at a time.
        let read: Vec<(String, Result<Option<Transaction>>)> = futures::stream::iter(unread)
            .map(|name| async {
                let tx = self.read_pending(resource, fc, id, &prefix, &name).await;
                (name, tx)
            })
            .buffered(self.config.mark_applied_concurrency.max(1))
            .collect()
            .await;
        let mut fresh = Vec::new();
        for (name, tx) in read {
            match tx? {
                Some(tx) => fresh.push((name, tx)),
                None => stale.push(name),
            }
        }
        fresh.sort_by(|a, b| a.1.order_key().cmp(&b.1.order_key()));
        let pending: HashSet<String> = fresh.iter().map(|(n, _)| n.clone()).collect();
        let limit = if all { usize::MAX } else { MAX_BATCH };
        let more = fresh.len() > limit;
        fresh.truncate(limit);
        let (new_data, values, set_aside) =
            self.fold(resource, fc, id, &record.data, &fresh).await?;
        let mut poison = Vec::new();
        for (name, error) in set_aside {
            if let Some(i) = fresh.iter().position(|(n, _)| *n == name) {
                let (name, transaction) = fresh.remove(i);
                poison.push(DeadLetter {
                    name,
                    transaction,
                    error,
                });
            }
        }
        Ok(Some(BatchPlan {
            record,
            state,
            fresh,
            stale,
            new_data,
            values,
            read_at,
            applied,
            more,
            pending,
            poison,
        }))
    }

    /// Reads one pending transaction from its name (or body). `None` when it is a duplicate of
    /// an applied idempotent transaction (or vanished meanwhile).
    pub(crate) async fn read_pending(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        prefix: &str,
        name: &str,
    ) -> Result<Option<Transaction>> {
        match parse_key_name(name, id, &fc.field)? {
            NameInfo::Complete(tx) => Ok(Some(*tx)),
            NameInfo::NeedsBody => {
                let Some(obj) = self.ports.store.get(&format!("{prefix}{name}")).await? else {
                    return Ok(None);
                };
                let tx: Transaction = serde_json::from_slice(&obj.bytes)
                    .map_err(|e| Error::storage(format!("unreadable transaction {name}: {e}")))?;
                if let Some(h) = tx.idempotency_hash() {
                    let marker = self.ports.layout.idempotency(resource, &fc.field, id, &h);
                    if self.ports.store.get(&marker).await?.is_some() {
                        return Ok(None);
                    }
                }
                Ok(Some(tx))
            }
        }
    }

    /// Folds `fresh` into `data`, per field path, with the field's reducer.
    pub(super) async fn fold(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        data: &Map<String, Value>,
        fresh: &[(String, Transaction)],
    ) -> Result<Folded> {
        let mut by_path: BTreeMap<String, Vec<&(String, Transaction)>> = BTreeMap::new();
        for named in fresh {
            by_path
                .entry(named.1.field_path.clone())
                .or_default()
                .push(named);
        }
        let mut new_data = data.clone();
        let mut values = BTreeMap::new();
        let mut poison = Vec::new();
        for (path, named) in by_path {
            let txs: Vec<&Transaction> = named.iter().map(|(_, t)| t).collect();
            let start = match get_path(data, &path) {
                None | Some(Value::Null) => fc.initial_value,
                Some(v) => decimal_from_json(v).ok_or_else(|| {
                    Error::new(
                        ErrorCode::Validation,
                        format!(
                            "field \"{path}\" of record \"{id}\" in resource \"{resource}\" holds {v}, not a number"
                        ),
                    )
                })?,
            };
            let end = match self.reduce(fc, start, &txs).await {
                Ok(end) => end,
                // One transaction cannot be applied: fold one at a time, setting aside each
                // that fails alone (see crate::dead_letters).
                Err(e) if is_poison(&e) => {
                    let mut v = start;
                    for (name, tx) in named {
                        match self.reduce(fc, v, &[tx]).await {
                            Ok(next) => v = next,
                            Err(e) if is_poison(&e) => poison.push((name.clone(), e)),
                            Err(e) => return Err(e),
                        }
                    }
                    v
                }
                Err(e) => return Err(e),
            };
            set_path(&mut new_data, &path, decimal_to_json(end));
            values.insert(path, (start, end));
        }
        Ok((new_data, values, poison))
    }

    /// Reduces `txs` into `start` with the field's reducer.
    pub(crate) async fn reduce(
        &self,
        fc: &FieldConfig,
        start: Decimal,
        txs: &[&Transaction],
    ) -> Result<Decimal> {
        match fc.reducer.and_then(|r| self.reducers.get(r)) {
            Some(reducer) => reducer.reduce(start, txs, self.config.timezone).await,
            None => reduce_default(start, txs),
        }
    }

    /// Key names of the batch named in `state`, from its journal.
    pub(super) async fn journal_keys(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        state: &FieldState,
    ) -> Result<HashSet<String>> {
        let Some(batch) = &state.batch else {
            return Ok(HashSet::new());
        };
        let key = format!("{}{batch}", self.ports.layout.journals(resource, field, id));
        let obj = self.ports.store.get(&key).await?.ok_or_else(|| {
            Error::storage(format!(
                "journal {key} of the last committed batch is missing"
            ))
        })?;
        let journal: JournalDoc = formats::decode("journal", &key, &obj.bytes)?;
        Ok(journal.keys.into_iter().collect())
    }
}
