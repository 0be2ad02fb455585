//! Operator views for the `tally-ec` CLI: the pending transactions of a field by record, and
//! everything Tally knows of one record (value, pending, last consolidation, dead letters,
//! lease), so "why is w1 not updating?" has an answer.

use crate::calendar::iso_timestamp;
use crate::config::PluginConfig;
use crate::consolidate::Consolidator;
use crate::dead_letters::DeadLetters;
use crate::error::Result;
use crate::formats::FieldState;
use crate::formats::{self, LeaseDoc};
use crate::ports::Ports;
use crate::resolve::{field_config, resource_config};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// One record's pending transactions of a field: how many, and the oldest timestamp.
#[derive(Debug, Default, Clone, Copy)]
struct Waiting {
    count: u64,
    oldest: i64,
}

fn waiting_json(w: Option<&Waiting>) -> Value {
    match w {
        Some(w) => json!({ "count": w.count, "oldest": iso_timestamp(w.oldest) }),
        None => json!({ "count": 0, "oldest": null }),
    }
}

/// The operator views of the CLI.
#[derive(Clone, Copy)]
pub(crate) struct Inspector<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// The exactly-once consolidation (and the pending reads).
    pub(crate) consolidator: Consolidator<'a>,
    /// The dead letters of each field.
    pub(crate) dead_letters: DeadLetters<'a>,
}

impl<'a> Inspector<'a> {
    async fn waiting(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<BTreeMap<String, Waiting>> {
        let mut by: BTreeMap<String, Waiting> = BTreeMap::new();
        for tx in self
            .consolidator
            .pending_transactions(resource, field, record)
            .await?
        {
            let w = by.entry(tx.original_id.clone()).or_insert(Waiting {
                count: 0,
                oldest: tx.timestamp_ms,
            });
            w.count = w.count.saturating_add(1);
            w.oldest = w.oldest.min(tx.timestamp_ms);
        }
        Ok(by)
    }

    /// The pending transactions of a field by record: `[{ recordId, count, oldest }]`, oldest
    /// first. One LIST page per 1,000 pending transactions (and a GET for those whose key
    /// name does not carry them whole).
    pub(crate) async fn pending_summary(&self, resource: &str, field: &str) -> Result<Value> {
        let fc = field_config(self.config, resource, field)?;
        let mut rows: Vec<(String, Waiting)> = self
            .waiting(resource, &fc.field, None)
            .await?
            .into_iter()
            .collect();
        rows.sort_by(|a, b| (a.1.oldest, &a.0).cmp(&(b.1.oldest, &b.0)));
        Ok(Value::Array(
            rows.iter()
                .map(|(id, w)| {
                    json!({ "recordId": id, "count": w.count, "oldest": iso_timestamp(w.oldest) })
                })
                .collect(),
        ))
    }

    /// The lease of a field's background passes: `{ owner, expiresAt }`, or `null` when none
    /// is held (never taken, released or expired).
    async fn lease_holder(&self, resource: &str, field: &str) -> Result<Value> {
        let key = self.ports.layout.lease(resource, field);
        let Some(obj) = self.ports.store.get(&key).await? else {
            return Ok(Value::Null);
        };
        let lease: LeaseDoc = formats::decode("lease", &key, &obj.bytes).unwrap_or_default();
        if lease.owner.is_empty() || lease.expires_at <= self.ports.now_ms() {
            return Ok(Value::Null);
        }
        Ok(json!({ "owner": lease.owner, "expiresAt": iso_timestamp(lease.expires_at) }))
    }

    /// Everything known of one record, per configured field of its resource: `{ resource,
    /// id, state, data, host, fields: [{ field, value, pending: {count, oldest}, batches,
    /// lastConsolidatedAt, deadLetters, lease, hostValue, inSync }] }`; `host`, `hostValue`
    /// and `inSync` inside a host database (s3db.js), whose copy may lag or refuse a value. `state` is `live`, `deleted` (a
    /// tombstone), `waiting` (transactions pending for a record that does not exist yet) or
    /// `unknown`.
    pub(crate) async fn inspect(&self, resource: &str, id: &str) -> Result<Value> {
        let rc = resource_config(self.config, resource)?;
        crate::keys::check_record_id(id)?;
        let record = self.ports.records.load(resource, id).await?;
        let meta = match &record {
            Some(r) => Some(r.meta.clone()),
            None => self.ports.records.bookkeeping(resource, id).await?,
        };
        // Inside a host database (s3db.js): its own copy, next to Tally's state.
        let host = self.ports.records.derived_copy(resource, id).await?;
        let mut fields = Vec::new();
        let mut pending_total: u64 = 0;
        for fc in &rc.fields {
            let waiting = self.waiting(resource, &fc.field, Some(id)).await?;
            let mine = waiting.get(id);
            pending_total = pending_total.saturating_add(mine.map_or(0, |w| w.count));
            let state = meta
                .as_ref()
                .map(|m| FieldState::of(m, &fc.field))
                .unwrap_or_default();
            let last = state
                .batch
                .as_deref()
                .and_then(crate::keys::parse_batch)
                .and_then(|(_, at)| at)
                .map(iso_timestamp);
            let dead: Vec<Value> = self
                .dead_letters
                .dead_letters(resource, &fc.field)
                .await?
                .into_iter()
                .filter(|d| d["recordId"].as_str() == Some(id))
                .collect();
            // The value lives at the field's path (`fieldPath`, or a dotted field).
            let at = |data: &serde_json::Map<String, Value>| {
                crate::schema::get_path(data, &fc.field_path).cloned()
            };
            let value = record.as_ref().and_then(|r| at(&r.data));
            let mut entry = json!({
                "field": fc.field,
                "value": value,
                "pending": waiting_json(mine),
                "batches": state.seq.saturating_sub(state.base),
                "lastConsolidatedAt": last,
                "deadLetters": dead,
                "lease": self.lease_holder(resource, &fc.field).await?,
            });
            if let Some(copy) = &host {
                let theirs = at(copy);
                let same = match (&theirs, &value) {
                    (Some(Value::Number(a)), Some(Value::Number(b))) => a.as_f64() == b.as_f64(),
                    (a, b) => a == b,
                };
                entry["hostValue"] = theirs.unwrap_or(Value::Null);
                entry["inSync"] = json!(same);
            }
            fields.push(entry);
        }
        let state = match (&record, &meta) {
            (Some(_), _) => "live",
            (None, Some(_)) if pending_total == 0 => "deleted",
            (None, _) if pending_total > 0 => "waiting",
            _ => "unknown",
        };
        Ok(json!({
            "resource": resource,
            "id": id,
            "state": state,
            "data": record.as_ref().map(|r| Value::Object(r.data.clone())),
            "host": host.map(Value::Object),
            "fields": fields,
        }))
    }
}
