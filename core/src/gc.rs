//! Garbage collection: old journals (applied transactions) after the checkpoints that cover
//! them, leftover journals of lost commits, expired checkpoints, and the idempotency markers of
//! collected transactions. Its cost follows the new work, not the retained history.
//!
//! # What one run reads, per record of a field
//!
//! 1. The bookkeeping (live record or tombstone), then LIST its journals, then LIST its
//!    checkpoints, in that order: a journal another GC removed before the journal listing is
//!    covered by a checkpoint that listing shows, so every journal listed above the newest
//!    checkpoint (the *floor*) is either on the chain or a leftover with a sibling at its
//!    batch number.
//! 2. Journal and checkpoint names carry their batch number and commit time
//!    (`<seq>-<time>-<nonce>`, `<seq>-<time>`), so ages come from the listings; only names
//!    written by earlier versions are read for it.
//! 3. Journals at or below the floor (covered, or of an earlier incarnation) go once older
//!    than the retention. Above it, batch numbers with one journal are on the chain; where
//!    several journals share a number, the chain is walked from the head down to there to
//!    tell the committed one from leftovers, which go after `locks.timeout`.
//! 4. The on-chain journals committed before the current checkpoint period (hour or day, in
//!    `cohort.timezone`; or before the retention when checkpoints are disabled) are read, a
//!    checkpoint is written at each period's last batch (SPEC §7), and those older than the
//!    retention go. The next run's floor is that checkpoint, so it reads only what came after.
//! 5. The idempotency markers of collected transactions go with them once older than the
//!    window in which bookkeeping remembers applied keys; a checkpoint carries the ones still
//!    too young to the next run.

use crate::config::{FieldConfig, PluginConfig};
use crate::error::Result;
use crate::events::{Event, EventBus};
use crate::formats::{self, MarkerHead};
use crate::formats::{FieldState, RESURRECTION_WINDOW_MS};
use crate::history::History;
use crate::journal::{Checkpoint, Journal, Marker, parse_journal};
use crate::keys::{checkpoint_name, parse_batch};
use crate::metrics::RunLog;
use crate::ports::Ports;
use crate::store::{PutMode, delete_all, list_all};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap};

/// A journal or checkpoint name with its batch number and, when the name carries it, its
/// commit time.
#[derive(Debug, Clone)]
struct Listed {
    key: String,
    seq: u64,
    at: Option<i64>,
}

/// Markers of two lists, each key once with its newest time (a key reused after its marker
/// went has a newer marker, which must not go with the old one).
fn merge_markers(a: Vec<Marker>, b: Vec<Marker>) -> Vec<Marker> {
    let mut by_key: BTreeMap<String, Marker> = BTreeMap::new();
    for m in a.into_iter().chain(b) {
        match by_key.get(&m.key) {
            Some(kept) if kept.at >= m.at => {}
            _ => {
                by_key.insert(m.key.clone(), m);
            }
        }
    }
    by_key.into_values().collect()
}

fn listed(prefix: &str, keys: Vec<String>) -> Vec<Listed> {
    keys.into_iter()
        .filter_map(|key| {
            let (seq, at) = parse_batch(key.strip_prefix(prefix)?)?;
            Some(Listed { key, seq, at })
        })
        .collect()
}

/// The cutoffs of one run: journals, leftovers, checkpoints, markers.
#[derive(Clone, Copy)]
struct Cutoffs {
    journals: i64,
    orphans: i64,
    checkpoints: i64,
    markers: i64,
}

/// Garbage collection of journals, checkpoints and markers.
#[derive(Clone, Copy)]
pub(crate) struct Gc<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// Where events go.
    pub(crate) events: &'a EventBus,
    /// The run counters.
    pub(crate) runs: &'a RunLog,
    /// Reads and replays a field's history.
    pub(crate) history: History<'a>,
}

