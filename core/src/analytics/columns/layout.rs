//! Laying transactions out as columns: records and quarter hours numbered in order of first
//! appearance, and values as integers at one scale while that is provably exact.

use super::{Amount, Values};
use crate::analytics::points::Fact;
use crate::txn::Op;
use rust_decimal::Decimal;
use rustc_hash::FxHashMap;

/// Numbers things in order of first appearance.
pub(super) struct Numbering<K> {
    by_key: FxHashMap<K, u32>,
}

impl<K: std::hash::Hash + Eq> Numbering<K> {
    fn new() -> Self {
        Numbering {
            by_key: FxHashMap::default(),
        }
    }
    /// The number of `key`, and whether it is new.
    fn of(&mut self, key: K) -> (u32, bool) {
        let next = self.len();
        let n = *self.by_key.entry(key).or_insert(next);
        (n, n == next)
    }
    pub(super) fn len(&self) -> u32 {
        u32::try_from(self.by_key.len()).unwrap_or(u32::MAX)
    }
}

/// Numbers records by the address of their shared id (a direct-mapped cache in front of a
/// hash map: a few distinct records make most transactions), folding ids held twice (facts
/// read one by one) by their text.
pub(super) struct RecordNumbers<'a> {
    cache: Vec<(*const u8, u32)>,
    by_ptr: FxHashMap<*const u8, u32>,
    pub(super) by_text: Numbering<&'a str>,
}

impl<'a> RecordNumbers<'a> {
    const SLOTS: usize = 4096;

    pub(super) fn new() -> Self {
        RecordNumbers {
            cache: vec![(std::ptr::null(), 0); Self::SLOTS],
            by_ptr: FxHashMap::default(),
            by_text: Numbering::new(),
        }
    }

    #[inline]
    pub(super) fn of(&mut self, id: &'a std::sync::Arc<str>) -> u32 {
        let ptr = id.as_ptr();
        // Allocations are at least 16 bytes apart: the low bits say nothing.
        let slot = (ptr as usize).wrapping_shr(4) % Self::SLOTS;
        let cached = self.cache[slot];
        if cached.0 == ptr {
            return cached.1;
        }
        let by_text = &mut self.by_text;
        let n = *self.by_ptr.entry(ptr).or_insert_with(|| by_text.of(id).0);
        self.cache[slot] = (ptr, n);
        n
    }
}

/// Numbers quarter hours: by a vector over the range seen so far (grown by doubling) while
/// it stays small next to the number of transactions, else by a hash map.
pub(super) enum QuarterNumbers {
    Dense { first: i64, ids: Vec<u32> },
    Sparse(Numbering<i64>),
}

impl QuarterNumbers {
    /// A missing number in `Dense`.
    const NONE: u32 = u32::MAX;

    /// The number of quarter `q`, and whether it is new. `quarters` holds the quarters
    /// numbered so far, in order; `seen` how many transactions there are (or may be).
    #[inline]
    pub(super) fn of(&mut self, q: i64, quarters: &[i64], seen: usize) -> (u32, bool) {
        let next = u32::try_from(quarters.len()).unwrap_or(u32::MAX);
        if let QuarterNumbers::Dense { first, ids } = self {
            let at = q
                .checked_sub(*first)
                .and_then(|d| usize::try_from(d).ok())
                .filter(|at| *at < ids.len());
            match at {
                Some(at) if ids[at] == Self::NONE => {
                    ids[at] = next;
                    return (next, true);
                }
                Some(at) => return (ids[at], false),
                None => self.grow(q, quarters, seen),
            }
            return self.of(q, quarters, seen);
        }
        match self {
            QuarterNumbers::Sparse(n) => n.of(q),
            QuarterNumbers::Dense { .. } => (next, false),
        }
    }

