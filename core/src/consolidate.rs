//! Exactly-once consolidation of one record's pending transactions of one field.
//!
//! # Protocol
//!
//! 1. GET the record: its data, version `v`, and bookkeeping `m` = `{seq, batch, done}` where
//!    `done` names the pending keys applied by the batches committed in the last
//!    [`crate::formats::RESURRECTION_WINDOW_MS`] (the last batch always among them).
//! 2. LIST the record's pending keys. Because the record was read first, every listed key is
//!    either applied (in `done`: its deletion still to come, or a late or duplicated create of
//!    a key already consumed), genuinely pending, or applied by a commit after `v` — and then
//!    step 5 fails and everything starts again.
//! 3. `stale` = listed ∩ `done`; `fresh` = the rest, read from key names (a GET only for
//!    idempotent or metadata-carrying ones). Fold the oldest [`MAX_BATCH`] of `fresh` in
//!    (timestamp, id) order.
//! 4. DELETE `stale` (they were applied by the last commit), then PUT the journal of this
//!    batch (create-only, `P/j/…/<seq+1>-<hash>`; it holds the applied transactions). With
//!    analytics, the batch's analytics inbox entry is PUT and the fold state read in the same
//!    round trip (see [`crate::rollups`]).
//! 5. Compare-and-swap the record with the new values and `m = {seq+1, batch, done + fresh}`.
//!    This is the commit point: on a conflict nothing happened; start again. When its outcome
//!    is unknown (the write may have landed, or may still land), read the record again: it
//!    committed if the record names the batch; otherwise start again without removing the
//!    journal or inbox entry, which a late landing would need. With analytics, the inbox is
//!    listed and checked for the fold meanwhile.
//! 6. DELETE `fresh` (best effort; the next consolidation finishes it in step 4). With
//!    analytics, fold the inbox entry at the same time (best effort too; a later fold picks
//!    it up).
//!
//! No transaction is applied twice: a key can only be folded while not in `done`, and the
//! keys of batches that left `done` were deleted before the commit that dropped them, and
//! cannot come back: a late or duplicated create lands within the window of the commit that
//! consumed its key (the fault model in the README). None is lost: keys are deleted only after
//! a commit that applied them. Cost: 4 requests plus one DELETE per 1,000 keys when N keys are
//! pending, whatever N (5–6 with leftovers).

use crate::amount::{decimal_from_json, decimal_to_json};
use crate::analytics::materialized::{Seen, batch_delta};
use crate::analytics::points::Fact;
use crate::config::FieldConfig;
use crate::config::PluginConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::formats::{
    self, BeforeAfter, DeadLetterDoc, DecimalText, ErrorDoc, FieldState, JournalDeadLetter,
    JournalDoc, MarkerDoc, RECENT_BATCHES, key_token,
};
use crate::metrics::RunLog;
use crate::ports::{Ports, Reducers};
use crate::records::{CommitOutcome, StoredRecord};
use crate::rollups::Folder;
use crate::schema::{get_path, set_path};
use crate::store::{PutMode, StoreError, delete_all, list_all};
use crate::txn::{
    DeadLetter, NameInfo, Transaction, is_poison, parse_key_name, poison_code, reduce_default,
};
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};

/// Most transactions one consolidation applies; the rest wait for the next batch.
pub const MAX_BATCH: usize = 1_000;

/// `owned` and `changed`, each path once (the paths a commit names, see
/// [`crate::records::RecordAccess::commit`]).
pub(crate) fn owned_and<'a>(
    owned: &[String],
    changed: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let mut paths = owned.to_vec();
    for p in changed {
        if !paths.contains(p) {
            paths.push(p.clone());
        }
    }
    paths
}

/// How long passes leave a missing record alone after finding it missing, the first time.
const MISSING_FIRST_WAIT_MS: i64 = 30_000;
/// The longest they leave it alone.
const MISSING_MAX_WAIT_MS: i64 = 600_000;
/// Most missing records remembered.
const MISSING_REMEMBERED: usize = 100_000;

fn missing_key(resource: &str, field: &str, id: &str) -> String {
    format!("{resource}/{field}/{}", crate::keys::id_segment(id))
}

