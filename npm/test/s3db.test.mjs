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
import { once } from 'node:events';
import { BACKEND, freshConnectionString, plugin, s3dbDatabase, within } from './helpers.mjs';

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

test("the constructor form works, and s3db.js partitions follow Tally's writes", async () => {
  process.env.S3DB_DISABLE_CRON = 'true';
  const { Database } = await import('s3db.js/lite');
  const p = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } });
  const db = new Database({ connectionString: memory(), logLevel: 'silent', executorPool: false, plugins: [p] });
  await db.connect();
  assert.equal(db.plugins.eventualconsistency, p);
  const w = await db.createResource({
    name: 'wallets',
    attributes: { balance: 'number|default:0', tier: 'string|optional' },
    partitions: { byTier: { fields: { tier: 'string' } } },
  });
  await w.insert({ id: 'a', tier: 'gold' });
  assert.equal(await w.add('a', 3), 3);
  const gold = await w.list({ partition: 'byTier', partitionValues: { tier: 'gold' } });
  assert.deepEqual(gold.map((r) => [r.id, r.balance]), [['a', 3]]);
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
  const consolidated = once(p, 'plg:eventual-consistency:consolidated');
  assert.equal(await w.consolidate('w'), 2);
  await within(consolidated, 5000, 'the consolidated event');
  await db.uninstallPlugin('eventualconsistency');
  assert.equal(db.plugins.eventualconsistency, undefined);
  assert.equal(w.add, undefined, 'uninstall takes back the resource methods');
  const errors = [];
  p.on('plg:eventual-consistency:consolidation-error', (e) => errors.push(e));
  await w.insert({ id: 'after' });
  await w.delete('after');
  assert.deepEqual(errors, [], "the uninstalled plugin's hooks stay out of the way");
  assert.deepEqual(onPlugin, ['started', 'consolidated', 'stopped']);
  assert.deepEqual(onDb, ['started', 'consolidated', 'consolidation-completed', 'stopped']);
  const again = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'async', auto: true, interval: 3600 } });
  const stopped = [];
  again.on('plg:eventual-consistency:stopped', () => stopped.push(1));
  await db.usePlugin(again);
  assert.equal(typeof w.add, 'function', 'a new plugin installs them again');
  await db.disconnect();
  assert.equal(stopped.length, 1, 'disconnect stops a usePlugin plugin (21.6.2 leaves it running)');
});

