// Types of tally-ec/wasm: the analytics of SPEC §6 over transactions a page holds.
import type { AnalyticsOptions, AnalyticsPoint, Period, Transaction } from '../index.js';

/** The environment a browser query runs in; these keys may ride in any options object. */
export interface WasmEnv {
  /** IANA zone of the cohorts (default `'UTC'`). */
  timezone?: string;
  /** "Now" for the last-N functions: epoch ms or ISO timestamp (default `Date.now()`). */
  now?: number | string;
  /** Metrics reported (default `['count','sum','avg','min','max']`). */
  metrics?: ('count' | 'sum' | 'avg' | 'min' | 'max')[];
}

/** A transaction as the WASM functions read it (the SPEC §4 shape; extra keys are ignored). */
export type WasmTransaction = Pick<Transaction, 'originalId'> &
  Partial<Pick<Transaction, 'applied'>> & {
    value: number | string;
    timestamp: string | number;
    /** `'add'`, `'sub'` or `'set'` (a plain string, so untyped JSON and object literals fit;
     * anything else is refused when read). */
    operation?: Transaction['operation'] | (string & {});
  };

type Opts = AnalyticsOptions & WasmEnv;

/** Transactions read into WebAssembly memory by `prepare()`, for many queries. */
export class Transactions {
  private constructor();
  /** How many transactions are held. */
  readonly length: number;
  /** Runs a query function by name, with the plugin's arguments after (resource, field). */
  query(fn: string, args: unknown[]): unknown;
  /** Releases the WebAssembly memory now (it is also released when garbage-collected). */
  free(): void;
}

/** The transactions every query function takes: an array, or a prepared set. */
type Txs = readonly WasmTransaction[] | Transactions;

/** Reads transactions into WebAssembly memory once: queries on the result do not read them
 * again (a dashboard's time-zone change only recomputes). Throws like the query functions on
 * a malformed transaction. */
export function prepare(transactions: readonly WasmTransaction[] | Transactions): Transactions;

/** Transactions as columns, for {@link prepareColumns}. */
export interface TransactionColumns {
  /** The distinct record ids. */
  recordIds: readonly string[];
  /** Each transaction's index into `recordIds`. */
  records: Uint32Array;
  /** Each transaction's time, in epoch milliseconds. */
  timestamps: Float64Array;
  /** Each transaction's operation: 0 add, 1 sub, 2 set. */
  operations: Uint8Array;
  /** Each transaction's amount (unsigned for sub, as stored). */
  values: Float64Array;
  /** 1 where the transaction is applied, 0 where it is pending; all applied when left out. */
  applied?: Uint8Array;
}

/** Reads transactions given as typed-array columns, the fastest way in (no object per
 * transaction). Throws an Error with code `ERR_INVALID_ARGUMENT` on columns of the wrong type
 * or length, a NaN, an operation other than 0–2 or a record index out of range. */
export function prepareColumns(columns: TransactionColumns): Transactions;

/** Loads the WebAssembly module (fetched next to this file in browsers, read from disk in Node). */
export default function init(input?: { module_or_path: BufferSource | URL | string | Request | Response }): Promise<void>;

export function getAnalytics(transactions: Txs, options: { period?: Period; date?: string; startDate?: string; endDate?: string; month?: string; year?: number | string; breakdown?: 'operations' } & Opts): AnalyticsPoint[];
export function getDayByHour(transactions: Txs, date: string, options?: Opts): AnalyticsPoint[];
export function getWeekByDay(transactions: Txs, week: string, options?: Opts): AnalyticsPoint[];
export function getWeekByHour(transactions: Txs, week: string, options?: Opts): AnalyticsPoint[];
export function getMonthByDay(transactions: Txs, month: string, options?: Opts): AnalyticsPoint[];
export function getMonthByHour(transactions: Txs, month: string, options?: Opts): AnalyticsPoint[];
export function getMonthByWeek(transactions: Txs, month: string, options?: Opts): AnalyticsPoint[];
export function getYearByDay(transactions: Txs, year: number | string, options?: Opts): AnalyticsPoint[];
export function getYearByWeek(transactions: Txs, year: number | string, options?: Opts): AnalyticsPoint[];
export function getYearByMonth(transactions: Txs, year: number | string, options?: Opts): AnalyticsPoint[];
export function getLastNHours(transactions: Txs, n?: number, options?: Opts): AnalyticsPoint[];
export function getLastNDays(transactions: Txs, n?: number, options?: Opts): AnalyticsPoint[];
export function getLastNWeeks(transactions: Txs, n?: number, options?: Opts): AnalyticsPoint[];
export function getLastNMonths(transactions: Txs, n?: number, options?: Opts): AnalyticsPoint[];
export function getLastNPeriods(transactions: Txs, period: Period, n: number, options?: Opts): AnalyticsPoint[];
export function getAnalyticsByTimeRange(transactions: Txs, period: Period, range: { start: string; end: string } & Opts): AnalyticsPoint[];
export function getTopRecords(transactions: Txs, options?: {
  period?: Period; date?: string; cohort?: string; limit?: number;
  sortBy?: 'transactionCount' | 'totalValue'; metric?: 'transactionCount' | 'totalValue';
} & WasmEnv): { recordId: string; count: number; sum: number }[];
/** Points for every cohort of `period` that has transactions. */
export function aggregate(transactions: Txs, period: Period, options?: Opts): AnalyticsPoint[];
/** Any query function by name, with the plugin's arguments after (resource, field). */
export function query(fn: string, transactions: Txs, args: unknown[]): unknown;
export function queryFunctions(): string[];
export function cohorts(timestamp: number | string, timezone?: string): { cohortHour: string; cohortDate: string; cohortWeek: string; cohortMonth: string };
export function range(period: Period, start: string, end: string, timezone?: string): string[];
export function fillGaps(points: AnalyticsPoint[], period: Period, start: string, end: string, options?: WasmEnv): AnalyticsPoint[];
/** Hours into days, weeks or months; days into weeks or months. `recordCount` becomes a lower bound. */
export function rollup(points: AnalyticsPoint[], period: Period, options?: WasmEnv): AnalyticsPoint[];
export function isoWeek(date: string): string;
export function weeksInYear(year: number): number;
