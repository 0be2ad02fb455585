// Structured logs: one object per consolidation run, errors and dead letters at error level,
// pino's own logger on stderr at `logLevel`, a child of the s3db.js database's logger inside
// s3db.js, and no secret in any line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { S3db, EventualConsistencyPlugin } from '../index.js';
import { WALLET_ATTRIBUTES, s3dbDatabase } from './helpers.mjs';

const INDEX = fileURLToPath(new URL('../index.js', import.meta.url));

/** A pino-like logger that keeps what it is given. */
function capture() {
  const lines = [];
  const at = (level) => (obj, msg) => lines.push({ level, obj, msg });
  const logger = { levels: { values: {} }, info: at('info'), warn: at('warn'), error: at('error'), debug: at('debug') };
  logger.child = () => logger;
  logger.bindings = () => ({});
  return { logger, lines };
}

async function wallets(options) {
  const db = new S3db({ connectionString: `memory://logging-${process.pid}-${Math.random()}/app` });
  await db.connect();
  const plugin = new EventualConsistencyPlugin(options);
  await db.usePlugin(plugin);
  const w = await db.createResource({ name: 'wallets', attributes: WALLET_ATTRIBUTES });
  await w.insert({ id: 'w1' });
  return { db, plugin, w };
}

const settle = () => new Promise((r) => setTimeout(r, 50));

test('one log object per consolidation run, with what it did', async () => {
  const { logger, lines } = capture();
  const { db, w } = await wallets({ resources: { wallets: ['balance'] }, consolidation: { auto: false }, logger });
  await w.add('w1', 5);
  await w.consolidate('w1');
  await settle();
  const runs = lines.filter((l) => l.level === 'info' && l.msg === 'consolidated wallets.balance');
  assert.equal(runs.length, 1, JSON.stringify(lines));
  const { ms, ...rest } = runs[0].obj;
  assert.deepEqual(rest, { resource: 'wallets', field: 'balance', records: 1, consolidated: 1, applied: 1, errors: 0 });
  assert.equal(typeof ms, 'number');
  await db.disconnect();
});

test('a dead letter is logged at error level, naming record and field', async () => {
  const { logger, lines } = capture();
  const reducer = (acc, tx) => {
    if (tx.value === 13) throw new Error('unlucky');
    return acc + tx.value;
  };
  const { db, w } = await wallets({
    resources: [{ resource: 'wallets', fields: [{ field: 'balance', reducer }] }],
    consolidation: { mode: 'async', auto: false },
    logger,
  });
  await w.add('w1', 13);
  await w.add('w1', 2);
  await w.consolidate('w1');
  await settle();
  const errors = lines.filter((l) => l.level === 'error');
  assert.equal(errors.length, 1, JSON.stringify(lines));
  assert.equal(errors[0].msg, 'transaction set aside as a dead letter');
  assert.equal(errors[0].obj.recordId, 'w1');
  assert.equal(errors[0].obj.field, 'balance');
  assert.equal(errors[0].obj.deadLetter, true);
  await db.disconnect();
});

/** Runs a standalone add and its consolidation in a child process with the plugin's own logger. */
function ownLoggerRun(extra) {
  const script = `
    const { S3db, EventualConsistencyPlugin } = await import(${JSON.stringify(INDEX)});
    const db = new S3db({ connectionString: 'memory://user:hunter22secret@own-logger/app' });
    await db.connect();
    await db.usePlugin(new EventualConsistencyPlugin({ resources: { wallets: ['balance'] }, consolidation: { auto: false }, ...${JSON.stringify(extra)} }));
    const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
    await w.insert({ id: 'w1' });
    await w.add('w1', 5);
    await w.consolidate('w1');
    await new Promise((r) => setTimeout(r, 50));
    await db.disconnect();`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return { out: r.stdout, lines: r.stderr.split('\n').filter(Boolean).map((l) => JSON.parse(l)) };
}

