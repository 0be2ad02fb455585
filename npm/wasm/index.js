// tally-ec/wasm: Tally's analytics for browsers (and Node), computed by WebAssembly over data
// the page holds. `import init, * as tally from 'tally-ec/wasm'`, `await init()`, then
// `tally.getDayByHour(transactions, '2025-10-09', { timezone: 'Europe/Berlin', fillGaps: true })`.
// The query functions take the plugin's arguments after (resource, field), with the
// transactions first; option objects may also carry `timezone`, `now` and `metrics`.
import initWasm, * as wasm from './pkg/tally_wasm.js';

let ready;

/** Loads the WebAssembly module once. In browsers and bundlers it is fetched next to this
 * file; in Node it is read from disk. Pass `{ module_or_path }` to load it from elsewhere. */
export default function init(input) {
  if (!ready) {
    ready = (async () => {
      if (input === undefined && typeof process !== 'undefined' && process.versions?.node) {
        const { readFile } = await import('node:fs/promises');
        input = { module_or_path: await readFile(new URL('./pkg/tally_wasm_bg.wasm', import.meta.url)) };
      }
      await initWasm(input);
    })();
  }
  return ready;
}

const OPS = { add: 0, sub: 1, set: 2 };

/** Reads transactions into WebAssembly memory once, for many queries: the query functions take
 * the result in place of the array. Free it with `.free()` when done (it is also freed when
 * garbage-collected). Well-formed arrays go over as columns; anything unusual is read item by
 * item by the same rules, with the same errors. */
export function prepare(transactions) {
  if (transactions instanceof wasm.Transactions) return transactions;
  return (Array.isArray(transactions) && columns(transactions)) || wasm.Transactions.fromArray(transactions);
}

/** Columns for `Transactions.fromColumns`, or null when an item needs the item-by-item reader. */
function columns(txs) {
  const n = txs.length;
  const index = new Map();
  const ids = [];
  const idOf = new Uint32Array(n);
  const times = new Float64Array(n);
  const ops = new Uint8Array(n);
  const values = new Float64Array(n);
  const applied = new Uint8Array(n);
  const timeText = [];
  const valueText = [];
  for (let i = 0; i < n; i++) {
    const t = txs[i];
    if (t === null || typeof t !== 'object' || Array.isArray(t)) return null;
    let id = 'originalId' in t ? t.originalId : t.recordId;
    if (typeof id === 'number' && Number.isSafeInteger(id)) id = String(id);
    if (typeof id !== 'string') return null;
    let k = index.get(id);
    if (k === undefined) {
      k = ids.length;
      index.set(id, k);
      ids.push(id);
    }
    idOf[i] = k;
    const ts = numberOrText(t.timestamp, timeText);
    const v = numberOrText(t.value, valueText);
    if (ts === null || v === null) return null;
    times[i] = ts;
    values[i] = v;
    const op = t.operation ?? 'add';
    if (!Object.hasOwn(OPS, op)) return null;
    ops[i] = OPS[op];
    applied[i] = t.applied === false ? 0 : 1;
  }
  return wasm.Transactions.fromColumns(ids, idOf, times, timeText.join('\n'), ops, values, valueText.join('\n'), applied);
}

/** Reads transactions given as columns, the fastest way in: `recordIds` (the distinct
 * record ids), `records` (a Uint32Array: each transaction's index into `recordIds`),
 * `timestamps` (a Float64Array of epoch ms), `operations` (a Uint8Array: 0 add, 1 sub,
 * 2 set), `values` (a Float64Array) and optionally `applied` (a Uint8Array of 0/1; all
 * applied when left out). Columns of the wrong type or length, a NaN, or an index out of
 * range throw an Error with code ERR_INVALID_ARGUMENT. */
export function prepareColumns(columns) {
  const { recordIds, records, timestamps, operations, values, applied } = columns ?? {};
  const want = (ok, what) => {
    if (!ok) throw Object.assign(new Error(`prepareColumns: ${what}`), { code: 'ERR_INVALID_ARGUMENT' });
  };
  // A loop, not every(): every() skips the holes of a sparse array.
  const strings = (ids) => {
    for (let i = 0; i < ids.length; i++) if (typeof ids[i] !== 'string') return false;
    return true;
  };
  want(Array.isArray(recordIds) && strings(recordIds), 'recordIds must be an array of strings');
  want(records instanceof Uint32Array, 'records must be a Uint32Array');
  want(timestamps instanceof Float64Array, 'timestamps must be a Float64Array');
  want(operations instanceof Uint8Array, 'operations must be a Uint8Array');
  want(values instanceof Float64Array, 'values must be a Float64Array');
  want(applied === undefined || applied instanceof Uint8Array, 'applied must be a Uint8Array when given');
  const n = records.length;
  want([timestamps, operations, values, applied ?? records].every((c) => c.length === n), 'every column must have the same length');
  // NaN marks a text value in the columns the array reader sends; here there is no text.
  for (let i = 0; i < n; i++) {
    want(timestamps[i] === timestamps[i] && values[i] === values[i], `timestamps and values must be numbers (NaN at ${i})`);
  }
  return wasm.Transactions.fromColumns(recordIds, records, timestamps, '', operations, values, '', applied ?? new Uint8Array(n).fill(1));
}

/** A finite number as it is; text (without a newline) as NaN, kept in `texts`; else null. */
function numberOrText(x, texts) {
  if (typeof x === 'number' && Number.isFinite(x)) return x;
  if (typeof x === 'string' && !x.includes('\n')) {
    texts.push(x);
    return NaN;
  }
  return null;
}

/** Runs `fn` over prepared transactions, freeing them afterwards if prepared here. */
function withPrepared(transactions, fn) {
  const set = prepare(transactions);
  try {
    return fn(set);
  } finally {
    if (set !== transactions) set.free();
  }
}

const q = (name) => (transactions, ...args) => withPrepared(transactions, (set) => set.query(name, args));

export const getAnalytics = q('getAnalytics');
export const getDayByHour = q('getDayByHour');
export const getWeekByDay = q('getWeekByDay');
export const getWeekByHour = q('getWeekByHour');
export const getMonthByDay = q('getMonthByDay');
export const getMonthByHour = q('getMonthByHour');
export const getMonthByWeek = q('getMonthByWeek');
export const getYearByDay = q('getYearByDay');
export const getYearByWeek = q('getYearByWeek');
export const getYearByMonth = q('getYearByMonth');
export const getLastNHours = q('getLastNHours');
export const getLastNDays = q('getLastNDays');
export const getLastNWeeks = q('getLastNWeeks');
export const getLastNMonths = q('getLastNMonths');
export const getLastNPeriods = q('getLastNPeriods');
export const getAnalyticsByTimeRange = q('getAnalyticsByTimeRange');
export const getTopRecords = q('getTopRecords');

/** Points for every cohort of `period` that has transactions (getAnalytics without a range). */
export const aggregate = (transactions, period, options = {}) => getAnalytics(transactions, { ...options, period });

/** Transactions read into WebAssembly memory (see `prepare`). */
export const Transactions = wasm.Transactions;

/** Any query function by name, with the plugin's arguments after (resource, field). */
export const query = (name, transactions, args) => withPrepared(transactions, (set) => set.query(name, args));

export const { queryFunctions, cohorts, range, fillGaps, rollup, isoWeek, weeksInYear } = wasm;
