// The README's demo: wallets in sync mode and page-view counters in async mode on the
// embedded folder store, printing balances, what is pending and what consolidation did;
// then eight weeks of back-dated history for the dashboard.
// Usage: node examples/quickstart.mjs [folder]   (default: a fresh folder under the OS temp dir)
import { mkdtempSync, rmSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3db, EventualConsistencyPlugin } from 'tally-ec';

const folder = process.argv[2] ? resolve(process.argv[2]) : mkdtempSync(join(tmpdir(), 'tally-demo-'));
rmSync(folder, { recursive: true, force: true });
mkdirSync(folder, { recursive: true });
const connectionString = pathToFileURL(folder).href;
console.log(`Tally demo on the folder store ${connectionString}\n`);

const table = (rows) => console.table(rows);

// --- Wallets, sync mode: every mutation resolves to the new balance. -----------------------
const bank = new S3db({ connectionString });
await bank.connect();
await bank.usePlugin(
  new EventualConsistencyPlugin({ verbose: false, resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } }),
);
const wallets = await bank.createResource({
  name: 'wallets',
  attributes: { id: 'string|required', owner: 'string|required', balance: 'number|default:0' },
});
await wallets.insert({ id: 'alice', owner: 'Alice', balance: 0 });
await wallets.insert({ id: 'bob', owner: 'Bob', balance: 50 });

console.log('== Wallets (sync mode): each call resolves to the consolidated balance ==');
const steps = [
  ['alice', 'add', 1000],
  ['alice', 'sub', 250],
  ['bob', 'add', 0.1],
  ['bob', 'add', 0.2],
  ['alice', 'add', 19.99, { idempotencyKey: 'order-7' }],
  ['alice', 'add', 19.99, { idempotencyKey: 'order-7' }],
];
const log = [];
for (const [id, op, amount, options] of steps) {
  const value = await wallets[op](id, 'balance', amount, options);
  log.push({ wallet: id, call: `${op}(${amount})${options ? ' retry-safe key ' + options.idempotencyKey : ''}`, 'resolves to': value });
}
table(log);
table(await Promise.all(['alice', 'bob'].map(async (id) => {
  const w = await wallets.get(id);
  return { wallet: id, owner: w.owner, balance: w.balance };
})));
console.log('bob: 50 + 0.1 + 0.2 is exactly 50.3; the retried order-7 was applied once.\n');
await bank.disconnect();

// --- Page views, async mode: mutations are cheap transactions, consolidated later. ----------
const site = new S3db({ connectionString });
const counters = new EventualConsistencyPlugin({
  verbose: false,
  resources: { pages: ['views', 'likes'] },
  consolidation: { mode: 'async', auto: false },
  analytics: { enabled: true },
});
await site.usePlugin(counters);
const pages = await site.createResource({
  name: 'pages',
  attributes: { id: 'string|required', title: 'string|required', views: 'number|default:0', likes: 'number|default:0' },
});
for (const [id, title] of [['home', 'Home'], ['pricing', 'Pricing'], ['docs', 'Docs']]) await pages.insert({ id, title });

console.log('== Page counters (async mode): increments are stored as transactions ==');
const visits = { home: 120, pricing: 45, docs: 80 };
const writes = [];
for (const [id, n] of Object.entries(visits)) {
  for (let i = 0; i < n; i++) writes.push(pages.increment(id, 'views'));
}
for (let i = 0; i < 12; i++) writes.push(pages.add('docs', 'likes', 1));
const first = await Promise.all(writes);
console.log(`${first.length} transactions written; one of them:`);
console.log(first[0]);

const pendingView = async () =>
  Promise.all(Object.keys(visits).map(async (id) => {
    const p = await pages.get(id);
    return {
      page: id,
      'views stored': p.views,
      'views after consolidation': await pages.getConsolidatedValue(id, 'views'),
      'likes stored': p.likes,
    };
  }));
console.log('\nBefore consolidation (records untouched, pending visible):');
table(await pendingView());
console.log('status.pending:', (await counters.getStatus()).pending);

