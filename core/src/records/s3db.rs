//! Records in a host database (s3db.js, reached through the Node binding): the
//! record-access seam over a [`Host`], with the authority kept in Tally's own store.
//!
//! A host database offers no compare-and-swap on records (s3db.js records live in object
//! metadata, so every ETag is the MD5 of an empty body). Exactly-once therefore cannot rest on
//! the host record. Instead, per record, a state object `P/r/<resource>/<id>` in Tally's store
//! holds `{"d": the values of the paths Tally wrote, "m": consolidation bookkeeping}`:
//!
//! - [`RecordAccess::load`] reads the host record (it must exist) and the state object, and
//!   overlays the state's values: once Tally has consolidated a field, the state is the
//!   authority for it, and a host copy that lags behind (a write still in flight, a crash
//!   between the two writes, a concurrent read-modify-write by the host) never becomes the
//!   base of a later consolidation.
//! - [`RecordAccess::commit`] is a compare-and-swap of the state object (create-only the first
//!   time): the commit point. Then the host copy is brought up to date: write the configured
//!   fields, read both again, and repeat (writing what differs) until they agree. Whoever
//!   writes last re-checks afterwards, so when writers go quiet the host shows the latest
//!   state; a crashed writer's lag is repaired by the next consolidation of that
//!   record ([`RecordAccess::settle`] when it finds nothing to apply).
//!
//! Fields of one record share the state object, so consolidating two fields of one record at
//! once serializes on it and both survive.

use super::{CommitOutcome, RecordAccess, StoredRecord, put_document};
use crate::clock::{Clock, SystemClock};
use crate::config::PluginConfig;
use crate::error::Result;
use crate::formats::{decode_document, encode_document, encode_tombstone, retired_meta};
use crate::keys::Layout;
use crate::schema::{Schema, get_path, set_path};
use crate::store::cas::RetryPolicy;
use crate::store::{PutMode, SharedStore, Version};
use async_trait::async_trait;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Rounds of "write the host copy, read it back" per commit; a copy still behind after the
/// last is repaired by the next consolidation of the record (so running out is not an error).
const SYNC_ROUNDS: RetryPolicy = RetryPolicy::AtMost(5);

/// Attempts per host call: a host's storage fails transiently like ours (s3db.js on S3:
/// "The stream has already been transformed" under concurrent reads), so its failures are
/// retried with backoff, as storage failures are.
const HOST_ATTEMPTS: u32 = 4;

/// Time allowed for one host call; a call that never answers fails instead of hanging the
/// consolidation (and `disconnect()`) forever.
const HOST_CALL_TIMEOUT_MS: u64 = 30_000;

/// The host database's records, as the binding reaches them.
#[async_trait]
pub trait Host: Send + Sync {
    /// Reads a record's attributes (host-private keys removed); `None` when it does not exist.
    async fn get(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>>;
    /// Writes the given attributes (keys are dotted paths) into an existing record; `false`
    /// when the record does not exist.
    async fn write(&self, resource: &str, id: &str, changes: Map<String, Value>) -> Result<bool>;
}

/// Records of a host database, with Tally's state beside them.
pub struct HostRecords {
    host: Arc<dyn Host>,
    store: SharedStore,
    layout: Layout,
    schemas: RwLock<HashMap<String, Schema>>,
    sleeper: Arc<dyn crate::clock::Sleeper>,
    call_timeout_ms: Option<u64>,
    /// Stamps tombstones and tells their age.
    clock: Arc<dyn Clock>,
    /// How long a host record created again waits for the afterInsert hook (`inserted`)
    /// before its host copy is taken as its start (`locks.timeout`).
    adopt_after_ms: i64,
    /// Validation errors the host database answered to writes of a record's values, by
    /// `(resource, id)`, until the consolidation that wrote them takes them.
    refusals: std::sync::Mutex<HashMap<(String, String), crate::error::Error>>,
}

impl std::fmt::Debug for HostRecords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostRecords")
            .field("prefix", &self.layout.prefix())
            .finish_non_exhaustive()
    }
}

