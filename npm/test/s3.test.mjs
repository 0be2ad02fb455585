// S3 connection strings against the local server (scripts/s3-server.sh): a wallet round trip,
// the request budget of a sync add (standalone and inside s3db.js) counted by the server's own
// log, and storage errors that name the bucket and endpoint but never the secret. Skipped without
// TALLY_S3_ENDPOINT, unless TALLY_S3_REQUIRED is set (the README's test command sets both).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { S3db, TallyError } from '../index.js';
import { plugin, s3dbDatabase, WALLET_ATTRIBUTES } from './helpers.mjs';
import { requestCounter } from './support/s3-log.mjs';

const endpoint = process.env.TALLY_S3_ENDPOINT;
if (!endpoint && process.env.TALLY_S3_REQUIRED) {
  throw new Error('TALLY_S3_REQUIRED is set but TALLY_S3_ENDPOINT is not');
}
const skip = endpoint ? false : 'TALLY_S3_ENDPOINT is not set';
const SECRET = 'n0t/so+secret';

function connectionString({ key = process.env.TALLY_S3_ACCESS_KEY ?? 'test', secret = SECRET, bucket = 'tally-node', host } = {}) {
  const url = new URL(endpoint);
  if (host) url.host = host;
  url.username = key;
  url.password = encodeURIComponent(secret);
  url.pathname = `/${bucket}/s3-test-${process.pid}-${Date.now()}`;
  return url.href;
}

test('a wallet on S3: sync adds, then the record and its transactions', { skip }, async () => {
  const url = connectionString();
  const db = new S3db({ connectionString: url });
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } }));
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w1', balance: 10 });
  assert.equal(await wallets.add('w1', 'balance', 5), 15);
  assert.equal(await wallets.sub('w1', 'balance', 2.5), 12.5);
  // (`db.connectionString` is masked: the second connection gets the real one.)
  const again = new S3db({ connectionString: url });
  const same = await again.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  assert.equal((await same.get('w1')).balance, 12.5, 'a second connection reads what the first wrote');
  await db.disconnect();
});

test('request budget from Node, counted by the server: a sync add costs 6 requests standalone and 12 inside s3db.js', { skip }, async () => {
  assert.ok(process.env.TALLY_S3_LOG, 'the server\'s request log (TALLY_S3_LOG, from scripts/s3-server.sh)');
  for (const [host, budget] of [['tally', { total: 6, PUT: 3, GET: 1, LIST: 1, DELETE: 1 }], ['s3db', { total: 12, PUT: 4, GET: 5, HEAD: 1, LIST: 1, DELETE: 1 }]]) {
    const url = connectionString({ key: process.env.TALLY_S3_ACCESS_KEY, secret: process.env.TALLY_S3_SECRET_KEY });
    const db = host === 'tally' ? new S3db({ connectionString: url }) : await s3dbDatabase(url);
    await db.connect();
    await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync', auto: false } }));
    const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
    await wallets.insert({ id: 'w1', balance: 10 });
    await wallets.add('w1', 'balance', 1); // the first consolidation creates Tally's state object
    const counter = requestCounter();
    assert.equal(await wallets.add('w1', 'balance', 5), 16);
    assert.deepEqual(counter.counts(), budget, `one sync add on ${host}`);
    await db.disconnect();
  }
});

for (const [what, options, words] of [
  ['a missing bucket', { bucket: 'no-such-bucket' }, ['no-such-bucket', 'does not exist']],
  ['bad credentials', { key: 'intruder' }, ['tally-node', 'access denied']],
  ['a wrong endpoint', { host: '127.0.0.1:9' }, ['tally-node', '127.0.0.1:9', 'cannot reach']],
]) {
  test(`${what} gives ERR_STORAGE naming bucket and endpoint, never the secret`, { skip }, async () => {
    const db = new S3db({ connectionString: connectionString(options) });
    await db.connect();
    const err = await db
      .createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES })
      .then(() => null, (e) => e);
    assert.ok(err instanceof TallyError, `expected a TallyError, got ${err}`);
    assert.equal(err.code, 'ERR_STORAGE');
    for (const w of words) assert.ok(err.message.includes(w), `${err.message} lacks ${w}`);
    assert.ok(!err.message.includes(SECRET) && !err.message.includes(encodeURIComponent(SECRET)), err.message);
    assert.ok(!String(err.stack).includes('n0t'), 'the stack does not carry the secret either');
  });
}
