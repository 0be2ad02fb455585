// The Tally dashboard. Live: served by `tally-ec dashboard`, it reads the store through the
// read-only API (`api/…`). Static: opened with `?data=<url>` or a chosen file, it computes
// everything in the browser with tally-ec/wasm from exported transactions. Every value is
// rendered as text. URL parameters: view, date, n, metric, tz, field, data, token.
import { drawChart, resizeChart, fmt } from './charts.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const token = params.get('token');
const el = (tag, text, attrs = {}) => {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  return e;
};

/** Where the numbers come from: `live` (the API) or `static` (transactions in the page). */
const state = { mode: null, config: null, tally: null, prepared: null, transactions: [], recordId: null, timer: null, seq: 0 };

function setState(kind, message) {
  $('state').dataset.state = kind;
  $('state').textContent = message;
}

// The period of the top records next to a view (top records are per day, week or month).
const VIEW_PERIOD = { dayByHour: 'day', monthByDay: 'month', yearByWeek: null, yearByMonth: null, lastDays: null, lastHours: null };
const VIEW_FN = { dayByHour: 'getDayByHour', monthByDay: 'getMonthByDay', yearByWeek: 'getYearByWeek', yearByMonth: 'getYearByMonth', lastDays: 'getLastNDays', lastHours: 'getLastNHours' };
const usesN = (view) => view === 'lastDays' || view === 'lastHours';
const BARS = new Set(['dayByHour', 'yearByWeek', 'lastHours']);

/** The date argument in the form a view wants, from a `YYYY-MM-DD` day. */
function dateFor(view, day) {
  if (view === 'monthByDay') return day.slice(0, 7);
  if (view === 'yearByWeek' || view === 'yearByMonth') return day.slice(0, 4);
  return day;
}

async function api(path, query) {
  const q = new URLSearchParams(query);
  if (token) q.set('token', token);
  const res = await fetch(`${path}?${q}`);
  let body;
  try {
    body = await res.json();
  } catch {
    throw new Error(`${path} answered HTTP ${res.status} with something that is not JSON`);
  }
  if (!res.ok) throw new Error(`${body.error?.message ?? `HTTP ${res.status}`} (${body.error?.code ?? res.status})`);
  return body;
}

/** The configured fields, by the index the field picker's options carry. */
let fields = [];

function selected() {
  const { resource, field } = fields[Number($('field').value)] ?? {};
  const view = $('view').value;
  return { resource, field, view, date: $('date').value.trim(), n: Number($('n').value), metric: $('metric').value, timezone: $('timezone').value, pending: $('pending').checked };
}

const DAY = 86_400_000;
const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);

/** The days (in the store's zone, a day of margin each side for any zone's offset) whose
 * transactions make up a view in another zone. */
function daysOf(view, date, n) {
  const at = (d) => Date.parse(`${d}T00:00:00Z`);
  const [from, to] = {
    dayByHour: () => [at(date), at(date)],
    monthByDay: () => [at(`${date}-01`), at(`${date}-01`) + 31 * DAY],
    yearByWeek: () => [at(`${date}-01-01`) - 7 * DAY, at(`${date}-12-31`) + 7 * DAY],
    yearByMonth: () => [at(`${date}-01-01`), at(`${date}-12-31`)],
    lastDays: () => [Date.now() - n * DAY, Date.now()],
    lastHours: () => [Date.now() - n * 3_600_000, Date.now()],
  }[view]();
  return [isoDay(from - DAY), isoDay(to + DAY)];
}

/** Loads the WASM analytics once. */
async function wasm() {
  if (!state.tally) {
    const mod = await import('./wasm/index.js');
    await mod.default();
    state.tally = mod;
  }
  return state.tally;
}