    /// Makes room for `q`: a dense range twice as wide (at least), or a hash map once the
    /// range would pass four entries per transaction (plus 4,096).
    fn grow(&mut self, q: i64, quarters: &[i64], seen: usize) {
        let QuarterNumbers::Dense { first, ids } = self else {
            return;
        };
        let last = first.saturating_add(i64::try_from(ids.len()).unwrap_or(i64::MAX));
        let (lo, hi) = if ids.is_empty() {
            (q, q.saturating_add(1))
        } else {
            let width = i64::try_from(ids.len()).unwrap_or(i64::MAX);
            let lo = if q < *first {
                q.min(first.saturating_sub(width))
            } else {
                *first
            };
            let hi = if q >= last {
                q.saturating_add(1).max(last.saturating_add(width))
            } else {
                last
            };
            (lo, hi)
        };
        let budget = seen.saturating_mul(4).saturating_add(4096).min(1 << 24);
        match hi.checked_sub(lo).and_then(|d| usize::try_from(d).ok()) {
            Some(len) if len <= budget => {
                let mut grown = vec![Self::NONE; len];
                for (id, quarter) in quarters.iter().enumerate() {
                    let at = usize::try_from(quarter.saturating_sub(lo)).unwrap_or(0);
                    grown[at] = u32::try_from(id).unwrap_or(Self::NONE);
                }
                *self = QuarterNumbers::Dense {
                    first: lo,
                    ids: grown,
                };
            }
            _ => {
                let mut n = Numbering::new();
                for quarter in quarters {
                    n.of(*quarter);
                }
                *self = QuarterNumbers::Sparse(n);
            }
        }
    }
}

/// Signed values as they are read: integers at the largest scale so far while
/// [`Fixed`]'s bound holds, decimals from the first value past it.
pub(super) enum Building {
    Fixed(Fixed, Vec<i64>),
    Exact(Vec<Decimal>),
}

impl Building {
    pub(super) fn push(&mut self, f: &Fact) {
        if let Building::Fixed(fixed, values) = self {
            if fixed.rescale(f.value.scale(), values)
                && let Some(v) = fixed.scaled(f)
            {
                values.push(v);
                return;
            }
            let scale = fixed.scale;
            // Integers at a scale are exact decimals.
            let exact = values.iter().map(|v| v.decimal(scale)).collect();
            *self = Building::Exact(exact);
        }
        if let Building::Exact(values) = self {
            values.push(f.signed());
        }
    }

    pub(super) fn done(self) -> Values {
        match self {
            Building::Fixed(fixed, values) => Values::Fixed {
                scale: fixed.scale,
                values,
            },
            Building::Exact(values) => Values::Exact(values),
        }
    }
}

/// Signed values as integers at one scale, as long as the sum of every value's magnitude
/// fits in an `i64` at it: then no partial sum of any cohort overflows, and integer sums
/// equal the decimal sums exactly.
pub(super) struct Fixed {
    scale: u32,
    total: i64,
}

impl Fixed {
    pub(super) fn new(scale: u32) -> Fixed {
        Fixed { scale, total: 0 }
    }

    /// Raises the scale to `scale` if it is larger, rescaling `values` and the total;
    /// whether the bound still holds (if not, nothing changed).
    fn rescale(&mut self, scale: u32, values: &mut [i64]) -> bool {
        let Some(up) = scale.checked_sub(self.scale).filter(|up| *up > 0) else {
            return true;
        };
        let Some(k) = 10i64.checked_pow(up) else {
            return false;
        };
        let Some(total) = self.total.checked_mul(k) else {
            return false;
        };
        // The total bounds every value, so none of these overflow.
        for v in values.iter_mut() {
            *v = v.saturating_mul(k);
        }
        (self.scale, self.total) = (scale, total);
        true
    }

    /// `f`'s signed value at the scale (at least `f`'s own), counted in the total; `None`
    /// past the bound.
    #[inline]
    fn scaled(&mut self, f: &Fact) -> Option<i64> {
        let m = f.value.mantissa();
        let m = match self.scale.checked_sub(f.value.scale())? {
            0 => m,
            up => m.checked_mul(10i128.checked_pow(up)?)?,
        };
        let m = i64::try_from(m).ok()?;
        self.total = self.total.checked_add(m.checked_abs()?)?;
        Some(if f.operation == Op::Sub {
            m.saturating_neg()
        } else {
            m
        })
    }
}
