// `tally-ec dashboard`: serves the dashboard page (npm/dashboard/) and a small read-only JSON
// API over the store: analytics points, top records, a page of raw events, status and dead
// letters. 127.0.0.1 by default; another address needs an access token. Only GET and HEAD.
import { createServer } from 'node:http';
import { readFileSync, existsSync } from 'node:fs';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { timingSafeEqual } from 'node:crypto';
import { TallyError } from '../index.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const PACKAGE = resolve(HERE, '..');

/** What the page may load: its own files, uPlot, and the WASM build (static mode). */
const FILES = {
  '/': join(PACKAGE, 'dashboard/index.html'),
  '/dashboard.js': join(PACKAGE, 'dashboard/dashboard.js'),
  '/charts.js': join(PACKAGE, 'dashboard/charts.js'),
  '/style.css': join(PACKAGE, 'dashboard/style.css'),
};
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8', '.css': 'text/css; charset=utf-8', '.wasm': 'application/wasm', '.json': 'application/json' };

/** The analytics views the page asks for, each a plugin query and how its argument reads. */
export const VIEWS = {
  dayByHour: ['getDayByHour', 'date'],
  weekByDay: ['getWeekByDay', 'date'],
  monthByDay: ['getMonthByDay', 'date'],
  monthByWeek: ['getMonthByWeek', 'date'],
  yearByWeek: ['getYearByWeek', 'date'],
  yearByMonth: ['getYearByMonth', 'date'],
  lastHours: ['getLastNHours', 'n'],
  lastDays: ['getLastNDays', 'n'],
  lastWeeks: ['getLastNWeeks', 'n'],
  lastMonths: ['getLastNMonths', 'n'],
};

const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self' 'wasm-unsafe-eval'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** Resolves a vendor file inside an installed package (never outside it). */
function vendorFile(pkg, file) {
  for (let dir = PACKAGE; ; dir = dirname(dir)) {
    const base = join(dir, 'node_modules', pkg);
    const path = resolve(base, file);
    if (path.startsWith(base + sep) && existsSync(path)) return path;
    if (dirname(dir) === dir) return null;
  }
}

function staticPath(pathname) {
  if (FILES[pathname]) return FILES[pathname];
  if (pathname === '/vendor/uPlot.esm.js') return vendorFile('uplot', 'dist/uPlot.esm.js');
  if (pathname === '/vendor/uPlot.min.css') return vendorFile('uplot', 'dist/uPlot.min.css');
  const wasm = { '/wasm/index.js': 'wasm/index.js', '/wasm/pkg/tally_wasm.js': 'wasm/pkg/tally_wasm.js', '/wasm/pkg/tally_wasm_bg.wasm': 'wasm/pkg/tally_wasm_bg.wasm' }[pathname];
  return wasm ? join(PACKAGE, wasm) : null;
}

class HttpError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const bad = (message) => new HttpError(400, 'ERR_INVALID_ARGUMENT', message);

/** The configured `[resource, field]` a request names (both parameters are required). */
function fieldOf(session, q) {
  const resource = q.get('resource');
  const field = q.get('field');
  if (!session.fields.some(([r, f]) => r === resource && f === field)) {
    throw new HttpError(404, 'ERR_UNKNOWN_FIELD', `${resource}.${field} is not configured`);
  }
  return [resource, field];
}

function boolean(q, name) {
  const v = q.get(name);
  if (v === null || v === '' || v === '0' || v === 'false') return false;
  if (v === '1' || v === 'true') return true;
  throw bad(`${name} must be true or false`);
}

