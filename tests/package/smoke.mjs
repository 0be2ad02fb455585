// The package smoke test, run by scripts/package.sh inside an empty app folder where the packed
// tarballs were installed with --ignore-scripts (under qemu-user for foreign architectures).
// `node smoke.mjs` checks import, require and tally-ec/wasm, a sync wallet, an async counter
// and one analytics query, and prints one JSON line; `node smoke.mjs --no-native` checks an
// install without a platform package: tally-ec/wasm works, the first native call fails with
// ERR_NATIVE_UNAVAILABLE.
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import * as esm from 'tally-ec';
import init, { getDayByHour } from 'tally-ec/wasm';

const require = createRequire(import.meta.url);
const cjs = require('tally-ec');
assert.equal(cjs.S3db, esm.S3db, 'import and require give the same classes');
const { S3db, EventualConsistencyPlugin } = esm;

await init();
const day = '2025-03-09';
const events = [
  { originalId: 'home', timestamp: `${day}T07:30:00Z`, value: 1, operation: 'add' },
  { originalId: 'docs', timestamp: `${day}T07:45:00Z`, value: 2, operation: 'add' },
];
const wasmHour = getDayByHour(events, day).find((p) => p.count > 0);
assert.deepEqual([wasmHour.cohort, wasmHour.count, wasmHour.sum], [`${day}T07`, 2, 3]);

if (process.argv.includes('--no-native')) {
  const db = new S3db({ connectionString: 'memory://smoke/no-native' });
  await assert.rejects(db.connect(), (e) => e.code === 'ERR_NATIVE_UNAVAILABLE' && /tally-ec-linux-/.test(e.message));
  console.log(JSON.stringify({ ok: true, wasm: wasmHour.sum, native: 'ERR_NATIVE_UNAVAILABLE' }));
  process.exit(0);
}

const now = Date.parse(`${day}T12:00:00Z`);
const db = new S3db({ connectionString: 'memory://smoke/wallets' });
await db.usePlugin(new EventualConsistencyPlugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' }, verbose: false }));
const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
await wallets.insert({ id: 'alice' });
await wallets.add('alice', 0.1);
const balance = await wallets.add('alice', 0.2);
assert.equal(balance, 0.3, 'a sync add returns the exact balance');
await db.disconnect();

const counters = new S3db({ connectionString: 'memory://smoke/pages' });
const plugin = new EventualConsistencyPlugin({
  resources: { pages: ['views'] },
  consolidation: { mode: 'async', auto: false },
  analytics: { enabled: true },
  clock: () => now,
  verbose: false,
});
await counters.usePlugin(plugin);
const pages = await counters.createResource({ name: 'pages', attributes: { views: 'number|default:0' } });
await pages.insert({ id: 'home' });
for (let i = 0; i < 3; i += 1) await pages.increment('home');
assert.equal((await pages.get('home')).views, 0, 'async: nothing applied before consolidation');
assert.equal(await pages.consolidate('home'), 3);
const noon = (await plugin.getDayByHour('pages', 'views', day)).find((p) => p.count > 0);
assert.deepEqual([noon.cohort, noon.count, noon.sum], [`${day}T12`, 3, 3]);
await counters.disconnect();
console.log(JSON.stringify({ ok: true, balance, views: 3, analytics: noon.cohort, wasm: wasmHour.sum }));
