// The golden analytics fixtures (tests/golden/analytics.json, generated and checked by
// core/tests/golden.rs) asserted through the Node addon — the transactions written through
// the plugin with its clock, then every query — and through the WASM build in Node.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { S3db } from '../index.js';
import init, * as tally from '../wasm/index.js';
import { plugin } from './helpers.mjs';

const fixture = JSON.parse(readFileSync(new URL('../../tests/golden/analytics.json', import.meta.url), 'utf8'));
const { resource, field, transactions, cases } = fixture;
const zones = [...new Set(cases.map((c) => c.timezone))];

/** The case's arguments with `timezone` and `now` in its options object (added if absent). */
export function wasmArgs(c, now) {
  const args = structuredClone(c.args);
  const last = args[args.length - 1];
  const env = { timezone: c.timezone, now };
  if (last && typeof last === 'object' && !Array.isArray(last)) Object.assign(last, env);
  else args.push(env);
  return args;
}

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

test('wasm: its query functions are the plugin\'s and the core\'s', async () => {
  await init();
  const { QUERY_FUNCTIONS } = await import('../lib/plugin.cjs');
  assert.deepEqual(tally.queryFunctions(), QUERY_FUNCTIONS);
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