/** A view in a zone other than the store's: its transactions from the API, computed here. */
async function fetchInZone(s, base) {
  if (!/^\d{4}(-\d{2}(-\d{2})?)?$/.test(s.date) && !usesN(s.view)) throw new Error(`"${s.date}" is not a date for this view`);
  const [startDate, endDate] = daysOf(s.view, s.date, s.n);
  const [t, { events }] = await Promise.all([
    wasm(),
    api('api/events', { ...base, startDate, endDate, includePending: s.pending ? '1' : '0', ...(state.recordId ? { recordId: state.recordId } : {}) }),
  ]);
  const set = t.prepare(events);
  try {
    const arg = usesN(s.view) ? s.n : s.date;
    const opts = { fillGaps: true, timezone: s.timezone, now: Date.now() };
    const points = t[VIEW_FN[s.view]](set, arg, { ...opts, includePending: s.pending });
    const applied = s.pending ? t[VIEW_FN[s.view]](set, arg, opts) : null;
    const period = VIEW_PERIOD[s.view];
    const records = period ? t.getTopRecords(set, { period, date: s.date, sortBy: 'totalValue', limit: 10, timezone: s.timezone }) : null;
    return { points, applied, records };
  } finally {
    set.free();
  }
}

/** The points, top records and (for a record) events of the current selection. */
async function fetchData(s) {
  if (state.mode === 'live' && s.timezone !== state.config.timezone) {
    const base = { resource: s.resource, field: s.field };
    const [{ points, applied, records }, events] = await Promise.all([
      fetchInZone(s, base),
      state.recordId ? api('api/events', { ...base, recordId: state.recordId }).then((r) => r.events) : Promise.resolve(null),
    ]);
    return { points, applied, records, events };
  }
  if (state.mode === 'live') {
    const base = { resource: s.resource, field: s.field };
    const query = { ...base, view: s.view, includePending: s.pending ? '1' : '0', ...(usesN(s.view) ? { n: s.n } : { date: s.date }) };
    if (state.recordId) query.recordId = state.recordId;
    const top = { ...base, period: VIEW_PERIOD[s.view], limit: 10, ...(usesN(s.view) ? {} : { date: s.date }) };
    const analytics = state.config.analytics;
    const [points, applied, records, events] = await Promise.all([
      analytics ? api('api/points', query).then((r) => r.points) : Promise.resolve(null),
      // The pending overlay: the applied points next to the ones with pending included.
      analytics && s.pending ? api('api/points', { ...query, includePending: '0' }).then((r) => r.points) : Promise.resolve(null),
      top.period ? api('api/top', top).then((r) => r.records) : Promise.resolve(null),
      state.recordId ? api('api/events', { ...base, recordId: state.recordId }).then((r) => r.events) : Promise.resolve(null),
    ]);
    return { points, applied, records, events };
  }
  const t = state.tally;
  // "Last N" counts back from the export's last transaction, not from today.
  const opts = { fillGaps: true, timezone: s.timezone, now: state.lastAt };
  const source = state.recordId ? t.prepare(state.transactions.filter((x) => x.originalId === state.recordId)) : state.prepared;
  try {
    const points = t[VIEW_FN[s.view]](source, usesN(s.view) ? s.n : s.date, opts);
    const top = { period: VIEW_PERIOD[s.view], sortBy: 'totalValue', limit: 10, timezone: s.timezone, now: state.lastAt };
    if (!usesN(s.view)) top.date = s.date;
    const records = top.period ? t.getTopRecords(state.prepared, top) : null;
    const events = state.recordId ? state.transactions.filter((x) => x.originalId === state.recordId).slice(-50).reverse() : null;
    return { points, records, events };
  } finally {
    if (source !== state.prepared) source.free();
  }
}

function renderPoints(points, metric, view, applied = null) {
  const table = $('points');
  const head = el('tr');
  for (const h of ['cohort', 'count', 'sum', 'avg', 'min', 'max', 'records']) head.append(el('th', h, h === 'cohort' ? {} : { class: 'n' }));
  const rows = points.map((p) => {
    const tr = el('tr', null, { 'data-cohort': p.cohort, 'data-count': p.count, 'data-sum': p.sum, 'data-records': p.recordCount });
    for (const k of ['avg', 'min', 'max']) if (typeof p[k] === 'number') tr.dataset[k] = String(p[k]);
    tr.append(el('td', p.cohort));
    for (const v of [p.count, p.sum, p.avg, p.min, p.max, p.recordCount]) tr.append(el('td', fmt(v), { class: 'n' }));
    return tr;
  });
  table.replaceChildren(head, ...rows);
  drawChart($('chart'), $('tooltip'), points, metric, { bars: BARS.has(view), applied });
}

