'use strict';
// The s3db.js adapter: where Tally keeps its data beside an s3db.js Database, and the record
// functions the native engine calls (through s3db.js's resource API, so its validation,
// hooks and partitions keep working). The hooks are in hooks.cjs, the carry-over of 21.6.2's
// pending transactions in carry-over.cjs.
const { pathToFileURL } = require('node:url');
const { join } = require('node:path');
const { TallyError } = require('../errors.cjs');

/** Tally's own folder beside the database's objects (s3db.js plugins use `plugin=<name>/`). */
const TALLY_FOLDER = 'plugin=tally';

/** True for an s3db.js Database (and not Tally's own S3db). */
function isS3dbDatabase(db) {
  return (
    !!db &&
    typeof db._requireNative !== 'function' &&
    typeof db.createResource === 'function' &&
    typeof db.addHook === 'function' &&
    typeof db.resources === 'object'
  );
}

function joinKey(...parts) {
  return parts
    .map((p) => String(p ?? '').replace(/^\/+|\/+$/g, ''))
    .filter(Boolean)
    .join('/');
}

/** The connection string of Tally's store beside `db`: same bucket, credentials and prefix. */
function tallyConnectionString(db) {
  const client = db.client;
  const cfg = client?.config ?? {};
  const kind = client?.constructor?.name;
  const prefix = joinKey(db.keyPrefix ?? cfg.keyPrefix, TALLY_FOLDER);
  // In a URL, a `?` or `#` in the prefix would cut it (and two tenants `t?1`, `t?2` would
  // share Tally's data): those two are percent-encoded, and Tally keeps the prefix as written
  // (every other prefix, `plugin=tally` included, stays where it always was).
  const urlPrefix = prefix.replace(/[?#]/g, (c) => encodeURIComponent(c));
  if (kind === 'MemoryClient') {
    return `memory://${encodeURIComponent(client.bucket ?? cfg.bucket ?? 's3db')}/${urlPrefix}`;
  }
  if (kind === 'FileSystemClient') {
    return pathToFileURL(join(client.basePath ?? cfg.basePath, prefix)).href;
  }
  if (kind === 'S3Client') {
    const enc = encodeURIComponent;
    const creds = cfg.accessKeyId ? `${enc(cfg.accessKeyId)}:${enc(cfg.secretAccessKey ?? '')}@` : '';
    const region = `?region=${enc(cfg.region || 'us-east-1')}`;
    const endpoint = new URL(cfg.endpoint || 'https://s3.amazonaws.com');
    const bucket = enc(cfg.bucket);
    if (endpoint.hostname.endsWith('amazonaws.com')) return `s3://${creds}${bucket}/${urlPrefix}${region}`;
    return `${endpoint.protocol}//${creds}${endpoint.host}/${bucket}/${urlPrefix}${region}`;
  }
  throw new TallyError(
    'ERR_INVALID_CONFIG',
    `EventualConsistencyPlugin: the s3db.js client "${kind}" is not supported (use its memory, filesystem or S3 client)`,
  );
}

/** A record as s3db.js returns it, without its private `_` keys, as plain JSON. */
function plain(record) {
  const out = {};
  for (const [k, v] of Object.entries(record)) {
    if (k.startsWith('_') || v === undefined) continue;
    out[k] = v instanceof Date ? v.toISOString() : v;
  }
  return out;
}

/** The functions the native engine calls to reach `db`'s records. */
function recordFunctions(db) {
  const resourceOf = (name) => {
    const r = db.resources[name];
    if (!r) throw new TallyError('ERR_UNKNOWN_RESOURCE', `s3db.js resource "${name}" does not exist`);
    return r;
  };
  return {
    get: async ({ resource, id }) => {
      const record = await resourceOf(resource).getOrNull(id);
      return record ? plain(record) : null;
    },
    write: async ({ resource, id, changes }) => {
      try {
        await resourceOf(resource).update(id, changes);
        return true;
      } catch (err) {
        // s3db.js's update reads the record first and says so when it is missing.
        if (err?.name === 'ResourceError' && err.statusCode === 404) return false;
        // Its own validation (`number|max:100`): the engine reports it, never retries it.
        if (err?.name === 'InvalidResourceItem' || err?.name === 'ValidationError') return { rejected: String(err.message) };
        throw err;
      }
    },
  };
}

module.exports = { isS3dbDatabase, tallyConnectionString, recordFunctions, plain, TALLY_FOLDER };
