//! Materialized analytics, the pure part: what one consolidated batch adds to the hour, day,
//! ISO-week and month cohorts (each record counted once per cohort), the packed objects those
//! cohorts live in, and their stored form.
//!
//! Hours are packed by month (`h/YYYY-MM`, at most 744 points); days, ISO weeks and months by
//! year (`y/YYYY`; a week lives in its ISO year), so a year by day, a month by hour or a year
//! by week is one object. A record's bookkeeping keeps the cohorts it has already counted in
//! ([`Seen`]), so `recordCount` is incremented exactly once per record and cohort.
//!
//! Each cohort of every period also has a top object (`t/<label>`) holding one point per
//! record active in it, keyed by record id: `getTopRecords` reads those instead of the
//! journals.

use super::points::{Fact, Point};
use crate::calendar::Period;
use crate::calendar::{Label, cohort_label};
use chrono_tz::Tz;
use rust_decimal::Decimal;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::str::FromStr;

/// The periods materialized, finest first. All four are kept whatever `analytics.periods`
/// lists: a week's or a month's `recordCount` cannot be rolled up exactly from finer points.
pub const PERIODS: [Period; 4] = [Period::Hour, Period::Day, Period::Week, Period::Month];

/// How many of its newest cohorts per period a record remembers having counted in (hour,
/// day, week, month). A transaction consolidated after its record was active in more later
/// cohorts than this would count the record once more in its older cohort.
pub const REMEMBERED: [usize; 4] = [168, 120, 60, 60];

/// Points of one packed object, by cohort label.
pub type Packed = BTreeMap<Label, Point>;

/// Contributions by packed object name (`h/2025-03`, `y/2025`).
pub type Delta = BTreeMap<String, Packed>;

/// The packed object holding a cohort label of any period.
pub fn object_of(label: &str) -> String {
    if label.len() == 13 {
        format!("h/{}", &label[..7])
    } else {
        format!("y/{}", &label[..label.len().min(4)])
    }
}

/// The top object of a cohort: per record, its transactions in the cohort.
pub fn top_object(label: &str) -> String {
    format!("t/{label}")
}

/// Whether a packed object name is a top object.
pub fn is_top_object(name: &str) -> bool {
    name.starts_with("t/")
}

/// Whether a contribution was written by a version before top objects: cohort points, and
/// no top object.
pub fn lacks_top(d: &Delta) -> bool {
    d.keys().any(|o| !is_top_object(o)) && !d.keys().any(|o| is_top_object(o))
}

/// The packed objects holding the cohorts `labels`, without repeats, in order.
pub fn objects_for(labels: &[Label]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for l in labels {
        let o = object_of(l);
        if out.last() != Some(&o) && !out.contains(&o) {
            out.push(o);
        }
    }
    out
}

/// The cohorts a record has already been counted in, per period, newest kept.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Seen {
    by_period: [Vec<Label>; 4],
}

impl Seen {
    /// Reads `{"hour": [...], "day": [...], "week": [...], "month": [...]}`.
    pub fn from_json(v: Option<&Value>) -> Seen {
        let mut s = Seen::default();
        if let Some(Value::Object(m)) = v {
            for (i, p) in PERIODS.iter().enumerate() {
                if let Some(Value::Array(a)) = m.get(p.as_str()) {
                    s.by_period[i] = a
                        .iter()
                        .filter_map(|x| x.as_str().map(str::to_string))
                        .collect();
                    s.by_period[i].sort();
                }
            }
        }
        s
    }

    /// The stored form.
    pub fn to_json(&self) -> Value {
        let mut m = Map::new();
        for (i, p) in PERIODS.iter().enumerate() {
            m.insert(p.as_str().into(), json!(self.by_period[i]));
        }
        Value::Object(m)
    }

    /// Whether the record already counts in cohort `label` of `period`.
    pub fn contains(&self, period: Period, label: &str) -> bool {
        let i = PERIODS.iter().position(|p| *p == period).unwrap_or(0);
        self.by_period[i]
            .binary_search_by(|x| x.as_str().cmp(label))
            .is_ok()
    }

    /// Records `label` for period index `i`; true when it was not there yet.
    fn insert(&mut self, i: usize, label: &str) -> bool {
        match self.by_period[i].binary_search_by(|x| x.as_str().cmp(label)) {
            Ok(_) => false,
            Err(at) => {
                self.by_period[i].insert(at, label.to_string());
                true
            }
        }
    }

    /// Forgets all but the newest [`REMEMBERED`] cohorts of each period.
    fn prune(&mut self) {
        for (i, keep) in REMEMBERED.iter().enumerate() {
            let v = &mut self.by_period[i];
            if v.len() > *keep {
                v.drain(..v.len().saturating_sub(*keep));
            }
        }
    }
}

