// Benchmark (not a test): Tally against s3db.js 21.6.2's own EventualConsistencyPlugin, in the
// same run on the same store. Three stacks: 21.6.2's plugin in an s3db.js Database, Tally's
// plugin in the same kind of s3db.js Database (the drop-in), and Tally standalone (its own
// S3db). For each: sequential async adds, one consolidation of them, and sequential sync adds,
// timed; on S3 also the requests each operation made, counted from the local server's own
// request log (scripts/s3-server.sh). Prints a Markdown table, and the balance each stack ends
// with (it must equal the number of adds).
//
//   bash scripts/bench-node.sh            # starts the S3 server, builds, runs both stores
//   node npm/bench/plugin.mjs [--store memory|s3|both] [--n 50]
import { parseArgs } from 'node:util';
import { EventualConsistencyPlugin, S3db } from '../index.js';
import { requestCounter } from '../test/support/s3-log.mjs';

const { values: opts } = parseArgs({
  options: {
    store: { type: 'string', default: 'both' },
    n: { type: 'string', default: '50' },
  },
});
const N = Number(opts.n);
const log = (...a) => console.error('..', ...a);
process.env.S3DB_DISABLE_CRON = 'true';

// s3db.js's HTTP client (recker) opens a circuit breaker after 5 failed requests (404s of
// missing objects count), failing every request for 30 s, and s3db.js then exits the process
// with status 0 on the unhandled rejection. The breaker is turned off for both s3db.js stacks.
const S3DB_HTTP = { enableCircuitBreaker: false };

const STACKS = {
  's3db.js 21.6.2': async (url, mode) => {
    const { Database } = await import('s3db.js/lite');
    const { EventualConsistencyPlugin: Old } = await import('s3db.js/plugins/eventual-consistency/index');
    const db = new Database({ connectionString: url, logLevel: 'silent', executorPool: false, clientOptions: { httpClientOptions: S3DB_HTTP } });
    const plugin = new Old({ resources: { wallets: ['balance'] }, mode, autoConsolidate: false, enableCoordinator: false, logLevel: 'silent' });
    return { db, plugin };
  },
  'Tally in s3db.js': async (url, mode) => {
    const { Database } = await import('s3db.js/lite');
    const db = new Database({ connectionString: url, logLevel: 'silent', executorPool: false, clientOptions: { httpClientOptions: S3DB_HTTP } });
    return { db, plugin: new EventualConsistencyPlugin({ resources: { wallets: ['balance'] }, consolidation: { mode, auto: false }, verbose: false }) };
  },
  'Tally standalone': async (url, mode) => ({
    db: new S3db({ connectionString: url }),
    plugin: new EventualConsistencyPlugin({ resources: { wallets: ['balance'] }, consolidation: { mode, auto: false }, verbose: false }),
  }),
};

function connection(store, name, mode) {
  const tag = `bench-${name.replace(/\W+/g, '-').toLowerCase()}-${mode}-${process.pid}`;
  if (store === 'memory') return { url: `memory://${tag}/app`, s3: false };
  const url = new URL(process.env.TALLY_S3_ENDPOINT);
  url.username = process.env.TALLY_S3_ACCESS_KEY;
  url.password = encodeURIComponent(process.env.TALLY_S3_SECRET_KEY);
  url.pathname = `/tally-node/${tag}/app`;
  return { url: url.href, s3: true };
}

/** Times `fn` and, on S3, counts the requests it made (the stacks run one at a time). */
async function measure(s3, fn) {
  const counter = s3 ? requestCounter() : null;
  const t0 = performance.now();
  await fn();
  const ms = performance.now() - t0;
  return { ms, requests: counter?.counts() ?? null };
}

async function run(store, name, mode) {
  const { url, s3 } = connection(store, name, mode);
  const { db, plugin } = await STACKS[name](url, mode);
  await db.connect();
  await db.usePlugin(plugin);
  const wallets = await db.createResource({ name: 'wallets', attributes: { id: 'string|optional', balance: 'number|default:0' } });
  await wallets.insert({ id: 'w1' });
  const adds = await measure(s3, async () => {
    for (let i = 0; i < N; i++) await wallets.add('w1', 1);
  });
  const out = { adds };
  if (mode === 'async') out.consolidate = await measure(s3, () => wallets.consolidate('w1', 'balance'));
  out.balance = (await wallets.get('w1')).balance;
  await db.disconnect();
  return out;
}

const stores = opts.store === 'both' ? ['memory', 's3'] : [opts.store];
if (stores.includes('s3') && !process.env.TALLY_S3_ENDPOINT) throw new Error('the S3 store needs the local server: bash scripts/bench-node.sh');
const rows = [];
for (const store of stores) {
  for (const mode of ['async', 'sync']) {
    for (const name of Object.keys(STACKS)) {
      log(`${store}, ${mode}: ${name}, ${N} adds`);
      rows.push({ store, mode, name, ...(await run(store, name, mode)) });
    }
  }
}

const per = (r, n) => (r ? `${(r.total / n).toFixed(1)} (${['PUT', 'GET', 'HEAD', 'LIST', 'DELETE'].filter((k) => r[k]).map((k) => `${(r[k] / n).toFixed(1)} ${k}`).join(', ')})` : '—');
const base = (store, mode) => rows.find((r) => r.store === store && r.mode === mode && r.name === 's3db.js 21.6.2');
console.log(`\n${N} sequential adds on one record, then (async mode) one consolidation; Node ${process.version}\n`);
console.log('| store | mode | stack | ms per add | × 21.6.2 speed | requests per add | consolidate: ms | requests | balance |');
console.log('| --- | --- | --- | --- | --- | --- | --- | --- | --- |');
for (const r of rows) {
  const b = base(r.store, r.mode);
  const c = r.consolidate;
  console.log(`| ${r.store} | ${r.mode} | ${r.name} | ${(r.adds.ms / N).toFixed(2)} | ${(b.adds.ms / r.adds.ms).toFixed(1)}× | ${per(r.adds.requests, N)} | ${c ? c.ms.toFixed(0) : '—'} | ${c?.requests ? per(c.requests, 1) : '—'} | ${r.balance} of ${N} |`);
}
