//! Conversions between JS values and core types: tagged arguments, errors, the JS clock and
//! JS reducers.

use async_trait::async_trait;
use chrono_tz::Tz;
use napi::Status;
use napi::threadsafe_function::ThreadsafeFunction;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tally_core::amount::{decimal_from_f64, decimal_to_f64};
use tally_core::clock::{Clock, SystemClock};
use tally_core::engine::Reducer;
use tally_core::txn::Transaction;
use tally_core::{Arg, Error, ErrorCode};

/// A core error as a JS exception; the wrapper reads the code back from the `[CODE]` prefix.
pub fn js_error(e: Error) -> napi::Error {
    napi::Error::new(
        Status::GenericFailure,
        format!("[{}] {}", e.code().as_str(), e.message()),
    )
}

/// Shorthand for converting core results.
pub trait IntoNapi<T> {
    /// Converts the error side.
    fn napi(self) -> napi::Result<T>;
}

impl<T> IntoNapi<T> for tally_core::Result<T> {
    fn napi(self) -> napi::Result<T> {
        self.map_err(js_error)
    }
}

/// Decodes one argument tagged by the JS wrapper: `{ t: 'undefined'|'null'|'boolean'|
/// 'number'|'string'|'json'|'function'|'other', v }` (non-finite numbers travel as strings).
pub fn arg_from_tagged(v: &Value) -> Arg {
    match v["t"].as_str() {
        Some("null") => Arg::Null,
        Some("boolean") => Arg::Bool(v["v"].as_bool().unwrap_or(false)),
        Some("number") => Arg::Number(match &v["v"] {
            Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
            Value::String(s) => s.parse().unwrap_or(f64::NAN),
            _ => f64::NAN,
        }),
        Some("string") => Arg::String(v["v"].as_str().unwrap_or_default().to_string()),
        Some("json") => Arg::Json(v["v"].clone()),
        Some("function") => Arg::Function,
        Some("other") => Arg::Json(json!({ "$unsupported": v["v"].clone() })),
        _ => Arg::Undefined,
    }
}

/// The plugin's `clock` option: the JS wrapper reads `clock()` before each call and stores it
/// here; without the option the system clock is used.
pub struct JsClock {
    now: AtomicI64,
}

impl JsClock {
    pub fn new() -> Arc<JsClock> {
        Arc::new(JsClock {
            now: AtomicI64::new(SystemClock.now_ms()),
        })
    }
    pub fn set(&self, ms: i64) {
        self.now.store(ms, Ordering::SeqCst);
    }
}

impl Clock for JsClock {
    fn now_ms(&self) -> i64 {
        self.now.load(Ordering::SeqCst)
    }
}

/// The JS side of a reducer: called with `{ start, transactions }`, folds with the user's
/// `reducer(current, transaction)` and returns the final number.
pub type ReducerFn = ThreadsafeFunction<Value, f64, Value, Status, false, true>;

/// A user reducer reached through a thread-safe function.
pub struct JsReducer(pub Arc<ReducerFn>);

#[async_trait]
impl Reducer for JsReducer {
    async fn reduce(
        &self,
        start: Decimal,
        txs: &[&Transaction],
        zone: Tz,
    ) -> tally_core::Result<Decimal> {
        let payload = json!({
            "start": decimal_to_f64(start),
            "transactions": txs.iter().map(|t| t.to_json(zone, false)).collect::<Vec<_>>(),
        });
        let out = self.0.call_async_catch(payload).await.map_err(|e| {
            // A reducer that threw fails the same way however often it is tried (a poison
            // transaction); a call that could not reach JS (the runtime closing) may work later.
            let code = match e.status {
                napi::Status::GenericFailure | napi::Status::PendingException => {
                    ErrorCode::InvalidArgument
                }
                _ => ErrorCode::Storage,
            };
            Error::new(code, format!("reducer failed: {}", e.reason))
        })?;
        decimal_from_f64(out).map_err(|why| {
            Error::new(
                ErrorCode::InvalidAmount,
                format!("reducer returned {out}, which is not a usable amount: {why}"),
            )
        })
    }
}
