//! A field's bookkeeping in its record (`m.<field>`): batch count, the last batch and its
//! hash, the keys recent batches consumed (`done`), dead letters and the cohorts counted —
//! the in-memory form of [`FieldStateDoc`], with the rules for the next commit.

use super::FieldStateDoc;
use serde_json::{Map, Value};

/// How long a record's bookkeeping remembers the keys a batch applied, after the commit (as
/// read by the next consolidator's clock): a late or duplicated create of a consumed key that
/// lands within this window is recognised and never applied again.
pub(crate) const RESURRECTION_WINDOW_MS: i64 = 15 * 60 * 1000;

/// Most key tokens `done` keeps; beyond, the oldest batches are forgotten early (never the
/// last one).
const MAX_DONE_TOKENS: usize = 20_000;

/// What `done` remembers of a pending key: `~<hash>` names whole, otherwise the timestamp and
/// random parts (unique per transaction, and short).
pub(crate) fn key_token(name: &str) -> &str {
    if name.starts_with('~') {
        return name;
    }
    match name.match_indices(',').nth(1) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

/// How many batches before the last one a record's bookkeeping names (so a fold can tell a
/// committed analytics inbox entry from an orphan with one read).
pub(crate) const RECENT_BATCHES: usize = 16;

/// The per-field bookkeeping kept in a record.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldState {
    /// Number of committed batches.
    pub(crate) seq: u64,
    /// Batches of earlier incarnations of the id (deleted records, see [`crate::records`]):
    /// this incarnation's history starts after batch `base`.
    pub(crate) base: u64,
    /// `<seq>-<hash>` of the last batch, naming its journal.
    pub(crate) batch: Option<String>,
    /// Hex SHA-256 of that journal's bytes: the head of the record's hash chain (see
    /// [`crate::verify`]). `None` in bookkeeping written before journals were chained.
    pub(crate) hash: Option<String>,
    /// Key names of the last batch, when few (written by versions before `done`).
    pub(crate) keys: Option<Vec<String>>,
    /// Batches committed within [`RESURRECTION_WINDOW_MS`]: commit time and the
    /// [`key_token`]s they applied, oldest first. `None` in bookkeeping written before it.
    pub(crate) done: Option<Vec<(i64, Vec<String>)>>,
    /// The batches before the last one, newest last (at most [`RECENT_BATCHES`]).
    pub(crate) recent: Vec<String>,
    /// Keys the last batch set aside as dead letters: name, error code, message.
    pub(crate) dead: Vec<(String, String, String)>,
    /// The cohorts the record already counts in (materialized analytics).
    pub(crate) seen: Option<Value>,
}

impl FieldState {
    /// Reads the state of `field` from a record's bookkeeping (none, or unreadable: the
    /// state before the first batch).
    pub(crate) fn of(meta: &Map<String, Value>, field: &str) -> FieldState {
        let Some(v @ Value::Object(_)) = meta.get(field) else {
            return FieldState::default();
        };
        let doc: FieldStateDoc = serde_json::from_value(v.clone()).unwrap_or_default();
        FieldState {
            seq: doc.seq,
            base: doc.base,
            batch: doc.batch,
            hash: doc.hash,
            keys: doc.keys,
            done: doc.done.map(|batches| {
                batches
                    .into_iter()
                    .map(|(at, tokens)| {
                        let tokens = tokens.split(' ').filter(|t| !t.is_empty());
                        (at, tokens.map(str::to_string).collect())
                    })
                    .collect()
            }),
            recent: doc.recent,
            dead: doc.dead,
            seen: doc.seen,
        }
    }

    /// The state as stored in the record's bookkeeping.
    pub(crate) fn to_json(&self) -> Value {
        let doc = FieldStateDoc {
            seq: self.seq,
            batch: self.batch.clone(),
            recent: self.recent.clone(),
            base: self.base,
            hash: self.hash.clone(),
            keys: self.keys.clone(),
            dead: self.dead.clone(),
            done: self.done.as_ref().map(|done| {
                done.iter()
                    .map(|(at, tokens)| (*at, tokens.join(" ")))
                    .collect()
            }),
            seen: self.seen.clone(),
        };
        serde_json::to_value(doc).unwrap_or_default()
    }

    /// The state after committing `batch` (whose journal hashes to `hash`) with `keys` at
    /// `now`, the record having been read at `read_at`, setting aside `dead` (name, error code,
    /// message): `done` forgets the batches committed before `read_at` minus the window.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn next(
        &self,
        batch: String,
        hash: String,
        keys: &[String],
        seen: Option<Value>,
        read_at: i64,
        now: i64,
        dead: Vec<(String, String, String)>,
    ) -> FieldState {
        let mut recent = self.recent.clone();
        recent.extend(self.batch.clone());
        if recent.len() > RECENT_BATCHES {
            recent.drain(..recent.len().saturating_sub(RECENT_BATCHES));
        }
        let horizon = read_at.saturating_sub(RESURRECTION_WINDOW_MS);
        let mut done: Vec<(i64, Vec<String>)> = self
            .done
            .iter()
            .flatten()
            .filter(|(at, _)| *at >= horizon)
            .cloned()
            .collect();
        done.push((now, keys.iter().map(|k| key_token(k).to_string()).collect()));
        let mut total: usize = done.iter().map(|(_, t)| t.len()).sum();
        while total > MAX_DONE_TOKENS && done.len() > 1 {
            total = total.saturating_sub(done.remove(0).1.len());
        }
        FieldState {
            seq: self.seq.saturating_add(1),
            base: self.base,
            batch: Some(batch),
            hash: Some(hash),
            keys: None,
            done: Some(done),
            recent,
            dead,
            seen: seen.or_else(|| self.seen.clone()),
        }
    }
}
