//! Node.js binding for Tally (napi-rs): conversion and async glue only. Every rule lives in
//! tally-core; this crate turns JS values into core types, core results into JS values, and
//! core errors into `[ERR_CODE] message` errors that the JS wrapper turns into `TallyError`s.
//! One file per exported class.

mod convert;
mod database;
mod host;
mod plugin;

pub use database::NativeDatabase;
pub use plugin::NativePlugin;
