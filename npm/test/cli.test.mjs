// The tally-ec CLI as real processes, on a folder store and (when the local S3 server runs)
// on S3: results, exit codes, and no secret in anything it prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, readdirSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';
import { S3db } from '../index.js';
import { plugin, WALLET_ATTRIBUTES, s3dbDatabase, localS3 } from './helpers.mjs';

const BIN = fileURLToPath(new URL('../bin/tally-ec.mjs', import.meta.url));
const OPTIONS = { resources: { wallets: ['balance'] }, analytics: { enabled: true } };

/** Runs `tally-ec args…` against `store`; returns its exit code and output. */
function cli(store, args, env = {}) {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    encoding: 'utf8',
    env: { ...process.env, TALLY_CONNECTION: store.connection, TALLY_CONFIG: store.config, ...env },
    timeout: 60_000,
  });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

function json(store, args) {
  const r = cli(store, [...args, '--json']);
  assert.equal(r.code, 0, `tally-ec ${args.join(' ')}: ${r.err}`);
  return JSON.parse(r.out);
}

/** A store with w1 (five adds of 5), w2 (one of 3) and transactions for a record not created. */
async function seeded(connection) {
  const dir = mkdtempSync(join(tmpdir(), 'tally-cli-'));
  const config = join(dir, 'config.json');
  writeFileSync(config, JSON.stringify(OPTIONS));
  const db = new S3db({ connectionString: connection });
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await db.usePlugin(plugin({ ...OPTIONS, consolidation: { auto: false } }));
  await wallets.insert({ id: 'w1' });
  await wallets.insert({ id: 'w2' });
  for (let i = 0; i < 5; i += 1) await wallets.add('w1', 5);
  await wallets.add('w2', 3);
  await wallets.add('ghost', 1);
  await db.disconnect();
  return { connection, config, dir };
}

/** The whole operator flow on one store. */
async function flow(connection) {
  const store = await seeded(connection);
  const status = json(store, ['status']);
  assert.deepEqual(status.fields, [{ resource: 'wallets', field: 'balance', pending: 7, deadLetters: 0 }]);
  assert.equal(status.analytics, true);
  const pending = json(store, ['pending']);
  assert.deepEqual(
    pending[0].records.map((p) => [p.recordId, p.count]),
    [['w1', 5], ['w2', 1], ['ghost', 1]],
  );
  assert.equal(json(store, ['pending', 'wallets', 'balance', '--limit', '1'])[0].records.length, 1);
  const ghost = json(store, ['inspect', 'wallets', 'ghost']);
  assert.equal(ghost.state, 'waiting');
  assert.equal(ghost.fields[0].pending.count, 1);
  const human = cli(store, ['inspect', 'wallets', 'ghost']);
  assert.match(human.out, /does not exist yet/);
  const run = json(store, ['consolidate']);
  assert.deepEqual(run.fields, [{ resource: 'wallets', field: 'balance', records: 2, transactions: 6, waiting: 1, errors: 0 }]);
  const w1 = json(store, ['inspect', 'wallets', 'w1']);
  assert.equal(w1.state, 'live');
  assert.equal(w1.fields[0].value, 25);
  assert.equal(w1.fields[0].batches, 1);
  assert.ok(Date.parse(w1.fields[0].lastConsolidatedAt) > 0);
  assert.deepEqual(json(store, ['recalculate', 'wallets', 'w1']).values, [{ id: 'w1', field: 'balance', value: 25 }]);
  // Events as CSV: a header and one line per transaction, the waiting one not applied.
  const csv = cli(store, ['export', 'wallets', 'balance', '--format', 'csv']);
  assert.equal(csv.code, 0, csv.err);
  const lines = csv.out.trim().split('\n');
  assert.equal(lines[0].split(',')[1], 'originalId');
  assert.equal(lines.length, 8);
  const applied = lines.slice(1).map((l) => l.split(',')[7]);
  assert.deepEqual(applied.sort(), ['false', 'true', 'true', 'true', 'true', 'true', 'true']);
  const points = cli(store, ['export', 'wallets', 'balance', '--points', 'day']).out.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(points.length, 1);
  assert.deepEqual([points[0].count, points[0].sum, points[0].recordCount], [6, 28, 2]);
  assert.deepEqual(json(store, ['dead-letters', 'list']), []);
  assert.equal(json(store, ['gc']).fields.length, 1);
  const [audit] = json(store, ['verify']);
  assert.deepEqual([audit.records, audit.journals, audit.chained, audit.problems], [2, 2, 2, []]);
  assert.match(cli(store, ['verify']).out, /verify passed/);
  return store;
}

