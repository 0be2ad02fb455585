// Metrics: the plain snapshot (exact request counts), the Prometheus text (parsed by a
// Prometheus text parser), and a prom-client registry scraping them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import parsePrometheusTextFormat from 'parse-prometheus-text-format';
import { Registry } from 'prom-client';
const OPENMETRICS = Registry.OPENMETRICS_CONTENT_TYPE;
import { EventualConsistencyPlugin } from '../index.js';
import { freshDb, plugin, WALLET_ATTRIBUTES } from './helpers.mjs';

async function setup(options = {}) {
  const db = await freshDb();
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  const p = plugin({ resources: { wallets: ['balance'] }, consolidation: { auto: false }, logLevel: 'silent', ...options });
  await db.usePlugin(p);
  await wallets.insert({ id: 'w1' });
  return { db, wallets, p };
}

const total = (r) => r.get + r.put + r.list + r.delete + r.deleteMany;

test('the snapshot counts every request exactly: an async add is one PUT', async () => {
  const { db, wallets, p } = await setup();
  const before = await p.metrics();
  await wallets.add('w1', 5);
  const after = await p.metrics();
  assert.equal(after.requests.put - before.requests.put, 1);
  // The snapshot's own LISTs (pending, dead letters) came after `before` was taken.
  assert.equal(total(after.requests) - total(before.requests) - (after.requests.list - before.requests.list), 1);
  assert.deepEqual(after.fields, [{ resource: 'wallets', field: 'balance', pending: 1, deadLetters: 0, lastSuccessAt: null, lastSuccessMs: null }]);
  assert.equal(after.consolidation.runs, 0);
  await p.consolidateAll();
  const ran = await p.metrics();
  assert.equal(ran.consolidation.runs, 1);
  assert.equal(ran.consolidation.transactionsApplied, 1);
  assert.equal(ran.consolidation.latencyMs.count, 1);
  assert.equal(ran.consolidation.latencyMs.buckets.at(-1).count, 1, 'cumulative buckets end at the count');
  assert.equal(ran.fields[0].pending, 0);
  assert.ok(Date.parse(ran.fields[0].lastSuccessAt) > 0);
  assert.equal(ran.requests.failures, 0);
  await db.disconnect();
});

test('Prometheus text exposition parses, and says what the snapshot says', async () => {
  const { db, wallets, p } = await setup();
  for (let i = 0; i < 3; i += 1) await wallets.add('w1', 1);
  await p.consolidateAll();
  await wallets.add('w1', 1);
  const text = await p.metrics('prometheus');
  const families = Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  const snap = await p.metrics();
  assert.equal(families.tally_requests_total.type, 'COUNTER');
  const puts = families.tally_requests_total.metrics.find((m) => m.labels.kind === 'put');
  assert.ok(Number(puts.value) >= 5 && Number(puts.value) <= snap.requests.put, text);
  const pending = families.tally_pending_transactions.metrics[0];
  assert.deepEqual([pending.labels, pending.value], [{ resource: 'wallets', field: 'balance' }, '1']);
  const h = families.tally_consolidation_duration_seconds;
  assert.equal(h.type, 'HISTOGRAM');
  assert.equal(h.metrics[0].count, '1');
  assert.equal(h.metrics[0].buckets['+Inf'], '1');
  assert.ok(Number(families.tally_last_success_timestamp_seconds.metrics[0].value) > 1.7e9);
  assert.equal(EventualConsistencyPlugin.PROMETHEUS_CONTENT_TYPE, 'text/plain; version=0.0.4; charset=utf-8');
  await assert.rejects(p.metrics('xml'), { code: 'ERR_INVALID_ARGUMENT' });
  await db.disconnect();
});

test('a prom-client registry scrapes the same families', async () => {
  const { db, wallets, p } = await setup();
  await wallets.add('w1', 2);
  const registry = new Registry();
  const names = p.registerMetrics(registry);
  assert.ok(names.includes('tally_requests_total'));
  const text = await registry.metrics();
  const families = Object.fromEntries(parsePrometheusTextFormat(text).map((f) => [f.name, f]));
  assert.deepEqual(Object.keys(families).sort(), [...names].sort());
  assert.equal(families.tally_pending_transactions.metrics[0].value, '1');
  assert.equal(families.tally_consolidation_duration_seconds.type, 'HISTOGRAM');
  assert.throws(() => p.registerMetrics({}), TypeError);
  assert.throws(() => p.registerMetrics(registry), { code: 'ERR_INVALID_ARGUMENT' });
  // OpenMetrics: prom-client renames counters; the samples keep one `_total`.
  const open = new Registry(OPENMETRICS);
  p.registerMetrics(open);
  const om = await open.metrics();
  assert.match(om, /^tally_requests_total\{kind="put"\} \d+$/m);
  assert.doesNotMatch(om, /_total_total/);
  await db.disconnect();
});
