// Builds the native addon from the Rust workspace and places it at native/tally.linux-x64-gnu.node.
// Skipped when a prebuilt addon is already there (an installed tarball) unless --force.
// TALLY_RELEASE=1 builds with the release profile (benchmarks); the default is a debug build.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { homedir } from 'node:os';

const here = dirname(fileURLToPath(import.meta.url));
const pkg = resolve(here, '..');
const workspace = resolve(pkg, '..');
const out = join(pkg, 'native', `tally.${process.platform}-${process.arch}-gnu.node`);
const force = process.argv.includes('--force');

if (existsSync(out) && !force && !existsSync(join(workspace, 'Cargo.toml'))) {
  console.log(`tally-ec: using the prebuilt addon ${out}`);
  process.exit(0);
}
if (!existsSync(join(workspace, 'Cargo.toml'))) {
  console.error('tally-ec: no prebuilt addon for this platform and no Rust sources to build one');
  process.exit(1);
}
const release = process.env.TALLY_RELEASE === '1';
const target = process.env.CARGO_TARGET_DIR || join(homedir(), '.cache', 'tally', 'target');
const args = ['build', '-p', 'tally-node', ...(release ? ['--release'] : [])];
console.log(`tally-ec: cargo ${args.join(' ')} (target ${target})`);
const r = spawnSync('cargo', args, {
  cwd: workspace,
  stdio: 'inherit',
  env: { ...process.env, CARGO_TARGET_DIR: target },
});
if (r.status !== 0) {
  console.error(`tally-ec: cargo build failed (exit ${r.status ?? r.signal})`);
  process.exit(1);
}
const built = join(target, release ? 'release' : 'debug', 'libtally_node.so');
mkdirSync(dirname(out), { recursive: true });
copyFileSync(built, out);
console.log(`tally-ec: addon ready at ${out}`);
