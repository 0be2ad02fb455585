//! `NativePlugin`: one configured EventualConsistencyPlugin — configuration check at
//! construction, installation on a database, resource-method calls, runs, status and events.

use crate::convert::{
    Code, Coded, IntoNapi, JsClock, JsReducer, ReducerFn, Settled, arg_from_tagged, settle,
};
use crate::database::NativeDatabase;
use crate::host::{HostFn, JsHost};
use napi::Status;
use napi::threadsafe_function::{ThreadsafeFunction, ThreadsafeFunctionCallMode};
use napi_derive::napi;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tally_core::engine::EngineBuilder;
use tally_core::records::s3db::HostRecords;
use tally_core::schema::Schema;
use tally_core::{Engine, Error, ErrorCode, PluginConfig, connection};

/// Receives `{ name, payload }` for every event; weak, so it never keeps Node alive.
type EventFn = ThreadsafeFunction<Value, (), Value, Status, false, true>;

/// A configured plugin; the engine exists once it is installed on a database.
#[napi]
pub struct NativePlugin {
    config: PluginConfig,
    clock: Option<Arc<JsClock>>,
    engine: Mutex<Option<Arc<Engine>>>,
    host: Mutex<Option<Arc<HostRecords>>>,
    reducers: Mutex<HashMap<u64, Arc<ReducerFn>>>,
    events: Mutex<Option<Arc<EventFn>>>,
    /// Events handed to the JS callback so far (the wrapper waits until it has seen them).
    emitted: Arc<std::sync::atomic::AtomicU64>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[napi]
impl NativePlugin {
    /// Validates the options (functions already replaced by `{ "$function": n }`); throws
    /// `ERR_INVALID_CONFIG` naming the option. `has_clock` means the caller drives the clock.
    #[napi(constructor)]
    pub fn new(options: Value, has_clock: bool) -> napi::Result<Self, Code> {
        let config = PluginConfig::parse(&options).napi()?;
        Ok(NativePlugin {
            config,
            clock: has_clock.then(JsClock::new),
            engine: Mutex::new(None),
            host: Mutex::new(None),
            reducers: Mutex::new(HashMap::new()),
            events: Mutex::new(None),
            emitted: Arc::default(),
        })
    }

    /// The normalized configuration (for `plugin.config`).
    #[napi]
    pub fn config(&self) -> Value {
        self.config.to_json()
    }

    /// Sets the time the next operations see (only with the `clock` option).
    #[napi]
    pub fn set_now(&self, ms: f64) {
        if let Some(c) = &self.clock {
            c.set(ms as i64);
        }
    }

    /// Provides the JS folding function for reducer `id`.
    #[napi]
    pub fn set_reducer(&self, id: u32, f: ReducerFn) {
        lock(&self.reducers).insert(u64::from(id), Arc::new(f));
    }

    /// Provides the event callback.
    #[napi]
    pub fn on_event(&self, f: EventFn) {
        *lock(&self.events) = Some(Arc::new(f));
    }

    /// Builds the engine over Tally's own database `db`.
    #[napi]
    pub fn install(&self, db: &NativeDatabase) {
        let engine = self.finish(Engine::standalone(self.config.clone(), &db.db));
        engine.attach(&db.db);
    }

    /// How many events the engine has handed to the event callback so far.
    #[napi]
    pub fn events_emitted(&self) -> f64 {
        self.emitted.load(std::sync::atomic::Ordering::SeqCst) as f64
    }

    /// Drops the engine (after `stop`): nothing more is consolidated, Tally's own database no
    /// longer tells it of inserts, and later calls reject until it is installed again.
    #[napi]
    pub fn uninstall(&self) {
        *lock(&self.engine) = None;
    }

    /// Builds the engine over a host database (s3db.js): records through `get`/`write`,
    /// Tally's transactions and state in the store `connection_string` names.
    #[napi]
    pub fn install_host(
        &self,
        connection_string: String,
        get: HostFn,
        write: HostFn,
    ) -> napi::Result<(), Code> {
        let c = connection::open(&connection_string).napi()?;
        let records = HostRecords::new(
            Arc::new(JsHost { get, write }),
            c.store.clone(),
            &c.prefix,
            &self.config,
        );
        self.finish(Engine::builder(
            self.config.clone(),
            c.store,
            &c.prefix,
            records.clone(),
        ));
        *lock(&self.host) = Some(records);
        Ok(())
    }

