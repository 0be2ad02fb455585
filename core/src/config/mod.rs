//! Plugin configuration: every accepted form (object map, array, singular, flat 21.6.2 names),
//! the documented defaults, and validation with messages that name the option.
//!
//! Bindings pass the options as JSON; a JS function (a `reducer`) is passed as the marker
//! object `{"$function": <n>}`.

mod resources;
use resources::parse_resources;

use crate::calendar::{Period, parse_zone};
use crate::error::{Error, ErrorCode, Result};
use crate::keys::{check_field_path, check_resource_name};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};

/// Consolidation mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every mutation consolidates before it resolves.
    Sync,
    /// Background consolidation.
    Async,
}

impl Mode {
    /// `'sync'` or `'async'`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Sync => "sync",
            Mode::Async => "async",
        }
    }
}

/// One configured field of a resource.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldConfig {
    /// The name methods use (`'balance'`, `'utmResults'`, or a dotted path).
    pub field: String,
    /// Where the value lives in the record (defaults to `field`).
    pub field_path: String,
    /// Start value when the record has none.
    pub initial_value: Decimal,
    /// The binding's id of a custom reducer function, if any.
    pub reducer: Option<u64>,
}

/// One configured resource.
#[derive(Debug, Clone, PartialEq)]
pub struct ResourceConfig {
    /// Resource name.
    pub resource: String,
    /// Its fields, in configuration order (the first is the default field).
    pub fields: Vec<FieldConfig>,
}

/// The whole normalized configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct PluginConfig {
    /// Configured resources.
    pub resources: Vec<ResourceConfig>,
    /// `consolidation.mode`.
    pub mode: Mode,
    /// `consolidation.auto`.
    pub auto: bool,
    /// `consolidation.interval` in seconds.
    pub interval_s: f64,
    /// `consolidation.window` in hours (a hint; nothing pending is ever skipped).
    pub window_h: f64,
    /// `consolidation.concurrency`.
    pub concurrency: usize,
    /// `consolidation.markAppliedConcurrency`.
    pub mark_applied_concurrency: usize,
    /// `analytics.enabled`.
    pub analytics_enabled: bool,
    /// `analytics.periods`.
    pub periods: Vec<Period>,
    /// `analytics.metrics`.
    pub metrics: Vec<String>,
    /// `locks.timeout` in seconds.
    pub lock_timeout_s: f64,
    /// `garbageCollection.enabled`.
    pub gc_enabled: bool,
    /// `garbageCollection.interval` in seconds.
    pub gc_interval_s: f64,
    /// `garbageCollection.retention` in days.
    pub gc_retention_days: f64,
    /// `checkpoints.enabled`.
    pub checkpoints_enabled: bool,
    /// `checkpoints.strategy`: hourly (`true`) or daily (`false`).
    pub checkpoints_hourly: bool,
    /// `checkpoints.retention` in days.
    pub checkpoints_retention_days: f64,
    /// `cohort.timezone`.
    pub timezone: Tz,
    /// `verbose`.
    pub verbose: bool,
    /// `debug`.
    pub debug: bool,
}

const PREFIX: &str = "EventualConsistencyPlugin:";

fn cfg_err(msg: impl AsRef<str>) -> Error {
    Error::new(
        ErrorCode::InvalidConfig,
        format!("{PREFIX} {}", msg.as_ref()),
    )
}

/// Looks up a nested option `section.key`, then the flat name.
fn pick<'a>(
    o: &'a Map<String, Value>,
    section: &str,
    key: &str,
    flat: &[&str],
) -> Option<&'a Value> {
    o.get(section)
        .and_then(Value::as_object)
        .and_then(|s| s.get(key))
        .filter(|v| !v.is_null())
        .or_else(|| flat.iter().find_map(|f| o.get(*f).filter(|v| !v.is_null())))
}

fn number(v: Option<&Value>, name: &str, default: f64, min: f64, allow_equal: bool) -> Result<f64> {
    let Some(v) = v else { return Ok(default) };
    let n = v
        .as_f64()
        .ok_or_else(|| cfg_err(format!("{name} must be a number (got {v})")))?;
    if !n.is_finite() || n < min || (!allow_equal && n == min) {
        let bound = if allow_equal {
            "at least"
        } else {
            "greater than"
        };
        return Err(cfg_err(format!("{name} must be {bound} {min} (got {n})")));
    }
    Ok(n)
}

