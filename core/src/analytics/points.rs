//! Chart-ready points (SPEC §6): aggregation of transactions into cohorts, exact decimal
//! sums, distinct-record counts, gap filling, metric selection and top records.

use crate::amount::decimal_to_f64;
use crate::calendar::Label;
use crate::calendar::Period;
use crate::txn::Op;
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// One transaction as analytics sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Fact {
    /// The record (`originalId`), shared: the facts of one record hold one copy (a million
    /// small strings would make a WebAssembly heap grow, and a browser collect garbage, at
    /// every step).
    pub record_id: Arc<str>,
    /// Epoch milliseconds.
    pub timestamp_ms: i64,
    /// Operation.
    pub operation: Op,
    /// The amount as stored (unsigned for `sub`).
    pub value: Decimal,
}

impl Fact {
    /// Signed contribution: `sub` counts as `-value`, `add` and `set` as `+value`.
    pub fn signed(&self) -> Decimal {
        match self.operation {
            // Negating a decimal flips its sign; it cannot overflow.
            #[allow(clippy::arithmetic_side_effects)]
            Op::Sub => -self.value,
            _ => self.value,
        }
    }
}

impl Fact {
    /// Reads a transaction given as JSON (SPEC §4 shape, as `getRawEvents` returns or a page
    /// holds): `originalId` (or `recordId`), `timestamp` (ISO 8601 or epoch ms), `operation`
    /// (`add|sub|set`, default `add`) and `value` (number or decimal string). Returns the fact
    /// and whether it is applied (`applied` defaults to true).
    pub fn from_json(v: &Value) -> crate::error::Result<(Fact, bool)> {
        use crate::error::Error;
        let bad = |what: &str| {
            Error::invalid_argument(format!(
                "transaction {what} (got {})",
                crate::amount::truncate(&v.to_string(), 120)
            ))
        };
        let o = v.as_object().ok_or_else(|| bad("must be an object"))?;
        let record_id = match o.get("originalId").or_else(|| o.get("recordId")) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return Err(bad("needs originalId (the record id)")),
        };
        let timestamp_ms = match o.get("timestamp") {
            Some(Value::String(s)) => Fact::timestamp_of_text(s)?,
            Some(Value::Number(n)) => n
                .as_f64()
                .and_then(Fact::timestamp_of_number)
                .ok_or_else(|| bad("timestamp is out of range"))?,
            _ => return Err(bad("needs a timestamp")),
        };
        let operation = match o.get("operation") {
            None | Some(Value::Null) => Op::Add,
            Some(Value::String(s)) => {
                Op::parse(s).ok_or_else(|| bad("operation must be add, sub or set"))?
            }
            Some(_) => return Err(bad("operation must be add, sub or set")),
        };
        let value = match o.get("value") {
            Some(Value::Number(n)) => decimal_of(n).ok_or_else(|| bad("value is out of range"))?,
            Some(Value::String(s)) => {
                Fact::value_of_text(s).ok_or_else(|| bad("value must be a number"))?
            }
            _ => return Err(bad("needs a numeric value")),
        };
        let applied = o.get("applied").and_then(Value::as_bool).unwrap_or(true);
        Ok((
            Fact {
                record_id: record_id.into(),
                timestamp_ms,
                operation,
                value,
            },
            applied,
        ))
    }
}

impl Fact {
    /// A transaction timestamp given as text: RFC 3339 / ISO 8601 with an offset.
    pub fn timestamp_of_text(s: &str) -> crate::error::Result<i64> {
        crate::calendar::parse_timestamp(s).ok_or_else(|| {
            crate::error::Error::new(
                crate::error::ErrorCode::InvalidDate,
                format!(
                    "transaction timestamp \"{}\" is not ISO 8601",
                    crate::amount::truncate(s, 40)
                ),
            )
        })
    }

    /// A transaction timestamp given as epoch milliseconds (finite, within ±8.64e15, the
    /// range of a JS `Date`; fractions are dropped).
    pub fn timestamp_of_number(f: f64) -> Option<i64> {
        (f.is_finite() && f.abs() < 8.64e15).then_some(f as i64)
    }

