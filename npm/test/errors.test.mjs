// Bad arguments from JS reject with a TallyError whose code says what was wrong, and nothing
// is written (the store folder is byte-for-byte unchanged).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventualConsistencyPlugin, S3db, TallyError } from '../index.js';
import { folderDb, plugin, snapshot, WALLET_ATTRIBUTES } from './helpers.mjs';

async function setup(mode) {
  const { db, dir } = await folderDb();
  await db.usePlugin(plugin({ resources: { wallets: ['balance'], users: ['points', 'credits'] }, consolidation: { mode } }));
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  const users = await db.createResource({
    name: 'users',
    attributes: { points: 'number|default:0', credits: 'number|default:0', name: 'string|optional' },
  });
  await wallets.insert({ id: 'w1', balance: 10 });
  await users.insert({ id: 'u1' });
  return { db, dir, wallets, users };
}

const CASES = [
  ['NaN amount', (r) => r.wallets.add('w1', 'balance', NaN), 'ERR_INVALID_AMOUNT'],
  ['Infinity amount', (r) => r.wallets.add('w1', Infinity), 'ERR_INVALID_AMOUNT'],
  ['numeric string amount', (r) => r.wallets.add('w1', 'balance', '5'), 'ERR_INVALID_AMOUNT'],
  ['missing amount', (r) => r.wallets.add('w1', 'balance'), 'ERR_INVALID_AMOUNT'],
  ['object amount', (r) => r.wallets.sub('w1', 'balance', { n: 1 }), 'ERR_INVALID_AMOUNT'],
  ['boolean amount', (r) => r.wallets.set('w1', 'balance', true), 'ERR_INVALID_AMOUNT'],
  ['missing id', (r) => r.wallets.add(undefined, 'balance', 1), 'ERR_INVALID_ARGUMENT'],
  ['numeric id', (r) => r.wallets.add(42, 'balance', 1), 'ERR_INVALID_ARGUMENT'],
  ['empty id', (r) => r.wallets.increment(''), 'ERR_INVALID_ARGUMENT'],
  ['id longer than 128 bytes', (r) => r.wallets.add('é'.repeat(65), 'balance', 1), 'ERR_INVALID_ARGUMENT'],
  ['unknown field', (r) => r.wallets.add('w1', 'nope', 5), 'ERR_UNKNOWN_FIELD'],
  ['field omitted on a resource with several fields', (r) => r.users.add('u1', 5), 'ERR_UNKNOWN_FIELD'],
  ['options that are not an object', (r) => r.wallets.add('w1', 'balance', 1, 'fast'), 'ERR_INVALID_ARGUMENT'],
  ['non-string idempotency key', (r) => r.wallets.add('w1', 'balance', 1, { idempotencyKey: 7 }), 'ERR_INVALID_ARGUMENT'],
  ['path below a number field', (r) => r.wallets.add('w1', 'balance.x', 1), 'ERR_INVALID_PATH'],
  ['unknown resource through the plugin', (r) => r.db.plugins.eventualconsistency.getConsolidatedValue('ghosts', 'x', 'g1'), 'ERR_UNKNOWN_RESOURCE'],
  ['field of the wrong type in getConsolidatedValue', (r) => r.wallets.getConsolidatedValue('w1', 5), 'ERR_INVALID_ARGUMENT'],
];

for (const mode of ['sync', 'async']) {
  for (const [name, call, code] of CASES) {
    test(`${mode}: ${name} rejects with ${code} and writes nothing`, async () => {
      const r = await setup(mode);
      const before = snapshot(r.dir);
      await assert.rejects(call(r), (e) => {
        assert.ok(e instanceof TallyError, `expected a TallyError, got ${e && e.stack}`);
        assert.equal(e.code, code, e.message);
        assert.ok(e.message.length > 10);
        return true;
      });
      assert.deepEqual(snapshot(r.dir), before);
      await r.db.disconnect();
    });
  }
}