/// Runs one host call with a timeout, retrying storage failures (reads and writes of a host
/// record are idempotent: a write sets the given values).
async fn with_retries<T, F, Fut>(
    sleeper: &dyn crate::clock::Sleeper,
    timeout_ms: Option<u64>,
    what: &str,
    mut call: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    use futures::FutureExt;
    let policy = RetryPolicy::AtMost(HOST_ATTEMPTS);
    for n in policy.attempts() {
        let attempt = match timeout_ms {
            None => call().await,
            Some(ms) => futures::select_biased! {
                r = call().fuse() => r,
                _ = sleeper.sleep(ms).fuse() => Err(crate::error::Error::storage(format!(
                    "host database {what} gave no answer within {ms} ms"
                ))),
            },
        };
        match attempt {
            Err(e) if e.code() == crate::error::ErrorCode::Storage && policy.allows_after(n) => {
                sleeper.sleep(crate::store::retry::backoff_ms(n)).await;
            }
            other => return other,
        }
    }
    Err(policy.exhausted(&format!("host database {what}")))
}

/// The state object of one record.
struct State {
    values: Map<String, Value>,
    meta: Map<String, Value>,
    version: Option<Version>,
    /// A tombstone: the host record was deleted (and may have been created again since).
    deleted: bool,
    /// When, for a tombstone.
    deleted_at: Option<i64>,
}

impl HostRecords {
    /// Records of `host`; the state objects live in `store` under `prefix` and own the paths
    /// Tally writes; `config` gives `locks.timeout`.
    pub fn new(
        host: Arc<dyn Host>,
        store: SharedStore,
        prefix: &str,
        config: &PluginConfig,
    ) -> Arc<HostRecords> {
        Self::with_timing(
            host,
            store,
            prefix,
            config,
            crate::clock::default_sleeper(),
            Some(HOST_CALL_TIMEOUT_MS),
            Arc::new(SystemClock),
        )
    }

    /// [`HostRecords::new`] with the sleeper used for retry backoff and timeouts, the time
    /// allowed per host call (`None`: no limit), and the clock that stamps tombstones and
    /// tells their age (the simulator's, so its runs do not depend on the wall clock).
    pub fn with_timing(
        host: Arc<dyn Host>,
        store: SharedStore,
        prefix: &str,
        config: &PluginConfig,
        sleeper: Arc<dyn crate::clock::Sleeper>,
        call_timeout_ms: Option<u64>,
        clock: Arc<dyn Clock>,
    ) -> Arc<HostRecords> {
        Arc::new(HostRecords {
            host,
            store,
            layout: Layout::new(prefix),
            schemas: RwLock::new(HashMap::new()),
            sleeper,
            call_timeout_ms,
            clock,
            adopt_after_ms: (config.lock_timeout_s * 1000.0) as i64,
            refusals: std::sync::Mutex::new(HashMap::new()),
        })
    }

    /// Keeps a validation error of the host database for the consolidation to report (at
    /// most one per record; other failures are repaired by the next consolidation).
    fn note_refusal(&self, resource: &str, id: &str, e: crate::error::Error) {
        if e.code() != crate::error::ErrorCode::Validation {
            return;
        }
        let mut refusals = self.refusals.lock().unwrap_or_else(|p| p.into_inner());
        if refusals.len() < 10_000 {
            refusals.insert((resource.to_string(), id.to_string()), e);
        }
    }

    /// Records the attributes of a host resource (for the nested-path rules).
    pub fn set_schema(&self, resource: &str, schema: Schema) {
        self.schemas
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(resource.to_string(), schema);
    }

    /// The host record was deleted: its state becomes a tombstone (see [`crate::records`]), so
    /// an id created again starts from its own values, and a consolidation that read the
    /// state before cannot commit any more.
    pub async fn forget(&self, resource: &str, id: &str) -> Result<()> {
        crate::keys::check_record_id(id)?;
        let policy = RetryPolicy::UntilDone;
        for _ in policy.attempts() {
            let state = self.read_state(resource, id).await?;
            if state.deleted {
                return Ok(());
            }
            if self.retire(resource, id, &state).await? {
                return Ok(());
            }
        }
        Err(policy.exhausted(&format!("state of \"{id}\" of \"{resource}\"")))
    }

