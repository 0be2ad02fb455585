//! The audit: `verify` proves that every value is the sum of its history and that no journal
//! was changed, removed or reordered.
//!
//! Journals form a hash chain: each carries the SHA-256 of its predecessor's bytes
//! (`prevHash`), the record's bookkeeping the head's (`hash`), and each checkpoint the hash of
//! the journal of its batch. [`Verifier::verify`] walks every record's chain from the
//! head, checks every link it can (a link from a journal written before chaining is *unchained*:
//! read and replayed, but not hash-checked), replays each journal's transactions against the
//! value it says it started from, carries the values from batch to batch and through the
//! checkpoints, and compares the result with the stored value. The report also carries each
//! record's head and a digest of all heads; an auditor who keeps the digest elsewhere can
//! tell a later rewrite of a whole chain (see `docs/audit-trail.md`).
//!
//! Cost: per record, one GET of the record, one LIST of its journals and one of its
//! checkpoints, and one GET per kept journal and checkpoint.

use crate::amount::{decimal_from_json, decimal_to_json};
use crate::config::{FieldConfig, PluginConfig};
use crate::error::Result;
use crate::formats::FieldState;
use crate::history::History;
use crate::journal::{Checkpoint, Journal, parse_journal};
use crate::ports::Ports;
use crate::resolve::field_config;
use crate::schema::get_path;
use crate::store::list_all;
use futures::StreamExt;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap};

/// How many journals of one record are read at once.
const READ_AHEAD: usize = 8;

/// One thing `verify` found wrong with a record's history.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Problem {
    /// The record.
    pub id: String,
    /// Stable kind: `journal-changed`, `journal-removed`, `journal-reordered`,
    /// `journal-unreadable`, `journal-inconsistent`, `checkpoint-mismatch`, `value-mismatch`,
    /// `host-mismatch` (inside a host database, its copy differs), `bookkeeping-changed` or
    /// `record-missing`; as a warning, `chain-downgraded`.
    pub kind: &'static str,
    /// The object concerned (a journal or checkpoint key), when there is one.
    pub key: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

impl Problem {
    fn new(id: &str, kind: &'static str, key: Option<&str>, message: String) -> Problem {
        Problem {
            id: id.to_string(),
            kind,
            key: key.map(str::to_string),
            message,
        }
    }

    fn to_json(&self) -> Value {
        json!({ "id": self.id, "kind": self.kind, "key": self.key, "message": self.message })
    }
}

/// What `verify` concluded about one record's field.
#[derive(Debug, Clone, Default)]
struct Verdict {
    journals: u64,
    hashed: u64,
    unchained: u64,
    problems: Vec<Problem>,
    warnings: Vec<Problem>,
}

impl Verdict {
    fn warning(&mut self, id: &str, kind: &'static str, key: Option<&str>, message: String) {
        self.warnings.push(Problem::new(id, kind, key, message));
    }

    fn problem(&mut self, id: &str, kind: &'static str, key: Option<&str>, message: String) {
        self.problems.push(Problem::new(id, kind, key, message));
    }
}

/// The paths of `values` that `data` holds otherwise, with what it holds.
fn differing(
    data: &Map<String, Value>,
    values: &BTreeMap<String, Decimal>,
) -> Vec<(String, String)> {
    values
        .iter()
        .filter_map(|(path, value)| {
            // Values are stored as JSON numbers (f64): compare with what a commit stores.
            let stored = get_path(data, path).and_then(decimal_from_json);
            let written = decimal_from_json(&decimal_to_json(*value));
            (stored != written).then(|| {
                (
                    path.clone(),
                    stored.map_or("nothing".to_string(), |d| d.to_string()),
                )
            })
        })
        .collect()
}

/// A journal as read: its bytes' hash, and the body when it parses.
enum Read {
    Parsed(Box<Journal>, Option<String>),
    Unreadable(String, String),
}

/// Checks a field's stored history against its records.
#[derive(Clone, Copy)]
pub(crate) struct Verifier<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// Reads and replays a field's history.
    pub(crate) history: History<'a>,
}

