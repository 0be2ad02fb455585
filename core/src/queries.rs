//! The analytics query functions of SPEC §6 on the plugin (`getAnalytics`, `getDayByHour`, …,
//! `getTopRecords`, `getRawEvents`, `fillGaps`) with their JS argument forms.
//!
//! A query is planned first ([`QueryPlan::parse`]: arguments, ranges and cohorts, pure), then run
//! over the transactions it needs ([`QueryPlan::execute`], pure). The plugin feeds it the field's
//! stored transactions (applied ones from the journals GC keeps, plus pending ones with
//! `includePending`); the WASM package feeds it transactions a page holds, so both give the
//! same answers by construction.

use crate::amount::{Arg, truncate};
use crate::analytics::Columns;
use crate::analytics::materialized::add_pending;
use crate::analytics::points::{
    Fact, PointSet, aggregate, fill_gaps, rank_records, tally_facts, top_records,
};
use crate::analytics_view::{AnalyticsView, top_cover};
use crate::calendar::Period;
use crate::calendar::parse_timestamp;
use crate::calendar::{
    breakdown, cohort_label, last_n, parse_day, parse_hour, parse_month, parse_week, parse_year,
    range,
};
use crate::config::PluginConfig;
use crate::error::{Error, ErrorCode, Result};
use crate::history::History;
use crate::ports::Ports;
use crate::resolve::field_config;
use chrono_tz::Tz;
use serde_json::{Map, Value};

fn arg(args: &[Arg], i: usize) -> &Arg {
    args.get(i).unwrap_or(&Arg::Undefined)
}

fn options(a: &Arg, what: &str) -> Result<Map<String, Value>> {
    match a {
        Arg::Undefined | Arg::Null => Ok(Map::new()),
        Arg::Json(Value::Object(m)) => Ok(m.clone()),
        other => Err(Error::invalid_argument(format!(
            "{what}: options must be an object (got {})",
            other.type_name()
        ))),
    }
}

fn text(a: &Arg, what: &str) -> Result<String> {
    match a {
        Arg::String(s) => Ok(s.clone()),
        Arg::Number(n) if n.fract() == 0.0 && n.is_finite() => Ok(format!("{n}")),
        other => Err(Error::new(
            ErrorCode::InvalidArgument,
            format!("{what} must be a string (got {})", other.type_name()),
        )),
    }
}

fn count_arg(a: &Arg, default: usize, what: &str) -> Result<usize> {
    match a {
        Arg::Undefined | Arg::Null => Ok(default),
        Arg::Number(n) if n.fract() == 0.0 && *n >= 1.0 && *n <= 100_000.0 => Ok(*n as usize),
        other => Err(Error::invalid_argument(format!(
            "{what}: n must be a positive integer (got {})",
            match other {
                Arg::Number(n) => n.to_string(),
                o => o.type_name().to_string(),
            }
        ))),
    }
}

fn period_of(v: Option<&Value>, default: Period) -> Result<Period> {
    match v {
        None | Some(Value::Null) => Ok(default),
        Some(Value::String(s)) => Period::parse(s).ok_or_else(|| {
            Error::invalid_argument(format!(
                "period must be one of hour, day, week, month (got \"{}\")",
                truncate(s, 20)
            ))
        }),
        Some(other) => Err(Error::invalid_argument(format!(
            "period must be a string (got {other})"
        ))),
    }
}

fn flag(o: &Map<String, Value>, k: &str) -> bool {
    o.get(k).and_then(Value::as_bool).unwrap_or(false)
}

fn str_opt<'a>(o: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    o.get(k).and_then(Value::as_str)
}

/// Converts a range bound (a label, a day, or an ISO timestamp) into a label of `period`.
fn bound(period: Period, s: &str, zone: Tz) -> Result<String> {
    if s.len() > 13 && s.contains(':') {
        let ms = parse_timestamp(s).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidDate,
                format!("invalid timestamp \"{}\"", truncate(s, 40)),
            )
        })?;
        return Ok(cohort_label(ms, period, zone));
    }
    if s.len() == 10 && period != Period::Hour && period != Period::Day {
        let d = parse_day(s)?;
        return Ok(match period {
            Period::Week => crate::calendar::week_label(d),
            _ => s[..7].to_string(),
        });
    }
    match period {
        Period::Hour if s.contains('T') => parse_hour(s).map(|_| s.to_string()),
        Period::Hour | Period::Day => parse_day(s).map(|_| s.to_string()),
        Period::Week => parse_week(s).map(|_| s.to_string()),
        Period::Month => parse_month(s).map(|_| s.to_string()),
    }
}

