// SPEC §1–§7 from JavaScript: option forms, argument forms, idempotency, reducers, the clock,
// missing records, standalone database behaviour, status and GC.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { S3db, TallyError } from '../index.js';
import { folderDb, freshDb, HOST, plugin, WALLET_ATTRIBUTES } from './helpers.mjs';

async function wallets(options = {}) {
  const db = await freshDb();
  const ec = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' }, ...options });
  await db.usePlugin(ec);
  const r = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  return { db, ec, wallets: r };
}

test('single-field shorthand, signed amounts and set', async () => {
  const { db, wallets: w } = await wallets();
  await w.insert({ id: 'w', balance: 0 });
  assert.equal(await w.add('w', 10), 10);
  assert.equal(await w.add('w', -5), 5, 'add(-5) subtracts 5');
  assert.equal(await w.sub('w', -5), 10, 'sub(-5) adds 5');
  assert.equal(await w.increment('w'), 11);
  assert.equal(await w.decrement('w'), 10);
  assert.equal(await w.set('w', 42), 42);
  for (let i = 0; i < 10; i++) await w.add('w', 0.1);
  assert.equal(await w.getConsolidatedValue('w'), 43, 'ten add(0.1) are exactly 1');
  await db.disconnect();
});

test('the 21.6.2 order getConsolidatedValue(field, id) and recalculate(field, id) are accepted', async () => {
  const { db, wallets: w } = await wallets();
  await w.insert({ id: 'w', balance: 5 });
  await w.add('w', 'balance', 7);
  assert.equal(await w.getConsolidatedValue('balance', 'w'), 12);
  assert.equal(await w.getConsolidatedValue('w', 'balance'), 12);
  assert.equal(await w.recalculate('balance', 'w'), 12);
  assert.equal(await w.recalculate('w'), 12, 'recalculate starts from the value before the first transaction');
  await db.disconnect();
});

test('idempotency keys: a retry changes nothing and resolves like the first; a different amount is rejected', async () => {
  const { db, wallets: w } = await wallets();
  await w.insert({ id: 'w', balance: 0 });
  assert.equal(await w.add('w', 25, { idempotencyKey: 'order-1' }), 25);
  await w.add('w', 1);
  assert.equal(await w.add('w', 25, { idempotencyKey: 'order-1' }), 25, 'the value the first produced');
  assert.equal((await w.get('w')).balance, 26);
  await assert.rejects(w.add('w', 30, { idempotencyKey: 'order-1' }), (e) => e.code === 'ERR_IDEMPOTENCY_MISMATCH');
  await db.disconnect();
});

