//! Values as they arrive from a caller (a JS-like argument) and exact decimal amounts.

use crate::error::{Error, ErrorCode, Result};
use rust_decimal::Decimal;
use std::str::FromStr;

/// An argument as a dynamic caller (JavaScript) passes it; bindings convert into this so every
/// rule about argument types lives in the core.
#[derive(Debug, Clone, PartialEq)]
pub enum Arg {
    /// `undefined`, or an argument that was not passed.
    Undefined,
    /// `null`.
    Null,
    /// A boolean.
    Bool(bool),
    /// A number, including NaN and infinities.
    Number(f64),
    /// A string.
    String(String),
    /// An object or array (JSON).
    Json(serde_json::Value),
    /// A function (its body stays on the JS side).
    Function,
}

impl Arg {
    /// A short name of the type, for error messages.
    pub fn type_name(&self) -> &'static str {
        match self {
            Arg::Undefined => "undefined",
            Arg::Null => "null",
            Arg::Bool(_) => "boolean",
            Arg::Number(_) => "number",
            Arg::String(_) => "string",
            Arg::Json(serde_json::Value::Array(_)) => "array",
            Arg::Json(_) => "object",
            Arg::Function => "function",
        }
    }

    /// Converts a JSON value (no NaN, no undefined) into an argument.
    pub fn from_json(v: &serde_json::Value) -> Arg {
        match v {
            serde_json::Value::Null => Arg::Null,
            serde_json::Value::Bool(b) => Arg::Bool(*b),
            serde_json::Value::Number(n) => Arg::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Arg::String(s.clone()),
            other => Arg::Json(other.clone()),
        }
    }
}

/// Validates an amount: a finite number that fits an exact decimal.
pub fn amount_from_arg(arg: &Arg, what: &str) -> Result<Decimal> {
    match arg {
        Arg::Number(n) => decimal_from_f64(*n).map_err(|reason| {
            Error::new(
                ErrorCode::InvalidAmount,
                format!(
                    "{what} must be a finite number, got {} ({reason})",
                    fmt_f64(*n)
                ),
            )
        }),
        Arg::String(s) => Err(Error::new(
            ErrorCode::InvalidAmount,
            format!(
                "{what} must be a number, got the string \"{}\"",
                truncate(s, 40)
            ),
        )),
        other => Err(Error::new(
            ErrorCode::InvalidAmount,
            format!("{what} must be a finite number, got {}", other.type_name()),
        )),
    }
}

/// The exact decimal of a finite `f64`, using its shortest round-trip representation (what JS
/// prints), so `0.1` is exactly one tenth.
pub fn decimal_from_f64(n: f64) -> std::result::Result<Decimal, &'static str> {
    if n.is_nan() {
        return Err("NaN");
    }
    if n.is_infinite() {
        return Err("infinite");
    }
    let text = format!("{n}");
    Decimal::from_str_exact(&text)
        .or_else(|_| Decimal::from_scientific(&text))
        .map(|d| d.normalize())
        .map_err(|_| "out of the exact decimal range (about ±7.9e28, 28 decimals)")
}

/// The `f64` nearest to a decimal (what JS receives).
pub fn decimal_to_f64(d: Decimal) -> f64 {
    f64::from_str(&d.normalize().to_string()).unwrap_or(f64::NAN)
}

/// Reads a stored JSON number as a decimal.
pub fn decimal_from_json(v: &serde_json::Value) -> Option<Decimal> {
    match v {
        serde_json::Value::Number(n) => n.as_f64().and_then(|f| decimal_from_f64(f).ok()),
        _ => None,
    }
}

/// A decimal as a JSON number.
pub fn decimal_to_json(d: Decimal) -> serde_json::Value {
    serde_json::Number::from_f64(decimal_to_f64(d))
        .map(serde_json::Value::Number)
        .unwrap_or(serde_json::Value::Null)
}

fn fmt_f64(n: f64) -> String {
    if n.is_nan() {
        "NaN".into()
    } else if n.is_infinite() {
        if n > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else {
        format!("{n}")
    }
}

/// At most `max` characters of `s`, with an ellipsis when cut.
pub fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}