/** The API: one handler per route, each resolving to a JSON value. */
const ROUTES = {
  async '/api/config'(session) {
    const s = await session.plugin.getStatus();
    return { version: s.version, timezone: s.timezone, analytics: s.enableAnalytics, mode: s.mode, fields: session.fields.map(([resource, field]) => ({ resource, field })) };
  },
  async '/api/points'(session, q) {
    const [resource, field] = fieldOf(session, q);
    const view = VIEWS[q.get('view')];
    if (!view) throw bad(`view must be one of ${Object.keys(VIEWS).join(', ')}`);
    const [fn, kind] = view;
    const raw = q.get(kind === 'n' ? 'n' : 'date');
    if (raw === null || raw === '') throw bad(`view ${q.get('view')} needs ${kind === 'n' ? 'n' : 'date'}`);
    const arg = kind === 'n' ? Number(raw) : raw;
    if (kind === 'n' && (!Number.isInteger(arg) || arg < 1 || arg > 1000)) throw bad('n must be a whole number from 1 to 1000');
    const options = { fillGaps: true, includePending: boolean(q, 'includePending') };
    const recordId = q.get('recordId');
    if (recordId) options.recordId = recordId;
    return { resource, field, view: q.get('view'), points: await session.plugin[fn](resource, field, arg, options) };
  },
  async '/api/top'(session, q) {
    const [resource, field] = fieldOf(session, q);
    const limit = Number(q.get('limit') ?? 10);
    if (!Number.isInteger(limit) || limit < 1 || limit > 100) throw bad('limit must be a whole number from 1 to 100');
    const options = { period: q.get('period') ?? 'month', limit, sortBy: q.get('sortBy') ?? 'totalValue' };
    if (q.get('date')) options.date = q.get('date');
    return { resource, field, records: await session.plugin.getTopRecords(resource, field, options) };
  },
  /** One record's latest transactions (`recordId`), or every applied transaction of a range
   * of days (`startDate`, `endDate`: the page computes other time zones from them). */
  async '/api/events'(session, q) {
    const [resource, field] = fieldOf(session, q);
    const recordId = q.get('recordId');
    const [startDate, endDate] = [q.get('startDate'), q.get('endDate')];
    if (startDate || endDate) {
      const day = /^\d{4}-\d{2}-\d{2}$/;
      if (!day.test(startDate ?? '') || !day.test(endDate ?? '')) throw bad('startDate and endDate must both be YYYY-MM-DD');
      const options = { startDate, endDate, ...(boolean(q, 'includePending') ? {} : { applied: true }), ...(recordId ? { recordId } : {}) };
      const events = await session.plugin.getRawEvents(resource, field, options);
      return { resource, field, startDate, endDate, total: events.length, events };
    }
    if (!recordId) throw bad('events need recordId, or startDate and endDate');
    const limit = Number(q.get('limit') ?? 50);
    if (!Number.isInteger(limit) || limit < 1 || limit > 500) throw bad('limit must be a whole number from 1 to 500');
    const events = await session.plugin.getRawEvents(resource, field, { recordId });
    events.sort((a, b) => String(b.timestamp).localeCompare(String(a.timestamp)));
    return { resource, field, recordId, total: events.length, events: events.slice(0, limit) };
  },
  async '/api/status'(session) {
    const s = await session.plugin.getStatus();
    const fields = [];
    for (const [resource, field] of session.fields) {
      const key = `${resource}.${field}`;
      fields.push({ resource, field, pending: s.pending[key] ?? 0, deadLetters: await session.plugin.getDeadLetters(resource, field) });
    }
    return { version: s.version, mode: s.mode, timezone: s.timezone, analytics: s.enableAnalytics, lastRunAt: s.runs.lastRunAt, fields };
  },
};

const COOKIE = 'tally_dashboard_token';

