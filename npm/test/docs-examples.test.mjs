// The plugin documentation's examples (shared/upstream-docs/eventual-consistency-plugin.md),
// run as written (hooks receive the record, as in s3db.js) and checked against what the
// documentation prints.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { EventualConsistencyPlugin, TallyError } from '../index.js';
import { freshDb, plugin, WALLET_ATTRIBUTES } from './helpers.mjs';

test('quick start: 100 - 50 + 1 - 1 leaves the wallet at 50', async () => {
  const db = await freshDb();
  await db.usePlugin(
    plugin({
      resources: { wallets: ['balance'], users: ['points', 'credits'] },
      consolidation: { mode: 'sync', auto: true },
    }),
  );
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'wallet-1', balance: 0 });
  await wallets.add('wallet-1', 'balance', 100);
  await wallets.sub('wallet-1', 'balance', 50);
  await wallets.increment('wallet-1', 'balance');
  await wallets.decrement('wallet-1', 'balance');
  assert.equal((await wallets.get('wallet-1')).balance, 50);
  await db.disconnect();
});

test('wallet system in sync mode ends at 750', async () => {
  const db = await freshDb();
  await db.usePlugin(plugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync', auto: false } }));
  const wallets = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await wallets.insert({ id: 'w1', balance: 0 });
  assert.equal(await wallets.add('w1', 'balance', 1000), 1000);
  assert.equal(await wallets.sub('w1', 'balance', 250), 750);
  assert.equal((await wallets.get('w1')).balance, 750);
  await db.disconnect();
});

test('counters with increment and decrement: loginCount 1, remainingAttempts 1', async () => {
  const db = await freshDb();
  await db.usePlugin(plugin({ resources: { users: ['loginCount', 'remainingAttempts'] }, consolidation: { mode: 'sync' } }));
  const users = await db.createResource({
    name: 'users',
    attributes: { id: 'string|required', loginCount: 'number|default:0', remainingAttempts: 'number|default:3' },
  });
  await users.insert({ id: 'user-1', loginCount: 0, remainingAttempts: 3 });
  await users.increment('user-1', 'loginCount');
  await users.decrement('user-1', 'remainingAttempts');
  await users.decrement('user-1', 'remainingAttempts');
  const user = await users.get('user-1');
  assert.equal(user.loginCount, 1);
  assert.equal(user.remainingAttempts, 1);
  await db.disconnect();
});

test('URL shortener in async mode: a click hook adds transactions that consolidation applies', async () => {
  const db = await freshDb();
  const ec = plugin({
    resources: { urls: ['clicks', 'views'] },
    consolidation: { mode: 'async', auto: true, interval: 60 },
    analytics: { enabled: true, periods: ['hour', 'day', 'month'], metrics: ['count', 'sum'] },
  });
  await db.usePlugin(ec);
  const urls = await db.createResource({
    name: 'urls',
    attributes: { id: 'string|required', clicks: 'number|default:0', views: 'number|default:0' },
  });
  const clicks = await db.createResource({ name: 'clicks', attributes: { urlId: 'string|required' } });
  clicks.addHook('afterInsert', async (record) => {
    await urls.add(record.urlId, 'clicks', 1);
  });
  await urls.insert({ id: 'abc', clicks: 0, views: 0 });
  for (let i = 0; i < 5; i++) await clicks.insert({ urlId: 'abc' });
  const tx = await urls.add('abc', 'views', 2);
  assert.equal(tx.operation, 'add');
  assert.equal(tx.applied, false);
  assert.equal((await urls.get('abc')).clicks, 0, 'async mode: nothing applied yet');
  assert.equal(await urls.getConsolidatedValue('abc', 'clicks'), 5);
  assert.ok(db.plugins.eventualconsistency instanceof EventualConsistencyPlugin);
  await ec.consolidateAll();
  const url = await urls.get('abc');
  assert.equal(url.clicks, 5);
  assert.equal(url.views, 2);
  const stats = await ec.getLastNDays('urls', 'clicks', 7);
  assert.equal(stats.length, 1, 'only today has data');
  assert.deepEqual(Object.keys(stats[0]), ['cohort', 'count', 'sum', 'recordCount', 'operations']);
  assert.equal(stats[0].count, 5);
  assert.equal(stats[0].sum, 5);
  await db.disconnect();
});

async function utmDb() {
  const db = await freshDb();
  await db.usePlugin(plugin({ resources: { urls: ['utmResults'] }, consolidation: { mode: 'sync' } }));
  const urls = await db.createResource({
    name: 'urls',
    attributes: { id: 'string|required', link: 'string|required', utmResults: 'json' },
  });
  await urls.insert({ id: 'url-1', link: 'https://example.com', utmResults: {} });
  return { db, urls };
}

test('nested json paths: medium and google land inside utmResults', async () => {
  const { db, urls } = await utmDb();
  await urls.add('url-1', 'utmResults.medium', 5);
  await urls.add('url-1', 'utmResults.google', 3);
  assert.deepEqual((await urls.get('url-1')).utmResults, { medium: 5, google: 3 });
  await db.disconnect();
});

test('multiple independent nested paths end { medium: 15, source: 5, campaign: 3 }', async () => {
  const { db, urls } = await utmDb();
  await urls.add('url-1', 'utmResults.medium', 10);
  await urls.add('url-1', 'utmResults.source', 5);
  await urls.add('url-1', 'utmResults.campaign', 3);
  assert.deepEqual((await urls.get('url-1')).utmResults, { medium: 10, source: 5, campaign: 3 });
  await urls.add('url-1', 'utmResults.medium', 5);
  assert.deepEqual((await urls.get('url-1')).utmResults, { medium: 15, source: 5, campaign: 3 });
  await db.disconnect();
});

test('set, add and sub on a nested path give 100 + 50 - 20 = 130', async () => {
  const { db, urls } = await utmDb();
  await urls.set('url-1', 'utmResults.clicks', 100);
  await urls.add('url-1', 'utmResults.clicks', 50);
  await urls.sub('url-1', 'utmResults.clicks', 20);
  assert.equal((await urls.get('url-1')).utmResults.clicks, 130);
  await db.disconnect();
});

test('the three nested-path errors, word for word, with code ERR_INVALID_PATH', async () => {
  const db = await freshDb();
  await db.usePlugin(plugin({ resources: { urls: ['utmResults'], posts: ['utmResults'] }, consolidation: { mode: 'sync' } }));
  const urls = await db.createResource({
    name: 'urls',
    attributes: { id: 'string|required', link: 'string|required', utmResults: 'json' },
  });
  const posts = await db.createResource({
    name: 'posts',
    attributes: {
      id: 'string|required',
      link: 'string|required',
      utmResults: { $$type: 'object', medium: 'number', source: 'number' },
    },
  });
  await urls.insert({ id: 'url-1', link: 'https://example.com', utmResults: {} });
  const expect = async (p, message) => {
    await assert.rejects(p, (e) => {
      assert.ok(e instanceof TallyError, `TallyError expected, got ${e}`);
      assert.equal(e.code, 'ERR_INVALID_PATH');
      assert.equal(e.message, message);
      return true;
    });
  };
  await expect(
    urls.add('url-1', 'utmResults.medium.google', 5),
    `Path "utmResults.medium.google" exceeds 1 level after 'json' field. Maximum nesting after 'json' is 1 level.`,
  );
  await expect(posts.add('p-1', 'utmResults.invalid.path', 5), 'Field "invalid" not found in "utmResults"');
  await expect(urls.add('url-1', 'link.nested', 5), 'Field "link" is type "string" and cannot be nested');
  assert.deepEqual((await urls.get('url-1')).utmResults, {});
  await db.disconnect();
});
