//! Node.js binding for Tally (napi-rs): conversion and async glue only. Every rule lives in
//! tally-core; this crate turns JS values into core types, core results into JS values, and
//! core errors into JS errors whose `code` property is the stable `ERR_*` code (see
//! [`convert::Settled`] for async methods). One file per exported class.

mod convert;
mod database;
mod host;
mod plugin;

pub use database::NativeDatabase;
pub use plugin::NativePlugin;
