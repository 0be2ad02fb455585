// Hand-written types of tally-ec (checked by `npm run typecheck`).
import { EventEmitter } from 'node:events';

/** Stable error codes (SPEC §8). */
export type TallyErrorCode =
  | 'ERR_INVALID_ARGUMENT'
  | 'ERR_INVALID_AMOUNT'
  | 'ERR_UNKNOWN_RESOURCE'
  | 'ERR_UNKNOWN_FIELD'
  | 'ERR_INVALID_PATH'
  | 'ERR_INVALID_DATE'
  | 'ERR_ANALYTICS_DISABLED'
  | 'ERR_IDEMPOTENCY_MISMATCH'
  | 'ERR_RECORD_NOT_FOUND'
  | 'ERR_VALIDATION'
  | 'ERR_CONFLICT'
  | 'ERR_STORAGE'
  | 'ERR_INVALID_CONFIG'
  /** No native addon for this platform (the platform package is missing); tally-ec/wasm works. */
  | 'ERR_NATIVE_UNAVAILABLE';

/** Every error the package throws. */
export class TallyError extends Error {
  constructor(code: TallyErrorCode | string, message: string);
  readonly name: 'TallyError';
  readonly code: TallyErrorCode;
}

/** A stored record: its attributes plus `id`. */
export type StoredRecord = { id: string; [attribute: string]: unknown };

/** s3db.js attribute definitions: `'string|required'`, `'number|default:0'`, `'json'`, nested objects. */
export type Attributes = { [name: string]: string | ({ $$type: 'object' } & Attributes) | Attributes };

export type HookEvent = 'beforeInsert' | 'afterInsert' | 'beforeUpdate' | 'afterUpdate' | 'beforeDelete' | 'afterDelete';

/** `{ idempotencyKey, source, metadata }`, the optional last argument of a mutation. */
export interface MutationOptions {
  idempotencyKey?: string;
  source?: string;
  metadata?: unknown;
}

/** A stored transaction (async-mode mutations resolve to it). */
export interface Transaction {
  id: string;
  originalId: string;
  field: string;
  fieldPath: string;
  value: number;
  operation: 'add' | 'sub' | 'set';
  timestamp: string;
  cohortHour: string;
  cohortDate: string;
  cohortWeek: string;
  cohortMonth: string;
  applied: boolean;
  source?: string;
  idempotencyKey?: string;
  metadata?: unknown;
}

/** How a field's mutations are applied: `sync` at once, `async` by a later consolidation. */
export type Mode = 'sync' | 'async';

/** What a mutation resolves to. Sync mode: the new value (`null` for a missing record).
 * Async mode: the stored transaction. A resource whose mode the types do not know: either. */
export type MutationResult<M extends Mode = Mode> = [M] extends ['sync']
  ? number | null
  : [M] extends ['async']
    ? Transaction
    : number | null | Transaction;

/** Methods the plugin installs on a configured resource; `M` narrows the mutation results. */
export interface EventualConsistencyMethods<M extends Mode = Mode> {
  set(id: string, field: string, value: number, options?: MutationOptions): Promise<MutationResult<M>>;
  set(id: string, value: number, options?: MutationOptions): Promise<MutationResult<M>>;
  add(id: string, field: string, amount: number, options?: MutationOptions): Promise<MutationResult<M>>;
  add(id: string, amount: number, options?: MutationOptions): Promise<MutationResult<M>>;
  sub(id: string, field: string, amount: number, options?: MutationOptions): Promise<MutationResult<M>>;
  sub(id: string, amount: number, options?: MutationOptions): Promise<MutationResult<M>>;
  increment(id: string, field?: string, options?: MutationOptions): Promise<MutationResult<M>>;
  increment(id: string, options?: MutationOptions): Promise<MutationResult<M>>;
  decrement(id: string, field?: string, options?: MutationOptions): Promise<MutationResult<M>>;
  decrement(id: string, options?: MutationOptions): Promise<MutationResult<M>>;
  /** Applies the record's pending transactions now; the value, or `null` for a record that
   * does not exist (yet). */
  consolidate(id: string, field?: string): Promise<number | null>;
  getConsolidatedValue(id: string, field?: string, options?: object): Promise<number | null>;
  /** Rebuilds the value from the record's history and writes it; `null` for a missing record. */
  recalculate(id: string, field?: string): Promise<number | null>;
}

