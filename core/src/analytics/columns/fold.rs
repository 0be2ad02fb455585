//! Folding laid-out columns into the points of one period in one zone.

use super::{Amount, BITMAP_BITS, Columns, OPS, QUARTER, VARIES};
use crate::analytics::points::{Point, PointSet};
use crate::calendar::{Label, Period, cohort_label};
use chrono_tz::Tz;
use rustc_hash::{FxHashMap, FxHashSet};

/// One cohort's running totals.
#[derive(Clone, Copy)]
#[repr(align(64))]
struct Acc<V: Amount> {
    min: V,
    max: V,
    sum: V::Running,
    op_sums: [V; 3],
    op_counts: [u64; 3],
}

impl<V: Amount> Default for Acc<V> {
    fn default() -> Self {
        Acc {
            min: V::MAX,
            max: V::MIN,
            sum: V::Running::default(),
            op_sums: [V::default(); 3],
            op_counts: [0; 3],
        }
    }
}

/// Which (cohort, record) pairs have been seen: a bitmap of cohorts × records when small
/// enough, else a hash set of pairs.
enum Seen {
    Bits { words: usize, bits: Vec<u64> },
    Pairs(FxHashSet<u64>),
}

/// Distinct records per cohort.
struct Distinct {
    seen: Seen,
    /// Records per cohort.
    counts: Vec<u64>,
}

impl Distinct {
    fn new(records: u32, cohorts_at_most: u64) -> Distinct {
        let words = usize::try_from(records.div_ceil(64)).unwrap_or(usize::MAX);
        let seen = if u64::from(records).saturating_mul(cohorts_at_most) <= BITMAP_BITS {
            Seen::Bits {
                words,
                bits: Vec::new(),
            }
        } else {
            Seen::Pairs(FxHashSet::default())
        };
        Distinct {
            seen,
            counts: Vec::new(),
        }
    }

    /// Makes room for one more cohort.
    fn grow(&mut self) {
        self.counts.push(0);
        if let Seen::Bits { words, bits } = &mut self.seen {
            bits.resize(bits.len().saturating_add(*words), 0);
        }
    }

    /// Counts `record` in `cohort` unless it is there already.
    #[inline]
    fn see(&mut self, cohort: u32, record: u32) {
        let new = match &mut self.seen {
            Seen::Bits { words, bits } => {
                let at = (cohort as usize)
                    .saturating_mul(*words)
                    .saturating_add(record.wrapping_shr(6) as usize);
                let mask = 1u64.wrapping_shl(record & 63);
                let new = bits[at] & mask == 0;
                bits[at] |= mask;
                new
            }
            Seen::Pairs(set) => set.insert(u64::from(cohort).wrapping_shl(32) | u64::from(record)),
        };
        if new {
            let n = &mut self.counts[cohort as usize];
            *n = n.saturating_add(1);
        }
    }
}

/// The shortest a cohort of `period` can be in any zone, for sizing the bitmap (an estimate:
/// the bitmap grows past it if a zone is stranger).
fn shortest_ms(period: Period) -> i64 {
    match period {
        Period::Hour => 1_800_000,
        Period::Day => 43_200_000,
        Period::Week => 6 * 86_400_000,
        Period::Month => 27 * 86_400_000,
    }
}

/// The offset of `zone` in milliseconds over the quarter hour from `start`, when it is the
/// same at both ends and a whole number of quarter hours (then every instant of the quarter
/// has the same labels).
fn uniform_offset(start: i64, zone: Tz) -> Option<i64> {
    use chrono::{DateTime, Offset, TimeZone};
    let offset = |ms: i64| {
        DateTime::from_timestamp_millis(ms).map(|t| {
            zone.offset_from_utc_datetime(&t.naive_utc())
                .fix()
                .local_minus_utc()
        })
    };
    let (a, b) = (offset(start)?, offset(start.saturating_add(QUARTER - 1))?);
    (a == b && a % 900 == 0).then_some(i64::from(a).saturating_mul(1000))
}

/// The number of the local hour (hours), day (days and months: a month's days share its
/// label) or Monday-based week (ISO weeks) holding local time `local_ms`.
fn local_key(local_ms: i64, period: Period) -> i64 {
    const DAY: i64 = 86_400_000;
    match period {
        Period::Hour => local_ms.div_euclid(3_600_000),
        Period::Day | Period::Month => local_ms.div_euclid(DAY),
        // 1970-01-01 was a Thursday: day 3 after a Monday.
        Period::Week => local_ms.div_euclid(DAY).saturating_add(3).div_euclid(7),
    }
}

