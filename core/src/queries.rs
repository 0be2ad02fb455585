//! The analytics query functions of SPEC §6 on the plugin (`getAnalytics`, `getDayByHour`, …,
//! `getTopRecords`, `getRawEvents`, `fillGaps`) with their JS argument forms.
//!
//! Today points are computed at query time from the field's stored transactions (applied
//! ones from the journals GC keeps, plus pending ones with `includePending`). Materialized
//! rollups that make every query a constant number of reads are the next step of the
//! analytics issue; the answers do not change when they land.

use crate::amount::{Arg, truncate};
use crate::analytics::calendar::{
    breakdown, cohort_label, last_n, parse_day, parse_hour, parse_month, parse_week, parse_year,
    range,
};
use crate::analytics::points::{Fact, PointSet, aggregate, fill_gaps, top_records};
use crate::cohort::parse_timestamp;
use crate::config::Period;
use crate::engine::Engine;
use crate::error::{Error, ErrorCode, Result};
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
fn bound(period: Period, s: &str, engine: &Engine) -> Result<String> {
    if s.len() > 13 && s.contains(':') {
        let ms = parse_timestamp(s).ok_or_else(|| {
            Error::new(
                ErrorCode::InvalidDate,
                format!("invalid timestamp \"{}\"", truncate(s, 40)),
            )
        })?;
        return Ok(cohort_label(ms, period, engine.zone()));
    }
    if s.len() == 10 && period != Period::Hour && period != Period::Day {
        let d = parse_day(s)?;
        return Ok(match period {
            Period::Week => crate::analytics::calendar::week_label(d),
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

impl Engine {
    fn require_analytics(&self, resource: &str, field: &str) -> Result<()> {
        self.field_config(resource, field)?;
        if !self.config().analytics_enabled {
            return Err(Error::new(
                ErrorCode::AnalyticsDisabled,
                format!("analytics are not enabled for {resource}.{field} (set analytics.enabled)"),
            ));
        }
        Ok(())
    }

    async fn facts(
        &self,
        resource: &str,
        field: &str,
        pending: bool,
        record: Option<&str>,
    ) -> Result<Vec<Fact>> {
        let all = self.field_transactions(resource, field).await?;
        let txs = all
            .applied
            .iter()
            .chain(all.pending.iter().filter(|_| pending));
        Ok(txs
            .filter(|t| record.is_none_or(|r| t.original_id == r))
            .map(Fact::from)
            .collect())
    }

    async fn points(
        &self,
        resource: &str,
        field: &str,
        period: Period,
        cohorts: Option<Vec<String>>,
        o: &Map<String, Value>,
    ) -> Result<Value> {
        let facts = self
            .facts(
                resource,
                field,
                flag(o, "includePending"),
                str_opt(o, "recordId"),
            )
            .await?;
        let pts: PointSet = aggregate(&facts, period, self.zone());
        let cohorts = cohorts.unwrap_or_else(|| pts.keys().cloned().collect());
        let mut out = fill_gaps(&pts, &cohorts, flag(o, "fillGaps"), &self.config().metrics);
        if str_opt(o, "breakdown") == Some("operations") {
            for p in &mut out {
                if let Some(m) = p.as_object_mut()
                    && let Some(Value::Object(ops)) = m.remove("operations")
                {
                    m.extend(ops);
                }
            }
        }
        Ok(Value::Array(out))
    }

    /// `getAnalytics(r, f, { period, date, startDate, endDate, month, year, recordId, breakdown })`.
    async fn get_analytics(&self, r: &str, f: &str, o: &Map<String, Value>) -> Result<Value> {
        let period = period_of(o.get("period"), Period::Day)?;
        let unit = |k: &str| o.get(k).filter(|v| !v.is_null());
        let cohorts = if let Some(d) = unit("date") {
            Some(breakdown(
                &text(&Arg::from_json(d), "date")?,
                period,
                self.zone(),
            )?)
        } else if let (Some(a), Some(b)) = (unit("startDate"), unit("endDate")) {
            let a = bound(period, &text(&Arg::from_json(a), "startDate")?, self)?;
            let b = bound(period, &text(&Arg::from_json(b), "endDate")?, self)?;
            Some(range(period, &a, &b, self.zone())?)
        } else if let Some(m) = unit("month") {
            let m = text(&Arg::from_json(m), "month")?;
            parse_month(&m)?;
            Some(breakdown(&m, period, self.zone())?)
        } else if let Some(y) = unit("year") {
            let y = text(&Arg::from_json(y), "year")?;
            parse_year(&y)?;
            Some(breakdown(&y, period, self.zone())?)
        } else {
            None
        };
        self.points(r, f, period, cohorts, o).await
    }

    /// Runs an analytics query function of the plugin with raw JS arguments (after the
    /// resource and field).
    pub async fn query(
        &self,
        function: &str,
        resource: &str,
        field: &str,
        args: &[Arg],
    ) -> Result<Value> {
        let by = |unit_what: &'static str, period: Period| async move {
            self.require_analytics(resource, field)?;
            let unit = text(arg(args, 0), unit_what)?;
            let o = options(arg(args, 1), function)?;
            let cohorts = breakdown(&unit, period, self.zone())?;
            self.points(resource, field, period, Some(cohorts), &o)
                .await
        };
        let last = |period: Period, default: usize| async move {
            self.require_analytics(resource, field)?;
            let n = count_arg(arg(args, 0), default, function)?;
            let o = options(arg(args, 1), function)?;
            let cohorts = last_n(period, n, self.now_ms(), self.zone());
            self.points(resource, field, period, Some(cohorts), &o)
                .await
        };
        match function {
            "getAnalytics" => {
                self.require_analytics(resource, field)?;
                self.get_analytics(resource, field, &options(arg(args, 0), function)?)
                    .await
            }
            "getDayByHour" => by("date", Period::Hour).await,
            "getWeekByDay" => by("week", Period::Day).await,
            "getWeekByHour" => by("week", Period::Hour).await,
            "getMonthByDay" => by("month", Period::Day).await,
            "getMonthByHour" => by("month", Period::Hour).await,
            "getMonthByWeek" => by("month", Period::Week).await,
            "getYearByDay" => by("year", Period::Day).await,
            "getYearByWeek" => by("year", Period::Week).await,
            "getYearByMonth" => by("year", Period::Month).await,
            "getLastNHours" => last(Period::Hour, 24).await,
            "getLastNDays" => last(Period::Day, 7).await,
            "getLastNWeeks" => last(Period::Week, 4).await,
            "getLastNMonths" => last(Period::Month, 12).await,
            "getLastNPeriods" => {
                self.require_analytics(resource, field)?;
                let period = period_of(
                    Some(&Value::String(text(arg(args, 0), "period")?)),
                    Period::Day,
                )?;
                let n = count_arg(arg(args, 1), 1, function)?;
                let o = options(arg(args, 2), function)?;
                let cohorts = last_n(period, n, self.now_ms(), self.zone());
                self.points(resource, field, period, Some(cohorts), &o)
                    .await
            }
            "getAnalyticsByTimeRange" => {
                self.require_analytics(resource, field)?;
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
                    &bound(period, a, self)?,
                    &bound(period, b, self)?,
                    self.zone(),
                )?;
                self.points(resource, field, period, Some(cohorts), &o)
                    .await
            }
            "getTopRecords" => {
                self.field_config(resource, field)?;
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
                    Some(c) => Some(breakdown(c, period, self.zone())?),
                    None => None,
                };
                let facts = self.facts(resource, field, true, None).await?;
                let zone = self.zone();
                let chosen = facts.iter().filter(|f| {
                    wanted
                        .as_ref()
                        .is_none_or(|w| w.contains(&cohort_label(f.timestamp_ms, period, zone)))
                });
                Ok(Value::Array(top_records(chosen, metric, limit)))
            }
            "getRawEvents" => {
                self.field_config(resource, field)?;
                self.raw_events(resource, field, &options(arg(args, 0), function)?)
                    .await
            }
            other => Err(Error::invalid_argument(format!(
                "unknown analytics function \"{}\"",
                truncate(other, 40)
            ))),
        }
    }

    async fn raw_events(
        &self,
        resource: &str,
        field: &str,
        o: &Map<String, Value>,
    ) -> Result<Value> {
        let all = self.field_transactions(resource, field).await?;
        let zone = self.zone();
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
