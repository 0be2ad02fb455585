//! History: the committed journal chain of a record, `recalculate`, checkpoints and garbage
//! collection.
//!
//! A record's committed journals form a chain: its bookkeeping names the last batch, and each
//! journal names the one before (`prev`). Journals not on the chain are leftovers of lost
//! commits and are ignored (and collected). A checkpoint `P/c/…/<id>/<seq>` holds every path's
//! value after batch `seq`; GC writes one before it deletes the journals it covers, so
//! `recalculate` (last checkpoint + later journals) stays exact after any GC.

use crate::amount::decimal_to_json;
use crate::config::FieldConfig;
use crate::consolidate::FieldState;
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::events::Event;
use crate::keys::check_record_id;
use crate::records::CommitOutcome;
use crate::schema::{get_path, set_path};
use crate::store::{PutMode, list_all};
use crate::txn::{Transaction, reduce_default};
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;

/// One committed journal.
#[derive(Debug, Clone)]
pub struct Journal {
    /// Its key.
    pub key: String,
    /// Batch sequence number.
    pub seq: u64,
    /// When it was committed (epoch ms).
    pub committed_at: i64,
    /// The applied transactions.
    pub transactions: Vec<Transaction>,
    /// Per path: value before and after the batch.
    pub values: BTreeMap<String, (Decimal, Decimal)>,
}

/// A checkpoint: every path's value after batch `seq`.
#[derive(Debug, Clone)]
struct Checkpoint {
    seq: u64,
    values: BTreeMap<String, Decimal>,
}

fn parse_journal(key: &str, bytes: &[u8]) -> Result<(Journal, Option<String>)> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| Error::storage(format!("unreadable journal {key}: {e}")))?;
    let dec = |x: &Value| {
        x.as_str()
            .and_then(|s| Decimal::from_str(s).ok())
            .unwrap_or_default()
    };
    let values = v["values"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(p, ba)| (p.clone(), (dec(&ba["before"]), dec(&ba["after"]))))
                .collect()
        })
        .unwrap_or_default();
    let transactions = serde_json::from_value(v["transactions"].clone())
        .map_err(|e| Error::storage(format!("unreadable journal {key}: {e}")))?;
    Ok((
        Journal {
            key: key.to_string(),
            seq: v["seq"].as_u64().unwrap_or(0),
            committed_at: v["committedAt"].as_i64().unwrap_or(0),
            transactions,
            values,
        },
        v["prev"].as_str().map(str::to_string),
    ))
}

impl Engine {
    /// The committed journals of a record's field, oldest first (back to the first one GC
    /// kept), and the keys of journals that are not on the chain and never will be.
    ///
    /// The record is read before the journals are listed, so the journal of every batch it
    /// names was written before the listing and is listed. A listed journal not on the chain
    /// is a leftover of a lost commit when its batch number is at most the head's (a later
    /// one may belong to a commit in flight) and the chain is known at that number: above
    /// the point where the walk stopped (the first batch, or one GC removed), or below it
    /// when a checkpoint covers that point.
    pub async fn journal_chain(
        &self,
        resource: &str,
        field: &str,
        id: &str,
    ) -> Result<(Vec<Journal>, Vec<String>)> {
        let (chain, orphans, _) = self.chain_and_state(resource, field, id).await?;
        Ok((chain, orphans))
    }

    /// [`Engine::journal_chain`], with the field's bookkeeping as read first.
    async fn chain_and_state(
        &self,
        resource: &str,
        field: &str,
        id: &str,
    ) -> Result<(Vec<Journal>, Vec<String>, FieldState)> {
        // Also a deleted record's: its tombstone names its history (see `crate::records`).
        let Some(meta) = self.records().bookkeeping(resource, id).await? else {
            return Ok((Vec::new(), Vec::new(), FieldState::default()));
        };
        let prefix = self.layout().journals(resource, field, id);
        let keys: std::collections::HashSet<String> = list_all(self.store().as_ref(), &prefix)
            .await?
            .into_iter()
            .collect();
        let state = FieldState::of(&meta, field);
        let mut chain = Vec::new();
        let mut next = state.batch.clone();
        // The batch number below the walk's last journal (0 when it reached the first batch).
        let mut stop = 0;
        while let Some(batch) = next {
            let key = format!("{prefix}{batch}");
            let found = match keys.contains(&key) {
                true => self.store().get(&key).await?,
                false => None,
            };
            let Some(obj) = found else {
                stop = seq_of(&batch).unwrap_or(0);
                break;
            };
            let (journal, prev) = parse_journal(&key, &obj.bytes)?;
            chain.push(journal);
            next = prev;
        }
        chain.reverse();
        let on_chain: std::collections::HashSet<&str> =
            chain.iter().map(|j| j.key.as_str()).collect();
        let head_seq = state.seq;
        let mut candidates: Vec<(u64, &String)> = keys
            .iter()
            .filter(|k| !on_chain.contains(k.as_str()))
            .filter_map(|k| Some((seq_of(k.strip_prefix(&prefix)?)?, k)))
            .filter(|(s, _)| *s <= head_seq)
            .collect();
        if candidates.iter().any(|(s, _)| *s <= stop) {
            let covered = self
                .latest_checkpoint(resource, field, id, 0)
                .await?
                .is_some_and(|cp| cp.seq >= stop);
            if !covered {
                candidates.retain(|(s, _)| *s > stop);
            }
        }
        let mut orphans: Vec<String> = candidates.into_iter().map(|(_, k)| k.clone()).collect();
        orphans.sort();
        Ok((chain, orphans, state))
    }