impl<'a> Gc<'a> {
    /// Garbage collection of every configured field (see the module docs). Pending
    /// transactions are never touched. Emits `gc-completed` per field.
    pub(crate) async fn run_gc(&self) -> Result<()> {
        self.runs.note_gc_run();
        for (resource, fc) in self.config.fields() {
            match self.gc_field(&resource, &fc).await {
                Ok((deleted, errors)) => self.events.emit(Event::GcCompleted {
                    resource: resource.clone(),
                    field: fc.field.clone(),
                    deleted_count: deleted,
                    error_count: errors,
                }),
                Err(error) => self.events.emit(Event::GcError { error }),
            }
        }
        Ok(())
    }

    async fn gc_field(&self, resource: &str, fc: &FieldConfig) -> Result<(u64, u64)> {
        let now = self.ports.now_ms();
        let days = |d: f64| now.saturating_sub((d * 86_400_000.0) as i64);
        let journals = days(self.config.gc_retention_days);
        let cutoffs = Cutoffs {
            journals,
            orphans: now.saturating_sub((self.config.lock_timeout_s * 1000.0) as i64),
            checkpoints: days(self.config.checkpoints_retention_days),
            // A marker outlives the window in which a record's bookkeeping still remembers its
            // key as applied (`done`), whatever the retention: a key reused meanwhile is then
            // answered as a duplicate rather than taken as new and dropped as stale.
            markers: journals.min(now.saturating_sub(RESURRECTION_WINDOW_MS)),
        };
        // Records with journals, or with a checkpoint only (which may carry markers).
        let ids = self
            .ports
            .journals()
            .ids_with_history(resource, &fc.field)
            .await?;
        let (mut deleted, mut errors) = (0u64, 0u64);
        for id in ids {
            // One record's trouble never stops the collection of the others.
            match self.gc_record(resource, fc, &id, cutoffs, now).await {
                Ok((d, e)) => {
                    deleted = deleted.saturating_add(d);
                    errors = errors.saturating_add(e);
                }
                Err(_) => errors = errors.saturating_add(1),
            }
        }
        Ok((deleted, errors))
    }

    /// A listed journal's commit time: from its name, or its body for names of earlier
    /// versions.
    async fn committed_at(&self, j: &Listed, bodies: &mut HashMap<String, Journal>) -> Result<i64> {
        if let Some(at) = j.at {
            return Ok(at);
        }
        Ok(self
            .journal_body(&j.key, bodies)
            .await?
            .map_or(i64::MAX, |b| b.committed_at))
    }

