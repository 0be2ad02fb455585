//! Calendar rules of SPEC §6: cohort labels of an instant, strict parsing of day, ISO week,
//! month and year labels (`ERR_INVALID_DATE` for dates that do not exist), and the cohorts of
//! a range. Hours are local hours of `cohort.timezone` (chrono-tz): a spring-forward day has 23
//! labels, a fall-back day 24 (the repeated hour is one label), and there is never a `T24`.

use crate::calendar::Period;
use crate::error::{Error, ErrorCode, Result};
use chrono::{Datelike, Days, Months, NaiveDate, NaiveTime, TimeZone, Weekday};
use chrono_tz::Tz;

/// A cohort label (`2025-10-09T14`, `2025-10-09`, `2025-W41`, `2025-10`).
pub type Label = String;

fn invalid(what: &str, s: &str, why: &str) -> Error {
    Error::new(
        ErrorCode::InvalidDate,
        format!(
            "invalid {what} \"{}\": {why}",
            crate::amount::truncate(s, 40)
        ),
    )
}

fn digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// The label of `ms` (epoch milliseconds) for `period` in `zone`.
pub fn cohort_label(ms: i64, period: Period, zone: Tz) -> Label {
    let c = crate::calendar::cohorts_of(ms, zone);
    match period {
        Period::Hour => c.hour,
        Period::Day => c.date,
        Period::Week => c.week,
        Period::Month => c.month,
    }
}

/// Day label of a date.
pub fn day_label(d: NaiveDate) -> Label {
    d.format("%Y-%m-%d").to_string()
}

/// ISO week label of a date.
pub fn week_label(d: NaiveDate) -> Label {
    let w = d.iso_week();
    format!("{}-W{:02}", w.year(), w.week())
}

/// Month label.
pub fn month_label(year: i32, month: u32) -> Label {
    format!("{year:04}-{month:02}")
}

/// Parses `YYYY-MM-DD`; the date must exist.
pub fn parse_day(s: &str) -> Result<NaiveDate> {
    let parts: Vec<&str> = s.split('-').collect();
    let [y, m, d] = parts[..] else {
        return Err(invalid("date", s, "expected YYYY-MM-DD"));
    };
    if y.len() != 4 || m.len() != 2 || d.len() != 2 || !digits(y) || !digits(m) || !digits(d) {
        return Err(invalid("date", s, "expected YYYY-MM-DD"));
    }
    let (y, m, d) = (
        y.parse().unwrap_or(0),
        m.parse().unwrap_or(0),
        d.parse().unwrap_or(0),
    );
    NaiveDate::from_ymd_opt(y, m, d).ok_or_else(|| invalid("date", s, "no such day"))
}

/// Parses `YYYY-Www`; the ISO year must have that week (52 or 53).
pub fn parse_week(s: &str) -> Result<(i32, u32)> {
    let Some((y, w)) = s.split_once("-W") else {
        return Err(invalid("week", s, "expected YYYY-Www"));
    };
    if y.len() != 4 || w.len() != 2 || !digits(y) || !digits(w) {
        return Err(invalid("week", s, "expected YYYY-Www"));
    }
    let (y, w): (i32, u32) = (y.parse().unwrap_or(0), w.parse().unwrap_or(0));
    if w == 0 || w > weeks_in_year(y) {
        return Err(invalid(
            "week",
            s,
            &format!("ISO year {y} has weeks 01 to {:02}", weeks_in_year(y)),
        ));
    }
    Ok((y, w))
}

/// Parses `YYYY-MM`; the month must be 01–12.
pub fn parse_month(s: &str) -> Result<(i32, u32)> {
    let Some((y, m)) = s.split_once('-') else {
        return Err(invalid("month", s, "expected YYYY-MM"));
    };
    if y.len() != 4 || m.len() != 2 || !digits(y) || !digits(m) {
        return Err(invalid("month", s, "expected YYYY-MM"));
    }
    let (y, m): (i32, u32) = (y.parse().unwrap_or(0), m.parse().unwrap_or(0));
    if !(1..=12).contains(&m) {
        return Err(invalid("month", s, "months are 01 to 12"));
    }
    Ok((y, m))
}

