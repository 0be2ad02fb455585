//! The plugin facade: configuration, argument resolution, mutations, consolidation entry
//! points, the background driver and events. Rules live here; bindings only convert values.

mod pass;
mod write;

pub use pass::RunSummary;
pub(crate) use write::Written;
pub use write::{MutationOptions, MutationResult};

use crate::amount::{Arg, amount_from_arg, decimal_to_f64, truncate};
use crate::clock::{Clock, IdSource, Sleeper, SplitMix, SystemClock, base36, default_sleeper};
use crate::config::{FieldConfig, Mode, PluginConfig, ResourceConfig};
use crate::consolidate::Consolidated;
use crate::consolidate::Consolidator;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::fold::Folder;
use crate::formats::{self, JournalDoc, LeaseDoc, MarkerDoc};
use crate::journal::{Journal, Journals};
use crate::keys::{Layout, check_field_path, check_record_id};
use crate::metrics::RunLog;
use crate::metrics::RunStatus;
pub use crate::ports::Reducer;
use crate::ports::{Ports, Reducers};
use crate::records::{InsertListener, RecordAccess};
use crate::schema::get_path;
use crate::store::{PutMode, SharedStore, StoreError, Version};

use crate::txn::{Op, Transaction};
use async_trait::async_trait;
use chrono_tz::Tz;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// A resolved target: resource, configured field and the path written.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resource name.
    pub resource: String,
    /// The configured field handling the path.
    pub field: FieldConfig,
    /// The dotted path written.
    pub path: String,
}

/// The engine: one configured plugin over a transaction store and a record seam.
pub struct Engine {
    config: PluginConfig,
    ports: Ports,
    reducers: Reducers,
    stamp: Mutex<(i64, u64)>,
    events: EventBus,
    runs: RunLog,
    fold_local: crate::fold::FoldLocal,
    /// Records found missing (deleted, or not created yet), with when a pass tries them again
    /// and the wait after that (see `Consolidator::note_missing`).
    missing: Mutex<HashMap<String, (i64, i64)>>,
    /// The version of each pass lease as this engine released it: the next pass takes it back
    /// with one compare-and-swap, as long as nobody touched it since.
    released_leases: std::sync::Mutex<HashMap<String, Version>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.ports.layout.prefix())
            .field("mode", &self.config.mode)
            .finish_non_exhaustive()
    }
}

/// Builder of an [`Engine`].
pub struct EngineBuilder {
    config: PluginConfig,
    store: SharedStore,
    prefix: String,
    records: Arc<dyn RecordAccess>,
    clock: Arc<dyn Clock>,
    sleeper: Arc<dyn Sleeper>,
    ids: Arc<dyn IdSource>,
}

impl std::fmt::Debug for EngineBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EngineBuilder")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

impl EngineBuilder {
    /// Uses this clock for timestamps, cohorts and GC ages.
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }
    /// Uses this sleeper for retry backoff.
    pub fn sleeper(mut self, sleeper: Arc<dyn Sleeper>) -> Self {
        self.sleeper = sleeper;
        self
    }
    /// Uses this random source for ids and jitter.
    pub fn ids(mut self, ids: Arc<dyn IdSource>) -> Self {
        self.ids = ids;
        self
    }
    /// Builds the engine.
    pub fn build(self) -> Arc<Engine> {
        Arc::new(Engine {
            config: self.config,
            ports: Ports {
                layout: Layout::new(&self.prefix),
                store: self.store,
                records: self.records,
                clock: self.clock,
                sleeper: self.sleeper,
                ids: self.ids,
            },
            reducers: Reducers::default(),
            stamp: Mutex::new((0, 0)),
            events: EventBus::default(),
            runs: RunLog::default(),
            fold_local: Default::default(),
            missing: Default::default(),
            released_leases: Default::default(),
        })
    }
}

#[async_trait]
impl InsertListener for Engine {
    async fn record_inserted(&self, resource: &str, id: &str) -> Result<()> {
        self.apply_waiting(resource, id).await.map(|_| ())
    }
}