/// What one record's batch of transactions adds to every cohort of the four periods, and to
/// each cohort's top object. `seen` is the record's memory of cohorts it already counts in;
/// it is updated (and pruned).
pub fn batch_delta<'a>(
    facts: impl IntoIterator<Item = &'a Fact>,
    seen: &mut Seen,
    zone: Tz,
) -> Delta {
    let mut delta = Delta::new();
    for f in facts {
        for (i, period) in PERIODS.iter().enumerate() {
            let label = cohort_label(f.timestamp_ms, *period, zone);
            let top = top_object(&label);
            let first = seen.insert(i, &label);
            let p = delta
                .entry(object_of(&label))
                .or_default()
                .entry(label)
                .or_default();
            p.add_value(f);
            if first {
                p.distinct = p.distinct.saturating_add(1);
            }
            delta
                .entry(top)
                .or_default()
                .entry(f.record_id.to_string())
                .or_default()
                .add_value(f);
        }
    }
    seen.prune();
    delta
}

/// Adds not-yet-consolidated transactions to materialized points of `period`, counting a
/// record in a cohort only when its `seen` (by record id) does not hold the cohort yet.
pub fn add_pending<'a>(
    points: &mut BTreeMap<Label, Point>,
    facts: impl IntoIterator<Item = &'a Fact>,
    seen: &std::collections::HashMap<String, Seen>,
    period: Period,
    zone: Tz,
) {
    for f in facts {
        let label = cohort_label(f.timestamp_ms, period, zone);
        let counted = seen
            .get(&*f.record_id)
            .is_some_and(|s| s.contains(period, &label));
        let p = points.entry(label).or_default();
        p.add_value(f);
        if !counted {
            p.records.insert(f.record_id.clone());
        }
    }
}

/// Adds `from` into `into`, point by point.
pub fn merge_packed(into: &mut Packed, from: &Packed) {
    for (label, p) in from {
        into.entry(label.clone()).or_default().merge(p);
    }
}

/// The stored form of a point: `[count, sum, min, max, records, {op: [count, sum]}]`, with
/// decimals as strings so nothing is rounded.
pub fn point_to_stored(p: &Point) -> Value {
    let ops: Map<String, Value> = p
        .operations
        .iter()
        .map(|(k, (c, s))| ((*k).to_string(), json!([c, s.to_string()])))
        .collect();
    json!([
        p.count,
        p.sum.to_string(),
        p.min.to_string(),
        p.max.to_string(),
        (p.records.len() as u64).saturating_add(p.distinct),
        ops
    ])
}

/// Reads a stored point; `None` when malformed.
pub fn point_from_stored(v: &Value) -> Option<Point> {
    let a = v.as_array()?;
    let dec = |x: &Value| x.as_str().and_then(|s| Decimal::from_str(s).ok());
    let mut p = Point {
        count: a.first()?.as_u64()?,
        sum: dec(a.get(1)?)?,
        min: dec(a.get(2)?)?,
        max: dec(a.get(3)?)?,
        distinct: a.get(4)?.as_u64()?,
        ..Point::default()
    };
    for (k, cs) in a.get(5)?.as_object()? {
        let name = match k.as_str() {
            "add" => "add",
            "sub" => "sub",
            "set" => "set",
            _ => return None,
        };
        let cs = cs.as_array()?;
        p.operations
            .insert(name, (cs.first()?.as_u64()?, dec(cs.get(1)?)?));
    }
    Some(p)
}

/// The stored form of a packed object's points.
pub fn packed_to_json(p: &Packed) -> Value {
    Value::Object(
        p.iter()
            .map(|(l, pt)| (l.clone(), point_to_stored(pt)))
            .collect(),
    )
}

/// Reads a packed object's points; `None` when malformed.
pub fn packed_from_json(v: &Value) -> Option<Packed> {
    v.as_object()?
        .iter()
        .map(|(l, p)| Some((l.clone(), point_from_stored(p)?)))
        .collect()
}

/// The stored form of a delta: `{object: {label: point}}`.
pub fn delta_to_json(d: &Delta) -> Value {
    Value::Object(
        d.iter()
            .map(|(o, p)| (o.clone(), packed_to_json(p)))
            .collect(),
    )
}

