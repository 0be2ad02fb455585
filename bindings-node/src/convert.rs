//! Conversions between JS values and core types: tagged arguments, errors, the JS clock and
//! JS reducers.

use async_trait::async_trait;
use chrono_tz::Tz;
use napi::bindgen_prelude::{JsError, ToNapiValue, Unknown};
use napi::threadsafe_function::ThreadsafeFunction;
use napi::{Status, sys};
use rust_decimal::Decimal;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use tally_core::amount::{decimal_from_f64, decimal_to_f64};
use tally_core::clock::{Clock, SystemClock};
use tally_core::engine::Reducer;
use tally_core::txn::Transaction;
use tally_core::{Arg, Error, ErrorCode};

/// The `code` property of the JS errors the addon throws: a core error's stable `ERR_*`
/// code, or for a failure of napi-rs itself (an argument of the wrong type) its status name.
#[derive(Debug, Clone)]
pub struct Code(pub String);

impl AsRef<str> for Code {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// What a synchronous method returns: a JS error thrown from it has `code` set.
pub type Coded<T> = napi::Result<T, Code>;

/// A core error as a JS exception: `message` is the core's message, `code` its stable code.
pub fn js_error(e: Error) -> napi::Error<Code> {
    napi::Error::new(Code(e.code().as_str().to_string()), e.message().to_string())
}

/// Shorthand for converting core and napi-rs results.
pub trait IntoNapi<T> {
    /// Converts the error side.
    fn napi(self) -> Coded<T>;
}

impl<T> IntoNapi<T> for tally_core::Result<T> {
    fn napi(self) -> Coded<T> {
        self.map_err(js_error)
    }
}

impl<T> IntoNapi<T> for napi::Result<T> {
    fn napi(self) -> Coded<T> {
        self.map_err(|e| napi::Error::new(Code(e.status.as_ref().to_string()), e.reason))
    }
}

/// What an async method returns: its value, or a rejection with an error whose `code` is set.
///
/// napi-rs rejects a promise with an error of its own `Status` type, which would lose the
/// code; so the outcome travels as the resolved value, and its conversion on the JS thread
/// builds the coded error and fails with it, which napi-rs then rejects the promise with as
/// is (an error holding a JS error object is passed on unchanged).
pub struct Settled<T>(Coded<T>);

/// Runs an async method's body into a [`Settled`].
pub async fn settle<T>(body: impl std::future::Future<Output = Coded<T>>) -> Settled<T> {
    Settled(body.await)
}

impl<T: ToNapiValue> ToNapiValue for Settled<T> {
    unsafe fn to_napi_value(env: sys::napi_env, val: Self) -> napi::Result<sys::napi_value> {
        match val.0 {
            // SAFETY: called by napi-rs on the JS thread with its live env.
            Ok(v) => unsafe { T::to_napi_value(env, v) },
            Err(e) => {
                let reason = e.reason.clone();
                // SAFETY: as above; `into_value` returns null when the env is going away.
                let error = unsafe { JsError::from(e).into_value(env) };
                if error.is_null() {
                    return Err(napi::Error::new(Status::GenericFailure, reason));
                }
                // SAFETY: `error` is a value of this env, created just now.
                Err(napi::Error::from(unsafe {
                    Unknown::from_raw_unchecked(env, error)
                }))
            }
        }
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