    /// The host record `id` was just inserted with `data`: when an earlier record of the id
    /// was deleted, the new one's state starts now, from the inserted values, so a write of the
    /// old record still in flight that lands on the new host copy never becomes its base (the
    /// host copy is repaired by the next consolidation). Without this call (a crash before the
    /// afterInsert hook), the new record starts from its host copy.
    pub async fn inserted(
        &self,
        resource: &str,
        id: &str,
        data: &Map<String, Value>,
    ) -> Result<()> {
        crate::keys::check_record_id(id)?;
        let policy = RetryPolicy::UntilDone;
        for _ in policy.attempts() {
            let state = self.read_state(resource, id).await?;
            let (true, Some(version)) = (state.deleted, state.version) else {
                return Ok(());
            };
            // The paths the old record's state owned (a late write of the old record can only
            // touch those): absent from the insert, they start empty.
            let values: Map<String, Value> = state
                .values
                .keys()
                .cloned()
                .map(|p| {
                    let v = get_path(data, &p).cloned().unwrap_or(Value::Null);
                    (p, v)
                })
                .collect();
            let body = encode_document(&values, &state.meta)?;
            let key = self.layout.record(resource, id);
            if put_document(&self.store, &key, body, PutMode::Update(version)).await?
                != CommitOutcome::Conflict
            {
                return Ok(());
            }
        }
        Err(policy.exhausted(&format!("state of \"{id}\" of \"{resource}\"")))
    }

    /// Replaces a live (or absent) state by its tombstone; `false` when it changed meanwhile.
    async fn retire(&self, resource: &str, id: &str, state: &State) -> Result<bool> {
        let body = encode_tombstone(&state.values, &state.meta, self.clock.now_ms())?;
        let mode = match &state.version {
            Some(v) => PutMode::Update(v.clone()),
            None => PutMode::Create,
        };
        let key = self.layout.record(resource, id);
        Ok(put_document(&self.store, &key, body, mode).await? == CommitOutcome::Committed)
    }

    async fn read_state(&self, resource: &str, id: &str) -> Result<State> {
        let Some(obj) = self.store.get(&self.layout.record(resource, id)).await? else {
            return Ok(State {
                values: Map::new(),
                meta: Map::new(),
                version: None,
                deleted: false,
                deleted_at: None,
            });
        };
        let doc = decode_document(&obj.bytes, resource, id)?;
        Ok(State {
            values: doc.data,
            meta: doc.meta,
            version: Some(obj.version),
            deleted: doc.deleted,
            deleted_at: doc.deleted_at,
        })
    }

    /// Reads a host record, retrying transient failures.
    async fn host_get(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        with_retries(self.sleeper.as_ref(), self.call_timeout_ms, "read", || {
            self.host.get(resource, id)
        })
        .await
    }

    /// Brings the host copy up to the state; `false` when the host record is gone.
    async fn sync_host(
        &self,
        resource: &str,
        id: &str,
        mut values: Map<String, Value>,
        write_first: bool,
    ) -> Result<bool> {
        for round in SYNC_ROUNDS.attempts() {
            if round > 1 {
                let state = self.read_state(resource, id).await?;
                // Deleted meanwhile: a tombstone's values are the old record's, never written.
                if state.deleted {
                    return Ok(true);
                }
                values = state.values;
            }
            // Right after a commit the host copy is behind by construction: write at once, and
            // let the next round read both back.
            let changes: Map<String, Value> = if round == 1 && write_first {
                values.clone()
            } else {
                let Some(host) = self.host_get(resource, id).await? else {
                    return Ok(false);
                };
                values
                    .iter()
                    .filter(|(path, v)| !get_path(&host, path).is_some_and(|h| same_json(h, v)))
                    .map(|(p, v)| (p.clone(), v.clone()))
                    .collect()
            };
            if changes.is_empty() {
                return Ok(true);
            }
            let written =
                with_retries(self.sleeper.as_ref(), self.call_timeout_ms, "write", || {
                    self.host.write(resource, id, changes.clone())
                })
                .await?;
            if !written {
                return Ok(false);
            }
        }
        Ok(true)
    }
}

