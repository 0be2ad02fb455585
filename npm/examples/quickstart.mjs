// The README's demo: wallets in sync mode and page-view counters in async mode on the
// embedded folder store, printing balances, what is pending and what consolidation did.
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
// A JSON export for the dashboard's static mode (`tally-ec dashboard --data <file>`), which
// computes the same analytics in the browser with the WASM build.
const exported = join(folder, 'transactions.json');
writeFileSync(exported, JSON.stringify({ transactions: await counters.getRawEvents('pages', 'views') }));
console.log(`\nDashboard export: ${exported} (npx tally-ec dashboard --data ${exported})`);
await site.disconnect();
console.log(`\nData kept in ${folder} (records, transaction journals, checkpoints).`);
