//! Folder store: one file per key under a base folder, safe across processes.
//!
//! - Writes go to a temporary file in `<base>/.tally-tmp/`, are synced, then published:
//!   create-only through `link(2)` (fails atomically when the key exists), overwrite and
//!   compare-and-swap through `rename(2)`. Readers therefore never see partial objects.
//! - Compare-and-swap, overwrite and delete hold an exclusive `flock` on one of 256 lock files
//!   in `<base>/.tally-locks/` (chosen by the key's hash), so they are atomic across processes.
//! - Versions are content hashes (like S3 ETags).
//! - Keys are validated ([`super::validate_key`]) so that no key can name a path outside the
//!   base folder; hidden folders (starting with `.`) are never listed.
//! - Case is kept in file names in a form case-insensitive file systems (APFS, NTFS) cannot
//!   confuse: an ASCII capital `X` is stored as `^x` and `^` as `^^`, so ids `Alice` and
//!   `alice` are two files everywhere. A folder records this in `.tally-store`; a folder
//!   that already held data without that file (written by an earlier version) keeps plain
//!   names, which are correct on case-sensitive file systems only.

use super::{
    ListPage, Object, PAGE_SIZE, PutMode, Store, StoreError, Version, content_version, validate_key,
};
use async_trait::async_trait;
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

const LOCK_STRIPES: u64 = 256;

/// Folder listings kept for the later pages of listings.
const LISTINGS_KEPT: usize = 8;

/// The end of the message of a publish whose folder vanished (retried).
const VANISHED: &str = "folder vanished";

/// What `.tally-store` holds in a folder whose file names encode case.
const CASE_ENCODED: &[u8] = b"{\"names\":\"case-encoded\"}\n";

/// A store in a local folder.
pub struct FsStore {
    base: PathBuf,
    /// Folders this store (and its handles) read to list keys.
    reads: Arc<AtomicU64>,
    /// The last folder listings read, with each folder's modification time then.
    listings: Arc<std::sync::Mutex<Vec<(PathBuf, std::time::SystemTime, Listing)>>>,
    /// File names encode case (see the module docs); false for folders of earlier versions.
    encoded: bool,
}

impl std::fmt::Debug for FsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FsStore")
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

impl FsStore {
    /// Opens (creating it when needed) the store in `base`.
    pub fn open(base: impl AsRef<Path>) -> Result<Self, StoreError> {
        let base = base.as_ref().to_path_buf();
        for dir in [base.join(".tally-tmp"), base.join(".tally-locks")] {
            fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
        let marker = base.join(".tally-store");
        let encoded = match read_file(&marker)? {
            Some(bytes) => bytes == CASE_ENCODED,
            None => {
                let legacy = fs::read_dir(&base)
                    .map_err(|e| io_err(&base, e))?
                    .filter_map(|e| e.ok())
                    .any(|e| !e.file_name().to_string_lossy().starts_with('.'));
                let body = if legacy {
                    &b"{\"names\":\"plain\"}\n"[..]
                } else {
                    CASE_ENCODED
                };
                let me = FsStore {
                    base: base.clone(),
                    listings: Arc::default(),
                    reads: Arc::default(),
                    encoded: false,
                };
                let tmp = me.write_temp(body)?;
                // Create-only: processes opening a new folder at once agree on one answer.
                let linked = fs::hard_link(&tmp, &marker);
                let _ = fs::remove_file(&tmp);
                match linked {
                    Ok(()) => {
                        sync_dir(&base)?;
                        !legacy
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        read_file(&marker)?.is_some_and(|b| b == CASE_ENCODED)
                    }
                    Err(e) => return Err(io_err(&marker, e)),
                }
            }
        };
        Ok(FsStore {
            base,
            listings: Arc::default(),
            reads: Arc::default(),
            encoded,
        })
    }

    /// How many folders listings have read so far (diagnostics, and the cost tests).
    pub fn folder_reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    /// Whether file names encode case (every folder this version creates).
    pub fn encodes_case(&self) -> bool {
        self.encoded
    }

    /// A key's path relative to the base folder.
    fn relative(&self, key: &str) -> String {
        if !self.encoded {
            return key.to_string();
        }
        let mut out = String::with_capacity(key.len().saturating_add(8));
        for c in key.chars() {
            match c {
                '^' => out.push_str("^^"),
                c if c.is_ascii_uppercase() => {
                    out.push('^');
                    out.push(c.to_ascii_lowercase());
                }
                c => out.push(c),
            }
        }
        out
    }

    /// The key part of a file or folder name (reverses [`FsStore::relative`]); `None` for a
    /// name this store did not write.
    fn key_part(&self, name: &str) -> Option<String> {
        if !self.encoded {
            return Some(name.to_string());
        }
        let mut out = String::with_capacity(name.len());
        let mut chars = name.chars();
        while let Some(c) = chars.next() {
            match c {
                '^' => match chars.next()? {
                    '^' => out.push('^'),
                    l if l.is_ascii_lowercase() => out.push(l.to_ascii_uppercase()),
                    _ => return None,
                },
                c if c.is_ascii_uppercase() => return None,
                c => out.push(c),
            }
        }
        Some(out)
    }

    /// The base folder.
    pub fn base(&self) -> &Path {
        &self.base
    }

    fn path_of(&self, key: &str) -> Result<PathBuf, StoreError> {
        validate_key(key)?;
        if key.split('/').any(|s| s.starts_with('.')) {
            return Err(StoreError::InvalidKey {
                key: key.into(),
                reason: "segments may not start with '.' on the folder store".into(),
            });
        }
        Ok(self.base.join(self.relative(key)))
    }

    fn lock_for(&self, key: &str) -> Result<File, StoreError> {
        use sha2::{Digest, Sha256};
        let h = Sha256::digest(key.as_bytes());
        let stripe = u64::from_le_bytes(h[..8].try_into().unwrap_or([0; 8])) % LOCK_STRIPES;
        let path = self.base.join(".tally-locks").join(format!("{stripe:03}"));
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io_err(&path, e))?;
        file.lock().map_err(|e| io_err(&path, e))?;
        Ok(file)
    }

