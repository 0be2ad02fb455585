//! Pure analytics (no I/O, no tokio; builds for wasm32): aggregation of transactions into
//! chart-ready points, coarsening, gap filling, top records and what a batch adds to the
//! materialized objects. Labels and ranges are the [`crate::calendar`]'s. The plugin's queries
//! and the WASM package both use this module.

pub mod coarsen;
mod columns;
pub mod materialized;
pub mod points;

pub use coarsen::coarsen;
pub use columns::Columns;
pub use points::{Fact, Point, PointSet, aggregate, fill_gaps, top_records};
