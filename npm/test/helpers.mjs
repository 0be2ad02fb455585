// Shared helpers of the node:test suites.
import { mkdtempSync, readdirSync, statSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { S3db, EventualConsistencyPlugin } from '../index.js';

let bucket = 0;

/** A connected database on a fresh memory bucket. */
export async function memoryDb() {
  bucket += 1;
  const db = new S3db({ connectionString: `memory://test-${process.pid}-${bucket}/app` });
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