    fn write_temp(&self, bytes: &[u8]) -> Result<PathBuf, StoreError> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let tmp = self
            .base
            .join(".tally-tmp")
            .join(format!("{}-{n}-{nanos}", std::process::id()));
        let mut f = File::create(&tmp).map_err(|e| io_err(&tmp, e))?;
        f.write_all(bytes).map_err(|e| io_err(&tmp, e))?;
        f.sync_data().map_err(|e| io_err(&tmp, e))?;
        Ok(tmp)
    }

    fn put_blocking(
        &self,
        key: &str,
        bytes: Vec<u8>,
        mode: PutMode,
    ) -> Result<Version, StoreError> {
        let path = self.path_of(key)?;
        let version = content_version(&bytes);
        let tmp = self.write_temp(&bytes)?;
        // A folder emptied by a concurrent delete may vanish between creating it and linking
        // into it: create it again and retry.
        let mut result = Err(StoreError::Backend(format!("{key}: folder kept vanishing")));
        for _ in super::cas::RetryPolicy::AtMost(8).attempts() {
            result = match path.parent().map(ensure_dir) {
                Some(Err(e)) => Err(e),
                _ => self.publish(key, &path, &tmp, &mode, &version),
            };
            if !matches!(&result, Err(StoreError::Backend(m)) if m.ends_with(VANISHED)) {
                break;
            }
        }
        let _ = fs::remove_file(&tmp);
        result
    }

    /// Publishes the temporary file `tmp` at `path` as `mode` says.
    fn publish(
        &self,
        key: &str,
        path: &Path,
        tmp: &Path,
        mode: &PutMode,
        version: &Version,
    ) -> Result<Version, StoreError> {
        let vanished = |e: std::io::Error| match e.kind() {
            ErrorKind::NotFound => StoreError::Backend(format!("{}: {VANISHED}", path.display())),
            _ => io_err(path, e),
        };
        match mode {
            PutMode::Create => match fs::hard_link(tmp, path) {
                Ok(()) => sync_parent(path).map(|_| version.clone()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    Err(StoreError::Conflict { key: key.into() })
                }
                Err(e) => Err(vanished(e)),
            },
            PutMode::Overwrite => {
                let _lock = self.lock_for(key)?;
                // A rename that fails leaves `tmp` for the retry.
                fs::rename(tmp, path).map_err(vanished)?;
                sync_parent(path).map(|_| version.clone())
            }
            PutMode::Update(expected) => {
                let _lock = self.lock_for(key)?;
                match read_file(path)? {
                    None => Err(StoreError::NotFound { key: key.into() }),
                    Some(cur) if content_version(&cur) != *expected => {
                        Err(StoreError::Conflict { key: key.into() })
                    }
                    Some(_) => {
                        fs::rename(tmp, path).map_err(vanished)?;
                        sync_parent(path).map(|_| version.clone())
                    }
                }
            }
        }
    }

    fn list_blocking(
        &self,
        prefix: &str,
        start_after: Option<&str>,
    ) -> Result<ListPage, StoreError> {
        // Walk only the deepest folder fully named by the prefix.
        let dir_part = match prefix.rfind('/') {
            Some(i) => &prefix[..i],
            None => "",
        };
        if !dir_part.is_empty() && (validate_key(dir_part).is_err() || dir_part.starts_with('.')) {
            return Ok(ListPage::default());
        }
        let root = if dir_part.is_empty() {
            self.base.clone()
        } else {
            self.base.join(self.relative(dir_part))
        };
        let mut keys = Vec::new();
        self.walk(&root, dir_part, prefix, start_after, &mut keys)?;
        let truncated = keys.len() > PAGE_SIZE;
        keys.truncate(PAGE_SIZE);
        Ok(ListPage { keys, truncated })
    }

    fn delete_blocking(&self, key: &str) -> Result<(), StoreError> {
        let path = self.path_of(key)?;
        let _lock = self.lock_for(key)?;
        match fs::remove_file(&path) {
            Ok(()) => sync_parent(&path)?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_err(&path, e)),
        }
        // Folders left empty go too, so listings never walk what was deleted (a put racing
        // this recreates its folder).
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.base || !d.starts_with(&self.base) || fs::remove_dir(d).is_err() {
                break;
            }
            sync_parent(d)?;
            dir = d.parent();
        }
        Ok(())
    }
}

