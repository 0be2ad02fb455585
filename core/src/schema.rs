//! Resource attributes in s3db.js syntax (`'number|default:0'`, `'json'`, `{ $$type: 'object' }`),
//! record validation, and the nested-path rules of the plugin documentation.

use crate::error::{Error, ErrorCode, Result};
use serde_json::{Map, Value};

/// The type of one attribute.
#[derive(Debug, Clone, PartialEq)]
pub enum AttrType {
    /// `string` (and string-like s3db types: `email`, `url`, `secret`, `datetime`, …).
    String,
    /// `number`.
    Number,
    /// `boolean`.
    Boolean,
    /// `json`: any JSON value; paths may go one level into it.
    Json,
    /// `array`.
    Array,
    /// `{ $$type: 'object', child: … }`: a typed object.
    Object(Vec<Attribute>),
}

/// One attribute: name, type, and the s3db flags the core honours.
#[derive(Debug, Clone, PartialEq)]
pub struct Attribute {
    /// The attribute's name.
    pub name: String,
    /// Its type.
    pub ty: AttrType,
    /// The type as written (`string`, `email`, …), used in messages.
    pub type_name: String,
    /// True unless `optional` or a default is given (s3db's rule).
    pub required: bool,
    /// The `default:` value, typed.
    pub default: Option<Value>,
}

/// The attributes of a resource.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Schema {
    /// Attributes in definition order (the `id` attribute is not included).
    pub attributes: Vec<Attribute>,
}

/// Types whose values are strings (`datetime`, `dateonly` and `timeonly` as s3db.js stores
/// them: ISO strings).
const STRING_LIKE: &[&str] = &[
    "string", "email", "url", "datetime", "date", "dateonly", "timeonly", "ip4", "ip6", "uuid",
    "text",
];

/// The type of an s3db.js type name (`'money:2'`, `'embedding:1536'`, `'geo:lat'` carry a
/// parameter after the colon). `secret` and `password`, which s3db.js encrypts or hashes,
/// and s3db.js's custom types are not among them.
fn type_of(name: &str) -> Option<AttrType> {
    let family = match name.strip_prefix("geo:") {
        Some(rest) => rest.split(':').next().unwrap_or(""),
        None => name.split(':').next().unwrap_or(""),
    };
    Some(match family {
        "number" | "decimal" | "money" | "crypto" | "lat" | "lon" => AttrType::Number,
        "boolean" | "bool" => AttrType::Boolean,
        "json" | "object" | "any" | "enum" | "buffer" | "bits" | "point" => AttrType::Json,
        "array" | "embedding" => AttrType::Array,
        t if STRING_LIKE.contains(&t) => AttrType::String,
        _ => return None,
    })
}

impl Schema {
    /// Parses s3db.js attribute definitions (a JSON object).
    pub fn parse(resource: &str, def: &Value) -> Result<Schema> {
        let Value::Object(map) = def else {
            return Err(Error::invalid_config(format!(
                "attributes of resource \"{resource}\" must be an object"
            )));
        };
        let mut attributes = Vec::new();
        for (name, spec) in map {
            if name == "id" || name.starts_with("$$") {
                continue;
            }
            attributes.push(parse_attribute(resource, name, spec)?);
        }
        Ok(Schema { attributes })
    }

    /// The attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&Attribute> {
        self.attributes.iter().find(|a| a.name == name)
    }

    /// Validates a record (without its `id`), filling defaults. Unknown keys are kept.
    pub fn validate(&self, resource: &str, data: &mut Map<String, Value>) -> Result<()> {
        validate_level(resource, "", &self.attributes, data)
    }

    /// Checks a dotted field path against the attributes: one level below a `json` attribute;
    /// any depth through typed objects. Errors carry [`ErrorCode::InvalidPath`] and the
    /// documentation's messages.
    pub fn check_path(&self, resource: &str, path: &str) -> Result<()> {
        let parts: Vec<&str> = path.split('.').collect();
        let bad = |m: String| Err(Error::new(ErrorCode::InvalidPath, m));
        let Some(mut cur) = self.get(parts[0]) else {
            if parts.len() == 1 {
                return Ok(());
            }
            return bad(format!(
                "Field \"{}\" not found in resource \"{resource}\"",
                parts[0]
            ));
        };
        let mut levels_after_json: usize = 0;
        for i in 1..parts.len() {
            let prefix = parts[..i].join(".");
            if levels_after_json > 0 {
                levels_after_json = levels_after_json.saturating_add(1);
                if levels_after_json > 1 {
                    return bad(format!(
                        "Path \"{path}\" exceeds 1 level after 'json' field. Maximum nesting after 'json' is 1 level."
                    ));
                }
                continue;
            }
            match &cur.ty {
                AttrType::Json => levels_after_json = 1,
                AttrType::Object(children) => match children.iter().find(|c| c.name == parts[i]) {
                    Some(child) => cur = child,
                    None => {
                        return bad(format!("Field \"{}\" not found in \"{prefix}\"", parts[i]));
                    }
                },
                _ => {
                    return bad(format!(
                        "Field \"{prefix}\" is type \"{}\" and cannot be nested",
                        cur.type_name
                    ));
                }
            }
        }
        if levels_after_json == 0 {
            match &cur.ty {
                AttrType::Number | AttrType::Json => {}
                _ => {
                    return bad(format!(
                        "Field \"{path}\" is type \"{}\" and cannot hold a number",
                        cur.type_name
                    ));
                }
            }
        }
        Ok(())
    }
}