impl<'a> Verifier<'a> {
    /// Verifies the history of every record of `resource`'s `field` that has journals or
    /// checkpoints, and of each id in `ids` (the records the caller lists, so a record whose
    /// every journal was removed is checked too). Returns `{ resource, field, records,
    /// journals, chained, unchained, problems: [{ id, kind, key, message }], warnings (the
    /// same form), heads: { id: { seq, hash } }, digest }`; `problems` is empty when the
    /// history explains every value.
    pub(crate) async fn verify(
        &self,
        resource: &str,
        field: &str,
        ids: &[String],
    ) -> Result<Value> {
        let fc = field_config(self.config, resource, field)?;
        let mut all = self
            .ports
            .journals()
            .ids_with_history(resource, &fc.field)
            .await?;
        all.extend(ids.iter().cloned());
        let mut total = Verdict::default();
        let mut heads = Map::new();
        let mut records = 0u64;
        for id in &all {
            crate::keys::check_record_id(id)?;
            let (verdict, head) = self.verify_record(resource, &fc, id).await?;
            records = records.saturating_add(1);
            total.journals = total.journals.saturating_add(verdict.journals);
            total.hashed = total.hashed.saturating_add(verdict.hashed);
            total.unchained = total.unchained.saturating_add(verdict.unchained);
            total.problems.extend(verdict.problems);
            total.warnings.extend(verdict.warnings);
            if let Some((seq, hash)) = head {
                heads.insert(id.clone(), json!({ "seq": seq, "hash": hash }));
            }
        }
        let digest_lines: String = heads
            .iter()
            .map(|(id, h)| format!("{id} {} {}\n", h["seq"], h["hash"].as_str().unwrap_or("")))
            .collect();
        Ok(json!({
            "resource": resource,
            "field": fc.field,
            "records": records,
            "journals": total.journals,
            "chained": total.hashed,
            "unchained": total.unchained,
            "problems": total.problems.iter().map(Problem::to_json).collect::<Vec<_>>(),
            "warnings": total.warnings.iter().map(Problem::to_json).collect::<Vec<_>>(),
            "heads": heads,
            "digest": crate::keys::sha256_hex(digest_lines.as_bytes()),
        }))
    }

    /// Reads every journal of one record (a few at a time), keyed by batch name.
    async fn read_journals(&self, prefix: &str) -> Result<HashMap<String, Read>> {
        let keys = list_all(self.ports.store.as_ref(), prefix).await?;
        let reads = futures::stream::iter(keys.into_iter().map(|key| async move {
            let obj = self.ports.store.get(&key).await?;
            Ok::<_, crate::error::Error>(obj.map(|o| {
                let read = match parse_journal(&key, &o.bytes) {
                    Ok((j, prev)) => Read::Parsed(Box::new(j), prev),
                    Err(e) => {
                        Read::Unreadable(crate::keys::sha256_hex(&o.bytes), e.message().to_string())
                    }
                };
                (key, read)
            }))
        }))
        .buffered(READ_AHEAD)
        .collect::<Vec<_>>()
        .await;
        let mut out = HashMap::new();
        for r in reads {
            if let Some((key, read)) = r? {
                let batch = key.strip_prefix(prefix).unwrap_or(&key).to_string();
                out.insert(batch, read);
            }
        }
        Ok(out)
    }

    /// Every checkpoint of one record that parses, by batch number (the listing comes after
    /// the journals' reads: a journal GC removed meanwhile is covered by one it shows).
    async fn read_checkpoints(
        &self,
        resource: &str,
        field: &str,
        id: &str,
        v: &mut Verdict,
    ) -> Result<BTreeMap<u64, (String, Checkpoint)>> {
        let prefix = self.ports.layout.checkpoints(resource, field, id);
        let mut out = BTreeMap::new();
        for key in list_all(self.ports.store.as_ref(), &prefix).await? {
            let Some(obj) = self.ports.store.get(&key).await? else {
                continue;
            };
            match Checkpoint::decode(&key, &obj.bytes) {
                Ok(cp) => {
                    out.insert(cp.seq, (key, cp));
                }
                Err(e) => v.problem(
                    id,
                    "checkpoint-mismatch",
                    Some(&key),
                    e.message().to_string(),
                ),
            }
        }
        Ok(out)
    }

