//! `recalculate`: a field's values rebuilt from its history (the last checkpoint plus every
//! later journal, see [`crate::journal`]), exact after any GC because GC writes a checkpoint
//! before it deletes the journals it covers.

use crate::amount::decimal_to_json;
use crate::config::{FieldConfig, PluginConfig};
use crate::consolidate::Consolidator;
use crate::error::{Error, ErrorCode, Result};
use crate::formats::FieldState;
use crate::journal::{Checkpoint, Journal};
use crate::keys::{check_record_id, split_record_key};
use crate::ports::Ports;
use crate::records::CommitOutcome;
use crate::resolve::{field_config, resolve};
use crate::schema::{get_path, set_path};
use crate::store::cas::RetryPolicy;
use crate::store::list_all;
use crate::txn::Transaction;
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

/// Every stored transaction of one field: pending and applied (still kept by GC).
#[derive(Debug, Default, Clone)]
pub struct FieldTransactions {
    /// Not applied yet, by record.
    pub pending: Vec<Transaction>,
    /// Applied, from the journals GC has kept.
    pub applied: Vec<Transaction>,
}

/// A field's stored transactions and its values rebuilt from history.
#[derive(Clone, Copy)]
pub(crate) struct History<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The exactly-once consolidation (and the pending reads).
    pub(crate) consolidator: Consolidator<'a>,
}

impl<'a> History<'a> {
    /// Reads every stored transaction of a field: applied ones from each record's committed
    /// journals (on the chain only: a leftover of a lost commit applied nothing), pending ones
    /// from their key names. Costs one LIST page per 1,000 pending transactions, one GET per
    /// pending transaction that needs its body, and per record one GET of its bookkeeping, one
    /// LIST and one GET per kept journal.
    ///
    /// With `record`, that record's only: its pending keys and its chain, whatever the rest of
    /// the field holds.
    pub(crate) async fn field_transactions(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<FieldTransactions> {
        let fc = field_config(self.config, resource, field)?;
        let mut out = FieldTransactions {
            pending: self
                .consolidator
                .pending_transactions(resource, field, record)
                .await?,
            ..FieldTransactions::default()
        };
        let ids: Vec<String> = match record {
            Some(id) => vec![id.to_string()],
            None => {
                let jprefix = self.ports.layout.journals_field(resource, &fc.field);
                let mut ids: Vec<String> = list_all(self.ports.store.as_ref(), &jprefix)
                    .await?
                    .iter()
                    .filter_map(|k| split_record_key(&jprefix, k).map(|(id, _)| id))
                    .collect();
                ids.dedup();
                ids
            }
        };
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            let (chain, _) = self
                .ports
                .journals()
                .chain(resource, &fc.field, &id)
                .await?;
            for journal in chain {
                out.applied.extend(
                    journal
                        .transactions
                        .into_iter()
                        .filter(|t| seen.insert(t.id.clone())),
                );
            }
        }
        out.pending.retain(|t| !seen.contains(&t.id));
        Ok(out)
    }

