//! Resource-method calls as a dynamic caller (JavaScript) makes them: `add(id, field, amount,
//! options)` and every shorthand, resolved into engine operations. Bindings pass the raw
//! arguments here so the argument rules (SPEC §3) live in one place.

use crate::amount::{Arg, truncate};
use crate::engine::{Engine, MutationOptions, MutationResult};
use crate::error::{Error, ErrorCode, Result};
use crate::txn::Op;
use serde_json::Value;

/// The methods installed on a configured resource.
pub const RESOURCE_METHODS: [&str; 8] = [
    "set",
    "add",
    "sub",
    "increment",
    "decrement",
    "consolidate",
    "getConsolidatedValue",
    "recalculate",
];

/// A resolved mutation call.
struct MutationCall<'a> {
    id: String,
    field: Option<String>,
    amount: &'a Arg,
    options: &'a Arg,
}

fn arg(args: &[Arg], i: usize) -> &Arg {
    args.get(i).unwrap_or(&Arg::Undefined)
}

fn record_id(a: &Arg, method: &str) -> Result<String> {
    match a {
        Arg::String(s) if !s.is_empty() => Ok(s.clone()),
        Arg::Undefined | Arg::Null => Err(Error::invalid_argument(format!(
            "{method}: the record id is required (first argument)"
        ))),
        other => Err(Error::invalid_argument(format!(
            "{method}: the record id must be a non-empty string (got {})",
            describe(other)
        ))),
    }
}

fn describe(a: &Arg) -> String {
    match a {
        Arg::String(s) => format!("string \"{}\"", truncate(s, 40)),
        Arg::Number(n) => format!("number {n}"),
        other => other.type_name().to_string(),
    }
}

/// `(id, field, amount, options)` or, with the field omitted, `(id, amount, options)`. A
/// string second argument is always a field (numeric strings are not amounts).
fn mutation_call<'a>(args: &'a [Arg], method: &str) -> Result<MutationCall<'a>> {
    let id = record_id(arg(args, 0), method)?;
    Ok(match arg(args, 1) {
        Arg::String(f) => MutationCall {
            id,
            field: Some(f.clone()),
            amount: arg(args, 2),
            options: arg(args, 3),
        },
        _ => MutationCall {
            id,
            field: None,
            amount: arg(args, 1),
            options: arg(args, 2),
        },
    })
}

/// `(id, field?, options?)` for increment/decrement.
fn counter_call<'a>(args: &'a [Arg], method: &str) -> Result<(String, Option<String>, &'a Arg)> {
    let id = record_id(arg(args, 0), method)?;
    Ok(match arg(args, 1) {
        Arg::String(f) => (id, Some(f.clone()), arg(args, 2)),
        Arg::Undefined => (id, None, arg(args, 2)),
        other => (id, None, other),
    })
}

fn is_configured_field(engine: &Engine, resource: &str, name: &str) -> bool {
    engine
        .config()
        .resource(resource)
        .is_some_and(|rc| crate::resolve::handler_of(rc, name).is_some())
}

/// `(id, field?)`, also accepting the 21.6.2 order `(field, id)` when the first argument
/// is a configured field and the second is not.
fn record_call(
    engine: &Engine,
    resource: &str,
    args: &[Arg],
    method: &str,
) -> Result<(String, Option<String>)> {
    if let (Arg::String(a), Arg::String(b)) = (arg(args, 0), arg(args, 1))
        && is_configured_field(engine, resource, a)
        && !is_configured_field(engine, resource, b)
    {
        return Ok((record_id(arg(args, 1), method)?, Some(a.clone())));
    }
    let id = record_id(arg(args, 0), method)?;
    match arg(args, 1) {
        Arg::String(f) => Ok((id, Some(f.clone()))),
        Arg::Undefined | Arg::Null => Ok((id, None)),
        other => Err(Error::invalid_argument(format!(
            "{method}: the field must be a string (got {})",
            describe(other)
        ))),
    }
}

/// Runs a resource method (`add`, `increment`, `getConsolidatedValue`, …) with raw
/// arguments and returns what the JS method resolves to: a number or `null` (sync
/// mutations, consolidation, values) or the stored transaction (async mutations).
pub async fn call(engine: &Engine, resource: &str, method: &str, args: &[Arg]) -> Result<Value> {
    let mutation = |op: Op| async move {
        let c = mutation_call(args, method)?;
        let options = MutationOptions::from_arg(c.options)?;
        let r = engine
            .mutate(resource, c.field.as_deref(), &c.id, op, c.amount, options)
            .await?;
        Ok::<Value, Error>(result_json(r))
    };
    let counter = |op: Op| async move {
        let (id, field, options) = counter_call(args, method)?;
        let options = MutationOptions::from_arg(options)?;
        let r = engine
            .mutate(
                resource,
                field.as_deref(),
                &id,
                op,
                &Arg::Number(1.0),
                options,
            )
            .await?;
        Ok::<Value, Error>(result_json(r))
    };
    match method {
        "set" => mutation(Op::Set).await,
        "add" => mutation(Op::Add).await,
        "sub" => mutation(Op::Sub).await,
        "increment" => counter(Op::Add).await,
        "decrement" => counter(Op::Sub).await,
        "consolidate" => {
            let (id, field) = record_call(engine, resource, args, method)?;
            Ok(engine
                .consolidate(resource, field.as_deref(), &id)
                .await?
                .unwrap_or(Value::Null))
        }
        "getConsolidatedValue" => {
            let (id, field) = record_call(engine, resource, args, method)?;
            match arg(args, 2) {
                Arg::Undefined | Arg::Null | Arg::Json(Value::Object(_)) => {}
                other => {
                    return Err(Error::invalid_argument(format!(
                        "getConsolidatedValue: options must be an object (got {})",
                        describe(other)
                    )));
                }
            }
            Ok(engine
                .consolidated_value(resource, field.as_deref(), &id)
                .await?
                .map(Value::from)
                .unwrap_or(Value::Null))
        }
        "recalculate" => {
            let (id, field) = record_call(engine, resource, args, method)?;
            Ok(engine
                .recalculate(resource, field.as_deref(), &id)
                .await?
                .unwrap_or(Value::Null))
        }
        other => Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("unknown resource method \"{}\"", truncate(other, 40)),
        )),
    }
}

fn result_json(r: MutationResult) -> Value {
    match r {
        MutationResult::Value(v) => v.map(Value::from).unwrap_or(Value::Null),
        MutationResult::Transaction(t) => t,
    }
}
