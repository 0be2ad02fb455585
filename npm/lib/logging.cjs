'use strict';
// The plugin's logger: the `logger` option (pino, or anything with pino's methods), else a
// child of the s3db.js database's pino logger, else a pino logger of its own writing JSON
// lines to stderr. `logLevel` sets the level (`debug: true` means at least debug).
const pino = require('pino');

const LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'];

/** The level the options ask for, or `null` when they leave it to the logger. */
function levelOf(options) {
  if (options.debug === true) {
    const asked = options.logLevel;
    return asked && LEVELS.indexOf(asked) < LEVELS.indexOf('debug') ? asked : 'debug';
  }
  return typeof options.logLevel === 'string' ? options.logLevel : null;
}

/** Tally's own logger, for a plugin outside s3db.js without a `logger` option. */
function ownLogger(options) {
  return pino({ name: 'tally-ec', level: levelOf(options) ?? 'info' }, pino.destination({ dest: 2, sync: true }));
}

/** The logger of a plugin installed on `database` (an s3db.js database has one). */
function loggerFor(database, options) {
  const parent = database && database.logger;
  if (!parent || typeof parent.child !== 'function') return null;
  const child = parent.child({ plugin: 'EventualConsistencyPlugin' });
  const level = levelOf(options);
  if (level && typeof child.level === 'string') child.level = level;
  return child;
}

/** Whether a logger takes pino's `(obj, msg)`: pino's own (`bindings`, `levels.values`);
 * others (console, winston, bunyan-less wrappers) are given `(msg, obj)`. */
function pinoLike(logger) {
  return typeof logger.bindings === 'function' || typeof logger.levels?.values === 'object';
}

/** `fn(obj, msg)` on a pino logger, or `fn(msg, obj)` on any other. */
function log(logger, level, obj, msg) {
  const fn = logger && logger[level];
  if (typeof fn !== 'function') return;
  if (pinoLike(logger)) fn.call(logger, obj, msg);
  else fn.call(logger, msg, obj);
}

/** Whether debug lines may go to `logger`: pino filters them by its own level; any other
 * logger gets them only when `logLevel` (or `debug: true`) asks for debug or trace. */
function debugs(logger, options) {
  if (logger && pinoLike(logger)) return true;
  const level = levelOf(options ?? {});
  return level === 'debug' || level === 'trace';
}

module.exports = { ownLogger, loggerFor, log, levelOf, debugs };
