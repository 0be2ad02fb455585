// The dashboard (npm/dashboard, served by `tally-ec dashboard`) in headless Chromium.
// Live: against a running server on the folder store (and the local S3 server when it runs),
// the numbers on screen equal the plugin's query results for each metric and view; a record
// id carrying markup is shown as text and runs nothing; zero data and disabled analytics show
// their own states; at 390 px nothing scrolls sideways. Static: over the golden fixture's
// transactions computed with the WASM build, in UTC and after a zone change; a missing or
// invalid file shows an error. Screenshots go to tests/out/.
// Needs Debian's chromium (scripts/setup-browser.sh); skipped without it unless
// TALLY_BROWSER_REQUIRED is set (the README's test command sets it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { S3db, EventualConsistencyPlugin } from '../index.js';
import { CHROMIUM, ROOT, withChromium } from './support/browser.mjs';
import { localS3 } from './helpers.mjs';
import * as tallyWasm from '../wasm/index.js';

const available = existsSync(CHROMIUM);
if (!available && process.env.TALLY_BROWSER_REQUIRED) throw new Error(`TALLY_BROWSER_REQUIRED is set but ${CHROMIUM} is missing`);
const skip = available ? false : `${CHROMIUM} is not installed`;
const BIN = fileURLToPath(new URL('../bin/tally-ec.mjs', import.meta.url));
const OUT = join(ROOT, 'tests/out');
const MARKUP = '<img src=x onerror="window.__ran=1">';
const START = Date.parse('2026-09-01T00:00:00Z');

/** A store with three wallets (one id is markup) and 200 back-dated adds over September. */
async function seeded(connectionString, { analytics = true } = {}) {
  const options = { resources: { wallets: ['balance'] }, analytics: { enabled: analytics, metrics: ['count', 'sum', 'avg', 'min', 'max'] } };
  let now = START;
  const db = new S3db({ connectionString });
  await db.connect();
  const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  const plugin = new EventualConsistencyPlugin({ ...options, consolidation: { mode: 'sync' }, logLevel: 'silent', clock: () => now });
  await db.usePlugin(plugin);
  const ids = ['w1', 'w2', MARKUP];
  for (const id of ids) await wallets.insert({ id });
  for (let i = 0; i < 200; i += 1) {
    now += 3_600_000 * 3 + 61_000;
    await wallets.add(ids[i % 3], (i % 9) - 2);
  }
  // Three transactions another process wrote and nobody consolidated yet.
  const other = new S3db({ connectionString });
  await other.connect();
  const later = new EventualConsistencyPlugin({ ...options, consolidation: { mode: 'async', auto: false }, logLevel: 'silent', clock: () => now });
  await other.usePlugin(later);
  const theirs = await other.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  for (let i = 0; i < 3; i += 1) await theirs.add('w1', 100);
  await other.disconnect();
  const dir = mkdtempSync(join(tmpdir(), 'tally-dash-'));
  const config = join(dir, 'tally.json');
  writeFileSync(config, JSON.stringify(options));
  return { db, plugin, config, connectionString };
}

/** Runs `tally-ec dashboard` and resolves to its URL once it listens. */
function serveDashboard(env, args = []) {
  const child = spawn(process.execPath, [BIN, 'dashboard', '--port', '0', ...args], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const url = new Promise((ok, fail) => {
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/dashboard on (http:\/\/\S+)/);
      if (m) ok(m[1]);
    });
    child.stderr.on('data', (d) => { err += d; });
    child.on('exit', (code) => fail(new Error(`tally-ec dashboard exited ${code}: ${err}`)));
  });
  return { child, url };
}