fn parse_attribute(resource: &str, name: &str, spec: &Value) -> Result<Attribute> {
    match spec {
        Value::String(s) => {
            let mut parts = s.split('|');
            let type_name = parts.next().unwrap_or("").trim().to_string();
            let Some(ty) = type_of(&type_name) else {
                return Err(Error::invalid_config(format!(
                    "attribute \"{name}\" of resource \"{resource}\" has unknown type \"{type_name}\" (secret and password, which s3db.js encrypts or hashes, are not supported)"
                )));
            };
            let mut optional = false;
            let mut explicit_required = false;
            let mut default = None;
            for flag in parts {
                let flag = flag.trim();
                if flag == "optional" {
                    optional = true;
                } else if flag == "required" {
                    explicit_required = true;
                } else if let Some(d) = flag.strip_prefix("default:") {
                    default = Some(typed_default(&ty, d));
                }
            }
            let required = explicit_required || (!optional && default.is_none());
            Ok(Attribute {
                name: name.to_string(),
                ty,
                type_name,
                required,
                default,
            })
        }
        Value::Object(map) => {
            let declared = map
                .get("$$type")
                .and_then(Value::as_str)
                .unwrap_or("object")
                .to_string();
            let mut flags = declared.split('|');
            let base = flags.next().unwrap_or("object").to_string();
            // As in s3db.js (`allNestedObjectsOptional`): optional unless declared required.
            let required = flags.any(|f| f.trim() == "required");
            let mut children = Vec::new();
            for (child, cspec) in map {
                if child.starts_with("$$") {
                    continue;
                }
                children.push(parse_attribute(resource, child, cspec)?);
            }
            let ty = if base == "json" {
                AttrType::Json
            } else {
                AttrType::Object(children)
            };
            Ok(Attribute {
                name: name.to_string(),
                ty,
                type_name: base,
                required,
                default: None,
            })
        }
        other => Err(Error::invalid_config(format!(
            "attribute \"{name}\" of resource \"{resource}\" must be a string or an object, got {other}"
        ))),
    }
}

fn typed_default(ty: &AttrType, raw: &str) -> Value {
    match ty {
        AttrType::Number => raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        AttrType::Boolean => Value::Bool(raw == "true"),
        AttrType::Json | AttrType::Array => {
            serde_json::from_str(raw).unwrap_or(Value::String(raw.into()))
        }
        _ => Value::String(raw.to_string()),
    }
}

fn validate_level(
    resource: &str,
    prefix: &str,
    attrs: &[Attribute],
    data: &mut Map<String, Value>,
) -> Result<()> {
    for attr in attrs {
        let full = format!("{prefix}{}", attr.name);
        let fail = |what: String| Err(Error::new(ErrorCode::Validation, what));
        match data.get_mut(&attr.name) {
            None | Some(Value::Null) => {
                // Defaults fill top-level attributes only, as s3db.js stores them.
                if let Some(d) = attr.default.as_ref().filter(|_| prefix.is_empty()) {
                    data.insert(attr.name.clone(), d.clone());
                } else if attr.required && attr.default.is_none() {
                    return fail(format!(
                        "The '{full}' field is required (resource \"{resource}\")."
                    ));
                }
            }
            Some(v) => {
                let ok = match (&attr.ty, &mut *v) {
                    (AttrType::String, Value::String(_)) => true,
                    (AttrType::Number, Value::Number(_)) => true,
                    (AttrType::Boolean, Value::Bool(_)) => true,
                    (AttrType::Array, Value::Array(_)) => true,
                    (AttrType::Json, _) => true,
                    (AttrType::Object(children), Value::Object(inner)) => {
                        validate_level(resource, &format!("{full}."), children, inner)?;
                        true
                    }
                    _ => false,
                };
                if !ok {
                    return fail(format!(
                        "The '{full}' field must be of type {} (resource \"{resource}\").",
                        attr.type_name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// The number at a dotted path of a document, if it holds one.
pub(crate) fn number_at(data: &Map<String, Value>, path: &str) -> Option<f64> {
    get_path(data, path).and_then(Value::as_f64)
}

/// Reads the value at a dotted path.
pub fn get_path<'a>(data: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = data.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

/// Writes the value at a dotted path, creating (or replacing non-object) intermediate levels.
pub fn set_path(data: &mut Map<String, Value>, path: &str, value: Value) {
    let parts: Vec<&str> = path.split('.').collect();
    let mut cur = data;
    for p in &parts[..parts.len().saturating_sub(1)] {
        let slot = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(next) = slot else { return };
        cur = next;
    }
    if let Some(last) = parts.last() {
        cur.insert(last.to_string(), value);
    }
}