    /// The newest checkpoint of the incarnation whose history starts after batch `base`.
    async fn latest_checkpoint(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        base: u64,
    ) -> Result<Option<Checkpoint>> {
        let prefix = self.layout().checkpoints(resource, field, id);
        let Some(last) = list_all(self.store().as_ref(), &prefix).await?.pop() else {
            return Ok(None);
        };
        if checkpoint_seq(&last).is_none_or(|s| s <= base) {
            return Ok(None);
        }
        let Some(obj) = self.store().get(&last).await? else {
            return Ok(None);
        };
        let v: Value =
            serde_json::from_slice(&obj.bytes).map_err(|e| Error::storage(e.to_string()))?;
        Ok(Some(Checkpoint {
            seq: v["seq"].as_u64().unwrap_or(0),
            values: v["values"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .filter_map(|(p, x)| {
                            x.as_str()
                                .and_then(|s| Decimal::from_str(s).ok())
                                .map(|d| (p.clone(), d))
                        })
                        .collect()
                })
                .unwrap_or_default(),
        }))
    }

    /// Rebuilds the field's values from history (last checkpoint, or the value each path had
    /// before its first transaction, plus every later journal), writes them, and returns the
    /// value at the path. Pending transactions are applied first.
    pub async fn recalculate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
    ) -> Result<Option<Value>> {
        check_record_id(id)?;
        let target = self.resolve(resource, field).await?;
        let fc = target.field.clone();
        for _ in 0..10 {
            if let crate::consolidate::Consolidated::Missing =
                self.consolidate_record(resource, &fc, id).await?
            {
                return Ok(None);
            }
            let (chain, _, read) = self.chain_and_state(resource, &fc.field, id).await?;
            // This incarnation's history only (see `crate::records`).
            let chain: Vec<Journal> = chain.into_iter().filter(|j| j.seq > read.base).collect();
            let checkpoint = self
                .latest_checkpoint(resource, &fc.field, id, read.base)
                .await?;
            let values = self
                .replay(&fc, &chain, checkpoint.as_ref(), read.base)
                .await?;
            let Some(record) = self.records().load(resource, id).await? else {
                return Ok(None);
            };
            let state = FieldState::of(&record.meta, &fc.field);
            let replayed_to_head = match chain.last() {
                Some(j) => state.batch == Some(batch_of(&j.key)),
                // Every journal collected: the checkpoint holds the head's values; or no batch
                // in this incarnation yet.
                None => {
                    state.batch.is_none()
                        || state.seq == read.base
                        || checkpoint.as_ref().is_some_and(|c| c.seq == state.seq)
                }
            } && state.base == read.base;
            if !replayed_to_head {
                continue; // a consolidation committed meanwhile: replay again
            }
            let mut data = record.data.clone();
            for (path, v) in &values {
                set_path(&mut data, path, decimal_to_json(*v));
            }
            match self
                .records()
                .commit(resource, id, data.clone(), record.meta, &record.version)
                .await?
            {
                CommitOutcome::Committed => {
                    return Ok(Some(
                        get_path(&data, &target.path)
                            .cloned()
                            .unwrap_or(Value::Null),
                    ));
                }
                CommitOutcome::Missing => return Ok(None),
                CommitOutcome::Conflict => continue,
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "record \"{id}\" of \"{resource}\" kept changing during recalculate; try again"
            ),
        ))
    }

    async fn replay(
        &self,
        fc: &FieldConfig,
        chain: &[Journal],
        cp: Option<&Checkpoint>,
        base: u64,
    ) -> Result<BTreeMap<String, Decimal>> {
        let mut values: BTreeMap<String, Decimal> =
            cp.map(|c| c.values.clone()).unwrap_or_default();
        let from = cp.map(|c| c.seq).unwrap_or(base);
        let first_kept = chain
            .first()
            .map(|j| j.seq)
            .unwrap_or(from.saturating_add(1));
        if first_kept > from.saturating_add(1) {
            return Err(Error::new(
                ErrorCode::Storage,
                format!(
                    "history of \"{}\" is incomplete: journals before batch {first_kept} are gone and no checkpoint covers them",
                    fc.field
                ),
            ));
        }
        for j in chain.iter().filter(|j| j.seq > from) {
            let mut by_path: BTreeMap<&str, Vec<&Transaction>> = BTreeMap::new();
            for tx in &j.transactions {
                by_path.entry(tx.field_path.as_str()).or_default().push(tx);
            }
            for (path, txs) in by_path {
                let start = match values.get(path) {
                    Some(v) => *v,
                    None => j
                        .values
                        .get(path)
                        .map(|(b, _)| *b)
                        .unwrap_or(fc.initial_value),
                };
                let end = match fc.reducer.and_then(|r| self.reducer(r)) {
                    Some(r) => r.reduce(start, &txs, self.zone()).await?,
                    None => reduce_default(start, &txs)?,
                };
                values.insert(path.to_string(), end);
            }
        }
        Ok(values)
    }

    /// Garbage collection of every configured field: journals (applied transactions) older
    /// than `garbageCollection.retention`, after writing the checkpoint that covers them;
    /// leftover journals of lost commits; idempotency markers past retention; checkpoints past
    /// `checkpoints.retention` except each record's newest. Pending transactions are never
    /// touched. Emits `gc-completed` per field.
    pub async fn run_gc(&self) -> Result<()> {
        self.note_gc_run();
        let fields = self.configured_fields();
        for (resource, fc) in fields {
            match self.gc_field(&resource, &fc).await {
                Ok((deleted, errors)) => self.events().emit(Event::GcCompleted {
                    resource: resource.clone(),
                    field: fc.field.clone(),
                    deleted_count: deleted,
                    error_count: errors,
                }),
                Err(error) => self.events().emit(Event::GcError { error }),
            }
        }
        Ok(())
    }

    /// Which of the journals about to be collected get a checkpoint: with
    /// `checkpoints.enabled`, the last batch of every hour (strategy `hourly`) or day (`daily`,
    /// in `cohort.timezone`) they were committed in, within `checkpoints.retention`; and
    /// always the last one, which `recalculate` needs.
    fn checkpoint_ends(&self, old: &[&Journal], cp_cutoff: i64) -> Vec<usize> {
        use crate::analytics::calendar::cohort_label;
        let period = if self.config().checkpoints_hourly {
            crate::config::Period::Hour
        } else {
            crate::config::Period::Day
        };
        let label = |j: &Journal| cohort_label(j.committed_at, period, self.zone());
        let last = old.len().saturating_sub(1);
        (0..old.len())
            .filter(|&i| {
                i == last
                    || (self.config().checkpoints_enabled
                        && old[i].committed_at >= cp_cutoff
                        && old
                            .get(i.saturating_add(1))
                            .is_some_and(|n| label(old[i]) != label(n)))
            })
            .collect()
    }

    async fn gc_field(&self, resource: &str, fc: &FieldConfig) -> Result<(u64, u64)> {
        let now = self.now_ms();
        let cutoff = now.saturating_sub((self.config().gc_retention_days * 86_400_000.0) as i64);
        let orphan_cutoff = now.saturating_sub((self.config().lock_timeout_s * 1000.0) as i64);
        let prefix = self.layout().journals_field(resource, &fc.field);
        let mut ids: Vec<String> = list_all(self.store().as_ref(), &prefix)
            .await?
            .iter()
            .filter_map(|k| crate::keys::split_record_key(&prefix, k).map(|(id, _)| id))
            .collect();
        ids.dedup();
        let mut deleted = 0u64;
        let mut errors = 0u64;
        let cutoffs = (
            cutoff,
            orphan_cutoff,
            now.saturating_sub((self.config().checkpoints_retention_days * 86_400_000.0) as i64),
        );
        for id in ids {
            // One record's trouble never stops the collection of the others.
            match self.gc_record(resource, fc, &id, cutoffs).await {
                Ok((d, e)) => {
                    deleted = deleted.saturating_add(d);
                    errors = errors.saturating_add(e);
                }
                Err(_) => errors = errors.saturating_add(1),
            }
        }
        let marker_prefix = self.layout().idempotency_field(resource, &fc.field);
        // A marker outlives the window in which a record's bookkeeping still remembers its
        // key as applied (`done`), whatever the retention: a key reused meanwhile is then
        // answered as a duplicate rather than taken as new and dropped as stale.
        let marker_cutoff =
            cutoff.min(now.saturating_sub(crate::consolidate::RESURRECTION_WINDOW_MS));
        let mut stale_markers = Vec::new();
        for key in list_all(self.store().as_ref(), &marker_prefix).await? {
            if let Some(obj) = self.store().get(&key).await? {
                let at = serde_json::from_slice::<Value>(&obj.bytes)
                    .ok()
                    .and_then(|v| v["at"].as_i64())
                    .unwrap_or(0);
                if at < marker_cutoff {
                    stale_markers.push(key);
                }
            }
        }
        match crate::store::delete_all(self.store().as_ref(), &stale_markers).await {
            Ok(()) => deleted = deleted.saturating_add(stale_markers.len() as u64),
            Err(_) => errors = errors.saturating_add(1),
        }
        Ok((deleted, errors))
    }

    /// Collects one record's old journals (after the checkpoints that cover them), its
    /// orphan journals and its expired checkpoints; returns (deleted, errors).
    async fn gc_record(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        (cutoff, orphan_cutoff, cp_cutoff): (i64, i64, i64),
    ) -> Result<(u64, u64)> {
        let (chain, orphans, state) = self.chain_and_state(resource, &fc.field, id).await?;
        let mut doomed: Vec<String> = Vec::new();
        for key in orphans {
            if let Some(obj) = self.store().get(&key).await? {
                let (j, _) = parse_journal(&key, &obj.bytes)?;
                if j.committed_at < orphan_cutoff {
                    doomed.push(key);
                }
            }
        }
        // Earlier incarnations' history (a deleted record's, see `crate::records`) needs no
        // checkpoint: nothing replays it any more.
        let (retired, chain) = chain.split_at(chain.partition_point(|j| j.seq <= state.base));
        doomed.extend(
            retired
                .iter()
                .filter(|j| j.committed_at < cutoff)
                .map(|j| j.key.clone()),
        );
        // The newest journal too, once the bookkeeping remembers its keys itself (`done`);
        // older bookkeeping reads them from that journal.
        let keep = usize::from(state.done.is_none());
        let old: Vec<&Journal> = chain[..chain.len().saturating_sub(keep)]
            .iter()
            .take_while(|j| j.committed_at < cutoff)
            .collect();
        if !old.is_empty() {
            let cp = self
                .latest_checkpoint(resource, &fc.field, id, state.base)
                .await?;
            for end in self.checkpoint_ends(&old, cp_cutoff) {
                let j = old[end];
                let values = self
                    .replay(fc, &chain[..=end], cp.as_ref(), state.base)
                    .await?;
                let body = json!({
                    "seq": j.seq,
                    "at": j.committed_at,
                    "values": values.iter().map(|(p, v)| (p.clone(), Value::String(v.to_string()))).collect::<Map<String, Value>>(),
                });
                let key = format!(
                    "{}{:010}",
                    self.layout().checkpoints(resource, &fc.field, id),
                    j.seq
                );
                self.store()
                    .put(
                        &key,
                        serde_json::to_vec(&body).unwrap_or_default(),
                        PutMode::Overwrite,
                    )
                    .await?;
            }
            doomed.extend(old.iter().map(|j| j.key.clone()));
        }
        // Checkpoints past their retention, keeping the newest of this incarnation.
        let cp_prefix = self.layout().checkpoints(resource, &fc.field, id);
        let cps = list_all(self.store().as_ref(), &cp_prefix).await?;
        let keep_newest = usize::from(
            cps.last()
                .and_then(|k| checkpoint_seq(k))
                .is_some_and(|s| s > state.base),
        );
        for key in cps.iter().rev().skip(keep_newest) {
            if let Some(obj) = self.store().get(key).await? {
                let at = serde_json::from_slice::<Value>(&obj.bytes)
                    .ok()
                    .and_then(|v| v["at"].as_i64())
                    .unwrap_or(0);
                if at < cp_cutoff {
                    doomed.push(key.clone());
                }
            }
        }
        match crate::store::delete_all(self.store().as_ref(), &doomed).await {
            Ok(()) => Ok((doomed.len() as u64, 0)),
            Err(_) => Ok((0, 1)),
        }
    }
}

/// The batch number of a checkpoint key `…/<seq>`.
fn checkpoint_seq(key: &str) -> Option<u64> {
    key.rsplit('/').next()?.parse().ok()
}

/// The batch number of a journal name `<seq>-<nonce>`.
fn seq_of(batch: &str) -> Option<u64> {
    batch.split('-').next()?.parse().ok()
}

fn batch_of(key: &str) -> String {
    key.rsplit('/').next().unwrap_or_default().to_string()
}
