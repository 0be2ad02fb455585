// The dashboard's chart: uPlot over one metric of a list of points, bars for hours and weeks,
// a line with points for days and months; ticks, gridlines, a crosshair, a legend and a
// tooltip. Everything shown is text (textContent), never markup.
import uPlot from './vendor/uPlot.esm.js';

const METRIC_NAMES = { sum: 'sum', count: 'transactions', avg: 'average', min: 'minimum', max: 'maximum', recordCount: 'records' };

/** A number as the page shows it: at most two decimals, grouped. */
export function fmt(n) {
  if (n === null || n === undefined || Number.isNaN(n)) return '–';
  return (Math.round(n * 100) / 100).toLocaleString('en-US');
}

/** The label a cohort gets under the x axis: the hour of an hourly label, a day without
 * its year on a narrow chart, else the label. */
function tick(cohort, narrow) {
  if (/T\d\d$/.test(cohort)) return `${cohort.slice(11)}h`;
  return narrow && /^\d{4}-\d{2}-\d{2}$/.test(cohort) ? cohort.slice(5) : cohort;
}

let current = null;

/** Draws `points` (`metric` of each) into `el`; the tooltip element follows the cursor. With
 * `applied` (the pending overlay), `points` include pending transactions and are drawn dashed
 * over the applied ones. */
export function drawChart(el, tooltip, points, metric, { bars, applied = null }) {
  if (current) {
    current.destroy();
    current = null;
  }
  el.replaceChildren();
  el.dataset.points = '0';
  el.dataset.series = '[]';
  if (points.length === 0) return;
  const xs = points.map((_, i) => i);
  const of = (list) => list.map((p) => (typeof p[metric] === 'number' ? p[metric] : null));
  const ys = of(points);
  const width = Math.max(280, el.clientWidth || 600);
  const label = METRIC_NAMES[metric] ?? metric;
  const opts = {
    width,
    height: width < 480 ? 220 : 300,
    cursor: { points: { size: 8 }, drag: { x: false, y: false } },
    scales: { x: { time: false, range: [-0.5, points.length - 0.5] } },
    axes: [
      {
        grid: { show: false },
        splits: () => xs.filter((i) => i % Math.max(1, Math.ceil(points.length / (width < 480 ? 4 : 12))) === 0),
        values: (_u, splits) => splits.map((i) => (points[i] ? tick(points[i].cohort, width < 480) : '')),
      },
      { grid: { show: true, stroke: '#eef0f3' }, values: (_u, splits) => splits.map(fmt), size: 60 },
    ],
    series: [
      { label: 'cohort', value: (_u, i) => (i === null || !points[i] ? '–' : points[i].cohort) },
      {
        label,
        stroke: '#2f6fd0',
        fill: bars ? 'rgba(47,111,208,0.35)' : 'rgba(47,111,208,0.08)',
        width: bars ? 1 : 2,
        paths: bars ? uPlot.paths.bars({ size: [0.7, 40] }) : undefined,
        points: { show: !bars, size: 5 },
        value: (_u, v) => fmt(v),
      },
      ...(applied
        ? [{ label: `${label} with pending`, stroke: '#c06a00', dash: [6, 4], width: 2, points: { show: false }, value: (_u, v) => fmt(v) }]
        : []),
    ],
    hooks: {
      setCursor: [
        (u) => {
          const i = u.cursor.idx;
          if (i === null || i === undefined || !points[i]) {
            tooltip.hidden = true;
            return;
          }
          const p = points[i];
          tooltip.textContent = `${p.cohort} · ${label} ${fmt(p[metric])} · ${p.count} transactions · ${p.recordCount} records`;
          tooltip.hidden = false;
          const left = Math.min(u.cursor.left + u.over.offsetLeft + 12, el.clientWidth - tooltip.offsetWidth);
          tooltip.style.left = `${Math.max(0, left)}px`;
          tooltip.style.top = `${u.over.offsetTop + 8}px`;
        },
      ],
    },
  };
  // With the overlay the first series is the applied one, the second includes pending.
  const data = applied ? [xs, of(applied), ys] : [xs, ys];
  current = new uPlot(opts, data, el);
  el.dataset.points = String(points.length);
  el.dataset.metric = metric;
  el.dataset.series = JSON.stringify(ys);
  el.dataset.applied = applied ? JSON.stringify(of(applied)) : '';
}

/** Resizes the chart to its container (the page calls it on window resize). */
export function resizeChart(el) {
  if (current) current.setSize({ width: Math.max(280, el.clientWidth), height: el.clientWidth < 480 ? 220 : 300 });
}