function renderTop(records) {
  if (records === null) {
    const row = el('tr');
    row.append(el('td', 'Top records are per day or month: pick "Day by hour" or "Month by day".'));
    $('top').replaceChildren(row);
    return;
  }
  const head = el('tr');
  for (const h of ['record', 'transactions', 'total']) head.append(el('th', h, h === 'record' ? {} : { class: 'n' }));
  const rows = records.map((r) => {
    const tr = el('tr', null, { 'data-record': r.recordId, 'data-count': r.count, 'data-sum': r.sum });
    const td = el('td');
    const button = el('button', r.recordId, { type: 'button', class: 'record', title: `show ${r.recordId} alone`, 'data-id': r.recordId });
    button.addEventListener('click', () => {
      state.recordId = r.recordId;
      state.focus = r.recordId; // keyboard focus stays on the record after the redraw
      render();
    });
    td.append(button);
    tr.append(td, el('td', r.count, { class: 'n' }), el('td', fmt(r.sum), { class: 'n' }));
    return tr;
  });
  if (rows.length === 0) {
    const none = el('tr');
    none.append(el('td', 'No records in this period', { colspan: 3 }));
    rows.push(none);
  }
  $('top').replaceChildren(head, ...rows);
  if (state.focus) document.querySelector(`#top button.record[data-id="${CSS.escape(state.focus)}"]`)?.focus();
}

function renderEvents(events) {
  $('record-section').hidden = !state.recordId;
  if (!state.recordId) return;
  $('record-title').textContent = `Record ${state.recordId}: latest transactions`;
  const head = el('tr');
  for (const h of ['time', 'operation', 'value', 'applied']) head.append(el('th', h, h === 'value' ? { class: 'n' } : {}));
  const rows = (events ?? []).map((e) => {
    const tr = el('tr', null, { 'data-event': e.id });
    tr.append(el('td', e.timestamp), el('td', e.operation), el('td', fmt(e.value), { class: 'n' }), el('td', e.applied === false ? 'pending' : 'applied'));
    return tr;
  });
  $('events').replaceChildren(head, ...rows);
}

function renderStatus(s) {
  if (state.mode !== 'live' || !s) {
    $('status-section').hidden = true;
    return;
  }
  if (s.error) {
    const row = el('tr');
    row.append(el('td', `The status could not be read: ${s.error.message}`));
    $('status').replaceChildren(row);
    return;
  }
  $('status-title').textContent = s.lastRunAt ? `Status · last consolidation ${s.lastRunAt}` : 'Status';
  const head = el('tr');
  for (const h of ['field', 'pending', 'dead letters']) head.append(el('th', h, h === 'field' ? {} : { class: 'n' }));
  const rows = [];
  for (const f of s.fields) {
    const tr = el('tr', null, { 'data-field': `${f.resource}.${f.field}`, 'data-pending': f.pending, 'data-dead': f.deadLetters.length });
    tr.append(el('td', `${f.resource}.${f.field}`), el('td', f.pending, { class: 'n' }), el('td', f.deadLetters.length, { class: 'n' }));
    rows.push(tr);
    for (const d of f.deadLetters) {
      const row = el('tr', null, { class: 'dead' });
      row.append(el('td', `dead letter of ${d.recordId}`), el('td', d.name), el('td', `[${d.error.code}] ${d.error.message}`));
      rows.push(row);
    }
  }
  $('status').replaceChildren(head, ...rows);
}

