//! What every engine component is handed: the transaction store and where things live in it,
//! the record seam, the clock, the sleeper for backoff and the random source.
//!
//! One [`Ports`] per engine; components borrow it (see [`crate::fold::Folder`]) rather than
//! reaching into the engine, so they sit below it in the module graph.

use crate::clock::{Clock, IdSource, Sleeper};
use crate::error::Result;
use crate::journal::Journals;
use crate::keys::Layout;
use crate::records::RecordAccess;
use crate::store::SharedStore;
use crate::txn::Transaction;
use async_trait::async_trait;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The shared inputs of an engine's components.
pub(crate) struct Ports {
    /// Transactions, journals, leases and analytics objects.
    pub(crate) store: SharedStore,
    /// Where each of them lives in `store`.
    pub(crate) layout: Layout,
    /// The records the fields live in (standalone or s3db.js).
    pub(crate) records: Arc<dyn RecordAccess>,
    /// Timestamps, cohorts and ages.
    pub(crate) clock: Arc<dyn Clock>,
    /// Waits between retries.
    pub(crate) sleeper: Arc<dyn Sleeper>,
    /// Ids and jitter.
    pub(crate) ids: Arc<dyn IdSource>,
}

impl Ports {
    /// The clock's time (epoch ms).
    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
    }

    /// A random number.
    pub(crate) fn random(&self) -> u64 {
        self.ids.next_u64()
    }

    /// Waits a random few milliseconds, growing with `attempt` (up to 100 ms), before a
    /// compare-and-swap that lost is tried again.
    pub(crate) async fn backoff_after_conflict(&self, attempt: u32) {
        let bound = u64::from(attempt.min(20))
            .saturating_mul(5)
            .saturating_add(1);
        let jitter = self.random().checked_rem(bound).unwrap_or(0);
        self.sleeper.sleep(jitter).await;
    }

    /// Reads journal chains and checkpoints (see [`crate::journal`]).
    pub(crate) fn journals(&self) -> Journals<'_> {
        Journals {
            store: &self.store,
            layout: &self.layout,
            records: self.records.as_ref(),
        }
    }
}

/// A custom reduction (a JS `reducer(current, transaction)` through the Node binding).
#[async_trait]
pub trait Reducer: Send + Sync {
    /// Folds `txs` (sorted by timestamp, then id) into `start`.
    async fn reduce(&self, start: Decimal, txs: &[&Transaction], zone: Tz) -> Result<Decimal>;
}

/// The reducers field configurations name with `{"$function": id}`, by id.
#[derive(Default)]
pub(crate) struct Reducers(Mutex<HashMap<u64, Arc<dyn Reducer>>>);

impl Reducers {
    /// The reducer `id`, once provided.
    pub(crate) fn get(&self, id: u64) -> Option<Arc<dyn Reducer>> {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Provides reducer `id`.
    pub(crate) fn set(&self, id: u64, reducer: Arc<dyn Reducer>) {
        self.0
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, reducer);
    }
}
