// Requests counted by the local S3 server's own log (scripts/s3-server.sh writes one JSON line
// per request to TALLY_S3_LOG), for the Node request-budget test and the Node benchmark.
import { readFileSync, statSync } from 'node:fs';

/** Counts, by kind, the requests the server logs from now on: `counts()` returns
 * `{ total, PUT, GET, HEAD, LIST, DELETE }` (present kinds only; a DeleteObjects POST counts
 * as a DELETE, a bucket-level GET as a LIST). Nothing else may use the server meanwhile. */
export function requestCounter(log = process.env.TALLY_S3_LOG) {
  const offset = statSync(log).size;
  return {
    counts() {
      const out = { total: 0 };
      for (const line of readFileSync(log, 'utf8').slice(offset).split('\n')) {
        if (!line) continue;
        const r = JSON.parse(line);
        const kind = r.method === 'GET' && r.key === '' ? 'LIST' : r.method === 'POST' ? 'DELETE' : r.method;
        out[kind] = (out[kind] ?? 0) + 1;
        out.total += 1;
      }
      return out;
    },
  };
}