/// Reads a stored delta; `None` when malformed.
pub fn delta_from_json(v: &Value) -> Option<Delta> {
    v.as_object()?
        .iter()
        .map(|(o, p)| Some((o.clone(), packed_from_json(p)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analytics::points::aggregate;
    use crate::txn::Op;
    use proptest::prelude::*;

    fn facts(raw: &[(i64, u8, i64, u8)]) -> Vec<Fact> {
        let base = 1_735_689_600_000; // 2025-01-01
        raw.iter()
            .map(|(t, op, v, r)| Fact {
                record_id: format!("r{r}").into(),
                timestamp_ms: base + t,
                operation: [Op::Add, Op::Sub, Op::Set][*op as usize],
                value: Decimal::from(*v),
            })
            .collect()
    }

    #[test]
    fn cohorts_land_in_the_documented_objects() {
        assert_eq!(object_of("2025-10-09T14"), "h/2025-10");
        assert_eq!(object_of("2025-10-09"), "y/2025");
        assert_eq!(object_of("2026-W01"), "y/2026");
        assert_eq!(object_of("2025-12"), "y/2025");
        let labels = ["2025-12-31T23".to_string(), "2026-01-01T00".to_string()];
        assert_eq!(objects_for(&labels), ["h/2025-12", "h/2026-01"]);
    }

    #[test]
    fn stored_points_round_trip_exactly() {
        let fs = facts(&[(0, 0, 5, 0), (1, 1, 3, 0), (2, 2, 7, 0)]);
        let mut seen = Seen::default();
        let d = batch_delta(&fs, &mut seen, chrono_tz::UTC);
        assert_eq!(delta_from_json(&delta_to_json(&d)), Some(d.clone()));
        let day = &d["y/2025"]["2025-01-01"];
        assert_eq!((day.count, day.sum, day.distinct), (3, Decimal::from(9), 1));
        assert_eq!(point_from_stored(&json!([1, "x", "0", "0", 1, {}])), None);
        // Every batch carries top objects; one without them comes from an earlier version.
        assert!(!lacks_top(&d) && !lacks_top(&Delta::new()));
        let mut old = d.clone();
        old.retain(|o, _| !is_top_object(o));
        assert!(lacks_top(&old));
    }

    #[test]
    fn a_record_counts_once_per_cohort_across_batches() {
        let mut seen = Seen::default();
        let first = batch_delta(&facts(&[(0, 0, 1, 0)]), &mut seen, chrono_tz::UTC);
        let again = batch_delta(&facts(&[(60_000, 0, 1, 0)]), &mut seen, chrono_tz::UTC);
        assert_eq!(first["y/2025"]["2025-01"].distinct, 1);
        assert_eq!(again["y/2025"]["2025-01"].distinct, 0);
        assert_eq!(again["y/2025"]["2025-01"].count, 1);
        let seen = Seen::from_json(Some(&seen.to_json()));
        assert_eq!(seen.by_period[3], ["2025-01"]);
    }

    proptest! {
        #[test]
        fn batches_add_up_to_aggregating_everything_at_once(
            raw in proptest::collection::vec((0i64..3_000_000_000, 0u8..3, -50i64..50, 0u8..4), 0..120),
            cuts in proptest::collection::vec(0usize..120, 0..6),
            zone_ix in 0usize..3,
        ) {
            let zone: Tz = ["UTC", "America/New_York", "Australia/Lord_Howe"][zone_ix].parse().unwrap();
            let mut fs = facts(&raw);
            fs.sort_by_key(|f| (f.record_id.clone(), f.timestamp_ms));
            // Each record's transactions in batches, in time order, as consolidation sees them.
            let mut total: BTreeMap<String, Point> = BTreeMap::new();
            let mut seens: BTreeMap<String, Seen> = BTreeMap::new();
            let mut start = 0;
            let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (fs.len() + 1)).collect();
            bounds.push(fs.len());
            bounds.sort();
            for end in bounds {
                let chunk = &fs[start..end.max(start)];
                start = end.max(start);
                let mut by_record: BTreeMap<&str, Vec<&Fact>> = BTreeMap::new();
                for f in chunk { by_record.entry(&f.record_id).or_default().push(f); }
                for (r, batch) in by_record {
                    let d = batch_delta(batch, seens.entry(r.to_string()).or_default(), zone);
                    for (name, packed) in &d {
                        for (l, p) in packed {
                            // A top object's points are by record: `t/<label>` + record.
                            let key = if is_top_object(name) { format!("{name}+{l}") } else { l.clone() };
                            total.entry(key).or_default().merge(p);
                        }
                    }
                }
            }
            for period in PERIODS {
                for (label, expect) in aggregate(&fs, period, zone) {
                    let got = &total[&label];
                    prop_assert_eq!((got.count, got.sum, got.min, got.max, &got.operations),
                        (expect.count, expect.sum, expect.min, expect.max, &expect.operations));
                    prop_assert_eq!(got.distinct, expect.distinct);
                    // Each record's point in the cohort's top object: its own transactions.
                    let records: std::collections::BTreeSet<&std::sync::Arc<str>> = fs.iter()
                        .filter(|f| cohort_label(f.timestamp_ms, period, zone) == label)
                        .map(|f| &f.record_id)
                        .collect();
                    for r in records {
                        let mine: Vec<Fact> = fs.iter().filter(|f| &f.record_id == r).cloned().collect();
                        let alone = &aggregate(&mine, period, zone)[&label];
                        let top = &total[&format!("{}+{r}", top_object(&label))];
                        prop_assert_eq!((top.count, top.sum), (alone.count, alone.sum));
                    }
                }
            }
        }
    }
}
