//! The plugin facade: configuration, argument resolution, mutations, consolidation entry
//! points, the background driver and events. Rules live here; bindings only convert values.

use crate::amount::{Arg, amount_from_arg, decimal_to_f64, truncate};
use crate::clock::{Clock, IdSource, Sleeper, SplitMix, SystemClock, base36, default_sleeper};
use crate::config::{FieldConfig, Mode, PluginConfig, ResourceConfig};
use crate::consolidate::Consolidated;
use crate::consolidate::Consolidator;
use crate::error::{Error, ErrorCode, Result};
use crate::events::{Event, EventBus};
use crate::formats::{self, JournalDoc, LeaseDoc, MarkerDoc};
use crate::journal::{Journal, Journals};
use crate::keys::{Layout, check_field_path, check_record_id};
use crate::metrics::RunLog;
use crate::metrics::RunStatus;
pub use crate::ports::Reducer;
use crate::ports::{Ports, Reducers};
use crate::records::{InsertListener, RecordAccess};
use crate::rollups::Folder;
use crate::schema::get_path;
use crate::store::{PutMode, SharedStore, StoreError, Version};

/// Records a background pass consolidates between checks of its lease.
const LEASE_CHUNK: usize = 100;

use crate::txn::{Op, Transaction, idempotency_hash};
use async_trait::async_trait;
use chrono_tz::Tz;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Options of a mutation (`{ idempotencyKey, source, metadata }`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MutationOptions {
    /// Deduplicates retries for the same resource, record and field path.
    pub idempotency_key: Option<String>,
    /// Free text stored with the transaction (at most 64 characters).
    pub source: Option<String>,
    /// Free-form JSON stored with the transaction (at most 4 KiB).
    pub metadata: Option<Value>,
}

impl MutationOptions {
    /// Reads the options argument; `undefined`/`null` mean none.
    pub fn from_arg(arg: &Arg) -> Result<MutationOptions> {
        let obj = match arg {
            Arg::Undefined | Arg::Null => return Ok(MutationOptions::default()),
            Arg::Json(Value::Object(m)) => m,
            other => {
                return Err(Error::invalid_argument(format!(
                    "options must be an object {{ idempotencyKey, source, metadata }} (got {})",
                    other.type_name()
                )));
            }
        };
        let text = |k: &str, max: usize| -> Result<Option<String>> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) if !s.is_empty() && s.chars().count() <= max => {
                    Ok(Some(s.clone()))
                }
                Some(v) => Err(Error::invalid_argument(format!(
                    "options.{k} must be a non-empty string of at most {max} characters (got {})",
                    truncate(&v.to_string(), 40)
                ))),
            }
        };
        let metadata = obj.get("metadata").filter(|v| !v.is_null()).cloned();
        if let Some(m) = &metadata
            && m.to_string().len() > 4096
        {
            return Err(Error::invalid_argument(
                "options.metadata must serialize to at most 4096 bytes",
            ));
        }
        Ok(MutationOptions {
            idempotency_key: text("idempotencyKey", 256)?,
            source: text("source", crate::keys::MAX_SOURCE_LEN)?,
            metadata,
        })
    }
}

/// What a mutation resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum MutationResult {
    /// Sync mode: the consolidated value at the path (`None` when the record does not exist).
    Value(Option<f64>),
    /// Async mode: the stored transaction (SPEC §4 shape).
    Transaction(Value),
}

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
    fold_local: crate::rollups::FoldLocal,
    /// Records found missing (deleted, or not created yet), with when a pass tries them again
    /// and the wait after that (see `Engine::note_missing`).
    missing: Mutex<HashMap<String, (i64, i64)>>,
    /// The version of each pass lease as this engine released it: the next pass takes it back
    /// with one compare-and-swap, as long as nobody touched it since.
    released_leases: std::sync::Mutex<HashMap<String, Version>>,
}

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