/// What a query needs besides its arguments.
#[derive(Debug, Clone)]
pub struct QueryEnv {
    /// The zone cohorts are labelled in.
    pub zone: Tz,
    /// "Now" for the last-N queries (epoch ms).
    pub now_ms: i64,
    /// The metrics points report (`analytics.metrics`).
    pub metrics: Vec<String>,
}

/// A planned query: what to compute, over which cohorts.
#[derive(Debug, Clone)]
pub enum QueryPlan {
    /// Chart points of `period`: for exactly `cohorts` when given (in order), else for every
    /// cohort with data.
    Points {
        /// The period of the points.
        period: Period,
        /// The cohorts asked for.
        cohorts: Option<Vec<String>>,
        /// The options (`fillGaps`, `includePending`, `recordId`, `breakdown`).
        options: Map<String, Value>,
    },
    /// The records with the most transactions or the largest total.
    Top {
        /// The period `wanted` is in.
        period: Period,
        /// The cohort asked for (`date` or `cohort`), when given.
        date: Option<String>,
        /// Only transactions of these cohorts, when given.
        wanted: Option<Vec<String>>,
        /// `transactionCount` or `totalValue`.
        metric: String,
        /// How many records.
        limit: usize,
    },
    /// Raw transactions (`getRawEvents`) with their filter options.
    Raw(Map<String, Value>),
}

/// Every query function of SPEC §6 this module plans, in the documentation's order.
pub const FUNCTIONS: &[&str] = &[
    "getAnalytics",
    "getDayByHour",
    "getWeekByDay",
    "getWeekByHour",
    "getMonthByDay",
    "getMonthByHour",
    "getMonthByWeek",
    "getYearByDay",
    "getYearByWeek",
    "getYearByMonth",
    "getLastNHours",
    "getLastNDays",
    "getLastNWeeks",
    "getLastNMonths",
    "getLastNPeriods",
    "getAnalyticsByTimeRange",
    "getTopRecords",
    "getRawEvents",
];

/// Whether a query function reads analytics (and so needs `analytics.enabled`).
pub fn needs_analytics(function: &str) -> bool {
    !matches!(function, "getTopRecords" | "getRawEvents")
}

