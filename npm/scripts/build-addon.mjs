// Contributor build of the native addon: `napi build --platform` over bindings-node, which names
// the file after this platform (native/tally.linux-x64-gnu.node, tally.darwin-arm64.node, ...)
// and regenerates napi-rs's loader native/index.cjs. Users never run this: they get the
// prebuilt platform package (scripts/package.sh builds those). TALLY_RELEASE=1 builds the
// release profile (benchmarks); the default is a debug build.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';

const pkg = resolve(fileURLToPath(new URL('..', import.meta.url)));
const workspace = resolve(pkg, '..');
if (!existsSync(join(workspace, 'Cargo.toml'))) {
  console.error('tally-ec: the addon is built from a checkout of the repository (no Cargo.toml above this package)');
  process.exit(1);
}
const release = process.env.TALLY_RELEASE === '1';
const target = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'tally', 'target');
const napi = join(pkg, 'node_modules', '@napi-rs', 'cli', 'dist', 'cli.js');
const args = [
  napi, 'build', '--platform',
  '--manifest-path', '../bindings-node/Cargo.toml',
  '--package-json-path', 'package.json',
  '--target-dir', target,
  '--output-dir', 'native', '--js', 'index.cjs', '--dts', 'binding.d.ts',
  ...(release ? ['--release'] : []),
];
console.log(`tally-ec: napi build${release ? ' --release' : ''} (target ${target})`);
const r = spawnSync(process.execPath, args, { cwd: pkg, stdio: 'inherit', env: { ...process.env, CARGO_TARGET_DIR: target } });
if (r.status !== 0) {
  console.error(`tally-ec: napi build failed (exit ${r.status ?? r.signal})`);
  process.exit(1);
}