async function shown(page) {
  return page.evaluate(() => ({
    state: document.getElementById('state').dataset.state,
    message: document.getElementById('state').textContent,
    rows: [...document.querySelectorAll('#points tr[data-cohort]')].map((r) => ({
      cohort: r.dataset.cohort, count: Number(r.dataset.count), sum: Number(r.dataset.sum), recordCount: Number(r.dataset.records),
      avg: r.dataset.avg === undefined ? undefined : Number(r.dataset.avg),
      min: r.dataset.min === undefined ? undefined : Number(r.dataset.min),
      max: r.dataset.max === undefined ? undefined : Number(r.dataset.max),
    })),
    top: [...document.querySelectorAll('#top tr[data-record]')].map((r) => ({ recordId: r.dataset.record, count: Number(r.dataset.count), sum: Number(r.dataset.sum) })),
    chartPoints: Number(document.getElementById('chart').dataset.points ?? 0),
    series: JSON.parse(document.getElementById('chart').dataset.series ?? '[]'),
    applied: document.getElementById('chart').dataset.applied ? JSON.parse(document.getElementById('chart').dataset.applied) : null,
    legends: [...document.querySelectorAll('.u-legend .u-series .u-label')].map((l) => l.textContent),
    // What a reader sees: the count column's text of each row.
    countText: [...document.querySelectorAll('#points tr[data-cohort] td:nth-child(2)')].map((td) => td.textContent),
    legend: document.querySelector('.u-legend .u-series:nth-child(2) .u-label')?.textContent ?? null,
  }));
}

const settled = (page) => page.waitForFunction(() => document.getElementById('state').dataset.state !== 'loading', null, { timeout: 20000 });
const pick = (points) => points.map(({ cohort, count, sum, recordCount, avg, min, max }) => ({ cohort, count, sum, recordCount, avg, min, max }));

