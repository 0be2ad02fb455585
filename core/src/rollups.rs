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

use crate::analytics::materialized::{
    Delta, Packed, delta_from_json, delta_to_json, is_top_object, lacks_top, merge_packed,
    packed_from_json, packed_to_json,
};
use crate::error::{Error, Result};
use crate::formats::{self, FoldDoc, InboxDoc, PackedDoc};
use crate::formats::{FieldState, RECENT_BATCHES, RESURRECTION_WINDOW_MS};
use crate::keys::batch_seq;
use crate::ports::Ports;
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

/// The fold state of a field, as read (at `version`).
#[derive(Debug, Default)]
pub(crate) struct FoldState {
    body: Arc<FoldBody>,
    pub(crate) version: Option<Version>,
}

impl std::ops::Deref for FoldState {
    type Target = FoldBody;
    fn deref(&self) -> &FoldBody {
        &self.body
    }
}

/// The content of a fold state (never changed once read: a fold writes a new one).
#[derive(Debug, Default)]
pub(crate) struct FoldBody {
    pub(crate) seq: u64,
    /// Entries folded since the last flush that may still exist.
    keys: BTreeSet<String>,
    /// The contribution of the folds since the packed objects were last written.
    pub(crate) plan: Delta,
    /// Whether the fold `seq` writes `plan` to the packed objects (and a later fold must
    /// finish that before starting a new plan).
    flush: bool,
    /// How many folds left out of their `keys` some of their base state's (entries a LIST
    /// showed deleted). While it stays the same, `keys` only grows.
    trim: u64,
    /// Per record (its key segment), for [`FOLDED_WINDOW_MS`], which batches were folded: all
    /// up to `low`, and those in `above`; and when (this engine's clock). An entry of such a
    /// batch is a late or duplicated create of one already folded and deleted, never folded
    /// again.
    folded: BTreeMap<String, Folded>,
    /// Since when (this engine's clock) every fold carries top objects; `None` in a state
    /// written by an earlier version.
    pub(crate) top: Option<i64>,
}

/// How long a fold state remembers the last batch it folded per record (as
/// [`RESURRECTION_WINDOW_MS`] for pending keys).
const FOLDED_WINDOW_MS: i64 = RESURRECTION_WINDOW_MS;
/// Most records a fold state remembers (the oldest are forgotten first).
const MAX_FOLDED_RECORDS: usize = 20_000;

/// The batches of one record a fold state knows folded (see [`FoldBody::folded`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Folded {
    low: u64,
    above: BTreeSet<u64>,
    at: i64,
}

fn entry_parts(name: &str) -> Option<(&str, u64)> {
    let (id, batch) = name.split_once('/')?;
    Some((id, batch_seq(batch)?))
}

impl FoldBody {
    /// True when this state is known to hold entry `<id>/<batch>`: folded since the last
    /// flush, or remembered folded.
    pub(crate) fn holds(&self, name: &str) -> bool {
        self.keys.contains(name) || self.folded_already(name)
    }

    /// True when entry `<id>/<batch>` belongs to a batch of its record known folded.
    fn folded_already(&self, name: &str) -> bool {
        match entry_parts(name) {
            Some((id, seq)) => self
                .folded
                .get(id)
                .is_some_and(|f| seq <= f.low || f.above.contains(&seq)),
            None => false,
        }
    }

    /// `folded` after folding `chosen` at `now`, with `unfolded` the entries still waiting
    /// (undecided, or a consolidation's own under way): a record's `low` never passes one.
    fn folded_after(
        &self,
        chosen: &[String],
        unfolded: &[String],
        now: i64,
    ) -> BTreeMap<String, Folded> {
        let horizon = now.saturating_sub(FOLDED_WINDOW_MS);
        let mut folded: BTreeMap<String, Folded> = self
            .folded
            .iter()
            .filter(|(_, f)| f.at >= horizon)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let mut waiting: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, seq) in unfolded.iter().filter_map(|n| entry_parts(n)) {
            let w = waiting.entry(id).or_insert(seq);
            *w = (*w).min(seq);
        }
        let mut lowest: BTreeMap<&str, u64> = BTreeMap::new();
        for (id, seq) in chosen.iter().filter_map(|n| entry_parts(n)) {
            let l = lowest.entry(id).or_insert(seq);
            *l = (*l).min(seq);
        }
        for (id, seq) in chosen.iter().filter_map(|n| entry_parts(n)) {
            let first = lowest.get(id).copied().unwrap_or(seq);
            let start = waiting.get(id).map_or(first, |w| (*w).min(first));
            let f = folded.entry(id.to_string()).or_insert_with(|| Folded {
                // Batches below the first one seen were folded before (or never had an entry).
                low: start.saturating_sub(1),
                ..Folded::default()
            });
            f.above.insert(seq);
            f.at = now;
        }
        for (id, f) in folded.iter_mut() {
            let stop = waiting.get(id.as_str()).copied();
            while f.above.contains(&f.low.saturating_add(1))
                && stop.is_none_or(|w| f.low.saturating_add(1) < w)
            {
                f.low = f.low.saturating_add(1);
            }
            let low = f.low;
            f.above.retain(|s| *s > low);
        }
        if folded.len() > MAX_FOLDED_RECORDS {
            let mut by_age: Vec<(i64, String)> =
                folded.iter().map(|(k, f)| (f.at, k.clone())).collect();
            by_age.sort();
            let excess = folded.len().saturating_sub(MAX_FOLDED_RECORDS);
            for (_, k) in by_age.into_iter().take(excess) {
                folded.remove(&k);
            }
        }
        folded
    }
}

