//! Consolidation runs: one record on demand (`consolidate`, `getConsolidatedValue`, the
//! waiting transactions of a record just created), and the background driver — passes over
//! every configured field under a lease, `consolidate_all` — with the run counters and
//! `consolidated` events they report.

use crate::amount::decimal_to_f64;
use crate::clock::base36;
use crate::config::{FieldConfig, PluginConfig};
use crate::consolidate::{Consolidated, Consolidator};
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::formats::{self, LeaseDoc};
use crate::keys::check_record_id;
use crate::metrics::RunLog;
use crate::ports::Ports;
use crate::resolve::resolve;
use crate::schema::{get_path, number_at};
use crate::store::cas::RetryPolicy;
use crate::store::{PutMode, StoreError, Version};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Mutex;

/// Records a background pass consolidates between checks of its lease.
const LEASE_CHUNK: usize = 100;

/// What one consolidation run of one field did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunSummary {
    /// Resource.
    pub resource: String,
    /// Field.
    pub field: String,
    /// Records consolidated.
    pub records_processed: u64,
    /// Transactions applied.
    pub transactions_applied: u64,
    /// Records that failed.
    pub errors: u64,
}

/// Consolidation runs: of one record on demand, of every field in a background pass.
#[derive(Clone, Copy)]
pub(crate) struct Pass<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// Where events go.
    pub(crate) events: &'a EventBus,
    /// The run counters.
    pub(crate) runs: &'a RunLog,
    /// The version of each pass lease as this engine released it: the next pass takes it back with one compare-and-swap, as long as nobody touched it since.
    pub(crate) leases: &'a Mutex<HashMap<String, Version>>,
    /// The exactly-once consolidation (and the pending reads).
    pub(crate) consolidator: Consolidator<'a>,
}

impl<'a> Pass<'a> {
    /// Applies the waiting transactions of a record that was just created, every configured
    /// field, without `consolidated` events (like a sync mutation); returns the values per
    /// field path (`null` where the field holds no number). Stops at the first field that
    /// fails (see [`Self::apply_waiting_fields`] to go on).
    pub(crate) async fn apply_waiting(
        &self,
        resource: &str,
        id: &str,
    ) -> Result<serde_json::Map<String, Value>> {
        let mut out = serde_json::Map::new();
        for (_, outcome) in self.apply_waiting_fields(resource, id, true).await? {
            out.extend(outcome?);
        }
        Ok(out)
    }

    /// [`Self::apply_waiting`] field by field: each configured field with its field path
    /// and value (nothing when the record is missing) or why it failed; with `stop`, nothing
    /// is tried after a failure.
    pub(crate) async fn apply_waiting_fields(
        &self,
        resource: &str,
        id: &str,
        stop: bool,
    ) -> Result<Vec<(String, Result<Option<(String, Value)>>)>> {
        let mut out = Vec::new();
        let Some(rc) = self.config.resource(resource).cloned() else {
            return Ok(out);
        };
        check_record_id(id)?;
        for fc in &rc.fields {
            let outcome = match self.consolidator.consolidate_record(resource, fc, id).await {
                Ok(Consolidated::Done { data, .. }) => {
                    let v = number_at(&data, &fc.field_path).map_or(Value::Null, |v| json!(v));
                    Ok(Some((fc.field_path.clone(), v)))
                }
                Ok(_) => Ok(None),
                Err(e) => Err(e),
            };
            let failed = outcome.is_err();
            out.push((fc.field.clone(), outcome));
            if failed && stop {
                break;
            }
        }
        Ok(out)
    }