    /// Gives the attributes of a host resource (nested-path rules); false when they are not
    /// in a form Tally reads (the path rules are then not checked).
    #[napi]
    pub fn bind_resource(&self, name: String, attributes: Value) -> bool {
        let Some(host) = lock(&self.host).clone() else {
            return false;
        };
        match Schema::parse(&name, &attributes) {
            Ok(schema) => {
                host.set_schema(&name, schema);
                true
            }
            Err(_) => false,
        }
    }

    /// A host record was inserted with `data`: starts its state when the id was deleted
    /// before, then applies its waiting transactions, every field even when one fails;
    /// `{ values: { <field path>: value }, failed: [{ field, code, message }] }`.
    #[napi]
    pub async fn record_inserted(
        &self,
        resource: String,
        id: String,
        data: Option<Value>,
    ) -> Settled<Value> {
        settle(async {
            let host = lock(&self.host).clone();
            if let (Some(host), Some(Value::Object(data))) = (host, data) {
                host.inserted(&resource, &id, &data).await.napi()?;
            }
            let fields = self
                .engine()?
                .apply_waiting_fields(&resource, &id, false)
                .await
                .napi()?;
            let mut values = serde_json::Map::new();
            let mut failed = Vec::new();
            for (field, outcome) in fields {
                match outcome {
                    Ok(Some((path, value))) => {
                        values.insert(path, value);
                    }
                    Ok(None) => {}
                    Err(e) => failed.push(
                        json!({ "field": field, "code": e.code().as_str(), "message": e.message() }),
                    ),
                }
            }
            Ok(json!({ "values": values, "failed": failed }))
        })
        .await
    }

    /// The host record `id` was deleted: forget Tally's state of it.
    #[napi]
    pub async fn forget(&self, resource: String, id: String) -> Settled<()> {
        settle(async {
            let Some(host) = lock(&self.host).clone() else {
                return Ok(());
            };
            host.forget(&resource, &id).await.napi()
        })
        .await
    }

    /// Carries over one transaction of s3db.js 21.6.2 (as its resource API returns it);
    /// false when it was carried over before.
    #[napi]
    pub async fn carry_over(&self, resource: String, tx: Value) -> Settled<bool> {
        settle(async { self.engine()?.carry_over(&resource, &tx).await.napi() }).await
    }

    /// Applies the clock, reducers and event callback, and keeps the engine.
    fn finish(&self, mut builder: EngineBuilder) -> Arc<Engine> {
        if let Some(c) = &self.clock {
            builder = builder.clock(c.clone());
        }
        let engine = builder.build();
        for (id, f) in lock(&self.reducers).iter() {
            engine.set_reducer(*id, Arc::new(JsReducer(f.clone())));
        }
        if let Some(f) = lock(&self.events).clone() {
            let emitted = self.emitted.clone();
            engine.events().on(move |e| {
                emitted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                f.call(
                    json!({ "name": e.name(), "payload": e.payload() }),
                    ThreadsafeFunctionCallMode::NonBlocking,
                );
            });
        }
        *lock(&self.engine) = Some(engine.clone());
        engine
    }

    fn engine(&self) -> Coded<Arc<Engine>> {
        lock(&self.engine).clone().ok_or_else(|| {
            crate::convert::js_error(Error::new(
                ErrorCode::InvalidConfig,
                "the plugin is not installed: call db.usePlugin(plugin) first",
            ))
        })
    }

    /// Runs a resource method with tagged arguments.
    #[napi]
    pub async fn call(&self, resource: String, method: String, args: Vec<Value>) -> Settled<Value> {
        settle(async {
            let args: Vec<_> = args.iter().map(arg_from_tagged).collect();
            tally_core::calls::call(&*self.engine()?, &resource, &method, &args)
                .await
                .napi()
        })
        .await
    }

    /// Runs an analytics query function (`getDayByHour`, `getTopRecords`, …) with tagged
    /// arguments after the resource and field.
    #[napi]
    pub async fn query(
        &self,
        function: String,
        resource: String,
        field: String,
        args: Vec<Value>,
    ) -> Settled<Value> {
        settle(async {
            let args: Vec<_> = args.iter().map(arg_from_tagged).collect();
            self.engine()?
                .query(&function, &resource, &field, &args)
                .await
                .napi()
        })
        .await
    }

    /// `fillGaps(data, period, start, end)` in `cohort.timezone`.
    #[napi]
    pub fn fill_gaps(
        &self,
        data: Value,
        period: String,
        start: String,
        end: String,
    ) -> napi::Result<Value, Code> {
        tally_core::queries::fill_gaps_json(
            &data,
            &period,
            &start,
            &end,
            self.config.timezone,
            &self.config.metrics,
        )
        .napi()
    }

