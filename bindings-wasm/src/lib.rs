//! WebAssembly binding for Tally's pure analytics (wasm-bindgen). Until the WASM issue lands
//! this crate only re-exports the core built without default features (no tokio, no I/O).

pub use tally_core as core;
