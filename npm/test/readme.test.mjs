// The package page (npm/README.md) and the repository README's drop-in: every JavaScript block runs as written, from inside the
// package (so `tally-ec` resolves to it), and prints what its comments say.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

const here = fileURLToPath(new URL('..', import.meta.url));
const readme = readFileSync(join(here, 'README.md'), 'utf8');
// The repository README's s3db.js drop-in too (its quickstart is the package page's, below).
const root = readFileSync(join(here, '..', 'README.md'), 'utf8');
const dropIn = /## Inside s3db\.js 21\.6\.2 \(drop-in\)\n[\s\S]*?```js\n([\s\S]*?)```/.exec(root)?.[1];
const blocks = [...readme.matchAll(/```js\n([\s\S]*?)```/g)].map((m) => m[1]).concat(dropIn ? [dropIn] : []);

test('the package README has its blocks', () => {
  assert.ok(blocks.length >= 3, `${blocks.length} js blocks`);
  assert.ok(dropIn, "the repository README has its s3db.js drop-in block");
});

for (const [i, code] of blocks.entries()) {
  test(`README block ${i + 1} runs and prints what it says`, () => {
    const file = join(here, `.readme-block-${process.pid}-${i}.mjs`);
    writeFileSync(file, code);
    try {
      const r = spawnSync(process.execPath, [file], { cwd: here, encoding: 'utf8', timeout: 60_000, env: { ...process.env, S3DB_DISABLE_CRON: 'true' } });
      assert.equal(r.status, 0, r.stderr);
      // Each `console.log(…); // a b c` line prints `a b c` (the comment up to a colon, when it explains).
      const said = [...code.matchAll(/console\.log\(.*\); \/\/ (.*)$/gm)].map((m) => m[1].replace(/^the retry: /, '').split(/,| in /)[0].trim());
      const lines = r.stdout.trim().split('\n');
      assert.equal(lines.length, said.length, r.stdout);
      said.forEach((want, k) => assert.equal(lines[k].trim(), want, `line ${k + 1} of block ${i + 1}`));
    } finally {
      rmSync(file, { force: true });
    }
  });
}

// Types that compile where the JavaScript runs: every block, type-checked as JavaScript
// (`checkJs`) against the package's own declarations and s3db.js 21.6.2's, fails on a method
// the types lack or an argument they refuse.
test('every README block type-checks against the published types', () => {
  const dir = join(here, `.readme-types-${process.pid}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  try {
    const files = blocks.map((code, i) => {
      writeFileSync(join(dir, `block-${i + 1}.mjs`), code);
      return `block-${i + 1}.mjs`;
    });
    writeFileSync(
      join(dir, 'tsconfig.json'),
      JSON.stringify({
        compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', allowJs: true, checkJs: true, noEmit: true, skipLibCheck: true, types: ['node'] },
        files,
      }),
    );
    const r = spawnSync(process.execPath, [join(here, 'node_modules/typescript/bin/tsc'), '-p', dir], { cwd: here, encoding: 'utf8' });
    assert.equal(r.status, 0, r.stdout + r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the repository README's quickstart is the package page's, which runs above", () => {
  const quick = (text) => /## Quickstart\n[\s\S]*?```js\n([\s\S]*?)```/.exec(text)?.[1];
  assert.ok(quick(readme), 'npm/README.md has a Quickstart with a js block');
  assert.equal(quick(root), quick(readme));
});
