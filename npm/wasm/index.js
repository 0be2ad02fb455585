// tally-ec/wasm: Tally's analytics for browsers (and Node), computed by WebAssembly over data
// the page holds. `import init, * as tally from 'tally-ec/wasm'`, `await init()`, then
// `tally.getDayByHour(transactions, '2025-10-09', { timezone: 'Europe/Berlin', fillGaps: true })`.
// The query functions take the plugin's arguments after (resource, field), with the
// transactions first; option objects may also carry `timezone`, `now` and `metrics`.
import initWasm, * as wasm from './pkg/tally_wasm.js';

let ready;

/** Loads the WebAssembly module once. In browsers and bundlers it is fetched next to this
 * file; in Node it is read from disk. Pass `{ module_or_path }` to load it from elsewhere. */
export default function init(input) {
  if (!ready) {
    ready = (async () => {
      if (input === undefined && typeof process !== 'undefined' && process.versions?.node) {
        const { readFile } = await import('node:fs/promises');
        input = { module_or_path: await readFile(new URL('./pkg/tally_wasm_bg.wasm', import.meta.url)) };
      }
      await initWasm(input);
    })();
  }
  return ready;
}

const q = (name) => (transactions, ...args) => wasm.query(name, transactions, args);

export const getAnalytics = q('getAnalytics');
export const getDayByHour = q('getDayByHour');
export const getWeekByDay = q('getWeekByDay');
export const getWeekByHour = q('getWeekByHour');
export const getMonthByDay = q('getMonthByDay');
export const getMonthByHour = q('getMonthByHour');
export const getMonthByWeek = q('getMonthByWeek');
export const getYearByDay = q('getYearByDay');
export const getYearByWeek = q('getYearByWeek');
export const getYearByMonth = q('getYearByMonth');
export const getLastNHours = q('getLastNHours');
export const getLastNDays = q('getLastNDays');
export const getLastNWeeks = q('getLastNWeeks');
export const getLastNMonths = q('getLastNMonths');
export const getLastNPeriods = q('getLastNPeriods');
export const getAnalyticsByTimeRange = q('getAnalyticsByTimeRange');
export const getTopRecords = q('getTopRecords');

/** Points for every cohort of `period` that has transactions (getAnalytics without a range). */
export const aggregate = (transactions, period, options = {}) => wasm.query('getAnalytics', transactions, [{ ...options, period }]);

export const { query, queryFunctions, cohorts, range, fillGaps, rollup, isoWeek, weeksInYear } = wasm;
