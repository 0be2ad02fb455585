//! Which configured field a call means: the resource and field lookups with their errors, and
//! the resolution of a field argument (a configured field, a dotted path below one, or
//! omitted on a resource with one field) into a [`Target`].

use crate::amount::truncate;
use crate::config::{FieldConfig, PluginConfig, ResourceConfig};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::check_field_path;
use crate::records::RecordAccess;

/// A resolved target: resource, configured field and the path written.
#[derive(Debug, Clone)]
pub struct Target {
    /// Resource name.
    pub resource: String,
    /// The configured field handling the path.
    pub field: FieldConfig,
    /// The dotted path written.
    pub path: String,
}

/// The configuration of `resource`, or `UNKNOWN_RESOURCE`.
pub(crate) fn resource_config<'c>(
    config: &'c PluginConfig,
    resource: &str,
) -> Result<&'c ResourceConfig> {
    config.resource(resource).ok_or_else(|| {
        Error::new(
            ErrorCode::UnknownResource,
            format!(
                "resource \"{}\" is not configured for eventual consistency",
                truncate(resource, 60)
            ),
        )
    })
}

/// The configured field `field` of `resource` (by its exact name), or `UNKNOWN_FIELD`.
pub(crate) fn field_config(
    config: &PluginConfig,
    resource: &str,
    field: &str,
) -> Result<FieldConfig> {
    let rc = resource_config(config, resource)?;
    rc.fields
        .iter()
        .find(|f| f.field == field)
        .cloned()
        .ok_or_else(|| {
            Error::new(
                ErrorCode::UnknownField,
                format!(
                    "field \"{}\" is not configured for resource \"{resource}\"",
                    truncate(field, 60)
                ),
            )
        })
}

/// Resolves a field argument into a target, checking the path against the resource's schema
/// (when `records` has one). Path rules are checked before the configured-field check.
pub(crate) async fn resolve(
    config: &PluginConfig,
    records: &dyn RecordAccess,
    resource: &str,
    field: Option<&str>,
) -> Result<Target> {
    let rc = resource_config(config, resource)?;
    let field = match field {
        Some(f) => f,
        None if rc.fields.len() == 1 => rc.fields[0].field.as_str(),
        None => {
            return Err(Error::new(
                ErrorCode::UnknownField,
                format!(
                    "resource \"{resource}\" has several fields ({}); name the field",
                    field_names(rc)
                ),
            ));
        }
    };
    if field.is_empty() {
        return Err(Error::new(
            ErrorCode::UnknownField,
            format!("field name is empty (resource \"{resource}\")"),
        ));
    }
    let code = if field.contains('.') {
        ErrorCode::InvalidPath
    } else {
        ErrorCode::UnknownField
    };
    check_field_path(field, code)?;
    let handler = handler_of(rc, field);
    let path = match handler {
        Some(h) => format!("{}{}", h.field_path, &field[h.field.len()..]),
        None => field.to_string(),
    };
    if let Some(schema) = records.schema(resource).await?
        && (path.contains('.') || handler.is_some())
    {
        schema.check_path(resource, &path)?;
    }
    let Some(handler) = handler else {
        return Err(Error::new(
            ErrorCode::UnknownField,
            format!(
                "field \"{}\" is not configured for resource \"{resource}\" (configured: {})",
                truncate(field, 60),
                field_names(rc)
            ),
        ));
    };
    Ok(Target {
        resource: resource.to_string(),
        field: handler.clone(),
        path,
    })
}

/// The configured field handling `field`: itself, or the longest configured prefix of a dotted
/// path.
pub(crate) fn handler_of<'a>(rc: &'a ResourceConfig, field: &str) -> Option<&'a FieldConfig> {
    rc.fields
        .iter()
        .filter(|f| field == f.field || field.starts_with(&format!("{}.", f.field)))
        .max_by_key(|f| f.field.len())
}

/// The configured field names of a resource, comma-separated, for messages.
fn field_names(rc: &ResourceConfig) -> String {
    rc.fields
        .iter()
        .map(|f| f.field.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}