    async fn journal_body<'b>(
        &self,
        key: &str,
        bodies: &'b mut HashMap<String, Journal>,
    ) -> Result<Option<&'b Journal>> {
        if !bodies.contains_key(key) {
            let Some(obj) = self.ports.store.get(key).await? else {
                return Ok(None);
            };
            bodies.insert(key.to_string(), parse_journal(key, &obj.bytes)?.0);
        }
        Ok(bodies.get(key))
    }

    /// Collects one record's history; returns (deleted, errors).
    async fn gc_record(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        cut: Cutoffs,
        now: i64,
    ) -> Result<(u64, u64)> {
        let Some(meta) = self.ports.records.bookkeeping(resource, id).await? else {
            return Ok((0, 0));
        };
        let state = FieldState::of(&meta, &fc.field);
        let jprefix = self.ports.layout.journals(resource, &fc.field, id);
        let cprefix = self.ports.layout.checkpoints(resource, &fc.field, id);
        // Journals first, then checkpoints (see the module docs).
        let journals = listed(
            &jprefix,
            list_all(self.ports.store.as_ref(), &jprefix).await?,
        );
        let checkpoints = listed(
            &cprefix,
            list_all(self.ports.store.as_ref(), &cprefix).await?,
        );
        // The newest checkpoint: the floor when it is this incarnation's, and in any case the
        // carrier of markers still too young to go.
        let newest = match checkpoints.last() {
            Some(c) => self
                .ports
                .journals()
                .read_checkpoint(&c.key)
                .await?
                .map(|cp| (c.key.clone(), cp)),
            None => None,
        };
        let carried: Vec<Marker> = newest
            .as_ref()
            .map(|(_, c)| c.markers.clone())
            .unwrap_or_default();
        let cp = newest
            .as_ref()
            .map(|(_, c)| c)
            .filter(|c| c.seq > state.base)
            .cloned();
        let floor = cp.as_ref().map_or(0, |c| c.seq).max(state.base);
        let mut bodies: HashMap<String, Journal> = HashMap::new();
        let mut doomed: Vec<String> = Vec::new();
        let mut collected: Vec<String> = Vec::new();
        for j in journals.iter().filter(|j| j.seq <= floor) {
            if self.committed_at(j, &mut bodies).await? < cut.journals {
                collected.push(j.key.clone());
            }
        }
        let above: Vec<&Listed> = journals
            .iter()
            .filter(|j| j.seq > floor && j.seq <= state.seq)
            .collect();
        let (chain, orphans) = self
            .sort_chain(&jprefix, &state, &above, &mut bodies)
            .await?;
        for o in orphans {
            if self.committed_at(o, &mut bodies).await? < cut.orphans {
                doomed.push(o.key.clone());
            }
        }
        // Journals committed before the current checkpoint period get their checkpoints; the
        // newest stays unless the bookkeeping remembers its keys itself (`done`).
        let keep = usize::from(state.done.is_none());
        let eligible = &chain[..chain.len().saturating_sub(keep)];
        let mut covered: Vec<Journal> = Vec::new();
        for j in eligible {
            let at = self.committed_at(j, &mut bodies).await?;
            let before_period = self.config.checkpoints_enabled
                && at < now
                && self.period_label(at) != self.period_label(now);
            if at >= cut.journals && !before_period {
                break;
            }
            match self.journal_body(&j.key, &mut bodies).await? {
                Some(body) => covered.push(body.clone()),
                None => break,
            }
        }
        // Whether the listed newest checkpoint still carries markers after this run (then it
        // stays, whatever its age or incarnation).
        let mut newest_carries = !carried.is_empty();
        if !covered.is_empty() {
            newest_carries = false; // a new checkpoint takes them over
            let old: Vec<&Journal> = covered.iter().collect();
            let ends = self.checkpoint_ends(&old, cut.checkpoints);
            for j in covered.iter().filter(|j| j.committed_at < cut.journals) {
                collected.push(j.key.clone());
            }
            let mine = self
                .markers_of(resource, fc, id, &collected, &mut bodies)
                .await?;
            let (due, young) = self
                .sort_markers(merge_markers(mine, carried), cut.markers)
                .await?;
            doomed.extend(due);
            for (n, end) in ends.iter().enumerate() {
                let j = &covered[*end];
                let values = self
                    .history
                    .replay(fc, &covered[..=*end], cp.as_ref(), state.base)
                    .await?;
                let name = checkpoint_name(j.seq, j.committed_at);
                let bytes = Checkpoint {
                    seq: j.seq,
                    at: j.committed_at,
                    values,
                    // Its place in the hash chain (see `crate::verify`).
                    hash: Some(j.hash.clone()),
                    // The newest checkpoint carries the markers too young to go.
                    markers: if n.saturating_add(1) == ends.len() {
                        young.clone()
                    } else {
                        Vec::new()
                    },
                }
                .encode()?;
                self.ports
                    .store
                    .put(&format!("{cprefix}{name}"), bytes, PutMode::Overwrite)
                    .await?;
            }
        } else {
            let mine = self
                .markers_of(resource, fc, id, &collected, &mut bodies)
                .await?;
            let unchanged = mine.is_empty();
            let (due, young) = self
                .sort_markers(merge_markers(mine, carried), cut.markers)
                .await?;
            match &newest {
                // The newest checkpoint carries the young ones, and stops naming the rest so
                // no later run deletes them again.
                Some((key, newest)) if !(unchanged && due.is_empty()) => {
                    let mut cp = newest.clone();
                    newest_carries = !young.is_empty();
                    cp.markers = young;
                    self.ports
                        .store
                        .put(key, cp.encode()?, PutMode::Overwrite)
                        .await?;
                }
                Some(_) => {}
                // No checkpoint to carry them: the journals of young markers wait.
                None => {
                    let young: std::collections::HashSet<&String> =
                        young.iter().map(|m| &m.key).collect();
                    collected.retain(|k| {
                        bodies.get(k).is_none_or(|j| {
                            !j.transactions.iter().any(|tx| {
                                tx.idempotency_hash().is_some_and(|h| {
                                    young.contains(
                                        &self.ports.layout.idempotency(resource, &fc.field, id, &h),
                                    )
                                })
                            })
                        })
                    });
                }
            }
            doomed.extend(due);
        }
        // Checkpoints past their retention, keeping the newest of this incarnation.
        let keep_newest =
            usize::from(newest_carries || checkpoints.last().is_some_and(|c| c.seq > state.base));
        for c in checkpoints.iter().rev().skip(keep_newest) {
            let at = match c.at {
                Some(at) => at,
                None => self
                    .ports
                    .journals()
                    .read_checkpoint(&c.key)
                    .await?
                    .map_or(i64::MAX, |c| c.at),
            };
            if at < cut.checkpoints {
                doomed.push(c.key.clone());
            }
        }
        doomed.extend(collected);
        doomed.sort();
        doomed.dedup();
        match delete_all(self.ports.store.as_ref(), &doomed).await {
            Ok(()) => Ok((doomed.len() as u64, 0)),
            Err(_) => Ok((0, 1)),
        }
    }

    /// The journals above the floor in batch order, contiguous from the floor on (the chain),
    /// and the leftovers of lost commits among them (see the module docs).
    async fn sort_chain<'l>(
        &self,
        prefix: &str,
        state: &FieldState,
        above: &[&'l Listed],
        bodies: &mut HashMap<String, Journal>,
    ) -> Result<(Vec<&'l Listed>, Vec<&'l Listed>)> {
        let mut groups: BTreeMap<u64, Vec<&Listed>> = BTreeMap::new();
        for j in above {
            groups.entry(j.seq).or_default().push(j);
        }
        let mut on_chain: HashMap<u64, String> = groups
            .iter()
            .filter(|(_, g)| g.len() == 1)
            .map(|(s, g)| (*s, g[0].key.clone()))
            .collect();
        let mut orphans = Vec::new();
        if let Some(low) = groups.iter().find(|(_, g)| g.len() > 1).map(|(s, _)| *s) {
            // Walk down from the head to the lowest shared batch number.
            let mut next = state.batch.clone();
            while let Some(batch) = next {
                let Some((seq, _)) = parse_batch(&batch) else {
                    break;
                };
                if seq < low {
                    break;
                }
                let key = format!("{prefix}{batch}");
                let Some(obj) = self.ports.store.get(&key).await? else {
                    break;
                };
                let (journal, prev) = parse_journal(&key, &obj.bytes)?;
                bodies.insert(key.clone(), journal);
                on_chain.insert(seq, key);
                next = prev;
            }
            for (seq, g) in groups.iter().filter(|(_, g)| g.len() > 1) {
                if let Some(k) = on_chain.get(seq) {
                    orphans.extend(g.iter().filter(|j| j.key != *k).copied());
                } else {
                    on_chain.remove(seq);
                }
            }
        }
        let mut chain = Vec::new();
        let mut seq = groups.keys().next().copied().unwrap_or(0);
        while let Some(j) = on_chain
            .get(&seq)
            .and_then(|k| groups.get(&seq)?.iter().find(|j| j.key == *k))
        {
            chain.push(*j);
            seq = seq.saturating_add(1);
        }
        Ok((chain, orphans))
    }

    /// The idempotency markers of the idempotent transactions in `journals`, with the commit
    /// time of their batch.
    async fn markers_of(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
        journals: &[String],
        bodies: &mut HashMap<String, Journal>,
    ) -> Result<Vec<Marker>> {
        let missing: Vec<String> = journals
            .iter()
            .filter(|k| !bodies.contains_key(*k))
            .cloned()
            .collect();
        let read: Vec<Result<Option<(String, Journal)>>> = futures::stream::iter(missing)
            .map(|key| async move {
                match self.ports.store.get(&key).await? {
                    Some(obj) => Ok(Some((key.clone(), parse_journal(&key, &obj.bytes)?.0))),
                    None => Ok(None),
                }
            })
            .buffered(self.config.mark_applied_concurrency.max(1))
            .collect()
            .await;
        for r in read {
            if let Some((k, j)) = r? {
                bodies.insert(k, j);
            }
        }
        Ok(journals
            .iter()
            .filter_map(|k| bodies.get(k))
            .flat_map(|j| {
                j.transactions.iter().filter_map(move |tx| {
                    let h = tx.idempotency_hash()?;
                    Some(Marker {
                        key: self.ports.layout.idempotency(resource, &fc.field, id, &h),
                        at: j.committed_at,
                        tx: Some(tx.id.clone()),
                    })
                })
            })
            .collect())
    }

    /// Splits markers into those to delete now and those still too young (with their time),
    /// by the time each stored marker says: a key reused after its marker went has a newer
    /// marker at the same key, which must not go with the old one. Vanished ones drop out.
    async fn sort_markers(
        &self,
        candidates: Vec<Marker>,
        cutoff: i64,
    ) -> Result<(Vec<String>, Vec<Marker>)> {
        // A marker can only be newer than its batch: those young by their batch's time are.
        let (check, mut young): (Vec<_>, Vec<_>) =
            candidates.into_iter().partition(|m| m.at < cutoff);
        let read: Vec<Result<Option<Marker>>> = futures::stream::iter(check)
            .map(|m| async move {
                let Some(obj) = self.ports.store.get(&m.key).await? else {
                    return Ok(None);
                };
                // An unreadable marker goes at its batch's time.
                let stored: MarkerHead =
                    formats::decode("idempotency marker", &m.key, &obj.bytes).unwrap_or_default();
                let stored_tx = stored.transaction_id();
                // Another transaction's marker at the same key (the key reused since): not
                // this one to collect; its own batch brings it in time.
                if m.tx
                    .as_deref()
                    .is_some_and(|t| stored_tx.is_some_and(|s| s != t))
                {
                    return Ok(None);
                }
                Ok(Some(Marker {
                    at: stored.at().unwrap_or(m.at),
                    ..m
                }))
            })
            .buffered(self.config.mark_applied_concurrency.max(1))
            .collect()
            .await;
        let mut due = Vec::new();
        for r in read {
            match r? {
                Some(m) if m.at < cutoff => due.push(m.key),
                Some(m) => young.push(m),
                None => {}
            }
        }
        Ok((due, young))
    }

    /// The checkpoint period (hour or day in `cohort.timezone`) a time falls in.
    fn period_label(&self, at: i64) -> String {
        let period = if self.config.checkpoints_hourly {
            crate::calendar::Period::Hour
        } else {
            crate::calendar::Period::Day
        };
        crate::calendar::cohort_label(at, period, self.config.timezone)
    }

    /// Which of the journals about to be checkpointed get a checkpoint: with
    /// `checkpoints.enabled`, the last batch of every period they were committed in, within
    /// `checkpoints.retention`; and always the last one, which `recalculate` needs.
    fn checkpoint_ends(&self, old: &[&Journal], cp_cutoff: i64) -> Vec<usize> {
        let label = |j: &Journal| self.period_label(j.committed_at);
        let last = old.len().saturating_sub(1);
        (0..old.len())
            .filter(|&i| {
                i == last
                    || (self.config.checkpoints_enabled
                        && old[i].committed_at >= cp_cutoff
                        && old
                            .get(i.saturating_add(1))
                            .is_some_and(|n| label(old[i]) != label(n)))
            })
            .collect()
    }
}