async function liveRun(connectionString, label) {
  const store = await seeded(connectionString);
  const { child, url } = serveDashboard({ TALLY_CONNECTION: connectionString, TALLY_CONFIG: store.config });
  try {
    const base = await url;
    await withChromium(async (context) => {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); }); // CSP violations too
      page.on('dialog', (d) => { errors.push(`dialog: ${d.message()}`); d.dismiss(); });
      const views = [
        ['dayByHour', '2026-09-10', 'getDayByHour'],
        ['monthByDay', '2026-09', 'getMonthByDay'],
        ['yearByWeek', '2026', 'getYearByWeek'],
        ['yearByMonth', '2026', 'getYearByMonth'],
      ];
      // ("Last N" counts back from today, which this store's back-dated clock is not: the
      // demo's test checks it.)
      for (const [view, date, fn] of views) {
        await page.goto(`${base}?view=${view}&date=${date}`);
        await settled(page);
        const s = await shown(page);
        const expected = await store.plugin[fn]('wallets', 'balance', date, { fillGaps: true });
        assert.equal(s.state, 'ready', `${label} ${view}: ${s.message}`);
        assert.deepEqual(s.rows, pick(expected), `${label} ${view}: the table shows the plugin's points`);
        assert.equal(s.chartPoints, expected.length, 'one chart point per cohort');
        assert.deepEqual(s.series, expected.map((p) => p.sum), 'the chart plots the chosen metric (sum)');
        assert.deepEqual(s.countText, expected.map((p) => p.count.toLocaleString('en-US')), 'the cells show the counts');
        const period = { dayByHour: 'day', monthByDay: 'month' }[view];
        const top = period ? await store.plugin.getTopRecords('wallets', 'balance', { period, date, limit: 10, sortBy: 'totalValue' }) : [];
        assert.deepEqual(s.top, top);
      }
      // Another zone: computed in the page from the store's transactions, as the WASM build
      // computes it in Node from all of them.
      await tallyWasm.default();
      const applied = await store.plugin.getRawEvents('wallets', 'balance', { applied: true });
      for (const [zone, view, date, fn] of [['America/New_York', 'dayByHour', '2026-09-10', 'getDayByHour'], ['Asia/Kolkata', 'monthByDay', '2026-09', 'getMonthByDay']]) {
        await page.goto(`${base}?view=${view}&date=${date}&tz=${zone}`);
        await settled(page);
        const s = await shown(page);
        assert.equal(s.state, 'ready', `${zone}: ${s.message}`);
        assert.deepEqual(s.rows, pick(tallyWasm[fn](applied, date, { fillGaps: true, timezone: zone })), `${view} in ${zone}`);
        assert.match(await page.textContent('#source'), new RegExp(`${zone}: computed in this browser`));
      }
      // The pending overlay: with pending included, drawn over the applied points.
      await page.goto(`${base}?view=monthByDay&date=2026-09&pending=1`);
      await settled(page);
      const overlay = await shown(page);
      const withPending = await store.plugin.getMonthByDay('wallets', 'balance', '2026-09', { fillGaps: true, includePending: true });
      const appliedOnly = await store.plugin.getMonthByDay('wallets', 'balance', '2026-09', { fillGaps: true });
      assert.deepEqual(overlay.rows, pick(withPending));
      assert.deepEqual([overlay.series, overlay.applied], [withPending.map((p) => p.sum), appliedOnly.map((p) => p.sum)]);
      assert.notDeepEqual(overlay.series, overlay.applied, 'the pending transactions show');
      assert.deepEqual(overlay.legends.slice(1), ['sum', 'sum with pending']);
      assert.equal(await page.getAttribute('#status tr[data-field="wallets.balance"]', 'data-pending'), '3');
      await page.goto(`${base}?view=monthByDay&date=2026-09`);
      await settled(page);
      // Each metric drives the chart; the numbers stay the plugin's.
      const month = await store.plugin.getMonthByDay('wallets', 'balance', '2026-09', { fillGaps: true });
      for (const [metric, name] of [['count', 'transactions'], ['avg', 'average'], ['max', 'maximum'], ['recordCount', 'records']]) {
        await page.selectOption('#metric', metric);
        await settled(page);
        const now = await shown(page);
        assert.equal(now.legend, name);
        assert.deepEqual(now.series, month.map((p) => (typeof p[metric] === 'number' ? p[metric] : null)), `the chart plots ${metric}`);
      }
      // The crosshair's tooltip names the cohort under the cursor.
      const over = await page.locator('#chart .u-over').boundingBox();
      await page.mouse.move(over.x + over.width / 2, over.y + over.height / 2);
      await page.waitForSelector('#tooltip:not([hidden])', { timeout: 5000 });
      assert.match(await page.textContent('#tooltip'), /^2026-09-\d\d · records \d+ · \d+ transactions · \d+ records$/);
      // The markup id is text: shown, clickable, and nothing ran.
      const cell = page.locator('#top button.record', { hasText: MARKUP });
      assert.equal(await cell.count(), 1, 'the id is shown as text');
      await cell.click();
      await settled(page);
      assert.match(await page.textContent('#record-title'), /<img src=x/);
      assert.equal(await page.evaluate(() => document.querySelectorAll('img').length + (window.__ran ?? 0)), 0, 'no markup was interpreted');
      mkdirSync(OUT, { recursive: true });
      await page.screenshot({ path: join(OUT, `dashboard-live-${label}.png`), fullPage: true });
      // A range with nothing in it.
      await page.goto(`${base}?view=dayByHour&date=2020-01-01`);
      await settled(page);
      const empty = await shown(page);
      assert.deepEqual([empty.state, empty.rows.length], ['empty', 24], empty.message);
      // 390 px wide: nothing scrolls sideways.
      await page.setViewportSize({ width: 390, height: 900 });
      await page.goto(`${base}?view=monthByDay&date=2026-09`);
      await settled(page);
      const widths = await page.evaluate(() => [document.documentElement.scrollWidth, document.documentElement.clientWidth]);
      assert.ok(widths[0] <= widths[1], `horizontal scroll at 390 px: ${widths}`);
      await page.screenshot({ path: join(OUT, `dashboard-390-${label}.png`), fullPage: true });
      assert.deepEqual(errors, [], 'no page errors');
    });
  } finally {
    child.kill('SIGTERM');
    await store.db.disconnect();
  }
}

test('live on the folder store: the plugin\'s numbers for every view and metric, text-only ids, states, 390 px', { skip }, async () => {
  await liveRun(pathToFileURL(mkdtempSync(join(tmpdir(), 'tally-dash-data-'))).href, 'folder');
});

test('live on the local S3 server', { skip }, async (t) => {
  const s3 = localS3(t, 'dashboard');
  if (!s3) return;
  const { url } = s3;
  await liveRun(url.href, 's3');
});

