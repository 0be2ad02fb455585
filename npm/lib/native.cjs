'use strict';
// Loads the native addon built by scripts/build-addon.mjs.
const { join } = require('node:path');

const file = join(__dirname, '..', 'native', `tally.${process.platform}-${process.arch}-gnu.node`);
let native;
try {
  native = require(file);
} catch (e) {
  throw new Error(
    `tally-ec: cannot load the native addon ${file} (${e.message}); run \`npm install\` or \`npm run build\` in the package folder`,
  );
}
module.exports = native;
