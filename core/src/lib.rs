//! tally-core: auditable counters and balances on object storage — exactly-once consolidation
//! of transaction logs, standalone records, and (with the analytics module) time-bucketed
//! rollups. No JS types live here; bindings convert at the edges.

pub mod error;
pub mod store;

pub use error::{Error, ErrorCode, Result};
