//! The storage conformance suite, one test per (backend, case), on memory and folder stores.

use std::sync::Arc;
use tally_core::store::Store;
use tally_core::store::memory::MemoryStore;

tally_core::conformance_tests!(memory, async {
    Arc::new(MemoryStore::new()) as Arc<dyn Store>
});

tally_core::conformance_tests!(folder, async {
    let dir = tempfile::tempdir().unwrap().keep();
    Arc::new(tally_core::store::fs::FsStore::open(dir).unwrap()) as Arc<dyn Store>
});