impl FoldBody {
    /// Decodes the stored fold state at `key`.
    fn decode(key: &str, bytes: &[u8]) -> Result<FoldBody> {
        let doc: FoldDoc = formats::decode("fold state", key, bytes).map_err(|_| corrupt(key))?;
        Ok(FoldBody {
            seq: doc.seq,
            keys: doc.keys.into_iter().collect(),
            plan: delta_from_json(&doc.plan).ok_or_else(|| corrupt(key))?,
            flush: doc.flush,
            trim: doc.trim,
            folded: doc
                .folded
                .into_iter()
                .map(|(k, (low, above, at))| {
                    let above = above.into_iter().collect();
                    (k, Folded { low, above, at })
                })
                .collect(),
            top: doc.top,
        })
    }

    /// Encodes it as stored.
    fn encode(&self) -> Result<Vec<u8>> {
        formats::encode(&FoldDoc {
            seq: self.seq,
            keys: self.keys.iter().cloned().collect(),
            plan: delta_to_json(&self.plan),
            flush: self.flush,
            trim: self.trim,
            folded: self
                .folded
                .iter()
                .map(|(k, f)| (k.clone(), (f.low, f.above.iter().copied().collect(), f.at)))
                .collect(),
            top: self.top,
        })
    }
}

fn merge_delta(into: &mut Delta, from: &Delta) {
    for (o, packed) in from {
        merge_packed(into.entry(o.clone()).or_default(), packed);
    }
}

/// What a fold starts from (see [`Folder::scan_fold`]).
pub(crate) struct FoldScan {
    state: FoldState,
    /// Keys of the state the listing was compared with that it did not show: deleted, so
    /// they can leave `keys`.
    gone: BTreeSet<String>,
    /// New foreign entries whose batch committed, with their contribution.
    foreign: Vec<(String, Arc<Delta>)>,
    /// Keys of new entries whose batch never committed.
    orphans: Vec<String>,
    /// New foreign entries not known to be committed yet.
    pending: Vec<String>,
    /// Whether the caller's own entry was listed as new.
    own_listed: bool,
}

impl FoldScan {
    /// Files checked entries as committed (with their contribution), orphans or pending; a
    /// committed entry that vanished meanwhile was folded by someone else.
    fn sort(&mut self, inbox: &str, checked: Vec<Result<Checked>>) -> Result<()> {
        for item in checked {
            match item? {
                (name, EntryStatus::Committed, Some(delta)) => self.foreign.push((name, delta)),
                (_, EntryStatus::Committed, None) => {}
                (name, EntryStatus::Orphan, _) => self.orphans.push(format!("{inbox}{name}")),
                (name, EntryStatus::Undecided, _) => self.pending.push(name),
            }
        }
        Ok(())
    }
}

/// Where a fold attempt starts: a scan already made, or a fold state already read.
enum Start {
    Scanned(FoldScan),
    Read(FoldState),
}

