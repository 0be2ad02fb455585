// The package as users get it: CommonJS require, ESM import of the same classes, and a
// tarball from `npm pack` installed into an empty folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esm from '../index.js';

const pkgDir = dirname(dirname(fileURLToPath(import.meta.url)));

test('require() and import give the same classes', () => {
  const require = createRequire(import.meta.url);
  const cjs = require('../lib/index.cjs');
  for (const name of ['S3db', 'Database', 'EventualConsistencyPlugin', 'TallyError']) {
    assert.equal(typeof cjs[name], 'function', name);
    assert.equal(cjs[name], esm[name], name);
  }
});

test('a tarball from npm pack works from an empty folder through import and require', { timeout: 180_000 }, () => {
  const work = mkdtempSync(join(tmpdir(), 'tally-pack-'));
  const packed = execFileSync('npm', ['pack', '--silent', '--pack-destination', work], { cwd: pkgDir, encoding: 'utf8' })
    .trim()
    .split('\n')
    .pop();
  // What the tarball holds: the package page, the licence, the dashboard, the WASM build.
  const listed = execFileSync('tar', ['-tzf', join(work, packed)], { encoding: 'utf8' }).split('\n');
  for (const f of ['README.md', 'LICENSE', 'dashboard/index.html', 'dashboard/dashboard.js', 'wasm/pkg/tally_wasm_bg.wasm', 'cli/dashboard.mjs']) {
    assert.ok(listed.includes(`package/${f}`), `the tarball lacks ${f}`);
  }
  assert.ok(!listed.some((f) => f.endsWith('.node')), 'the main package carries no binary');
  const manifest = JSON.parse(execFileSync('tar', ['-xzOf', join(work, packed), 'package/package.json'], { encoding: 'utf8' }));
  assert.equal(manifest.scripts.install, undefined, 'no install script');
  assert.equal(manifest.optionalDependencies['tally-ec-linux-x64-gnu'], manifest.version);
  // The platform package, packed around this checkout's build (scripts/package.sh packs the
  // release one): both tarballs install without scripts, npm taking the binary from the
  // optional dependency.
  const platform = join(work, 'platform');
  execFileSync('cp', ['-r', join(pkgDir, 'platforms', 'linux-x64-gnu'), platform]);
  execFileSync('cp', [join(pkgDir, 'native', 'tally.linux-x64-gnu.node'), platform]);
  const platformTgz = execFileSync('npm', ['pack', '--silent', '--ignore-scripts', '--pack-destination', work], { cwd: platform, encoding: 'utf8' }).trim().split('\n').pop();
  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', '--ignore-scripts', join(work, packed), join(work, platformTgz)], { cwd: app, stdio: 'inherit' });
  const script = (kind) =>
    kind === 'esm'
      ? `import { S3db, EventualConsistencyPlugin } from 'tally-ec';`
      : `const { S3db, EventualConsistencyPlugin } = require('tally-ec');`;
  for (const kind of ['esm', 'cjs']) {
    const body = `${script(kind)}
      (async () => {
        const db = new S3db({ connectionString: 'memory://packed/app' });
        await db.usePlugin(new EventualConsistencyPlugin({ verbose: false, resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' } }));
        const w = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
        await w.insert({ id: 'w' });
        await w.add('w', 2); await w.add('w', 3);
        console.log('balance=' + (await w.get('w')).balance);
        await db.disconnect();
      })();`;
    const file = join(app, kind === 'esm' ? 'main.mjs' : 'main.cjs');
    writeFileSync(file, body);
    const out = execFileSync(process.execPath, [file], { cwd: app, encoding: 'utf8' });
    assert.match(out, /balance=5/, kind);
  }
  // The CLI is the package's bin, with its dependencies installed alongside.
  const help = execFileSync(join(app, 'node_modules', '.bin', 'tally-ec'), ['--help'], { cwd: app, encoding: 'utf8' });
  assert.match(help, /Usage: tally-ec/);
  // The installed dashboard finds its page, uPlot and the WASM build.
  const served = execFileSync(process.execPath, ['--input-type=module', '-e', `
    const { startDashboard } = await import(${JSON.stringify(join(app, 'node_modules/tally-ec/cli/dashboard.mjs'))});
    const { server, url } = await startDashboard(null, { port: 0 });
    const base = url.replace(/\\?.*$/, '');
    const codes = [];
    for (const path of ['', 'dashboard.js', 'vendor/uPlot.esm.js', 'wasm/index.js', 'wasm/pkg/tally_wasm_bg.wasm']) codes.push((await fetch(base + path)).status);
    server.close();
    console.log(codes.join(' '));`], { cwd: app, encoding: 'utf8' });
  assert.equal(served.trim(), '200 200 200 200 200');
});

test('npm pack refuses a package without its WASM build', () => {
  const r = spawnSync(process.execPath, [join(pkgDir, 'scripts/check-pack.mjs')], { encoding: 'utf8', env: { ...process.env } });
  assert.equal(r.status, 0, r.stderr);
  const copy = mkdtempSync(join(tmpdir(), 'tally-pack-guard-'));
  execFileSync('cp', ['-r', join(pkgDir, 'scripts'), join(pkgDir, 'package.json'), copy]);
  const bare = spawnSync(process.execPath, [join(copy, 'scripts/check-pack.mjs')], { encoding: 'utf8' });
  assert.equal(bare.status, 1);
  assert.match(bare.stderr, /wasm\/pkg\/tally_wasm_bg\.wasm is missing \(bash scripts\/build-wasm\.sh/);
  assert.match(bare.stderr, /native\/index\.cjs is missing/);
  // A platform package without its binary is refused too.
  const plat = mkdtempSync(join(tmpdir(), 'tally-pack-platform-'));
  execFileSync('cp', [join(pkgDir, 'platforms/linux-arm64-musl/package.json'), join(pkgDir, 'platforms/linux-arm64-musl/README.md'), plat]);
  const noBinary = spawnSync(process.execPath, [join(pkgDir, 'scripts/check-pack.mjs'), '--platform'], { cwd: plat, encoding: 'utf8' });
  assert.equal(noBinary.status, 1);
  assert.match(noBinary.stderr, /tally-ec-linux-arm64-musl pack: tally\.linux-arm64-musl\.node is missing/);
});
