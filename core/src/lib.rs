//! tally-core: auditable counters and balances on object storage — exactly-once consolidation
//! of transaction logs, standalone records, and (with the analytics module) time-bucketed
//! rollups. No JS types live here; bindings convert at the edges.
//!
//! Layers, top down: [`engine`] (the plugin facade) → [`consolidate`] (the exactly-once
//! protocol) → [`records`] (the record seam and the standalone database) and [`store`] (the
//! object-store seam: memory, folder, later S3).

// No panic is reachable from input or stored bytes: no unwrap, expect or panic, and no
// arithmetic that can overflow, outside tests (the conformance suite is a test helper).
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

pub mod admin;
pub mod amount;
pub mod analytics;
pub mod analytics_view;
pub mod calls;
pub mod clock;
pub mod cohort;
pub mod config;
pub mod connection;
pub mod consolidate;
pub mod dead_letters;
pub mod engine;
pub mod error;
pub mod events;
mod fold;
mod formats;
pub mod gc;
pub mod history;
pub mod host;
pub mod inspect;
mod journal;
pub mod keys;
pub mod metrics;
pub mod migrate;
pub mod option_names;
mod ports;
pub mod queries;
pub mod records;
pub mod schema;
pub mod store;
pub mod txn;
pub mod verify;

pub use amount::Arg;
pub use config::PluginConfig;
pub use engine::{Engine, MutationOptions, MutationResult};
pub use error::{Error, ErrorCode, Result};
pub use journal::Journal;
pub use records::Database;
pub use txn::Op;