test('async mode: the transaction object, and the same one for an idempotent retry', async () => {
  const { db, wallets: w } = await wallets({ consolidation: { mode: 'async', auto: false } });
  await w.insert({ id: 'w', balance: 0 });
  const tx = await w.add('w', 3, { idempotencyKey: 'k', source: 'checkout' });
  for (const key of ['id', 'originalId', 'field', 'fieldPath', 'value', 'operation', 'timestamp', 'cohortHour', 'cohortDate', 'cohortWeek', 'cohortMonth', 'applied', 'source', 'idempotencyKey']) {
    assert.ok(key in tx, key);
  }
  assert.equal(tx.originalId, 'w');
  assert.equal(tx.value, 3);
  assert.match(tx.timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const again = await w.add('w', 3, { idempotencyKey: 'k' });
  assert.equal(again.id, tx.id);
  assert.equal(await w.consolidate('w'), 3);
  await db.disconnect();
});

test('a custom reducer receives (current, transaction) and replaces the rule', async () => {
  const db = await freshDb();
  const seen = [];
  await db.usePlugin(
    plugin({
      resources: [
        {
          resource: 'scores',
          fields: [{ field: 'best', reducer: (current, tx) => (seen.push(tx.operation), Math.max(current, tx.value)) }],
        },
      ],
      consolidation: { mode: 'sync' },
    }),
  );
  const scores = await db.createResource({ name: 'scores', attributes: { best: 'number|default:0' } });
  await scores.insert({ id: 'p' });
  await scores.add('p', 7);
  await scores.add('p', 3);
  assert.equal(await scores.add('p', 9), 9);
  assert.equal((await scores.get('p')).best, 9);
  assert.deepEqual(seen, ['add', 'add', 'add']);
  await db.disconnect();
});

test('a reducer that throws fails the consolidation with a coded error and applies nothing', async () => {
  const db = await freshDb();
  await db.usePlugin(
    plugin({
      resources: [{ resource: 'scores', fields: [{ field: 'best', reducer: () => { throw new Error('boom'); } }] }],
      consolidation: { mode: 'sync' },
    }),
  );
  const scores = await db.createResource({ name: 'scores', attributes: { best: 'number|default:0' } });
  await scores.insert({ id: 'p' });
  await assert.rejects(scores.add('p', 7), (e) => e instanceof TallyError && /boom/.test(e.message));
  assert.equal((await scores.get('p')).best, 0);
  await db.disconnect();
});

test('a transaction that cannot be applied is set aside as a dead letter; later ones still apply', async () => {
  const db = await freshDb();
  const p = plugin({
    resources: [
      {
        resource: 'scores',
        fields: [{ field: 'total', reducer: (current, tx) => {
          if (tx.value === 13) throw new Error('unlucky');
          return current + tx.value;
        } }],
      },
    ],
    consolidation: { mode: 'async', auto: false },
  });
  await db.usePlugin(p);
  const errors = [];
  p.on('plg:eventual-consistency:consolidation-error', (e) => errors.push(e));
  const scores = await db.createResource({ name: 'scores', attributes: { total: 'number|default:0' } });
  await scores.insert({ id: 'p' });
  await scores.add('p', 1);
  const bad = await scores.add('p', 13);
  await scores.add('p', 2);
  assert.equal(await scores.consolidate('p'), 3, 'the poison is set aside, the others apply');
  const dead = await p.getDeadLetters('scores', 'total');
  assert.equal(dead.length, 1);
  assert.equal(dead[0].recordId, 'p');
  assert.equal(dead[0].transaction.id, bad.id);
  assert.equal(dead[0].error.code, 'ERR_INVALID_ARGUMENT');
  assert.match(dead[0].error.message, /unlucky/);
  assert.ok(errors.some((e) => e.recordId === 'p' && e.error.message.includes(bad.id)), 'an event names it');
  assert.deepEqual((await p.getStatus()).deadLetters, { 'scores.total': 1 });
  // Retried, it fails again and is set aside again; discarded, it is gone for good.
  await p.retryDeadLetter('scores', 'total', 'p', dead[0].name);
  assert.equal(await scores.consolidate('p'), 3);
  const again = await p.getDeadLetters('scores', 'total');
  assert.equal(again.length, 1);
  await p.discardDeadLetter('scores', 'total', 'p', again[0].name);
  assert.deepEqual(await p.getDeadLetters('scores', 'total'), []);
  await assert.rejects(p.discardDeadLetter('scores', 'total', 'p', again[0].name), (e) => e.code === 'ERR_RECORD_NOT_FOUND');
  await db.disconnect();
});

test('the clock option fixes transaction timestamps and cohorts, in cohort.timezone', async () => {
  let now = Date.UTC(2025, 9, 9, 23, 30);
  const { db, wallets: w } = await wallets({
    consolidation: { mode: 'async', auto: false },
    cohort: { timezone: 'Asia/Tokyo' },
    clock: () => now,
  });
  const tx = await w.add('w', 1);
  assert.equal(tx.timestamp, '2025-10-09T23:30:00.000Z');
  assert.equal(tx.cohortHour, '2025-10-10T08');
  assert.equal(tx.cohortDate, '2025-10-10');
  assert.equal(tx.cohortWeek, '2025-W41');
  assert.equal(tx.cohortMonth, '2025-10');
  now += 1;
  const later = await w.add('w', 1);
  assert.equal(later.timestamp, '2025-10-09T23:30:00.001Z');
  await db.disconnect();
});

test('mutations on a missing record stay pending, resolve to null, and apply when it is inserted', async () => {
  const { db, wallets: w } = await wallets();
  assert.equal(await w.add('ghost', 5), null);
  assert.equal(await w.consolidate('ghost'), null);
  assert.equal(await w.exists('ghost'), false, 'the plugin never creates records');
  const rec = await w.insert({ id: 'ghost', balance: 1 });
  assert.equal(rec.balance, 6);
  await db.disconnect();
});

test('configuration forms: singular, array, flat 21.6.2 names', async () => {
  for (const options of [
    { resources: { resource: 'wallets', field: 'balance', mode: 'sync' } },
    { resource: 'wallets', field: 'balance', mode: 'sync' },
    { resources: [{ resource: 'wallets', fields: ['balance'] }], mode: 'sync', autoConsolidate: false },
  ]) {
    const db = await freshDb();
    const ec = plugin(options);
    await db.usePlugin(ec);
    const w = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
    await w.insert({ id: 'w' });
    assert.equal(await w.add('w', 2), 2, JSON.stringify(options));
    assert.equal(ec.config.consolidation.mode, 'sync');
    await db.disconnect();
  }
});

test('getStatus and getCohortStats report handlers, runs and pending transactions', async () => {
  const { db, ec, wallets: w } = await wallets({ consolidation: { mode: 'async', auto: false, window: 3 } });
  await w.insert({ id: 'w' });
  await w.add('w', 1);
  await w.add('w', 2);
  let status = await ec.getStatus();
  assert.equal(status.mode, 'async');
  assert.deepEqual(status.handlers, { wallets: ['balance'] });
  assert.equal(status.pending['wallets.balance'], 2);
  await ec.consolidateAll();
  await w.add('w', 3);
  status = await ec.getStatus();
  assert.equal(status.pending['wallets.balance'], 1);
  assert.equal(status.runs.transactionsApplied, 2);
  const stats = await ec.getCohortStats('wallets', 'balance');
  assert.equal(stats.length, 3);
  assert.deepEqual(Object.keys(stats[0]), ['cohort', 'pending', 'applied', 'total']);
  assert.deepEqual([stats[0].pending, stats[0].applied, stats[0].total], [1, 2, 3]);
  await db.disconnect();
});

test('runGC keeps recalculate exact and reports gc-completed', async () => {
  let now = Date.UTC(2025, 0, 1);
  const { db, ec, wallets: w } = await wallets({ garbageCollection: { retention: 0 }, clock: () => now });
  await w.insert({ id: 'w', balance: 100 });
  await w.add('w', 5);
  await w.sub('w', 2);
  now += 3_600_000;
  const done = new Promise((resolve) => ec.once('plg:eventual-consistency:gc-completed', resolve));
  await ec.runGC();
  const payload = await done;
  assert.deepEqual(Object.keys(payload), ['resource', 'field', 'deletedCount', 'errorCount']);
  assert.ok(payload.deletedCount >= 1, JSON.stringify(payload));
  assert.equal(await w.recalculate('w'), 103);
  await db.disconnect();
});

test('two S3db instances on one memory bucket share data; createResource attaches to stored data', async () => {
  const a = new S3db({ connectionString: 'memory://shared-semantics/app' });
  const b = new S3db({ connectionString: 'memory://shared-semantics/app' });
  await a.connect();
  await b.connect();
  const ra = await a.createResource({ name: 'notes', attributes: { text: 'string|required', n: 'number|optional' } });
  await ra.insert({ id: 'n1', text: 'hello' });
  const rb = await b.createResource({ name: 'notes', attributes: { text: 'string|required', n: 'number|optional' } });
  assert.equal((await rb.get('n1')).text, 'hello');
  assert.equal(await rb.count(), 1);
  await assert.rejects(rb.insert({ id: 'n2' }), (e) => e.code === 'ERR_VALIDATION');
  await assert.rejects(rb.get('missing'), (e) => e.code === 'ERR_RECORD_NOT_FOUND');
});

test('hooks run around inserts, updates and deletes; before-hooks may change the data', {
  skip: HOST === 's3db' && "this is tally-ec's own S3db; inside s3db.js its hooks are s3db.js's",
}, async () => {
  const db = await freshDb();
  const r = await db.createResource({ name: 'items', attributes: { name: 'string', qty: 'number|default:0' } });
  const log = [];
  r.addHook('beforeInsert', (d) => ({ ...d, name: d.name.toUpperCase() }));
  r.addHook('afterInsert', (d) => log.push(['afterInsert', d.name]));
  r.addHook('afterUpdate', (d) => log.push(['afterUpdate', d.qty]));
  r.addHook('beforeDelete', (d) => log.push(['beforeDelete', d.id]));
  await r.insert({ id: 'i', name: 'pen' });
  await r.update('i', { qty: 3 });
  assert.equal((await r.patch('i', { qty: 4 })).qty, 4);
  await r.delete('i');
  assert.deepEqual(log, [['afterInsert', 'PEN'], ['afterUpdate', 3], ['afterUpdate', 4], ['beforeDelete', 'i']]);
  assert.throws(() => r.addHook('whenever', () => {}), (e) => e.code === 'ERR_INVALID_ARGUMENT');
  await db.disconnect();
});

test('the folder store keeps values across database instances', async () => {
  const { db, dir } = await folderDb();
  const cfg = { resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } };
  await db.usePlugin(plugin(cfg));
  const w = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await w.insert({ id: 'w' });
  await w.add('w', 12.5);
  await db.disconnect();
  const again = new S3db({ connectionString: db.connectionString });
  await again.usePlugin(plugin(cfg));
  const w2 = await again.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  assert.equal(await w2.add('w', 0.5), 13);
  assert.ok(dir);
  await again.disconnect();
});
