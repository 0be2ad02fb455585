// `npm pack` / `npm publish` guard (the `prepack` script): refuses to pack a package that would
// install broken, naming what is missing and how to build it. Without arguments it checks the
// main package (the WASM build, napi-rs's loader, the page, the licence); with `--platform` it
// checks the platform package in the current folder (platforms/<name>/): its `.node` binary,
// page and licence.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const platform = process.argv.includes('--platform');
const root = platform ? process.cwd() : fileURLToPath(new URL('..', import.meta.url));
const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8'));
const need = platform
  ? [
      [manifest.main, 'bash scripts/package.sh (from the repository root) builds it'],
      ['README.md', 'the package page'],
      ['LICENSE', 'bash scripts/package.sh copies it'],
    ]
  : [
      ['wasm/pkg/tally_wasm.js', 'bash scripts/build-wasm.sh (from the repository root)'],
      ['wasm/pkg/tally_wasm_bg.wasm', 'bash scripts/build-wasm.sh (from the repository root)'],
      ['native/index.cjs', "napi-rs's loader: npm run build regenerates it"],
      ['README.md', 'the package page'],
      ['LICENSE', 'cp ../LICENSE .'],
      ['dashboard/index.html', 'the dashboard page'],
    ];
const missing = need.filter(([file]) => !file || !existsSync(join(root, file)));
if (missing.length > 0) {
  for (const [file, how] of missing) console.error(`${manifest.name} pack: ${file} is missing (${how})`);
  console.error(`${manifest.name} pack: refusing to pack a package that would not work`);
  process.exit(1);
}
