// Inside a real s3db.js 21.6.2 Database: lifecycle, deferred resources, events, where Tally's
// data lives, carrying over 21.6.2's pending transactions (two processes at once), and a
// side-by-side run against s3db.js's own plugin whose differences must all be documented.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { EventualConsistencyPlugin, S3db } from '../index.js';
import { plugin, s3dbDatabase } from './helpers.mjs';

const run = promisify(execFile);
const here = fileURLToPath(new URL('.', import.meta.url));
let n = 0;
const memory = () => `memory://s3db-${process.pid}-${++n}/app`;

async function oldPlugin(options) {
  process.env.S3DB_DISABLE_CRON = 'true';
  const { EventualConsistencyPlugin: Old } = await import('s3db.js/plugins/eventual-consistency/index');
  return new Old({ enableCoordinator: false, autoConsolidate: false, logLevel: 'silent', ...options });
}

test('usePlugin registers it as eventualconsistency; methods reach resources created before and after', async () => {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const before = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  const p = plugin({ resources: { wallets: ['balance'], users: ['points'] }, consolidation: { mode: 'sync' } });
  assert.equal(await db.usePlugin(p), p);
  assert.equal(db.plugins.eventualconsistency, p);
  const users = await db.createResource({ name: 'users', attributes: { name: 'string|optional', points: 'number|default:0' } });
  assert.equal(typeof users.add, 'function', 'a resource created after usePlugin gets the methods');
  await before.insert({ id: 'w' });
  await users.insert({ id: 'u', name: 'ann' });
  assert.equal(await before.add('w', 5), 5);
  assert.equal(await users.increment('u'), 1);
  assert.deepEqual(
    { points: (await users.get('u')).points, name: (await users.get('u')).name },
    { points: 1, name: 'ann' },
    'written through s3db.js: other attributes are kept',
  );
  await db.disconnect();
});

test('events reach the plugin and the database; disconnect and uninstallPlugin stop it', async () => {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  const p = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'async', auto: true, interval: 3600 } });
  const onDb = [];
  const onPlugin = [];
  for (const name of ['started', 'consolidated', 'consolidation-completed', 'stopped']) {
    db.on(`plg:eventual-consistency:${name}`, () => onDb.push(name));
    p.on(`plg:eventual-consistency:${name}`, () => onPlugin.push(name));
  }
  await db.usePlugin(p);
  await w.insert({ id: 'w' });
  await w.add('w', 2);
  assert.equal(await w.consolidate('w'), 2);
  await db.uninstallPlugin('eventualconsistency');
  assert.equal(db.plugins.eventualconsistency, undefined);
  assert.deepEqual(onPlugin, ['started', 'consolidated', 'stopped']);
  assert.deepEqual(onDb, ['started', 'consolidated', 'consolidation-completed', 'stopped']);
  const again = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'async', auto: true, interval: 3600 } });
  const stopped = [];
  again.on('plg:eventual-consistency:stopped', () => stopped.push(1));
  await db.usePlugin(again);
  await db.disconnect();
  assert.equal(stopped.length, 1, 'disconnect stops a usePlugin plugin (21.6.2 leaves it running)');
});

test("Tally's data lives beside the database: the same folder, under plugin=tally/", async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-s3db-'));
  const db = await s3dbDatabase(pathToFileURL(dir).href);
  await db.connect();
  const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'async', auto: false } }));
  await w.insert({ id: 'w' });
  await w.add('w', 4);
  assert.ok(existsSync(join(dir, 'plugin=tally', 't', 'wallets', 'balance', 'w')), 'the pending transaction is in the folder');
  assert.equal(await w.consolidate('w'), 4);
  assert.equal((await w.get('w')).balance, 4);
  await w.delete('w');
  await w.insert({ id: 'w', balance: 1 });
  await w.add('w', 1);
  assert.equal(await w.consolidate('w'), 2, 'a deleted and re-created record starts from its own value');
  await db.disconnect();
});

test('21.6.2 pending transactions are carried over exactly once by two processes at once, and kept as history', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-carry-'));
  const url = pathToFileURL(dir).href;
  const db = await s3dbDatabase(url);
  await db.connect();
  const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  await db.usePlugin(await oldPlugin({ resources: { wallets: ['balance'] }, mode: 'async' }));
  for (const id of ['w1', 'w2', 'w3']) await w.insert({ id });
  await w.add('w1', 100);
  await w.consolidate('w1', 'balance');
  assert.equal((await w.get('w1')).balance, 100, '21.6.2 applied the first add');
  await w.add('w1', 10);
  await w.sub('w1', 3);
  await w.set('w2', 50);
  await w.add('w2', 5);
  for (let i = 0; i < 20; i += 1) await w.add('w3', 0.1);
  await db.disconnect();

  const worker = join(here, 'support', 'carry-over-worker.mjs');
  const runs = await Promise.all([1, 2].map(() => run(process.execPath, [worker, url, 'w1', 'w2', 'w3'])));
  const outs = runs.map((r) => JSON.parse(r.stdout.trim().split('\n').pop()));
  assert.equal(outs[0].carried + outs[1].carried, 24, 'every pending transaction carried over once in all');
  // Each worker read its balances while the other may still have been carrying over, so only
  // the run after both is final. A restart carries nothing more, and the values are exact
  // (w3: twenty 0.1 make exactly 2).
  const expected = { w1: 107, w2: 55, w3: 2 };
  const last = JSON.parse((await run(process.execPath, [worker, url, 'w1', 'w2', 'w3'])).stdout.trim().split('\n').pop());
  assert.equal(last.carried, 0);
  assert.deepEqual(last.balances, expected);
  const check = await s3dbDatabase(url);
  await check.connect();
  const history = await check.resources.plg_wallets_tx_balance.list();
  assert.equal(history.length, 25, '21.6.2 transactions are kept');
  assert.ok(history.every((t) => t.applied === true), 'and all marked applied');
  await check.disconnect();
});
