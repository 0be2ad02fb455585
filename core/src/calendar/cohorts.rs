//! Cohort labels of a timestamp in an IANA time zone: local hour, date, ISO week and month.

use crate::error::{Error, ErrorCode, Result};
use chrono::{Datelike, TimeZone, Timelike};
use chrono_tz::Tz;

/// The cohort labels of one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohorts {
    /// `YYYY-MM-DDTHH` (local; never `T24`).
    pub hour: String,
    /// `YYYY-MM-DD` (local).
    pub date: String,
    /// `YYYY-Www`, the ISO 8601 week of the local date.
    pub week: String,
    /// `YYYY-MM` (local).
    pub month: String,
}

/// Parses an IANA zone name.
pub fn parse_zone(name: &str) -> Result<Tz> {
    name.parse::<Tz>().map_err(|_| {
        Error::new(
            ErrorCode::InvalidConfig,
            format!("cohort.timezone: unknown time zone \"{name}\" (use an IANA name such as \"America/New_York\")"),
        )
    })
}

/// The cohorts of `ms` (epoch milliseconds) in `zone`.
pub fn cohorts_of(ms: i64, zone: Tz) -> Cohorts {
    let utc = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    let local = zone.from_utc_datetime(&utc.naive_utc());
    let date = local.date_naive();
    let iso = date.iso_week();
    Cohorts {
        hour: format!("{}T{:02}", date.format("%Y-%m-%d"), local.hour()),
        date: date.format("%Y-%m-%d").to_string(),
        week: format!("{}-W{:02}", iso.year(), iso.week()),
        month: format!("{:04}-{:02}", date.year(), date.month()),
    }
}

/// ISO 8601 UTC timestamp with milliseconds (`2025-10-09T14:35:00.000Z`), as JS prints it.
pub fn iso_timestamp(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// Parses an ISO 8601 timestamp (with offset or `Z`) into epoch milliseconds.
pub fn parse_timestamp(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|d| d.timestamp_millis())
}