/** Draws everything for the current selection; a later call supersedes an earlier one. */
async function render({ refresh = false } = {}) {
  const seq = ++state.seq;
  const s = selected();
  $('n-label').hidden = !usesN(s.view);
  $('date-label').hidden = usesN(s.view);
  const where = state.recordId ? ` of ${state.recordId}` : '';
  $('top-title').textContent = usesN(s.view) || !VIEW_PERIOD[s.view] ? 'Top records' : `Top records, ${s.date}`;
  if (state.mode === 'live') {
    const here = s.timezone === state.config.timezone ? 'materialized points' : 'computed in this browser from the retained transactions of the range';
    $('source').textContent = `Live from the store · tally-ec ${state.config.version} · cohorts in ${state.config.timezone} · ${s.timezone}: ${here}`;
  }
  $('chart-title').textContent = `${$('view').selectedOptions[0].textContent}${usesN(s.view) ? ` (${s.n})` : `, ${s.date}`}${where} · ${s.timezone}`;
  // A refresh keeps what is shown until the new numbers are in.
  if (!refresh) setState('loading', 'Loading…');
  try {
    const [{ points, applied, records, events }, status] = await Promise.all([
      fetchData(s),
      state.mode === 'live' ? api('api/status', {}).catch((e) => ({ error: e })) : Promise.resolve(null),
    ]);
    if (seq !== state.seq) return;
    renderTop(records);
    renderEvents(events);
    renderStatus(status);
    if (points === null) {
      renderPoints([], s.metric, s.view);
      setState('disabled', 'Analytics are disabled for this store (analytics.enabled is false), so there are no points to chart: enable them in the plugin options. Top records, a record\'s transactions and the status still show.');
      return;
    }
    renderPoints(points, s.metric, s.view, applied);
    if (points.length > 0 && !points.some((p) => typeof p[s.metric] === 'number')) {
      setState('empty', `${s.metric} is not kept for this field: add it to analytics.metrics in the plugin options, or pick another metric.`);
    } else if (points.every((p) => p.count === 0)) setState('empty', `No transactions in this range${where}: pick another date or view.`);
    else setState('ready', '');
    $('state').dataset.ready = 'true';
  } catch (e) {
    if (seq !== state.seq) return;
    setState('error', `Could not compute this view: ${e.message}`);
  }
}

/** The `tz` the address asks for, when it is a zone this browser knows (also a name its
 * list leaves out, such as Asia/Kolkata where the list says Asia/Calcutta). */
function askedZone() {
  const tz = params.get('tz');
  try {
    return tz ? (new Intl.DateTimeFormat('en', { timeZone: tz }), tz) : null;
  } catch {
    return null;
  }
}

/** Every IANA zone, the browser's first (then `also`, then UTC, then one the address asks for). */
function allZones(also = 'UTC') {
  const browser = Intl.DateTimeFormat().resolvedOptions().timeZone;
  const all = typeof Intl.supportedValuesOf === 'function' ? Intl.supportedValuesOf('timeZone') : [];
  return [...new Set([browser, also, 'UTC', ...(askedZone() ? [askedZone()] : []), ...all])];
}

function fillZones(zones, chosen) {
  const select = $('timezone');
  select.replaceChildren(...zones.map((z) => el('option', z, { value: z })));
  select.value = chosen;
}

/** Today's date in `timezone` (the store's, live; else UTC). */
function today(timezone = 'UTC') {
  try {
    return new Intl.DateTimeFormat('en-CA', { timeZone: timezone, year: 'numeric', month: '2-digit', day: '2-digit' }).format(new Date());
  } catch {
    return new Date().toISOString().slice(0, 10);
  }
}

async function startLive(config) {
  state.mode = 'live';
  state.config = config;
  $('source').textContent = `Live from the store · tally-ec ${config.version} · ${config.mode} mode · cohorts in ${config.timezone}`;
  $('file-label').hidden = true;
  fields = config.fields;
  $('field').replaceChildren(...fields.map((f, i) => el('option', `${f.resource}.${f.field}`, { value: i })));
  const asked = fields.findIndex((f) => `${f.resource}.${f.field}` === params.get('field'));
  if (asked >= 0) $('field').value = String(asked);
  if (fields.length === 0) {
    setState('empty', 'The plugin options configure no fields: add resources to the config file.');
    return false;
  }
  // The store's zone reads materialized points; any other is computed in the browser from
  // the retained transactions of the range.
  fillZones(allZones(config.timezone), askedZone() ?? config.timezone);
  if (!$('date').value) $('date').value = dateFor($('view').value, today(config.timezone));
  return true;
}

async function startStatic(load) {
  state.mode = 'static';
  $('status-section').hidden = true;
  fields = [{ resource: 'export', field: 'transactions' }];
  $('field').replaceChildren(el('option', 'exported transactions', { value: 0 }));
  // Nothing is pending in an export, and it does not change.
  $('live').closest('label').hidden = true;
  $('pending').closest('label').hidden = true;
  const zones = allZones();
  fillZones(zones, askedZone() ?? zones[0]);
  setState('loading', 'Loading the WebAssembly analytics…');
  try {
    await wasm();
  } catch (e) {
    setState('error', `The WebAssembly build could not load (${e.message}): build it with scripts/build-wasm.sh, or serve the page with tally-ec dashboard.`);
    return false;
  }
  return load();
}

