// Analytics queries of SPEC §6 from JavaScript, with a fixed clock and cohort.timezone; run
// under several process time zones by scripts/test-node.sh (results must not change).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { TallyError } from '../index.js';
import { freshDb, plugin } from './helpers.mjs';

const H = 3_600_000;
const T0 = Date.UTC(2025, 9, 9, 14, 5); // 2025-10-09T14:05Z, a Thursday (2025-W41)

async function setup(extra = {}) {
  let now = T0;
  const db = await freshDb();
  const ec = plugin({
    resources: { urls: ['clicks', 'utm'] },
    consolidation: { mode: 'async', auto: false },
    analytics: { enabled: true },
    clock: () => now,
    ...extra,
  });
  await db.usePlugin(ec);
  const urls = await db.createResource({
    name: 'urls',
    attributes: { clicks: 'number|default:0', utm: 'json|optional' },
  });
  for (const id of ['a', 'b', 'c']) await urls.insert({ id, utm: {} });
  const at = async (ms, fn) => {
    now = ms;
    return fn();
  };
  return { db, ec, urls, at, setNow: (ms) => (now = ms) };
}

async function seed(s) {
  await s.at(T0, () => s.urls.add('a', 'clicks', 5));
  await s.at(T0 + 1, () => s.urls.add('b', 'clicks', 3));
  await s.at(T0 + 2, () => s.urls.sub('a', 'clicks', 2));
  await s.at(T0 + 2 * H, () => s.urls.add('c', 'clicks', 10));
  await s.at(T0 + 24 * H, () => s.urls.set('a', 'clicks', 1));
  await s.ec.consolidateAll();
}

test('getDayByHour gives chart-ready points; fillGaps gives all 24 hours', async () => {
  const s = await setup();
  await seed(s);
  const sparse = await s.ec.getDayByHour('urls', 'clicks', '2025-10-09');
  assert.deepEqual(sparse.map((p) => p.cohort), ['2025-10-09T14', '2025-10-09T16']);
  assert.deepEqual(sparse[0], {
    cohort: '2025-10-09T14', count: 3, sum: 6, avg: 2, min: -2, max: 5, recordCount: 2,
    operations: { add: { count: 2, sum: 8 }, sub: { count: 1, sum: -2 } },
  });
  const full = await s.ec.getDayByHour('urls', 'clicks', '2025-10-09', { fillGaps: true });
  assert.equal(full.length, 24);
  assert.deepEqual(full[0], { cohort: '2025-10-09T00', count: 0, sum: 0, avg: 0, min: 0, max: 0, recordCount: 0, operations: {} });
  await s.db.disconnect();
});

test('week, month and year breakdowns with ISO weeks', async () => {
  const s = await setup();
  await seed(s);
  const week = await s.ec.getWeekByDay('urls', 'clicks', '2025-W41', { fillGaps: true });
  assert.equal(week.length, 7);
  assert.equal(week[0].cohort, '2025-10-06');
  assert.equal(week[3].count, 4);
  assert.equal(week[4].count, 1);
  assert.equal((await s.ec.getWeekByHour('urls', 'clicks', '2025-W41', { fillGaps: true })).length, 168);
  assert.equal((await s.ec.getMonthByDay('urls', 'clicks', '2025-10', { fillGaps: true })).length, 31);
  assert.equal((await s.ec.getMonthByWeek('urls', 'clicks', '2025-10', { fillGaps: true })).length, 5);
  assert.equal((await s.ec.getYearByWeek('urls', 'clicks', 2025, { fillGaps: true })).length, 52);
  assert.equal((await s.ec.getYearByWeek('urls', 'clicks', 2026, { fillGaps: true })).length, 53);
  assert.equal((await s.ec.getYearByDay('urls', 'clicks', 2024, { fillGaps: true })).length, 366);
  const months = await s.ec.getYearByMonth('urls', 'clicks', 2025, { fillGaps: true });
  assert.equal(months.length, 12);
  assert.equal(months[9].count, 5);
  assert.equal(months[9].sum, 17);
  const monthTotal = await s.ec.getAnalytics('urls', 'clicks', { period: 'month', date: '2025-10' });
  assert.equal(monthTotal[0].recordCount, 3);
  await s.db.disconnect();
});

