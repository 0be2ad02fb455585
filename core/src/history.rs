//! History: the committed journal chain of a record, checkpoints and `recalculate`.
//!
//! A record's committed journals form a chain: its bookkeeping names the last batch, and each
//! journal names the one before (`prev`). Journals not on the chain are leftovers of lost
//! commits and are ignored (and collected by [`crate::gc`]). A checkpoint
//! `P/c/…/<id>/<seq>-<time>` holds every path's value after batch `seq`; GC writes one at each
//! checkpoint period's last batch and before it deletes the journals it covers, so
//! `recalculate` (last checkpoint + later journals) stays exact after any GC.

use crate::amount::decimal_to_json;
use crate::config::FieldConfig;
use crate::consolidate::FieldState;
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::formats::{self, CheckpointDoc, DecimalText, JournalDoc, StoredMarker};
use crate::keys::check_record_id;
use crate::records::CommitOutcome;
use crate::schema::{get_path, set_path};
use crate::store::list_all;
use crate::txn::{Transaction, reduce_default};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

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
    /// Hex SHA-256 of its stored bytes.
    pub hash: String,
    /// The hash its predecessor had when it was written (`None` for the first batch, and in
    /// journals written before journals were chained).
    pub prev_hash: Option<String>,
    /// The batches of earlier incarnations of the id when it was written (see
    /// [`crate::records`]).
    pub base: u64,
}

/// A checkpoint: every path's value after batch `seq`.
#[derive(Debug, Clone)]
pub(crate) struct Checkpoint {
    /// The batch it follows.
    pub seq: u64,
    /// That batch's commit time.
    pub at: i64,
    /// Every path's value after it.
    pub values: BTreeMap<String, Decimal>,
    /// The hash of the journal of batch `seq`: the checkpoint's place in the hash chain
    /// (`None` in checkpoints written before journals were chained).
    pub hash: Option<String>,
    /// Idempotency markers of collected transactions still too young to go (see
    /// [`crate::gc`]).
    pub markers: Vec<Marker>,
}

/// An idempotency marker GC is to collect: its key, its batch's commit time, and the
/// transaction it stands for (a key reused later gets a new marker at the same key, which is
/// not this one).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Marker {
    /// The marker's key.
    pub key: String,
    /// When its batch was committed (or the marker written, once read).
    pub at: i64,
    /// The id of the transaction it names, when known.
    pub tx: Option<String>,
}

impl Marker {
    fn stored(&self) -> StoredMarker {
        (self.key.clone(), self.at, self.tx.clone())
    }
}

impl Checkpoint {
    /// Encodes it as stored.
    pub(crate) fn encode(&self) -> Result<Vec<u8>> {
        formats::encode(&CheckpointDoc {
            seq: self.seq,
            at: self.at,
            values: self
                .values
                .iter()
                .map(|(p, v)| (p.clone(), DecimalText(*v)))
                .collect(),
            hash: self.hash.clone(),
            markers: self.markers.iter().map(Marker::stored).collect(),
        })
    }

    /// Decodes the stored checkpoint at `key`.
    pub(crate) fn decode(key: &str, bytes: &[u8]) -> Result<Checkpoint> {
        let doc: CheckpointDoc = formats::decode("checkpoint", key, bytes)?;
        Ok(Checkpoint {
            seq: doc.seq,
            at: doc.at,
            values: doc.values.into_iter().map(|(p, v)| (p, v.0)).collect(),
            hash: doc.hash,
            markers: doc
                .markers
                .into_iter()
                .map(|(key, at, tx)| Marker { key, at, tx })
                .collect(),
        })
    }
}

/// Decodes a stored journal, with the name of the batch before it.
pub(crate) fn parse_journal(key: &str, bytes: &[u8]) -> Result<(Journal, Option<String>)> {
    let doc: JournalDoc = formats::decode("journal", key, bytes)?;
    Ok((
        Journal {
            key: key.to_string(),
            seq: doc.seq,
            committed_at: doc.committed_at,
            transactions: doc.transactions,
            values: doc
                .values
                .into_iter()
                .map(|(p, v)| (p, (v.before.0, v.after.0)))
                .collect(),
            hash: crate::verify::sha256_hex(bytes),
            prev_hash: doc.prev_hash,
            base: doc.base,
        },
        doc.prev,
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
        let (chain, orphans, _) = self.chain_and_state(resource, field, id, 0).await?;
        Ok((chain, orphans))
    }

    /// [`Engine::journal_chain`] down to the batch after `floor` only, with the field's
    /// bookkeeping as read first.
    async fn chain_and_state(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        floor: u64,
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
            if seq_of(&batch).is_some_and(|s| s <= floor) {
                stop = floor;
                break;
            }
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
        self.read_checkpoint(&last).await
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
            // The newest checkpoint of this incarnation first: only later journals are read.
            let Some(meta) = self.records().bookkeeping(resource, id).await? else {
                return Ok(None);
            };
            let base = FieldState::of(&meta, &fc.field).base;
            let checkpoint = self
                .latest_checkpoint(resource, &fc.field, id, base)
                .await?;
            let floor = checkpoint.as_ref().map_or(base, |c| c.seq);
            let (chain, _, read) = self.chain_and_state(resource, &fc.field, id, floor).await?;
            let chain: Vec<Journal> = chain.into_iter().filter(|j| j.seq > floor).collect();
            let gap = chain
                .first()
                .is_some_and(|j| j.seq != floor.saturating_add(1));
            if read.base != base
                || (gap
                    && self
                        .latest_checkpoint(resource, &fc.field, id, base)
                        .await?
                        .map(|c| c.seq)
                        != checkpoint.as_ref().map(|c| c.seq))
            {
                continue; // deleted and created again, or a GC moved the checkpoint meanwhile
            }
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
                .commit(
                    resource,
                    id,
                    data.clone(),
                    record.meta,
                    &record.version,
                    &crate::consolidate::owned_and(&record.owned, values.keys()),
                )
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

    pub(crate) async fn replay(
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
            let ends = self.reduce_journal(fc, j, &values).await?;
            values.extend(ends);
        }
        Ok(values)
    }

    /// The value each path of journal `j` ends at when its transactions are applied to
    /// `values` (or, for a path `values` lacks, to the value the journal says it had before).
    pub(crate) async fn reduce_journal(
        &self,
        fc: &FieldConfig,
        j: &Journal,
        values: &BTreeMap<String, Decimal>,
    ) -> Result<BTreeMap<String, Decimal>> {
        let mut by_path: BTreeMap<&str, Vec<&Transaction>> = BTreeMap::new();
        for tx in &j.transactions {
            by_path.entry(tx.field_path.as_str()).or_default().push(tx);
        }
        let mut ends = BTreeMap::new();
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
            ends.insert(path.to_string(), end);
        }
        Ok(ends)
    }
}

/// The batch number of a checkpoint key `…/<seq>[-<time>]`.
fn checkpoint_seq(key: &str) -> Option<u64> {
    crate::gc::parse_batch(key.rsplit('/').next()?).map(|(seq, _)| seq)
}

/// The batch number of a journal name `<seq>-<nonce>`.
pub(crate) fn seq_of(batch: &str) -> Option<u64> {
    batch.split('-').next()?.parse().ok()
}

fn batch_of(key: &str) -> String {
    key.rsplit('/').next().unwrap_or_default().to_string()
}