impl Engine {
    /// Starts building an engine with `config`, storing transactions in `store` under
    /// `prefix` and reaching records through `records`.
    pub fn builder(
        config: PluginConfig,
        store: SharedStore,
        prefix: &str,
        records: Arc<dyn RecordAccess>,
    ) -> EngineBuilder {
        EngineBuilder {
            config,
            store,
            prefix: prefix.to_string(),
            records,
            clock: Arc::new(SystemClock),
            sleeper: default_sleeper(),
            ids: Arc::new(SplitMix::from_entropy()),
        }
    }

    /// An engine over a standalone [`crate::records::Database`]: transactions beside the
    /// records, and inserts apply pending transactions.
    pub fn standalone(config: PluginConfig, db: &Arc<crate::records::Database>) -> EngineBuilder {
        Engine::builder(
            config,
            db.store().clone(),
            db.layout().prefix(),
            db.clone() as Arc<dyn RecordAccess>,
        )
    }

    /// Applies the waiting transactions of a record that was just created, every configured
    /// field, without `consolidated` events (like a sync mutation); returns the values per
    /// field path (`null` where the field holds no number). Stops at the first field that
    /// fails (see [`Engine::apply_waiting_fields`] to go on).
    pub async fn apply_waiting(
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

    /// [`Engine::apply_waiting`] field by field: each configured field with its field path
    /// and value (nothing when the record is missing) or why it failed; with `stop`, nothing
    /// is tried after a failure.
    pub async fn apply_waiting_fields(
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
            let outcome = match self
                .consolidator()
                .consolidate_record(resource, fc, id)
                .await
            {
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

    /// Registers this engine for insert notifications of `db`.
    pub fn attach(self: &Arc<Self>, db: &crate::records::Database) {
        let weak: std::sync::Weak<dyn InsertListener> =
            Arc::downgrade(&(self.clone() as Arc<dyn InsertListener>));
        db.add_insert_listener(weak);
    }

    /// The configuration.
    pub fn config(&self) -> &PluginConfig {
        &self.config
    }
    pub(crate) fn store(&self) -> &SharedStore {
        &self.ports.store
    }
    pub(crate) fn layout(&self) -> &Layout {
        &self.ports.layout
    }
    pub(crate) fn records(&self) -> &Arc<dyn RecordAccess> {
        &self.ports.records
    }
    /// Reads journal chains and checkpoints (see [`crate::journal`]).
    pub(crate) fn journals(&self) -> Journals<'_> {
        self.ports.journals()
    }

    /// The committed journals of a record's field, oldest first, and the keys of journals
    /// not on the chain (see [`Journals::chain`]).
    pub async fn journal_chain(
        &self,
        resource: &str,
        field: &str,
        id: &str,
    ) -> Result<(Vec<Journal>, Vec<String>)> {
        self.journals().chain(resource, field, id).await
    }

    /// The analytics fold of this engine (see [`crate::fold`]).
    pub(crate) fn folder(&self) -> Folder<'_> {
        Folder {
            ports: &self.ports,
            local: &self.fold_local,
        }
    }

    pub(crate) fn zone(&self) -> Tz {
        self.config.timezone
    }
    pub(crate) fn now_ms(&self) -> i64 {
        self.ports.now_ms()
    }
    pub(crate) fn random(&self) -> u64 {
        self.ports.random()
    }
    /// Provides the reducer a field configuration names with `{"$function": id}`.
    pub fn set_reducer(&self, id: u64, reducer: Arc<dyn Reducer>) {
        self.reducers.set(id, reducer);
    }

    /// The event bus (subscribe with a callback or a stream).
    pub fn events(&self) -> &EventBus {
        &self.events
    }

    /// The run counters.
    pub(crate) fn runs(&self) -> &RunLog {
        &self.runs
    }

    /// Counters of past runs.
    pub fn run_status(&self) -> RunStatus {
        self.runs.snapshot()
    }

    /// The exactly-once consolidation of this engine (see [`crate::consolidate`]).
    pub(crate) fn consolidator(&self) -> Consolidator<'_> {
        Consolidator {
            ports: &self.ports,
            config: &self.config,
            folder: self.folder(),
            reducers: &self.reducers,
            events: &self.events,
            runs: &self.runs,
            missing: &self.missing,
        }
    }

