// Tally dashboard: loads a JSON export of transactions (an array, or an object with a
// `transactions` array — the demo writes one) and draws, with the WASM analytics, hourly bars
// for a day, a daily line for a month, weekly bars and a top-records table. Changing the time
// zone recomputes everything. URL parameters: data, tz, day, month, weekMonth.
import init, * as tally from '../../wasm/index.js';

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
let transactions = [];
let prepared = null; // the transactions in WebAssembly memory (tally.prepare)

const fmt = (n) => (Math.round(n * 100) / 100).toLocaleString('en-US');

/** A labelled SVG chart of `points` (bars or a line) with the numbers in a data table. */
function chart(el, points, { kind, label, xLabel }) {
  const W = 560, H = 220, L = 56, B = 40, T = 10;
  const sums = points.map((p) => p.sum);
  const max = Math.max(0, ...sums), min = Math.min(0, ...sums);
  const span = max - min || 1;
  const x = (i) => L + (i + 0.5) * ((W - L - 10) / Math.max(points.length, 1));
  const y = (v) => T + (max - v) / span * (H - T - B);
  const bw = Math.max(2, (W - L - 10) / Math.max(points.length, 1) - 2);
  const every = Math.ceil(points.length / 12);
  const parts = [
    `<line class="axis" x1="${L}" y1="${y(0)}" x2="${W - 10}" y2="${y(0)}"/>`,
    `<line class="axis" x1="${L}" y1="${T}" x2="${L}" y2="${H - B}"/>`,
    `<text x="${L - 4}" y="${y(max) + 4}" text-anchor="end">${fmt(max)}</text>`,
    `<text x="${L - 4}" y="${y(min) + 4}" text-anchor="end">${fmt(min)}</text>`,
    `<text x="12" y="${H / 2}" transform="rotate(-90 12 ${H / 2})" text-anchor="middle">${label}</text>`,
    `<text x="${(W + L) / 2}" y="${H - 4}" text-anchor="middle">${xLabel}</text>`,
  ];
  points.forEach((p, i) => {
    if (kind === 'bars') {
      const top = y(Math.max(p.sum, 0)), h = Math.abs(y(p.sum) - y(0));
      parts.push(`<rect class="bar${p.sum < 0 ? ' negative' : ''}" x="${x(i) - bw / 2}" y="${top}" width="${bw}" height="${Math.max(h, 0.5)}"><title>${p.cohort}: ${fmt(p.sum)} (${p.count})</title></rect>`);
    }
    if (i % every === 0) parts.push(`<text x="${x(i)}" y="${H - B + 14}" text-anchor="middle">${p.cohort.slice(kind === 'bars' && p.cohort.includes('T') ? 11 : 5)}</text>`);
  });
  if (kind === 'line') parts.push(`<polyline class="line" points="${points.map((p, i) => `${x(i)},${y(p.sum)}`).join(' ')}"/>`);
  const rows = points.map((p) => `<tr data-cohort="${p.cohort}" data-count="${p.count}" data-sum="${p.sum}" data-records="${p.recordCount}"><td>${p.cohort}</td><td>${p.count}</td><td>${fmt(p.sum)}</td></tr>`).join('');
  el.innerHTML = `<svg viewBox="0 0 ${W} ${H}" role="img" aria-label="${label} by ${xLabel}">${parts.join('')}</svg>
    <details><summary>Numbers</summary><table class="values-table"><tr><th>cohort</th><th>count</th><th>sum</th></tr>${rows}</table></details>`;
}

function render() {
  const timezone = $('timezone').value;
  const day = $('day').value, month = $('month').value, weekMonth = $('weekMonth').value || month;
  try {
    $('hourly-title').textContent = `Hourly, ${day} (${timezone})`;
    chart($('hourly'), tally.getDayByHour(prepared, day, { fillGaps: true, timezone }), { kind: 'bars', label: 'sum', xLabel: 'hour' });
    $('daily-title').textContent = `Daily, ${month} (${timezone})`;
    chart($('daily'), tally.getMonthByDay(prepared, month, { fillGaps: true, timezone }), { kind: 'line', label: 'sum', xLabel: 'day' });
    $('weekly-title').textContent = `Weekly, ISO weeks of ${weekMonth} (${timezone})`;
    chart($('weekly'), tally.getMonthByWeek(prepared, weekMonth, { fillGaps: true, timezone }), { kind: 'bars', label: 'sum', xLabel: 'ISO week' });
    $('top-title').textContent = `Top records by total, ${month} (${timezone})`;
    const top = tally.getTopRecords(prepared, { period: 'month', date: month, sortBy: 'totalValue', limit: 3, timezone });
    $('top').innerHTML = '<tr><th>record</th><th>transactions</th><th>total</th></tr>' +
      top.map((r) => `<tr data-record="${r.recordId}" data-count="${r.count}" data-sum="${r.sum}"><td>${r.recordId}</td><td>${r.count}</td><td>${fmt(r.sum)}</td></tr>`).join('');
    $('status').textContent = '';
  } catch (e) {
    $('status').textContent = `${e.code ?? 'Error'}: ${e.message}`;
  }
  $('status').dataset.timezone = timezone;
  $('status').dataset.ready = 'true';
}

async function load(json) {
  transactions = Array.isArray(json) ? json : json.transactions ?? [];
  const last = transactions.map((t) => t.timestamp).sort().at(-1) ?? new Date().toISOString();
  $('day').value ||= params.get('day') ?? last.slice(0, 10);
  $('month').value ||= params.get('month') ?? last.slice(0, 7);
  $('weekMonth').value ||= params.get('weekMonth') ?? $('month').value;
  $('source').textContent = `${transactions.length} transactions`;
  prepared?.free();
  prepared = null;
  try {
    prepared = tally.prepare(transactions); // read into WebAssembly once; zone changes only recompute
  } catch (e) {
    $('status').textContent = `${e.code ?? 'Error'}: ${e.message}`;
    $('status').dataset.ready = 'true';
    return;
  }
  render();
}

await init();
$('timezone').value = params.get('tz') ?? 'UTC';
for (const id of ['timezone', 'day', 'month', 'weekMonth']) $(id).addEventListener('change', () => { $('status').dataset.ready = 'false'; render(); });
$('file').addEventListener('change', async (e) => {
  const f = e.target.files[0];
  if (f) await load(JSON.parse(await f.text()));
});
const res = await fetch(params.get('data') ?? 'transactions.json');
await load(res.ok ? await res.json() : []);
