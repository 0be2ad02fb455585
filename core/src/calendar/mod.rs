//! The calendar: every rule about local time, in one place and pure (no I/O; builds for
//! wasm32). An instant's cohorts in an IANA zone (`cohorts.rs`: local hour, date, ISO week,
//! month; ISO timestamps), and labels (`labels.rs`: building and strictly parsing hour, day,
//! ISO week, month and year labels, ranges, breakdowns, the last n cohorts). SPEC §6.

mod cohorts;
mod labels;

pub use cohorts::{Cohorts, cohorts_of, iso_timestamp, parse_timestamp, parse_zone};
pub use labels::{
    Label, breakdown, cohort_label, dates, day_label, hours_of_date, last_n, month_days,
    month_label, parse_day, parse_hour, parse_month, parse_week, parse_year, range, week_label,
    week_monday, weeks_in_year,
};

/// Analytics period.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Period {
    /// Local hour.
    Hour,
    /// Local day.
    Day,
    /// ISO week.
    Week,
    /// Local month.
    Month,
}

impl Period {
    /// Parses `hour`, `day`, `week` or `month`.
    pub fn parse(s: &str) -> Option<Period> {
        match s {
            "hour" => Some(Period::Hour),
            "day" => Some(Period::Day),
            "week" => Some(Period::Week),
            "month" => Some(Period::Month),
            _ => None,
        }
    }
    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }
}

impl Period {
    /// The period of a well-formed label, from its length alone: `2025-10-09T14` an hour,
    /// `2025-10-09` a day, `2025-W41` a week, `2025-10` a month (parse a label from outside
    /// with the `parse_*` functions first).
    pub fn of_label(label: &str) -> Option<Period> {
        match label.len() {
            13 => Some(Period::Hour),
            10 => Some(Period::Day),
            8 if label.contains("-W") => Some(Period::Week),
            7 => Some(Period::Month),
            _ => None,
        }
    }
}