impl QueryPlan {
    /// Plans a query function of SPEC §6 from its JS arguments (those after resource and
    /// field). Bad arguments and impossible dates are errors with codes.
    pub fn parse(function: &str, args: &[Arg], env: &QueryEnv) -> Result<QueryPlan> {
        let zone = env.zone;
        let points = |period, cohorts, options| QueryPlan::Points {
            period,
            cohorts,
            options,
        };
        let by = |unit_what: &str, period: Period| -> Result<QueryPlan> {
            let unit = text(arg(args, 0), unit_what)?;
            let o = options(arg(args, 1), function)?;
            Ok(points(period, Some(breakdown(&unit, period, zone)?), o))
        };
        let last = |period: Period, default: usize| -> Result<QueryPlan> {
            let n = count_arg(arg(args, 0), default, function)?;
            let o = options(arg(args, 1), function)?;
            Ok(points(period, Some(last_n(period, n, env.now_ms, zone)), o))
        };
        match function {
            "getAnalytics" => QueryPlan::analytics(options(arg(args, 0), function)?, zone),
            "getDayByHour" => by("date", Period::Hour),
            "getWeekByDay" => by("week", Period::Day),
            "getWeekByHour" => by("week", Period::Hour),
            "getMonthByDay" => by("month", Period::Day),
            "getMonthByHour" => by("month", Period::Hour),
            "getMonthByWeek" => by("month", Period::Week),
            "getYearByDay" => by("year", Period::Day),
            "getYearByWeek" => by("year", Period::Week),
            "getYearByMonth" => by("year", Period::Month),
            "getLastNHours" => last(Period::Hour, 24),
            "getLastNDays" => last(Period::Day, 7),
            "getLastNWeeks" => last(Period::Week, 4),
            "getLastNMonths" => last(Period::Month, 12),
            "getLastNPeriods" => {
                let period = period_of(
                    Some(&Value::String(text(arg(args, 0), "period")?)),
                    Period::Day,
                )?;
                let n = count_arg(arg(args, 1), 1, function)?;
                let o = options(arg(args, 2), function)?;
                Ok(points(period, Some(last_n(period, n, env.now_ms, zone)), o))
            }
            "getAnalyticsByTimeRange" => {
                let period = period_of(
                    Some(&Value::String(text(arg(args, 0), "period")?)),
                    Period::Day,
                )?;
                let mut o = options(arg(args, 1), function)?;
                o.extend(options(arg(args, 2), function)?);
                let (Some(a), Some(b)) = (str_opt(&o, "start"), str_opt(&o, "end")) else {
                    return Err(Error::invalid_argument(
                        "getAnalyticsByTimeRange needs { start, end } (YYYY-MM-DD or ISO timestamps)",
                    ));
                };
                let cohorts = range(
                    period,
                    &bound(period, a, zone)?,
                    &bound(period, b, zone)?,
                    zone,
                )?;
                Ok(points(period, Some(cohorts), o))
            }
            "getTopRecords" => {
                let o = options(arg(args, 0), function)?;
                let period = period_of(o.get("period"), Period::Day)?;
                let cohort = str_opt(&o, "date").or(str_opt(&o, "cohort"));
                let metric = str_opt(&o, "sortBy")
                    .or(str_opt(&o, "metric"))
                    .unwrap_or("transactionCount");
                if metric != "transactionCount" && metric != "totalValue" {
                    return Err(Error::invalid_argument(format!(
                        "getTopRecords: sortBy/metric must be 'transactionCount' or 'totalValue' (got \"{}\")",
                        truncate(metric, 30)
                    )));
                }
                let limit = match o.get("limit") {
                    None | Some(Value::Null) => 10,
                    Some(v) => count_arg(&Arg::from_json(v), 10, function)?,
                };
                let wanted = match cohort {
                    Some(c) => Some(breakdown(c, period, zone)?),
                    None => None,
                };
                Ok(QueryPlan::Top {
                    period,
                    date: cohort.map(str::to_string),
                    wanted,
                    metric: metric.to_string(),
                    limit,
                })
            }
            "getRawEvents" => Ok(QueryPlan::Raw(options(arg(args, 0), function)?)),
            other => Err(Error::invalid_argument(format!(
                "unknown analytics function \"{}\"",
                truncate(other, 40)
            ))),
        }
    }

    /// `getAnalytics(r, f, { period, date, startDate, endDate, month, year, recordId, breakdown })`.
    fn analytics(o: Map<String, Value>, zone: Tz) -> Result<QueryPlan> {
        let period = period_of(o.get("period"), Period::Day)?;
        let unit = |k: &str| o.get(k).filter(|v| !v.is_null());
        let cohorts = if let Some(d) = unit("date") {
            Some(breakdown(&text(&Arg::from_json(d), "date")?, period, zone)?)
        } else if let (Some(a), Some(b)) = (unit("startDate"), unit("endDate")) {
            let a = bound(period, &text(&Arg::from_json(a), "startDate")?, zone)?;
            let b = bound(period, &text(&Arg::from_json(b), "endDate")?, zone)?;
            Some(range(period, &a, &b, zone)?)
        } else if let Some(m) = unit("month") {
            let m = text(&Arg::from_json(m), "month")?;
            parse_month(&m)?;
            Some(breakdown(&m, period, zone)?)
        } else if let Some(y) = unit("year") {
            let y = text(&Arg::from_json(y), "year")?;
            parse_year(&y)?;
            Some(breakdown(&y, period, zone)?)
        } else {
            None
        };
        Ok(QueryPlan::Points {
            period,
            cohorts,
            options: o,
        })
    }

    /// Whether pending transactions count (`includePending`; top records always count them).
    pub fn include_pending(&self) -> bool {
        match self {
            QueryPlan::Points { options, .. } => flag(options, "includePending"),
            QueryPlan::Top { .. } => true,
            QueryPlan::Raw(_) => true,
        }
    }

    /// Whether a transaction at `ms` is in the cohorts a top-records plan asks for (every
    /// transaction for other plans).
    pub fn wants(&self, ms: i64, zone: Tz) -> bool {
        match self {
            QueryPlan::Top {
                period,
                wanted: Some(w),
                ..
            } => w.contains(&cohort_label(ms, *period, zone)),
            _ => true,
        }
    }

