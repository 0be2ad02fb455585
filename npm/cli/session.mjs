// Opening a store for the tally-ec CLI: the connection (`--connection` or TALLY_CONNECTION),
// the plugin options (`--config <file>`: JSON, or a JavaScript module whose default export is
// the options, for reducers), and a plugin that never runs background work of its own. With
// `--s3db`, the store is opened as an s3db.js Database (the one installed next to the app),
// so `inspect` and `verify` also show s3db.js's copy of each record.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { S3db, EventualConsistencyPlugin, TallyError } from '../index.js';

/** Reads the plugin options from `file` (JSON, or a .js/.mjs/.cjs module). */
export async function readConfig(file) {
  const path = resolve(file);
  if (/\.(c|m)?js$/.test(path)) {
    let mod;
    try {
      mod = await import(pathToFileURL(path).href);
    } catch (e) {
      throw new TallyError('ERR_INVALID_CONFIG', `cannot load the config module ${file}: ${e.message}`);
    }
    return mod.default ?? mod;
  }
  let text;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new TallyError('ERR_INVALID_CONFIG', `cannot read the config file ${file}: ${e.code ?? e.message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TallyError('ERR_INVALID_CONFIG', `the config file ${file} is not valid JSON: ${e.message}`);
  }
}

/** The plugin options with background work off: the CLI does what it is asked, then exits. */
function foreground(options) {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new TallyError('ERR_INVALID_CONFIG', 'the config must be an object of EventualConsistencyPlugin options');
  }
  return {
    ...options,
    consolidation: { ...(options.consolidation ?? {}), auto: false },
    garbageCollection: { ...(options.garbageCollection ?? {}), enabled: false },
    verbose: false,
    // The CLI reports what went wrong itself.
    logLevel: 'silent',
    debug: false,
  };
}

/** A database and plugin on the store the global options name. */
export async function open(opts) {
  const connectionString = opts.connection ?? process.env.TALLY_CONNECTION;
  if (!connectionString) {
    throw new TallyError('ERR_INVALID_CONFIG', 'no store given: pass --connection <url> or set TALLY_CONNECTION');
  }
  const file = opts.config ?? process.env.TALLY_CONFIG;
  if (!file) {
    throw new TallyError('ERR_INVALID_CONFIG', 'no plugin options given: pass --config <file> or set TALLY_CONFIG');
  }
  const options = foreground(await readConfig(file));
  const db = opts.s3db ? await s3dbDatabase(connectionString) : new S3db({ connectionString });
  await db.connect();
  const plugin = new EventualConsistencyPlugin(options);
  // Inside s3db.js: no carry-over of 21.6.2's pending transactions (see plugin.install).
  Object.defineProperty(plugin, '_carryOver', { value: false });
  await db.usePlugin(plugin);
  return { db, plugin, fields: configuredFields(plugin) };
}

/** The `package.json` of package `name` in the nearest `node_modules` above `from`. */
function findPackage(name, from) {
  for (let dir = from; ; dir = dirname(dir)) {
    const pkg = join(dir, 'node_modules', name, 'package.json');
    if (existsSync(pkg)) return pkg;
    if (dirname(dir) === dir) return null;
  }
}

/** An s3db.js Database on `connectionString`: the s3db.js of the app in the working
 * directory, else one next to this package. */
async function s3dbDatabase(connectionString) {
  const here = dirname(fileURLToPath(import.meta.url));
  const pkg = findPackage('s3db.js', process.cwd()) ?? findPackage('s3db.js', here);
  if (!pkg) {
    throw new TallyError('ERR_INVALID_CONFIG', '--s3db needs s3db.js installed (npm install s3db.js) in this directory or above');
  }
  const { exports } = JSON.parse(readFileSync(pkg, 'utf8'));
  const entry = exports?.['./lite']?.import ?? exports?.['.']?.import ?? 'dist/index.js';
  // Its cron-based timers would keep the CLI process alive.
  process.env.S3DB_DISABLE_CRON = 'true';
  const { Database } = await import(pathToFileURL(join(dirname(pkg), entry)).href);
  return new Database({ connectionString, logLevel: 'silent', executorPool: false });
}

/** A resource of the session's database (Tally's `resource(name)`, s3db.js's `getResource`). */
export async function resourceOf(db, name) {
  return typeof db.resource === 'function' ? db.resource(name) : db.getResource(name);
}

/** `[resource, field]` of every configured field, in configuration order. */
function configuredFields(plugin) {
  return Object.entries(plugin.config.resources).flatMap(([resource, r]) =>
    (r.fields ?? r).map((f) => [resource, typeof f === 'string' ? f : f.field]),
  );
}

/** The configured fields a command is limited to by its optional resource and field. */
export function selectFields(session, resource, field) {
  const chosen = session.fields.filter(([r, f]) => (!resource || r === resource) && (!field || f === field));
  if (chosen.length === 0) {
    const what = field ? `${resource}.${field}` : resource;
    throw new TallyError(field ? 'ERR_UNKNOWN_FIELD' : 'ERR_UNKNOWN_RESOURCE', `${what} is not configured in the plugin options`);
  }
  return chosen;
}
