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
//! - `fold`: `{seq, keys, plan, flush}`: how many folds committed; the entries folded since
//!   the packed objects were last written (they may still exist); their contribution per
//!   packed object; and whether fold `seq` writes that plan to the packed objects.
//! - `h/<YYYY-MM>`, `y/<YYYY>`: packed points `{fold, p}`; `fold` is the last fold written in.
//!
//! A fold reads `fold` (version `v`), then LISTs the inbox: a listed entry is in `keys`
//! (folded, deletion pending) or new. It adds the new committed entries to the plan and
//! commits by compare-and-swap of `fold`: the commit point. Most folds stop there (GET, LIST,
//! PUT: a query applies the plan to the packed objects in memory). When the plan grows past
//! [`FLUSH_POINTS`] points or [`FLUSH_KEYS`] entries, the fold flushes: after its commit it
//! writes the plan into the packed objects (each at most once: `fold < seq` means "not yet")
//! and deletes the entries; the next fold finishes any object still behind before it starts
//! a new plan. A crash anywhere leaves either nothing or a committed state that the next fold
//! (or query) completes, so nothing is lost or counted twice. Concurrent consolidations batch:
//! whoever wins the swap folds every committed entry it saw, and the others find theirs
//! already folded (one GET after the failed swap tells). Each engine remembers the entries it
//! found committed (entries never change), so it checks each one once.
//!
//! The rule that makes this exact: the inbox is always LISTed *after* the fold state it is
//! compared with was read. An entry listed then but absent from that state's `keys` had not
//! been folded as of that state (a folded entry stays in `keys` until a LIST no longer shows
//! it, and deleted entries never come back), so a swap on that state folds it at most once.

use crate::analytics::calendar::Label;
use crate::analytics::materialized::{
    Delta, Packed, delta_from_json, delta_to_json, merge_packed, objects_for, packed_from_json,
    packed_to_json,
};
use crate::analytics::points::PointSet;
use crate::consolidate::{FieldState, RECENT_BATCHES};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::{PutMode, StoreError, Version, delete_all, list_all};
use futures::StreamExt;
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// A plan is written to the packed objects (flushed) once it holds more points than this…
const FLUSH_POINTS: usize = 256;
/// …or names more folded entries than this.
const FLUSH_KEYS: usize = 64;

/// The fold state of a field.
#[derive(Debug, Default)]
pub(crate) struct FoldState {
    seq: u64,
    /// Entries folded since the last flush that may still exist.
    keys: BTreeSet<String>,
    /// The contribution of the folds since the packed objects were last written.
    plan: Delta,
    /// Whether the fold `seq` writes `plan` to the packed objects (and a later fold must
    /// finish that before starting a new plan).
    flush: bool,
    version: Option<Version>,
}

fn merge_delta(into: &mut Delta, from: &Delta) {
    for (o, packed) in from {
        merge_packed(into.entry(o.clone()).or_default(), packed);
    }
}

/// What a fold starts from (see [`Engine::scan_fold`]).
pub(crate) struct FoldScan {
    state: FoldState,
    /// Listed entries already folded (in the state's `keys`).
    stale: Vec<String>,
    /// New foreign entries whose batch committed, with their contribution.
    foreign: Vec<(String, std::sync::Arc<Delta>)>,
    /// Keys of new entries whose batch never committed.
    orphans: Vec<String>,
    /// Whether the caller's own entry was listed as new.
    own_listed: bool,
}

/// Inbox entries an engine found committed, with their contribution: both never change, so
/// folds in this process check and read an entry once, however many of them see it.
#[derive(Default)]
pub(crate) struct EntryCache(
    std::sync::Mutex<std::collections::HashMap<String, std::sync::Arc<Delta>>>,
);

/// Most entries an [`EntryCache`] holds (it starts afresh when full).
const ENTRY_CACHE: usize = 4096;

impl EntryCache {
    fn get(&self, key: &str) -> Option<std::sync::Arc<Delta>> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn insert(&self, key: String, delta: std::sync::Arc<Delta>) {
        if let Ok(mut m) = self.0.lock() {
            if m.len() >= ENTRY_CACHE {
                m.clear();
            }
            m.insert(key, delta);
        }
    }
}

/// A packed object as read.
struct PackedObject {
    fold: u64,
    points: Packed,
    version: Option<Version>,
}

/// An inbox entry as a fold checked it: its name, status and (when committed) contribution.
type Checked = (String, EntryStatus, Option<std::sync::Arc<Delta>>);

/// Whether an inbox entry's batch was committed.
enum EntryStatus {
    Committed,
    Orphan,
    Undecided,
}