const runs = await counters.consolidateAll();
console.log('\nconsolidateAll():');
table([...runs.values()].map((r) => ({ field: `${r.resource}.${r.field}`, records: r.recordsProcessed, applied: r.transactionsApplied, errors: r.errorCount })));
console.log('After consolidation:');
table(await pendingView());
console.log('status.pending:', (await counters.getStatus()).pending);

console.log('\nAnalytics: page views by hour today (UTC), and the top pages:');
const today = new Date().toISOString().slice(0, 10);
table((await counters.getDayByHour('pages', 'views', today)).map(({ operations, ...p }) => p));
table(await counters.getTopRecords('pages', 'views', { period: 'day', date: today, limit: 3 }));
await site.disconnect();

// --- Eight weeks of history, back-dated through the `clock` option, for the dashboard. -------
const DAY = 86_400_000;
const end = Math.floor(Date.now() / DAY) * DAY; // today, 00:00 UTC: the history ends yesterday
let now = end - 56 * DAY;
const historyOptions = {
  verbose: false,
  resources: { shops: ['revenue'], apps: ['signups'] },
  consolidation: { mode: 'async', auto: false },
  analytics: { enabled: true, metrics: ['count', 'sum', 'avg', 'min', 'max'] },
};
const history = new S3db({ connectionString });
const ledger = new EventualConsistencyPlugin({ ...historyOptions, clock: () => now });
await history.usePlugin(ledger);
const shops = await history.createResource({ name: 'shops', attributes: { id: 'string|required', revenue: 'number|default:0' } });
const apps = await history.createResource({ name: 'apps', attributes: { id: 'string|required', signups: 'number|default:0' } });
for (const id of ['berlin', 'lisbon', 'osaka']) await shops.insert({ id });
for (const id of ['ios', 'android']) await apps.insert({ id });
// A deterministic pseudo-random walk: busier on weekdays and in the afternoon, growing.
let seed = 7;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
let orders = 0;
for (let day = 0; day < 56; day += 1) {
  const weekday = new Date(end - (56 - day) * DAY).getUTCDay();
  const busy = (weekday === 0 || weekday === 6 ? 0.5 : 1) * (1 + day / 40);
  for (let hour = 8; hour < 22; hour += 1) {
    now = end - (56 - day) * DAY + hour * 3_600_000;
    const n = Math.round(busy * (hour >= 13 && hour <= 18 ? 3 : 1) * random() * 2);
    for (let k = 0; k < n; k += 1) {
      now += 60_000;
      const shop = ['berlin', 'lisbon', 'osaka'][Math.floor(random() * 3)];
      await shops.add(shop, 'revenue', Math.round((5 + random() * 95) * 100) / 100);
      if (random() < 0.08) await shops.sub(shop, 'revenue', Math.round(random() * 3000) / 100); // a refund
      if (random() < 0.4) await apps.increment(random() < 0.6 ? 'ios' : 'android', 'signups');
      orders += 1;
    }
  }
  await ledger.consolidateAll();
}
console.log(`\n== Eight weeks of history (back-dated with the clock option): ${orders} orders, with refunds ==`);
table((await ledger.getLastNWeeks('shops', 'revenue', 8)).map(({ cohort, count, sum, avg, recordCount }) => ({ week: cohort, transactions: count, revenue: Math.round(sum * 100) / 100, 'avg transaction': Math.round(avg * 100) / 100, shops: recordCount })));
const config = join(folder, 'tally.json');
writeFileSync(config, JSON.stringify(historyOptions, null, 2));
// A JSON export for the dashboard's static mode, which computes the same analytics in the
// browser with the WASM build, in any time zone.
const exported = join(folder, 'transactions.json');
writeFileSync(exported, JSON.stringify({ transactions: await ledger.getRawEvents('shops', 'revenue') }));
await history.disconnect();
console.log('\nThe dashboard, live from this store (then open the address it prints):');
console.log(`  npx tally-ec dashboard --connection ${connectionString} --config ${config}`);
console.log(`or computed in the browser from an export: npx tally-ec dashboard --data ${exported}`);
console.log(`\nData kept in ${folder} (records, transaction journals, checkpoints).`);
