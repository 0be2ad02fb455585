//! Administration views: `getStatus()`, `getCohortStats(r, f)` and the reading of every stored
//! transaction of a field (pending ones from their key names, applied ones from journals).

use crate::amount::truncate;
use crate::cohort::cohorts_of;
use crate::config::{FieldConfig, Period};
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
use crate::keys::split_record_key;
use crate::store::list_all;
use crate::txn::Transaction;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Every stored transaction of one field: pending and applied (still kept by GC).
#[derive(Debug, Default, Clone)]
pub struct FieldTransactions {
    /// Not applied yet, by record.
    pub pending: Vec<Transaction>,
    /// Applied, from the journals GC has kept.
    pub applied: Vec<Transaction>,
}

impl Engine {
    pub(crate) fn field_config(&self, resource: &str, field: &str) -> Result<FieldConfig> {
        let rc = self.resource_config(resource)?;
        rc.fields
            .iter()
            .find(|f| f.field == field)
            .cloned()
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::UnknownField,
                    format!(
                        "field \"{}\" is not configured for resource \"{resource}\"",
                        truncate(field, 60)
                    ),
                )
            })
    }

    /// Reads the pending transactions of a field: one LIST page per 1,000, plus a GET for each
    /// one whose name does not carry it whole.
    pub(crate) async fn pending_transactions(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<Vec<Transaction>> {
        Ok(self
            .pending_named(resource, field, record)
            .await?
            .into_iter()
            .map(|(_, tx)| tx)
            .collect())
    }

    /// [`Engine::pending_transactions`], each with its key name (under its record's folder).
    pub(crate) async fn pending_named(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<Vec<(String, Transaction)>> {
        let fc = self.field_config(resource, field)?;
        let mut out = Vec::new();
        let prefix = self.layout().pending_field(resource, &fc.field);
        // One record's: only its own keys are listed (they sort under its folder).
        let listed = match record {
            Some(id) => self.layout().pending(resource, &fc.field, id),
            None => prefix.clone(),
        };
        for key in list_all(self.store().as_ref(), &listed).await? {
            let Some((id, name)) = split_record_key(&prefix, &key) else {
                continue;
            };
            let record_prefix = self.layout().pending(resource, &fc.field, &id);
            if let Some(tx) = self
                .consolidator()
                .read_pending(resource, &fc, &id, &record_prefix, name)
                .await?
            {
                out.push((name.to_string(), tx));
            }
        }
        Ok(out)
    }

    /// Reads every stored transaction of a field: applied ones from each record's committed
    /// journals (on the chain only: a leftover of a lost commit applied nothing), pending ones
    /// from their key names. Costs one LIST page per 1,000 pending transactions, one GET per
    /// pending transaction that needs its body, and per record one GET of its bookkeeping, one
    /// LIST and one GET per kept journal.
    ///
    /// With `record`, that record's only: its pending keys and its chain, whatever the rest of
    /// the field holds.
    pub async fn field_transactions(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<FieldTransactions> {
        let fc = self.field_config(resource, field)?;
        let mut out = FieldTransactions {
            pending: self.pending_transactions(resource, field, record).await?,
            ..FieldTransactions::default()
        };
        let ids: Vec<String> = match record {
            Some(id) => vec![id.to_string()],
            None => {
                let jprefix = self.layout().journals_field(resource, &fc.field);
                let mut ids: Vec<String> = list_all(self.store().as_ref(), &jprefix)
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
            let (chain, _) = self.journal_chain(resource, &fc.field, &id).await?;
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

    /// `getStatus()`: mode, handlers, run counters, and per field the pending transactions and
    /// the dead letters (transactions set aside, see [`crate::dead_letters`]).
    pub async fn status(&self) -> Result<Value> {
        let c = self.config();
        let mut handlers = Map::new();
        for r in &c.resources {
            handlers.insert(
                r.resource.clone(),
                json!(r.fields.iter().map(|f| f.field.clone()).collect::<Vec<_>>()),
            );
        }
        let mut pending = Map::new();
        let mut dead = Map::new();
        for (resource, fc) in self.configured_fields() {
            let prefix = self.layout().pending_field(&resource, &fc.field);
            let n = list_all(self.store().as_ref(), &prefix).await?.len();
            pending.insert(format!("{resource}.{}", fc.field), json!(n));
            let d = self.dead_letter_count(&resource, &fc.field).await?;
            dead.insert(format!("{resource}.{}", fc.field), json!(d));
        }
        let s = self.run_status();
        Ok(json!({
            "name": "EventualConsistencyPlugin",
            "version": env!("CARGO_PKG_VERSION"),
            "mode": c.mode.as_str(),
            "autoConsolidate": c.auto,
            "consolidationInterval": c.interval_s,
            "enableAnalytics": c.analytics_enabled,
            "timezone": c.timezone.name(),
            "handlers": handlers,
            "pending": pending,
            "deadLetters": dead,
            "runs": {
                "consolidations": s.runs,
                "lastRunAt": s.last_run_ms.map(crate::cohort::iso_timestamp),
                "recordsConsolidated": s.records_consolidated,
                "transactionsApplied": s.transactions_applied,
                "errors": s.errors,
                "hostRefusals": s.host_refusals,
                "gcRuns": s.gc_runs,
            },
        }))
    }

    /// `getCohortStats(r, f)`: per local hour of the last `consolidation.window` hours (most
    /// recent first), how many transactions are pending and applied. With analytics on, the
    /// applied ones are the materialized hour points' (GC does not change them) and the cost
    /// is that of the pending transactions; without, the transactions stored (GC removes
    /// applied ones), read from the journals.
    pub async fn cohort_stats(&self, resource: &str, field: &str) -> Result<Value> {
        self.field_config(resource, field)?;
        let zone = self.zone();
        let now = self.now_ms();
        let hours = self.config().window_h.ceil().max(1.0) as i64;
        let mut counts: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        // Walk back hour by hour in UTC; a repeated local hour (fall-back) collapses into one
        // label, as cohorts do.
        let mut labels = Vec::new();
        for h in 0..hours {
            let label = cohorts_of(now.saturating_sub(h.saturating_mul(3_600_000)), zone).hour;
            if !labels.contains(&label) {
                counts.insert(label.clone(), (0, 0));
                labels.push(label);
            }
        }
        let mut count = |ms: i64, applied: bool| {
            if let Some(c) = counts.get_mut(&cohorts_of(ms, zone).hour) {
                if applied {
                    c.1 = c.1.saturating_add(1);
                } else {
                    c.0 = c.0.saturating_add(1);
                }
            }
        };
        if self.config().analytics_enabled {
            let mut hours = labels.clone();
            hours.sort();
            let (points, pending, _) = self
                .points_with_pending(resource, field, Period::Hour, Some(&hours))
                .await?;
            for f in &pending {
                count(f.timestamp_ms, false);
            }
            for (label, p) in points {
                if let Some(c) = counts.get_mut(&label) {
                    c.1 = c.1.saturating_add(p.count);
                }
            }
        } else {
            let all = self.field_transactions(resource, field, None).await?;
            for (tx, applied) in all
                .pending
                .iter()
                .map(|t| (t, false))
                .chain(all.applied.iter().map(|t| (t, true)))
            {
                count(tx.timestamp_ms, applied);
            }
        }
        Ok(Value::Array(
            labels
                .iter()
                .map(|l| {
                    let (p, a) = counts[l];
                    json!({ "cohort": l, "pending": p, "applied": a, "total": p.saturating_add(a) })
                })
                .collect(),
        ))
    }

    /// `metrics()`: `{ requests: { get, put, list, delete, deleteMany, conflicts, failures,
    /// retries }, consolidation: { runs, errors, recordsConsolidated, transactionsApplied,
    /// hostRefusals, gcRuns, latencyMs: { count, sumMs, buckets: [{ le, count }] } },
    /// fields: [{ resource, field, pending, deadLetters, lastSuccessAt }] }`. Request
    /// counts are those of the store this engine's connection opened (zero for a store
    /// handed in that does not count).
    pub async fn metrics(&self) -> Result<Value> {
        let c = self.store().request_counts().unwrap_or_default();
        let s = self.run_status();
        let mut fields = Vec::new();
        for (resource, fc) in self.configured_fields() {
            let prefix = self.layout().pending_field(&resource, &fc.field);
            let pending = list_all(self.store().as_ref(), &prefix).await?.len();
            let dead = self.dead_letter_count(&resource, &fc.field).await?;
            let last = s
                .last_success_ms
                .get(&format!("{resource}.{}", fc.field))
                .copied();
            fields.push(json!({
                "resource": resource,
                "field": fc.field,
                "pending": pending,
                "deadLetters": dead,
                "lastSuccessAt": last.map(crate::cohort::iso_timestamp),
                "lastSuccessMs": last,
            }));
        }
        Ok(crate::metrics::snapshot(c, &s, fields))
    }

    /// [`Engine::metrics`] as Prometheus text exposition (names prefixed `tally_`).
    pub async fn metrics_text(&self) -> Result<String> {
        Ok(crate::metrics::prometheus(&self.metrics().await?))
    }
}