fn corrupt(key: &str) -> Error {
    Error::storage(format!("unreadable analytics object {key}"))
}

/// The sequence number a batch name `<seq:010>-<nonce>` starts with.
fn batch_seq(batch: &str) -> Option<u64> {
    batch.split('-').next()?.parse().ok()
}

impl Engine {
    /// Writes a batch's contribution to the inbox, before the commit that applies the batch.
    pub(crate) async fn write_inbox_entry(
        &self,
        resource: &str,
        field: &str,
        entry: &str,
        delta: &Delta,
    ) -> Result<()> {
        let key = format!("{}{entry}", self.layout().analytics_inbox(resource, field));
        let body = serde_json::to_vec(&json!({ "delta": delta_to_json(delta) }))
            .map_err(|e| Error::storage(e.to_string()))?;
        self.store().put(&key, body, PutMode::Create).await?;
        Ok(())
    }

    /// Removes the entry of a batch that did not commit (best effort).
    pub(crate) async fn drop_inbox_entry(&self, resource: &str, field: &str, entry: &str) {
        let key = format!("{}{entry}", self.layout().analytics_inbox(resource, field));
        let _ = self.store().delete(&key).await;
    }

    pub(crate) async fn read_fold_state(&self, resource: &str, field: &str) -> Result<FoldState> {
        let key = self.layout().analytics_fold(resource, field);
        let Some(obj) = self.store().get(&key).await? else {
            return Ok(FoldState::default());
        };
        let v: Value = serde_json::from_slice(&obj.bytes).map_err(|_| corrupt(&key))?;
        Ok(FoldState {
            seq: v["seq"].as_u64().ok_or_else(|| corrupt(&key))?,
            keys: v["keys"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|k| k.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default(),
            plan: delta_from_json(&v["plan"]).ok_or_else(|| corrupt(&key))?,
            flush: v["flush"].as_bool().unwrap_or(true),
            version: Some(obj.version),
        })
    }

    async fn read_packed(&self, resource: &str, field: &str, name: &str) -> Result<PackedObject> {
        let key = self.layout().analytics_object(resource, field, name);
        let Some(obj) = self.store().get(&key).await? else {
            return Ok(PackedObject {
                fold: 0,
                points: Packed::new(),
                version: None,
            });
        };
        let v: Value = serde_json::from_slice(&obj.bytes).map_err(|_| corrupt(&key))?;
        Ok(PackedObject {
            fold: v["fold"].as_u64().ok_or_else(|| corrupt(&key))?,
            points: packed_from_json(&v["p"]).ok_or_else(|| corrupt(&key))?,
            version: Some(obj.version),
        })
    }

    /// Writes a packed object if it is still at the version read, and notes its new version;
    /// false on a conflict (then someone else has written it at least as far).
    async fn write_packed(
        &self,
        resource: &str,
        field: &str,
        name: &str,
        obj: &mut PackedObject,
    ) -> Result<bool> {
        let key = self.layout().analytics_object(resource, field, name);
        let body =
            serde_json::to_vec(&json!({ "fold": obj.fold, "p": packed_to_json(&obj.points) }))
                .map_err(|e| Error::storage(e.to_string()))?;
        let mode = match &obj.version {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        match self.store().put(&key, body, mode).await {
            Ok(v) => {
                obj.version = Some(v);
                Ok(true)
            }
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Whether the batch of a foreign inbox entry `<id>/<batch>` committed, from the record's
    /// bookkeeping (and its journal chain for batches older than the last 16).
    async fn entry_status(&self, resource: &str, field: &str, entry: &str) -> Result<EntryStatus> {
        let Some((id, batch)) = entry.split_once('/') else {
            return Ok(EntryStatus::Orphan);
        };
        let Some(seq) = batch_seq(batch) else {
            return Ok(EntryStatus::Orphan);
        };
        // A record deleted after its commit still counts; one deleted during its consolidation
        // is the owner's to clean up, which it does unless it crashes right then.
        let Some(record) = self.records().load(resource, id).await? else {
            return Ok(EntryStatus::Committed);
        };
        let state = FieldState::of(&record.meta, field);
        if state.batch.as_deref() == Some(batch) || state.recent.iter().any(|b| b == batch) {
            return Ok(EntryStatus::Committed);
        }
        if state.seq < seq {
            return Ok(EntryStatus::Undecided);
        }
        if state.seq - seq <= RECENT_BATCHES as u64 {
            return Ok(EntryStatus::Orphan);
        }
        let (chain, _) = self.journal_chain(resource, field, id).await?;
        if chain.iter().any(|j| j.key.ends_with(&format!("/{batch}"))) {
            Ok(EntryStatus::Committed)
        } else if chain.first().is_some_and(|j| j.seq <= seq) {
            Ok(EntryStatus::Orphan)
        } else {
            Ok(EntryStatus::Undecided)
        }
    }

    /// Whether a foreign entry committed and, if so, its contribution (`None` when it vanished
    /// meanwhile: someone else folded and deleted it).
    async fn check_entry(&self, resource: &str, field: &str, name: String) -> Result<Checked> {
        let key = format!("{}{name}", self.layout().analytics_inbox(resource, field));
        if let Some(delta) = self.committed_entries().get(&key) {
            return Ok((name, EntryStatus::Committed, Some(delta)));
        }
        // The status and the entry are read side by side (one round trip); an orphan's body
        // is not needed, but orphans are rare.
        let (status, obj) = futures::join!(
            self.entry_status(resource, field, &name),
            self.store().get(&key)
        );
        let status = status?;
        if !matches!(status, EntryStatus::Committed) {
            return Ok((name, status, None));
        }
        let Some(obj) = obj? else {
            return Ok((name, status, None));
        };
        let v: Value = serde_json::from_slice(&obj.bytes).map_err(|_| corrupt(&key))?;
        let delta = std::sync::Arc::new(delta_from_json(&v["delta"]).ok_or_else(|| corrupt(&key))?);
        self.committed_entries().insert(key, delta.clone());
        Ok((name, status, Some(delta)))
    }

    /// Reads what a fold starts from: the fold state, then the inbox (in that order: a listed
    /// entry not in the state's `keys` was not folded as of that state), with every new entry
    /// other than `own` checked and read.
    async fn scan_fold(&self, resource: &str, field: &str, own: Option<&str>) -> Result<FoldScan> {
        let state = self.read_fold_state(resource, field).await?;
        self.scan_inbox(resource, field, own, state).await
    }

    /// [`Engine::scan_fold`] from a state already read. A consolidation reads the state before
    /// its commit and scans the inbox alongside it.
    pub(crate) async fn scan_inbox(
        &self,
        resource: &str,
        field: &str,
        own: Option<&str>,
        state: FoldState,
    ) -> Result<FoldScan> {
        let inbox = self.layout().analytics_inbox(resource, field);
        let listed: Vec<String> = list_all(self.store().as_ref(), &inbox)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&inbox).map(str::to_string))
            .collect();
        let (stale, new): (Vec<String>, Vec<String>) =
            listed.into_iter().partition(|n| state.keys.contains(n));
        let own_listed = own.is_some_and(|o| new.iter().any(|n| n == o));
        // Foreign entries are checked and read in parallel.
        let checked: Vec<Result<Checked>> =
            futures::stream::iter(new.into_iter().filter(|n| Some(n.as_str()) != own))
                .map(|name| self.check_entry(resource, field, name))
                .buffered(32)
                .collect()
                .await;
        let mut scan = FoldScan {
            state,
            stale,
            foreign: Vec::new(),
            orphans: Vec::new(),
            own_listed,
        };
        for item in checked {
            match item? {
                (name, EntryStatus::Committed, Some(delta)) => scan.foreign.push((name, delta)),
                (name, EntryStatus::Orphan, _) => scan.orphans.push(format!("{inbox}{name}")),
                _ => {}
            }
        }
        Ok(scan)
    }

    /// Folds committed inbox entries, exactly once. With `own` (an entry whose batch the
    /// caller just committed, and its contribution), returns once that entry is folded, by
    /// this call or another. `scan` is one made alongside the commit (after `own` was written).
    pub(crate) async fn fold_analytics(
        &self,
        resource: &str,
        field: &str,
        own: Option<(&str, &Delta)>,
        mut scan: Option<FoldScan>,
    ) -> Result<()> {
        let inbox = self.layout().analytics_inbox(resource, field);
        let own_name = own.map(|(n, _)| n);
        let mut attempt: u32 = 0;
        let mut known: Option<FoldState> = None;
        loop {
            attempt += 1;
            let FoldScan {
                state,
                stale,
                foreign,
                mut orphans,
                own_listed,
            } = match scan.take() {
                Some(s) => s,
                None => match known.take() {
                    Some(state) => self.scan_inbox(resource, field, own_name, state).await?,
                    None => self.scan_fold(resource, field, own_name).await?,
                },
            };
            if own_name.is_some_and(|o| !own_listed || state.keys.contains(o)) {
                return Ok(());
            }
            let mut plan = Delta::new();
            let mut chosen = Vec::new();
            if let Some((name, delta)) = own {
                merge_delta(&mut plan, delta);
                chosen.push(name.to_string());
            }
            for (name, delta) in foreign {
                merge_delta(&mut plan, &delta);
                chosen.push(name);
            }
            if chosen.is_empty() {
                orphans.extend(stale.iter().map(|n| format!("{inbox}{n}")));
                delete_all(self.store().as_ref(), &orphans).await?;
                return Ok(());
            }
            // A flushed plan is finished on the packed objects and starts afresh; otherwise
            // the plan carries on, and no packed object has been written since it began.
            let mut objects = BTreeMap::new();
            if state.flush {
                objects = self.finish_plan(resource, field, &state).await?;
            } else {
                for (o, packed) in &state.plan {
                    merge_packed(plan.entry(o.clone()).or_default(), packed);
                }
            }
            let mut keys: Vec<String> = stale.clone();
            keys.extend(chosen.iter().cloned());
            let points: usize = plan.values().map(BTreeMap::len).sum();
            let flush = points > FLUSH_POINTS || keys.len() > FLUSH_KEYS;
            let seq = state.seq + 1;
            let body = serde_json::to_vec(&json!({
                "seq": seq,
                "keys": keys,
                "plan": delta_to_json(&plan),
                "flush": flush,
            }))
            .map_err(|e| Error::storage(e.to_string()))?;
            let mode = match &state.version {
                Some(v) => PutMode::Update(v.clone()),
                None => PutMode::Create,
            };
            let key = self.layout().analytics_fold(resource, field);
            match self.store().put(&key, body, mode).await {
                Ok(_) => {}
                Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {
                    if attempt >= 200 {
                        return Err(Error::new(
                            crate::error::ErrorCode::Conflict,
                            format!("analytics of {resource}.{field} kept changing; fold gave up"),
                        ));
                    }
                    let jitter = self.random() % (5 * u64::from(attempt.min(20)) + 1);
                    self.sleeper().sleep(jitter).await;
                    // Whoever won may have folded our entry: then one GET tells.
                    let state = self.read_fold_state(resource, field).await?;
                    if own_name.is_some_and(|o| state.keys.contains(o)) {
                        return Ok(());
                    }
                    known = Some(state);
                    continue;
                }
                Err(e) => return Err(e.into()),
            }
            if flush {
                let writes: Vec<_> = plan
                    .iter()
                    .map(|(name, delta)| {
                        let known = objects.remove(name);
                        self.bring_up(resource, field, name, delta, seq, known)
                    })
                    .collect();
                futures::future::try_join_all(writes).await?;
                orphans.extend(keys.iter().map(|n| format!("{inbox}{n}")));
            }
            // Best effort: the next fold deletes what is left.
            let _ = delete_all(self.store().as_ref(), &orphans).await;
            return Ok(());
        }
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

    /// The materialized points of `labels` (all of one period), or of every cohort of the
    /// period with data when `labels` is `None`. Reads the fold state and the packed objects
    /// holding them; a committed fold not yet written to an object is applied in memory.
    pub(crate) async fn materialized_points(
        &self,
        resource: &str,
        field: &str,
        period: crate::config::Period,
        labels: Option<&[Label]>,
    ) -> Result<PointSet> {
        let state = self.read_fold_state(resource, field).await?;
        let names: Vec<String> = match labels {
            Some(l) => objects_for(l),
            None => {
                let kind = if period == crate::config::Period::Hour {
                    "h/"
                } else {
                    "y/"
                };
                let prefix = self.layout().analytics_object(resource, field, kind);
                let mut names: BTreeSet<String> = list_all(self.store().as_ref(), &prefix)
                    .await?
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&prefix).map(|s| format!("{kind}{s}")))
                    .collect();
                // Objects of the plan may not have been written yet.
                names.extend(state.plan.keys().filter(|o| o.starts_with(kind)).cloned());
                names.into_iter().collect()
            }
        };
        let wanted = |label: &str| label_period(label) == Some(period);
        let mut out = PointSet::new();
        for name in names {
            let mut obj = self.read_packed(resource, field, &name).await?;
            if obj.fold < state.seq
                && let Some(delta) = state.plan.get(&name)
            {
                merge_packed(&mut obj.points, delta);
            }
            out.extend(obj.points.into_iter().filter(|(l, _)| wanted(l)));
        }
        Ok(out)
    }
}

/// The period of a cohort label, by its shape.
fn label_period(label: &str) -> Option<crate::config::Period> {
    use crate::config::Period;
    match label.len() {
        13 => Some(Period::Hour),
        10 => Some(Period::Day),
        8 if label.contains("-W") => Some(Period::Week),
        7 => Some(Period::Month),
        _ => None,
    }
}
