// Lifecycle: events on the plugin and the database, deferred setup, timers that never keep
// the process alive, stop() finishing in-flight work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import { freshDb, plugin, within, WALLET_ATTRIBUTES } from './helpers.mjs';

const PREFIX = 'plg:eventual-consistency:';

test('started and stopped fire per field on the plugin and on the database', async () => {
  const db = await freshDb();
  const ec = plugin({ resources: { wallets: ['balance', 'credits'] } });
  const seen = [];
  ec.on(`${PREFIX}started`, (e) => seen.push(['plugin started', e.resource, e.field, e.cohort.timezone]));
  db.on(`${PREFIX}started`, (e) => seen.push(['db started', e.field]));
  ec.on(`${PREFIX}stopped`, (e) => seen.push(['plugin stopped', e.field]));
  await db.usePlugin(ec);
  await db.disconnect();
  assert.deepEqual(seen, [
    ['plugin started', 'wallets', 'balance', 'UTC'],
    ['db started', 'balance'],
    ['plugin started', 'wallets', 'credits', 'UTC'],
    ['db started', 'credits'],
    ['plugin stopped', 'balance'],
    ['plugin stopped', 'credits'],
  ]);
});

test('consolidated fires for consolidateAll with the documented payload, also as consolidation-completed on the db', async () => {
  const db = await freshDb();
  const ec = plugin({ resources: { wallets: ['balance'] }, consolidation: { auto: false } });
  await db.usePlugin(ec);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w1' });
  await wallets.insert({ id: 'w2' });
  await wallets.add('w1', 5);
  await wallets.add('w2', 7);
  const onPlugin = once(ec, `${PREFIX}consolidated`);
  const onDb = once(db, `${PREFIX}consolidation-completed`);
  const runs = await ec.consolidateAll();
  const [payload] = await onPlugin;
  const [alias] = await onDb;
  assert.deepEqual(Object.keys(payload), ['resource', 'field', 'recordCount', 'successCount', 'errorCount', 'duration']);
  assert.equal(payload.recordCount, 2);
  assert.equal(payload.successCount, 2);
  assert.equal(payload.errorCount, 0);
  assert.deepEqual(alias, payload);
  assert.equal(runs.get('wallets.balance').transactionsApplied, 2);
  await db.disconnect();
});

test('methods appear on a resource created after usePlugin; existing properties are never replaced', async () => {
  const db = await freshDb();
  const warnings = [];
  const ec = plugin({
    resources: { wallets: ['balance'], shops: ['stock'] },
    consolidation: { mode: 'sync' },
    logger: { info() {}, debug() {}, error() {}, warn: (m) => warnings.push(m) },
  });
  const shops = await db.createResource({ name: 'shops', attributes: { stock: 'number|default:0' } });
  shops.set = () => 'mine';
  await db.usePlugin(ec);
  assert.equal(typeof shops.add, 'function');
  assert.equal(shops.set(), 'mine');
  assert.match(warnings.join('\n'), /"shops" already has a "set"/);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  for (const m of ['set', 'add', 'sub', 'increment', 'decrement', 'consolidate', 'getConsolidatedValue', 'recalculate']) {
    assert.equal(typeof wallets[m], 'function', m);
  }
  await wallets.insert({ id: 'w', balance: 1 });
  assert.equal(await wallets.add('w', 2), 3);
  await db.disconnect();
});

test('uninstallPlugin takes back the resource methods and stops the engine; another plugin can take over', async () => {
  const db = await freshDb();
  const options = { resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } };
  const ec = plugin(options);
  await db.usePlugin(ec);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w', balance: 1 });
  assert.equal(await wallets.add('w', 2), 3);
  await db.uninstallPlugin('eventualconsistency');
  assert.equal(wallets.add, undefined);
  assert.equal(db.plugins.eventualconsistency, undefined);
  await assert.rejects(ec.consolidateAll(), { code: 'ERR_INVALID_CONFIG' });
  await wallets.insert({ id: 'v', balance: 5 });
  assert.equal((await wallets.get('v')).balance, 5);
  const again = plugin(options);
  await db.usePlugin(again);
  assert.equal(await wallets.add('w', 4), 7);
  await db.disconnect();
});

test('background consolidation applies pending transactions on its interval', async () => {
  const db = await freshDb();
  const ec = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'async', auto: true, interval: 0.05 } });
  await db.usePlugin(ec);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w' });
  await wallets.add('w', 4);
  await within(once(ec, `${PREFIX}consolidated`), 5000, 'a background pass');
  assert.equal((await wallets.get('w')).balance, 4);
  await db.disconnect();
});

test('a child process with automatic consolidation exits by itself within 2 s of disconnect()', async () => {
  const index = fileURLToPath(new URL('../index.js', import.meta.url));
  const script = `
    import { S3db, EventualConsistencyPlugin } from ${JSON.stringify(index)};
    const db = new S3db({ connectionString: 'memory://child/app' });
    await db.connect();
    await db.usePlugin(new EventualConsistencyPlugin({ verbose: false, resources: { pages: ['views'] },
      consolidation: { mode: 'async', auto: true, interval: 0.05 }, garbageCollection: { interval: 0.05 } }));
    const pages = await db.createResource({ name: 'pages', attributes: { views: 'number|default:0' } });
    await pages.insert({ id: 'home' });
    for (let i = 0; i < 20; i++) await pages.increment('home');
    await new Promise((r) => setTimeout(r, 200));
    await db.disconnect();
    console.log('disconnected', Date.now());
  `;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (err += d));
  const [code] = await once(child, 'exit');
  const exitedAt = Date.now();
  assert.equal(code, 0, err);
  const m = /disconnected (\d+)/.exec(out);
  assert.ok(m, `no disconnect line: ${out} ${err}`);
  assert.ok(exitedAt - Number(m[1]) < 2000, `exited ${exitedAt - Number(m[1])} ms after disconnect`);
});

test('stop() waits for an in-flight consolidation', async () => {
  const db = await freshDb();
  const ec = plugin({ resources: { wallets: ['balance'] }, consolidation: { auto: false } });
  await db.usePlugin(ec);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w' });
  for (let i = 0; i < 50; i++) await wallets.add('w', 1);
  const running = wallets.consolidate('w');
  await db.disconnect();
  assert.equal(ec._inflight.size, 0);
  assert.equal(await running, 50);
});