/// What an engine knows of its own and others' inbox entries, shared by its consolidations.
#[derive(Default)]
pub(crate) struct FoldLocal {
    /// Entries found committed, with their contribution: both never change, so folds in this
    /// process check and read an entry once, however many of them see it.
    committed: Mutex<HashMap<String, Arc<Delta>>>,
    /// Entries of this engine's consolidations still under way (by key): their owner folds
    /// them, so this engine's scans neither check nor fold them meanwhile.
    in_flight: Mutex<HashSet<String>>,
    /// The fold state last read or written, per fold key, with its version.
    states: Mutex<HashMap<String, (Version, Arc<FoldBody>)>>,
    /// Entries being checked, with the checks of the same entry waiting for that one.
    checking: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

/// Most entries the committed cache holds (it starts afresh when full).
const ENTRY_CACHE: usize = 4096;

impl FoldLocal {
    fn cached(&self, key: &str) -> Option<Arc<Delta>> {
        self.committed.lock().ok()?.get(key).cloned()
    }

    fn remember(&self, key: String, delta: Arc<Delta>) {
        if let Ok(mut m) = self.committed.lock() {
            if m.len() >= ENTRY_CACHE {
                m.clear();
            }
            m.insert(key, delta);
        }
    }

    fn state(&self, key: &str, version: &Version) -> Option<Arc<FoldBody>> {
        let states = self.states.lock().ok()?;
        let (v, body) = states.get(key)?;
        (v == version).then(|| body.clone())
    }

    fn keep_state(&self, key: String, version: Version, body: Arc<FoldBody>) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(key, (version, body));
        }
    }

    fn is_in_flight(&self, key: &str) -> bool {
        self.in_flight.lock().is_ok_and(|s| s.contains(key))
    }

    /// Starts checking an entry, unless another fold of this engine is checking it: then
    /// returns what tells when that check is over.
    fn start_check(&self, key: &str) -> std::result::Result<Checking<'_>, oneshot::Receiver<()>> {
        let mut map = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(key) {
            Some(waiting) => {
                let (tx, rx) = oneshot::channel();
                waiting.push(tx);
                Err(rx)
            }
            None => {
                map.insert(key.to_string(), Vec::new());
                Ok(Checking {
                    local: self,
                    key: key.to_string(),
                })
            }
        }
    }
}

/// A check under way; those waiting for it are told when it is dropped.
struct Checking<'a> {
    local: &'a FoldLocal,
    key: String,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut map = self
            .local
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for tx in map.remove(&self.key).unwrap_or_default() {
            let _ = tx.send(());
        }
    }
}

/// Marks an inbox entry as this engine's own, under way, until dropped.
pub(crate) struct InFlight<'a> {
    local: &'a FoldLocal,
    key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.local.in_flight.lock() {
            s.remove(&self.key);
        }
    }
}

/// A packed object as read.
pub(crate) struct PackedObject {
    pub(crate) fold: u64,
    pub(crate) points: Packed,
    version: Option<Version>,
}

/// An inbox entry as a fold checked it: its name, status and (when committed) contribution.
type Checked = (String, EntryStatus, Option<Arc<Delta>>);

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
/// entries and fold states (one [`FoldLocal`] per engine, never one per call).
pub(crate) struct Folder<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// What this engine knows of inbox entries and fold states.
    pub(crate) local: &'a FoldLocal,
}