/// Cohorts as they are found: labels, accumulators and distinct records, by number.
struct Cohorts<V: Amount> {
    period: Period,
    zone: Tz,
    labels: Vec<Label>,
    by_label: FxHashMap<Label, u32>,
    accs: Vec<Acc<V>>,
    distinct: Distinct,
}

impl<V: Amount> Cohorts<V> {
    /// The number of the cohort holding `ms`.
    fn of(&mut self, ms: i64) -> u32 {
        let label = cohort_label(ms, self.period, self.zone);
        let next = u32::try_from(self.labels.len()).unwrap_or(u32::MAX);
        let (labels, accs, distinct) = (&mut self.labels, &mut self.accs, &mut self.distinct);
        *self.by_label.entry(label).or_insert_with_key(|l| {
            labels.push(l.clone());
            accs.push(Acc::default());
            distinct.grow();
            next
        })
    }
}

impl Columns {
    /// The cohort of each quarter hour, or [`VARIES`].
    fn cohort_of_quarters<V: Amount>(&self, cohorts: &mut Cohorts<V>) -> Vec<u32> {
        let mut by_key: FxHashMap<i64, u32> = FxHashMap::default();
        let period = cohorts.period;
        self.quarters
            .iter()
            .map(|q| {
                let start = q.saturating_mul(QUARTER);
                // The label is the local hour's, day's or week's: found by number once one
                // quarter of it has been labelled.
                match uniform_offset(start, cohorts.zone) {
                    Some(offset_ms) => {
                        let key = local_key(start.saturating_add(offset_ms), period);
                        *by_key.entry(key).or_insert_with(|| cohorts.of(start))
                    }
                    None => VARIES,
                }
            })
            .collect()
    }

    pub(super) fn fold<V: Amount>(
        &self,
        values: &[V],
        scale: u32,
        period: Period,
        zone: Tz,
    ) -> PointSet {
        // The span from the distinct quarters (a few thousand), not every transaction.
        let (lo, hi) = (self.quarters.iter().min(), self.quarters.iter().max());
        let cohorts_at_most = match (lo, hi) {
            (Some(lo), Some(hi)) => {
                let span_ms = hi
                    .saturating_sub(*lo)
                    .saturating_add(1)
                    .saturating_mul(QUARTER);
                let span = span_ms.checked_div(shortest_ms(period));
                span.unwrap_or(0).unsigned_abs().saturating_add(2)
            }
            _ => 0,
        };
        let mut cohorts: Cohorts<V> = Cohorts {
            period,
            zone,
            labels: Vec::new(),
            by_label: FxHashMap::default(),
            accs: Vec::new(),
            distinct: Distinct::new(self.records, cohorts_at_most),
        };
        let of_quarter = self.cohort_of_quarters(&mut cohorts);
        let rows = self.record.iter().zip(&self.quarter).zip(&self.op);
        for (i, (((&record, &q), &op), &v)) in rows.zip(values).enumerate() {
            let cohort = match of_quarter[q as usize] {
                VARIES => cohorts.of(self.time[i]),
                c => c,
            };
            let a = &mut cohorts.accs[cohort as usize];
            a.min = a.min.min(v);
            a.max = a.max.max(v);
            V::run(&mut a.sum, v);
            let op = usize::from(op);
            a.op_sums[op] = a.op_sums[op].plus(v);
            a.op_counts[op] = a.op_counts[op].saturating_add(1);
            cohorts.distinct.see(cohort, record);
        }
        let Cohorts {
            labels,
            accs,
            distinct,
            ..
        } = cohorts;
        labels
            .into_iter()
            .zip(accs.iter().zip(distinct.counts))
            .map(|(label, (a, distinct))| (label, point(a, distinct, scale)))
            .collect()
    }
}

/// The point of an accumulator.
fn point<V: Amount>(a: &Acc<V>, distinct: u64, scale: u32) -> Point {
    let d = |v: V| v.decimal(scale);
    Point {
        count: a.op_counts.iter().fold(0, |n, c| n.saturating_add(*c)),
        sum: d(V::total(a.sum, a.op_sums)),
        min: d(a.min),
        max: d(a.max),
        records: Default::default(),
        distinct,
        operations: OPS
            .iter()
            .zip(a.op_sums)
            .zip(a.op_counts)
            .filter(|(_, c)| *c > 0)
            .map(|((op, s), c)| (op.as_str(), (c, d(s))))
            .collect(),
    }
}