test('the operator flow on a folder store', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-cli-data-'));
  await flow(pathToFileURL(dir).href);
});

test('the operator flow on the local S3 server, with no secret in any output', async (t) => {
  const s3 = localS3(t, 'cli');
  if (!s3) return;
  const { url, secret } = s3;
  const store = await flow(url.href);
  const outputs = [
    cli(store, ['status']),
    cli(store, ['inspect', 'wallets', 'w1']),
    cli(store, ['export', 'wallets', 'balance']),
    cli(store, ['inspect', 'nope', 'w1']),
  ];
  // A bucket that does not exist: a storage error, exit 3, and still no secret.
  const missing = new URL(url.href);
  missing.pathname = '/no-such-bucket-tally/app';
  const failed = cli(store, ['status'], { TALLY_CONNECTION: missing.href });
  assert.equal(failed.code, 3, failed.err);
  const gcFailed = cli(store, ['gc', '--json'], { TALLY_CONNECTION: missing.href });
  assert.equal(gcFailed.code, 3, gcFailed.err);
  for (const r of [...outputs, failed, gcFailed]) {
    assert.ok(secret.length >= 4 && !`${r.out}${r.err}`.includes(secret), `the secret key appeared in: ${r.out}${r.err}`);
  }
});

/** Every file under `dir` whose path contains `part`, sorted. */
function filesUnder(dir, part) {
  return readdirSync(dir, { recursive: true })
    .map((f) => join(dir, f))
    .filter((f) => f.includes(part))
    .sort();
}

test('verify names the record whose journal was changed or removed, or whose value was edited', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-cli-verify-'));
  const options = { resources: { wallets: ['balance'] } };
  const db = new S3db({ connectionString: pathToFileURL(dir).href });
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await db.usePlugin(plugin({ ...options, consolidation: { mode: 'sync' } }));
  for (const id of ['w1', 'w2']) {
    await wallets.insert({ id });
    for (let i = 1; i <= 4; i += 1) await wallets.add(id, i);
  }
  await db.disconnect();
  const config = join(dir, '..', `${dir.split('/').pop()}.json`);
  writeFileSync(config, JSON.stringify(options));
  const store = { connection: pathToFileURL(dir).href, config };
  const clean = cli(store, ['verify', '--json']);
  assert.equal(clean.code, 0, clean.err);
  assert.deepEqual(JSON.parse(clean.out)[0].problems, []);
  const problems = () => {
    const r = cli(store, ['verify', '--json']);
    assert.equal(r.code, 1, `verify should fail: ${r.out}${r.err}`);
    const human = cli(store, ['verify']);
    assert.equal(human.code, 1);
    assert.match(human.out, /verify FAILED/);
    return JSON.parse(r.out)[0].problems.map((p) => [p.id, p.kind]);
  };
  // One byte of w1's second journal: 1 + 2 = 3 becomes 4.
  const [, second] = filesUnder(dir, join('j', 'wallets', 'balance', 'w1', '/'));
  const original = readFileSync(second);
  writeFileSync(second, original.toString().replace('"after":"3"', '"after":"4"'));
  // The changed link, and what the change no longer explains: all of it on w1.
  const changed = problems();
  assert.deepEqual(changed[0], ['w1', 'journal-changed']);
  assert.ok(changed.every(([id]) => id === 'w1'), JSON.stringify(changed));
  writeFileSync(second, original);
  // w2's third journal removed.
  const third = filesUnder(dir, join('j', 'wallets', 'balance', 'w2', '/'))[2];
  const kept = readFileSync(third);
  unlinkSync(third);
  assert.deepEqual(problems(), [['w2', 'journal-removed']]);
  writeFileSync(third, kept);
  // Every journal of w2 removed: the record the database lists is still checked.
  const all = filesUnder(dir, join('j', 'wallets', 'balance', 'w2', '/')).map((f) => [f, readFileSync(f)]);
  for (const [f] of all) unlinkSync(f);
  assert.deepEqual(problems(), [['w2', 'journal-removed']]);
  for (const [f, bytes] of all) writeFileSync(f, bytes);
  // w1's stored value edited: 10 becomes 11.
  const [record] = filesUnder(dir, join('r', 'wallets', 'w1'));
  const doc = JSON.parse(readFileSync(record, 'utf8'));
  assert.equal(doc.d.balance, 10);
  doc.d.balance = 11;
  writeFileSync(record, JSON.stringify(doc));
  assert.deepEqual(problems(), [['w1', 'value-mismatch']]);
});