/// Parses a year given as a number or a 4-digit string.
pub fn parse_year(s: &str) -> Result<i32> {
    if s.len() != 4 || !digits(s) {
        return Err(invalid("year", s, "expected a 4-digit year"));
    }
    s.parse().map_err(|_| invalid("year", s, "expected a year"))
}

/// Parses `YYYY-MM-DDTHH` (a local hour label).
pub fn parse_hour(s: &str) -> Result<(NaiveDate, u32)> {
    let Some((d, h)) = s.split_once('T') else {
        return Err(invalid("hour", s, "expected YYYY-MM-DDTHH"));
    };
    let date = parse_day(d)?;
    if h.len() != 2 || !digits(h) {
        return Err(invalid("hour", s, "expected YYYY-MM-DDTHH"));
    }
    let h: u32 = h.parse().unwrap_or(99);
    if h > 23 {
        return Err(invalid("hour", s, "hours are 00 to 23"));
    }
    Ok((date, h))
}

/// Number of ISO weeks of an ISO year (52 or 53).
pub fn weeks_in_year(year: i32) -> u32 {
    if NaiveDate::from_isoywd_opt(year, 53, Weekday::Mon).is_some() {
        53
    } else {
        52
    }
}

/// Monday of an ISO week.
pub fn week_monday(year: i32, week: u32) -> Result<NaiveDate> {
    NaiveDate::from_isoywd_opt(year, week, Weekday::Mon)
        .ok_or_else(|| invalid("week", &format!("{year}-W{week:02}"), "no such week"))
}

/// Every date from `a` to `b` inclusive.
pub fn dates(a: NaiveDate, b: NaiveDate) -> Vec<NaiveDate> {
    a.iter_days().take_while(|d| *d <= b).collect()
}

/// The local hour labels that exist on `date` in `zone` (23, 24; a repeated hour is one
/// label). An hour exists when any quarter of it exists (zones shift by 30 or 15 minutes too).
pub fn hours_of_date(date: NaiveDate, zone: Tz) -> Vec<Label> {
    (0..24)
        .filter(|h| {
            [0, 15, 30, 45].iter().any(|m| {
                NaiveTime::from_hms_opt(*h, *m, 0)
                    .map(|t| {
                        zone.from_local_datetime(&date.and_time(t))
                            .earliest()
                            .is_some()
                    })
                    .unwrap_or(false)
            })
        })
        .map(|h| format!("{}T{h:02}", day_label(date)))
        .collect()
}

/// First and last day of a month.
pub fn month_days(year: i32, month: u32) -> Result<(NaiveDate, NaiveDate)> {
    let first = NaiveDate::from_ymd_opt(year, month, 1)
        .ok_or_else(|| invalid("month", &month_label(year, month), "no such month"))?;
    let last = first
        .checked_add_months(Months::new(1))
        .and_then(|d| d.checked_sub_days(Days::new(1)))
        .ok_or_else(|| invalid("month", &month_label(year, month), "out of range"))?;
    Ok((first, last))
}

fn dedup(labels: impl IntoIterator<Item = Label>) -> Vec<Label> {
    let mut out: Vec<Label> = Vec::new();
    for l in labels {
        if out.last() != Some(&l) {
            out.push(l);
        }
    }
    out
}

/// Every cohort of `period` from `start` to `end` inclusive, ascending. `start`/`end` are
/// labels of the period, or — for `hour` — days (whole days) or hours.
pub fn range(period: Period, start: &str, end: &str, zone: Tz) -> Result<Vec<Label>> {
    Ok(match period {
        Period::Hour => {
            let (from_day, from_hour) = if start.contains('T') {
                let (d, h) = parse_hour(start)?;
                (d, Some(format!("{}T{h:02}", day_label(d))))
            } else {
                (parse_day(start)?, None)
            };
            let (to_day, to_hour) = if end.contains('T') {
                let (d, h) = parse_hour(end)?;
                (d, Some(format!("{}T{h:02}", day_label(d))))
            } else {
                (parse_day(end)?, None)
            };
            dates(from_day, to_day)
                .into_iter()
                .flat_map(|d| hours_of_date(d, zone))
                .filter(|l| from_hour.as_ref().is_none_or(|f| l >= f))
                .filter(|l| to_hour.as_ref().is_none_or(|t| l <= t))
                .collect()
        }
        Period::Day => dates(parse_day(start)?, parse_day(end)?)
            .into_iter()
            .map(day_label)
            .collect(),
        Period::Week => {
            let (y, w) = parse_week(start)?;
            let (y2, w2) = parse_week(end)?;
            let (a, b) = (week_monday(y, w)?, week_monday(y2, w2)?);
            a.iter_weeks()
                .take_while(|d| *d <= b)
                .map(week_label)
                .collect()
        }
        Period::Month => {
            let (mut y, mut m) = parse_month(start)?;
            let end = parse_month(end)?;
            let mut out = Vec::new();
            while (y, m) <= end {
                out.push(month_label(y, m));
                (y, m) = if m == 12 {
                    (y.saturating_add(1), 1)
                } else {
                    (y, m.saturating_add(1))
                };
            }
            out
        }
    })
}