export interface ListOptions {
  limit?: number;
  offset?: number;
}

export class Resource<M extends Mode = Mode> implements Partial<EventualConsistencyMethods<M>> {
  readonly name: string;
  attributes: Attributes;
  readonly database: S3db;
  addHook(event: HookEvent, fn: (data: any) => unknown): void;
  insert(data: Record<string, unknown>): Promise<StoredRecord>;
  get(id: string): Promise<StoredRecord>;
  exists(id: string): Promise<boolean>;
  update(id: string, changes: Record<string, unknown>): Promise<StoredRecord>;
  patch(id: string, changes: Record<string, unknown>): Promise<StoredRecord>;
  delete(id: string): Promise<void>;
  list(options?: ListOptions): Promise<StoredRecord[]>;
  listIds(): Promise<string[]>;
  count(): Promise<number>;
  getMany(ids: string[]): Promise<StoredRecord[]>;
  set?: EventualConsistencyMethods<M>['set'];
  add?: EventualConsistencyMethods<M>['add'];
  sub?: EventualConsistencyMethods<M>['sub'];
  increment?: EventualConsistencyMethods<M>['increment'];
  decrement?: EventualConsistencyMethods<M>['decrement'];
  consolidate?: EventualConsistencyMethods<M>['consolidate'];
  getConsolidatedValue?: EventualConsistencyMethods<M>['getConsolidatedValue'];
  recalculate?: EventualConsistencyMethods<M>['recalculate'];
}

/** A resource with the plugin's methods installed. */
export type ConsistentResource<M extends Mode = Mode> = Resource<M> & EventualConsistencyMethods<M>;

/** Any resource (such as an s3db.js one) with the plugin's methods narrowed to mode `M`:
 * `const wallets = resource as WithMode<typeof resource, 'sync'>`. */
export type WithMode<R, M extends Mode> = Omit<R, keyof EventualConsistencyMethods> & EventualConsistencyMethods<M>;

export interface S3dbOptions {
  /** `memory://bucket/prefix`, `file:///abs/path` (default: `./.tally-data`), `s3://…`, `http(s)://…`. */
  connectionString?: string;
  plugins?: EventualConsistencyPlugin[];
}

