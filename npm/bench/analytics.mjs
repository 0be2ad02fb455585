// Benchmark (not a test): aggregating 1,000,000 transactions into hour, day, week and month
// points with Tally's WASM build, in Node and in headless Chromium, against the same
// computation with s3db.js 21.6.2's own JS analytics functions in Node (its getCohortInfo,
// which labels each transaction as its add() does, then its getAnalytics per period over an
// in-memory transaction resource). Prints the timings, the ratios, and whether the answers agree.
//
//   node npm/bench/analytics.mjs [--n 1000000] [--zones UTC,America/New_York] [--rounds 3] [--no-browser]
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import init, * as tally from '../wasm/index.js';
// Not in s3db.js's package exports, so by path (the devDependency pinned at 21.6.2).
import { getCohortInfo } from '../node_modules/s3db.js/dist/plugins/eventual-consistency/utils.js';
import { getAnalytics } from '../node_modules/s3db.js/dist/plugins/eventual-consistency/analytics.js';
import { PERIODS, columnsOf, tallyFourPeriods, transactions } from './transactions.mjs';
import { CHROMIUM, serve, withChromium } from '../test/support/browser.mjs';

const { values: opts } = parseArgs({
  options: {
    n: { type: 'string', default: '1000000' },
    zones: { type: 'string', default: 'UTC,America/New_York' },
    rounds: { type: 'string', default: '3' },
    'no-browser': { type: 'boolean', default: false },
  },
});
const n = Number(opts.n);
const rounds = Number(opts.rounds);
const zones = opts.zones.split(',');
const log = (...a) => console.error('..', ...a);
const ms = (x) => `${(x / 1000).toFixed(2)} s`;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** s3db.js 21.6.2: label every transaction (as its add() does), then getAnalytics per period
 * over an in-memory transaction resource (it pages through query() 500 at a time). */
async function s3dbFourPeriods(txs, timezone) {
  const t0 = performance.now();
  const labelled = txs.map((t) => ({ ...t, ...getCohortInfo(t.timestamp, timezone) }));
  const label = performance.now() - t0;
  const transactionResource = {
    name: 'wallets_transactions_balance',
    query: async (filter, { limit, offset }) => labelled.slice(offset, offset + limit),
  };
  const analyticsResource = { name: 'analytics', query: async () => [] };
  const handlers = new Map([['wallets', new Map([['balance', { transactionResource, analyticsResource }]])]]);
  const points = {};
  for (const period of PERIODS) points[period] = await getAnalytics('wallets', 'balance', { period }, handlers);
  return { points, label, total: performance.now() - t0 };
}

/** Cohorts whose count, recordCount or sum (to the cent) differ between two answers. */
function differences(a, b) {
  const key = (p) => `${p.count}/${p.recordCount}/${Math.round(p.sum * 100)}`;
  const mb = new Map(b.map((p) => [p.cohort, key(p)]));
  const cohorts = new Set([...a.map((p) => p.cohort), ...b.map((p) => p.cohort)]);
  return [...cohorts].filter((c) => a.find((p) => p.cohort === c) ? key(a.find((p) => p.cohort === c)) !== mb.get(c) : true).length;
}

async function browserRuns() {
  if (opts['no-browser']) return null;
  if (!existsSync(CHROMIUM)) {
    log(`${CHROMIUM} is missing: no browser figures (bash scripts/setup-browser.sh installs it)`);
    return null;
  }
  const server = await serve();
  try {
    return await withChromium(async (context) => {
      const page = await context.newPage();
      const { port } = server.address();
      log(`Chromium: ${n} transactions, zones ${zones.join(', ')}, ${rounds} rounds`);
      await page.goto(`http://127.0.0.1:${port}/npm/bench/browser.html?n=${n}&zones=${zones.join(',')}&rounds=${rounds}`);
      await page.waitForFunction(() => window.benchResult, null, { timeout: 600_000, polling: 500 });
      const result = await page.evaluate(() => window.benchResult);
      if (result.error) throw new Error(`in Chromium: ${result.error}`);
      return result;
    });
  } finally {
    server.close();
  }
}

await init();
log(`generating ${n} transactions`);
const txs = transactions(n);
const cols = columnsOf(txs);
const rows = [];
for (const zone of zones) {
  const wasm = [];
  const wasmColumns = [];
  const js = [];
  let agree;
  for (let r = 0; r < rounds; r++) {
    log(`${zone}: round ${r + 1}/${rounds}, Tally WASM in Node`);
    const t = tallyFourPeriods(tally, txs, zone);
    wasm.push(t);
    const c = tallyFourPeriods(tally, cols, zone);
    wasmColumns.push(c);
    for (const p of PERIODS) {
      if (differences(t.points[p], c.points[p]) !== 0) throw new Error(`${zone} ${p}: columns and objects disagree`);
    }
    log(`${zone}: round ${r + 1}/${rounds}, s3db.js 21.6.2 in Node`);
    const s = await s3dbFourPeriods(txs, zone);
    js.push(s);
    agree ??= Object.fromEntries(PERIODS.map((p) => [p, differences(t.points[p], s.points[p])]));
  }
  rows.push({ zone, wasm, wasmColumns, js, agree });
}
const browser = await browserRuns();

console.log(`\nAggregating ${n.toLocaleString('en')} transactions into hour, day, week and month points (median of ${rounds}; Node ${process.version})\n`);
console.log('| zone | s3db.js 21.6.2 (label + aggregate) | Tally WASM in Node (read + aggregate) | Tally WASM in Chromium | ratio Node | ratio Chromium | cohorts that differ (h/d/w/m) |');
console.log('| --- | --- | --- | --- | --- | --- | --- |');
const columnRows = [];
for (const { zone, wasm, wasmColumns, js, agree } of rows) {
  const cN = median(wasmColumns.map((x) => x.total));
  const cR = median(wasmColumns.map((x) => x.read));
  const cB = browser ? median(browser[zone].map((x) => x.columns.total)) : null;
  const cBR = browser ? median(browser[zone].map((x) => x.columns.read)) : null;
  columnRows.push(`| ${zone} | ${ms(cN)} (${ms(cR)} + ${ms(cN - cR)}) | ${cB === null ? 'not run' : `${ms(cB)} (${ms(cBR)} + ${ms(cB - cBR)})`} |`);
  const jsT = median(js.map((x) => x.total));
  const jsL = median(js.map((x) => x.label));
  const wT = median(wasm.map((x) => x.total));
  const wR = median(wasm.map((x) => x.read));
  const bT = browser ? median(browser[zone].map((x) => x.total)) : null;
  console.log(`| ${zone} | ${ms(jsT)} (${ms(jsL)} + ${ms(jsT - jsL)}) | ${ms(wT)} (${ms(wR)} + ${ms(wT - wR)}) | ${bT === null ? 'not run' : ms(bT)} | ${(jsT / wT).toFixed(1)}× | ${bT === null ? '—' : `${(jsT / bT).toFixed(1)}×`} | ${PERIODS.map((p) => agree[p]).join('/')} |`);
}
console.log('\nThe same transactions given as typed-array columns (prepareColumns), read + aggregate:\n');
console.log('| zone | Tally WASM in Node | Tally WASM in Chromium |');
console.log('| --- | --- | --- |');
for (const row of columnRows) console.log(row);
