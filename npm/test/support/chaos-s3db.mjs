// Chaos inside s3db.js databases (run by scripts/chaos.sh after the Rust chaos test): three
// Node processes, each a real s3db.js 21.6.2 Database with Tally's plugin (one in sync mode,
// two in async mode with background passes), add 1 to five hot records of an s3db.js resource
// through the fault-injecting proxy, each add with a unique `source` and no idempotency key,
// while the driver kills one with SIGKILL every 2 s and starts it again. Then the proxy stops
// injecting, a fresh database consolidates everything directly on the server, and the audit
// compares each record's balance with the distinct sources its audit trail lists and checks
// that every acknowledged add is among them. Exits non-zero on any mismatch.
//
// usage: node chaos-s3db.mjs            (driver: TALLY_CHAOS_PROXY, TALLY_S3_ENDPOINT, keys)
//        node chaos-s3db.mjs worker K G LEDGER PREFIX
import { spawn } from 'node:child_process';
import { appendFileSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { EventualConsistencyPlugin } from '../../index.js';

const RECORDS = 5;
const WORKERS = 3;
const TARGET = Number(process.env.TALLY_CHAOS_S3DB_ADDS || 1500);
const KILLS = Number(process.env.TALLY_CHAOS_S3DB_KILLS || 10);
const ATTRIBUTES = { id: 'string|required', balance: 'number|default:0' };

function connection(endpoint, prefix) {
  const url = new URL(endpoint);
  url.username = process.env.TALLY_S3_ACCESS_KEY ?? 'test';
  url.password = encodeURIComponent(process.env.TALLY_S3_SECRET_KEY ?? 'test');
  url.pathname = `/tally-chaos/${prefix}`;
  return url.href;
}

async function database(endpoint, prefix) {
  process.env.S3DB_DISABLE_CRON = 'true';
  const { Database } = await import('s3db.js/lite');
  // s3db.js's HTTP client would open a circuit breaker on injected failures (and its
  // process manager then exits quietly): off, as in the benchmark.
  return new Database({
    connectionString: connection(endpoint, prefix),
    logLevel: 'silent',
    executorPool: false,
    clientOptions: { httpClientOptions: { enableCircuitBreaker: false } },
  });
}

async function retry(what, f) {
  for (let i = 0; ; i++) {
    try {
      return await f();
    } catch (e) {
      if (i > 50) throw new Error(`${what}: ${e.message}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}

async function worker(k, generation, ledger, prefix) {
  const sync = k === 0;
  const db = await database(process.env.TALLY_CHAOS_PROXY, prefix);
  const dbg = (m) => process.env.TALLY_CHAOS_DEBUG && console.error(`worker ${k}: ${m}`);
  await retry('connect', () => db.connect());
  dbg('connected');
  const plugin = new EventualConsistencyPlugin({
    resources: { hwallets: ['balance'] },
    consolidation: { mode: sync ? 'sync' : 'async', auto: !sync, interval: 1 },
    garbageCollection: { interval: 5 },
    verbose: false,
  });
  await retry('usePlugin', () => db.usePlugin(plugin));
  dbg('plugin installed');
  // The driver created the resource; creating it again would take s3db.js's metadata lock,
  // which an injected fault can leave held for its whole timeout.
  const wallets = db.resources.hwallets ?? (await retry('resource', () => db.createResource({ name: 'hwallets', attributes: ATTRIBUTES })));
  dbg('resource ready');
  for (let n = 0; ; n++) {
    const source = `s${k}g${generation}n${n}`;
    const id = `h${Math.floor(Math.random() * RECORDS)}`;
    appendFileSync(ledger, `T ${source} ${id}\n`);
    try {
      await wallets.add(id, 'balance', 1, { source });
      appendFileSync(ledger, `A ${source}\n`);
    } catch (e) {
      appendFileSync(ledger, `F ${source} ${e.code ?? e.name}\n`);
    }
  }
}

function ledgers(dir) {
  const out = new Map();
  for (const name of readdirSync(dir)) {
    for (const line of readFileSync(join(dir, name), 'utf8').split('\n')) {
      const [kind, source, extra] = line.split(' ');
      if (kind === 'T' && extra) out.set(source, { id: extra, outcome: 'T' });
      else if ((kind === 'A' || kind === 'F') && out.has(source)) out.get(source).outcome = kind === 'A' ? 'A' : `F ${extra}`;
    }
  }
  return out;
}

const acked = (m) => [...m.values()].filter((e) => e.outcome === 'A').length;

async function driver() {
  await fetch(`${process.env.TALLY_CHAOS_PROXY}/__chaos/resume`, { method: 'POST' });
  const prefix = `s3db-${process.pid}-${Date.now()}`;
  const direct = await database(process.env.TALLY_S3_ENDPOINT, prefix);
  await direct.connect();
  const setup = await direct.createResource({ name: 'hwallets', attributes: ATTRIBUTES });
  for (let r = 0; r < RECORDS; r++) await setup.insert({ id: `h${r}`, balance: 0 });
  const dir = mkdtempSync(join(tmpdir(), 'tally-chaos-s3db-'));
  const me = fileURLToPath(import.meta.url);
  const start = (k, g) =>
    spawn(process.execPath, [me, 'worker', String(k), String(g), join(dir, `w${k}g${g}`), prefix], { stdio: 'ignore' });
  const generation = Array(WORKERS).fill(0);
  const children = generation.map((_, k) => start(k, 0));
  const began = Date.now();
  let kills = 0;
  while (true) {
    await new Promise((r) => setTimeout(r, 2000));
    const done = acked(ledgers(dir));
    console.log(`chaos (s3db.js): ${Math.round((Date.now() - began) / 1000)} s, ${done} adds acknowledged, ${kills} kills`);
    if (done >= TARGET && kills >= KILLS) break;
    if (Date.now() - began > 600_000) throw new Error(`too slow: ${done} adds in 10 minutes`);
    const victim = Math.floor(Math.random() * WORKERS);
    children[victim].kill('SIGKILL');
    kills += 1;
    generation[victim] += 1;
    children[victim] = start(victim, generation[victim]);
  }
  for (const c of children) c.kill('SIGKILL');
  const stats = await (await fetch(`${process.env.TALLY_CHAOS_PROXY}/__chaos/quiesce`, { method: 'POST' })).text();
  await direct.disconnect?.();
  // Faults off, late writes landed: a fresh database consolidates everything on the server.
  const db = await database(process.env.TALLY_S3_ENDPOINT, prefix);
  await db.connect();
  const plugin = new EventualConsistencyPlugin({ resources: { hwallets: ['balance'] }, consolidation: { auto: false }, verbose: false });
  await db.usePlugin(plugin);
  const wallets = await db.createResource({ name: 'hwallets', attributes: ATTRIBUTES });
  for (let i = 0; i < 3; i++) await plugin.consolidateAll();
  const book = ledgers(dir);
  const applied = new Map();
  let trailEqualsBalance = true;
  for (let r = 0; r < RECORDS; r++) {
    const id = `h${r}`;
    for (let i = 0; i < 3; i++) await wallets.consolidate(id, 'balance');
    const events = await plugin.getRawEvents('hwallets', 'balance', { recordId: id, applied: true, limit: 100_000 });
    const sources = new Set(events.map((e) => e.source));
    for (const s of sources) applied.set(s, id);
    const balance = (await wallets.get(id)).balance;
    if (balance !== sources.size) {
      trailEqualsBalance = false;
      console.log(`chaos (s3db.js): ${id} holds ${balance}, its audit trail lists ${sources.size} distinct adds`);
    }
  }
  const lost = [...book].filter(([s, e]) => e.outcome === 'A' && !applied.has(s)).length;
  const unknown = [...applied.keys()].filter((s) => !book.has(s)).length;
  const pending = (await plugin.getStatus()).pending['hwallets.balance'];
  const failures = {};
  for (const e of book.values()) if (e.outcome !== 'A') failures[e.outcome] = (failures[e.outcome] ?? 0) + 1;
  console.log(`chaos (s3db.js): ${WORKERS} processes inside s3db.js databases, ${kills} SIGKILLs; adds tried ${book.size}, acknowledged ${acked(book)}, not acknowledged ${JSON.stringify(failures)}`);
  console.log(`chaos (s3db.js): applied twice ${trailEqualsBalance ? 0 : 'see above'}; acknowledged but missing from the audit trail ${lost}; applied but never issued ${unknown}; audit trail = balance: ${trailEqualsBalance}; pending ${pending}`);
  console.log(`chaos (s3db.js): proxy ${stats}`);
  await db.disconnect();
  if (!trailEqualsBalance || lost || unknown || pending) process.exit(1);
}

if (process.argv[2] === 'worker') {
  const [, , , k, g, ledger, prefix] = process.argv;
  worker(Number(k), Number(g), ledger, prefix).catch((e) => {
    console.error(e);
    process.exit(2);
  });
} else {
  driver().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
}