    /// The one record asked for (`recordId`), if any.
    pub fn record(&self) -> Option<&str> {
        match self {
            QueryPlan::Points { options, .. } | QueryPlan::Raw(options) => {
                str_opt(options, "recordId")
            }
            QueryPlan::Top { .. } => None,
        }
    }

    /// The JSON answer of a points plan from the points of its period: the cohorts asked for
    /// (or every cohort with data), gaps filled on request, operations broken out on request.
    pub fn render_points(&self, pts: PointSet, env: &QueryEnv) -> Value {
        let QueryPlan::Points {
            cohorts, options, ..
        } = self
        else {
            return Value::Array(Vec::new());
        };
        let cohorts = cohorts
            .clone()
            .unwrap_or_else(|| pts.keys().cloned().collect());
        let mut out = fill_gaps(&pts, &cohorts, flag(options, "fillGaps"), &env.metrics);
        if str_opt(options, "breakdown") == Some("operations") {
            for p in &mut out {
                if let Some(m) = p.as_object_mut()
                    && let Some(Value::Object(ops)) = m.remove("operations")
                {
                    m.extend(ops);
                }
            }
        }
        Value::Array(out)
    }

    /// Runs a points plan over transactions laid out as [`Columns`] (already filtered as for
    /// [`QueryPlan::execute`]); `None` for other plans.
    pub fn execute_columns(&self, columns: &Columns, env: &QueryEnv) -> Option<Value> {
        match self {
            QueryPlan::Points { period, .. } => {
                Some(self.render_points(columns.aggregate(*period, env.zone), env))
            }
            _ => None,
        }
    }

    /// Runs a points or top-records plan over the transactions it asked for (already filtered
    /// by [`QueryPlan::include_pending`] and [`QueryPlan::record`]). A raw-events plan gives `[]`: those
    /// are read from storage by the plugin.
    pub fn execute<'a>(&self, facts: impl IntoIterator<Item = &'a Fact>, env: &QueryEnv) -> Value {
        match self {
            QueryPlan::Points { period, .. } => {
                self.render_points(aggregate(facts, *period, env.zone), env)
            }
            QueryPlan::Top { metric, limit, .. } => {
                let chosen = facts
                    .into_iter()
                    .filter(|f| self.wants(f.timestamp_ms, env.zone));
                Value::Array(top_records(chosen, metric, *limit))
            }
            QueryPlan::Raw(_) => Value::Array(Vec::new()),
        }
    }
}

/// Runs the analytics query functions over a field's stored transactions.
#[derive(Clone, Copy)]
pub(crate) struct Queries<'a> {
    /// The engine's store, layout, records and clock.
    pub(crate) ports: &'a Ports,
    /// The plugin configuration.
    pub(crate) config: &'a PluginConfig,
    /// Reads and replays a field's history.
    pub(crate) history: History<'a>,
    /// Reads materialized analytics.
    pub(crate) view: AnalyticsView<'a>,
}

impl<'a> Queries<'a> {
    async fn facts(
        &self,
        resource: &str,
        field: &str,
        pending: bool,
        record: Option<&str>,
    ) -> Result<Vec<Fact>> {
        let all = self
            .history
            .field_transactions(resource, field, record)
            .await?;
        let txs = all
            .applied
            .iter()
            .chain(all.pending.iter().filter(|_| pending));
        Ok(txs
            .filter(|t| record.is_none_or(|r| t.original_id == r))
            .map(Fact::from)
            .collect())
    }

    /// The environment queries of this engine run in: its zone, clock and metrics.
    pub(crate) fn query_env(&self) -> QueryEnv {
        QueryEnv {
            zone: self.config.timezone,
            now_ms: self.ports.now_ms(),
            metrics: self.config.metrics.clone(),
        }
    }

