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
//!    round trip (see [`crate::fold`]).
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

mod commit;
mod plan;

use crate::amount::{decimal_from_json, decimal_to_json};
use crate::analytics::materialized::{Seen, batch_delta};
use crate::analytics::points::Fact;
use crate::config::FieldConfig;
use crate::config::PluginConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::fold::Folder;
use crate::formats::{
    self, BeforeAfter, DeadLetterDoc, DecimalText, ErrorDoc, FieldState, JournalDeadLetter,
    JournalDoc, MarkerDoc, RECENT_BATCHES, key_token,
};
use crate::keys::split_record_key;
use crate::metrics::RunLog;
use crate::ports::{Ports, Reducers};
use crate::records::{CommitOutcome, StoredRecord};
use crate::resolve::field_config;
use crate::schema::{get_path, set_path};
use crate::store::cas::RetryPolicy;
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
pub(crate) const MAX_BATCH: usize = 1_000;

/// How many times one consolidation reads and tries to commit before it gives up
/// (`ERR_CONFLICT`): each lost compare-and-swap is another consolidator's commit.
const CONSOLIDATE_ATTEMPTS: u32 = 200;

/// Of those attempts, the first ones in which a sync caller whose own key a newer commit
/// applied reads again (to resolve to a value that includes it) instead of going on with a
/// read that does not cover it; after them it takes the value it read.
const OWN_KEY_REREADS: RetryPolicy = RetryPolicy::AtMost(10);

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
pub(crate) struct BatchPlan {
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

impl BatchPlan {
    /// True when the record as read already reflects the pending key `name`, or this plan
    /// applies it: a value from this plan's commit (or read) includes it.
    pub(crate) fn covers(&self, name: &str) -> bool {
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
pub(crate) enum Consolidated {
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
#[derive(Clone, Copy)]
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

    /// [`Consolidator::consolidate_record`]; with `own` (a pending key name this caller wrote), the
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
        let mut applied_all: Vec<Transaction> = Vec::new();
        let policy = RetryPolicy::AtMost(CONSOLIDATE_ATTEMPTS);
        for attempt in policy.attempts() {
            let Some(plan) = self.plan(resource, fc, id, false).await? else {
                return Ok(Consolidated::Missing);
            };
            if let Some(own) = own
                && !plan.covers(own)
                && OWN_KEY_REREADS.attempts().contains(&attempt)
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
        Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "record \"{id}\" of \"{resource}\" kept changing; consolidation gave up after {CONSOLIDATE_ATTEMPTS} attempts"
            ),
        ))
    }
}
