//! The `resources` option: each resource and the fields it makes eventually consistent, in
//! every form the plugin accepts (a list of fields, one field, or `{ field: options }`).

use super::*;

pub(super) fn parse_resources(o: &Map<String, Value>) -> Result<Vec<ResourceConfig>> {
    let mut out: Vec<ResourceConfig> = Vec::new();
    match o.get("resources") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            // Object map, or the singular form nested under `resources`.
            if map.contains_key("resource") && !map.get("resource").is_some_and(Value::is_array) {
                out.push(parse_entry(map)?);
            } else {
                for (name, fields) in map {
                    out.push(parse_fields(name, fields)?);
                }
            }
        }
        Some(Value::Array(items)) => {
            for item in items {
                let Value::Object(entry) = item else {
                    return Err(cfg_err("each resource must have a \"resource\" name"));
                };
                out.push(parse_entry(entry)?);
            }
        }
        Some(other) => {
            return Err(cfg_err(format!(
                "resources must be an object map or an array (got {other})"
            )));
        }
    }
    if o.contains_key("resource") {
        out.push(parse_entry(o)?);
    }
    let mut seen = std::collections::HashSet::new();
    for r in &out {
        if !seen.insert(r.resource.clone()) {
            return Err(cfg_err(format!(
                "resource \"{}\" is configured twice",
                r.resource
            )));
        }
    }
    Ok(out)
}

fn parse_entry(entry: &Map<String, Value>) -> Result<ResourceConfig> {
    let Some(Value::String(name)) = entry.get("resource") else {
        return Err(cfg_err("each resource must have a \"resource\" name"));
    };
    match (entry.get("fields"), entry.get("field")) {
        (Some(fields), _) => parse_fields(name, fields),
        (None, Some(field)) => parse_fields(name, &Value::Array(vec![field.clone()])),
        (None, None) => Err(cfg_err(format!(
            "resource \"{name}\" must have at least one field"
        ))),
    }
}

fn parse_fields(resource: &str, fields: &Value) -> Result<ResourceConfig> {
    check_resource_name(resource).map_err(|e| cfg_err(e.message()))?;
    let items = match fields {
        Value::Array(items) if !items.is_empty() => items,
        _ => {
            return Err(cfg_err(format!(
                "resource \"{resource}\" must have at least one field"
            )));
        }
    };
    let mut out: Vec<FieldConfig> = Vec::new();
    for item in items {
        let fc = match item {
            Value::String(s) if s.is_empty() => {
                return Err(cfg_err(format!(
                    "field name cannot be empty for resource \"{resource}\""
                )));
            }
            Value::String(s) => FieldConfig {
                field: s.clone(),
                field_path: s.clone(),
                initial_value: Decimal::ZERO,
                reducer: None,
            },
            Value::Object(m) => {
                let field = match m.get("field") {
                    Some(Value::String(f)) if !f.is_empty() => f.clone(),
                    _ => {
                        return Err(cfg_err(format!(
                            "field config must have a \"field\" name for resource \"{resource}\""
                        )));
                    }
                };
                let field_path = match m.get("fieldPath") {
                    None | Some(Value::Null) => field.clone(),
                    Some(Value::String(p)) => p.clone(),
                    Some(v) => {
                        return Err(cfg_err(format!(
                            "fieldPath must be a string for field \"{field}\" of resource \"{resource}\" (got {v})"
                        )));
                    }
                };
                let initial_value = match m.get("initialValue") {
                    None | Some(Value::Null) => Decimal::ZERO,
                    Some(v) => v
                        .as_f64()
                        .and_then(|f| crate::amount::decimal_from_f64(f).ok())
                        .ok_or_else(|| {
                            cfg_err(format!(
                                "initialValue must be a finite number for field \"{field}\" of resource \"{resource}\" (got {v})"
                            ))
                        })?,
                };
                let reducer = match m.get("reducer") {
                    None | Some(Value::Null) => None,
                    Some(Value::Object(f)) if f.get("$function").is_some_and(Value::is_u64) => {
                        f.get("$function").and_then(Value::as_u64)
                    }
                    Some(_) => {
                        return Err(cfg_err(format!(
                            "reducer must be a function for field \"{field}\""
                        )));
                    }
                };
                FieldConfig {
                    field,
                    field_path,
                    initial_value,
                    reducer,
                }
            }
            _ => {
                return Err(cfg_err(format!(
                    "invalid field config type for resource \"{resource}\""
                )));
            }
        };
        for (what, p) in [("field", &fc.field), ("fieldPath", &fc.field_path)] {
            check_field_path(p, ErrorCode::InvalidConfig).map_err(|e| {
                cfg_err(format!(
                    "{what} of resource \"{resource}\": {}",
                    e.message()
                ))
            })?;
        }
        if out.iter().any(|f| f.field == fc.field) {
            return Err(cfg_err(format!(
                "field \"{}\" is configured twice for resource \"{resource}\"",
                fc.field
            )));
        }
        out.push(fc);
    }
    Ok(ResourceConfig {
        resource: resource.to_string(),
        fields: out,
    })
}
