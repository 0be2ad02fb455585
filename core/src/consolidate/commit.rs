//! Committing a planned batch (protocol steps 4–6): the journal, the compare-and-swap of the
//! record, and retiring the applied keys; dead letters are written here too.

use super::*;

impl<'a> Consolidator<'a> {
    /// Writes a plan's journal (and analytics inbox entry) and commits it.
    pub(super) async fn commit_plan(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        plan: BatchPlan,
    ) -> Result<Attempt> {
        if !plan.stale.is_empty() {
            self.retire(resource, fc, id, &plan.stale, &plan.state)
                .await?;
        }
        // The keys this batch consumes: the applied ones and the ones it sets aside.
        let names: Vec<String> = plan
            .fresh
            .iter()
            .map(|(n, _)| n.clone())
            .chain(plan.poison.iter().map(|d| d.name.clone()))
            .collect();
        let seq = plan.state.seq.saturating_add(1);
        // A fresh nonce per attempt: two consolidators never share a journal name. The name
        // carries the commit time, so GC tells its age from a listing (see `crate::gc`).
        let committed_at = self.ports.now_ms();
        let nonce = crate::clock::base36(self.ports.random(), 12);
        let batch = crate::keys::batch_name(seq, committed_at, &nonce);
        let journal_key = format!(
            "{}{batch}",
            self.ports.layout.journals(resource, &fc.field, id)
        );
        let journal = JournalDoc {
            seq,
            prev: plan.state.batch.clone(),
            // The hash chain: the predecessor's SHA-256 (none before the first batch, or
            // when the predecessor was written before journals were chained).
            prev_hash: plan.state.hash.clone(),
            resource: resource.to_string(),
            field: fc.field.clone(),
            record_id: id.to_string(),
            committed_at,
            keys: names.clone(),
            transactions: plan.fresh.iter().map(|(_, t)| t.clone()).collect(),
            values: plan
                .values
                .iter()
                .map(|(p, (b, a))| {
                    let (before, after) = (DecimalText(*b), DecimalText(*a));
                    (p.clone(), BeforeAfter { before, after })
                })
                .collect(),
            // The id was deleted and created again: this incarnation's history starts after
            // batch `base` (see `crate::records`).
            base: plan.state.base,
            dead_letters: plan
                .poison
                .iter()
                .map(|d| JournalDeadLetter {
                    name: d.name.clone(),
                    id: d.transaction.id.clone(),
                    error: d.error.message().to_string(),
                })
                .collect(),
        };
        let body = formats::encode(&journal)?;
        let hash = crate::keys::sha256_hex(&body);
        // Analytics: the batch's contribution goes to the inbox before the commit, written
        // alongside the journal (one round trip for both).
        let entry = format!("{}/{batch}", crate::keys::id_segment(id));
        let analytics = self.config.analytics_enabled.then(|| {
            let mut seen = Seen::from_json(plan.state.seen.as_ref());
            let facts: Vec<Fact> = plan.fresh.iter().map(|(_, t)| Fact::from(t)).collect();
            let delta = batch_delta(&facts, &mut seen, self.config.timezone);
            (seen.to_json(), Arc::new(delta))
        });
        // This engine's other folds leave the entry to this consolidation meanwhile.
        let own_entry = analytics
            .is_some()
            .then(|| self.folder.own_entry(resource, &fc.field, &entry));
        let write_inbox = async {
            match &analytics {
                Some((_, delta)) => {
                    self.folder
                        .write_inbox_entry(resource, &fc.field, &entry, delta)
                        .await
                }
                None => Ok(()),
            }
        };
        // The fold state is read in the same round trip (unless this engine knows one), and
        // the inbox is listed (after it, as a fold requires) alongside the commit.
        let read_fold = async {
            match analytics {
                Some(_) => Some(self.folder.fold_state_to_list(resource, &fc.field).await),
                None => None,
            }
        };
        let (journal_written, inbox_written, fold_state) = futures::join!(
            self.ports.store.put(&journal_key, body, PutMode::Create),
            write_inbox,
            read_fold
        );
        // A conflict means another consolidator wrote the journal of this very batch; it is
        // then theirs to keep or remove, never ours.
        let wrote_journal = journal_written.is_ok();
        let failed = match (journal_written, inbox_written) {
            (Err(e), _) if !matches!(e, StoreError::Conflict { .. }) => Some(Error::from(e)),
            (_, Err(e)) => Some(e),
            _ => None,
        };
        if let Some(e) = failed {
            // Nothing commits this batch now: what was written is an orphan.
            self.drop_attempt(
                resource,
                fc,
                wrote_journal.then_some(&journal_key),
                analytics.is_some().then_some(&entry),
            )
            .await;
            return Err(e);
        }
        let (seen, delta) = match analytics {
            Some((seen, delta)) => (Some(seen), Some(delta)),
            None => (None, None),
        };
        let state = plan.state.next(
            batch.clone(),
            hash,
            &names,
            seen,
            plan.read_at,
            committed_at,
            plan.poison.iter().map(DeadLetter::stored).collect(),
        );
        let mut meta = plan.record.meta.clone();
        meta.insert(fc.field.clone(), state.to_json());
        let scan = async {
            match fold_state {
                Some(Ok(state)) => self
                    .folder
                    .scan_inbox(resource, &fc.field, Some(&entry), state)
                    .await
                    .ok(),
                _ => None,
            }
        };
        let paths = owned_and(&plan.record.owned, plan.values.keys());
        let (outcome, scan) = futures::join!(
            self.ports.records.commit(
                resource,
                id,
                plan.new_data.clone(),
                meta,
                &plan.record.version,
                &paths,
            ),
            scan
        );
        let names_batch = |meta: &Map<String, Value>| {
            let seen_now = FieldState::of(meta, &fc.field);
            seen_now.batch.as_deref() == Some(batch.as_str()) || seen_now.recent.contains(&batch)
        };
        // The record's bookkeeping decides, also once it was deleted right after our commit
        // (its tombstone keeps it; a host record may be gone while its state names the batch).
        let our_seq = plan.state.seq.saturating_add(1);
        let outcome = match outcome {
            // A conflict can hide our own write landing (a proxy that sent it twice answers
            // with the second copy's 412).
            Ok(CommitOutcome::Conflict) => match self.ports.records.bookkeeping(resource, id).await
            {
                Ok(Some(now)) if names_batch(&now) => CommitOutcome::Committed,
                // So many commits since that the bookkeeping no longer names ours: whether it
                // committed is unknowable here. Keep the journal and inbox entry (GC and the
                // folds tell from the chain) and start again.
                Ok(Some(now))
                    if FieldState::of(&now, &fc.field).seq
                        >= our_seq.saturating_add(RECENT_BATCHES as u64) =>
                {
                    return Ok(Attempt::Again);
                }
                Ok(_) => CommitOutcome::Conflict,
                // Unread: nothing is dropped on a guess.
                Err(e) => return Err(e),
            },
            Ok(o) => o,
            // The write may have landed, or may still land.
            Err(e) => match self.ports.records.bookkeeping(resource, id).await {
                Ok(Some(now)) if names_batch(&now) => CommitOutcome::Committed,
                // Not committed yet: keep the journal and inbox entry a late landing would
                // need (an orphan otherwise, collected later), and start again.
                Ok(Some(_)) => return Ok(Attempt::Again),
                Ok(None) => return Ok(Attempt::Missing),
                Err(_) => return Err(e),
            },
        };
        match outcome {
            CommitOutcome::Committed => {
                let applied: Vec<Transaction> = plan.fresh.into_iter().map(|(_, t)| t).collect();
                // This engine's folds may take the entry as committed from now on.
                if let Some(delta) = &delta {
                    self.folder
                        .entry_committed(resource, &fc.field, &entry, delta.clone());
                }
                drop(own_entry);
                // Best effort, side by side: the next consolidation finishes retiring the
                // keys, and a later fold picks the entry up.
                let fold = async {
                    if let Some(delta) = &delta {
                        let _ = self
                            .folder
                            .fold_analytics(resource, &fc.field, Some((&entry, delta)), scan)
                            .await;
                    }
                };
                // Dead letters are written before their keys go (else the next consolidation
                // writes them, from the bookkeeping).
                let retire = async {
                    if !plan.poison.is_empty() {
                        self.set_aside(resource, &fc.field, id, Some(&batch), &plan.poison)
                            .await?;
                    }
                    self.retire_applied(resource, fc, id, &names, &applied, &state)
                        .await
                };
                let _ = futures::join!(retire, fold);
                Ok(Attempt::Committed {
                    data: plan.new_data,
                    applied,
                    more: plan.more,
                    set_aside: plan
                        .poison
                        .iter()
                        .map(|d| (d.name.clone(), d.error.clone()))
                        .collect(),
                })
            }
            outcome @ (CommitOutcome::Missing | CommitOutcome::Conflict) => {
                self.drop_attempt(
                    resource,
                    fc,
                    wrote_journal.then_some(&journal_key),
                    delta.is_some().then_some(&entry),
                )
                .await;
                Ok(if outcome == CommitOutcome::Missing {
                    Attempt::Missing
                } else {
                    Attempt::Again
                })
            }
        }
    }

