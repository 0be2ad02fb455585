// Secrets never show: the connection string of Tally's S3db is masked in the property,
// util.inspect, console.log and JSON.stringify, and the database still connects with it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import util from 'node:util';
import { S3db } from '../index.js';
import { plugin, WALLET_ATTRIBUTES } from './helpers.mjs';

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