export interface Plugin {
  install(db: S3db): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** The parts of an s3db.js `Database` the plugin uses (it is installed with `db.usePlugin`). */
export interface HostDatabase {
  client: unknown;
  resources: Record<string, unknown>;
  createResource(config: object): Promise<unknown>;
  addHook(event: string, fn: (payload: any) => unknown): unknown;
  emit(event: string, payload: unknown): unknown;
}

/** One field's switch-over from 21.6.2: transactions carried over now, ones carried before,
 * and the records consolidated. */
export interface CarriedOver {
  resource: string;
  field: string;
  carried: number;
  skipped: number;
  records: string[];
}

/** Tally's own s3db.js-compatible database. */
export class S3db extends EventEmitter {
  constructor(options?: S3dbOptions);
  /** The connection string with its password and credential parameters masked as `***`
   * (also in `util.inspect` and `JSON.stringify`); the real one is never exposed. */
  readonly connectionString: string;
  resources: Record<string, Resource>;
  plugins: Record<string, Plugin>;
  connect(): Promise<this>;
  isConnected(): boolean;
  /** Creates a resource, or attaches to the stored one of that name. Name the mode of its
   * fields to narrow mutation results: `db.createResource<'sync'>({ ... })`. */
  createResource<M extends Mode = Mode>(config: { name: string; attributes?: Attributes; [option: string]: unknown }): Promise<ConsistentResource<M>>;
  resource(name: string): Promise<Resource>;
  listResources(): Promise<{ name: string }[]>;
  usePlugin<P extends Plugin>(plugin: P, name?: string | null): Promise<P>;
  uninstallPlugin(name: string): Promise<void>;
  disconnect(): Promise<void>;
}
export { S3db as Database };

export type Reducer = (current: number, transaction: Transaction) => number;

export interface FieldOptions {
  field: string;
  fieldPath?: string;
  initialValue?: number;
  reducer?: Reducer;
}

export type ResourcesOption =
  | Record<string, (string | FieldOptions)[]>
  | { resource: string; fields?: (string | FieldOptions)[]; field?: string; mode?: 'sync' | 'async' }[]
  | { resource: string; field?: string; fields?: (string | FieldOptions)[]; mode?: 'sync' | 'async' };

/** A pino logger, or anything with its methods. A logger with `child` (or `levels`) is
 * called pino's way, `info(obj, msg)`; any other (such as `console`) as `info(msg, obj)`. */
export interface Logger {
  info(...args: unknown[]): void;
  warn(...args: unknown[]): void;
  debug(...args: unknown[]): void;
  error(...args: unknown[]): void;
  child?(bindings: Record<string, unknown>): Logger;
}

export type Period = 'hour' | 'day' | 'week' | 'month';

export interface EventualConsistencyOptions {
  resources?: ResourcesOption;
  resource?: string;
  field?: string;
  consolidation?: {
    mode?: 'sync' | 'async';
    auto?: boolean;
    interval?: number;
    window?: number;
    concurrency?: number;
    markAppliedConcurrency?: number;
  };
  analytics?: { enabled?: boolean; periods?: Period[]; metrics?: ('count' | 'sum' | 'avg' | 'min' | 'max')[] };
  locks?: { timeout?: number };
  garbageCollection?: { enabled?: boolean; interval?: number; retention?: number };
  checkpoints?: { enabled?: boolean; strategy?: 'hourly' | 'daily'; retention?: number };
  cohort?: { timezone?: string };
  /** Epoch milliseconds for timestamps, cohorts and "last N" queries (default `Date.now`). */
  clock?: () => number;
  /** One info log object per consolidation run (default true). */
  verbose?: boolean;
  /** Log at debug level. */
  debug?: boolean;
  /** The log level of the plugin's logger (pino's levels; default `info`). */
  logLevel?: 'trace' | 'debug' | 'info' | 'warn' | 'error' | 'fatal' | 'silent';
  /** Where logs go: default a child of the s3db.js database's logger, else pino on stderr. */
  logger?: Logger;
  // The flat 21.6.2 names.
  mode?: 'sync' | 'async';
  autoConsolidate?: boolean;
  consolidationInterval?: number;
  consolidationWindow?: number;
  enableAnalytics?: boolean;
  transactionRetention?: number;
  gcInterval?: number;
}

export interface ConsolidationRun {
  resource: string;
  field: string;
  success: boolean;
  recordsProcessed: number;
  transactionsApplied: number;
  errorCount: number;
}

export interface PluginStatus {
  name: 'EventualConsistencyPlugin';
  version: string;
  mode: 'sync' | 'async';
  autoConsolidate: boolean;
  consolidationInterval: number;
  enableAnalytics: boolean;
  timezone: string;
  handlers: Record<string, string[]>;
  pending: Record<string, number>;
  /** Per "<resource>.<field>": transactions set aside as dead letters. */
  deadLetters: Record<string, number>;
  runs: {
    consolidations: number;
    lastRunAt: string | null;
    recordsConsolidated: number;
    transactionsApplied: number;
    errors: number;
    /** Consolidated values s3db.js's own rules refused (each also a `consolidation-error`). */
    hostRefusals: number;
    gcRuns: number;
  };
}

/** A transaction that could not be applied (a sum beyond the exact decimal range, a reducer
 *  that threw or returned a non-number), set aside so that the record's later transactions
 *  still apply. */
export interface DeadLetter {
  /** The pending key name it had; pass it to `retryDeadLetter` or `discardDeadLetter`. */
  name: string;
  recordId: string;
  transaction: Transaction;
  error: { code: string; message: string };
  /** The batch that set it aside. */
  batch: string | null;
  /** Epoch milliseconds. */
  at: number;
}

export interface CohortStat {
  cohort: string;
  pending: number;
  applied: number;
  total: number;
}

/** One record's pending transactions of a field (`getPendingSummary`). */
export interface PendingSummary {
  recordId: string;
  count: number;
  /** ISO 8601 timestamp of the oldest. */
  oldest: string;
}

/** One field of a record as `inspect` shows it. */
export interface InspectedField {
  field: string;
  /** The stored value (`null` when the record does not exist). */
  value: unknown;
  pending: { count: number; oldest: string | null };
  /** Batches consolidated into this incarnation of the record. */
  batches: number;
  /** ISO 8601 time of the last consolidation, when known. */
  lastConsolidatedAt: string | null;
  deadLetters: DeadLetter[];
  /** Who holds the field's background-pass lease, if anyone. */
  lease: { owner: string; expiresAt: string } | null;
  /** Inside s3db.js: the value in s3db.js's own copy of the record. */
  hostValue?: unknown;
  /** Inside s3db.js: whether that copy holds Tally's value (it lags, or refused the value). */
  inSync?: boolean;
}

/** Everything known of one record (`inspect`). */
export interface Inspection {
  resource: string;
  id: string;
  /** `waiting`: transactions pending for a record that does not exist yet. */
  state: 'live' | 'deleted' | 'waiting' | 'unknown';
  data: Record<string, unknown> | null;
  /** Inside s3db.js: s3db.js's own copy of the record. */
  host?: Record<string, unknown> | null;
  fields: InspectedField[];
}

/** One thing `verify` found wrong with a record's history. */
export interface VerifyProblem {
  id: string;
  kind:
    | 'journal-changed'
    | 'journal-removed'
    | 'journal-reordered'
    | 'journal-unreadable'
    | 'journal-inconsistent'
    | 'checkpoint-mismatch'
    | 'value-mismatch'
    | 'host-mismatch'
    | 'bookkeeping-changed'
    | 'record-missing';
  /** The journal or checkpoint concerned. */
  key: string | null;
  message: string;
}

/** The audit of one field's history (`verify`). */
export interface VerifyReport {
  resource: string;
  field: string;
  records: number;
  /** Journals read. */
  journals: number;
  /** Links checked by hash. */
  chained: number;
  /** Links from journals written before chaining (replayed, not hash-checked). */
  unchained: number;
  /** Empty when the history explains every stored value. */
  problems: VerifyProblem[];
  /** What does not fail the audit: a hash-less link after a chained one (a rolling upgrade). */
  warnings: { id: string; kind: 'chain-downgraded'; key: string | null; message: string }[];
  /** Per record, its last batch and that journal's SHA-256. */
  heads: Record<string, { seq: number; hash: string | null }>;
  /** SHA-256 over every head: keep it elsewhere to notice a later rewrite of a whole chain. */
  digest: string;
}

export interface StartedEvent { resource: string; field: string; cohort: { timezone: string } }
export interface StoppedEvent { resource: string; field: string }
export interface ConsolidatedEvent {
  resource: string;
  field: string;
  recordCount: number;
  successCount: number;
  errorCount: number;
  duration: number;
}
export interface ConsolidationErrorEvent { error: TallyError; resource?: string; field?: string; recordId?: string | null }
export interface GcCompletedEvent { resource: string; field: string; deletedCount: number; errorCount: number }
export interface GcErrorEvent { error: TallyError }

export interface EventualConsistencyEvents {
  'plg:eventual-consistency:started': [StartedEvent];
  'plg:eventual-consistency:stopped': [StoppedEvent];
  'plg:eventual-consistency:consolidated': [ConsolidatedEvent];
  'plg:eventual-consistency:consolidation-error': [ConsolidationErrorEvent];
  'plg:eventual-consistency:gc-completed': [GcCompletedEvent];
  'plg:eventual-consistency:gc-error': [GcErrorEvent];
}

/** A plain snapshot of the metrics (`metrics()`). */
export interface MetricsSnapshot {
  /** Requests Tally sent to its store, by kind, and what became of them. */
  requests: { get: number; put: number; list: number; delete: number; deleteMany: number; conflicts: number; failures: number; retries: number };
  consolidation: {
    runs: number;
    errors: number;
    recordsConsolidated: number;
    transactionsApplied: number;
    hostRefusals: number;
    gcRuns: number;
    /** Cumulative buckets: `count` runs took at most `le` ms. */
    latencyMs: { count: number; sumMs: number; buckets: { le: number; count: number }[] };
  };
  fields: { resource: string; field: string; pending: number; deadLetters: number; lastSuccessAt: string | null; lastSuccessMs: number | null }[];
}

/** What `registerMetrics` needs of a prom-client Registry. */
export interface MetricsRegistry {
  registerMetric(metric: unknown): void;
}

export class EventualConsistencyPlugin extends EventEmitter<EventualConsistencyEvents> implements Plugin {
  constructor(options?: EventualConsistencyOptions);
  /** The content type of `metrics('prometheus')`. */
  static readonly PROMETHEUS_CONTENT_TYPE: string;
  readonly name: 'EventualConsistencyPlugin';
  instanceName: string;
  /** The normalized configuration (nested form). */
  readonly config: {
    resources: Record<string, { field: string; fieldPath: string; initialValue: number; reducer: boolean }[]>;
    consolidation: { mode: 'sync' | 'async'; auto: boolean; interval: number; window: number; concurrency: number; markAppliedConcurrency: number };
    analytics: { enabled: boolean; periods: Period[]; metrics: string[] };
    locks: { timeout: number };
    garbageCollection: { enabled: boolean; interval: number; retention: number };
    checkpoints: { enabled: boolean; strategy: 'hourly' | 'daily'; retention: number };
    cohort: { timezone: string };
    verbose: boolean;
    debug: boolean;
  };
  /** The plugin's logger: pino inside s3db.js and by default (the `logger` option may be any
   * object with pino's methods). */
  logger: import('pino').Logger;
  /** Tally's S3db, or the s3db.js Database it was installed on. */
  database: S3db | HostDatabase | null;
  /** What installing on an s3db.js database carried over from 21.6.2's transaction resources. */
  carriedOver?: CarriedOver[];
  setInstanceName(name: string): void;
  /** Installs on Tally's own S3db or on an s3db.js 21.6.2 Database (`db.usePlugin` calls it). */
  install(db: object): Promise<void>;
  start(): Promise<void>;
  stop(): Promise<void>;
  uninstall(): Promise<void>;
  consolidateAll(): Promise<Map<string, ConsolidationRun>>;
  runGC(): Promise<void>;
  getStatus(): Promise<PluginStatus>;
  getCohortStats(resource: string, field: string): Promise<CohortStat[]>;
  /** The pending transactions of a field by record, oldest first. */
  getPendingSummary(resource: string, field: string): Promise<PendingSummary[]>;
  /** Everything known of one record: value, pending, last consolidation, dead letters, lease. */
  inspect(resource: string, id: string): Promise<Inspection>;
  /** Audits a field's history: hash chain, replay, stored values. */
  verify(resource: string, field: string): Promise<VerifyReport>;
  /** The metrics as a plain snapshot. */
  metrics(format?: 'json'): Promise<MetricsSnapshot>;
  /** The metrics as Prometheus text exposition. */
  metrics(format: 'prometheus'): Promise<string>;
  /** Registers the metric families in a prom-client Registry; returns their names. */
  registerMetrics(registry: MetricsRegistry): string[];
  getDeadLetters(resource: string, field: string): Promise<DeadLetter[]>;
  retryDeadLetter(resource: string, field: string, recordId: string, name: string): Promise<Transaction>;
  discardDeadLetter(resource: string, field: string, recordId: string, name: string): Promise<void>;
  getConsolidatedValue(resource: string, field: string, id: string, options?: object): Promise<number | null>;
  recalculateRecord(resource: string, field: string, id: string): Promise<number | null>;
  consolidate(resource: string, field: string, id: string): Promise<number | null>;
  getAnalytics(resource: string, field: string, options?: AnalyticsOptions & {
    period?: Period; date?: string; startDate?: string; endDate?: string; month?: string; year?: number | string;
  }): Promise<AnalyticsPoint[]>;
  getDayByHour(resource: string, field: string, date: string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getWeekByDay(resource: string, field: string, week: string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getWeekByHour(resource: string, field: string, week: string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getMonthByDay(resource: string, field: string, month: string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getMonthByHour(resource: string, field: string, month: string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getMonthByWeek(resource: string, field: string, month: string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getYearByDay(resource: string, field: string, year: number | string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getYearByWeek(resource: string, field: string, year: number | string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getYearByMonth(resource: string, field: string, year: number | string, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getLastNHours(resource: string, field: string, n?: number, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getLastNDays(resource: string, field: string, n?: number, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getLastNWeeks(resource: string, field: string, n?: number, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getLastNMonths(resource: string, field: string, n?: number, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getLastNPeriods(resource: string, field: string, period: Period, n: number, options?: AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getAnalyticsByTimeRange(resource: string, field: string, period: Period, range: { start: string; end: string } & AnalyticsOptions): Promise<AnalyticsPoint[]>;
  getTopRecords(resource: string, field: string, options?: {
    period?: Period; date?: string; cohort?: string; limit?: number;
    sortBy?: 'transactionCount' | 'totalValue'; metric?: 'transactionCount' | 'totalValue';
  }): Promise<{ recordId: string; count: number; sum: number }[]>;
  getRawEvents(resource: string, field: string, options?: {
    recordId?: string; applied?: boolean; operation?: 'add' | 'sub' | 'set'; startDate?: string; endDate?: string; limit?: number;
  }): Promise<Transaction[]>;
  fillGaps(data: AnalyticsPoint[], period: Period, start: string, end: string): AnalyticsPoint[];
}

/** Options of every analytics query. */
export interface AnalyticsOptions {
  fillGaps?: boolean;
  includePending?: boolean;
  recordId?: string;
  breakdown?: 'operations';
}

/** A chart-ready point (`avg`, `min`, `max` only when listed in `analytics.metrics`). */
export interface AnalyticsPoint {
  cohort: string;
  count: number;
  sum: number;
  avg?: number;
  min?: number;
  max?: number;
  recordCount: number;
  operations: Partial<Record<'add' | 'sub' | 'set', { count: number; sum: number }>>;
}

declare const _default: {
  S3db: typeof S3db;
  Database: typeof S3db;
  Resource: typeof Resource;
  EventualConsistencyPlugin: typeof EventualConsistencyPlugin;
  TallyError: typeof TallyError;
};
export default _default;

// Inside an s3db.js Database the plugin adds its methods to the configured resources: typed
// on s3db.js's own `Resource` (a no-op where s3db.js is not installed).
declare module 's3db.js/lite' {
  interface Resource extends EventualConsistencyMethods {}
}
declare module 's3db.js' {
  interface Resource extends EventualConsistencyMethods {}
}