    /// Removes what an attempt that did not commit wrote (best effort).
    pub(super) async fn drop_attempt(
        &self,
        resource: &str,
        fc: &FieldConfig,
        journal: Option<&String>,
        entry: Option<&String>,
    ) {
        if let Some(key) = journal {
            let _ = self.ports.store.delete(key).await;
        }
        if let Some(entry) = entry {
            self.folder
                .drop_inbox_entry(resource, &fc.field, entry)
                .await;
        }
    }

    /// Finishes a committed batch found later: idempotency markers, then key deletion.
    pub(super) async fn retire(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        stale: &[String],
        state: &FieldState,
    ) -> Result<()> {
        let prefix = self.ports.layout.pending(resource, &fc.field, id);
        let mut dead = Vec::new();
        for (name, code, message) in &state.dead {
            if !stale.contains(name) {
                continue;
            }
            let transaction = match parse_key_name(name, id, &fc.field)? {
                NameInfo::Complete(tx) => Some(*tx),
                NameInfo::NeedsBody => {
                    match self.ports.store.get(&format!("{prefix}{name}")).await? {
                        Some(obj) => serde_json::from_slice(&obj.bytes).ok(),
                        None => None,
                    }
                }
            };
            if let Some(transaction) = transaction {
                dead.push(DeadLetter {
                    name: name.clone(),
                    transaction,
                    error: Error::new(poison_code(code), message.clone()),
                });
            }
        }
        if !dead.is_empty() {
            self.set_aside(resource, &fc.field, id, state.batch.as_deref(), &dead)
                .await?;
        }
        let mut txs = Vec::new();
        for name in stale.iter().filter(|n| n.starts_with('~')) {
            if let Some(obj) = self.ports.store.get(&format!("{prefix}{name}")).await?
                && let Ok(tx) = serde_json::from_slice::<Transaction>(&obj.bytes)
            {
                txs.push(tx);
            }
        }
        self.retire_applied(resource, fc, id, stale, &txs, state)
            .await
    }

