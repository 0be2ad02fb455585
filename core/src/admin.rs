//! Administration views: `getStatus()`, `getCohortStats(r, f)` and the reading of every stored
//! transaction of a field (pending ones from their key names, applied ones from journals).

use crate::analytics_view::AnalyticsView;
use crate::calendar::Period;
use crate::calendar::cohorts_of;
use crate::config::PluginConfig;
use crate::error::Result;
use crate::history::History;
use crate::metrics::RunLog;
use crate::ports::Ports;
use crate::resolve::field_config;
use crate::store::list_all;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// `getStatus()`, `getCohortStats()` and `metrics()` of one engine.
#[derive(Clone, Copy)]
pub(crate) struct Admin<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The run counters.
    pub(crate) runs: &'a RunLog,
    /// Reads and replays a field's history.
    pub(crate) history: History<'a>,
    /// Reads materialized analytics.
    pub(crate) view: AnalyticsView<'a>,
}

impl<'a> Admin<'a> {
    /// `getStatus()`: mode, handlers, run counters, and per field the pending transactions and
    /// the dead letters (transactions set aside, see [`crate::dead_letters`]).
    pub(crate) async fn status(&self) -> Result<Value> {
        let c = self.config;
        let mut handlers = Map::new();
        for r in &c.resources {
            handlers.insert(
                r.resource.clone(),
                json!(r.fields.iter().map(|f| f.field.clone()).collect::<Vec<_>>()),
            );
        }
        let mut pending = Map::new();
        let mut dead = Map::new();
        for (resource, fc) in self.config.fields() {
            let prefix = self.ports.layout.pending_field(&resource, &fc.field);
            let n = list_all(self.ports.store.as_ref(), &prefix).await?.len();
            pending.insert(format!("{resource}.{}", fc.field), json!(n));
            let d = crate::dead_letters::count(self.ports, &resource, &fc.field).await?;
            dead.insert(format!("{resource}.{}", fc.field), json!(d));
        }
        let s = self.runs.snapshot();
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
                "lastRunAt": s.last_run_ms.map(crate::calendar::iso_timestamp),
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
    pub(crate) async fn cohort_stats(&self, resource: &str, field: &str) -> Result<Value> {
        field_config(self.config, resource, field)?;
        let zone = self.config.timezone;
        let now = self.ports.now_ms();
        let hours = self.config.window_h.ceil().max(1.0) as i64;
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
        if self.config.analytics_enabled {
            let mut hours = labels.clone();
            hours.sort();
            let (points, pending, _) = self
                .view
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
            let all = self
                .history
                .field_transactions(resource, field, None)
                .await?;
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
    pub(crate) async fn metrics(&self) -> Result<Value> {
        let c = self.ports.store.request_counts().unwrap_or_default();
        let s = self.runs.snapshot();
        let mut fields = Vec::new();
        for (resource, fc) in self.config.fields() {
            let prefix = self.ports.layout.pending_field(&resource, &fc.field);
            let pending = list_all(self.ports.store.as_ref(), &prefix).await?.len();
            let dead = crate::dead_letters::count(self.ports, &resource, &fc.field).await?;
            let last = s
                .last_success_ms
                .get(&format!("{resource}.{}", fc.field))
                .copied();
            fields.push(json!({
                "resource": resource,
                "field": fc.field,
                "pending": pending,
                "deadLetters": dead,
                "lastSuccessAt": last.map(crate::calendar::iso_timestamp),
                "lastSuccessMs": last,
            }));
        }
        Ok(crate::metrics::snapshot(c, &s, fields))
    }

    /// [`Engine::metrics`](crate::Engine::metrics) as Prometheus text exposition (names
    /// prefixed `tally_`).
    pub(crate) async fn metrics_text(&self) -> Result<String> {
        Ok(crate::metrics::prometheus(&self.metrics().await?))
    }
}