    /// Applies this record's pending transactions of the field now and returns the value at
    /// the path (`None` when the record does not exist). Emits `consolidated`.
    pub(crate) async fn consolidate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
    ) -> Result<Option<Value>> {
        check_record_id(id)?;
        let target = resolve(self.config, self.ports.records.as_ref(), resource, field).await?;
        let started = self.ports.now_ms();
        let result = self
            .consolidator
            .consolidate_record(resource, &target.field, id)
            .await;
        let (ok, applied) = match &result {
            Ok(Consolidated::Done { applied, .. }) => (1, applied.len() as u64),
            Ok(Consolidated::Missing) => (0, 0),
            Err(_) => (0, 0),
        };
        self.record_run(
            &target.resource,
            &target.field.field,
            1,
            ok,
            u64::from(result.is_err()),
            applied,
            started,
        );
        if let Err(e) = &result {
            self.events.emit(Event::ConsolidationError {
                resource: resource.into(),
                field: target.field.field.clone(),
                record_id: Some(id.into()),
                error: e.clone(),
            });
        }
        match result? {
            Consolidated::Missing => Ok(None),
            Consolidated::Done { data, .. } => Ok(Some(
                get_path(&data, &target.path)
                    .cloned()
                    .unwrap_or(Value::Null),
            )),
        }
    }

    /// The value the record would have after consolidation; writes nothing.
    pub(crate) async fn consolidated_value(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
    ) -> Result<Option<f64>> {
        check_record_id(id)?;
        let target = resolve(self.config, self.ports.records.as_ref(), resource, field).await?;
        // The record is read before its pending keys are listed; a commit in between removes
        // keys the read does not show yet. Only a plan whose record is unchanged after the
        // listing is a value the record can have.
        for _ in RetryPolicy::AtMost(10).attempts() {
            let Some(plan) = self
                .consolidator
                .plan(resource, &target.field, id, true)
                .await?
            else {
                return Ok(None);
            };
            let unchanged = match self.ports.records.load(resource, id).await? {
                Some(now) => now.version == plan.record.version,
                None => return Ok(None),
            };
            if unchanged {
                return Ok(number_at(&plan.new_data, &target.path)
                    .or_else(|| Some(decimal_to_f64(target.field.initial_value))));
            }
        }
        Err(Error::new(
            ErrorCode::Conflict,
            format!("record \"{id}\" of \"{resource}\" kept changing; try again"),
        ))
    }

    /// The `started` (or `stopped`) event of every configured field, in configuration order.
    pub(crate) fn lifecycle_events(&self, started: bool) -> Vec<Event> {
        self.config
            .fields()
            .into_iter()
            .map(|(resource, fc)| {
                if started {
                    Event::Started {
                        resource,
                        field: fc.field,
                        timezone: self.config.timezone.name().to_string(),
                    }
                } else {
                    Event::Stopped {
                        resource,
                        field: fc.field,
                    }
                }
            })
            .collect()
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn record_run(
        &self,
        resource: &str,
        field: &str,
        records: u64,
        ok: u64,
        errors: u64,
        applied: u64,
        started: i64,
    ) {
        let now = self.ports.now_ms();
        let duration_ms = now.saturating_sub(started).max(0) as u64;
        self.runs.note_run(
            resource,
            field,
            ok,
            errors,
            applied,
            started,
            now,
            duration_ms,
        );
        self.events.emit(Event::Consolidated {
            resource: resource.into(),
            field: field.into(),
            record_count: records,
            success_count: ok,
            error_count: errors,
            transactions_applied: applied,
            duration_ms,
        });
    }

    /// One background pass: for every configured field, consolidate the records that have
    /// pending transactions, `consolidation.concurrency` at a time. A field with nothing
    /// pending costs one LIST. A lease (`P/l/<resource>/<field>`, taken over after
    /// `locks.timeout`) keeps several processes from doing the same pass at once; correctness
    /// never depends on it.
    pub(crate) async fn run_pass(&self) -> Result<()> {
        // One field's failure never keeps the others from their pass; the first is reported.
        let mut first = None;
        for (resource, fc) in self.config.fields() {
            if let Err(e) = self.pass_field(&resource, &fc).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Consolidates every configured field now, regardless of leases, and reports per field.
    pub(crate) async fn consolidate_all(&self) -> Result<Vec<RunSummary>> {
        let mut out = Vec::new();
        for (resource, fc) in self.config.fields() {
            let ids = self.pending_record_ids(&resource, &fc.field).await?;
            out.push(self.consolidate_many(&resource, &fc, ids).await);
        }
        Ok(out)
    }

    /// Ids of records with pending transactions of a field.
    pub(crate) async fn pending_record_ids(
        &self,
        resource: &str,
        field: &str,
    ) -> Result<Vec<String>> {
        let prefix = self.ports.layout.pending_field(resource, field);
        let mut ids: Vec<String> = crate::store::list_all(self.ports.store.as_ref(), &prefix)
            .await?
            .iter()
            .filter_map(|k| crate::keys::split_record_key(&prefix, k).map(|(id, _)| id))
            .collect();
        ids.dedup();
        Ok(ids)
    }

    pub(super) async fn pass_field(&self, resource: &str, fc: &FieldConfig) -> Result<()> {
        if self.config.analytics_enabled {
            // Folds what a failed consolidation left in the analytics inbox; a fold that fails
            // is retried by the next pass and never holds consolidation back.
            let folded = self
                .consolidator
                .folder
                .fold_analytics(resource, &fc.field, None, None)
                .await;
            self.consolidate_field_pass(resource, fc).await?;
            return folded;
        }
        self.consolidate_field_pass(resource, fc).await
    }

    pub(super) async fn consolidate_field_pass(
        &self,
        resource: &str,
        fc: &FieldConfig,
    ) -> Result<()> {
        let prefix = self.ports.layout.pending_field(resource, &fc.field);
        let first = self.ports.store.list(&prefix, None).await?;
        if first.keys.is_empty() {
            return Ok(());
        }
        let lease = self.ports.layout.lease(resource, &fc.field);
        let Some(mut held) = self.take_lease(&lease, None).await? else {
            return Ok(());
        };
        let ids = self
            .pending_record_ids(resource, &fc.field)
            .await
            .map(|ids| {
                ids.into_iter()
                    .filter(|id| self.consolidator.pass_may_try(resource, &fc.field, id))
                    .collect::<Vec<_>>()
            });
        if let Ok(ids) = &ids {
            let timeout_ms = (self.config.lock_timeout_s * 1000.0) as i64;
            let mut taken_at = self.ports.now_ms();
            for chunk in ids.chunks(LEASE_CHUNK) {
                // A long pass renews its lease before half of it is gone, and stops when
                // another process took it over meanwhile.
                if self.ports.now_ms().saturating_sub(taken_at) > timeout_ms / 2 {
                    match self.take_lease(&lease, Some(held.clone())).await {
                        Ok(Some(v)) => {
                            held = v;
                            taken_at = self.ports.now_ms();
                        }
                        _ => return Ok(()),
                    }
                }
                self.consolidate_many(resource, fc, chunk.to_vec()).await;
            }
        }
        // Released by compare-and-swap: never someone else's lease, and no DELETE that could
        // land late on a later holder's.
        let released = formats::encode(&LeaseDoc::default()).unwrap_or_default();
        if let Ok(v) = self
            .ports
            .store
            .put(&lease, released, PutMode::Update(held))
            .await
        {
            self.leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(lease, v);
        }
        ids.map(|_| ())
    }

    /// Takes the pass lease `key` (a new one, an expired one, or with `renew` the one this
    /// process holds at that version); the version held, or `None` when another holds it.
    pub(super) async fn take_lease(
        &self,
        key: &str,
        renew: Option<Version>,
    ) -> Result<Option<Version>> {
        let now = self.ports.now_ms();
        let body = |now: i64| {
            formats::encode(&LeaseDoc {
                owner: base36(self.ports.random(), 10),
                expires_at: now.saturating_add((self.config.lock_timeout_s * 1000.0) as i64),
            })
            .unwrap_or_default()
        };
        let version = match renew {
            Some(v) => v,
            None => {
                // Released by this engine last time and untouched since: one request.
                let mine = self
                    .leases
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .remove(key);
                if let Some(v) = mine {
                    match self
                        .ports
                        .store
                        .put(key, body(now), PutMode::Update(v))
                        .await
                    {
                        Ok(v) => return Ok(Some(v)),
                        Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
                match self.ports.store.put(key, body(now), PutMode::Create).await {
                    Ok(v) => return Ok(Some(v)),
                    Err(StoreError::Conflict { .. }) => {}
                    Err(e) => return Err(e.into()),
                }
                let Some(cur) = self.ports.store.get(key).await? else {
                    return Ok(None);
                };
                let expires = formats::decode::<LeaseDoc>("lease", key, &cur.bytes)
                    .map_or(0, |l| l.expires_at);
                if expires > now {
                    return Ok(None);
                }
                cur.version
            }
        };
        match self
            .ports
            .store
            .put(key, body(now), PutMode::Update(version))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(StoreError::Conflict { .. } | StoreError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn consolidate_many(
        &self,
        resource: &str,
        fc: &FieldConfig,
        ids: Vec<String>,
    ) -> RunSummary {
        use futures::StreamExt;
        let started = self.ports.now_ms();
        let total = ids.len() as u64;
        let results: Vec<(String, Result<Consolidated>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let r = self
                    .consolidator
                    .consolidate_record(resource, fc, &id)
                    .await;
                (id, r)
            })
            .buffer_unordered(self.config.concurrency.max(1))
            .collect()
            .await;
        let (mut ok, mut errors, mut applied) = (0u64, 0u64, 0u64);
        for (id, r) in results {
            match r {
                Ok(Consolidated::Done { applied: a, .. }) => {
                    ok = ok.saturating_add(1);
                    applied = applied.saturating_add(a.len() as u64);
                }
                Ok(Consolidated::Missing) => {}
                Err(error) => {
                    errors = errors.saturating_add(1);
                    self.events.emit(Event::ConsolidationError {
                        resource: resource.into(),
                        field: fc.field.clone(),
                        record_id: Some(id),
                        error,
                    });
                }
            }
        }
        self.record_run(resource, &fc.field, total, ok, errors, applied, started);
        RunSummary {
            resource: resource.to_string(),
            field: fc.field.clone(),
            records_processed: ok,
            transactions_applied: applied,
            errors,
        }
    }
}
