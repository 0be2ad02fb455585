// 1,000 concurrent add() promises on one record end exact, in sync and in async mode, and on
// the folder store two databases (two engines) racing on one record lose nothing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { S3db } from '../index.js';
import { folderDb, freshDb, plugin, WALLET_ATTRIBUTES } from './helpers.mjs';

const N = 1000;

test('1,000 concurrent adds in sync mode end exact and each resolves to a value', async () => {
  const db = await freshDb();
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync', concurrency: 5 } }));
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w', balance: 0 });
  const values = await Promise.all(Array.from({ length: N }, () => wallets.add('w', 1)));
  assert.equal((await wallets.get('w')).balance, N);
  assert.ok(values.every((v) => Number.isInteger(v) && v >= 1 && v <= N), 'every add resolves to a value');
  assert.equal(Math.max(...values), N);
  await db.disconnect();
});

test('1,000 concurrent adds in async mode end exact after consolidation, decimals included', async () => {
  const db = await freshDb();
  const ec = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'async', auto: false } });
  await db.usePlugin(ec);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w', balance: 0 });
  const txs = await Promise.all(Array.from({ length: N }, () => wallets.add('w', 0.1)));
  assert.equal(new Set(txs.map((t) => t.id)).size, N, 'every transaction is distinct');
  assert.equal(await wallets.getConsolidatedValue('w'), 100);
  assert.equal((await wallets.get('w')).balance, 0);
  await Promise.all([ec.consolidateAll(), wallets.consolidate('w'), wallets.consolidate('w')]);
  assert.equal((await wallets.get('w')).balance, 100);
  await db.disconnect();
});

test('two databases on one folder racing in sync mode apply every add exactly once', async () => {
  const { db, dir } = await folderDb();
  const other = new S3db({ connectionString: db.connectionString });
  await other.connect();
  const cfg = { resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } };
  await db.usePlugin(plugin(cfg));
  await other.usePlugin(plugin(cfg));
  const a = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  const b = await other.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await a.insert({ id: 'w', balance: 0 });
  await Promise.all(Array.from({ length: 200 }, (_, i) => (i % 2 ? a : b).add('w', i % 3 === 0 ? -2 : 3)));
  let expected = 0;
  for (let i = 0; i < 200; i++) expected += i % 3 === 0 ? -2 : 3;
  assert.equal((await b.get('w')).balance, expected);
  assert.ok(dir);
  await db.disconnect();
  await other.disconnect();
});