fn boolean(v: Option<&Value>, name: &str, default: bool) -> Result<bool> {
    match v {
        None => Ok(default),
        Some(Value::Bool(b)) => Ok(*b),
        Some(other) => Err(cfg_err(format!(
            "{name} must be true or false (got {other})"
        ))),
    }
}

impl PluginConfig {
    /// Parses and validates the options object.
    pub fn parse(options: &Value) -> Result<PluginConfig> {
        let empty = Map::new();
        let o = match options {
            Value::Object(m) => m,
            Value::Null => &empty,
            other => return Err(cfg_err(format!("options must be an object (got {other})"))),
        };
        crate::option_names::check(o)?;
        let resources = parse_resources(o)?;
        // The plugin guide's singular form may carry its own `mode`.
        let singular_mode = o
            .get("resources")
            .and_then(Value::as_object)
            .filter(|r| r.contains_key("resource"))
            .and_then(|r| r.get("mode"))
            .filter(|v| !v.is_null());
        let mode = match pick(o, "consolidation", "mode", &["mode"]).or(singular_mode) {
            None => Mode::Async,
            Some(Value::String(s)) if s == "sync" => Mode::Sync,
            Some(Value::String(s)) if s == "async" => Mode::Async,
            Some(v) => {
                return Err(cfg_err(format!(
                    "consolidation.mode must be 'sync' or 'async' (got {v})"
                )));
            }
        };
        let auto = boolean(
            pick(o, "consolidation", "auto", &["autoConsolidate"]),
            "consolidation.auto",
            true,
        )?;
        let interval_s = number(
            pick(o, "consolidation", "interval", &["consolidationInterval"]),
            "consolidation.interval",
            300.0,
            0.0,
            false,
        )?;
        let window_h = number(
            pick(o, "consolidation", "window", &["consolidationWindow"]),
            "consolidation.window",
            24.0,
            0.0,
            false,
        )?;
        let concurrency = number(
            pick(o, "consolidation", "concurrency", &[]),
            "consolidation.concurrency",
            5.0,
            1.0,
            true,
        )? as usize;
        let mark_applied_concurrency = number(
            pick(o, "consolidation", "markAppliedConcurrency", &[]),
            "consolidation.markAppliedConcurrency",
            50.0,
            1.0,
            true,
        )? as usize;
        let analytics_enabled = boolean(
            pick(o, "analytics", "enabled", &["enableAnalytics"]),
            "analytics.enabled",
            false,
        )?;
        let periods = match pick(o, "analytics", "periods", &[]) {
            None => vec![Period::Hour, Period::Day, Period::Month],
            Some(Value::Array(items)) if !items.is_empty() => {
                let mut out = Vec::new();
                for item in items {
                    let p = item.as_str().and_then(Period::parse).ok_or_else(|| {
                        cfg_err(format!(
                            "analytics.periods: unknown period {item} (use 'hour', 'day', 'week', 'month')"
                        ))
                    })?;
                    if !out.contains(&p) {
                        out.push(p);
                    }
                }
                out.sort();
                out
            }
            Some(v) => {
                return Err(cfg_err(format!(
                    "analytics.periods must be a non-empty array of 'hour', 'day', 'week', 'month' (got {v})"
                )));
            }
        };
        let metrics = match pick(o, "analytics", "metrics", &[]) {
            None => ["count", "sum", "avg", "min", "max"]
                .map(String::from)
                .to_vec(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item.as_str() {
                        Some(m @ ("count" | "sum" | "avg" | "min" | "max")) => {
                            out.push(m.to_string())
                        }
                        _ => {
                            return Err(cfg_err(format!(
                                "analytics.metrics: unknown metric {item} (use 'count', 'sum', 'avg', 'min', 'max')"
                            )));
                        }
                    }
                }
                out
            }
            Some(v) => {
                return Err(cfg_err(format!(
                    "analytics.metrics must be an array (got {v})"
                )));
            }
        };
        let lock_timeout_s = number(
            pick(o, "locks", "timeout", &[]),
            "locks.timeout",
            300.0,
            0.0,
            false,
        )?;
        let gc_enabled = boolean(
            pick(o, "garbageCollection", "enabled", &[]),
            "garbageCollection.enabled",
            true,
        )?;
        let gc_interval_s = number(
            pick(o, "garbageCollection", "interval", &["gcInterval"]),
            "garbageCollection.interval",
            86400.0,
            0.0,
            false,
        )?;
        let gc_retention_days = number(
            pick(
                o,
                "garbageCollection",
                "retention",
                &["transactionRetention"],
            ),
            "garbageCollection.retention",
            30.0,
            0.0,
            true,
        )?;
        let checkpoints_enabled = boolean(
            pick(o, "checkpoints", "enabled", &[]),
            "checkpoints.enabled",
            true,
        )?;
        let checkpoints_hourly = match pick(o, "checkpoints", "strategy", &[]) {
            None => true,
            Some(Value::String(s)) if s == "hourly" => true,
            Some(Value::String(s)) if s == "daily" => false,
            Some(v) => {
                return Err(cfg_err(format!(
                    "checkpoints.strategy must be 'hourly' or 'daily' (got {v})"
                )));
            }
        };
        let checkpoints_retention_days = number(
            pick(o, "checkpoints", "retention", &[]),
            "checkpoints.retention",
            90.0,
            0.0,
            true,
        )?;
        let timezone = match pick(o, "cohort", "timezone", &[]) {
            None => Tz::UTC,
            Some(Value::String(s)) => parse_zone(s).map_err(|e| cfg_err(e.message()))?,
            Some(v) => {
                return Err(cfg_err(format!(
                    "cohort.timezone must be a string (got {v})"
                )));
            }
        };
        let verbose = boolean(o.get("verbose").filter(|v| !v.is_null()), "verbose", true)?;
        let debug = boolean(o.get("debug").filter(|v| !v.is_null()), "debug", false)?;
        if let Some(level) = o.get("logLevel").filter(|v| !v.is_null()) {
            match level.as_str() {
                Some("trace" | "debug" | "info" | "warn" | "error" | "fatal" | "silent") => {}
                _ => {
                    return Err(cfg_err(format!(
                        "logLevel must be one of trace, debug, info, warn, error, fatal, silent (got {level})"
                    )));
                }
            }
        }
        Ok(PluginConfig {
            resources,
            mode,
            auto,
            interval_s,
            window_h,
            concurrency,
            mark_applied_concurrency,
            analytics_enabled,
            periods,
            metrics,
            lock_timeout_s,
            gc_enabled,
            gc_interval_s,
            gc_retention_days,
            checkpoints_enabled,
            checkpoints_hourly,
            checkpoints_retention_days,
            timezone,
            verbose,
            debug,
        })
    }

    /// The configuration of `resource`, if configured.
    pub fn resource(&self, resource: &str) -> Option<&ResourceConfig> {
        self.resources.iter().find(|r| r.resource == resource)
    }

    /// Every configured (resource, field), in configuration order.
    pub fn fields(&self) -> Vec<(String, FieldConfig)> {
        self.resources
            .iter()
            .flat_map(|r| r.fields.iter().map(|f| (r.resource.clone(), f.clone())))
            .collect()
    }

    /// The normalized configuration in the documentation's nested form (`plugin.config`).
    pub fn to_json(&self) -> Value {
        let resources: Map<String, Value> = self
            .resources
            .iter()
            .map(|r| {
                let fields = r
                    .fields
                    .iter()
                    .map(|f| {
                        json!({
                            "field": f.field,
                            "fieldPath": f.field_path,
                            "initialValue": crate::amount::decimal_to_json(f.initial_value),
                            "reducer": f.reducer.is_some(),
                        })
                    })
                    .collect::<Vec<_>>();
                (r.resource.clone(), Value::Array(fields))
            })
            .collect();
        json!({
            "resources": resources,
            "consolidation": {
                "mode": self.mode.as_str(),
                "auto": self.auto,
                "interval": self.interval_s,
                "window": self.window_h,
                "concurrency": self.concurrency,
                "markAppliedConcurrency": self.mark_applied_concurrency,
            },
            "analytics": {
                "enabled": self.analytics_enabled,
                "periods": self.periods.iter().map(|p| p.as_str()).collect::<Vec<_>>(),
                "metrics": self.metrics,
            },
            "locks": { "timeout": self.lock_timeout_s },
            "garbageCollection": {
                "enabled": self.gc_enabled,
                "interval": self.gc_interval_s,
                "retention": self.gc_retention_days,
            },
            "checkpoints": {
                "enabled": self.checkpoints_enabled,
                "strategy": if self.checkpoints_hourly { "hourly" } else { "daily" },
                "retention": self.checkpoints_retention_days,
            },
            "cohort": { "timezone": self.timezone.name() },
            "verbose": self.verbose,
            "debug": self.debug,
        })
    }
}
