//! What one engine knows locally of inbox entries and fold states: entries found committed,
//! fold states read, entries in flight and checks under way (shared by its consolidations).

use super::*;

/// What an engine knows of its own and others' inbox entries, shared by its consolidations.
#[derive(Default)]
pub(crate) struct FoldCache {
    /// Entries found committed, with their contribution: both never change, so folds in this
    /// process check and read an entry once, however many of them see it.
    pub(super) committed: Mutex<HashMap<String, Arc<Delta>>>,
    /// Entries of this engine's consolidations still under way (by key): their owner folds
    /// them, so this engine's scans neither check nor fold them meanwhile.
    pub(super) in_flight: Mutex<HashSet<String>>,
    /// The fold state last read or written, per fold key, with its version.
    pub(super) states: Mutex<HashMap<String, (Version, Arc<FoldBody>)>>,
    /// Entries being checked, with the checks of the same entry waiting for that one.
    pub(super) checking: Mutex<HashMap<String, Vec<oneshot::Sender<()>>>>,
}

/// Most entries the committed cache holds (it starts afresh when full).
pub(super) const ENTRY_CACHE: usize = 4096;

impl FoldCache {
    pub(super) fn cached(&self, key: &str) -> Option<Arc<Delta>> {
        self.committed.lock().ok()?.get(key).cloned()
    }

    pub(super) fn remember(&self, key: String, delta: Arc<Delta>) {
        if let Ok(mut m) = self.committed.lock() {
            if m.len() >= ENTRY_CACHE {
                m.clear();
            }
            m.insert(key, delta);
        }
    }

    pub(super) fn state(&self, key: &str, version: &Version) -> Option<Arc<FoldBody>> {
        let states = self.states.lock().ok()?;
        let (v, body) = states.get(key)?;
        (v == version).then(|| body.clone())
    }

    pub(super) fn keep_state(&self, key: String, version: Version, body: Arc<FoldBody>) {
        if let Ok(mut states) = self.states.lock() {
            states.insert(key, (version, body));
        }
    }

    pub(super) fn is_in_flight(&self, key: &str) -> bool {
        self.in_flight.lock().is_ok_and(|s| s.contains(key))
    }

    /// Starts checking an entry, unless another fold of this engine is checking it: then
    /// returns what tells when that check is over.
    pub(super) fn start_check(
        &self,
        key: &str,
    ) -> std::result::Result<Checking<'_>, oneshot::Receiver<()>> {
        let mut map = self.checking.lock().unwrap_or_else(|e| e.into_inner());
        match map.get_mut(key) {
            Some(waiting) => {
                let (tx, rx) = oneshot::channel();
                waiting.push(tx);
                Err(rx)
            }
            None => {
                map.insert(key.to_string(), Vec::new());
                Ok(Checking {
                    local: self,
                    key: key.to_string(),
                })
            }
        }
    }
}

/// A check under way; those waiting for it are told when it is dropped.
pub(super) struct Checking<'a> {
    pub(super) local: &'a FoldCache,
    pub(super) key: String,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        let mut map = self
            .local
            .checking
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        for tx in map.remove(&self.key).unwrap_or_default() {
            let _ = tx.send(());
        }
    }
}

/// Marks an inbox entry as this engine's own, under way, until dropped.
pub(crate) struct InFlight<'a> {
    pub(super) local: &'a FoldCache,
    pub(super) key: String,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        if let Ok(mut s) = self.local.in_flight.lock() {
            s.remove(&self.key);
        }
    }
}