    /// Writes idempotency markers for applied idempotent transactions, then deletes the keys.
    pub(super) async fn retire_applied(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        names: &[String],
        applied: &[Transaction],
        state: &FieldState,
    ) -> Result<()> {
        let at = self.ports.now_ms();
        let mut markers = Vec::new();
        for tx in applied {
            if let Some(h) = tx.idempotency_hash() {
                let marker = self.ports.layout.idempotency(resource, &fc.field, id, &h);
                let body = formats::encode(&MarkerDoc {
                    transaction: tx.clone(),
                    batch: state.batch.clone(),
                    at,
                })?;
                markers.push((marker, body));
            }
        }
        // `consolidation.markAppliedConcurrency` markers at a time.
        let written: Vec<std::result::Result<(), StoreError>> = futures::stream::iter(markers)
            .map(|(marker, body)| async move {
                match self.ports.store.put(&marker, body, PutMode::Create).await {
                    Ok(_) | Err(StoreError::Conflict { .. }) => Ok(()),
                    Err(e) => Err(e),
                }
            })
            .buffer_unordered(self.config.mark_applied_concurrency.max(1))
            .collect()
            .await;
        written
            .into_iter()
            .collect::<std::result::Result<(), StoreError>>()?;
        let prefix = self.ports.layout.pending(resource, &fc.field, id);
        let keys: Vec<String> = names.iter().map(|n| format!("{prefix}{n}")).collect();
        delete_all(self.ports.store.as_ref(), &keys).await?;
        Ok(())
    }

    /// Writes dead letters (create-only: one already there is kept) and reports each.
    pub(crate) async fn set_aside(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        batch: Option<&str>,
        letters: &[DeadLetter],
    ) -> Result<()> {
        let prefix = self.ports.layout.dead_letters(resource, field);
        for d in letters {
            let bytes = formats::encode(&DeadLetterDoc {
                name: d.name.clone(),
                record_id: id.to_string(),
                transaction: d.transaction.clone(),
                error: ErrorDoc {
                    code: d.error.code().as_str().to_string(),
                    message: d.error.message().to_string(),
                },
                batch: batch.map(str::to_string),
                at: self.ports.now_ms(),
            })?;
            let key = format!("{prefix}{}/{}", crate::keys::id_segment(id), d.name);
            match self.ports.store.put(&key, bytes, PutMode::Create).await {
                Ok(_) => self.events.emit(Event::ConsolidationError {
                    resource: resource.into(),
                    field: field.into(),
                    record_id: Some(id.into()),
                    error: Error::new(
                        d.error.code(),
                        format!(
                            "transaction {} ({} {} on \"{}\") was set aside as a dead letter: {}",
                            d.transaction.id,
                            d.transaction.operation.as_str(),
                            d.transaction.value,
                            d.transaction.field_path,
                            d.error.message()
                        ),
                    ),
                }),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }
}
