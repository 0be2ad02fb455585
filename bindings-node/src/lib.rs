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

use napi_derive::napi;

/// `resourceMethods()`: the methods the plugin installs on a configured resource, in order
/// (the JS package reads them from here rather than keeping a copy).
#[napi]
pub fn resource_methods() -> Vec<String> {
    tally_core::RESOURCE_METHODS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// `queryFunctions()`: the analytics query functions, in the plugin's order.
#[napi]
pub fn query_functions() -> Vec<String> {
    tally_core::queries::FUNCTIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}