impl<'a> Folder<'a> {
    /// Writes a batch's contribution to the inbox, before the commit that applies the batch.
    pub(crate) async fn write_inbox_entry(
        &self,
        resource: &str,
        field: &str,
        entry: &str,
        delta: &Delta,
    ) -> Result<()> {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let body = formats::encode(&InboxDoc {
            delta: delta_to_json(delta),
        })?;
        match self
            .ports
            .store
            .put(&key, body.clone(), PutMode::Create)
            .await
        {
            Ok(_) => Ok(()),
            // The name is this batch's alone: a 412 means our own write landed (sent twice).
            Err(StoreError::Conflict { .. })
                if self
                    .ports
                    .store
                    .get(&key)
                    .await
                    .ok()
                    .flatten()
                    .is_some_and(|o| o.bytes == body) =>
            {
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Marks an inbox entry as this engine's own until the guard is dropped: its scans then
    /// leave it to its owner (who knows whether it commits).
    pub(crate) fn own_entry(&self, resource: &str, field: &str, entry: &str) -> InFlight<'a> {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let local = self.local;
        if let Ok(mut s) = local.in_flight.lock() {
            s.insert(key.clone());
        }
        InFlight { local, key }
    }

    /// Notes that this engine committed the batch of an entry, so its folds need not check it.
    pub(crate) fn entry_committed(
        &self,
        resource: &str,
        field: &str,
        entry: &str,
        delta: Arc<Delta>,
    ) {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        self.local.remember(key, delta);
    }

    /// Removes the entry of a batch that did not commit (best effort).
    pub(crate) async fn drop_inbox_entry(&self, resource: &str, field: &str, entry: &str) {
        let key = format!(
            "{}{entry}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let _ = self.ports.store.delete(&key).await;
    }

    pub(crate) async fn read_fold_state(&self, resource: &str, field: &str) -> Result<FoldState> {
        let key = self.ports.layout.analytics_fold(resource, field);
        let Some(obj) = self.ports.store.get(&key).await? else {
            return Ok(FoldState::default());
        };
        // The state this engine last read or wrote is parsed once.
        let local = self.local;
        let body = match local.state(&key, &obj.version) {
            Some(body) => body,
            None => {
                let body = Arc::new(FoldBody::decode(&key, &obj.bytes)?);
                local.keep_state(key, obj.version.clone(), body.clone());
                body
            }
        };
        Ok(FoldState {
            body,
            version: Some(obj.version),
        })
    }

    /// A fold state a listing can be compared with: the one this engine last read or wrote
    /// (a fold swaps on a fresh read anyway, and the listing holds while `trim` is the same),
    /// or a fresh read.
    pub(crate) async fn fold_state_to_list(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<FoldState> {
        let key = self.ports.layout.analytics_fold(resource, field);
        let known = self.local.states.lock().ok().and_then(|states| {
            let (version, body) = states.get(&key)?;
            Some(FoldState {
                body: body.clone(),
                version: Some(version.clone()),
            })
        });
        match known {
            Some(state) => Ok(state),
            None => self.read_fold_state(resource, field).await,
        }
    }

    pub(crate) async fn read_packed(
        &self,
        resource: &str,
        field: &str,
        name: &str,
    ) -> Result<PackedObject> {
        let key = self.ports.layout.analytics_object(resource, field, name);
        let Some(obj) = self.ports.store.get(&key).await? else {
            return Ok(PackedObject {
                fold: 0,
                points: Packed::new(),
                version: None,
            });
        };
        let doc: PackedDoc =
            formats::decode("packed object", &key, &obj.bytes).map_err(|_| corrupt(&key))?;
        Ok(PackedObject {
            fold: doc.fold,
            points: packed_from_json(&doc.p).ok_or_else(|| corrupt(&key))?,
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
        let key = self.ports.layout.analytics_object(resource, field, name);
        let body = formats::encode(&PackedDoc {
            fold: obj.fold,
            p: packed_to_json(&obj.points),
        })?;
        let mode = match &obj.version {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        match self.ports.store.put(&key, body, mode).await {
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
        let Some(id) = crate::keys::id_of_segment(id) else {
            return Ok(EntryStatus::Orphan);
        };
        let id = id.as_str();
        let Some(seq) = batch_seq(batch) else {
            return Ok(EntryStatus::Orphan);
        };
        // A deleted record's tombstone still names its batches (see `crate::records`): a batch
        // committed before the deletion counts, one cut short by it does not. With no
        // bookkeeping at all, nothing is known yet.
        let Some(meta) = self.ports.records.bookkeeping(resource, id).await? else {
            return Ok(EntryStatus::Undecided);
        };
        let state = FieldState::of(&meta, field);
        if state.batch.as_deref() == Some(batch) || state.recent.iter().any(|b| b == batch) {
            return Ok(EntryStatus::Committed);
        }
        if state.seq < seq {
            return Ok(EntryStatus::Undecided);
        }
        if state.seq.saturating_sub(seq) <= RECENT_BATCHES as u64 {
            return Ok(EntryStatus::Orphan);
        }
        let (chain, _) = self.ports.journals().chain(resource, field, id).await?;
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
        let key = format!(
            "{}{name}",
            self.ports.layout.analytics_inbox(resource, field)
        );
        let local = self.local;
        if let Some(delta) = local.cached(&key) {
            return Ok((name, EntryStatus::Committed, Some(delta)));
        }
        // An entry of this engine's own consolidation under way is left to it; one another
        // fold of this engine is checking is what that check finds.
        if local.is_in_flight(&key) {
            return Ok((name, EntryStatus::Undecided, None));
        }
        let _checking = match local.start_check(&key) {
            Ok(checking) => checking,
            Err(done) => {
                let _ = done.await;
                let delta = local.cached(&key);
                let status = match delta {
                    Some(_) => EntryStatus::Committed,
                    None => EntryStatus::Undecided,
                };
                return Ok((name, status, delta));
            }
        };
        // The status and the entry are read side by side (one round trip); an orphan's body
        // is not needed, but orphans are rare.
        let (status, obj) = futures::join!(
            self.entry_status(resource, field, &name),
            self.ports.store.get(&key)
        );
        let status = status?;
        if !matches!(status, EntryStatus::Committed) {
            return Ok((name, status, None));
        }
        let Some(obj) = obj? else {
            return Ok((name, status, None));
        };
        let doc: InboxDoc =
            formats::decode("inbox entry", &key, &obj.bytes).map_err(|_| corrupt(&key))?;
        let delta = Arc::new(delta_from_json(&doc.delta).ok_or_else(|| corrupt(&key))?);
        local.remember(key, delta.clone());
        Ok((name, status, Some(delta)))
    }

    /// Reads what a fold starts from: the fold state, then the inbox (in that order: a listed
    /// entry not in the state's `keys` was not folded as of that state), with every new entry
    /// other than `own` checked and read.
    async fn scan_fold(&self, resource: &str, field: &str, own: Option<&str>) -> Result<FoldScan> {
        let state = self.read_fold_state(resource, field).await?;
        self.scan_inbox(resource, field, own, state).await
    }

    /// [`Folder::scan_fold`] from a state already read. A consolidation reads the state before
    /// its commit and scans the inbox alongside it.
    pub(crate) async fn scan_inbox(
        &self,
        resource: &str,
        field: &str,
        own: Option<&str>,
        state: FoldState,
    ) -> Result<FoldScan> {
        let inbox = self.ports.layout.analytics_inbox(resource, field);
        let listed: Vec<String> = list_all(self.ports.store.as_ref(), &inbox)
            .await?
            .into_iter()
            .filter_map(|k| k.strip_prefix(&inbox).map(str::to_string))
            .collect();
        let listed: BTreeSet<String> = listed.into_iter().collect();
        let gone = state.keys.difference(&listed).cloned().collect();
        let (resurrected, new): (Vec<String>, Vec<String>) = listed
            .into_iter()
            .filter(|n| !state.keys.contains(n))
            .partition(|n| state.folded_already(n));
        let own_listed = own.is_some_and(|o| new.iter().any(|n| n == o));
        Ok(FoldScan {
            state,
            gone,
            foreign: Vec::new(),
            orphans: resurrected.iter().map(|n| format!("{inbox}{n}")).collect(),
            pending: new
                .into_iter()
                .filter(|n| Some(n.as_str()) != own)
                .collect(),
            own_listed,
        })
    }

    /// Read only: the fold state, then the inbox, with each entry it did not fold checked.
    /// Returns the state, the committed entries not folded in it (with their contribution)
    /// and the names of the entries whose batch is not known to be committed yet.
    pub(crate) async fn scan_committed(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<(FoldState, Vec<(String, Arc<Delta>)>, Vec<String>)> {
        let inbox = self.ports.layout.analytics_inbox(resource, field);
        let mut scan = self.scan_fold(resource, field, None).await?;
        let names = std::mem::take(&mut scan.pending);
        let checked = self.check_entries(resource, field, names).await;
        scan.sort(&inbox, checked)?;
        Ok((scan.state, scan.foreign, scan.pending))
    }

    /// Checks foreign entries in parallel.
    async fn check_entries(
        &self,
        resource: &str,
        field: &str,
        names: Vec<String>,
    ) -> Vec<Result<Checked>> {
        futures::stream::iter(names)
            .map(|name| self.check_entry(resource, field, name))
            .buffered(32)
            .collect()
            .await
    }

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
        let mut attempt: u32 = 0;
        let mut next = scan.map(Start::Scanned);
        loop {
            attempt = attempt.saturating_add(1);
            let mut scan = match next.take() {
                Some(Start::Scanned(scan)) => scan,
                Some(Start::Read(state)) => {
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
                next = Some(Start::Read(state));
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
                    if attempt >= 200 {
                        return Err(Error::new(
                            crate::error::ErrorCode::Conflict,
                            format!("analytics of {resource}.{field} kept changing; fold gave up"),
                        ));
                    }
                    self.ports.backoff_after_conflict(attempt).await;
                    next = Some(Start::Scanned(scan));
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

/// The period of a cohort label, by its shape.
pub(crate) fn label_period(label: &str) -> Option<crate::config::Period> {
    use crate::config::Period;
    match label.len() {
        13 => Some(Period::Hour),
        10 => Some(Period::Day),
        8 if label.contains("-W") => Some(Period::Week),
        7 => Some(Period::Month),
        _ => None,
    }
}