test('impossible dates reject with ERR_INVALID_DATE', async () => {
  const s = await setup();
  for (const call of [
    () => s.ec.getWeekByDay('urls', 'clicks', '2025-W54'),
    () => s.ec.getMonthByDay('urls', 'clicks', '2025-13'),
    () => s.ec.getDayByHour('urls', 'clicks', '2025-02-30'),
    () => s.ec.getYearByWeek('urls', 'clicks', 'MMXXV'),
  ]) {
    await assert.rejects(call(), (e) => e instanceof TallyError && e.code === 'ERR_INVALID_DATE');
  }
  await s.db.disconnect();
});

test('last N functions return exactly N cohorts ending with the current one', async () => {
  const s = await setup();
  await seed(s);
  s.setNow(T0 + 24 * H + 5);
  const days = await s.ec.getLastNDays('urls', 'clicks', 7, { fillGaps: true });
  assert.equal(days.length, 7);
  assert.equal(days.at(-1).cohort, '2025-10-10');
  assert.equal((await s.ec.getLastNHours('urls', 'clicks', undefined, { fillGaps: true })).length, 24);
  assert.equal((await s.ec.getLastNWeeks('urls', 'clicks', 4, { fillGaps: true })).length, 4);
  const months = await s.ec.getLastNMonths('urls', 'clicks', 12, { fillGaps: true });
  assert.equal(months.length, 12);
  assert.equal(months.at(-1).cohort, '2025-10');
  const periods = await s.ec.getLastNPeriods('urls', 'clicks', 'day', 2);
  assert.deepEqual(periods.map((p) => p.cohort), ['2025-10-09', '2025-10-10']);
  await s.db.disconnect();
});

test('includePending counts transactions not yet consolidated', async () => {
  const s = await setup();
  await seed(s);
  await s.at(T0 + 3, () => s.urls.add('b', 'clicks', 100));
  const [applied] = await s.ec.getAnalytics('urls', 'clicks', { period: 'day', date: '2025-10-09' });
  const [withPending] = await s.ec.getAnalytics('urls', 'clicks', { period: 'day', date: '2025-10-09', includePending: true });
  assert.equal(applied.sum, 16);
  assert.equal(withPending.sum, 116);
  await s.db.disconnect();
});

test('points are materialized: they outlive GC, and includePending counts a record once per cohort', async () => {
  const s = await setup({ garbageCollection: { retention: 0 } });
  await seed(s);
  for (const id of ['a', 'b', 'c']) await s.at(T0 + 25 * H, () => s.urls.add(id, 'clicks', 1));
  await s.ec.consolidateAll();
  const before = await s.ec.getMonthByDay('urls', 'clicks', '2025-10');
  assert.deepEqual(before.map((p) => [p.cohort, p.count, p.recordCount]), [['2025-10-09', 4, 3], ['2025-10-10', 4, 3]]);
  const appliedBefore = (await s.ec.getRawEvents('urls', 'clicks', { applied: true })).length;
  s.setNow(T0 + 3 * 24 * H);
  await s.ec.runGC();
  const appliedAfter = (await s.ec.getRawEvents('urls', 'clicks', { applied: true })).length;
  assert.ok(appliedAfter < appliedBefore, `GC collected applied transactions (${appliedBefore} → ${appliedAfter})`);
  assert.deepEqual(await s.ec.getMonthByDay('urls', 'clicks', '2025-10'), before);
  // 'a' already counts on 2025-10-09; its pending transaction must not count it twice.
  await s.at(T0 + 4, () => s.urls.add('a', 'clicks', 1));
  const [day] = await s.ec.getAnalytics('urls', 'clicks', { period: 'day', date: '2025-10-09', includePending: true });
  assert.deepEqual([day.count, day.recordCount], [5, 3]);
  await s.db.disconnect();
});

test('getTopRecords takes date or cohort and sortBy or metric; ties by record id', async () => {
  const s = await setup();
  await seed(s);
  const byCount = await s.ec.getTopRecords('urls', 'clicks', { period: 'day', date: '2025-10-09' });
  assert.deepEqual(byCount, [
    { recordId: 'a', count: 2, sum: 3 },
    { recordId: 'b', count: 1, sum: 3 },
    { recordId: 'c', count: 1, sum: 10 },
  ]);
  const bySum = await s.ec.getTopRecords('urls', 'clicks', { period: 'day', cohort: '2025-10-09', sortBy: 'totalValue', limit: 1 });
  assert.deepEqual(bySum, [{ recordId: 'c', count: 1, sum: 10 }]);
  assert.deepEqual(await s.ec.getTopRecords('urls', 'clicks', { metric: 'totalValue', limit: 2 }), [
    { recordId: 'c', count: 1, sum: 10 },
    { recordId: 'a', count: 3, sum: 4 },
  ]);
  await s.db.disconnect();
});

