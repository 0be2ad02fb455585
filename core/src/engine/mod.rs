//! The plugin facade: one configured plugin over a transaction store and a record seam, the
//! type bindings hold. Every method is one delegation to the component that owns the rule.

mod parts;

pub use crate::pass::RunSummary;
pub use crate::ports::Reducer;
pub use crate::resolve::Target;
pub use crate::write::{MutationOptions, MutationResult};
pub use parts::EngineBuilder;

use crate::amount::Arg;
use crate::config::PluginConfig;
use crate::error::Result;
use crate::events::{Event, EventBus};
use crate::journal::Journal;
use crate::metrics::RunStatus;
use crate::queries::QueryEnv;
use crate::records::{Database, InsertListener, RecordAccess};
use crate::store::SharedStore;
use crate::txn::Op;
use crate::{FieldTransactions, resolve};
use async_trait::async_trait;
use parts::Parts;
use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::sync::Arc;

/// The engine: one configured plugin over a transaction store and a record seam.
pub struct Engine {
    parts: Parts,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("prefix", &self.parts.ports().layout.prefix())
            .field("mode", &self.parts.config.mode)
            .finish_non_exhaustive()
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
        EngineBuilder::new(config, store, prefix, records)
    }

    /// An engine over a standalone [`Database`]: transactions beside the records, and
    /// inserts apply pending transactions.
    pub fn standalone(config: PluginConfig, db: &Arc<Database>) -> EngineBuilder {
        let records = db.clone() as Arc<dyn RecordAccess>;
        EngineBuilder::new(config, db.store().clone(), db.layout().prefix(), records)
    }

    /// Registers this engine for insert notifications of `db`.
    pub fn attach(self: &Arc<Self>, db: &Database) {
        db.add_insert_listener(Arc::downgrade(&(self.clone() as Arc<dyn InsertListener>)));
    }

    /// The configuration.
    pub fn config(&self) -> &PluginConfig {
        &self.parts.config
    }

    /// The event bus (subscribe with a callback or a stream).
    pub fn events(&self) -> &EventBus {
        &self.parts.events
    }

    /// Provides the reducer a field configuration names with `{"$function": id}`.
    pub fn set_reducer(&self, id: u64, reducer: Arc<dyn Reducer>) {
        self.parts.reducers.set(id, reducer);
    }

    /// Counters of past runs.
    pub fn run_status(&self) -> RunStatus {
        self.parts.runs.snapshot()
    }

    /// Resolves a field argument into a target (`Target`).
    pub async fn resolve(&self, resource: &str, field: Option<&str>) -> Result<Target> {
        let records = self.parts.ports().records.as_ref();
        resolve::resolve(&self.parts.config, records, resource, field).await
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
        let w = self.parts.writer();
        w.mutate(resource, field, id, op, amount, options).await
    }

    /// Applies the record's pending transactions of the field now; the value at the path.
    pub async fn consolidate(&self, r: &str, f: Option<&str>, id: &str) -> Result<Option<Value>> {
        self.parts.pass().consolidate(r, f, id).await
    }

    /// The value the record would have after consolidation; writes nothing.
    pub async fn consolidated_value(
        &self,
        r: &str,
        f: Option<&str>,
        id: &str,
    ) -> Result<Option<f64>> {
        self.parts.pass().consolidated_value(r, f, id).await
    }

    /// Rebuilds the field's values from history, writes them and returns the one at the path.
    pub async fn recalculate(&self, r: &str, f: Option<&str>, id: &str) -> Result<Option<Value>> {
        self.parts.history().recalculate(r, f, id).await
    }

    /// Applies the waiting transactions of a record just created, every configured field.
    pub async fn apply_waiting(&self, resource: &str, id: &str) -> Result<Map<String, Value>> {
        self.parts.pass().apply_waiting(resource, id).await
    }

    /// [`Engine::apply_waiting`] field by field; with `stop`, nothing after a failure.
    pub async fn apply_waiting_fields(
        &self,
        resource: &str,
        id: &str,
        stop: bool,
    ) -> Result<Vec<(String, Result<Option<(String, Value)>>)>> {
        self.parts
            .pass()
            .apply_waiting_fields(resource, id, stop)
            .await
    }

    /// Carries over one transaction written elsewhere, exactly once per `key`.
    #[allow(clippy::too_many_arguments)]
    pub async fn import_transaction(
        &self,
        resource: &str,
        path: &str,
        id: &str,
        op: Op,
        value: Decimal,
        timestamp_ms: i64,
        source: Option<String>,
        key: &str,
    ) -> Result<bool> {
        let w = self.parts.writer();
        w.import_transaction(resource, path, id, op, value, timestamp_ms, source, key)
            .await
    }

    /// Carries over one 21.6.2 transaction object, exactly once.
    pub async fn carry_over(&self, resource: &str, tx: &Value) -> Result<bool> {
        self.parts.writer().carry_over(resource, tx).await
    }

    /// One background pass over every configured field, under a lease.
    pub async fn run_pass(&self) -> Result<()> {
        self.parts.pass().run_pass().await
    }

    /// Consolidates every configured field now, regardless of leases.
    pub async fn consolidate_all(&self) -> Result<Vec<RunSummary>> {
        self.parts.pass().consolidate_all().await
    }

    /// Ids of records with pending transactions of a field.
    pub async fn pending_record_ids(&self, resource: &str, field: &str) -> Result<Vec<String>> {
        self.parts.pass().pending_record_ids(resource, field).await
    }

    /// The `started` (or `stopped`) event of every configured field.
    pub fn lifecycle_events(&self, started: bool) -> Vec<Event> {
        self.parts.pass().lifecycle_events(started)
    }

    /// Garbage collection of every configured field; emits `gc-completed` per field.
    pub async fn run_gc(&self) -> Result<()> {
        self.parts.gc().run_gc().await
    }

    /// `getStatus()`: mode, handlers, run counters, pending and dead letters per field.
    pub async fn status(&self) -> Result<Value> {
        self.parts.admin().status().await
    }

    /// `getCohortStats(r, f)`: pending and applied transactions per recent local hour.
    pub async fn cohort_stats(&self, resource: &str, field: &str) -> Result<Value> {
        self.parts.admin().cohort_stats(resource, field).await
    }

    /// `metrics()`: request counts, run counters and per-field gauges.
    pub async fn metrics(&self) -> Result<Value> {
        self.parts.admin().metrics().await
    }

    /// [`Engine::metrics`] as Prometheus text exposition.
    pub async fn metrics_text(&self) -> Result<String> {
        self.parts.admin().metrics_text().await
    }

    /// Every stored transaction of a field (or of one record of it): pending and applied.
    pub async fn field_transactions(
        &self,
        resource: &str,
        field: &str,
        record: Option<&str>,
    ) -> Result<FieldTransactions> {
        let h = self.parts.history();
        h.field_transactions(resource, field, record).await
    }

    /// The committed journals of a record's field, oldest first, and those off the chain.
    pub async fn journal_chain(
        &self,
        resource: &str,
        field: &str,
        id: &str,
    ) -> Result<(Vec<Journal>, Vec<String>)> {
        self.parts
            .ports()
            .journals()
            .chain(resource, field, id)
            .await
    }

    /// The environment queries of this engine run in: its zone, clock and metrics.
    pub fn query_env(&self) -> QueryEnv {
        self.parts.queries().query_env()
    }

    /// Runs an analytics query function with raw JS arguments (after resource and field).
    pub async fn query(&self, function: &str, r: &str, f: &str, args: &[Arg]) -> Result<Value> {
        self.parts.queries().query(function, r, f, args).await
    }

    /// The dead letters of a field, in key order.
    pub async fn dead_letters(&self, resource: &str, field: &str) -> Result<Vec<Value>> {
        self.parts
            .dead_letters()
            .dead_letters(resource, field)
            .await
    }

    /// Puts a dead letter back as a pending transaction, then removes it.
    pub async fn retry_dead_letter(&self, r: &str, f: &str, id: &str, name: &str) -> Result<Value> {
        self.parts
            .dead_letters()
            .retry_dead_letter(r, f, id, name)
            .await
    }

    /// Removes a dead letter for good.
    pub async fn discard_dead_letter(&self, r: &str, f: &str, id: &str, name: &str) -> Result<()> {
        self.parts
            .dead_letters()
            .discard_dead_letter(r, f, id, name)
            .await
    }

    /// The pending transactions of a field by record, oldest first.
    pub async fn pending_summary(&self, resource: &str, field: &str) -> Result<Value> {
        self.parts
            .inspector()
            .pending_summary(resource, field)
            .await
    }

    /// Everything Tally knows of one record.
    pub async fn inspect(&self, resource: &str, id: &str) -> Result<Value> {
        self.parts.inspector().inspect(resource, id).await
    }

    /// Checks a field's stored history against its records (all, or `ids`).
    pub async fn verify(&self, resource: &str, field: &str, ids: &[String]) -> Result<Value> {
        self.parts.verifier().verify(resource, field, ids).await
    }
}