    pub(crate) fn resource_config(&self, resource: &str) -> Result<&ResourceConfig> {
        self.config.resource(resource).ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownResource,
                format!(
                    "resource \"{}\" is not configured for eventual consistency",
                    truncate(resource, 60)
                ),
            )
        })
    }

    /// Resolves a field argument (a configured field, a dotted path below one, or omitted on a
    /// resource with one field) into a target. Path rules are checked before the
    /// configured-field check.
    pub async fn resolve(&self, resource: &str, field: Option<&str>) -> Result<Target> {
        let rc = self.resource_config(resource)?;
        let field = match field {
            Some(f) => f,
            None if rc.fields.len() == 1 => rc.fields[0].field.as_str(),
            None => {
                return Err(Error::new(
                    ErrorCode::UnknownField,
                    format!(
                        "resource \"{resource}\" has several fields ({}); name the field",
                        rc.fields
                            .iter()
                            .map(|f| f.field.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
        };
        if field.is_empty() {
            return Err(Error::new(
                ErrorCode::UnknownField,
                format!("field name is empty (resource \"{resource}\")"),
            ));
        }
        let code = if field.contains('.') {
            ErrorCode::InvalidPath
        } else {
            ErrorCode::UnknownField
        };
        check_field_path(field, code)?;
        let handler = handler_of(rc, field);
        let path = match handler {
            Some(h) => format!("{}{}", h.field_path, &field[h.field.len()..]),
            None => field.to_string(),
        };
        if let Some(schema) = self.ports.records.schema(resource).await?
            && (path.contains('.') || handler.is_some())
        {
            schema.check_path(resource, &path)?;
        }
        let Some(handler) = handler else {
            return Err(Error::new(
                ErrorCode::UnknownField,
                format!(
                    "field \"{}\" is not configured for resource \"{resource}\" (configured: {})",
                    truncate(field, 60),
                    rc.fields
                        .iter()
                        .map(|f| f.field.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ));
        };
        Ok(Target {
            resource: resource.to_string(),
            field: handler.clone(),
            path,
        })
    }

    async fn consolidate_target(&self, target: &Target, id: &str) -> Result<Option<f64>> {
        match self
            .consolidator()
            .consolidate_record(&target.resource, &target.field, id)
            .await?
        {
            Consolidated::Missing => Ok(None),
            Consolidated::Done { data, .. } => Ok(number_at(&data, &target.path)),
        }
    }

    /// Applies this record's pending transactions of the field now and returns the value at
    /// the path (`None` when the record does not exist). Emits `consolidated`.
    pub async fn consolidate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
    ) -> Result<Option<Value>> {
        check_record_id(id)?;
        let target = self.resolve(resource, field).await?;
        let started = self.now_ms();
        let result = self
            .consolidator()
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
    pub async fn consolidated_value(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
    ) -> Result<Option<f64>> {
        check_record_id(id)?;
        let target = self.resolve(resource, field).await?;
        // The record is read before its pending keys are listed; a commit in between removes
        // keys the read does not show yet. Only a plan whose record is unchanged after the
        // listing is a value the record can have.
        for _ in 0..10 {
            let Some(plan) = self
                .consolidator()
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
    pub fn lifecycle_events(&self, started: bool) -> Vec<Event> {
        self.configured_fields()
            .into_iter()
            .map(|(resource, fc)| {
                if started {
                    Event::Started {
                        resource,
                        field: fc.field,
                        timezone: self.zone().name().to_string(),
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
}

/// The configured field handling `field`: itself, or the longest configured prefix of a dotted
/// path.
pub(crate) fn handler_of<'a>(rc: &'a ResourceConfig, field: &str) -> Option<&'a FieldConfig> {
    rc.fields
        .iter()
        .filter(|f| field == f.field || field.starts_with(&format!("{}.", f.field)))
        .max_by_key(|f| f.field.len())
}

fn number_at(data: &serde_json::Map<String, Value>, path: &str) -> Option<f64> {
    get_path(data, path).and_then(Value::as_f64)
}