test('an insert applies waiting transactions field by field; a field that fails is reported with its name', async () => {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0', points: 'number|default:0' } });
  const p = plugin({
    resources: [{ resource: 'wallets', fields: ['balance', { field: 'points', reducer: () => { throw new Error('boom'); } }] }],
    consolidation: { mode: 'async', auto: false },
  });
  const errors = [];
  p.on('plg:eventual-consistency:consolidation-error', (e) => errors.push(e));
  await db.usePlugin(p);
  await w.add('x', 'balance', 3);
  await w.add('x', 'points', 5);
  await w.insert({ id: 'x' });
  assert.equal((await w.get('x')).balance, 3, 'the field that works is applied');
  assert.deepEqual(errors.map((e) => [e.resource, e.field, e.recordId]), [['wallets', 'points', 'x']]);
  assert.match(errors[0].error.code, /^ERR_/);
  assert.match(errors[0].error.message, /boom/);
  await db.disconnect();
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
  // Processes share a folder, or S3 with TALLY_TEST_BACKEND=s3 (memory is per process). On
  // the local S3 server, 21.6.2's HTTP client (recker) opens its circuit breaker during the
  // 21.6.2 phase, so scripts/test-node.sh runs this on the folder store only.
  const url = BACKEND === 's3' ? freshConnectionString() : pathToFileURL(mkdtempSync(join(tmpdir(), 'tally-carry-'))).href;
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

/** One scenario, observed the same way for both plugins (both inside s3db.js on memory). */
async function observe(makePlugin) {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  const dbEvents = new Set();
  for (const name of ['consolidated', 'consolidation-completed']) {
    db.on(`plg:eventual-consistency:${name}`, () => dbEvents.add(name));
  }
  const p = await makePlugin();
  await db.usePlugin(p);
  const o = {};
  o['registry key'] = Object.keys(db.plugins).join(',');
  o['methods installed'] = ['set', 'add', 'sub', 'increment', 'decrement', 'consolidate', 'getConsolidatedValue', 'recalculate']
    .filter((m) => typeof w[m] === 'function').join(',');
  await w.insert({ id: 'w1' });
  const added = await w.add('w1', 1000);
  o['sync add resolves to'] = typeof added;
  await w.sub('w1', 250);
  o['balance right after add and sub'] = (await w.get('w1')).balance;
  await w.consolidate('w1', 'balance');
  o['balance after consolidate'] = (await w.get('w1')).balance;
  await w.add('w1', 10);
  await w.consolidate('w1', 'balance');
  await w.consolidate('w1', 'balance');
  o['add 10 then two consolidations'] = (await w.get('w1')).balance - o['balance after consolidate'];
  const base = (await w.get('w1')).balance;
  await w.add('w1', -5);
  await w.consolidate('w1', 'balance');
  o['add(-5)'] = (await w.get('w1')).balance - base;
  await w.add('ghost', 7);
  await w.consolidate('ghost', 'balance');
  o['consolidating a missing record creates it'] = (await w.getOrNull('ghost')) !== null;
  o['getConsolidatedValue(field, id)'] = await w.getConsolidatedValue('balance', 'w1');
  o['recalculate(field, id)'] = await w.recalculate('balance', 'w1');
  o['events on the database'] = [...dbEvents].sort().join(',');
  await db.disconnect();
  return o;
}

/** The README section listing the differences the side-by-side run may show. */
function documentedChanges() {
  const readme = readFileSync(join(here, '..', '..', 'README.md'), 'utf8');
  const section = readme.split('## Behaviour changes from 21.6.2')[1]?.split('\n## ')[0] ?? '';
  return new Set([...section.matchAll(/^\| `([^`]+)` \|/gm)].map((m) => m[1]));
}

test('side by side with s3db.js 21.6.2: every difference is one SPEC.md decides, listed in the README', async () => {
  const config = { resources: { wallets: ['balance'] }, mode: 'sync' };
  const old = await observe(() => oldPlugin(config));
  const tally = await observe(() => new EventualConsistencyPlugin({ ...config, verbose: false }));
  const differences = Object.keys(old).filter((k) => JSON.stringify(old[k]) !== JSON.stringify(tally[k]));
  const report = differences.map((k) => `  ${k}: 21.6.2 ${JSON.stringify(old[k])} -> tally ${JSON.stringify(tally[k])}`);
  console.log(`side-by-side differences (${differences.length}):\n${report.join('\n')}`);
  const documented = documentedChanges();
  assert.deepEqual(differences.filter((k) => !documented.has(k)), [], 'every difference is listed in the README');
  assert.deepEqual([...documented].filter((k) => !differences.includes(k)), [], 'every listed difference still shows');
  assert.equal(tally['balance right after add and sub'], 750, 'sync mode applies at once');
  assert.equal(tally['add 10 then two consolidations'], 10, 'exactly once');
});

test("two s3db.js databases whose keyPrefix differs after a '?' or '#' never share Tally's data", async () => {
  const { createRequire } = await import('node:module');
  const { tallyConnectionString } = createRequire(import.meta.url)('../lib/s3db/adapter.cjs');
  class MemoryClient {
    constructor(bucket) {
      this.bucket = bucket;
      this.config = {};
    }
  }
  class S3Client {
    constructor(bucket) {
      this.config = { bucket, endpoint: 'http://127.0.0.1:9000', accessKeyId: 'k', secretAccessKey: 's', region: 'eu-west-1' };
    }
  }
  for (const Client of [MemoryClient, S3Client]) {
    const urls = ['t?1', 't?2', 't#1', 't'].map((keyPrefix) => tallyConnectionString({ client: new Client('b'), keyPrefix }));
    // What Tally takes as its prefix is the URL's path: it must differ for every tenant.
    const paths = urls.map((u) => new URL(u).pathname);
    assert.equal(new Set(paths).size, 4, paths.join(' '));
    for (const u of urls) {
      assert.ok(new URL(u).pathname.endsWith('/plugin=tally'), u);
      if (Client === S3Client) assert.equal(new URL(u).searchParams.get('region'), 'eu-west-1', `${u}: the region survives`);
    }
  }
});

test('a host database error that quotes a connection string never passes its secret on', async () => {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } }));
  await w.insert({ id: 'w' });
  w.getOrNull = async () => {
    throw new Error('cannot reach s3://AKIAEXAMPLE:wJalrXUtnFEMI%2FK7MDENG@bucket/app');
  };
  const error = await w.add('w', 5).then(() => null, (e) => e);
  assert.ok(error, 'the add fails');
  assert.equal(error.code, 'ERR_STORAGE');
  assert.match(error.message, /AKIAEXAMPLE:\*\*\*@bucket/);
  assert.doesNotMatch(error.message, /wJalrXUtnFEMI/);
  await db.disconnect();
});

test("a value s3db.js's own rules refuse is a consolidation-error, counted, and inspect shows the host copy lagging", async () => {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|max:100|default:0' } });
  const p = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' }, logLevel: 'silent' });
  await db.usePlugin(p);
  await wallets.insert({ id: 'w1' });
  const refused = once(p, 'plg:eventual-consistency:consolidation-error');
  // Tally's balance is 500 (the transaction is applied exactly once); s3db.js keeps 0.
  assert.equal(await wallets.add('w1', 500), 500);
  const [event] = await within(refused, 5000, 'the consolidation-error');
  assert.deepEqual([event.resource, event.field, event.recordId, event.error.code], ['wallets', 'balance', 'w1', 'ERR_VALIDATION']);
  assert.match(event.error.message, /refused the consolidated values of wallets "w1".*less than or equal to 100/);
  assert.equal((await wallets.get('w1')).balance, 0);
  assert.equal((await p.getStatus()).runs.hostRefusals, 1);
  const seen = await p.inspect('wallets', 'w1');
  assert.deepEqual([seen.fields[0].value, seen.fields[0].hostValue, seen.fields[0].inSync], [500, 0, false]);
  // Back within the rules: the host copy follows again.
  assert.equal(await wallets.sub('w1', 450), 50);
  assert.equal((await wallets.get('w1')).balance, 50);
  assert.equal((await p.inspect('wallets', 'w1')).fields[0].inSync, true);
  await db.disconnect();
});

test("verify inside s3db.js: a clean history passes; a balance edited in s3db.js's copy is named", async () => {
  const db = await s3dbDatabase(memory());
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  const p = plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' }, logLevel: 'silent' });
  await db.usePlugin(p);
  for (const id of ['w1', 'w2']) {
    await wallets.insert({ id });
    await wallets.add(id, 5);
    await wallets.add(id, 7);
  }
  const clean = await p.verify('wallets', 'balance');
  assert.deepEqual([clean.records, clean.journals, clean.chained, clean.problems], [2, 4, 4, []]);
  // Someone writes the balance through s3db.js, around the plugin.
  await wallets.update('w2', { balance: 1000 });
  const found = await p.verify('wallets', 'balance');
  assert.deepEqual(found.problems.map((x) => [x.id, x.kind]), [['w2', 'host-mismatch']]);
  assert.match(found.problems[0].message, /balance = 1000; its history gives 12/);
  await db.disconnect();
});
