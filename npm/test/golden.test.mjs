// The golden analytics fixtures (tests/golden/analytics.json, generated and checked by
// core/tests/golden.rs) asserted through the Node addon — the transactions written through
// the plugin with its clock, then every query — and through the WASM build in Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { S3db } from '../index.js';
import init, * as tally from '../wasm/index.js';
import { plugin, wasmArgs } from './helpers.mjs';

const fixture = JSON.parse(readFileSync(new URL('../../tests/golden/analytics.json', import.meta.url), 'utf8'));
const { resource, field, transactions, cases } = fixture;
const zones = [...new Set(cases.map((c) => c.timezone))];

for (const zone of zones) {
  test(`addon: ${cases.filter((c) => c.timezone === zone).length} golden queries in ${zone}`, async () => {
    let now = 0;
    const db = new S3db({ connectionString: `memory://golden-${process.pid}-${zone.replace(/\W/g, '')}/app` });
    const p = plugin({
      resources: { [resource]: [field] },
      consolidation: { mode: 'async', auto: false },
      analytics: { enabled: true, periods: ['hour', 'day', 'week', 'month'] },
      cohort: { timezone: zone },
      clock: () => now,
    });
    await db.usePlugin(p);
    const r = await db.createResource({ name: resource, attributes: { id: 'string|required', [field]: 'number|default:0' } });
    for (const id of new Set(transactions.map((t) => t.originalId))) await r.insert({ id });
    const write = async (t) => {
      now = Date.parse(t.timestamp);
      await r[t.operation](t.originalId, field, t.value);
    };
    for (const t of transactions.filter((t) => t.applied)) await write(t);
    await p.consolidateAll();
    for (const t of transactions.filter((t) => !t.applied)) await write(t);
    now = Date.parse(fixture.now);
    for (const c of cases.filter((c) => c.timezone === zone)) {
      const got = await p[c.function](resource, field, ...c.args);
      assert.deepEqual(got, c.expected, `${c.function}(${JSON.stringify(c.args)}) in ${zone}`);
    }
    await db.disconnect();
  });
}

test(`wasm in Node: all ${cases.length} golden queries`, async () => {
  await init();
  for (const c of cases) {
    const got = tally[c.function](transactions, ...wasmArgs(c, fixture.now));
    assert.deepEqual(got, c.expected, `${c.function}(${JSON.stringify(c.args)}) in ${c.timezone}`);
  }
});

test('wasm: a prepared set and the item-by-item reader give the golden answers too', async () => {
  await init();
  const columns = tally.prepare(transactions);
  const items = tally.Transactions.fromArray(transactions);
  assert.equal(columns.length, transactions.length);
  assert.equal(tally.prepare(columns), columns, 'a prepared set is taken as it is');
  for (const c of cases) {
    for (const [name, set] of [['columns', columns], ['items', items]]) {
      const got = tally[c.function](set, ...wasmArgs(c, fixture.now));
      assert.deepEqual(got, c.expected, `${name}: ${c.function}(${JSON.stringify(c.args)}) in ${c.timezone}`);
    }
  }
  columns.free();
  items.free();
});

test('wasm: typed-array columns give the golden answers, and bad columns are refused', async () => {
  await init();
  const recordIds = [...new Set(transactions.map((t) => String(t.originalId)))];
  const cols = {
    recordIds,
    records: Uint32Array.from(transactions, (t) => recordIds.indexOf(String(t.originalId))),
    timestamps: Float64Array.from(transactions, (t) => (typeof t.timestamp === 'number' ? t.timestamp : Date.parse(t.timestamp))),
    operations: Uint8Array.from(transactions, (t) => ['add', 'sub', 'set'].indexOf(t.operation ?? 'add')),
    values: Float64Array.from(transactions, (t) => Number(t.value)),
    applied: Uint8Array.from(transactions, (t) => (t.applied === false ? 0 : 1)),
  };
  const set = tally.prepareColumns(cols);
  assert.equal(set.length, transactions.length);
  for (const c of cases) {
    assert.deepEqual(tally[c.function](set, ...wasmArgs(c, fixture.now)), c.expected, `${c.function}(${JSON.stringify(c.args)}) in ${c.timezone}`);
  }
  set.free();
  const n = transactions.length;
  for (const [bad, why] of [
    [{ ...cols, records: Array.from(cols.records) }, /records must be a Uint32Array/],
    [{ ...cols, values: cols.values.subarray(1) }, /same length/],
    [{ ...cols, timestamps: new Float64Array(n).fill(NaN) }, /NaN at 0/],
    [{ ...cols, operations: new Uint8Array(n).fill(3) }, /operation must be add, sub or set/],
    [{ ...cols, recordIds: [] }, /record index out of range/],
    [null, /recordIds must be an array/],
    [{ ...cols, recordIds: [, ...recordIds.slice(1)] }, /recordIds must be an array of strings/], // eslint-disable-line no-sparse-arrays
  ]) {
    assert.throws(() => tally.prepareColumns(bad), (e) => e instanceof Error && e.code === 'ERR_INVALID_ARGUMENT' && why.test(e.message), String(why));
  }
});

