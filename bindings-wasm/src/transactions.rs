//! `Transactions`: the transactions a page holds, prepared once (from an array of SPEC §4
//! objects) and queried with the plugin's own query functions.

use crate::*;
use serde_json::{Map, Value};
use std::cell::OnceCell;
use tally_core::Arg;
use tally_core::analytics::{Columns, Fact};
use tally_core::error::Error;
use tally_core::queries::QueryPlan;
use tally_core::txn::Op;
use wasm_bindgen::prelude::*;

/// Transactions held in WebAssembly memory, read once and queried many times (a dashboard
/// recomputing after a time-zone change reads nothing again). `prepare()` in `tally-ec/wasm`
/// builds one from an array; the query functions accept either.
#[wasm_bindgen]
pub struct Transactions {
    facts: Vec<Fact>,
    applied: Vec<bool>,
    /// The facts laid out for aggregation, applied ones only and all, built by the first
    /// points query that needs them (about 25 bytes per transaction each).
    columns: [OnceCell<Columns>; 2],
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
            columns: Default::default(),
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
                columns: Default::default(),
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
        let plan = QueryPlan::parse(function, &args, &env)?;
        if let QueryPlan::Raw(_) = plan {
            return Err(Error::invalid_argument(
                "getRawEvents reads storage; in the browser, filter the transactions array instead",
            ));
        }
        let pending = plan.include_pending();
        let record = plan.record();
        if record.is_none() && matches!(plan, QueryPlan::Points { .. }) {
            // Points over every record: the columns laid out once serve every period and
            // zone.
            let columns = self.columns[usize::from(pending)]
                .get_or_init(|| Columns::new(self.chosen(pending, None)));
            if let Some(points) = plan.execute_columns(columns, &env) {
                return Ok(points);
            }
        }
        Ok(plan.execute(self.chosen(pending, record), &env))
    }

    /// The facts a query counts: applied ones (and pending ones with `pending`), of `record`
    /// if given.
    fn chosen<'a>(
        &'a self,
        pending: bool,
        record: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Fact> + 'a {
        self.facts
            .iter()
            .zip(&self.applied)
            .filter(move |(f, applied)| {
                (**applied || pending) && record.is_none_or(|r| &*f.record_id == r)
            })
            .map(|(f, _)| f)
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
