//! The storage seam: a small object-safe async trait over an object store, and its backends.
//!
//! # Contract
//!
//! Every backend (memory, filesystem, S3) upholds these rules; the conformance suite in
//! [`conformance`] checks them against each one:
//!
//! - **No partial objects.** A `get` returns either a whole object written by one `put` or
//!   nothing.
//! - **Create-only** ([`PutMode::Create`]): of N concurrent create-only puts on one key, exactly
//!   one succeeds; the others fail with [`StoreError::Conflict`], also when the key already
//!   existed before.
//! - **Compare-and-swap** ([`PutMode::Update`]): succeeds only when the object's current version
//!   equals the given one; otherwise [`StoreError::Conflict`], or [`StoreError::NotFound`] when
//!   the key does not exist.
//! - **Visibility.** A successful put is visible to the next `get` and `list` from any client;
//!   a successful delete likewise (strong read-after-write, as S3 has had since 2020).
//! - **Listing** returns keys (never bodies) under a prefix in byte-wise ascending order, at most
//!   1,000 per page, strictly after `start_after` when given.
//! - **Deletes are idempotent**: deleting a missing key succeeds.
//! - Versions are opaque tokens. Like S3 ETags they may repeat when the same bytes are written
//!   again; the core never relies on versions of equal content differing.
//!
//! Keys are `/`-separated segments of printable ASCII chosen by the core; backends may reject
//! others with [`StoreError::InvalidKey`].

pub mod cas;
pub mod conformance;
pub mod counting;
pub mod faulty;
#[cfg(feature = "fs")]
pub mod fs;
pub mod memory;
pub mod retry;
#[cfg(feature = "s3")]
pub mod s3;

use async_trait::async_trait;
use std::sync::Arc;

/// An opaque version token (an ETag on S3, a content hash elsewhere).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(pub String);

/// How a put treats an existing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PutMode {
    /// Write whatever is there.
    Overwrite,
    /// Write only when the key does not exist (`If-None-Match: *`).
    Create,
    /// Write only when the current version is this one (`If-Match`).
    Update(Version),
}

/// An object read from the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object {
    /// The whole body.
    pub bytes: Vec<u8>,
    /// The version of this body.
    pub version: Version,
}

/// One page of a listing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListPage {
    /// Keys in ascending byte order.
    pub keys: Vec<String>,
    /// True when more keys follow the last one of this page.
    pub truncated: bool,
}

/// The most keys a single list or delete-many request handles.
pub const PAGE_SIZE: usize = 1000;

/// Errors of a store. Messages never contain credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// A create-only put found the key, or an update found another version.
    #[error("precondition failed on \"{key}\"")]
    Conflict {
        /// The key written.
        key: String,
    },
    /// An update of a key that does not exist.
    #[error("no object at \"{key}\"")]
    NotFound {
        /// The key written.
        key: String,
    },
    /// A key the backend cannot hold (or that would escape its folder).
    #[error("invalid key \"{key}\": {reason}")]
    InvalidKey {
        /// The key.
        key: String,
        /// Why.
        reason: String,
    },
    /// Any other failure (I/O, network, server error), with its cause.
    #[error("storage failure: {0}")]
    Backend(String),
    /// A failure worth another attempt, reported by one attempt of a backend and retried by
    /// [`retry::RetryingStore`]; `ambiguous` when the request may have taken effect.
    #[error("storage failure: {message}")]
    Transient {
        /// What happened.
        message: String,
        /// The request may have taken effect (a timeout, a 5xx, a connection lost after
        /// sending).
        ambiguous: bool,
    },
}

/// A store failure as the core's error: a lost compare-and-swap is `ERR_CONFLICT`, anything
/// else `ERR_STORAGE`.
impl From<StoreError> for crate::error::Error {
    fn from(e: StoreError) -> Self {
        use crate::error::{Error, ErrorCode};
        match e {
            StoreError::Conflict { key } => Error::new(
                ErrorCode::Conflict,
                format!("conditional write on \"{key}\" lost"),
            ),
            StoreError::NotFound { key } => {
                Error::new(ErrorCode::Storage, format!("object \"{key}\" not found"))
            }
            other => Error::storage(other.to_string()),
        }
    }
}

/// The object-store seam (see the module documentation for the contract).
#[async_trait]
pub trait Store: Send + Sync {
    /// Reads an object, or `None` when the key does not exist.
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError>;
    /// Writes an object according to `mode` and returns its new version.
    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError>;
    /// Lists up to [`PAGE_SIZE`] keys that start with `prefix`, in ascending order, strictly
    /// after `start_after` when given.
    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError>;
    /// Deletes a key; deleting a missing key succeeds.
    async fn delete(&self, key: &str) -> Result<(), StoreError>;
    /// Deletes up to [`PAGE_SIZE`] keys in one request; missing keys are ignored.
    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError>;
    /// A short description for logs and errors (never with credentials).
    fn describe(&self) -> String;
    /// Requests this store (or one it wraps) sent again after a transient failure, or to read
    /// back a conditional write whose outcome was unknown.
    fn retries(&self) -> u64 {
        0
    }
    /// The requests counted so far, when this store counts them (see
    /// [`counting::CountingStore`], which every opened connection's store is wrapped in).
    fn request_counts(&self) -> Option<counting::Counts> {
        None
    }
}

/// A shared store handle.
pub type SharedStore = Arc<dyn Store>;

/// Lists every key under `prefix`, following pages.
pub async fn list_all(store: &dyn Store, prefix: &str) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.list(prefix, after.as_deref()).await?;
        let last = page.keys.last().cloned();
        out.extend(page.keys);
        match (page.truncated, last) {
            (true, Some(l)) => after = Some(l),
            _ => return Ok(out),
        }
    }
}

/// Deletes many keys in requests of at most [`PAGE_SIZE`].
pub async fn delete_all(store: &dyn Store, keys: &[String]) -> Result<(), StoreError> {
    for chunk in keys.chunks(PAGE_SIZE) {
        store.delete_many(chunk).await?;
    }
    Ok(())
}

/// Checks the key rules shared by every backend: non-empty `/`-separated segments of printable
/// ASCII without `\`, no `.` or `..` segment, at most 1,024 bytes.
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    let bad = |reason: &str| {
        Err(StoreError::InvalidKey {
            key: key.chars().take(200).collect(),
            reason: reason.to_string(),
        })
    };
    if key.is_empty() || key.len() > 1024 {
        return bad("keys must have 1 to 1024 bytes");
    }
    if !key.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b'\\') {
        return bad("keys are printable ASCII without spaces or backslashes");
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return bad("empty, '.' and '..' segments are not allowed");
        }
    }
    Ok(())
}

/// A content-derived version token (hex SHA-256 prefix), used by the memory and folder stores.
pub fn content_version(bytes: &[u8]) -> Version {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(bytes);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    Version(hex)
}
