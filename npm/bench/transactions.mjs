// Deterministic transactions for the analytics benchmark, the same in Node and in a browser:
// `n` transactions spread over 2025 on 1,000 records, a third each add, sub and set, values
// with cents, in the shape s3db.js 21.6.2 stores (and Tally's getRawEvents returns).
const YEAR_2025 = Date.UTC(2025, 0, 1);
const YEAR_MS = 365 * 86_400_000;
const OPS = ['add', 'sub', 'set'];

/** mulberry32: a small, well-known 32-bit generator, so both sides see identical data. */
function generator(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function transactions(n, seed = 42) {
  const next = generator(seed);
  const out = new Array(n);
  for (let i = 0; i < n; i++) {
    out[i] = {
      id: `tx${i}`,
      originalId: `r${Math.floor(next() * 1000)}`,
      field: 'balance',
      value: Math.floor(next() * 10_000) / 100,
      operation: OPS[Math.floor(next() * 3)],
      timestamp: new Date(YEAR_2025 + Math.floor(next() * YEAR_MS)).toISOString(),
      applied: true,
    };
  }
  return out;
}

export const PERIODS = ['hour', 'day', 'week', 'month'];

/** The same transactions as typed-array columns (how a page holding its data in typed arrays
 * gives it to `prepareColumns`). */
export function columnsOf(txs) {
  const index = new Map();
  const recordIds = [];
  const records = new Uint32Array(txs.length);
  txs.forEach((t, i) => {
    let k = index.get(t.originalId);
    if (k === undefined) index.set(t.originalId, (k = recordIds.push(t.originalId) - 1));
    records[i] = k;
  });
  return {
    recordIds,
    records,
    timestamps: Float64Array.from(txs, (t) => Date.parse(t.timestamp)),
    operations: Uint8Array.from(txs, (t) => OPS.indexOf(t.operation)),
    values: Float64Array.from(txs, (t) => t.value),
  };
}

/** Tally's WASM build: read the transactions once (an array of objects through `prepare`, or
 * columns through `prepareColumns`), then the points of every period. */
export function tallyFourPeriods(tally, txs, timezone) {
  const t0 = performance.now();
  const set = Array.isArray(txs) ? tally.prepare(txs) : tally.prepareColumns(txs);
  const read = performance.now() - t0;
  try {
    const points = {};
    for (const period of PERIODS) points[period] = tally.aggregate(set, period, { timezone });
    return { points, read, total: performance.now() - t0 };
  } finally {
    set.free();
  }
}