/// The cohorts of a query "`unit` by `period`": a day (`YYYY-MM-DD`), ISO week (`YYYY-Www`),
/// month (`YYYY-MM`) or year (`YYYY`) broken down into `period` cohorts.
pub fn breakdown(unit: &str, period: Period, zone: Tz) -> Result<Vec<Label>> {
    let (first, last) = if unit.len() == 4 {
        let y = parse_year(unit)?;
        if period == Period::Week {
            return Ok((1..=weeks_in_year(y))
                .map(|w| format!("{y:04}-W{w:02}"))
                .collect());
        }
        (
            NaiveDate::from_ymd_opt(y, 1, 1)
                .ok_or_else(|| invalid("year", unit, "out of range"))?,
            NaiveDate::from_ymd_opt(y, 12, 31)
                .ok_or_else(|| invalid("year", unit, "out of range"))?,
        )
    } else if unit.contains("-W") {
        let (y, w) = parse_week(unit)?;
        let monday = week_monday(y, w)?;
        (
            monday,
            monday.checked_add_days(Days::new(6)).unwrap_or(monday),
        )
    } else if unit.len() == 7 {
        let (y, m) = parse_month(unit)?;
        month_days(y, m)?
    } else {
        let d = parse_day(unit)?;
        (d, d)
    };
    let days = dates(first, last);
    Ok(match period {
        Period::Hour => days
            .into_iter()
            .flat_map(|d| hours_of_date(d, zone))
            .collect(),
        Period::Day => days.into_iter().map(day_label).collect(),
        Period::Week => dedup(days.into_iter().map(week_label)),
        Period::Month => dedup(days.into_iter().map(|d| month_label(d.year(), d.month()))),
    })
}