test("pino's own logger writes JSON lines to stderr at logLevel", () => {
  const info = ownLoggerRun({});
  assert.equal(info.out, '', 'stdout stays the program output');
  const run = info.lines.find((l) => l.msg === 'consolidated wallets.balance');
  assert.ok(run, JSON.stringify(info.lines));
  assert.deepEqual([run.level, run.name, run.records, run.applied], [30, 'tally-ec', 1, 1]);
  assert.deepEqual(ownLoggerRun({ logLevel: 'warn' }).lines, []);
  assert.deepEqual(ownLoggerRun({ verbose: false }).lines, []);
  for (const l of info.lines) assert.ok(!JSON.stringify(l).includes('hunter22secret'));
});

test('debug: true (or logLevel debug) shows the runs verbose: false leaves out, at debug level', async () => {
  const debug = ownLoggerRun({ verbose: false, debug: true });
  const run = debug.lines.find((l) => l.msg === 'consolidated wallets.balance');
  assert.ok(run, JSON.stringify(debug.lines));
  assert.deepEqual([run.level, run.applied], [20, 1]);
  assert.ok(ownLoggerRun({ verbose: false, logLevel: 'debug' }).lines.some((l) => l.level === 20));
  // A logger that does not filter by level gets debug lines only when they are asked for.
  const lines = [];
  const consoleLike = { info: (m) => lines.push(['info', m]), debug: (m) => lines.push(['debug', m]), warn() {}, error() {} };
  const quiet = await wallets({ resources: { wallets: ['balance'] }, consolidation: { auto: false }, verbose: false, logger: consoleLike });
  await quiet.w.add('w1', 1);
  await quiet.w.consolidate('w1');
  await quiet.plugin.runGC();
  await settle();
  await quiet.db.disconnect();
  assert.deepEqual(lines, []);
  const loud = await wallets({ resources: { wallets: ['balance'] }, consolidation: { auto: false }, verbose: false, debug: true, logger: consoleLike });
  await loud.w.add('w1', 1);
  await loud.w.consolidate('w1');
  await loud.plugin.runGC();
  await settle();
  await loud.db.disconnect();
  assert.deepEqual(lines.map((l) => l[1]), ['consolidated wallets.balance', 'garbage collected wallets.balance']);
});

test("inside s3db.js the plugin logs through a child of the database's logger", async () => {
  const db = await s3dbDatabase(`memory://logging-host-${process.pid}/app`);
  await db.connect();
  const plugin = new EventualConsistencyPlugin({ resources: { wallets: ['balance'] } });
  await db.usePlugin(plugin);
  assert.equal(plugin.logger.bindings().plugin, 'EventualConsistencyPlugin');
  assert.equal(plugin.logger.level, db.logger.level);
  const loud = new EventualConsistencyPlugin({ resources: { users: ['points'] }, logLevel: 'debug' });
  await db.usePlugin(loud);
  assert.equal(loud.logger.level, 'debug');
  await db.disconnect();
});

test('usePlugin before connect() inside s3db.js warns instead of saying nothing', async () => {
  const db = await s3dbDatabase(`memory://logging-early-${process.pid}/app`);
  const { logger, lines } = capture();
  const early = new EventualConsistencyPlugin({ resources: { wallets: ['balance'] }, logger });
  await db.usePlugin(early);
  await new Promise((r) => setTimeout(r, 1200));
  const warned = lines.filter((l) => l.level === 'warn');
  assert.equal(warned.length, 1, JSON.stringify(lines));
  assert.match(warned[0].msg, /not installed.*after db\.connect\(\)/);
  // Added again once connected, it installs (and stays quiet).
  await db.connect();
  await db.usePlugin(early);
  const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  assert.equal(typeof wallets.add, 'function');
  await new Promise((r) => setTimeout(r, 1200));
  assert.equal(lines.filter((l) => l.level === 'warn').length, 1);
  await db.disconnect();
});

test('a logger other than pino (console, winston) is given the message first', async () => {
  const lines = [];
  const logger = { info: (msg, obj) => lines.push([msg, obj]), warn() {}, error() {}, debug() {}, child() { return this; }, levels: { info: 2 } };
  const { db, w } = await wallets({ resources: { wallets: ['balance'] }, consolidation: { auto: false }, logger });
  await w.add('w1', 5);
  await w.consolidate('w1');
  await settle();
  assert.deepEqual(lines.map((l) => [l[0], l[1].applied]), [['consolidated wallets.balance', 1]]);
  await db.disconnect();
});
