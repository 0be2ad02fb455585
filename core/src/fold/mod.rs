//! Materialized analytics in storage: every committed batch leaves an inbox entry with its
//! contribution; a fold moves inbox entries into the packed hour/day/week/month objects
//! exactly once; queries read the packed objects.
//!
//! # Protocol
//!
//! Under `P/a/<resource>/<field>/`:
//! - `in/<id>/<batch>`: written create-only by a consolidation *before* its commit, holding the
//!   batch's [`Delta`]. The entry of a batch that never commits is an orphan: the fold checks
//!   the record's bookkeeping (its last batch and the 16 before it) before folding a foreign
//!   entry, and deletes orphans.
//! - `fold`: `{seq, keys, plan, flush, trim}`: how many folds committed; the entries folded
//!   since the packed objects were last written (they may still exist); their contribution
//!   per packed object; whether fold `seq` writes that plan to the packed objects; and how
//!   many folds have dropped entries from `keys`.
//! - `h/<YYYY-MM>`, `y/<YYYY>`: packed points `{fold, p}`; `fold` is the last fold written in.
//! - `t/<label>`: the same for one cohort's top object, its points by record id (see
//!   [`crate::analytics::materialized`]). The fold state's `top` says since when folds carry
//!   them: 0 for a field whose analytics began with them, else the time this version first
//!   folded (a cohort that began earlier is answered from the journals).
//!
//! A fold reads `fold`, then LISTs the inbox: a listed entry is in `keys` (folded, deletion
//! pending) or new. Then it reads `fold` again (version `v`) while it checks the new entries,
//! adds the committed ones to the plan and commits by compare-and-swap of `fold` at `v`: the
//! commit point. Reading the state just before the swap keeps the window in which another
//! fold can intervene to one round trip. Most folds stop there (a query applies the plan to
//! the packed objects in memory). When the plan grows past [`FLUSH_POINTS`] points or
//! [`FLUSH_KEYS`] entries, the fold flushes: after its commit it writes the plan into the
//! packed objects (each at most once: `fold < seq` means "not yet") and deletes the entries;
//! the next fold finishes any object still behind before it starts a new plan. A crash
//! anywhere leaves either nothing or a committed state that the next fold (or query)
//! completes, so nothing is lost or counted twice. Concurrent consolidations batch: whoever
//! wins the swap folds every committed entry it saw, and a loser reads the state again (its
//! entry may be in `keys` now) and retries with the same listing.
//!
//! The rule that makes this exact: an entry listed *after* a state was read and absent from
//! that state's `keys` had not been folded as of that state (a folded entry stays in `keys`
//! until a LIST no longer shows it, and deleted entries never come back). Such a listing
//! stays valid for any later state with the same `trim`: while `trim` is unchanged no entry
//! has left `keys`, so an entry still absent from them is still unfolded. A swap on such a
//! state folds each listed entry at most once; a fold that leaves entries out of `keys`
//! (those of its base state a LIST no longer showed) increments `trim`, and whoever holds an
//! older listing lists again.
//!
//! Within one process, the engine knows more than storage tells: the entries of its own
//! consolidations under way are left to them (not checked, not folded by others of its
//! folds), the entries it committed or found committed are remembered with their
//! contribution, two of its folds never check the same entry at the same time, and the
//! state it last read or wrote is parsed once.

mod inbox;
mod local;
mod state;

use state::*;

pub(crate) use local::{FoldCache, InFlight};
pub(crate) use state::{FoldBody, FoldScan, FoldState};

use crate::analytics::materialized::{
    Delta, Packed, delta_from_json, delta_to_json, is_top_object, lacks_top, merge_packed,
    packed_from_json, packed_to_json,
};
use crate::error::{Error, Result};
use crate::formats::{self, FoldDoc, InboxDoc, PackedDoc};
use crate::formats::{FieldState, RECENT_BATCHES, RESURRECTION_WINDOW_MS};
use crate::keys::batch_seq;
use crate::ports::Ports;
use crate::store::cas::RetryPolicy;
use crate::store::{PutMode, StoreError, Version, delete_all, list_all};
use futures::StreamExt;
use futures::channel::oneshot;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