    /// A transaction value given as a JS number, read as the JSON path reads it: integers
    /// exactly, others by their shortest printed form.
    pub fn value_of_number(f: f64) -> Option<Decimal> {
        if f.fract() == 0.0 && f.abs() < 9.007_199_254_740_992e15 {
            return Some(Decimal::from(f as i64));
        }
        // Few decimals (cents and the like), without printing: the shortest printed form is
        // the nearest decimal of the fewest digits that reads back as `f`. With |m| < 2^52,
        // `f * 10^s` is within 0.5 of the true product, so `round` finds that decimal, and
        // `m / 10^s` (both exact) rounds as reading it does.
        let mut p = 1.0f64;
        for s in 1..=9 {
            p *= 10.0;
            let m = (f * p).round();
            if m.abs() < 4.5e15 && m / p == f {
                return Decimal::try_new(m as i64, s).ok();
            }
        }
        serde_json::Number::from_f64(f).and_then(|n| decimal_of(&n))
    }

    /// A transaction value given as a decimal string.
    pub fn value_of_text(s: &str) -> Option<Decimal> {
        s.parse::<Decimal>().ok()
    }
}

impl From<&crate::txn::Transaction> for Fact {
    fn from(t: &crate::txn::Transaction) -> Fact {
        Fact {
            record_id: t.original_id.as_str().into(),
            timestamp_ms: t.timestamp_ms,
            operation: t.operation,
            value: t.value,
        }
    }
}

/// The aggregate of one cohort.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Point {
    /// Transactions.
    pub count: u64,
    /// Sum of signed values.
    pub sum: Decimal,
    /// Smallest signed value.
    pub min: Decimal,
    /// Largest signed value.
    pub max: Decimal,
    /// Distinct records, by id (points built with [`Point::add`], such as pending
    /// transactions added to materialized points).
    pub records: BTreeSet<Arc<str>>,
    /// Distinct records counted without their ids ([`aggregate`]'s points, and materialized
    /// points, whose records were counted once per cohort at consolidation).
    pub distinct: u64,
    /// Per operation: count and signed sum.
    pub operations: BTreeMap<&'static str, (u64, Decimal)>,
}

impl Point {
    /// Adds one transaction.
    pub fn add(&mut self, f: &Fact) {
        self.add_value(f);
        self.records.insert(f.record_id.clone());
    }

    /// Adds one transaction's value and operation, leaving the record counts alone.
    pub fn add_value(&mut self, f: &Fact) {
        let v = f.signed();
        if self.count == 0 {
            self.min = v;
            self.max = v;
        } else {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        // Sums saturate at the decimal range (±7.9e28) rather than panic.
        self.count = self.count.saturating_add(1);
        self.sum = self.sum.saturating_add(v);
        let e = self.operations.entry(f.operation.as_str()).or_default();
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(v);
    }

    /// Merges another point of the same cohort.
    pub fn merge(&mut self, o: &Point) {
        if o.count == 0 {
            return;
        }
        if self.count == 0 {
            self.min = o.min;
            self.max = o.max;
        } else {
            self.min = self.min.min(o.min);
            self.max = self.max.max(o.max);
        }
        self.count = self.count.saturating_add(o.count);
        self.sum = self.sum.saturating_add(o.sum);
        self.distinct = self.distinct.saturating_add(o.distinct);
        self.records.extend(o.records.iter().cloned());
        for (k, (c, s)) in &o.operations {
            let e = self.operations.entry(k).or_default();
            e.0 = e.0.saturating_add(*c);
            e.1 = e.1.saturating_add(*s);
        }
    }

    /// The JSON point `{ cohort, count, sum, avg, min, max, recordCount, operations }`, with
    /// `avg`/`min`/`max` only when listed in `metrics`.
    pub fn to_json(&self, cohort: &str, metrics: &[String]) -> Value {
        let has = |m: &str| metrics.iter().any(|x| x == m);
        let mut o = Map::new();
        o.insert("cohort".into(), json!(cohort));
        o.insert("count".into(), json!(self.count));
        o.insert("sum".into(), json!(decimal_to_f64(self.sum)));
        if has("avg") {
            let avg = if self.count == 0 {
                Decimal::ZERO
            } else {
                self.sum
                    .checked_div(Decimal::from(self.count))
                    .unwrap_or_default()
            };
            o.insert("avg".into(), json!(decimal_to_f64(avg)));
        }
        if has("min") {
            o.insert("min".into(), json!(decimal_to_f64(self.min)));
        }
        if has("max") {
            o.insert("max".into(), json!(decimal_to_f64(self.max)));
        }
        o.insert(
            "recordCount".into(),
            json!((self.records.len() as u64).saturating_add(self.distinct)),
        );
        let mut ops = Map::new();
        for name in ["add", "sub", "set"] {
            if let Some((c, s)) = self.operations.get(name) {
                ops.insert(
                    name.into(),
                    json!({ "count": c, "sum": decimal_to_f64(*s) }),
                );
            }
        }
        o.insert("operations".into(), Value::Object(ops));
        Value::Object(o)
    }
}

/// A decimal from a JSON number, by its shortest printed form (0.1, not 0.1000000000000000055).
pub fn decimal_of(n: &serde_json::Number) -> Option<Decimal> {
    let t = n.to_string();
    t.parse::<Decimal>()
        .or_else(|_| Decimal::from_scientific(&t))
        .ok()
}

/// Points by cohort label, sorted.
pub type PointSet = BTreeMap<Label, Point>;

/// Aggregates facts into the cohorts of `period` in `zone`, each point counting its distinct
/// records in [`Point::distinct`] (its `records` stay empty, so two points merged add their
/// counts). Labels are computed once per quarter hour of UTC time where the zone's offset is
/// constant over it and a whole number of quarter hours (then every instant of the quarter
/// has the same labels), else per fact; sums are exact either way.
pub fn aggregate<'a>(
    facts: impl IntoIterator<Item = &'a Fact>,
    period: Period,
    zone: Tz,
) -> PointSet {
    super::Columns::new(facts).aggregate(period, zone)
}