test('analytics disabled shows its own state; the API is read-only and keeps to loopback', { skip }, async () => {
  const connectionString = pathToFileURL(mkdtempSync(join(tmpdir(), 'tally-dash-off-'))).href;
  const store = await seeded(connectionString, { analytics: false });
  await store.db.disconnect();
  const { child, url } = serveDashboard({ TALLY_CONNECTION: connectionString, TALLY_CONFIG: store.config });
  try {
    const base = await url;
    const post = await fetch(`${base}api/config`, { method: 'POST' });
    assert.equal(post.status, 405);
    const page = await fetch(base);
    assert.match(page.headers.get('content-security-policy'), /default-src 'none'/);
    await withChromium(async (context) => {
      const tab = await context.newPage();
      await tab.goto(`${base}?view=monthByDay&date=2026-09`);
      await settled(tab);
      const s = await shown(tab);
      assert.equal(s.state, 'disabled', s.message);
      assert.match(s.message, /analytics\.enabled/);
    });
  } finally {
    child.kill('SIGTERM');
  }
  const refused = serveDashboard({ TALLY_CONNECTION: connectionString, TALLY_CONFIG: store.config }, ['--host', '0.0.0.0']);
  await assert.rejects(refused.url, /--token/);
});

test('an access token guards the page, its files and the API; a bad request or a foreign Host is refused', { skip }, async () => {
  const connectionString = pathToFileURL(mkdtempSync(join(tmpdir(), 'tally-dash-token-'))).href;
  const store = await seeded(connectionString);
  await store.db.disconnect();
  const { child, url } = serveDashboard({ TALLY_CONNECTION: connectionString, TALLY_CONFIG: store.config }, ['--token', 's3cret-token']);
  try {
    const printed = await url;
    assert.ok(!printed.includes('s3cret-token'), `the token is never printed: ${printed}`);
    const base = printed.replace(/\?.*$/, '');
    assert.equal((await fetch(base)).status, 401);
    assert.equal((await fetch(`${base}api/config`)).status, 401);
    assert.equal((await fetch(`${base}api/config`, { headers: { authorization: 'Bearer s3cret-token' } })).status, 200);
    // Another name for this address (DNS rebinding) is not this dashboard.
    const { port } = new URL(base);
    const rebound = await new Promise((ok) => {
      import('node:http').then(({ request }) => {
        const r = request({ host: '127.0.0.1', port, path: '/api/config?token=s3cret-token', headers: { host: `evil.example:${port}` } }, (res) => ok(res.statusCode));
        r.end();
      });
    });
    assert.equal(rebound, 401);
    // A request path no URL parser takes: answered, and the server keeps serving.
    const { connect } = await import('node:net');
    await new Promise((ok) => {
      const sock = connect(Number(port), '127.0.0.1', () => sock.end(`GET //a:99999/x HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`));
      sock.on('data', () => {});
      sock.on('close', ok);
    });
    assert.equal((await fetch(`${base}api/config?token=s3cret-token`)).status, 200, 'still serving');
    await withChromium(async (context) => {
      const page = await context.newPage();
      const errors = [];
      page.on('console', (m) => { if (m.type() === 'error') errors.push(m.text()); });
      await page.goto(`${base}?token=s3cret-token&view=monthByDay&date=2026-09`);
      await settled(page);
      const s = await shown(page);
      assert.equal(s.state, 'ready', s.message);
      assert.equal(s.rows.length, 30);
      assert.deepEqual(errors, [], 'every file of the page loaded');
    });
  } finally {
    child.kill('SIGTERM');
  }
});