    /// Verifies one record's field; returns the verdict and the head `(seq, hash)`.
    async fn verify_record(
        &self,
        resource: &str,
        fc: &FieldConfig,
        id: &str,
    ) -> Result<(Verdict, Option<(u64, Option<String>)>)> {
        let mut v = Verdict::default();
        // The record (or a deleted record's tombstone) first: every journal of a batch it
        // names was written before the listing below.
        let (data, meta, exists) = match self.ports.records.load(resource, id).await? {
            Some(r) => (Some(r.data), r.meta, true),
            None => match self.ports.records.bookkeeping(resource, id).await? {
                Some(meta) => (None, meta, true),
                None => (None, Map::new(), false),
            },
        };
        let state = FieldState::of(&meta, &fc.field);
        let prefix = self.ports.layout.journals(resource, &fc.field, id);
        let mut reads = self.read_journals(&prefix).await?;
        let checkpoints = self
            .read_checkpoints(resource, &fc.field, id, &mut v)
            .await?;
        if state.base > state.seq || (state.batch.is_none() && state.seq > state.base) {
            v.problem(
                id,
                "bookkeeping-changed",
                None,
                format!(
                    "the bookkeeping counts {} batches after {} of earlier incarnations, and names {}",
                    state.seq.saturating_sub(state.base),
                    state.base,
                    state.batch.as_deref().unwrap_or("no last batch")
                ),
            );
        }
        if state.batch.is_none() {
            // A record that never committed a batch may have a lost commit's journal.
            if !reads.is_empty() && !exists {
                v.problem(
                    id,
                    "record-missing",
                    None,
                    format!("{} journals exist but the record does not", reads.len()),
                );
            }
            return Ok((v, None));
        }
        // Walk down from the head, checking each link.
        let mut chain: Vec<Journal> = Vec::new();
        let mut expected = state.hash.clone();
        let mut next = state.batch.clone();
        let mut want_seq = state.seq;
        // The batch below the walk's last journal when the walk stopped at a covered gap.
        let mut stopped_at: Option<u64> = None;
        while let Some(batch) = next.take() {
            let key = format!("{prefix}{batch}");
            let seq = crate::keys::batch_seq(&batch).unwrap_or(0);
            match reads.remove(&batch) {
                None => {
                    // GC keeps a checkpoint over what it collects of this incarnation; an
                    // earlier (deleted) incarnation's history may go whole.
                    if seq <= state.base || checkpoints.range(seq..).next().is_some() {
                        stopped_at = Some(seq);
                    } else {
                        v.problem(
                            id,
                            "journal-removed",
                            Some(&key),
                            format!(
                                "journal of batch {seq} is missing and no checkpoint covers it"
                            ),
                        );
                    }
                }
                Some(Read::Unreadable(hash, why)) => {
                    let kind = match &expected {
                        Some(h) if *h != hash => "journal-changed",
                        _ => "journal-unreadable",
                    };
                    v.problem(id, kind, Some(&key), why);
                }
                Some(Read::Parsed(j, prev)) => {
                    v.journals = v.journals.saturating_add(1);
                    let head = chain.is_empty() && seq == state.seq;
                    if head && state.seq > state.base && j.base != state.base {
                        v.problem(
                            id,
                            "bookkeeping-changed",
                            Some(&key),
                            format!(
                                "the bookkeeping says this incarnation starts after batch {}; its last journal says {}",
                                state.base, j.base
                            ),
                        );
                    }
                    if expected.is_none() && j.prev_hash.is_some() {
                        v.warning(
                            id,
                            "chain-downgraded",
                            Some(&key),
                            format!("batch {seq} was chained, yet what follows it carries no hash: written by an earlier version during an upgrade, or its hash removed"),
                        );
                    }
                    match &expected {
                        Some(h) if *h != j.hash => v.problem(
                            id,
                            "journal-changed",
                            Some(&key),
                            format!("journal of batch {seq} does not hash to what its successor recorded"),
                        ),
                        Some(_) => v.hashed = v.hashed.saturating_add(1),
                        None => v.unchained = v.unchained.saturating_add(1),
                    }
                    if j.seq != seq || seq != want_seq {
                        v.problem(
                            id,
                            "journal-reordered",
                            Some(&key),
                            format!(
                                "journal named batch {seq} holds batch {} where batch {want_seq} belongs",
                                j.seq
                            ),
                        );
                    }
                    expected = j.prev_hash.clone();
                    next = prev;
                    want_seq = want_seq.saturating_sub(1);
                    chain.push(*j);
                }
            }
        }
        chain.reverse();
        let start = stopped_at.and_then(|s| checkpoints.get(&s));
        if let (Some((key, cp)), Some(first)) = (start, chain.first())
            && cp.hash.is_some()
            && first.prev_hash.is_some()
            && cp.hash != first.prev_hash
        {
            v.problem(
                id,
                "checkpoint-mismatch",
                Some(key),
                format!(
                    "checkpoint of batch {} is not the place in the chain batch {} follows",
                    cp.seq, first.seq
                ),
            );
        }
        let start = start.map(|(_, cp)| cp).filter(|cp| cp.seq > state.base);
        let values = self
            .replay_checked(fc, id, state.base, start, &chain, &checkpoints, &mut v)
            .await?;
        if let Some(data) = data {
            for (path, shown) in differing(&data, &values) {
                v.problem(
                    id,
                    "value-mismatch",
                    None,
                    format!(
                        "stored {path} is {shown}; its history gives {}",
                        values[&path]
                    ),
                );
            }
            // Inside a host database (s3db.js): the copy its users read, unless a batch
            // committed since the record was read (then the copy may be ahead).
            if let Some(copy) = self.ports.records.derived_copy(resource, id).await? {
                let off = differing(&copy, &values);
                let moved = || async {
                    let now = self.ports.records.bookkeeping(resource, id).await?;
                    Ok::<_, crate::error::Error>(
                        now.map(|m| FieldState::of(&m, &fc.field).seq) != Some(state.seq),
                    )
                };
                if !off.is_empty() && !moved().await? {
                    for (path, shown) in off {
                        v.problem(
                            id,
                            "host-mismatch",
                            None,
                            format!(
                                "the host database's copy holds {path} = {shown}; its history gives {}",
                                values[&path]
                            ),
                        );
                    }
                }
            }
        }
        Ok((v, Some((state.seq, state.hash))))
    }

