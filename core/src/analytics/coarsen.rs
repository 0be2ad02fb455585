//! Coarsening chart points: hour points into days, weeks or months, day points into weeks or
//! months (the `rollup` function of `tally-ec/wasm`), from the points alone.

use super::points::{Point, decimal_of};
use crate::calendar::Period;
use crate::calendar::{Label, parse_day, week_label};
use rust_decimal::Decimal;
use serde_json::Value;
use std::collections::BTreeMap;

/// The label of the `to` cohort holding the `from`-cohort `label`, when `to` is coarser.
fn coarser(label: &str, to: Period) -> crate::error::Result<Label> {
    let is_hour = label.len() == 13 && label.as_bytes().get(10) == Some(&b'T');
    let is_day = label.len() == 10;
    match to {
        Period::Hour if is_hour => Ok(label.to_string()),
        Period::Day if is_hour || is_day => {
            Ok(parse_day(&label[..10])?.format("%Y-%m-%d").to_string())
        }
        Period::Week if is_hour || is_day => Ok(week_label(parse_day(&label[..10])?)),
        Period::Month if is_hour || is_day => {
            Ok(parse_day(&label[..10])?.format("%Y-%m").to_string())
        }
        Period::Month if label.len() == 7 => Ok(label.to_string()),
        Period::Week if label.contains("-W") => Ok(label.to_string()),
        _ => Err(crate::error::Error::invalid_argument(format!(
            "cannot roll cohort \"{}\" up into {} (hours roll into days, weeks and months; days into weeks and months)",
            crate::amount::truncate(label, 20),
            to.as_str()
        ))),
    }
}

/// Rolls JSON points up into the coarser `period`: counts, sums, min, max and operations add
/// up exactly; `recordCount` is the largest of the parts (a lower bound, as points carry no
/// record ids).
pub fn coarsen(points: &Value, period: Period, metrics: &[String]) -> crate::error::Result<Value> {
    use crate::error::Error;
    let Value::Array(items) = points else {
        return Err(Error::invalid_argument("rollup: points must be an array"));
    };
    let num = |p: &Value, k: &str| -> crate::error::Result<Decimal> {
        match p.get(k) {
            None | Some(Value::Null) => Ok(Decimal::ZERO),
            Some(Value::Number(n)) => decimal_of(n)
                .ok_or_else(|| Error::invalid_argument(format!("rollup: {k} is out of range"))),
            Some(other) => Err(Error::invalid_argument(format!(
                "rollup: {k} must be a number (got {other})"
            ))),
        }
    };
    let mut out: BTreeMap<Label, (Point, u64)> = BTreeMap::new();
    for p in items {
        let cohort = p
            .get("cohort")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::invalid_argument("rollup: every point needs a cohort"))?;
        let count = p.get("count").and_then(Value::as_u64).unwrap_or(0);
        let mut part = Point {
            count,
            sum: num(p, "sum")?,
            min: num(p, "min")?,
            max: num(p, "max")?,
            ..Point::default()
        };
        if let Some(Value::Object(ops)) = p.get("operations") {
            for name in ["add", "sub", "set"] {
                if let Some(o) = ops.get(name) {
                    let c = o.get("count").and_then(Value::as_u64).unwrap_or(0);
                    part.operations.insert(name, (c, num(o, "sum")?));
                }
            }
        }
        let records = p.get("recordCount").and_then(Value::as_u64).unwrap_or(0);
        let e = out.entry(coarser(cohort, period)?).or_default();
        e.0.merge(&part);
        e.1 = e.1.max(records);
    }
    Ok(Value::Array(
        out.iter()
            .map(|(c, (p, records))| {
                let mut v = p.to_json(c, metrics);
                v["recordCount"] = serde_json::json!(records);
                v
            })
            .collect(),
    ))
}
