//! WebAssembly build of Tally's pure analytics for browsers and dashboards (wasm-bindgen).
//!
//! Every function works on data the page already holds: transactions in the SPEC §4 shape (as
//! `getRawEvents` returns them) or analytics points. The query functions are the plugin's own
//! (`tally_core::queries::QueryPlan`), so a dashboard gets the numbers the Node plugin gives.
//! Errors are JS `Error`s with a stable `code` property. The class `Transactions` and `query`
//! are in `transactions.rs`, the calendar and points helpers in `functions.rs`; this file
//! holds the conversions both use.

mod functions;
mod transactions;

use serde::Serialize;
use serde_json::{Map, Value};
use tally_core::calendar::{parse_timestamp, parse_zone};
use tally_core::error::{Error, ErrorCode};
use tally_core::queries::QueryEnv;
use wasm_bindgen::prelude::*;

/// Installs the panic hook, so a bug shows a readable message in the console.
#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
}

pub(crate) fn js_error(e: Error) -> JsValue {
    let err = js_sys::Error::new(e.message());
    let _ = js_sys::Reflect::set(&err, &"code".into(), &e.code().as_str().into());
    err.into()
}

pub(crate) fn to_js(v: &Value) -> Result<JsValue, JsValue> {
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| {
            js_error(Error::invalid_argument(format!(
                "cannot return the result: {e}"
            )))
        })
}

pub(crate) fn from_js(v: JsValue, what: &str) -> Result<Value, JsValue> {
    if v.is_undefined() {
        return Ok(Value::Null);
    }
    serde_wasm_bindgen::from_value(v)
        .map_err(|e| js_error(Error::invalid_argument(format!("{what}: {e}"))))
}

/// The environment keys options may carry: `timezone`, `now`, `metrics`.
pub(crate) fn env_of(objects: &mut [&mut Map<String, Value>]) -> Result<QueryEnv, Error> {
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