/// What a planned consolidation found.
pub(crate) struct Plan {
    /// The record as read.
    pub record: StoredRecord,
    /// The field's bookkeeping.
    pub state: FieldState,
    /// Pending transactions to apply, sorted for reduction, with their key names.
    pub fresh: Vec<(String, Transaction)>,
    /// Keys already applied by the last batch.
    pub stale: Vec<String>,
    /// The record data after applying `fresh`.
    pub new_data: Map<String, Value>,
    /// Values per field path before and after.
    pub values: BTreeMap<String, (Decimal, Decimal)>,
    /// When the record was read (this engine's clock).
    pub read_at: i64,
    /// Tokens of the keys the record as read had applied (from `done`, or the last batch).
    pub applied: HashSet<String>,
    /// More fresh transactions wait beyond [`MAX_BATCH`].
    pub more: bool,
    /// Every listed pending key this plan found fresh (also those beyond [`MAX_BATCH`]).
    pub pending: HashSet<String>,
    /// Fresh transactions that cannot be applied, to set aside with this batch.
    pub poison: Vec<DeadLetter>,
}

impl Plan {
    /// True when the record as read already reflects the pending key `name`, or this plan
    /// applies it: a value from this plan's commit (or read) includes it.
    pub fn covers(&self, name: &str) -> bool {
        self.applied.contains(key_token(name)) || self.pending.contains(name)
    }
}

/// A fold's result: the new data, each path's values before and after, and the keys of the
/// transactions set aside with why.
type Folded = (
    Map<String, Value>,
    BTreeMap<String, (Decimal, Decimal)>,
    Vec<(String, Error)>,
);

/// What one commit attempt of a plan came to.
enum Attempt {
    /// Committed: the record data now, the transactions applied, and whether more wait.
    Committed {
        data: Map<String, Value>,
        applied: Vec<Transaction>,
        more: bool,
        set_aside: Vec<(String, Error)>,
    },
    /// The record is gone.
    Missing,
    /// Not committed: plan again.
    Again,
}

/// The result of consolidating one record.
#[derive(Debug, Clone, PartialEq)]
pub enum Consolidated {
    /// The record does not exist; its transactions stay pending.
    Missing,
    /// Done: the record data now, and how many transactions this call applied.
    Done {
        /// Record data after the commit (or as read when nothing was pending).
        data: Map<String, Value>,
        /// Transactions applied by this call.
        applied: Vec<Transaction>,
    },
}

/// The exactly-once consolidation of one engine: its shared inputs, its configuration and
/// reducers, its analytics fold, and what it remembers of missing records.
pub(crate) struct Consolidator<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The analytics fold a commit feeds.
    pub(crate) folder: Folder<'a>,
    /// Custom reducers by id.
    pub(crate) reducers: &'a Reducers,
    /// Where `consolidation-error` events go.
    pub(crate) events: &'a EventBus,
    /// The run counters (host refusals).
    pub(crate) runs: &'a RunLog,
    /// Records found missing (deleted, or not created yet), with when a pass tries them again
    /// and the wait after that (see [`Consolidator::note_missing`]).
    pub(crate) missing: &'a Mutex<HashMap<String, (i64, i64)>>,
}