/// A plan is written to the packed objects (flushed) once it holds more cohort points than
/// this…
const FLUSH_POINTS: usize = 256;
/// …or more points of top objects than this (one per record and cohort)…
const FLUSH_TOP_POINTS: usize = 1024;
/// …or names more folded entries than this.
const FLUSH_KEYS: usize = 64;

/// A packed object as read.
pub(crate) struct PackedObject {
    pub(crate) fold: u64,
    pub(crate) points: Packed,
    version: Option<Version>,
}

/// An inbox entry as a fold checked it: its name, status and (when committed) contribution.
type EntryCheck = (String, EntryStatus, Option<Arc<Delta>>);

/// Whether an inbox entry's batch was committed.
enum EntryStatus {
    Committed,
    Orphan,
    Undecided,
}

fn corrupt(key: &str) -> Error {
    Error::storage(format!("unreadable analytics object {key}"))
}

/// The analytics fold of one engine: its shared inputs and what it knows locally of inbox
/// entries and fold states (one [`FoldCache`] per engine, never one per call).
#[derive(Clone, Copy)]
pub(crate) struct Folder<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// What this engine knows of inbox entries and fold states.
    pub(crate) local: &'a FoldCache,
}

impl<'a> Folder<'a> {
    /// Folds committed inbox entries, exactly once. With `own` (an entry whose batch the
    /// caller just committed, and its contribution), returns once that entry is folded, by
    /// this call or another. `scan` is one made alongside the commit (after `own` was written).
    pub(crate) async fn fold_analytics(
        &self,
        resource: &str,
        field: &str,
        own: Option<(&str, &Delta)>,
        scan: Option<FoldScan>,
    ) -> Result<()> {
        let inbox = self.ports.layout.analytics_inbox(resource, field);
        let own_name = own.map(|(n, _)| n);
        let mut next = scan.map(FoldStart::Scanned);
        // Every start counts, trim restarts included; a lost swap of the fold state after the
        // 200th gives up (a trim changes only when another fold made progress).
        let conflicts = RetryPolicy::AtMost(200);
        for attempt in RetryPolicy::UntilDone.attempts() {
            let mut scan = match next.take() {
                Some(FoldStart::Scanned(scan)) => scan,
                Some(FoldStart::Read(state)) => {
                    self.scan_inbox(resource, field, own_name, state).await?
                }
                None => self.scan_fold(resource, field, own_name).await?,
            };
            if own_name.is_some() && !scan.own_listed {
                return Ok(());
            }
            // The swap is made on a state read now, while the entries not known committed are
            // checked: a listing stays valid as long as no entry has left `keys` since the
            // state it was compared with (then a listed entry not in the new state's keys is
            // still unfolded).
            let pending = std::mem::take(&mut scan.pending);
            let (state, checked) = futures::join!(
                self.read_fold_state(resource, field),
                self.check_entries(resource, field, pending)
            );
            let state = state?;
            if own_name.is_some_and(|o| state.keys.contains(o)) {
                return Ok(());
            }
            if state.trim != scan.state.trim {
                next = Some(FoldStart::Read(state));
                continue;
            }
            scan.sort(&inbox, checked)?;
            scan.foreign
                .retain(|(n, _)| !state.keys.contains(n) && !state.folded_already(n));
            scan.pending
                .retain(|n| !state.keys.contains(n) && !state.folded_already(n));
            scan.state = state;
            let state = &scan.state;
            let mut plan = Delta::new();
            let mut chosen = Vec::new();
            if let Some((name, delta)) = own {
                merge_delta(&mut plan, delta);
                chosen.push(name.to_string());
            }
            for (name, delta) in &scan.foreign {
                merge_delta(&mut plan, delta);
                chosen.push(name.clone());
            }
            if chosen.is_empty() {
                let mut doomed = std::mem::take(&mut scan.orphans);
                doomed.extend((state.keys.difference(&scan.gone)).map(|n| format!("{inbox}{n}")));
                delete_all(self.ports.store.as_ref(), &doomed).await?;
                return Ok(());
            }
            // A flushed plan is finished on the packed objects and starts afresh; otherwise
            // the plan carries on, and no packed object has been written since it began.
            let mut objects = BTreeMap::new();
            if state.flush {
                objects = self.finish_plan(resource, field, state).await?;
            } else {
                for (o, packed) in &state.plan {
                    merge_packed(plan.entry(o.clone()).or_default(), packed);
                }
            }
            let mut keys: BTreeSet<String> = state.keys.difference(&scan.gone).cloned().collect();
            keys.extend(chosen.iter().cloned());
            let trimmed = state.keys.iter().any(|k| !keys.contains(k));
            let count = |top: bool| -> usize {
                plan.iter()
                    .filter(|(o, _)| is_top_object(o) == top)
                    .map(|(_, p)| p.len())
                    .sum()
            };
            let flush = count(false) > FLUSH_POINTS
                || count(true) > FLUSH_TOP_POINTS
                || keys.len() > FLUSH_KEYS;
            let seq = state.seq.saturating_add(1);
            let written = Arc::new(FoldBody {
                seq,
                keys,
                plan,
                flush,
                trim: state.trim.saturating_add(u64::from(trimmed)),
                folded: state.folded_after(&chosen, &scan.pending, self.ports.now_ms()),
                // A field's first fold starts complete; a state of an earlier version, or an
                // entry of one (cohort points without top objects), from now.
                top: Some(match (state.top, &state.version) {
                    _ if own
                        .iter()
                        .map(|(_, d)| *d)
                        .chain(scan.foreign.iter().map(|(_, d)| &**d))
                        .any(lacks_top) =>
                    {
                        self.ports.now_ms()
                    }
                    (Some(t), _) => t,
                    (None, None) => 0,
                    (None, Some(_)) => self.ports.now_ms(),
                }),
            });
            let body = written.encode()?;
            let mode = match &state.version {
                Some(v) => PutMode::Update(v.clone()),
                None => PutMode::Create,
            };
            let key = self.ports.layout.analytics_fold(resource, field);
            match self.ports.store.put(&key, body, mode).await {
                Ok(version) => {
                    self.local.keep_state(key, version, written.clone());
                }
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    if !conflicts.allows_after(attempt) {
                        return Err(Error::new(
                            crate::error::ErrorCode::Conflict,
                            format!("analytics of {resource}.{field} kept changing; fold gave up"),
                        ));
                    }
                    self.ports.backoff_after_conflict(attempt).await;
                    next = Some(FoldStart::Scanned(scan));
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            let mut doomed = std::mem::take(&mut scan.orphans);
            if flush {
                let writes: Vec<_> = written
                    .plan
                    .iter()
                    .map(|(name, delta)| {
                        let known = objects.remove(name);
                        self.bring_up(resource, field, name, delta, seq, known)
                    })
                    .collect();
                futures::future::try_join_all(writes).await?;
                doomed.extend(written.keys.iter().map(|n| format!("{inbox}{n}")));
            }
            // Best effort: the next fold deletes what is left.
            let _ = delete_all(self.ports.store.as_ref(), &doomed).await;
            return Ok(());
        }
        Err(RetryPolicy::UntilDone.exhausted(&format!("analytics of {resource}.{field}")))
    }

    /// Brings every packed object of a flushed plan up to it; returns the objects as written
    /// (to be reused when flushing the next plan).
    async fn finish_plan(
        &self,
        resource: &str,
        field: &str,
        state: &FoldState,
    ) -> Result<BTreeMap<String, PackedObject>> {
        let reads: Vec<_> = state
            .plan
            .iter()
            .map(|(name, delta)| self.bring_up(resource, field, name, delta, state.seq, None))
            .collect();
        Ok(futures::future::try_join_all(reads)
            .await?
            .into_iter()
            .collect())
    }

    /// Brings one packed object up to fold `seq` (applying `delta` unless it already is),
    /// from `known` or a fresh read; returns it as it now stands.
    async fn bring_up(
        &self,
        resource: &str,
        field: &str,
        name: &str,
        delta: &Packed,
        seq: u64,
        known: Option<PackedObject>,
    ) -> Result<(String, PackedObject)> {
        let mut obj = match known {
            Some(o) => o,
            None => self.read_packed(resource, field, name).await?,
        };
        if obj.fold < seq {
            merge_packed(&mut obj.points, delta);
            obj.fold = seq;
            if !self.write_packed(resource, field, name, &mut obj).await? {
                // Someone finishing the same plan wrote it first.
                obj = self.read_packed(resource, field, name).await?;
            }
        }
        Ok((name.to_string(), obj))
    }
}
