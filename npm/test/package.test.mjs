// The package as users get it: CommonJS require, ESM import of the same classes, and a
// tarball from `npm pack` installed into an empty folder.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { execFileSync } from 'node:child_process';
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
  const app = join(work, 'app');
  execFileSync('mkdir', ['-p', app]);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', version: '1.0.0', private: true }));
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', join(work, packed)], { cwd: app, stdio: 'inherit' });
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
});