    /// Replays a record's chain (oldest first) from the checkpoint `start`, checking each
    /// journal against the values before it and its own transactions, and each checkpoint met
    /// on the way; returns the values after the last batch of the incarnation after `base`.
    #[allow(clippy::too_many_arguments)]
    async fn replay_checked(
        &self,
        fc: &FieldConfig,
        id: &str,
        base: u64,
        start: Option<&Checkpoint>,
        chain: &[Journal],
        checkpoints: &BTreeMap<u64, (String, Checkpoint)>,
        v: &mut Verdict,
    ) -> Result<BTreeMap<String, Decimal>> {
        let mut values = start.map(|cp| cp.values.clone()).unwrap_or_default();
        for j in chain {
            let current = j.seq > base;
            for (path, (before, _)) in j.values.iter().filter(|_| current) {
                if let Some(had) = values.get(path).filter(|had| *had != before) {
                    v.problem(
                        id,
                        "value-mismatch",
                        Some(&j.key),
                        format!(
                            "batch {} starts {path} at {before}; its history gives {had}",
                            j.seq
                        ),
                    );
                }
            }
            for (path, end) in self.history.reduce_journal(fc, j, &BTreeMap::new()).await? {
                let said = j.values.get(&path).map(|(_, after)| *after);
                if said != Some(end) {
                    let said = said.map_or("nothing".to_string(), |d| d.to_string());
                    v.problem(
                        id,
                        "journal-inconsistent",
                        Some(&j.key),
                        format!(
                            "batch {}'s transactions take {path} to {end}; the journal says {said}",
                            j.seq
                        ),
                    );
                }
            }
            if !current {
                continue;
            }
            values.extend(j.values.iter().map(|(p, (_, after))| (p.clone(), *after)));
            let Some((key, cp)) = checkpoints.get(&j.seq) else {
                continue;
            };
            if cp.hash.as_ref().is_some_and(|h| *h != j.hash) {
                v.problem(
                    id,
                    "checkpoint-mismatch",
                    Some(key),
                    format!(
                        "checkpoint of batch {} names another journal than the chain's",
                        j.seq
                    ),
                );
            }
            for (path, value) in &cp.values {
                match values.get(path) {
                    Some(had) if had != value => v.problem(
                        id,
                        "checkpoint-mismatch",
                        Some(key),
                        format!("checkpoint of batch {} holds {path} = {value}; its history gives {had}", j.seq),
                    ),
                    Some(_) => {}
                    None => {
                        values.insert(path.clone(), *value);
                    }
                }
            }
        }
        Ok(values)
    }
}