/** Takes exported transactions (an array, or `{ transactions }`) from JSON text. */
function takeExport(text, name) {
  let data;
  try {
    data = JSON.parse(text);
  } catch (e) {
    setState('error', `${name} is not JSON (${e.message}): export transactions with tally-ec export or the demo.`);
    return false;
  }
  const txs = Array.isArray(data) ? data : data?.transactions;
  if (!Array.isArray(txs)) {
    setState('error', `${name} holds no transactions array: expected [ … ] or { "transactions": [ … ] }.`);
    return false;
  }
  // Only applied transactions count, as in the plugin's points (an export may hold pending ones).
  const applied = txs.filter((t) => t && t.applied !== false);
  let prepared;
  try {
    prepared = state.tally.prepare(applied);
  } catch (e) {
    setState('error', `${name} has transactions Tally cannot read: ${e.message}`);
    return false;
  }
  state.prepared?.free();
  state.prepared = prepared;
  state.transactions = applied;
  state.lastAt = applied.reduce((m, t) => Math.max(m, Date.parse(t.timestamp) || 0), 0) || Date.now();
  $('source').textContent = `${applied.length} applied transactions from ${name}, computed in this browser`;
  const last = txs.map((t) => String(t.timestamp)).sort().pop();
  if (!$('date').value) $('date').value = dateFor($('view').value, (last ?? today()).slice(0, 10));
  return true;
}

async function loadUrl(url) {
  let res;
  try {
    res = await fetch(url);
  } catch (e) {
    setState('error', `Could not fetch ${url}: ${e.message}`);
    return false;
  }
  if (!res.ok) {
    setState('error', `Could not load ${url}: HTTP ${res.status}. Check the data= address.`);
    return false;
  }
  return takeExport(await res.text(), url);
}

function wire() {
  for (const id of ['field', 'metric', 'timezone', 'pending', 'n']) $(id).addEventListener('change', () => render());
  $('date').addEventListener('change', () => render());
  $('view').addEventListener('change', () => {
    // The date carries over between views: a month becomes its first day, a year its first.
    const v = $('date').value.trim();
    const day = /^\d{4}-\d{2}-\d{2}$/.test(v) ? v : /^\d{4}-\d{2}$/.test(v) ? `${v}-01` : /^\d{4}$/.test(v) ? `${v}-01-01` : today(state.config?.timezone);
    $('date').value = dateFor($('view').value, day);
    render();
  });
  $('record-clear').addEventListener('click', () => {
    state.recordId = null;
    render();
  });
  $('live').addEventListener('change', () => {
    clearInterval(state.timer);
    if ($('live').checked) state.timer = setInterval(() => render({ refresh: true }), 10_000);
  });
  $('file').addEventListener('change', async () => {
    const file = $('file').files[0];
    if (!file) return;
    clearInterval(state.timer);
    if (state.mode !== 'static' && !(await startStatic(async () => true))) return;
    if (takeExport(await file.text(), file.name)) render();
  });
  window.addEventListener('resize', () => resizeChart($('chart')));
}

async function main() {
  for (const id of ['view', 'metric']) {
    const asked = params.get(id);
    if (asked && [...$(id).options].some((o) => o.value === asked)) $(id).value = asked;
  }
  if (params.get('n')) $('n').value = params.get('n');
  if (params.get('pending') === '1') $('pending').checked = true;
  if (params.get('date')) $('date').value = params.get('date');
  wire();
  const data = params.get('data');
  if (data) {
    if (await startStatic(() => loadUrl(data))) render();
    return;
  }
  let config = null;
  try {
    config = await api('api/config', {});
  } catch (e) {
    if (!/HTTP 404|not JSON/.test(e.message)) {
      setState('error', `The dashboard API answered with an error: ${e.message}`);
      return;
    }
  }
  if (config) {
    if (await startLive(config)) render();
    return;
  }
  if (await startStatic(async () => true)) setState('empty', 'No store: choose an exported transactions file above, or start tally-ec dashboard.');
}

main();