    /// One background pass (records with pending transactions, under the pass lease).
    #[napi]
    pub async fn run_pass(&self) -> Settled<()> {
        settle(async { self.engine()?.run_pass().await.napi() }).await
    }

    /// Consolidates every configured field now; one summary per field.
    #[napi]
    pub async fn consolidate_all(&self) -> Settled<Vec<Value>> {
        settle(async {
            let runs = self.engine()?.consolidate_all().await.napi()?;
            Ok(runs
                .into_iter()
                .map(|r| {
                    json!({
                        "resource": r.resource, "field": r.field, "success": r.errors == 0,
                        "recordsProcessed": r.records_processed,
                        "transactionsApplied": r.transactions_applied, "errorCount": r.errors,
                    })
                })
                .collect())
        })
        .await
    }

    /// Garbage collection of every configured field.
    #[napi]
    pub async fn run_gc(&self) -> Settled<()> {
        settle(async { self.engine()?.run_gc().await.napi() }).await
    }

    /// `getStatus()`.
    #[napi]
    pub async fn status(&self) -> Settled<Value> {
        settle(async { self.engine()?.status().await.napi() }).await
    }

    /// `getDeadLetters(r, f)`: the transactions set aside.
    #[napi]
    pub async fn dead_letters(&self, resource: String, field: String) -> Settled<Vec<Value>> {
        settle(async { self.engine()?.dead_letters(&resource, &field).await.napi() }).await
    }

    /// `retryDeadLetter(r, f, id, name)`: back to pending; resolves to the transaction.
    #[napi]
    pub async fn retry_dead_letter(
        &self,
        resource: String,
        field: String,
        id: String,
        name: String,
    ) -> Settled<Value> {
        settle(async {
            let engine = self.engine()?;
            engine
                .retry_dead_letter(&resource, &field, &id, &name)
                .await
                .napi()
        })
        .await
    }

    /// `discardDeadLetter(r, f, id, name)`: removes it for good.
    #[napi]
    pub async fn discard_dead_letter(
        &self,
        resource: String,
        field: String,
        id: String,
        name: String,
    ) -> Settled<()> {
        settle(async {
            let engine = self.engine()?;
            engine
                .discard_dead_letter(&resource, &field, &id, &name)
                .await
                .napi()
        })
        .await
    }

    /// `getPendingSummary(r, f)`: pending transactions by record, oldest first.
    #[napi]
    pub async fn pending_summary(&self, resource: String, field: String) -> Settled<Value> {
        settle(async {
            self.engine()?
                .pending_summary(&resource, &field)
                .await
                .napi()
        })
        .await
    }

    /// `inspect(r, id)`: everything known of one record.
    #[napi]
    pub async fn inspect(&self, resource: String, id: String) -> Settled<Value> {
        settle(async { self.engine()?.inspect(&resource, &id).await.napi() }).await
    }

    /// `verify(r, f, ids)`: the audit of a field's history (hash chain, replay, stored
    /// values) over every record with history and each of `ids`.
    #[napi]
    pub async fn verify(
        &self,
        resource: String,
        field: String,
        ids: Vec<String>,
    ) -> Settled<Value> {
        settle(async { self.engine()?.verify(&resource, &field, &ids).await.napi() }).await
    }

    /// `metrics()`: a plain snapshot (see `tally_core::metrics`).
    #[napi]
    pub async fn metrics(&self) -> Settled<Value> {
        settle(async { self.engine()?.metrics().await.napi() }).await
    }

    /// `metrics('prometheus')`: the same as Prometheus text exposition.
    #[napi]
    pub async fn metrics_text(&self) -> Settled<String> {
        settle(async { self.engine()?.metrics_text().await.napi() }).await
    }

    /// `getCohortStats(r, f)`.
    #[napi]
    pub async fn cohort_stats(&self, resource: String, field: String) -> Settled<Value> {
        settle(async { self.engine()?.cohort_stats(&resource, &field).await.napi() }).await
    }

    /// The `started` (or `stopped`) events of every field as `{ name, payload }`, for the
    /// wrapper to emit synchronously from `start()`/`stop()`.
    #[napi]
    pub fn lifecycle_events(&self, started: bool) -> napi::Result<Vec<Value>, Code> {
        Ok(self
            .engine()?
            .lifecycle_events(started)
            .iter()
            .map(|e| json!({ "name": e.name(), "payload": e.payload() }))
            .collect())
    }
}
