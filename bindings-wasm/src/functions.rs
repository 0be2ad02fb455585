//! The functions beside `Transactions`: the cohorts of a timestamp, label ranges, ISO weeks,
//! and on analytics points, filling gaps and coarsening (`rollup`).

use crate::*;
use serde_json::{Map, Value};
use tally_core::calendar::Period;
use tally_core::calendar::{cohorts_of, parse_timestamp, parse_zone};
use tally_core::error::{Error, ErrorCode};
use wasm_bindgen::prelude::*;

/// The cohorts of a timestamp (epoch ms or ISO string) in a zone:
/// `{ cohortHour, cohortDate, cohortWeek, cohortMonth }`.
#[wasm_bindgen]
pub fn cohorts(timestamp: JsValue, timezone: Option<String>) -> Result<JsValue, JsValue> {
    let run = || -> Result<Value, Error> {
        let ms = if let Some(n) = timestamp.as_f64() {
            n as i64
        } else if let Some(s) = timestamp.as_string() {
            parse_timestamp(&s).ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidDate,
                    format!("\"{s}\" is not an ISO 8601 timestamp"),
                )
            })?
        } else {
            return Err(Error::invalid_argument(
                "timestamp must be epoch milliseconds or an ISO string",
            ));
        };
        let zone = parse_zone(timezone.as_deref().unwrap_or("UTC"))?;
        let c = cohorts_of(ms, zone);
        Ok(
            serde_json::json!({ "cohortHour": c.hour, "cohortDate": c.date, "cohortWeek": c.week, "cohortMonth": c.month }),
        )
    };
    to_js(&run().map_err(js_error)?)
}

/// Every cohort label of `period` from `start` to `end` (inclusive) in a zone.
#[wasm_bindgen]
pub fn range(
    period: &str,
    start: &str,
    end: &str,
    timezone: Option<String>,
) -> Result<Vec<String>, JsValue> {
    let run = || -> Result<Vec<String>, Error> {
        let zone = parse_zone(timezone.as_deref().unwrap_or("UTC"))?;
        tally_core::calendar::range(parse_period(period)?, start, end, zone)
    };
    run().map_err(js_error)
}

pub(crate) fn parse_period(p: &str) -> Result<Period, Error> {
    Period::parse(p).ok_or_else(|| {
        Error::invalid_argument(format!(
            "period must be one of hour, day, week, month (got \"{p}\")"
        ))
    })
}

/// The ISO 8601 week (`YYYY-Www`) of a date (`YYYY-MM-DD`).
#[wasm_bindgen(js_name = isoWeek)]
pub fn iso_week(date: &str) -> Result<String, JsValue> {
    tally_core::calendar::parse_day(date)
        .map(tally_core::calendar::week_label)
        .map_err(js_error)
}

/// How many ISO weeks a year has (52 or 53).
#[wasm_bindgen(js_name = weeksInYear)]
pub fn weeks_in_year(year: i32) -> u32 {
    tally_core::calendar::weeks_in_year(year)
}

/// `fillGaps(points, period, start, end, { metrics })`: every cohort of the range, with zero
/// points where `points` has none.
#[wasm_bindgen(js_name = fillGaps)]
pub fn fill_gaps(
    points: JsValue,
    period: &str,
    start: &str,
    end: &str,
    options: JsValue,
) -> Result<JsValue, JsValue> {
    let points = from_js(points, "points")?;
    let mut o = match from_js(options, "options")? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let env = env_of(&mut [&mut o]).map_err(js_error)?;
    let out =
        tally_core::queries::fill_gaps_json(&points, period, start, end, env.zone, &env.metrics)
            .map_err(js_error)?;
    to_js(&out)
}

/// Rolls points up into a coarser period (hour → day, week or month; day → week or month):
/// counts, sums, min, max and per-operation figures add up exactly; `recordCount` becomes the
/// largest of the parts (a lower bound: points do not carry record ids).
#[wasm_bindgen]
pub fn rollup(points: JsValue, period: &str, options: JsValue) -> Result<JsValue, JsValue> {
    let points = from_js(points, "points")?;
    let mut o = match from_js(options, "options")? {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    let env = env_of(&mut [&mut o]).map_err(js_error)?;
    let period = parse_period(period).map_err(js_error)?;
    let out = tally_core::analytics::coarsen(&points, period, &env.metrics).map_err(js_error)?;
    to_js(&out)
}