test('getRawEvents pages through everything asked for, oldest first, with filters', async () => {
  const s = await setup();
  for (let i = 0; i < 250; i++) await s.at(T0 + i * 1000, () => s.urls.increment('a', 'clicks'));
  await s.ec.consolidateAll();
  await s.at(T0 + 999_999, () => s.urls.add('b', 'clicks', 2));
  const all = await s.ec.getRawEvents('urls', 'clicks');
  assert.equal(all.length, 251);
  assert.ok(all.every((e, i) => i === 0 || all[i - 1].timestamp <= e.timestamp));
  assert.equal((await s.ec.getRawEvents('urls', 'clicks', { applied: false })).length, 1);
  assert.equal((await s.ec.getRawEvents('urls', 'clicks', { recordId: 'a', limit: 120 })).length, 120);
  await s.db.disconnect();
});

test('nested paths aggregate by the root field; breakdown flattens operations', async () => {
  const s = await setup();
  await s.at(T0, () => s.urls.add('a', 'utm.medium', 10));
  await s.at(T0, () => s.urls.add('a', 'utm.google', 5));
  await s.ec.consolidateAll();
  const [p] = await s.ec.getDayByHour('urls', 'utm', '2025-10-09', { breakdown: 'operations' });
  assert.equal(p.sum, 15);
  assert.deepEqual(p.add, { count: 2, sum: 15 });
  assert.equal(p.operations, undefined);
  await s.db.disconnect();
});

test('analytics disabled: queries reject with ERR_ANALYTICS_DISABLED, top records and raw events still work', async () => {
  const s = await setup({ analytics: { enabled: false } });
  await seed(s);
  await assert.rejects(s.ec.getDayByHour('urls', 'clicks', '2025-10-09'), (e) => e.code === 'ERR_ANALYTICS_DISABLED');
  await assert.rejects(s.ec.getLastNDays('urls', 'clicks'), (e) => e.code === 'ERR_ANALYTICS_DISABLED');
  assert.equal((await s.ec.getTopRecords('urls', 'clicks', {})).length, 3);
  assert.equal((await s.ec.getRawEvents('urls', 'clicks', {})).length, 5);
  await s.db.disconnect();
});

test('fillGaps(data, period, start, end) for hours given as days, and for weeks', async () => {
  const s = await setup({ analytics: { enabled: true, metrics: ['count', 'sum'] } });
  const hours = s.ec.fillGaps([{ cohort: '2025-10-09T05', count: 1, sum: 2 }], 'hour', '2025-10-09', '2025-10-09');
  assert.equal(hours.length, 24);
  assert.deepEqual(hours[5], { cohort: '2025-10-09T05', count: 1, sum: 2 });
  assert.deepEqual(hours[0], { cohort: '2025-10-09T00', count: 0, sum: 0, recordCount: 0, operations: {} });
  assert.equal(s.ec.fillGaps([], 'week', '2025-W52', '2026-W02').length, 3);
  assert.throws(() => s.ec.fillGaps([], 'month', '2025-01', '2025-13'), (e) => e.code === 'ERR_INVALID_DATE');
  await s.db.disconnect();
});

test('DST in cohort.timezone: a fall-back day has 24 labels and counts all 25 hours once', async () => {
  const s = await setup({ cohort: { timezone: 'America/New_York' } });
  const start = Date.UTC(2025, 10, 2, 4); // 00:00 EDT
  for (let i = 0; i < 25; i++) await s.at(start + i * H, () => s.urls.add('a', 'clicks', 1));
  await s.ec.consolidateAll();
  const day = await s.ec.getDayByHour('urls', 'clicks', '2025-11-02', { fillGaps: true });
  assert.equal(day.length, 24);
  assert.equal(day.reduce((n, p) => n + p.count, 0), 25);
  assert.equal(day.find((p) => p.cohort === '2025-11-02T01').count, 2);
  const spring = await s.ec.getDayByHour('urls', 'clicks', '2025-03-09', { fillGaps: true });
  assert.equal(spring.length, 23);
  await s.db.disconnect();
});
