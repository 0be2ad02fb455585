//! WebAssembly build of Tally's pure analytics for browsers and dashboards (wasm-bindgen).
//!
//! Every function works on data the page already holds: transactions in the SPEC §4 shape (as
//! `getRawEvents` returns them) or analytics points. The query functions are the plugin's own
//! (`tally_core::queries::Plan`), so a dashboard gets the numbers the Node plugin gives.
//! Errors are JS `Error`s with a stable `code` property.

use serde::Serialize;
use serde_json::{Map, Value};
use tally_core::Arg;
use tally_core::analytics::Fact;
use tally_core::cohort::{cohorts_of, parse_timestamp, parse_zone};
use tally_core::config::Period;
use tally_core::error::{Error, ErrorCode};
use tally_core::queries::{Plan, QueryEnv};
use wasm_bindgen::prelude::*;

/// Installs the panic hook, so a bug shows a readable message in the console.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(e.message());
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().as_str().into());
    err.into()
}

fn to_js(v: &Value) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            js_error(Error::invalid_argument(format!(
                "cannot return the result: {e}"
            )))
        })
}

fn from_js(v: JsValue, what: &str) -> Result<Value, JsValue> {
    if v.is_undefined() {
        return Ok(Value::Null);
    }
    serde_wasm_bindgen::from_value(v)
        .map_err(|e| js_error(Error::invalid_argument(format!("{what}: {e}"))))
}

/// The environment keys options may carry: `timezone`, `now`, `metrics`.
fn env_of(objects: &mut [&mut Map<String, Value>]) -> Result<QueryEnv, Error> {
    let mut env = QueryEnv {
        zone: chrono_tz::Tz::UTC,
        now_ms: js_sys::Date::now() as i64,
        metrics: ["count", "sum", "avg", "min", "max"]
            .map(String::from)
            .to_vec(),
    };
    for o in objects.iter_mut() {
        if let Some(z) = o.remove("timezone") {
            let name = z
                .as_str()
                .ok_or_else(|| Error::invalid_argument("timezone must be a string"))?;
            env.zone = parse_zone(name)?;
        }
        if let Some(now) = o.remove("now") {
            env.now_ms = match &now {
                Value::Number(n) => n.as_f64().map(|f| f as i64),
                Value::String(s) => parse_timestamp(s),
                _ => None,
            }
            .ok_or_else(|| {
                Error::new(
                    ErrorCode::InvalidDate,
                    format!("now must be epoch milliseconds or an ISO timestamp (got {now})"),
                )
            })?;
        }
        if let Some(m) = o.remove("metrics") {
            env.metrics = serde_json::from_value(m)
                .map_err(|_| Error::invalid_argument("metrics must be an array of metric names"))?;
        }
    }
    Ok(env)
}

fn facts_of(transactions: &Value, plan: Option<&Plan>) -> Result<Vec<Fact>, Error> {
    let Value::Array(items) = transactions else {
        return Err(Error::invalid_argument("transactions must be an array"));
    };
    let pending = plan.is_none_or(Plan::include_pending);
    let record = plan.and_then(Plan::record);
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (fact, applied) = Fact::from_json(item)?;
        if (applied || pending) && record.is_none_or(|r| fact.record_id == r) {
            out.push(fact);
        }
    }
    Ok(out)
}

fn run_query(function: &str, transactions: Value, args: Value) -> Result<Value, Error> {
    let Value::Array(mut args) = args else {
        return Err(Error::invalid_argument("args must be an array"));
    };
    let env = {
        let mut objects: Vec<&mut Map<String, Value>> =
            args.iter_mut().filter_map(Value::as_object_mut).collect();
        env_of(&mut objects)?
    };
    let args: Vec<Arg> = args.iter().map(Arg::from_json).collect();
    let plan = Plan::parse(function, &args, &env)?;
    if let Plan::Raw(_) = plan {
        return Err(Error::invalid_argument(
            "getRawEvents reads storage; in the browser, filter the transactions array instead",
        ));
    }
    let facts = facts_of(&transactions, Some(&plan))?;
    Ok(plan.execute(&facts, &env))
}

/// Runs an analytics query function of SPEC §6 (`getDayByHour`, `getLastNDays`, …,
/// `getTopRecords`) over `transactions` with the plugin's arguments after resource and field.
/// Option objects may also carry `timezone` (IANA, default UTC), `now` (epoch ms or ISO; for
/// the last-N functions) and `metrics`.
#[wasm_bindgen]
pub fn query(function: &str, transactions: JsValue, args: JsValue) -> Result<JsValue, JsValue> {
    let txs = from_js(transactions, "transactions")?;
    let args = from_js(args, "args")?;
    let out = run_query(function, txs, args).map_err(js_error)?;
    to_js(&out)
}

/// The query functions [`query`] knows, in the plugin's order.
#[wasm_bindgen(js_name = queryFunctions)]
pub fn query_functions() -> Vec<String> {
    tally_core::queries::FUNCTIONS
        .iter()
        .map(|s| s.to_string())
        .collect()
}

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
        tally_core::analytics::range(parse_period(period)?, start, end, zone)
    };
    run().map_err(js_error)
}

fn parse_period(p: &str) -> Result<Period, Error> {
    Period::parse(p).ok_or_else(|| {
        Error::invalid_argument(format!(
            "period must be one of hour, day, week, month (got \"{p}\")"
        ))
    })
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
    let out = tally_core::analytics::points::rollup_json(&points, period, &env.metrics)
        .map_err(js_error)?;
    to_js(&out)
}

/// The ISO 8601 week (`YYYY-Www`) of a date (`YYYY-MM-DD`).
#[wasm_bindgen(js_name = isoWeek)]
pub fn iso_week(date: &str) -> Result<String, JsValue> {
    tally_core::analytics::calendar::parse_day(date)
        .map(tally_core::analytics::calendar::week_label)
        .map_err(js_error)
}

/// How many ISO weeks a year has (52 or 53).
#[wasm_bindgen(js_name = weeksInYear)]
pub fn weeks_in_year(year: i32) -> u32 {
    tally_core::analytics::calendar::weeks_in_year(year)
}