test('invalid configuration throws from the constructor with ERR_INVALID_CONFIG naming the option', () => {
  const bad = [
    [{ resources: { wallets: [] } }, /wallets/],
    [{ resources: { wallets: ['balance'] }, consolidation: { mode: 'eventually' } }, /mode/],
    [{ resources: { wallets: ['balance'] }, analytics: { periods: ['decade'] } }, /period/],
    [{ resources: { wallets: ['balance'] }, consolidation: { interval: -1 } }, /interval/],
    [{ resources: { wallets: ['balance'] }, cohort: { timezone: 'Mars/Olympus' } }, /timezone|time zone/],
    [{ resources: [{ resource: 'wallets', fields: [{ field: 'balance', reducer: 'sum' }] }] }, /reducer/],
    [{ resources: { wallets: ['balance'] }, clock: 5 }, /clock/],
    // Typos are named, with the option meant, instead of being ignored.
    [{ resorces: { wallets: ['balance'] } }, /unknown option "resorces" \(did you mean "resources"\?\)/],
    [{ resources: { wallets: ['balance'] }, consolidation: { mod: 'sync' } }, /"consolidation.mod" \(did you mean "consolidation.mode"\?\)/],
  ];
  for (const [options, pattern] of bad) {
    assert.throws(
      () => new EventualConsistencyPlugin(options),
      (e) => e instanceof TallyError && e.code === 'ERR_INVALID_CONFIG' && pattern.test(e.message),
      JSON.stringify(options),
    );
  }
});

test("21.6.2's coordinator and worker options are accepted (and ignored)", () => {
  const p = new EventualConsistencyPlugin({
    resources: { wallets: ['balance'] },
    enableCoordinator: true,
    ticketBatchSize: 50,
    workerInterval: 1000,
    coordinator: { heartbeatInterval: 2000 },
    analyticsConfig: { retentionDays: 30 },
  });
  assert.deepEqual(Object.keys(p.config.resources), ['wallets']);
});

test('a bad connection string is ERR_INVALID_CONFIG and never shows the secret', async () => {
  const { S3db } = await import('../index.js');
  const db = new S3db({ connectionString: 'ftp://KEY:supersecret@host/bucket' });
  await assert.rejects(db.connect(), (e) => e.code === 'ERR_INVALID_CONFIG' && !e.message.includes('supersecret'));
});

test('ids as s3db.js allows them are records of their own and stay inside the folder', async () => {
  const { mkdtempSync, readdirSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { pathToFileURL } = await import('node:url');
  const outer = mkdtempSync(join(tmpdir(), 'tally-ids-'));
  const db = new S3db({ connectionString: pathToFileURL(join(outer, 'base')).href });
  await db.connect();
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } }));
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  const ids = ['../../etc', '..', 'a/b', '.hidden', 'user 1', 'José', '日本', 'Alice', 'alice'];
  for (const [k, id] of ids.entries()) {
    await wallets.insert({ id, balance: 0 });
    assert.equal(await wallets.add(id, 'balance', k + 1), k + 1, id);
  }
  for (const [k, id] of ids.entries()) assert.equal((await wallets.get(id)).balance, k + 1, id);
  assert.deepEqual(readdirSync(outer), ['base'], 'nothing written beside the folder');
  await db.disconnect();
});

test('the addon itself throws and rejects with the code as a property, the message as is', async () => {
  const { createRequire } = await import('node:module');
  const native = createRequire(import.meta.url)('../lib/native.cjs');
  // A synchronous call (the constructor) throws with `code` set.
  assert.throws(
    () => new native.NativeDatabase('ftp://host/bucket'),
    (e) => e instanceof Error && e.code === 'ERR_INVALID_CONFIG' && !e.message.startsWith('['),
  );
  // An async call rejects with `code` set.
  const db = new native.NativeDatabase('memory://errors');
  await assert.rejects(
    db.get('ghosts', 'g1'),
    (e) => e instanceof Error && e.code === 'ERR_UNKNOWN_RESOURCE' && e.message === 'resource "ghosts" does not exist',
  );
  // Through the package they are TallyErrors with the same code and message.
  const { fromNative } = createRequire(import.meta.url)('../lib/errors.cjs');
  const e = await db.get('ghosts', 'g1').catch(fromNative);
  assert.ok(e instanceof TallyError && e.code === 'ERR_UNKNOWN_RESOURCE', String(e));
  // napi-rs's own argument errors pass through unchanged.
  await assert.rejects(async () => db.get(5, 'g1'), (err) => err instanceof Error && !(err instanceof TallyError) && !String(err.code).startsWith('ERR_'));
});
