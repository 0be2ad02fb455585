'use strict';
// tally-ec (CommonJS entry; index.js re-exports the same objects for ESM, so `instanceof`
// works across both).
const { S3db, Database, Resource } = require('./database.cjs');
const { EventualConsistencyPlugin } = require('./plugin.cjs');
const { TallyError } = require('./errors.cjs');

module.exports = { S3db, Database, Resource, EventualConsistencyPlugin, TallyError };