/// The points of `cohorts` as JSON: with `fill`, every cohort (missing ones as zeros);
/// otherwise only cohorts with data. Points outside `cohorts` are dropped.
pub fn fill_gaps(
    points: &PointSet,
    cohorts: &[Label],
    fill: bool,
    metrics: &[String],
) -> Vec<Value> {
    let empty = Point::default();
    cohorts
        .iter()
        .filter_map(|c| match points.get(c) {
            Some(p) => Some(p.to_json(c, metrics)),
            None if fill => Some(empty.to_json(c, metrics)),
            None => None,
        })
        .collect()
}

/// `[{ recordId, count, sum }]` by `metric` (`transactionCount` or `totalValue`), descending,
/// ties by record id, at most `limit`.
pub fn top_records<'a>(
    facts: impl IntoIterator<Item = &'a Fact>,
    metric: &str,
    limit: usize,
) -> Vec<Value> {
    let mut by: BTreeMap<String, (u64, Decimal)> = BTreeMap::new();
    tally_facts(&mut by, facts);
    rank_records(by, metric, limit)
}

/// Adds each fact to its record's `(count, sum)`.
pub fn tally_facts<'a>(
    by: &mut BTreeMap<String, (u64, Decimal)>,
    facts: impl IntoIterator<Item = &'a Fact>,
) {
    for f in facts {
        let e = match by.get_mut(&*f.record_id) {
            Some(e) => e,
            None => by.entry(f.record_id.to_string()).or_default(),
        };
        e.0 = e.0.saturating_add(1);
        e.1 = e.1.saturating_add(f.signed());
    }
}

