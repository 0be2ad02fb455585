// The dashboard (npm/examples/dashboard) in headless Chromium: served on 127.0.0.1, fed the
// golden fixture's transactions; the numbers in the DOM must equal the fixture's answers, in
// UTC and again after switching the time zone; a screenshot is saved to tests/out/.
// Needs Debian's chromium (scripts/setup-browser.sh); skipped without it unless
// TALLY_BROWSER_REQUIRED is set (the README's test command sets it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CHROMIUM, ROOT, serve, withChromium } from './support/browser.mjs';

const available = existsSync(CHROMIUM);
if (!available && process.env.TALLY_BROWSER_REQUIRED) throw new Error(`TALLY_BROWSER_REQUIRED is set but ${CHROMIUM} is missing`);
const fixture = JSON.parse(readFileSync(join(ROOT, 'tests/golden/analytics.json'), 'utf8'));

const expected = (timezone, fn, first) =>
  fixture.cases.find((c) => c.timezone === timezone && c.function === fn && c.args[0] === first).expected;

async function readCharts(page) {
  return page.evaluate(() => {
    const rows = (id) => [...document.querySelectorAll(`#${id} tr[data-cohort]`)].map((r) => ({
      cohort: r.dataset.cohort, count: Number(r.dataset.count), sum: Number(r.dataset.sum), recordCount: Number(r.dataset.records),
    }));
    return {
      hourly: rows('hourly'), daily: rows('daily'), weekly: rows('weekly'),
      top: [...document.querySelectorAll('#top tr[data-record]')].map((r) => ({ recordId: r.dataset.record, count: Number(r.dataset.count), sum: Number(r.dataset.sum) })),
      status: document.getElementById('status').textContent,
      bars: document.querySelectorAll('#hourly svg rect.bar').length,
    };
  });
}

function assertMatches(shown, timezone) {
  const pick = (pts) => pts.map(({ cohort, count, sum, recordCount }) => ({ cohort, count, sum, recordCount }));
  assert.equal(shown.status, '', 'no error shown');
  assert.deepEqual(shown.hourly, pick(expected(timezone, 'getDayByHour', '2025-03-09')), `hourly in ${timezone}`);
  assert.equal(shown.bars, shown.hourly.length, 'one bar per hour');
  assert.deepEqual(shown.daily, pick(expected(timezone, 'getMonthByDay', '2025-06')), `daily in ${timezone}`);
  assert.deepEqual(shown.weekly, pick(expected(timezone, 'getMonthByWeek', '2025-11')), `weekly in ${timezone}`);
  const top = fixture.cases.find((c) => c.timezone === timezone && c.function === 'getTopRecords' && c.args[0].date === '2025-06').expected;
  assert.deepEqual(shown.top, top.map(({ recordId, count, sum }) => ({ recordId, count, sum })), `top records in ${timezone}`);
}

test('dashboard in headless Chromium shows the golden numbers and recomputes on a zone change', { skip: available ? false : `${CHROMIUM} is not installed` }, async () => {
  const server = await serve();
  try {
    await withChromium(async (context) => {
      const page = await context.newPage();
      const errors = [];
      page.on('pageerror', (e) => errors.push(String(e)));
      const { port } = server.address();
      await page.goto(`http://127.0.0.1:${port}/npm/examples/dashboard/index.html?data=/tests/golden/analytics.json&day=2025-03-09&month=2025-06&weekMonth=2025-11&tz=UTC`);
      await page.waitForSelector('#status[data-ready="true"]', { state: 'attached', timeout: 20000 });
      assertMatches(await readCharts(page), 'UTC');
      for (const zone of ['America/New_York', 'Australia/Lord_Howe']) {
        await page.selectOption('#timezone', zone);
        await page.waitForSelector(`#status[data-ready="true"][data-timezone="${zone}"]`, { state: 'attached', timeout: 20000 });
        const shown = await readCharts(page);
        assertMatches(shown, zone);
        if (zone === 'America/New_York') assert.equal(shown.hourly.length, 23, 'the spring-forward day has 23 hours');
      }
      mkdirSync(join(ROOT, 'tests/out'), { recursive: true });
      await page.screenshot({ path: join(ROOT, 'tests/out/dashboard.png'), fullPage: true });
      assert.deepEqual(errors, [], 'no page errors');
    });
  } finally {
    server.close();
  }
});