test('--s3db: inspect and verify show the s3db.js copy of a record next to Tally\'s value', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-cli-s3db-'));
  const options = { resources: { wallets: ['balance'] } };
  const connection = pathToFileURL(join(dir, 'data')).href;
  const db = await s3dbDatabase(connection);
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|max:100|default:0' } });
  await db.usePlugin(plugin({ ...options, consolidation: { mode: 'sync' }, logLevel: 'silent' }));
  await wallets.insert({ id: 'w1' });
  await wallets.insert({ id: 'w2' });
  await wallets.add('w1', 5);
  await wallets.add('w2', 7);
  // s3db.js refuses 505 (max:100): its copy keeps 5.
  await wallets.add('w1', 500);
  await db.disconnect();
  const config = join(dir, 'tally.json');
  writeFileSync(config, JSON.stringify(options));
  const store = { connection, config };
  const seen = json(store, ['--s3db', 'inspect', 'wallets', 'w1']);
  assert.deepEqual([seen.fields[0].value, seen.fields[0].hostValue, seen.fields[0].inSync], [505, 5, false]);
  assert.equal(seen.host.balance, 5);
  assert.match(cli(store, ['--s3db', 'inspect', 'wallets', 'w1']).out, /s3db\.js copy: 5 \(differs/);
  assert.match(cli(store, ['--s3db', 'inspect', 'wallets', 'w2']).out, /s3db\.js copy: 7 \(in sync\)/);
  const audit = cli(store, ['--s3db', 'verify', '--json']);
  assert.equal(audit.code, 1, audit.err);
  assert.deepEqual(JSON.parse(audit.out)[0].problems.map((p) => [p.id, p.kind]), [['w1', 'host-mismatch']]);
});

test('exit codes and messages scripts can rely on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-cli-data-'));
  const store = await seeded(pathToFileURL(dir).href);
  assert.equal(cli(store, ['--help']).code, 0);
  assert.match(cli(store, ['inspect', '--help']).out, /Usage: tally-ec inspect/);
  assert.equal(cli(store, ['bogus']).code, 2);
  assert.equal(cli(store, ['pending', '--limit', 'x']).code, 2);
  const noStore = cli(store, ['status'], { TALLY_CONNECTION: '' });
  assert.equal(noStore.code, 2);
  assert.match(noStore.err, /--connection/);
  const unknown = cli(store, ['pending', 'nope']);
  assert.equal(unknown.code, 2);
  assert.match(unknown.err, /ERR_UNKNOWN_RESOURCE/);
  const badConfig = join(store.dir, 'bad.json');
  writeFileSync(badConfig, '{ "resources": ');
  const bad = cli(store, ['status'], { TALLY_CONFIG: badConfig });
  assert.equal(bad.code, 2);
  assert.match(bad.err, /not valid JSON/);
  const wrongType = join(store.dir, 'wrong.json');
  writeFileSync(wrongType, JSON.stringify({ resources: { wallets: ['balance'] }, consolidation: { mode: 'later' } }));
  const invalid = cli(store, ['status'], { TALLY_CONFIG: wrongType });
  assert.equal(invalid.code, 2);
  assert.match(invalid.err, /ERR_INVALID_CONFIG/);
  assert.equal(cli(store, ['export', 'wallets', 'balance', '--format', 'xml']).code, 2);
});

test('a config module with a reducer; a transaction set aside makes consolidate exit 1', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'tally-cli-data-'));
  const connection = pathToFileURL(dir).href;
  const reducer = (acc, tx) => {
    if (tx.value === 13) throw new Error('unlucky');
    return acc + tx.value;
  };
  const options = { resources: [{ resource: 'wallets', fields: [{ field: 'balance', reducer }] }] };
  const db = new S3db({ connectionString: connection });
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await db.usePlugin(plugin({ ...options, consolidation: { auto: false } }));
  await wallets.insert({ id: 'w1' });
  await wallets.add('w1', 13);
  await wallets.add('w1', 2);
  await db.disconnect();
  const config = join(dir, 'tally.config.mjs');
  writeFileSync(
    config,
    `export default { resources: [{ resource: 'wallets', fields: [{ field: 'balance', reducer: ${reducer.toString()} }] }] };\n`,
  );
  const store = { connection, config, dir };
  const run = cli(store, ['consolidate', '--json']);
  assert.equal(run.code, 1, run.err);
  const result = JSON.parse(run.out);
  assert.equal(result.fields[0].transactions, 2);
  assert.equal(result.errors.length, 1);
  assert.match(result.errors[0].message, /dead letter.*unlucky/);
  assert.equal(json(store, ['inspect', 'wallets', 'w1']).fields[0].value, 2);
  const dead = json(store, ['dead-letters', 'list']);
  assert.equal(dead.length, 1);
  assert.equal(dead[0].recordId, 'w1');
});