/// Directory syncs made by this process (diagnostics, and the durability tests).
static DIR_SYNCS: AtomicU64 = AtomicU64::new(0);

/// How many times this process synced a directory of a folder store: every link, rename and
/// removal is followed by a sync of its folder, and every folder created by a sync of its
/// parent, so a resolved write survives a power loss (the file's own data is synced first).
pub fn directory_syncs() -> u64 {
    DIR_SYNCS.load(Ordering::Relaxed)
}

/// Syncs a directory (on Unix; elsewhere renames are durable without it).
fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    DIR_SYNCS.fetch_add(1, Ordering::Relaxed);
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err(dir, e))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn sync_parent(path: &Path) -> Result<(), StoreError> {
    match path.parent() {
        Some(dir) => sync_dir(dir),
        None => Ok(()),
    }
}

/// Creates `dir` and its missing parents, syncing the parent of each folder created.
fn ensure_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    if let Some(parent) = dir.parent() {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => sync_parent(dir),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(()),
        // The parent, just made, was removed by a delete that emptied it: the put retries.
        Err(e) if e.kind() == ErrorKind::NotFound => Err(StoreError::Backend(format!(
            "{}: {VANISHED}",
            dir.display()
        ))),
        Err(e) => Err(io_err(dir, e)),
    }
}

/// A folder's entries in key order: (key, whether it is a folder, path).
type Listing = Arc<Vec<(String, bool, PathBuf)>>;

