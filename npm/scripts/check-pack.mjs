// `npm pack` / `npm publish` guard (the `prepack` script): refuses to pack a package that
// would install broken, naming what is missing and how to build it.
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const need = [
  ['wasm/pkg/tally_wasm.js', 'bash scripts/build-wasm.sh (from the repository root)'],
  ['wasm/pkg/tally_wasm_bg.wasm', 'bash scripts/build-wasm.sh (from the repository root)'],
  ['README.md', 'the package page'],
  ['LICENSE', 'cp ../LICENSE .'],
  ['dashboard/index.html', 'the dashboard page'],
];
const missing = need.filter(([file]) => !existsSync(join(root, file)));
const addons = existsSync(join(root, 'native')) ? readdirSync(join(root, 'native')).filter((f) => f.endsWith('.node')) : [];
if (addons.length === 0) missing.push(['native/*.node', 'node scripts/build-addon.mjs']);
if (missing.length > 0) {
  for (const [file, how] of missing) console.error(`tally-ec pack: ${file} is missing (${how})`);
  console.error('tally-ec pack: refusing to pack a package that would not work');
  process.exit(1);
}