test("the demo's store: eight weeks of history on the live dashboard", { skip }, async () => {
  const folder = mkdtempSync(join(tmpdir(), 'tally-dash-demo-'));
  const demo = spawnSync(process.execPath, [join(ROOT, 'npm/examples/quickstart.mjs'), folder], { encoding: 'utf8', timeout: 120_000 });
  assert.equal(demo.status, 0, demo.stderr);
  const connectionString = pathToFileURL(folder).href;
  assert.ok(demo.stdout.includes(`tally-ec dashboard --connection ${connectionString}`), 'the demo says how to open it');
  const { child, url } = serveDashboard({ TALLY_CONNECTION: connectionString, TALLY_CONFIG: join(folder, 'tally.json') });
  const db = new S3db({ connectionString });
  try {
    const base = await url;
    await db.connect();
    const plugin = new EventualConsistencyPlugin({ ...JSON.parse(readFileSync(join(folder, 'tally.json'), 'utf8')), logLevel: 'silent' });
    await db.usePlugin(plugin);
    const expectedPoints = await plugin.getLastNDays('shops', 'revenue', 56, { fillGaps: true });
    assert.ok(expectedPoints.filter((p) => p.count > 0).length >= 50, 'weeks of history');
    await withChromium(async (context) => {
      const page = await context.newPage();
      await page.goto(`${base}?field=shops.revenue&view=lastDays&n=56`);
      await settled(page);
      const s = await shown(page);
      assert.equal(s.state, 'ready', s.message);
      assert.deepEqual(s.rows, pick(expectedPoints));
      mkdirSync(OUT, { recursive: true });
      await page.screenshot({ path: join(OUT, 'dashboard-demo.png') });
    });
  } finally {
    child.kill('SIGTERM');
    await db.disconnect();
  }
});

const fixture = JSON.parse(readFileSync(join(ROOT, 'tests/golden/analytics.json'), 'utf8'));
const expected = (timezone, fn, first) => fixture.cases.find((c) => c.timezone === timezone && c.function === fn && c.args[0] === first).expected;

test('static: the golden numbers computed in the browser, a zone change recomputes, bad files say so', { skip }, async () => {
  const { child, url } = serveDashboard({ TALLY_CONNECTION: '' }, ['--data', join(ROOT, 'tests/golden/analytics.json')]);
  try {
    const base = (await url).replace(/\?.*$/, '');
    await withChromium(async (context) => {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      await page.goto(`${base}?data=data.json&view=dayByHour&date=2025-03-09&tz=UTC`);
      await settled(page);
      const strip = (pts) => pts.map(({ cohort, count, sum, recordCount }) => ({ cohort, count, sum, recordCount }));
      const rows = async () => strip((await shown(page)).rows);
      assert.deepEqual(await rows(), strip(expected('UTC', 'getDayByHour', '2025-03-09')));
      await page.selectOption('#timezone', 'America/New_York');
      await settled(page);
      assert.deepEqual(await rows(), strip(expected('America/New_York', 'getDayByHour', '2025-03-09')));
      assert.equal((await rows()).length, 23, 'the spring-forward day has 23 hours');
      await page.selectOption('#timezone', 'Australia/Lord_Howe');
      await page.selectOption('#view', 'monthByDay');
      await page.fill('#date', '2025-06');
      await page.dispatchEvent('#date', 'change');
      await settled(page);
      assert.deepEqual(await rows(), strip(expected('Australia/Lord_Howe', 'getMonthByDay', '2025-06')));
      const top = fixture.cases.find((c) => c.timezone === 'Australia/Lord_Howe' && c.function === 'getTopRecords' && c.args[0].date === '2025-06').expected;
      const shownTop = (await shown(page)).top;
      assert.deepEqual(shownTop.slice(0, top.length), top.map(({ recordId, count, sum }) => ({ recordId, count, sum })));
      mkdirSync(OUT, { recursive: true });
      await page.screenshot({ path: join(OUT, 'dashboard-static.png'), fullPage: true });
      // A 404 and a file that is not JSON each say what is wrong.
      await page.goto(`${base}?data=missing.json`);
      await settled(page);
      let s = await shown(page);
      assert.deepEqual([s.state, /HTTP 404/.test(s.message)], ['error', true], s.message);
      await page.goto(`${base}?data=style.css`);
      await settled(page);
      s = await shown(page);
      assert.deepEqual([s.state, /is not JSON/.test(s.message)], ['error', true], s.message);
      assert.deepEqual(errors, [], 'no page errors');
    });
  } finally {
    child.kill('SIGTERM');
  }
});