test('wasm: every transaction form reads the same through columns and item by item', async () => {
  await init();
  const forms = [
    { originalId: 'a', timestamp: '2025-03-09T07:30:00Z', value: 5 },
    { originalId: 'a', timestamp: Date.parse('2025-03-09T08:10:00Z') + 0.7, value: '2.50', operation: 'sub' },
    { recordId: 'b', timestamp: '2025-03-09T09:00:00+02:00', value: 0.1, operation: 'set' },
    { originalId: 7, timestamp: '2025-03-09T10:00:00.123456Z', value: 1e-7, operation: 'add', applied: false },
    { originalId: 'c', timestamp: '2025-03-09T11:00:00Z', value: -3, operation: null, applied: 'no' },
  ];
  const args = ['2025-03-09', { fillGaps: true, includePending: true, timezone: 'America/New_York' }];
  const viaItems = tally.Transactions.fromArray(forms).query('getDayByHour', args);
  assert.deepEqual(tally.getDayByHour(forms, ...structuredClone(args)), viaItems);
  assert.equal(viaItems.reduce((n, p) => n + p.count, 0), 5);
  const top = tally.getTopRecords(forms, { period: 'day', date: '2025-03-09' });
  assert.deepEqual(new Set(top.map((r) => r.recordId)), new Set(['a', 'b', 'c', '7']));
  // Malformed items: the same codes whichever way they are read.
  for (const [bad, code] of [
    [{ originalId: 'a', timestamp: '2025-03-09 07:30', value: 1 }, 'ERR_INVALID_DATE'],
    [{ originalId: 'a', timestamp: '2025-03-09T07:30:00Z', value: 'ten' }, 'ERR_INVALID_ARGUMENT'],
    [{ originalId: 'a', timestamp: 9e15, value: 1 }, 'ERR_INVALID_ARGUMENT'],
    [{ originalId: 'a', timestamp: '2025-03-09T07:30:00Z', value: 1, operation: 'mul' }, 'ERR_INVALID_ARGUMENT'],
    [{ timestamp: '2025-03-09T07:30:00Z', value: 1 }, 'ERR_INVALID_ARGUMENT'],
    [{ originalId: 'a', timestamp: '2025-03-09T07:30\n:00Z', value: 1 }, 'ERR_INVALID_DATE'],
    ['not an object', 'ERR_INVALID_ARGUMENT'],
  ]) {
    const txs = [forms[0], bad];
    assert.throws(() => tally.prepare(txs), (e) => e instanceof Error && e.code === code, `prepare: ${JSON.stringify(bad)}`);
    assert.throws(() => tally.Transactions.fromArray(txs), (e) => e.code === code, `items: ${JSON.stringify(bad)}`);
  }
});

test('wasm: its query functions are the plugin\'s, the addon\'s and the core\'s', async () => {
  await init();
  const { QUERY_FUNCTIONS } = await import('../lib/plugin.cjs');
  const { default: native } = await import('../lib/native.cjs');
  assert.deepEqual(tally.queryFunctions(), QUERY_FUNCTIONS);
  assert.deepEqual(native.queryFunctions(), QUERY_FUNCTIONS);
  assert.deepEqual(native.resourceMethods(), ['set', 'add', 'sub', 'increment', 'decrement', 'consolidate', 'getConsolidatedValue', 'recalculate']);
  for (const name of QUERY_FUNCTIONS.filter((n) => n !== 'getRawEvents')) assert.equal(typeof tally[name], 'function', name);
});

test('wasm: errors are Error objects with a code; helpers', async () => {
  await init();
  for (const [call, code] of [
    [() => tally.getYearByWeek(transactions, '2025-W54'), 'ERR_INVALID_DATE'],
    [() => tally.getMonthByDay(transactions, '2025-13'), 'ERR_INVALID_DATE'],
    [() => tally.getDayByHour(transactions, '2025-02-30'), 'ERR_INVALID_DATE'],
    [() => tally.getDayByHour(transactions, '2025-03-09', { timezone: 'Mars/Olympus' }), 'ERR_INVALID_CONFIG'],
    [() => tally.getDayByHour([{ originalId: 'a' }], '2025-03-09'), 'ERR_INVALID_ARGUMENT'],
    [() => tally.rollup([{ cohort: '2025-03' }], 'day'), 'ERR_INVALID_ARGUMENT'],
  ]) {
    assert.throws(call, (e) => e instanceof Error && e.code === code, code);
  }
  assert.deepEqual(tally.cohorts('2025-03-09T07:30:00Z', 'America/New_York'), {
    cohortHour: '2025-03-09T03', cohortDate: '2025-03-09', cohortWeek: '2025-W10', cohortMonth: '2025-03',
  });
  assert.equal(tally.isoWeek('2026-01-01'), '2026-W01');
  assert.equal(tally.weeksInYear(2026), 53);
  assert.equal(tally.weeksInYear(2025), 52);
  assert.equal(tally.range('day', '2025-02-27', '2025-03-02').length, 4);
  assert.equal(tally.getYearByWeek([], '2025', { fillGaps: true }).length, 52);
  assert.equal(tally.getYearByWeek([], '2026', { fillGaps: true }).length, 53);
});

test('wasm: rolling hours up into days equals aggregating by day', async () => {
  await init();
  for (const timezone of zones) {
    const applied = transactions.filter((t) => t.applied);
    const hours = tally.aggregate(applied, 'hour', { timezone });
    const days = tally.aggregate(applied, 'day', { timezone });
    const rolled = tally.rollup(hours, 'day');
    assert.equal(rolled.length, days.length);
    rolled.forEach((p, i) => {
      const d = days[i];
      assert.equal(p.cohort, d.cohort);
      for (const k of ['count', 'sum', 'min', 'max']) assert.equal(p[k], d[k], `${timezone} ${p.cohort} ${k}`);
      assert.ok(p.recordCount <= d.recordCount, 'a rolled-up recordCount is a lower bound');
    });
  }
});
