//! Pure analytics (no I/O, no tokio; builds for wasm32): calendar labels and ranges in an IANA
//! zone, aggregation of transactions into chart-ready points, gap filling and top records.
//! The plugin's queries and the WASM package both use this module.

pub mod calendar;
pub mod coarsen;
pub mod materialized;
pub mod points;

pub use calendar::{Label, cohort_label, range};
pub use coarsen::coarsen;
pub use points::{Fact, Point, PointSet, aggregate, fill_gaps, top_records};