/// [`top_records`] from each record's `(count, sum)`.
pub fn rank_records(
    by: BTreeMap<String, (u64, Decimal)>,
    metric: &str,
    limit: usize,
) -> Vec<Value> {
    let mut rows: Vec<(String, u64, Decimal)> =
        by.into_iter().map(|(r, (c, s))| (r, c, s)).collect();
    rows.sort_by(|a, b| {
        let primary = if metric == "totalValue" {
            b.2.cmp(&a.2)
        } else {
            b.1.cmp(&a.1)
        };
        primary.then_with(|| a.0.cmp(&b.0))
    });
    rows.into_iter()
        .take(limit)
        .map(|(r, c, s)| json!({ "recordId": r, "count": c, "sum": decimal_to_f64(s) }))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::{breakdown, cohort_label};
    use proptest::prelude::*;

    fn fact(id: &str, ms: i64, op: Op, v: i64) -> Fact {
        Fact {
            record_id: id.into(),
            timestamp_ms: ms,
            operation: op,
            value: Decimal::from(v),
        }
    }

    fn all_metrics() -> Vec<String> {
        ["count", "sum", "avg", "min", "max"]
            .map(String::from)
            .to_vec()
    }

    #[test]
    fn points_have_the_documented_keys_in_order_and_signed_values() {
        let utc: Tz = "UTC".parse().unwrap();
        let h = 1_760_018_400_000; // 2025-10-09T14:00Z
        let facts = [
            fact("a", h, Op::Add, 5),
            fact("a", h + 1, Op::Sub, 2),
            fact("b", h + 2, Op::Set, 10),
        ];
        let pts = aggregate(&facts, Period::Hour, utc);
        let json = fill_gaps(&pts, &["2025-10-09T14".into()], false, &all_metrics());
        let p = &json[0];
        let keys: Vec<&String> = p.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "cohort",
                "count",
                "sum",
                "avg",
                "min",
                "max",
                "recordCount",
                "operations"
            ]
        );
        assert_eq!(p["sum"], json!(13.0));
        assert_eq!(p["min"], json!(-2.0));
        assert_eq!(p["recordCount"], json!(2));
        assert_eq!(p["operations"]["sub"], json!({ "count": 1, "sum": -2.0 }));
        let gap = &fill_gaps(
            &pts,
            &["2025-10-09T15".into()],
            true,
            &["count".into(), "sum".into()],
        )[0];
        assert_eq!(
            gap,
            &json!({ "cohort": "2025-10-09T15", "count": 0, "sum": 0.0, "recordCount": 0, "operations": {} })
        );
    }

    #[test]
    fn every_transaction_counts_once_on_a_25_hour_day() {
        let ny: Tz = "America/New_York".parse().unwrap();
        // 2025-11-02 04:00Z = 00:00 EDT; 25 real hours until 2025-11-03 05:00Z.
        let start = 1_762_056_000_000;
        let facts: Vec<Fact> = (0..25)
            .map(|i| fact("r", start + i * 3_600_000, Op::Add, 1))
            .collect();
        let pts = aggregate(&facts, Period::Hour, ny);
        let cohorts = breakdown("2025-11-02", Period::Hour, ny).unwrap();
        assert_eq!(cohorts.len(), 24);
        let total: u64 = fill_gaps(&pts, &cohorts, true, &all_metrics())
            .iter()
            .map(|p| p["count"].as_u64().unwrap())
            .sum();
        assert_eq!(total, 25);
        assert_eq!(pts["2025-11-02T01"].count, 2);
    }

    #[test]
    fn top_records_sort_by_metric_then_record_id() {
        let facts = [
            fact("b", 0, Op::Add, 1),
            fact("a", 0, Op::Add, 1),
            fact("c", 0, Op::Add, 50),
            fact("a", 0, Op::Sub, 3),
        ];
        let by_count = top_records(&facts, "transactionCount", 10);
        assert_eq!(by_count[0]["recordId"], "a");
        assert_eq!(by_count[1]["recordId"], "b");
        let by_sum = top_records(&facts, "totalValue", 2);
        assert_eq!(by_sum.len(), 2);
        assert_eq!(by_sum[0]["recordId"], "c");
        assert_eq!(by_sum[1]["recordId"], "b");
    }

    /// Every fact labelled on its own and added with [`Point::add`] (records by id).
    fn with_ids(facts: &[Fact], period: Period, zone: Tz) -> PointSet {
        let mut out = PointSet::new();
        for f in facts {
            out.entry(cohort_label(f.timestamp_ms, period, zone))
                .or_default()
                .add(f);
        }
        out
    }

    /// Points by id with their records counted into `distinct`, as [`aggregate`] gives them.
    fn counted(mut points: PointSet) -> PointSet {
        for p in points.values_mut() {
            p.distinct = std::mem::take(&mut p.records).len() as u64;
        }
        points
    }

    /// The oracle for [`aggregate`].
    fn naive(facts: &[Fact], period: Period, zone: Tz) -> PointSet {
        counted(with_ids(facts, period, zone))
    }

    proptest! {
        /// The fast reading of a JS number gives the decimal of its shortest printed form.
        #[test]
        fn numbers_read_as_their_shortest_printed_form(
            m in -10_000_000_000i64..10_000_000_000,
            s in 0u32..12,
            bits in any::<u64>(),
        ) {
            let printed = |f: f64| serde_json::Number::from_f64(f).and_then(|n| decimal_of(&n));
            let f = m as f64 / 10f64.powi(s as i32);
            prop_assert_eq!(Fact::value_of_number(f), printed(f));
            let g = f64::from_bits(bits);
            prop_assert_eq!(Fact::value_of_number(g), printed(g));
            let h = g.clamp(-1e6, 1e6);
            prop_assert_eq!(Fact::value_of_number(h), printed(h));
        }
    }

    proptest! {
        #[test]
        fn memoized_labels_equal_labelling_every_fact(
            raw in proptest::collection::vec((0i64..40_000_000_000, 0u8..3), 0..300),
            zone_ix in 0usize..6,
        ) {
            let zones = ["UTC", "America/New_York", "Australia/Lord_Howe", "Pacific/Chatham", "Asia/Kolkata", "Europe/Berlin"];
            let zone: Tz = zones[zone_ix].parse().unwrap();
            let base = 1_735_689_600_000 - 20_000_000_000;
            let facts: Vec<Fact> = raw.iter().map(|(t, r)| fact(&format!("r{r}"), base + t, Op::Add, 1)).collect();
            for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
                prop_assert_eq!(aggregate(&facts, period, zone), naive(&facts, period, zone));
            }
        }
    }

    proptest! {
        /// Integer sums at one scale, the decimal fallback (magnitudes near the decimal
        /// range), mixed scales, every operation, ids shared and held twice, and times far
        /// apart (the sparse quarter map and the pair set) all equal the oracle.
        #[test]
        fn aggregate_equals_the_oracle_for_any_amounts(
            raw in proptest::collection::vec(
                (0i64..3_000_000_000, 0u8..3, -1_000_000i64..1_000_000, 0u32..6, 0u8..5, any::<bool>()),
                0..200,
            ),
            huge in any::<bool>(),
            far in any::<bool>(),
            zone_ix in 0usize..3,
        ) {
            let zone: Tz = ["UTC", "America/New_York", "Asia/Kathmandu"][zone_ix].parse().unwrap();
            let shared: Vec<Arc<str>> = (0..5).map(|r| format!("r{r}").into()).collect();
            let facts: Vec<Fact> = raw.iter().enumerate().map(|(i, (t, op, m, scale, r, copy))| {
                // Far apart: groups of eight 40 years apart (hash maps, not vectors).
                let spread = if far { (i as i64 / 8) * 40 * 365 * 86_400_000 } else { 0 };
                let value = if huge && i % 3 == 2 { Decimal::MAX / Decimal::from(400) } else { Decimal::new(*m, *scale) };
                Fact {
                    record_id: if *copy { format!("r{r}").into() } else { shared[*r as usize].clone() },
                    timestamp_ms: 1_700_000_000_000 + t + spread,
                    operation: [Op::Add, Op::Sub, Op::Set][*op as usize],
                    value,
                }
            }).collect();
            for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
                prop_assert_eq!(aggregate(&facts, period, zone), naive(&facts, period, zone));
            }
        }
    }

    proptest! {
        #[test]
        fn rolling_hours_up_to_days_equals_aggregating_by_day(
            raw in proptest::collection::vec((0i64..5_000_000_000, 0u8..3, -50i64..50, 0u8..4), 0..200),
            zone_ix in 0usize..4,
        ) {
            let zones = ["UTC", "America/New_York", "Australia/Lord_Howe", "Pacific/Kiritimati"];
            let zone: Tz = zones[zone_ix].parse().unwrap();
            let base = 1_735_689_600_000; // 2025-01-01
            let facts: Vec<Fact> = raw.iter().map(|(t, op, v, r)| Fact {
                record_id: format!("r{r}").into(),
                timestamp_ms: base + t,
                operation: [Op::Add, Op::Sub, Op::Set][*op as usize],
                value: Decimal::from(*v),
            }).collect();
            // Points with record ids merge into days.
            let mut rolled = PointSet::new();
            for (label, p) in &with_ids(&facts, Period::Hour, zone) {
                rolled.entry(label[..10].to_string()).or_default().merge(p);
            }
            prop_assert_eq!(&rolled, &with_ids(&facts, Period::Day, zone));
            prop_assert_eq!(&counted(rolled), &aggregate(&facts, Period::Day, zone));
            let total: Decimal = facts.iter().map(Fact::signed).sum();
            for period in [Period::Hour, Period::Day, Period::Week, Period::Month] {
                let pts = aggregate(&facts, period, zone);
                prop_assert_eq!(pts.values().map(|p| p.count).sum::<u64>(), facts.len() as u64);
                prop_assert_eq!(pts.values().map(|p| p.sum).sum::<Decimal>(), total);
            }
        }
    }
}
