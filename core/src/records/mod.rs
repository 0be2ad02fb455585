//! Records: the record-access seam ([`RecordAccess`]) through which consolidation reads and
//! commits target records, and its two implementations: Tally's own s3db.js-compatible
//! database over a [`Store`](crate::store::Store) ([`Database`], in `standalone.rs`) and
//! records in a host database ([`s3db`]: s3db.js).
//!
//! A record is stored at `P/r/<resource>/<id>` as `{"d": data, "m": bookkeeping}`; `m` holds
//! Tally's per-field consolidation state and is never shown to users. Every write is a
//! compare-and-swap, so user updates and consolidations never overwrite each other.
//!
//! # Delete and re-create
//!
//! An id can be deleted and inserted again; the new record is a new *incarnation* and inherits
//! nothing of the old one's values or history, while transactions that were still pending at
//! the deletion apply to it (SPEC §3: they wait for the record to exist). A deletion therefore
//! never removes the record's key: it marks the id at `P/x/<resource>/<id>`, then
//! compare-and-swaps the record into a *tombstone* `{"t": deleted at, "m": bookkeeping}`,
//! each field's `base` set to its batch count (see `FieldState::base` in the stored formats).
//! A consolidation that read the record before cannot commit any more, one that committed
//! meanwhile is in the bookkeeping, and no DELETE exists that could land late on a record
//! created again. An insert that finds a tombstone replaces it (compare-and-swap) and keeps its
//! bookkeeping, so the keys the last batches applied stay known as applied, `recalculate` and
//! the audit trail start at `base`, and analytics keep counting the id once per cohort.
//! Listing reads the record of each marked id to leave tombstones out.

pub mod s3db;
mod standalone;

pub use standalone::{Database, ListOptions, Resource};

use crate::error::Result;
use crate::schema::Schema;
use crate::store::{PutMode, SharedStore, StoreError, Version};
use async_trait::async_trait;
use serde_json::{Map, Value};

/// A record as consolidation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredRecord {
    /// The user's data (with `id`).
    pub data: Map<String, Value>,
    /// Tally's bookkeeping (per configured field).
    pub meta: Map<String, Value>,
    /// The version to compare against when committing.
    pub version: Version,
    /// Paths whose values the record access keeps itself (a host record's state, see
    /// [`s3db`]); a commit names them again with the paths it changes.
    pub owned: Vec<String>,
}

/// The result of a conditional record write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitOutcome {
    /// Written.
    Committed,
    /// The record changed since it was read.
    Conflict,
    /// The record no longer exists.
    Missing,
}

/// The record-access seam: where target records live (Tally's own store, or a host database).
#[async_trait]
pub trait RecordAccess: Send + Sync {
    /// Reads a record and its version.
    async fn load(&self, resource: &str, id: &str) -> Result<Option<StoredRecord>>;
    /// Writes data and bookkeeping if the record is still at `version`; `paths` are the
    /// record's [`StoredRecord::owned`] paths and the ones this commit changes.
    async fn commit(
        &self,
        resource: &str,
        id: &str,
        data: Map<String, Value>,
        meta: Map<String, Value>,
        version: &Version,
        paths: &[String],
    ) -> Result<CommitOutcome>;
    /// The resource's attributes, when known.
    async fn schema(&self, resource: &str) -> Result<Option<Schema>>;
    /// The record's bookkeeping, also when it was deleted (then from its tombstone); `None`
    /// when no bookkeeping of the id is known.
    async fn bookkeeping(&self, resource: &str, id: &str) -> Result<Option<Map<String, Value>>> {
        Ok(self.load(resource, id).await?.map(|r| r.meta))
    }
    /// Called when a consolidation of the record found nothing to apply: where records have a
    /// derived copy (a host database), bring it up to date. Nothing to do by default.
    async fn settle(&self, _resource: &str, _id: &str) -> Result<()> {
        Ok(())
    }
    /// Where records have a derived copy (a host database): the error with which it last
    /// refused the values of record `id` since this was last asked (taken once).
    fn take_refusal(&self, _resource: &str, _id: &str) -> Option<crate::error::Error> {
        None
    }
    /// Where records have a derived copy (a host database): that copy as it is now.
    async fn derived_copy(&self, _resource: &str, _id: &str) -> Result<Option<Map<String, Value>>> {
        Ok(None)
    }
}

/// Called after a standalone insert, so pending transactions of the new record get applied.
#[async_trait]
pub trait InsertListener: Send + Sync {
    /// The record `id` of `resource` was just inserted.
    async fn record_inserted(&self, resource: &str, id: &str) -> Result<()>;
}

/// Writes a document conditionally; a conflict or a vanished object is an outcome, not an error.
pub(crate) async fn put_document(
    store: &SharedStore,
    key: &str,
    body: Vec<u8>,
    mode: PutMode,
) -> Result<CommitOutcome> {
    match store.put(key, body, mode).await {
        Ok(_) => Ok(CommitOutcome::Committed),
        Err(StoreError::Conflict { .. }) => Ok(CommitOutcome::Conflict),
        Err(StoreError::NotFound { .. }) => Ok(CommitOutcome::Missing),
        Err(e) => Err(e.into()),
    }
}