function same(given, token) {
  const a = Buffer.from(given ?? '');
  const b = Buffer.from(token);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Whether a request may be answered: its token when one is set, and on loopback a Host
 * header naming loopback (a page elsewhere cannot rebind its name to this server). */
function allowed(req, url, { token, loopback }) {
  if (loopback) {
    const host = (req.headers.host ?? '').replace(/:\d+$/, '');
    if (!['127.0.0.1', 'localhost', '[::1]'].includes(host)) return false;
  }
  if (!token) return true;
  const cookie = (req.headers.cookie ?? '').split(';').map((c) => c.trim()).find((c) => c.startsWith(`${COOKIE}=`));
  const candidates = [url.searchParams.get('token'), (req.headers.authorization ?? '').replace(/^Bearer /, ''), cookie ? decodeURIComponent(cookie.slice(COOKIE.length + 1)) : null];
  return candidates.some((c) => c && same(c, token));
}

/** An http.Server answering the page and the API for `session` (not listening yet). Without
 * a session (no store) the API is absent and the page runs in its static mode, over the
 * exported file `data` when one is given (served as `data.json`). */
export function dashboardServer(session, { token, data, loopback = true } = {}) {
  return createServer(async (req, res) => {
    const send = (status, type, body, extra = {}) => {
      res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, ...extra });
      res.end(req.method === 'HEAD' ? undefined : body);
    };
    const json = (status, value) => send(status, 'application/json; charset=utf-8', JSON.stringify(value));
    // Nothing a request carries may stop the server: every failure is an answer.
    try {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        json(405, { error: { code: 'ERR_METHOD', message: 'the dashboard is read-only: GET and HEAD only' } });
        return;
      }
      let url;
      try {
        url = new URL(req.url, 'http://localhost');
      } catch {
        json(400, { error: { code: 'ERR_INVALID_ARGUMENT', message: 'not a valid request path' } });
        return;
      }
      if (!allowed(req, url, { token, loopback })) {
        json(401, { error: { code: 'ERR_UNAUTHORIZED', message: 'this dashboard needs its access token (?token=…) and its own address' } });
        return;
      }
      // The page's own requests (styles, scripts, data) carry the token as a cookie.
      const cookie = token ? { 'set-cookie': `${COOKIE}=${encodeURIComponent(token)}; HttpOnly; SameSite=Strict; Path=/` } : {};
      try {
        if (url.pathname === '/data.json' && data) {
          send(200, 'application/json', readFileSync(data));
          return;
        }
        const route = session ? ROUTES[url.pathname] : undefined;
        if (route) {
          json(200, await route(session, url.searchParams));
          return;
        }
        const path = staticPath(url.pathname);
        if (!path || !existsSync(path)) throw new HttpError(404, 'ERR_NOT_FOUND', `nothing at ${url.pathname}`);
        send(200, TYPES[path.slice(path.lastIndexOf('.'))] ?? 'application/octet-stream', readFileSync(path), url.pathname === '/' ? cookie : {});
      } catch (e) {
        const status = e instanceof HttpError ? e.status : e.code === 'ERR_STORAGE' ? 502 : e.code ? 400 : 500;
        json(status, { error: { code: e.code ?? 'ERR_INTERNAL', message: e.message } });
      }
    } catch {
      if (!res.headersSent) res.writeHead(500);
      res.end();
    }
  });
}

const LOOPBACK = new Set(['127.0.0.1', '::1', 'localhost']);

/** Starts the dashboard; resolves to the listening server and its URL. */
export async function startDashboard(session, { host = '127.0.0.1', port = 4600, token, data } = {}) {
  if (!LOOPBACK.has(host) && !token) {
    throw new TallyError('ERR_INVALID_ARGUMENT', `--host ${host} reaches beyond this machine: give an access token with --token (or TALLY_DASHBOARD_TOKEN)`);
  }
  if (data && !existsSync(data)) throw new TallyError('ERR_INVALID_ARGUMENT', `--data ${data}: no such file`);
  const server = dashboardServer(session, { token, data, loopback: LOOPBACK.has(host) });
  await new Promise((ok, fail) => {
    server.once('error', (e) => fail(new TallyError('ERR_INVALID_ARGUMENT', `cannot listen on ${host}:${port}: ${e.code ?? e.message}`)));
    server.listen(port, host, ok);
  });
  const { port: bound } = server.address();
  const shown = host.includes(':') ? `[${host}]` : host;
  // The token is the operator's own: the address says where it goes, never what it is.
  const query = [data ? 'data=data.json' : null, token ? 'token=<your token>' : null].filter(Boolean).join('&');
  return { server, url: `http://${shown}:${bound}/${query ? `?${query}` : ''}` };
}