/// The last `n` cohorts of `period` ending with the one holding `now_ms`, ascending.
pub fn last_n(period: Period, n: usize, now_ms: i64, zone: Tz) -> Vec<Label> {
    let now = cohort_label(now_ms, Period::Day, zone);
    let today = parse_day(&now).unwrap_or_default();
    let mut out: Vec<Label> = Vec::with_capacity(n);
    match period {
        Period::Hour => {
            // Walk back in real hours; a repeated local hour is one label.
            let mut ms = now_ms;
            while out.len() < n {
                let l = cohort_label(ms, Period::Hour, zone);
                if out.last() != Some(&l) {
                    out.push(l);
                }
                ms = ms.saturating_sub(1_800_000);
                if now_ms.saturating_sub(ms)
                    > (n as i64).saturating_add(2).saturating_mul(7_200_000)
                {
                    break;
                }
            }
        }
        Period::Day => {
            for i in 0..n {
                if let Some(d) = today.checked_sub_days(Days::new(i as u64)) {
                    out.push(day_label(d));
                }
            }
        }
        Period::Week => {
            for i in 0..n {
                if let Some(d) = today.checked_sub_days(Days::new((i as u64).saturating_mul(7))) {
                    out.push(week_label(d));
                }
            }
        }
        Period::Month => {
            let first = today.with_day(1).unwrap_or(today);
            for i in 0..n {
                if let Some(d) = first.checked_sub_months(Months::new(i as u32)) {
                    out.push(month_label(d.year(), d.month()));
                }
            }
        }
    }
    out.reverse();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tz(s: &str) -> Tz {
        s.parse().unwrap()
    }

    #[test]
    fn impossible_dates_are_err_invalid_date() {
        for (f, s) in [
            (parse_week as fn(&str) -> Result<(i32, u32)>, "2025-W54"),
            (parse_week, "2025-W53"),
            (parse_week, "2025-W00"),
            (parse_month, "2025-13"),
            (parse_month, "2025-00"),
        ] {
            assert_eq!(f(s).unwrap_err().code(), ErrorCode::InvalidDate, "{s}");
        }
        for s in ["2025-02-30", "2025-2-01", "2024-02-30", "x", "2025-12-32"] {
            assert_eq!(
                parse_day(s).unwrap_err().code(),
                ErrorCode::InvalidDate,
                "{s}"
            );
        }
        assert!(parse_day("2024-02-29").is_ok());
        assert_eq!(parse_week("2026-W53").unwrap(), (2026, 53));
        assert_eq!(parse_week("2020-W53").unwrap(), (2020, 53));
    }

    #[test]
    fn dst_days_have_23_and_24_hour_labels_and_never_t24() {
        let ny = tz("America/New_York");
        let spring = hours_of_date(parse_day("2025-03-09").unwrap(), ny);
        assert_eq!(spring.len(), 23);
        assert!(!spring.contains(&"2025-03-09T02".to_string()));
        let fall = hours_of_date(parse_day("2025-11-02").unwrap(), ny);
        assert_eq!(fall.len(), 24);
        let lh = tz("Australia/Lord_Howe");
        // 30-minute shift: 02:00 → 02:30 on 2025-10-05; the 02 label still exists.
        assert_eq!(
            hours_of_date(parse_day("2025-10-05").unwrap(), lh).len(),
            24
        );
        assert!(
            breakdown("2025-03", Period::Hour, ny)
                .unwrap()
                .iter()
                .all(|l| !l.ends_with("T24"))
        );
    }

    #[test]
    fn years_have_52_or_53_iso_weeks_and_week_1_holds_january_4th() {
        let utc = tz("UTC");
        assert_eq!(breakdown("2025", Period::Week, utc).unwrap().len(), 52);
        assert_eq!(breakdown("2026", Period::Week, utc).unwrap().len(), 53);
        assert_eq!(breakdown("2020", Period::Week, utc).unwrap().len(), 53);
        for y in 2000..2040 {
            let jan4 = NaiveDate::from_ymd_opt(y, 1, 4).unwrap();
            assert_eq!(week_label(jan4), format!("{y}-W01"));
        }
        assert_eq!(
            breakdown("2025-W42", Period::Day, utc).unwrap()[0],
            "2025-10-13"
        );
        assert_eq!(breakdown("2025-W42", Period::Hour, utc).unwrap().len(), 168);
        assert_eq!(breakdown("2024", Period::Day, utc).unwrap().len(), 366);
        assert_eq!(breakdown("2025-02", Period::Day, utc).unwrap().len(), 28);
        assert_eq!(breakdown("2025-10", Period::Week, utc).unwrap().len(), 5);
    }

    #[test]
    fn last_n_ends_with_the_current_cohort() {
        let utc = tz("UTC");
        // 2025-03-31T10:00Z
        let now = 1_743_415_200_000;
        assert_eq!(
            last_n(Period::Month, 3, now, utc),
            vec!["2025-01", "2025-02", "2025-03"]
        );
        assert_eq!(
            last_n(Period::Day, 2, now, utc),
            vec!["2025-03-30", "2025-03-31"]
        );
        let hours = last_n(Period::Hour, 24, now, utc);
        assert_eq!(hours.len(), 24);
        assert_eq!(hours.last().unwrap(), "2025-03-31T10");
        assert_eq!(last_n(Period::Week, 1, now, utc), vec!["2025-W14"]);
    }

    #[test]
    fn hour_ranges_take_days_or_hours() {
        let utc = tz("UTC");
        assert_eq!(
            range(Period::Hour, "2025-01-01", "2025-01-02", utc)
                .unwrap()
                .len(),
            48
        );
        assert_eq!(
            range(Period::Hour, "2025-01-01T22", "2025-01-02T01", utc).unwrap(),
            vec![
                "2025-01-01T22",
                "2025-01-01T23",
                "2025-01-02T00",
                "2025-01-02T01"
            ]
        );
        assert_eq!(
            range(Period::Week, "2025-W52", "2026-W02", utc)
                .unwrap()
                .len(),
            3
        );
        assert_eq!(
            range(Period::Month, "2025-11", "2026-02", utc)
                .unwrap()
                .len(),
            4
        );
    }
}
