'use strict';
// The native addon, loaded on first use through napi-rs's generated loader (native/index.cjs):
// a contributor's build in native/ first, then the platform package from optionalDependencies
// (tally-ec-linux-x64-gnu, -linux-arm64-musl, ...). Loading lazily keeps `import 'tally-ec'` and
// `tally-ec/wasm` working on a platform without a binary; the first native call throws a
// TallyError with code ERR_NATIVE_UNAVAILABLE that names the platform and what was tried.
const { TallyError } = require('./errors.cjs');

let binding = null;

/** The platform's package name, as napi-rs names it (`linux-x64-gnu`, `darwin-arm64`, ...). */
function platformName() {
  if (process.platform !== 'linux') return `${process.platform}-${process.arch}`;
  const report = typeof process.report?.getReport === 'function' ? process.report.getReport() : null;
  const glibc = report && report.header && report.header.glibcVersionRuntime;
  return `linux-${process.arch}-${glibc ? 'gnu' : 'musl'}`;
}

function load() {
  if (binding) return binding;
  try {
    binding = require('../native/index.cjs');
  } catch (e) {
    const name = platformName();
    const prebuilt = Object.keys(require('../package.json').optionalDependencies || {}).map((n) => n.replace(/^tally-ec-/, ''));
    const why = prebuilt.includes(name)
      ? `the package tally-ec-${name} is not installed or has no binary for this platform. Reinstall without ` +
        '--no-optional / --omit=optional, or build from a checkout with `npm run build`.'
      : `there is no prebuilt addon for this platform (prebuilt: ${prebuilt.join(', ')}). Build from a checkout ` +
        'with `npm run build` (Rust and a C toolchain needed).';
    const err = new TallyError(
      'ERR_NATIVE_UNAVAILABLE',
      `tally-ec: no native addon for ${name} (Node ${process.version}): ${why} tally-ec/wasm (analytics) works without it.`,
    );
    err.cause = e;
    throw err;
  }
  return binding;
}

module.exports = new Proxy(
  {},
  {
    get(_target, prop) {
      return prop === 'platformName' ? platformName : load()[prop];
    },
  },
);
