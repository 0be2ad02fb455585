//! Aggregation at memory speed: transactions laid out once as columns (record number,
//! quarter hour number, operation, signed value), then folded into per-cohort accumulators
//! held in vectors — labels computed once per local hour, day or week, distinct records
//! counted in a bitmap, and sums in 64-bit integers at one scale whenever every partial sum
//! provably fits (else in exact decimals, as before).

mod fold;
mod layout;

use super::points::{Fact, PointSet};
use crate::calendar::Period;
use crate::txn::Op;
use chrono_tz::Tz;
use layout::{Building, Fixed, QuarterNumbers, RecordNumbers};
use rust_decimal::Decimal;

/// A quarter hour in milliseconds: zones' offsets are whole quarters (else labels are
/// computed per transaction).
const QUARTER: i64 = 900_000;
/// Operations in accumulator order.
const OPS: [Op; 3] = [Op::Add, Op::Sub, Op::Set];
/// A quarter whose labels vary within it (an offset change inside it, or an offset that is
/// not a whole number of quarters): labelled per transaction.
const VARIES: u32 = u32::MAX;
/// Most bits a distinct-records bitmap may take (8 MiB); above it, pairs go in a hash set.
const BITMAP_BITS: u64 = 1 << 26;

/// Transactions laid out for aggregation: build once with [`Columns::new`], then
/// [`Columns::aggregate`] into any period and zone (a dashboard switching periods or zones
/// reads nothing again).
#[derive(Debug, Clone)]
pub struct Columns {
    /// Record number of each transaction (records numbered in order of first appearance).
    record: Vec<u32>,
    /// Number of each transaction's quarter hour in [`Columns::quarters`].
    quarter: Vec<u32>,
    /// The distinct quarter hours (epoch ms / 15 min), in order of first appearance.
    quarters: Vec<i64>,
    /// Epoch milliseconds (labels where a quarter's labels vary).
    time: Vec<i64>,
    /// Index of each operation in [`OPS`].
    op: Vec<u8>,
    /// Signed values.
    values: Values,
    /// Distinct records.
    records: u32,
}

/// Signed values: integers at one scale when they provably cannot overflow, else decimals.
#[derive(Debug, Clone)]
enum Values {
    Fixed { scale: u32, values: Vec<i64> },
    Exact(Vec<Decimal>),
}

/// A signed amount the accumulators can sum: exact decimals, or integers at one scale.
trait Amount: Copy + Ord + Default {
    /// The largest amount.
    const MAX: Self;
    /// The smallest amount.
    const MIN: Self;
    /// A cohort's running total where it is kept beside the operations' sums.
    type Running: Copy + Default;
    /// `self + o`, saturating (never reached for integers: see [`Fixed`]).
    fn plus(self, o: Self) -> Self;
    /// Adds `v` to a running total.
    fn run(running: &mut Self::Running, v: Self);
    /// A cohort's sum from its running total and its operations' sums.
    fn total(running: Self::Running, op_sums: [Self; 3]) -> Self;
    /// As a decimal, given the values' scale.
    fn decimal(self, scale: u32) -> Decimal;
}

impl Amount for Decimal {
    const MAX: Self = Decimal::MAX;
    const MIN: Self = Decimal::MIN;
    /// Decimals round past 28 digits, so the sum is kept in the order the facts came.
    type Running = Decimal;
    fn plus(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    fn run(running: &mut Decimal, v: Decimal) {
        *running = running.saturating_add(v);
    }
    fn total(running: Decimal, _: [Decimal; 3]) -> Decimal {
        running
    }
    fn decimal(self, _: u32) -> Decimal {
        self
    }
}

impl Amount for i64 {
    const MAX: Self = i64::MAX;
    const MIN: Self = i64::MIN;
    /// Integer sums are exact in any order: the operations' sums make the total (and an
    /// accumulator fits one cache line).
    type Running = ();
    fn plus(self, o: Self) -> Self {
        self.saturating_add(o)
    }
    fn run(_: &mut (), _: i64) {}
    fn total(_: (), op_sums: [i64; 3]) -> i64 {
        op_sums.iter().fold(0, |a, b| a.saturating_add(*b))
    }
    fn decimal(self, scale: u32) -> Decimal {
        // Scales come from decimals (at most 28), so this cannot fail.
        Decimal::try_from_i128_with_scale(i128::from(self), scale).unwrap_or_default()
    }
}

impl Columns {
    /// Lays out `facts`, reading each once (memory speed is the limit).
    pub fn new<'a>(facts: impl IntoIterator<Item = &'a Fact>) -> Columns {
        let facts = facts.into_iter();
        // The dense quarter range may take 4 entries per transaction: how many may come.
        let (least, most) = facts.size_hint();
        let n = most.unwrap_or(least);
        let mut records = RecordNumbers::new();
        let mut by_quarter = QuarterNumbers::Dense {
            first: 0,
            ids: Vec::new(),
        };
        let mut c = Columns {
            record: Vec::with_capacity(least),
            quarter: Vec::with_capacity(least),
            quarters: Vec::new(),
            time: Vec::with_capacity(least),
            op: Vec::with_capacity(least),
            values: Values::Exact(Vec::new()),
            records: 0,
        };
        let mut values = Building::Fixed(Fixed::new(0), Vec::with_capacity(least));
        for f in facts {
            c.record.push(records.of(&f.record_id));
            let q = f.timestamp_ms.div_euclid(QUARTER);
            let (id, new) = by_quarter.of(q, &c.quarters, n.max(c.time.len()));
            if new {
                c.quarters.push(q);
            }
            c.quarter.push(id);
            c.time.push(f.timestamp_ms);
            c.op.push(op_index(f.operation));
            values.push(f);
        }
        c.values = values.done();
        c.records = records.by_text.len();
        c
    }

    /// How many transactions.
    pub fn len(&self) -> usize {
        self.record.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.record.is_empty()
    }

    /// The points of `period` in `zone` (see [`super::aggregate`]).
    pub fn aggregate(&self, period: Period, zone: Tz) -> PointSet {
        match &self.values {
            Values::Fixed { scale, values } => self.fold(values, *scale, period, zone),
            Values::Exact(values) => self.fold(values, 0, period, zone),
        }
    }
}

/// The index of `op` in [`OPS`].
fn op_index(op: Op) -> u8 {
    match op {
        Op::Add => 0,
        Op::Sub => 1,
        Op::Set => 2,
    }
}
