// tally-ec/wasm through a bundler, as a user's app gets it: a throwaway Vite project that
// depends on the package by name (node_modules/tally-ec links to npm/) imports
// `tally-ec/wasm`; Vite must bundle it with the .wasm as an asset, and the built page, served
// on 127.0.0.1 in headless Chromium, must compute every golden answer. Without chromium the
// build is still checked; the README's test command requires the browser part.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { CHROMIUM, ROOT, serve, withChromium } from './support/browser.mjs';
import { wasmArgs } from './helpers.mjs';

const available = existsSync(CHROMIUM);
if (!available && process.env.TALLY_BROWSER_REQUIRED) throw new Error(`TALLY_BROWSER_REQUIRED is set but ${CHROMIUM} is missing`);
const fixture = JSON.parse(readFileSync(join(ROOT, 'tests/golden/analytics.json'), 'utf8'));

test('Vite bundles tally-ec/wasm, and the bundled page computes the golden answers', async (t) => {
  const { build } = await import('vite');
  const dir = mkdtempSync(join(tmpdir(), 'tally-vite-'));
  try {
    mkdirSync(join(dir, 'node_modules'));
    symlinkSync(join(ROOT, 'npm'), join(dir, 'node_modules', 'tally-ec'), 'dir');
    writeFileSync(join(dir, 'index.html'), '<!doctype html><meta charset="utf-8"><script type="module" src="./main.js"></script>\n');
    writeFileSync(join(dir, 'main.js'), `import init, { query, prepare } from 'tally-ec/wasm';
const { transactions, cases } = await (await fetch('./cases.json')).json();
await init();
const set = prepare(transactions);
window.results = cases.map((c) => query(c.function, set, c.args));
`);
    await build({ root: dir, configFile: false, logLevel: 'error', build: { outDir: 'dist', emptyOutDir: true } });
    const assets = readdirSync(join(dir, 'dist', 'assets'));
    const wasm = assets.filter((f) => f.endsWith('.wasm'));
    assert.equal(wasm.length, 1, `one .wasm asset (got ${assets.join(', ')})`);
    assert.ok(readFileSync(join(dir, 'dist', 'assets', wasm[0])).equals(readFileSync(join(ROOT, 'npm/wasm/pkg/tally_wasm_bg.wasm'))), 'the asset is the package\'s module');
    const js = assets.filter((f) => f.endsWith('.js')).map((f) => readFileSync(join(dir, 'dist', 'assets', f), 'utf8')).join('\n');
    assert.ok(js.includes(wasm[0]), 'the bundle loads the .wasm asset by its hashed name');
    if (!available) {
      t.skip(`${CHROMIUM} is not installed: bundle built, not run`);
      return;
    }
    const cases = fixture.cases.map((c) => ({ function: c.function, args: wasmArgs(c, fixture.now) }));
    writeFileSync(join(dir, 'dist', 'cases.json'), JSON.stringify({ transactions: fixture.transactions, cases }));
    const server = await serve(join(dir, 'dist'));
    try {
      const results = await withChromium(async (context) => {
        const page = await context.newPage();
        const errors = [];
        page.on('pageerror', (e) => errors.push(String(e)));
        await page.goto(`http://127.0.0.1:${server.address().port}/index.html`);
        await page.waitForFunction(() => window.results || null, null, { timeout: 20000 }).catch(() => {});
        assert.deepEqual(errors, [], 'no page errors');
        return page.evaluate(() => window.results);
      });
      assert.equal(results?.length, fixture.cases.length, 'every case computed');
      fixture.cases.forEach((c, i) => assert.deepEqual(results[i], c.expected, `${c.function}(${JSON.stringify(c.args)}) in ${c.timezone}`));
    } finally {
      server.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