/// What [`Engine::write_transaction`] found.
pub(crate) enum Written {
    /// Stored now.
    Stored(Transaction),
    /// Stored earlier under the same idempotency key, still pending: that one.
    Existing(Transaction),
    /// Already applied under the same idempotency key: ours, and the applied marker.
    Duplicate(Transaction, Box<MarkerDoc>),
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
    /// Puts transactions, journals and leases under `prefix` (defaults to the one given).
    pub fn prefix(mut self, prefix: &str) -> Self {
        self.prefix = prefix.to_string();
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

    /// The analytics fold of this engine (see [`crate::rollups`]).
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

    /// The clock's time, the ordering stamp and the id suffix of a new transaction. Stamps
    /// never go back within an engine (a clock stepped back keeps the last one, and counts
    /// on), so one caller's mutations sort in call order; the suffix is a 4-digit
    /// per-millisecond sequence and 12 random base-36 digits (62 bits), so processes never
    /// share ids or key names.
    fn next_stamp(&self) -> (i64, i64, String) {
        const SEQ_LIMIT: u64 = 36 * 36 * 36 * 36;
        let clock = self.ports.clock.now_ms();
        let now = clock.max(0);
        let mut s = self.stamp.lock().unwrap_or_else(|p| p.into_inner());
        if now > s.0 {
            *s = (now, 0);
        } else if s.1.saturating_add(1) < SEQ_LIMIT {
            s.1 = s.1.saturating_add(1);
        } else {
            *s = (s.0.saturating_add(1), 0);
        }
        let suffix = format!(
            "{}{}",
            base36(s.1, 4),
            base36(self.ports.ids.next_u64(), 12)
        );
        (clock, s.0, suffix)
    }

    /// Writes a transaction and, in sync mode, consolidates the record.
    pub async fn mutate(
        &self,
        resource: &str,
        field: Option<&str>,
        id: &str,
        op: Op,
        amount: &Arg,
        options: MutationOptions,
    ) -> Result<MutationResult> {
        check_record_id(id)?;
        let target = self.resolve(resource, field).await?;
        let value = amount_from_arg(amount, &format!("amount for \"{}\"", target.path))?;
        let (ts, stamp, suffix) = self.next_stamp();
        let tx = Transaction {
            id: format!("tx-{stamp}-{suffix}"),
            original_id: id.to_string(),
            field: target.field.field.clone(),
            field_path: target.path.clone(),
            value,
            operation: op,
            timestamp_ms: ts,
            order_ms: (stamp != ts).then_some(stamp),
            source: options.source,
            idempotency_key: options.idempotency_key,
            metadata: options.metadata,
        };
        let tx = match self.write_transaction(&target, id, tx).await? {
            Written::Stored(tx) | Written::Existing(tx) => tx,
            Written::Duplicate(tx, marker) => {
                return self.answer_duplicate(&target, id, &tx, *marker).await;
            }
        };
        match self.config.mode {
            Mode::Async => Ok(MutationResult::Transaction(tx.to_json(self.zone(), false))),
            Mode::Sync => {
                let own = tx.key_name();
                let value = match self
                    .consolidator()
                    .consolidate_record_with(&target.resource, &target.field, id, Some(&own))
                    .await?
                {
                    Consolidated::Missing => None,
                    Consolidated::Done { data, .. } => number_at(&data, &target.path),
                };
                Ok(MutationResult::Value(value))
            }
        }
    }

    /// Stores a transaction create-only; with an idempotency key, a transaction already
    /// stored or applied under the same key wins and is returned instead.
    pub(crate) async fn write_transaction(
        &self,
        target: &Target,
        id: &str,
        tx: Transaction,
    ) -> Result<Written> {
        let prefix = self
            .ports
            .layout
            .pending(&target.resource, &target.field.field, id);
        let name = tx.key_name();
        // Every store holds names of at most 255 bytes (a file name) and keys of at most 1,024:
        // a long unicode source or path, or a long id, is refused before anything is written.
        let stored = crate::keys::stored_segment_len(&name);
        if stored > crate::keys::MAX_SEGMENT_LEN || prefix.len().saturating_add(name.len()) > 1024 {
            return Err(Error::invalid_argument(format!(
                "the transaction for record \"{}\" at \"{}\" does not fit a storage key once encoded ({} bytes for its name, at most 255; {} for the key, at most 1024): use a shorter source, path or id",
                truncate(id, 40),
                truncate(&target.path, 40),
                stored,
                prefix.len().saturating_add(name.len())
            )));
        }
        let key = format!("{prefix}{name}");
        let body = serde_json::to_vec(&tx).map_err(|e| Error::storage(e.to_string()))?;
        let stored = match self
            .ports
            .store
            .put(&key, body.clone(), PutMode::Create)
            .await
        {
            Ok(_) => match tx.idempotency_hash() {
                Some(h) => match self.applied_idempotent(target, id, &h).await? {
                    // Our write duplicated an applied transaction: undo it, answer like the first.
                    Some(first) => {
                        self.ports.store.delete(&key).await?;
                        return Ok(Written::Duplicate(tx, Box::new(first)));
                    }
                    None => tx,
                },
                None => tx,
            },
            // A create that landed can still be answered 412 (a proxy that sent it twice): it
            // is ours when the key holds our bytes.
            Err(StoreError::Conflict { .. })
                if tx.idempotency_key.is_none()
                    && self
                        .ports
                        .store
                        .get(&key)
                        .await
                        .ok()
                        .flatten()
                        .is_some_and(|o| o.bytes == body) =>
            {
                tx
            }
            Err(StoreError::Conflict { .. }) if tx.idempotency_key.is_some() => {
                match self.ports.store.get(&key).await? {
                    Some(obj) => {
                        let first: Transaction = serde_json::from_slice(&obj.bytes)
                            .map_err(|e| Error::storage(format!("unreadable transaction: {e}")))?;
                        check_same(&first, &tx)?;
                        return Ok(Written::Existing(first));
                    }
                    None => {
                        let h = tx.idempotency_hash().unwrap_or_default();
                        match self.applied_idempotent(target, id, &h).await? {
                            Some(first) => return Ok(Written::Duplicate(tx, Box::new(first))),
                            None => {
                                return Err(Error::new(
                                    ErrorCode::Conflict,
                                    "idempotent transaction changed while being written; retry",
                                ));
                            }
                        }
                    }
                }
            }
            Err(e) => return Err(e.into()),
        };
        Ok(Written::Stored(stored))
    }

    async fn applied_idempotent(
        &self,
        target: &Target,
        id: &str,
        hash: &str,
    ) -> Result<Option<MarkerDoc>> {
        let key = self
            .ports
            .layout
            .idempotency(&target.resource, &target.field.field, id, hash);
        match self.ports.store.get(&key).await? {
            Some(obj) => Ok(Some(formats::decode(
                "idempotency marker",
                &key,
                &obj.bytes,
            )?)),
            None => Ok(None),
        }
    }

    async fn answer_duplicate(
        &self,
        target: &Target,
        id: &str,
        tx: &Transaction,
        marker: MarkerDoc,
    ) -> Result<MutationResult> {
        let first = marker.transaction;
        check_same(&first, tx)?;
        match self.config.mode {
            Mode::Async => Ok(MutationResult::Transaction(
                first.to_json(self.zone(), true),
            )),
            Mode::Sync => {
                let batch = marker.batch.as_deref().unwrap_or_default();
                let key = format!(
                    "{}{batch}",
                    self.ports
                        .layout
                        .journals(&target.resource, &target.field.field, id)
                );
                // The value right after its batch, from the journal; without one (collected),
                // the record's current value.
                let after = match self.ports.store.get(&key).await? {
                    Some(obj) => formats::decode::<JournalDoc>("journal", &key, &obj.bytes)
                        .ok()
                        .and_then(|j| j.values.get(&first.field_path).map(|v| v.after.0)),
                    None => None,
                };
                match after {
                    Some(v) => Ok(MutationResult::Value(Some(decimal_to_f64(v)))),
                    None => Ok(MutationResult::Value(
                        self.consolidate_target(target, id).await?,
                    )),
                }
            }
        }
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

    #[allow(clippy::too_many_arguments)]
    fn record_run(
        &self,
        resource: &str,
        field: &str,
        records: u64,
        ok: u64,
        errors: u64,
        applied: u64,
        started: i64,
    ) {
        let now = self.now_ms();
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
    pub async fn run_pass(&self) -> Result<()> {
        // One field's failure never keeps the others from their pass; the first is reported.
        let mut first = None;
        for (resource, fc) in self.configured_fields() {
            if let Err(e) = self.pass_field(&resource, &fc).await {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    /// Consolidates every configured field now, regardless of leases, and reports per field.
    pub async fn consolidate_all(&self) -> Result<Vec<RunSummary>> {
        let mut out = Vec::new();
        for (resource, fc) in self.configured_fields() {
            let ids = self.pending_record_ids(&resource, &fc.field).await?;
            out.push(self.consolidate_many(&resource, &fc, ids).await);
        }
        Ok(out)
    }

    /// Ids of records with pending transactions of a field.
    pub async fn pending_record_ids(&self, resource: &str, field: &str) -> Result<Vec<String>> {
        let prefix = self.ports.layout.pending_field(resource, field);
        let mut ids: Vec<String> = crate::store::list_all(self.ports.store.as_ref(), &prefix)
            .await?
            .iter()
            .filter_map(|k| crate::keys::split_record_key(&prefix, k).map(|(id, _)| id))
            .collect();
        ids.dedup();
        Ok(ids)
    }

    async fn pass_field(&self, resource: &str, fc: &FieldConfig) -> Result<()> {
        if self.config.analytics_enabled {
            // Folds what a failed consolidation left in the analytics inbox; a fold that fails
            // is retried by the next pass and never holds consolidation back.
            let folded = self
                .folder()
                .fold_analytics(resource, &fc.field, None, None)
                .await;
            self.consolidate_field_pass(resource, fc).await?;
            return folded;
        }
        self.consolidate_field_pass(resource, fc).await
    }

    async fn consolidate_field_pass(&self, resource: &str, fc: &FieldConfig) -> Result<()> {
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
                    .filter(|id| self.consolidator().pass_may_try(resource, &fc.field, id))
                    .collect::<Vec<_>>()
            });
        if let Ok(ids) = &ids {
            let timeout_ms = (self.config.lock_timeout_s * 1000.0) as i64;
            let mut taken_at = self.now_ms();
            for chunk in ids.chunks(LEASE_CHUNK) {
                // A long pass renews its lease before half of it is gone, and stops when
                // another process took it over meanwhile.
                if self.now_ms().saturating_sub(taken_at) > timeout_ms / 2 {
                    match self.take_lease(&lease, Some(held.clone())).await {
                        Ok(Some(v)) => {
                            held = v;
                            taken_at = self.now_ms();
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
            self.released_leases
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(lease, v);
        }
        ids.map(|_| ())
    }

    /// Takes the pass lease `key` (a new one, an expired one, or with `renew` the one this
    /// process holds at that version); the version held, or `None` when another holds it.
    async fn take_lease(&self, key: &str, renew: Option<Version>) -> Result<Option<Version>> {
        let now = self.now_ms();
        let body = |now: i64| {
            formats::encode(&LeaseDoc {
                owner: base36(self.random(), 10),
                expires_at: now.saturating_add((self.config.lock_timeout_s * 1000.0) as i64),
            })
            .unwrap_or_default()
        };
        let version = match renew {
            Some(v) => v,
            None => {
                // Released by this engine last time and untouched since: one request.
                let mine = self
                    .released_leases
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

    async fn consolidate_many(
        &self,
        resource: &str,
        fc: &FieldConfig,
        ids: Vec<String>,
    ) -> RunSummary {
        use futures::StreamExt;
        let started = self.now_ms();
        let total = ids.len() as u64;
        let results: Vec<(String, Result<Consolidated>)> = futures::stream::iter(ids)
            .map(|id| async move {
                let r = self
                    .consolidator()
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

    /// Every configured (resource, field), in configuration order.
    pub(crate) fn configured_fields(&self) -> Vec<(String, FieldConfig)> {
        self.config
            .resources
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| (r.resource.clone(), f.clone())))
            .collect()
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

    /// Emits `started` for every configured field.
    pub fn emit_started(&self) {
        for e in self.lifecycle_events(true) {
            self.events.emit(e);
        }
    }

    /// Emits `stopped` for every configured field.
    pub fn emit_stopped(&self) {
        for e in self.lifecycle_events(false) {
            self.events.emit(e);
        }
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

fn check_same(first: &Transaction, now: &Transaction) -> Result<()> {
    if first.operation != now.operation
        || first.value != now.value
        || first.field_path != now.field_path
    {
        return Err(Error::new(
            ErrorCode::IdempotencyMismatch,
            format!(
                "idempotency key \"{}\" was used for {} {} on \"{}\"; now {} {}",
                truncate(now.idempotency_key.as_deref().unwrap_or(""), 60),
                first.operation.as_str(),
                first.value,
                first.field_path,
                now.operation.as_str(),
                now.value
            ),
        ));
    }
    Ok(())
}

/// Key hash of an idempotency key (re-exported for tests and tools).
pub fn idempotency_key_hash(path: &str, key: &str) -> String {
    idempotency_hash(path, key)
}