/// JSON equality where numbers compare by value (`5` equals `5.0`).
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(v, w)| same_json(v, w))
        }
        _ => a == b,
    }
}

#[async_trait]
impl RecordAccess for HostRecords {
    async fn load(&self, resource: &str, id: &str) -> Result<Option<StoredRecord>> {
        // The state first: a tombstone read before the host record means the host record, if
        // there, was created after the deletion (a new incarnation, with nothing to overlay).
        let state = self.read_state(resource, id).await?;
        let Some(mut data) = self.host_get(resource, id).await? else {
            return Ok(None);
        };
        // Created again: its state starts with the afterInsert hook (`inserted`), from the
        // values inserted; a host copy read before may hold a late write of the old record.
        // Only a hook that never came (a crash) leaves the host copy to start from.
        if state.deleted {
            let age = self
                .clock
                .now_ms()
                .saturating_sub(state.deleted_at.unwrap_or(0));
            if age < self.adopt_after_ms {
                return Ok(None);
            }
        }
        let mut owned = Vec::new();
        if !state.deleted {
            for (path, v) in state.values {
                set_path(&mut data, &path, v);
                owned.push(path);
            }
        }
        Ok(Some(StoredRecord {
            data,
            meta: state.meta,
            // An empty token stands for "no state yet": every store's versions are non-empty.
            version: state.version.unwrap_or(Version(String::new())),
            owned,
        }))
    }

    async fn bookkeeping(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        let policy = RetryPolicy::UntilDone;
        for _ in policy.attempts() {
            let state = self.read_state(resource, id).await?;
            if state.version.is_none() {
                return Ok(None);
            }
            if state.deleted || self.host_get(resource, id).await?.is_some() {
                return Ok(Some(state.meta));
            }
            // A live state whose host record is gone: deleted without `forget` (a crash between
            // the two, a hook that failed, a deletion that bypassed hooks). Retire it now.
            if self.retire(resource, id, &state).await? {
                return Ok(Some(retired_meta(&state.meta)));
            }
        }
        Err(policy.exhausted(&format!("state of \"{id}\" of \"{resource}\"")))
    }

    async fn commit(
        &self,
        resource: &str,
        id: &str,
        data: Map<String, Value>,
        meta: Map<String, Value>,
        version: &Version,
        paths: &[String],
    ) -> Result<CommitOutcome> {
        // Only the paths Tally wrote: sub-keys of a json attribute that users change through
        // the host stay theirs.
        let values: Map<String, Value> = paths
            .iter()
            .filter_map(|p| get_path(&data, p).map(|v| (p.clone(), v.clone())))
            .collect();
        let body = encode_document(&values, &meta)?;
        let mode = if version.0.is_empty() {
            PutMode::Create
        } else {
            PutMode::Update(version.clone())
        };
        let key = self.layout.record(resource, id);
        if put_document(&self.store, &key, body, mode).await? != CommitOutcome::Committed {
            // Changed or removed since it was read: read again.
            return Ok(CommitOutcome::Conflict);
        }
        // Committed: the host copy follows. A failure here is repaired by the next
        // consolidation, which reads the state, not the host copy; a refusal (the host's own
        // validation) is kept for the consolidation to report.
        if let Err(e) = self.sync_host(resource, id, values, true).await {
            self.note_refusal(resource, id, e);
        }
        Ok(CommitOutcome::Committed)
    }

    async fn settle(&self, resource: &str, id: &str) -> Result<()> {
        let state = self.read_state(resource, id).await?;
        // A tombstone's values are the deleted record's: never written onto a new one.
        if !state.deleted
            && !state.values.is_empty()
            && let Err(e) = self.sync_host(resource, id, state.values, false).await
        {
            self.note_refusal(resource, id, e.clone());
            return Err(e);
        }
        Ok(())
    }

    fn take_refusal(&self, resource: &str, id: &str) -> Option<crate::error::Error> {
        self.refusals
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&(resource.to_string(), id.to_string()))
    }

    async fn derived_copy(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        self.host_get(resource, id).await
    }

    async fn schema(&self, resource: &str) -> Result<Option<Schema>> {
        Ok(self
            .schemas
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(resource)
            .cloned())
    }
}
