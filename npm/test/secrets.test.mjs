// Secrets never show: the connection string of Tally's S3db is masked in the property,
// util.inspect, console.log and JSON.stringify, and the database still connects with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import util from 'node:util';
import { S3db } from '../index.js';
import { plugin, WALLET_ATTRIBUTES, localS3 } from './helpers.mjs';

const CASES = [
  ['s3://AKIAEXAMPLE:wJalrXUtnFEMI%2FK7MDENG@bucket/prefix?region=eu-west-1', 'wJalrXUtnFEMI', 's3://AKIAEXAMPLE:***@bucket/prefix?region=eu-west-1'],
  ['http://key:hunter22@127.0.0.1:9000/bucket/app', 'hunter22', 'http://key:***@127.0.0.1:9000/bucket/app'],
  ['https://s3.example.com/bucket/app?accessKeyId=K&secretAccessKey=topsecret99', 'topsecret99', 'https://s3.example.com/bucket/app?accessKeyId=K&secretAccessKey=***'],
  // A raw `/` after digits: a URL parser reads a port and a path there.
  ['s3://AKIAXX:9/SUPERSECRET42@bucket/app', 'SUPERSECRET42', 's3://AKIAXX:***@bucket/app'],
];

test('the connection string is masked wherever a database is shown', () => {
  for (const [connectionString, secret, masked] of CASES) {
    const db = new S3db({ connectionString });
    assert.equal(db.connectionString, masked);
    for (const shown of [util.inspect(db), util.inspect(db, { showHidden: true, depth: 5 }), JSON.stringify(db), `${util.format('%o', db)}`]) {
      assert.ok(!shown.includes(secret), `the secret shows in ${shown}`);
    }
  }
});

test('a masked database still uses its real connection string', async () => {
  const db = new S3db({ connectionString: 'memory://user:pw-not-shown@secrets/app' });
  await db.connect();
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } }));
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w' });
  assert.equal(await wallets.add('w', 3), 3);
  assert.ok(!util.inspect(db, { depth: 4 }).includes('pw-not-shown'));
  await db.disconnect();
});

test('a run against the S3 server: no secret in any log line, inspect output, report or error', async (t) => {
  const s3 = localS3(t, 'secrets');
  if (!s3) return;
  const { url, secret } = s3;
  assert.ok(secret.length >= 4, 'a secret long enough to search for');
  const seen = [];
  const keep = (level) => (obj, msg) => seen.push(`${level} ${util.inspect(obj, { depth: 6 })} ${msg ?? ''}`);
  const logger = { levels: { values: {} }, bindings: () => ({}), child: () => logger };
  for (const level of ['trace', 'debug', 'info', 'warn', 'error', 'fatal']) logger[level] = keep(level);
  const reducer = (acc, tx) => {
    if (tx.value === 13) throw new Error('unlucky');
    return acc + tx.value;
  };
  const db = new S3db({ connectionString: url.href });
  await db.connect();
  const p = plugin({
    resources: [{ resource: 'wallets', fields: [{ field: 'balance', reducer }] }],
    consolidation: { mode: 'async', auto: false },
    verbose: true,
    debug: true,
    logLevel: 'debug',
    logger,
  });
  await db.usePlugin(p);
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w' });
  await wallets.add('w', 2);
  await wallets.add('w', 13);
  await p.consolidateAll();
  await new Promise((r) => setTimeout(r, 50));
  for (const shown of [
    await p.inspect('wallets', 'w'),
    await p.getStatus(),
    await p.verify('wallets', 'balance'),
    await p.metrics(),
    await p.metrics('prometheus'),
    await p.getDeadLetters('wallets', 'balance'),
    db,
    p,
  ]) {
    seen.push(util.inspect(shown, { depth: 8, showHidden: true }));
    if (shown !== p) seen.push(JSON.stringify(shown) ?? '');
  }
  assert.ok(seen.some((l) => l.startsWith('error')), 'the dead letter was logged');
  // Errors: a bucket that does not exist, and a wrong key for the real one.
  const missing = new URL(url.href);
  missing.pathname = '/no-such-bucket-tally/app';
  const stranger = new URL(url.href);
  stranger.username = 'nobody';
  for (const bad of [missing, stranger]) {
    const other = new S3db({ connectionString: bad.href });
    try {
      await other.connect();
      const r = await other.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
      await r.insert({ id: 'x' });
    } catch (e) {
      seen.push(`${e.code} ${e.message} ${e.stack} ${util.inspect(e, { depth: 6 })}`);
    }
    seen.push(util.inspect(other, { showHidden: true }));
    await other.disconnect().catch(() => {});
  }
  assert.ok(seen.some((l) => l.startsWith('ERR_')), `an error was met: ${seen.slice(-3).join('\n')}`);
  const leaked = seen.filter((l) => l.includes(secret));
  assert.deepEqual(leaked, [], 'the secret key appeared');
  await db.disconnect();
});