    /// Runs an analytics query function of the plugin with raw JS arguments (after the
    /// resource and field).
    pub(crate) async fn query(
        &self,
        function: &str,
        resource: &str,
        field: &str,
        args: &[Arg],
    ) -> Result<Value> {
        field_config(self.config, resource, field)?;
        if needs_analytics(function) && !self.config.analytics_enabled {
            return Err(Error::new(
                ErrorCode::AnalyticsDisabled,
                format!("analytics are not enabled for {resource}.{field} (set analytics.enabled)"),
            ));
        }
        let env = self.query_env();
        let plan = QueryPlan::parse(function, args, &env)?;
        if let QueryPlan::Raw(o) = &plan {
            return self.raw_events(resource, field, o).await;
        }
        if let QueryPlan::Points {
            period, cohorts, ..
        } = &plan
            && plan.record().is_none()
        {
            // Materialized: the packed objects holding the cohorts, plus pending transactions
            // on request.
            let pts = if plan.include_pending() {
                let (mut pts, pending, seen) = self
                    .view
                    .points_with_pending(resource, field, *period, cohorts.as_deref())
                    .await?;
                add_pending(&mut pts, &pending, &seen, *period, env.zone);
                pts
            } else {
                self.view
                    .materialized_points(resource, field, false, *period, cohorts.as_deref())
                    .await?
                    .1
            };
            return Ok(plan.render_points(pts, &env));
        }
        if let QueryPlan::Top {
            period,
            date,
            wanted,
            metric,
            limit,
        } = &plan
            && self.config.analytics_enabled
        {
            // Materialized: the cohorts' top objects, plus the pending transactions in them.
            let cover = top_cover(*period, date.as_deref(), wanted.as_deref());
            if let Some((mut by, pending)) = self
                .view
                .top_with_pending(resource, field, cover.as_deref())
                .await?
            {
                tally_facts(
                    &mut by,
                    pending
                        .iter()
                        .filter(|f| plan.wants(f.timestamp_ms, env.zone)),
                );
                return Ok(Value::Array(rank_records(by, metric, *limit)));
            }
        }
        let facts = self
            .facts(resource, field, plan.include_pending(), plan.record())
            .await?;
        Ok(plan.execute(&facts, &env))
    }

    async fn raw_events(
        &self,
        resource: &str,
        field: &str,
        o: &Map<String, Value>,
    ) -> Result<Value> {
        let all = self
            .history
            .field_transactions(resource, field, str_opt(o, "recordId"))
            .await?;
        let zone = self.config.timezone;
        let applied = o.get("applied").and_then(Value::as_bool);
        let mut rows: Vec<(i64, String, Value)> = all
            .applied
            .iter()
            .map(|t| (t, true))
            .chain(all.pending.iter().map(|t| (t, false)))
            .filter(|(_, a)| applied.is_none_or(|want| want == *a))
            .filter(|(t, _)| str_opt(o, "recordId").is_none_or(|r| t.original_id == r))
            .filter(|(t, _)| str_opt(o, "operation").is_none_or(|op| t.operation.as_str() == op))
            .map(|(t, a)| (t.timestamp_ms, t.id.clone(), t.to_json(zone, a)))
            .filter(|(_, _, j)| {
                let key = |s: &str| {
                    if s.len() > 10 {
                        "cohortHour"
                    } else {
                        "cohortDate"
                    }
                };
                let at = |s: &str| j[key(s)].as_str().unwrap_or("").to_string();
                str_opt(o, "startDate").is_none_or(|s| at(s).as_str() >= s)
                    && str_opt(o, "endDate").is_none_or(|e| at(e).as_str() <= e)
            })
            .collect();
        rows.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
        let limit = match o.get("limit") {
            None | Some(Value::Null) => usize::MAX,
            Some(v) => count_arg(&Arg::from_json(v), usize::MAX, "getRawEvents")?,
        };
        Ok(Value::Array(
            rows.into_iter().take(limit).map(|r| r.2).collect(),
        ))
    }
}

/// `fillGaps(data, period, start, end)`: every cohort of the range, taking the point of `data`
/// with that cohort or a zero point (`operations: {}`) with the metrics listed.
pub fn fill_gaps_json(
    data: &Value,
    period: &str,
    start: &str,
    end: &str,
    zone: chrono_tz::Tz,
    metrics: &[String],
) -> Result<Value> {
    let period = period_of(Some(&Value::String(period.to_string())), Period::Day)?;
    let Value::Array(points) = data else {
        return Err(Error::invalid_argument(
            "fillGaps: data must be an array of points",
        ));
    };
    let by: std::collections::HashMap<&str, &Value> = points
        .iter()
        .filter_map(|p| p["cohort"].as_str().map(|c| (c, p)))
        .collect();
    let empty = crate::analytics::points::Point::default();
    Ok(Value::Array(
        range(period, start, end, zone)?
            .iter()
            .map(|c| match by.get(c.as_str()) {
                Some(p) => (*p).clone(),
                None => empty.to_json(c, metrics),
            })
            .collect(),
    ))
}
