//! Node.js binding for Tally (napi-rs). Until the Node package issue lands this crate only
//! re-exports the core so the workspace builds; it holds no rules of its own.

pub use tally_core as core;
