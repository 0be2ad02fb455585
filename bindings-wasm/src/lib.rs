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
use tally_core::txn::Op;
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

/// Transactions held in WebAssembly memory, read once and queried many times (a dashboard
/// recomputing after a time-zone change reads nothing again). `prepare()` in `tally-ec/wasm`
/// builds one from an array; the query functions accept either.
#[wasm_bindgen]
pub struct Transactions {
    facts: Vec<Fact>,
    applied: Vec<bool>,
}

#[wasm_bindgen]
impl Transactions {
    /// From an array of transactions in the SPEC §4 shape, item by item (the reference path:
    /// it accepts every form `getRawEvents` returns and explains what is wrong with an item).
    #[wasm_bindgen(js_name = fromArray)]
    pub fn from_array(transactions: JsValue) -> Result<Transactions, JsValue> {
        let Value::Array(items) = from_js(transactions, "transactions")? else {
            return Err(js_error(Error::invalid_argument(
                "transactions must be an array",
            )));
        };
        let mut out = Transactions {
            facts: Vec::with_capacity(items.len()),
            applied: Vec::with_capacity(items.len()),
        };
        for item in &items {
            let (fact, applied) = Fact::from_json(item).map_err(js_error)?;
            out.facts.push(fact);
            out.applied.push(applied);
        }
        Ok(out)
    }

    /// From columns, as `prepare()` lays out well-formed transactions: `ids` (distinct record
    /// ids) indexed by `id_of`; `times` in epoch ms, `NaN` where the timestamp is text (the
    /// texts, in order, joined by newlines in `time_text`); `ops` (0 add, 1 sub, 2 set);
    /// `values`, `NaN` where the value is a decimal string (in `value_text`); `applied` (0/1).
    #[wasm_bindgen(js_name = fromColumns)]
    #[allow(clippy::too_many_arguments)]
    pub fn from_columns(
        ids: Vec<String>,
        id_of: &[u32],
        times: &[f64],
        time_text: &str,
        ops: &[u8],
        values: &[f64],
        value_text: &str,
        applied: &[u8],
    ) -> Result<Transactions, JsValue> {
        let read = || -> Result<Transactions, Error> {
            let n = id_of.len();
            if [times.len(), ops.len(), values.len(), applied.len()] != [n; 4] {
                return Err(Error::invalid_argument("columns must have the same length"));
            }
            let ids: Vec<std::sync::Arc<str>> = ids.iter().map(|s| s.as_str().into()).collect();
            let mut time_texts = time_text.split('\n');
            let mut value_texts = value_text.split('\n');
            let mut out = Transactions {
                facts: Vec::with_capacity(n),
                applied: applied.iter().map(|a| *a != 0).collect(),
            };
            for i in 0..n {
                let record_id = ids
                    .get(id_of[i] as usize)
                    .ok_or_else(|| Error::invalid_argument("record index out of range"))?
                    .clone();
                let timestamp_ms = if times[i].is_nan() {
                    Fact::timestamp_of_text(time_texts.next().unwrap_or_default())?
                } else {
                    Fact::timestamp_of_number(times[i]).ok_or_else(|| {
                        Error::invalid_argument("transaction timestamp is out of range")
                    })?
                };
                let operation = [Op::Add, Op::Sub, Op::Set]
                    .get(ops[i] as usize)
                    .copied()
                    .ok_or_else(|| Error::invalid_argument("operation must be add, sub or set"))?;
                let value = if values[i].is_nan() {
                    let text = value_texts.next().unwrap_or_default();
                    Fact::value_of_text(text).ok_or_else(|| {
                        Error::invalid_argument(format!(
                            "transaction value must be a number (got \"{}\")",
                            tally_core::amount::truncate(text, 40)
                        ))
                    })?
                } else {
                    Fact::value_of_number(values[i]).ok_or_else(|| {
                        Error::invalid_argument("transaction value is out of range")
                    })?
                };
                out.facts.push(Fact {
                    record_id,
                    timestamp_ms,
                    operation,
                    value,
                });
            }
            Ok(out)
        };
        read().map_err(js_error)
    }

    /// How many transactions are held.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.facts.len()
    }

    /// Runs a query function (see [`query`]) over these transactions.
    pub fn query(&self, function: &str, args: JsValue) -> Result<JsValue, JsValue> {
        let args = from_js(args, "args")?;
        to_js(&self.run(function, args).map_err(js_error)?)
    }
}

impl Transactions {
    fn run(&self, function: &str, args: Value) -> Result<Value, Error> {
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
        let pending = plan.include_pending();
        let record = plan.record();
        let chosen = self
            .facts
            .iter()
            .zip(&self.applied)
            .filter(|(f, applied)| {
                (**applied || pending) && record.is_none_or(|r| &*f.record_id == r)
            })
            .map(|(f, _)| f);
        Ok(plan.execute(chosen, &env))
    }
}

/// Runs an analytics query function of SPEC §6 (`getDayByHour`, `getLastNDays`, …,
/// `getTopRecords`) over `transactions` with the plugin's arguments after resource and field.
/// Option objects may also carry `timezone` (IANA, default UTC), `now` (epoch ms or ISO; for
/// the last-N functions) and `metrics`. Many queries over the same data are faster on a
/// [`Transactions`] set.
#[wasm_bindgen]
pub fn query(function: &str, transactions: JsValue, args: JsValue) -> Result<JsValue, JsValue> {
    Transactions::from_array(transactions)?.query(function, args)
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
    let out = tally_core::analytics::coarsen(&points, period, &env.metrics).map_err(js_error)?;
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
