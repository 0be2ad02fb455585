// Shared helpers of the node:test suites.
import { mkdtempSync, readdirSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3db, EventualConsistencyPlugin } from '../index.js';

let bucket = 0;

/** Where `freshDb()` puts a new database: `TALLY_TEST_BACKEND` = memory (default), folder or
 * s3 (the local server of scripts/s3-server.sh, bucket `tally-node`). */
export const BACKEND = process.env.TALLY_TEST_BACKEND || 'memory';

/** A connection string for a new, empty database on the chosen backend. */
export function freshConnectionString() {
  bucket += 1;
  switch (BACKEND) {
    case 'memory':
      return `memory://test-${process.pid}-${bucket}/app`;
    case 'folder':
      return pathToFileURL(mkdtempSync(join(tmpdir(), 'tally-node-'))).href;
    case 's3': {
      const endpoint = process.env.TALLY_S3_ENDPOINT;
      if (!endpoint) throw new Error('TALLY_TEST_BACKEND=s3 needs TALLY_S3_ENDPOINT (scripts/s3-server.sh start)');
      const url = new URL(endpoint);
      url.username = process.env.TALLY_S3_ACCESS_KEY ?? 'test';
      url.password = encodeURIComponent(process.env.TALLY_S3_SECRET_KEY ?? 'test');
      url.pathname = `/tally-node/run-${process.pid}-${Date.now()}-${bucket}/app`;
      return url.href;
    }
    default:
      throw new Error(`unknown TALLY_TEST_BACKEND ${BACKEND}`);
  }
}

/** A connection string for a fresh prefix `name-…` on the local S3 server, with its secret;
 * `null` (the test skipped) when no server runs and none is required. */
export function localS3(t, name) {
  const endpoint = process.env.TALLY_S3_ENDPOINT;
  if (!endpoint) {
    if (process.env.TALLY_S3_REQUIRED) throw new Error('TALLY_S3_REQUIRED is set but no S3 server is running');
    t.skip('no TALLY_S3_ENDPOINT (scripts/test.sh starts the server)');
    return null;
  }
  const secret = process.env.TALLY_S3_SECRET_KEY ?? 'test';
  const url = new URL(endpoint);
  url.username = process.env.TALLY_S3_ACCESS_KEY ?? 'test';
  url.password = encodeURIComponent(secret);
  url.pathname = `/tally-node/${name}-${process.pid}-${Date.now()}/app`;
  return { url, secret };
}

/** Which database the plugin is installed on: `TALLY_TEST_HOST` = tally (Tally's own S3db,
 * the default) or s3db (a real s3db.js 21.6.2 Database on the same backend). */
export const HOST = process.env.TALLY_TEST_HOST || 'tally';

/** An s3db.js 21.6.2 Database (imported lazily: only the drop-in suites need it). Its
 * default task executor retries every failed request, 404s included, with a 1 s backoff
 * (18 s to connect to a fresh S3 prefix), so the tests turn it off. */
export async function s3dbDatabase(connectionString) {
  process.env.S3DB_DISABLE_CRON = 'true';
  const { Database } = await import('s3db.js/lite');
  return new Database({ connectionString, logLevel: 'silent', executorPool: false });
}

/** A connected database on a fresh bucket, folder or prefix of the chosen backend. */
export async function freshDb() {
  const connectionString = freshConnectionString();
  const db = HOST === 's3db' ? await s3dbDatabase(connectionString) : new S3db({ connectionString });
  await db.connect();
  return db;
}

/** A fresh folder and a connected database on it. */
export async function folderDb() {
  const dir = mkdtempSync(join(tmpdir(), 'tally-node-'));
  const db = new S3db({ connectionString: pathToFileURL(dir).href });
  await db.connect();
  return { db, dir };
}

/** Every file under `dir` with its content (to prove that nothing was written). */
export function snapshot(dir) {
  const out = {};
  const walk = (d) => {
    for (const name of readdirSync(d)) {
      const p = join(d, name);
      if (statSync(p).isDirectory()) walk(p);
      else out[p] = readFileSync(p, 'utf8');
    }
  };
  walk(dir);
  return out;
}

/** A plugin with logging off unless asked. */
export function plugin(options) {
  return new EventualConsistencyPlugin({ verbose: false, ...options });
}

export const WALLET_ATTRIBUTES = { id: 'string|required', balance: 'number|default:0' };

/** Waits for `promise`, failing after `ms`; its (ref'd) timer keeps the event loop alive
 * while the plugin's own timers are unref'd. */
export async function within(promise, ms, what = 'operation') {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not happen within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** The case's arguments with `timezone` and `now` in its options object (added if absent). */
export function wasmArgs(c, now) {
  const args = structuredClone(c.args);
  const last = args[args.length - 1];
  const env = { timezone: c.timezone, now };
  if (last && typeof last === 'object' && !Array.isArray(last)) Object.assign(last, env);
  else args.push(env);
  return args;
}