    /// Rebuilds the field's values from history (last checkpoint, or the value each path had
    /// before its first transaction, plus every later journal), writes them, and returns the
    /// value at the path. Pending transactions are applied first.
    pub(crate) async fn recalculate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
    ) -> Result<Option<Value>> {
        check_record_id(id)?;
        let target = resolve(self.config, self.ports.records.as_ref(), resource, field).await?;
        let fc = target.field.clone();
        for _ in RetryPolicy::AtMost(10).attempts() {
            if let crate::consolidate::Consolidated::Missing = self
                .consolidator
                .consolidate_record(resource, &fc, id)
                .await?
            {
                return Ok(None);
            }
            // The newest checkpoint of this incarnation first: only later journals are read.
            let Some(meta) = self.ports.records.bookkeeping(resource, id).await? else {
                return Ok(None);
            };
            let base = FieldState::of(&meta, &fc.field).base;
            let checkpoint = self
                .ports
                .journals()
                .latest_checkpoint(resource, &fc.field, id, base)
                .await?;
            let floor = checkpoint.as_ref().map_or(base, |c| c.seq);
            let (chain, _, read) = self
                .ports
                .journals()
                .chain_and_state(resource, &fc.field, id, floor)
                .await?;
            let chain: Vec<Journal> = chain.into_iter().filter(|j| j.seq > floor).collect();
            let gap = chain
                .first()
                .is_some_and(|j| j.seq != floor.saturating_add(1));
            if read.base != base
                || (gap
                    && self
                        .ports
                        .journals()
                        .latest_checkpoint(resource, &fc.field, id, base)
                        .await?
                        .map(|c| c.seq)
                        != checkpoint.as_ref().map(|c| c.seq))
            {
                continue; // deleted and created again, or a GC moved the checkpoint meanwhile
            }
            let values = self
                .replay(&fc, &chain, checkpoint.as_ref(), read.base)
                .await?;
            let Some(record) = self.ports.records.load(resource, id).await? else {
                return Ok(None);
            };
            let state = FieldState::of(&record.meta, &fc.field);
            let replayed_to_head = match chain.last() {
                Some(j) => state.batch == Some(batch_of(&j.key)),
                // Every journal collected: the checkpoint holds the head's values; or no batch
                // in this incarnation yet.
                None => {
                    state.batch.is_none()
                        || state.seq == read.base
                        || checkpoint.as_ref().is_some_and(|c| c.seq == state.seq)
                }
            } && state.base == read.base;
            if !replayed_to_head {
                continue; // a consolidation committed meanwhile: replay again
            }
            let mut data = record.data.clone();
            for (path, v) in &values {
                set_path(&mut data, path, decimal_to_json(*v));
            }
            match self
                .ports
                .records
                .commit(
                    resource,
                    id,
                    data.clone(),
                    record.meta,
                    &record.version,
                    &crate::consolidate::owned_and(&record.owned, values.keys()),
                )
                .await?
            {
                CommitOutcome::Committed => {
                    return Ok(Some(
                        get_path(&data, &target.path)
                            .cloned()
                            .unwrap_or(Value::Null),
                    ));
                }
                CommitOutcome::Missing => return Ok(None),
                CommitOutcome::Conflict => continue,
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            format!(
                "record \"{id}\" of \"{resource}\" kept changing during recalculate; try again"
            ),
        ))
    }

    pub(crate) async fn replay(
        &self,
        fc: &FieldConfig,
        chain: &[Journal],
        cp: Option<&Checkpoint>,
        base: u64,
    ) -> Result<BTreeMap<String, Decimal>> {
        let mut values: BTreeMap<String, Decimal> =
            cp.map(|c| c.values.clone()).unwrap_or_default();
        let from = cp.map(|c| c.seq).unwrap_or(base);
        let first_kept = chain
            .first()
            .map(|j| j.seq)
            .unwrap_or(from.saturating_add(1));
        if first_kept > from.saturating_add(1) {
            return Err(Error::new(
                ErrorCode::Storage,
                format!(
                    "history of \"{}\" is incomplete: journals before batch {first_kept} are gone and no checkpoint covers them",
                    fc.field
                ),
            ));
        }
        for j in chain.iter().filter(|j| j.seq > from) {
            let ends = self.reduce_journal(fc, j, &values).await?;
            values.extend(ends);
        }
        Ok(values)
    }

    /// The value each path of journal `j` ends at when its transactions are applied to
    /// `values` (or, for a path `values` lacks, to the value the journal says it had before).
    pub(crate) async fn reduce_journal(
        &self,
        fc: &FieldConfig,
        j: &Journal,
        values: &BTreeMap<String, Decimal>,
    ) -> Result<BTreeMap<String, Decimal>> {
        let mut by_path: BTreeMap<&str, Vec<&Transaction>> = BTreeMap::new();
        for tx in &j.transactions {
            by_path.entry(tx.field_path.as_str()).or_default().push(tx);
        }
        let mut ends = BTreeMap::new();
        for (path, txs) in by_path {
            let start = match values.get(path) {
                Some(v) => *v,
                None => j
                    .values
                    .get(path)
                    .map(|(b, _)| *b)
                    .unwrap_or(fc.initial_value),
            };
            let end = self.consolidator.reduce(fc, start, &txs).await?;
            ends.insert(path.to_string(), end);
        }
        Ok(ends)
    }
}

fn batch_of(key: &str) -> String {
    key.rsplit('/').next().unwrap_or_default().to_string()
}
