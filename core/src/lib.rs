//! tally-core: auditable counters and balances on object storage — exactly-once consolidation
//! of transaction logs, standalone records, and time-bucketed analytics. No napi or
//! wasm-bindgen types live here: JS values arrive as tagged [`Arg`]s (the calling convention
//! is `calls`), and the bindings convert at the edges.
//!
//! Start at [`Engine`] (one configured plugin: mutations, consolidation, passes, queries),
//! [`Database`] (Tally's own records) and [`store`] (the object-store seam and its
//! backends). The modules form layers; a module uses only its own layer and those below
//! (`scripts/check-layers.py` reads the `// L<n>` lines below and fails on an upward edge or a
//! cycle), and the public ones are marked `pub`:
//!
//! | layer | modules |
//! | --- | --- |
//! | L0 foundations | `error`, `clock`, `amount`, `calendar`, `events`, `option_names`, `schema` |
//! | L1 seams, values, configuration | `store`, `keys`, `txn`, `config`, `connection`, `metrics` |
//! | L2 pure analytics, stored formats | `analytics`, `formats` |
//! | L3 records, history, ports, resolution | `records` (with `records::s3db`), `journal`, `ports`, `resolve` |
//! | L4 consolidation, the analytics fold | `fold`, `consolidate` |
//! | L5 components over consolidation | `write`, `pass`, `history`, `dead_letters`, `inspect`, `analytics_view` |
//! | L6 components over history and the view | `admin`, `gc`, `queries`, `verify` |
//! | L7 the facade | `engine` |
//! | L8 the JS calling convention | `calls` |
//!
//! Every component (L4–L6) is a borrowed view of the engine's state with explicit inputs;
//! none names `Engine`, whose methods are one-line delegations to them.
//!
//! `docs/ARCHITECTURE.md` has one line per module and the path of a JS call to a storage
//! request; the protocol is in `consolidate`'s module docs.

// No panic is reachable from input or stored bytes: no unwrap, expect or panic, and no
// arithmetic that can overflow, outside tests (the conformance suite is a test helper).
#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::arithmetic_side_effects
    )
)]

// L0 foundations
pub mod amount;
pub mod calendar;
pub mod clock;
pub mod error;
pub mod events;
mod option_names;
pub mod schema;

// L1 seams, values, configuration
pub mod config;
pub mod connection;
pub mod keys;
pub mod metrics;
pub mod store;
pub mod txn;

// L2 pure analytics, stored formats
pub mod analytics;
mod formats;

// L3 records, history, ports, field resolution
mod journal;
mod ports;
pub mod records;
mod resolve;

// L4 consolidation and the analytics fold
mod consolidate;
mod fold;

// L5 components over consolidation (each a borrowed view of the engine's state)
mod analytics_view;
mod dead_letters;
mod history;
mod inspect;
mod pass;
mod write;

// L6 components over history and the analytics view
mod admin;
mod gc;
pub mod queries;
mod verify;

// L7 the facade
pub mod engine;

// L8 the JS calling convention
pub mod calls;

pub use amount::Arg;
pub use calls::RESOURCE_METHODS;
pub use config::PluginConfig;
pub use engine::{Engine, MutationOptions, MutationResult};
pub use error::{Error, ErrorCode, Result};
pub use history::FieldTransactions;
pub use journal::Journal;
pub use records::Database;
pub use txn::Op;
