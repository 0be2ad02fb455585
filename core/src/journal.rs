//! The committed history of a record, read-only: its journals (one per batch), the chain they
//! form, and checkpoints.
//!
//! A record's committed journals form a chain: its bookkeeping names the last batch, and each
//! journal names the one before (`prev`). Journals not on the chain are leftovers of lost
//! commits and are ignored (and collected by [`crate::gc`]). A checkpoint
//! `P/c/…/<id>/<seq>-<time>` holds every path's value after batch `seq`; GC writes one at each
//! checkpoint period's last batch and before it deletes the journals it covers.

use crate::error::Result;
use crate::formats::{self, CheckpointDoc, DecimalText, FieldState, JournalDoc, StoredMarker};
use crate::keys::{Layout, batch_seq};
use crate::records::RecordAccess;
use crate::store::{SharedStore, list_all};
use crate::txn::Transaction;
use rust_decimal::Decimal;
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
            hash: crate::keys::sha256_hex(bytes),
            prev_hash: doc.prev_hash,
            base: doc.base,
        },
        doc.prev,
    ))
}

/// Reads the journal chain and checkpoints of records: the store, where things live in it,
/// and the records' bookkeeping.
pub(crate) struct Journals<'a> {
    /// The transaction store.
    pub(crate) store: &'a SharedStore,
    /// Its key layout.
    pub(crate) layout: &'a Layout,
    /// The records (their bookkeeping names the last batch).
    pub(crate) records: &'a dyn RecordAccess,
}

impl Journals<'_> {
    /// The ids of the records of a field that have journals or checkpoints (one LIST page per
    /// 1,000 of each).
    pub(crate) async fn ids_with_history(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<std::collections::BTreeSet<String>> {
        let mut ids = std::collections::BTreeSet::new();
        for prefix in [
            self.layout.journals_field(resource, field),
            self.layout.checkpoints_field(resource, field),
        ] {
            ids.extend(
                list_all(self.store.as_ref(), &prefix)
                    .await?
                    .iter()
                    .filter_map(|k| crate::keys::split_record_key(&prefix, k).map(|(id, _)| id)),
            );
        }
        Ok(ids)
    }

    /// The committed journals of a record's field, oldest first (back to the first one GC
    /// kept), and the keys of journals that are not on the chain and never will be.
    ///
    /// The record is read before the journals are listed, so the journal of every batch it
    /// names was written before the listing and is listed. A listed journal not on the chain
    /// is a leftover of a lost commit when its batch number is at most the head's (a later
    /// one may belong to a commit in flight) and the chain is known at that number: above
    /// the point where the walk stopped (the first batch, or one GC removed), or below it
    /// when a checkpoint covers that point.
    pub(crate) async fn chain(
        &self,
        resource: &str,
        field: &str,
        id: &str,
    ) -> Result<(Vec<Journal>, Vec<String>)> {
        let (chain, orphans, _) = self.chain_and_state(resource, field, id, 0).await?;
        Ok((chain, orphans))
    }

    /// [`Journals::chain`] down to the batch after `floor` only, with the field's
    /// bookkeeping as read first.
    pub(crate) async fn chain_and_state(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        floor: u64,
    ) -> Result<(Vec<Journal>, Vec<String>, FieldState)> {
        // Also a deleted record's: its tombstone names its history (see `crate::records`).
        let Some(meta) = self.records.bookkeeping(resource, id).await? else {
            return Ok((Vec::new(), Vec::new(), FieldState::default()));
        };
        let prefix = self.layout.journals(resource, field, id);
        let keys: std::collections::HashSet<String> = list_all(self.store.as_ref(), &prefix)
            .await?
            .into_iter()
            .collect();
        let state = FieldState::of(&meta, field);
        let mut chain = Vec::new();
        let mut next = state.batch.clone();
        // The batch number below the walk's last journal (0 when it reached the first batch).
        let mut stop = 0;
        while let Some(batch) = next {
            if batch_seq(&batch).is_some_and(|s| s <= floor) {
                stop = floor;
                break;
            }
            let key = format!("{prefix}{batch}");
            let found = match keys.contains(&key) {
                true => self.store.get(&key).await?,
                false => None,
            };
            let Some(obj) = found else {
                stop = batch_seq(&batch).unwrap_or(0);
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
            .filter_map(|k| Some((batch_seq(k.strip_prefix(&prefix)?)?, k)))
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
    pub(crate) async fn latest_checkpoint(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        base: u64,
    ) -> Result<Option<Checkpoint>> {
        let prefix = self.layout.checkpoints(resource, field, id);
        let Some(last) = list_all(self.store.as_ref(), &prefix).await?.pop() else {
            return Ok(None);
        };
        if checkpoint_seq(&last).is_none_or(|s| s <= base) {
            return Ok(None);
        }
        self.read_checkpoint(&last).await
    }

    /// Reads one checkpoint.
    pub(crate) async fn read_checkpoint(&self, key: &str) -> Result<Option<Checkpoint>> {
        let Some(obj) = self.store.get(key).await? else {
            return Ok(None);
        };
        Checkpoint::decode(key, &obj.bytes).map(Some)
    }
}

/// The batch number of a checkpoint key `…/<seq>[-<time>]`.
fn checkpoint_seq(key: &str) -> Option<u64> {
    crate::keys::parse_batch(key.rsplit('/').next()?).map(|(seq, _)| seq)
}