impl FsStore {
    /// The entries of `dir` (whose key is `key_dir`), sorted as their keys sort (a folder as
    /// `<key>/`). A listing's later pages (`continued`) reuse a folder read since its first
    /// page while the folder's modification time stays the same, so the pages of a big folder
    /// cost one read of it, not one each; a first page always reads afresh, so a listing
    /// shows every key written before it started.
    fn entries(&self, dir: &Path, key_dir: &str, continued: bool) -> Result<Listing, StoreError> {
        let stamp = match fs::metadata(dir).and_then(|m| m.modified()) {
            Ok(t) => Some(t),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Arc::default()),
            Err(_) => None,
        };
        if continued && let Some(stamp) = stamp {
            let cache = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            if let Some((_, _, listing)) = cache.iter().find(|(d, t, _)| d == dir && *t == stamp) {
                return Ok(listing.clone());
            }
        }
        self.reads.fetch_add(1, Ordering::Relaxed);
        let read = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Arc::default()),
            Err(e) => return Err(io_err(dir, e)),
        };
        let mut out = Vec::new();
        for entry in read {
            let entry = entry.map_err(|e| io_err(dir, e))?;
            let Some(name) = entry.file_name().to_str().and_then(|n| self.key_part(n)) else {
                continue;
            };
            if name.starts_with('.') {
                continue;
            }
            let key = if key_dir.is_empty() {
                name
            } else {
                format!("{key_dir}/{name}")
            };
            let file_type = entry.file_type().map_err(|e| io_err(dir, e))?;
            if file_type.is_dir() {
                out.push((format!("{key}/"), true, entry.path()));
            } else if file_type.is_file() {
                out.push((key, false, entry.path()));
            }
        }
        out.sort();
        let listing: Listing = Arc::new(out);
        if let Some(stamp) = stamp {
            let mut cache = self.listings.lock().unwrap_or_else(|p| p.into_inner());
            cache.retain(|(d, _, _)| d != dir);
            if cache.len() >= LISTINGS_KEPT {
                cache.remove(0);
            }
            cache.push((dir.to_path_buf(), stamp, listing.clone()));
        }
        Ok(listing)
    }

    /// Collects, in key order, the keys under `dir` (whose key is `key_dir`) that start with
    /// `prefix` and come after `after`, until one more than a page: folders wholly before
    /// `after` or outside `prefix` are not entered.
    fn walk(
        &self,
        dir: &Path,
        key_dir: &str,
        prefix: &str,
        after: Option<&str>,
        out: &mut Vec<String>,
    ) -> Result<(), StoreError> {
        for (key, is_dir, path) in self.entries(dir, key_dir, after.is_some())?.iter() {
            if out.len() > PAGE_SIZE {
                return Ok(());
            }
            if *is_dir {
                let overlaps = key.starts_with(prefix) || prefix.starts_with(key.as_str());
                let passed =
                    after.is_some_and(|a| a > key.as_str() && !a.starts_with(key.as_str()));
                if overlaps && !passed {
                    self.walk(path, key.trim_end_matches('/'), prefix, after, out)?;
                }
            } else if key.starts_with(prefix) && after.is_none_or(|a| key.as_str() > a) {
                out.push(key.clone());
            }
        }
        Ok(())
    }
}

fn read_file(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::read(path) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(e) if e.kind() == ErrorKind::IsADirectory => Ok(None),
        Err(e) => Err(io_err(path, e)),
    }
}

fn io_err(path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Backend(format!("{}: {e}", path.display()))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| StoreError::Backend(format!("folder store task failed: {e}")))?
}

impl FsStore {
    fn handle(&self) -> FsStore {
        FsStore {
            base: self.base.clone(),
            listings: self.listings.clone(),
            reads: self.reads.clone(),
            encoded: self.encoded,
        }
    }
}

#[async_trait]
impl Store for FsStore {
    async fn get(&self, key: &str) -> Result<Option<Object>, StoreError> {
        let path = self.path_of(key)?;
        blocking(move || {
            Ok(read_file(&path)?.map(|bytes| Object {
                version: content_version(&bytes),
                bytes,
            }))
        })
        .await
    }

    async fn put(&self, key: &str, bytes: Vec<u8>, mode: PutMode) -> Result<Version, StoreError> {
        let me = self.handle();
        let key = key.to_string();
        blocking(move || me.put_blocking(&key, bytes, mode)).await
    }

    async fn list(&self, prefix: &str, start_after: Option<&str>) -> Result<ListPage, StoreError> {
        let me = self.handle();
        let prefix = prefix.to_string();
        let after = start_after.map(str::to_string);
        blocking(move || me.list_blocking(&prefix, after.as_deref())).await
    }

    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        let me = self.handle();
        let key = key.to_string();
        blocking(move || me.delete_blocking(&key)).await
    }

    async fn delete_many(&self, keys: &[String]) -> Result<(), StoreError> {
        let me = self.handle();
        let keys = keys.to_vec();
        blocking(move || keys.iter().try_for_each(|k| me.delete_blocking(k))).await
    }

    fn describe(&self) -> String {
        format!("file://{}", self.base.display())
    }
}