impl<'a> Consolidator<'a> {
    fn missing_records(&self) -> MutexGuard<'a, HashMap<String, (i64, i64)>> {
        self.missing.lock().unwrap_or_else(|p| p.into_inner())
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
    ) -> Result<Option<Plan>> {
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
        Ok(Some(Plan {
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
    async fn fold(
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
    async fn journal_keys(
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

    /// Consolidates one record's pending transactions of one field, exactly once.
    pub(crate) async fn consolidate_record(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
    ) -> Result<Consolidated> {
        self.consolidate_record_with(resource, fc, id, None).await
    }

    /// Whether passes may try `id` now (see [`Consolidator::note_missing`]).
    pub(crate) fn pass_may_try(&self, resource: &str, field: &str, id: &str) -> bool {
        let now = self.ports.now_ms();
        self.missing_records()
            .get(&missing_key(resource, field, id))
            .is_none_or(|(next, _)| *next <= now)
    }

    /// Records what a consolidation of `id` found: a missing record is left alone by passes
    /// for 30 s, then twice as long each time, at most 10 minutes (its transactions wait for
    /// it; an insert applies them at once); any other outcome forgets it.
    pub(crate) fn note_missing(&self, resource: &str, field: &str, id: &str, missing: bool) {
        let key = missing_key(resource, field, id);
        let mut map = self.missing_records();
        if !missing {
            map.remove(&key);
            return;
        }
        let wait = map
            .get(&key)
            .map_or(MISSING_FIRST_WAIT_MS, |(_, w)| w.saturating_mul(2))
            .min(MISSING_MAX_WAIT_MS);
        if map.len() < MISSING_REMEMBERED || map.contains_key(&key) {
            map.insert(key, (self.ports.now_ms().saturating_add(wait), wait));
        }
    }

    /// [`Engine::consolidate_record`]; with `own` (a pending key name this caller wrote), the
    /// result is read or committed after that key was applied, so a sync mutation resolves to
    /// a value that includes itself.
    pub(crate) async fn consolidate_record_with(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        own: Option<&str>,
    ) -> Result<Consolidated> {
        let r = self.consolidate_attempts(resource, fc, id, own).await;
        if let Ok(c) = &r {
            self.note_missing(resource, &fc.field, id, matches!(c, Consolidated::Missing));
        }
        // The host database refused the values (its own validation): Tally's value stands,
        // the host copy lags, and the caller hears of it through `consolidation-error`.
        if let Some(error) = self.ports.records.take_refusal(resource, id) {
            self.runs.note_host_refusal();
            self.events.emit(crate::events::Event::ConsolidationError {
                resource: resource.into(),
                field: fc.field.clone(),
                record_id: Some(id.into()),
                error,
            });
        }
        r
    }

    async fn consolidate_attempts(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        own: Option<&str>,
    ) -> Result<Consolidated> {
        let mut attempt: u32 = 0;
        let mut applied_all: Vec<Transaction> = Vec::new();
        loop {
            attempt = attempt.saturating_add(1);
            if attempt > 200 {
                return Err(Error::new(
                    ErrorCode::Conflict,
                    format!(
                        "record \"{id}\" of \"{resource}\" kept changing; consolidation gave up after {} attempts",
                        attempt.saturating_sub(1)
                    ),
                ));
            }
            let Some(plan) = self.plan(resource, fc, id, false).await? else {
                return Ok(Consolidated::Missing);
            };
            if let Some(own) = own
                && !plan.covers(own)
                && attempt <= 10
            {
                // Our key was applied by a commit after this read: read again.
                continue;
            }
            // Our key was set aside by the last batch (another consolidator's, or ours whose
            // answer was lost): a sync caller hears why.
            if let Some(own) = own
                && !plan.pending.contains(own)
                && let Some((_, code, message)) = plan.state.dead.iter().find(|(n, ..)| n == own)
            {
                return Err(Error::new(
                    poison_code(code),
                    format!("{message} (the transaction was set aside as a dead letter)"),
                ));
            }
            if plan.fresh.is_empty() && plan.poison.is_empty() {
                if !plan.stale.is_empty() {
                    self.retire(resource, fc, id, &plan.stale, &plan.state)
                        .await?;
                }
                // Best effort: a lagging host copy is repaired by the next consolidation, and
                // analytics left unfolded by a failed consolidation are folded now.
                let _ = self.ports.records.settle(resource, id).await;
                if self.config.analytics_enabled {
                    let _ = self
                        .folder
                        .fold_analytics(resource, &fc.field, None, None)
                        .await;
                }
                return Ok(Consolidated::Done {
                    data: plan.record.data,
                    applied: applied_all,
                });
            }
            match self.commit_plan(resource, fc, id, plan).await? {
                Attempt::Committed {
                    data,
                    applied,
                    more,
                    set_aside,
                } => {
                    applied_all.extend(applied);
                    if let Some((_, e)) = set_aside.iter().find(|(n, _)| Some(n.as_str()) == own) {
                        // A sync mutation whose own transaction was set aside fails with why.
                        return Err(Error::new(
                            e.code(),
                            format!(
                                "{} (the transaction was set aside as a dead letter)",
                                e.message()
                            ),
                        ));
                    }
                    if !more {
                        return Ok(Consolidated::Done {
                            data,
                            applied: applied_all,
                        });
                    }
                }
                Attempt::Missing => return Ok(Consolidated::Missing),
                Attempt::Again => {
                    self.ports.backoff_after_conflict(attempt).await;
                }
            }
        }
    }

    /// Writes a plan's journal (and analytics inbox entry) and commits it.
    async fn commit_plan(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        plan: Plan,
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
    async fn drop_attempt(
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
    async fn retire(
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
    async fn retire_applied(
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
