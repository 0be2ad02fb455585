//! The fold state of a field (`P/a/<resource>/<field>/fold`) as a fold reads and writes it:
//! its sequence number, the plan not yet flushed, and which batches of which records it folded.

use super::*;

/// The fold state of a field, as read (at `version`).
#[derive(Debug, Default)]
pub(crate) struct FoldState {
    pub(super) body: Arc<FoldBody>,
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
    pub(super) keys: BTreeSet<String>,
    /// The contribution of the folds since the packed objects were last written.
    pub(crate) plan: Delta,
    /// Whether the fold `seq` writes `plan` to the packed objects (and a later fold must
    /// finish that before starting a new plan).
    pub(super) flush: bool,
    /// How many folds left out of their `keys` some of their base state's (entries a LIST
    /// showed deleted). While it stays the same, `keys` only grows.
    pub(super) trim: u64,
    /// Per record (its key segment), for [`FOLDED_WINDOW_MS`], which batches were folded: all
    /// up to `low`, and those in `above`; and when (this engine's clock). An entry of such a
    /// batch is a late or duplicated create of one already folded and deleted, never folded
    /// again.
    pub(super) folded: BTreeMap<String, Folded>,
    /// Since when (this engine's clock) every fold carries top objects; `None` in a state
    /// written by an earlier version.
    pub(crate) top: Option<i64>,
}

/// How long a fold state remembers the last batch it folded per record (as
/// [`RESURRECTION_WINDOW_MS`] for pending keys).
pub(super) const FOLDED_WINDOW_MS: i64 = RESURRECTION_WINDOW_MS;
/// Most records a fold state remembers (the oldest are forgotten first).
pub(super) const MAX_FOLDED_RECORDS: usize = 20_000;

/// The batches of one record a fold state knows folded (see [`FoldBody::folded`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Folded {
    pub(super) low: u64,
    pub(super) above: BTreeSet<u64>,
    pub(super) at: i64,
}

pub(super) fn entry_parts(name: &str) -> Option<(&str, u64)> {
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
    pub(super) fn folded_already(&self, name: &str) -> bool {
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
    pub(super) fn folded_after(
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
    pub(super) fn decode(key: &str, bytes: &[u8]) -> Result<FoldBody> {
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
    pub(super) fn encode(&self) -> Result<Vec<u8>> {
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

pub(super) fn merge_delta(into: &mut Delta, from: &Delta) {
    for (o, packed) in from {
        merge_packed(into.entry(o.clone()).or_default(), packed);
    }
}

/// What a fold starts from (see [`Folder::scan_fold`]).
pub(crate) struct FoldScan {
    pub(super) state: FoldState,
    /// Keys of the state the listing was compared with that it did not show: deleted, so
    /// they can leave `keys`.
    pub(super) gone: BTreeSet<String>,
    /// New foreign entries whose batch committed, with their contribution.
    pub(super) foreign: Vec<(String, Arc<Delta>)>,
    /// Keys of new entries whose batch never committed.
    pub(super) orphans: Vec<String>,
    /// New foreign entries not known to be committed yet.
    pub(super) pending: Vec<String>,
    /// Whether the caller's own entry was listed as new.
    pub(super) own_listed: bool,
}

impl FoldScan {
    /// Files checked entries as committed (with their contribution), orphans or pending; a
    /// committed entry that vanished meanwhile was folded by someone else.
    pub(super) fn sort(&mut self, inbox: &str, checked: Vec<Result<EntryCheck>>) -> Result<()> {
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
pub(super) enum FoldStart {
    Scanned(FoldScan),
    Read(FoldState),
}
