'use strict';
// EventualConsistencyPlugin: the s3db.js plugin surface (EventEmitter, install/start/stop,
// resource methods, timers) over the native engine. Argument rules live in the core.
const { EventEmitter } = require('node:events');
const native = require('./native.cjs');
const { TallyError, wrap, wrapSync } = require('./errors.cjs');
const { tag } = require('./args.cjs');
const adapter = require('./s3db/adapter.cjs');
const { carryOver } = require('./s3db/carry-over.cjs');
const hooks = require('./s3db/hooks.cjs');
const logging = require('./logging.cjs');
const metrics = require('./metrics.cjs');

/** How long a plugin named by `usePlugin` may stay uninstalled before it warns. */
const INSTALL_WATCH_MS = 1000;

/** The resource methods, from the addon (read once, when the first plugin installs). */
let resourceMethods;
const RESOURCE_METHODS = () => (resourceMethods ??= native.resourceMethods());
/**
 * The query functions, known when this file loads (methods are defined on the prototype before
 * the addon is loaded); `golden.test.mjs` requires the same list as the addon's and the wasm's.
 */
const QUERY_FUNCTIONS = [
  'getAnalytics', 'getDayByHour', 'getWeekByDay', 'getWeekByHour', 'getMonthByDay', 'getMonthByHour',
  'getMonthByWeek', 'getYearByDay', 'getYearByWeek', 'getYearByMonth', 'getLastNHours', 'getLastNDays',
  'getLastNWeeks', 'getLastNMonths', 'getLastNPeriods', 'getAnalyticsByTimeRange', 'getTopRecords', 'getRawEvents',
];
const MAX_TIMER_MS = 2 ** 31 - 1;
const CONSOLIDATED = 'plg:eventual-consistency:consolidated';

/** Replaces functions in the options by `{ $function: n }`; returns the JSON and the functions. */
function splitFunctions(options) {
  const functions = [];
  const walk = (v, key) => {
    if (typeof v === 'function') {
      functions.push(v);
      return { $function: functions.length - 1 };
    }
    if (Array.isArray(v)) return v.map((x) => walk(x, key));
    if (v && typeof v === 'object') {
      const out = {};
      for (const [k, x] of Object.entries(v)) {
        if (x !== undefined) out[k] = walk(x, k);
      }
      return out;
    }
    return v;
  };
  const { clock, logger, ...rest } = options;
  return { json: walk(rest), functions, clock, logger };
}

/** Runs `work` for each item, one after another. */
async function eachInTurn(items, work) {
  for (const item of items) await work(item);
}

class EventualConsistencyPlugin extends EventEmitter {
  constructor(options = {}) {
    super();
    if (options === null || typeof options !== 'object' || Array.isArray(options)) {
      throw new TallyError('ERR_INVALID_CONFIG', 'EventualConsistencyPlugin: options must be an object');
    }
    const { json, functions, clock, logger } = splitFunctions(options);
    if (clock !== undefined && typeof clock !== 'function') {
      throw new TallyError('ERR_INVALID_CONFIG', 'EventualConsistencyPlugin: clock must be a function returning epoch milliseconds');
    }
    this._native = wrapSync(() => new native.NativePlugin(json, clock !== undefined));
    this._clock = clock;
    this.config = this._native.config();
    this._givenLogger = logger;
    this._logOptions = { logLevel: options.logLevel, debug: options.debug };
    this.logger = logger ?? logging.ownLogger(this._logOptions);
    this.name = 'EventualConsistencyPlugin';
    this.instanceName = 'eventualconsistency';
    this.database = null;
    this._timers = [];
    this._inflight = new Set();
    this._running = new Set();
    this._started = false;
    this._resources = new Set(Object.keys(this.config.resources));
    functions.forEach((fn, id) => {
      this._native.setReducer(id, (payload) => {
        let current = payload.start;
        for (const tx of payload.transactions) current = fn(current, tx);
        if (typeof current !== 'number' || !Number.isFinite(current)) {
          throw new TypeError(`reducer returned ${String(current)} instead of a finite number`);
        }
        return current;
      });
    });
    this._received = 0;
    this._native.onEvent((event) => {
      this._received += 1;
      this._dispatch(event.name, event.payload);
    });
  }

  setInstanceName(name) {
    this.instanceName = name;
    this.slug = `eventual-consistency--${name}`;
    // `usePlugin` names a plugin first; s3db.js installs it right after only when connected.
    // One that stays uninstalled says so, instead of leaving resources without methods.
    if (!this.database && !this._installWatch) {
      this._installWatch = setTimeout(() => {
        if (this.database) return;
        logging.log(
          this.logger,
          'warn',
          { plugin: name },
          'EventualConsistencyPlugin was added with usePlugin() but is not installed: s3db.js installs plugins added before connect() only from new Database({ plugins }); call db.usePlugin(plugin) after db.connect()',
        );
      }, INSTALL_WATCH_MS);
      this._installWatch.unref();
    }
  }

  _dispatch(name, payload) {
    if (payload && payload.error && typeof payload.error === 'object' && !(payload.error instanceof Error)) {
      payload = { ...payload, error: new TallyError(payload.error.code, payload.error.message) };
    }
    this._log(name, payload);
    // The documented payload (SPEC §5); the applied count is for the log line only.
    if (name === CONSOLIDATED && payload && 'transactionsApplied' in payload) {
      const { transactionsApplied: _applied, ...documented } = payload;
      payload = documented;
    }
    this.emit(name, payload);
    const db = this.database;
    if (db && typeof db.emit === 'function') {
      db.emit(name, payload);
      if (name === CONSOLIDATED) db.emit('plg:eventual-consistency:consolidation-completed', payload);
    }
  }

  _now() {
    if (this._clock) this._native.setNow(Number(this._clock()));
  }

  _track(promise) {
    // Events the native work emitted travel on their own channel, which never keeps the
    // process alive. Settling only once every event emitted so far was delivered (a few
    // event-loop turns at most) means a caller awaiting an event after
    // `await plugin.consolidateAll()` cannot find the loop drained.
    const turn = (settle) => (x) =>
      new Promise((ok, no) => {
        let turns = 0;
        const check = () => {
          if (this._received >= this._native.eventsEmitted() || ++turns > 1000) (settle ? ok : no)(x);
          else setImmediate(check);
        };
        setImmediate(check);
      });
    const p = wrap(promise).then(turn(true), turn(false));
    this._inflight.add(p);
    const done = () => this._inflight.delete(p);
    p.then(done, done);
    return p;
  }

  _call(resource, method, args) {
    this._now();
    return this._track(this._native.call(resource, method, args.map(tag)));
  }

  /** One log object per consolidation run (info with `verbose`, else debug), GC runs at
   * debug; errors and dead letters at error level. Messages carry codes and ids, never
   * connection strings. */
  _log(name, payload) {
    if (!payload) return;
    const where = { resource: payload.resource, field: payload.field };
    // pino filters debug lines itself; a logger that does not (console) gets them when asked.
    const debugs = logging.debugs(this.logger, this._logOptions);
    if (name === CONSOLIDATED) {
      const level = this.config.verbose ? 'info' : 'debug';
      if (level === 'debug' && !debugs) return;
      logging.log(
        this.logger,
        level,
        { ...where, records: payload.recordCount, consolidated: payload.successCount, applied: payload.transactionsApplied, errors: payload.errorCount, ms: payload.duration },
        `consolidated ${payload.resource}.${payload.field}`,
      );
    } else if (name === 'plg:eventual-consistency:gc-completed') {
      if (!debugs) return;
      logging.log(this.logger, 'debug', { ...where, deleted: payload.deletedCount, errors: payload.errorCount }, `garbage collected ${payload.resource}.${payload.field}`);
    } else if (name === 'plg:eventual-consistency:consolidation-error' || name === 'plg:eventual-consistency:gc-error') {
      const e = payload.error ?? {};
      const what = name.endsWith('gc-error') ? 'garbage collection failed' : 'consolidation failed';
      const deadLetter = /dead letter/.test(e.message ?? '');
      logging.log(
        this.logger,
        'error',
        { ...where, recordId: payload.recordId ?? undefined, code: e.code, error: e.message, deadLetter },
        deadLetter ? `transaction set aside as a dead letter` : what,
      );
    }
  }

  /** Installs the plugin on a database (`db.usePlugin(plugin)` calls this): Tally's own
   * S3db, or an s3db.js Database (records through its resource API, Tally's data beside it). */
  async install(database) {
    clearTimeout(this._installWatch);
    if (this.database === database) return;
    if (!this._givenLogger) {
      const inherited = logging.loggerFor(database, this._logOptions);
      if (inherited) this.logger = inherited;
    }
    if (database && typeof database._requireNative === 'function') {
      this.database = database;
      wrapSync(() => this._native.install(database._requireNative()));
      for (const resource of Object.values(database.resources)) this._onResourceCreated(resource);
      return;
    }
    if (!adapter.isS3dbDatabase(database)) {
      throw new TallyError(
        'ERR_INVALID_CONFIG',
        'EventualConsistencyPlugin: install it with db.usePlugin(plugin) on a tally-ec S3db or an s3db.js Database',
      );
    }
    const fns = adapter.recordFunctions(database);
    wrapSync(() => this._native.installHost(adapter.tallyConnectionString(database), fns.get, fns.write));
    this.database = database;
    for (const resource of Object.values(database.resources)) this._onResourceCreated(resource);
    hooks.install(this, database, (p) => p instanceof EventualConsistencyPlugin);
    this._now();
    // The CLI reads and audits: it never takes a running 21.6.2 app's pending transactions.
    if (this._carryOver === false) {
      this.carriedOver = [];
      return;
    }
    this.carriedOver = await this._track(carryOver(database, this._native, this.config, this.logger));
    for (const { resource, field, records } of this.carriedOver) {
      await eachInTurn(records, (id) => this._call(resource, 'consolidate', [id, field]));
    }
  }

  /** Installs the resource methods on a configured resource (also one created later). */
  _onResourceCreated(resource) {
    if (!this._resources.has(resource.name)) return;
    if (adapter.isS3dbDatabase(this.database)) hooks.bindResource(this, resource);
    for (const method of RESOURCE_METHODS()) {
      const current = resource[method];
      if (current !== undefined && !(current && current.__tally === this)) {
        logging.log(this.logger, 'warn', { resource: resource.name, method }, `resource "${resource.name}" already has a "${method}" property; not replacing it`);
        continue;
      }
      const fn = (...args) => this._call(resource.name, method, args);
      Object.defineProperty(fn, '__tally', { value: this });
      resource[method] = fn;
    }
  }

  async start() {
    if (this._started) return;
    this._started = true;
    for (const e of wrapSync(() => this._native.lifecycleEvents(true))) this._dispatch(e.name, e.payload);
    const c = this.config;
    if (c.consolidation.mode === 'async' && c.consolidation.auto) {
      this._every('pass', c.consolidation.interval, () => this._native.runPass());
    }
    if (c.garbageCollection.enabled) {
      this._every('gc', c.garbageCollection.interval, () => this._native.runGc());
    }
  }

  _every(kind, seconds, work) {
    const ms = Math.min(Math.max(1, Math.round(seconds * 1000)), MAX_TIMER_MS);
    const timer = setInterval(() => this._background(kind, work), ms);
    timer.unref();
    this._timers.push(timer);
  }

  /** Runs background work of one kind unless the last run of that kind is still going (a long
   * GC never holds consolidation passes back, and the other way round). */
  _background(kind, work) {
    if (this._running.has(kind)) return;
    this._running.add(kind);
    this._now();
    const event = kind === 'gc' ? 'plg:eventual-consistency:gc-error' : 'plg:eventual-consistency:consolidation-error';
    this._track(work())
      .catch((error) => this._dispatch(event, { error }))
      .finally(() => {
        this._running.delete(kind);
      });
  }

  /** Stops the timers and waits for in-flight work. */
  async stop() {
    for (const t of this._timers) clearInterval(t);
    this._timers = [];
    await Promise.allSettled([...this._inflight]);
    if (this._started) {
      this._started = false;
      for (const e of wrapSync(() => this._native.lifecycleEvents(false))) this._dispatch(e.name, e.payload);
    }
  }

  /** Stops, and takes back the resource methods and hooks it installed. */
  async uninstall() {
    await this.stop();
    const database = this.database;
    if (!database) return;
    wrapSync(() => this._native.uninstall());
    for (const resource of Object.values(database.resources ?? {})) {
      for (const method of RESOURCE_METHODS()) {
        if (resource[method] && resource[method].__tally === this) delete resource[method];
      }
      if (resource.__tallyBound === this) {
        Object.defineProperty(resource, '__tallyBound', { value: undefined, configurable: true });
      }
    }
    hooks.uninstall(this, database);
    this.database = null;
  }

  /** Consolidates every configured field; a Map "<resource>.<field>" → summary. */
  async consolidateAll() {
    this._now();
    const runs = await this._track(this._native.consolidateAll());
    return new Map(runs.map((r) => [`${r.resource}.${r.field}`, r]));
  }

  async runGC() {
    this._now();
    await this._track(this._native.runGc());
  }

  async getStatus() {
    return wrap(this._native.status());
  }

  /** The transactions of a field that could not be applied and were set aside. */
  async getDeadLetters(resource, field) {
    return wrap(this._native.deadLetters(String(resource), String(field)));
  }

  /** Puts a dead letter back as a pending transaction; resolves to that transaction. */
  async retryDeadLetter(resource, field, recordId, name) {
    this._now();
    return this._track(wrap(this._native.retryDeadLetter(String(resource), String(field), String(recordId), String(name))));
  }

  /** Removes a dead letter for good: its transaction is never applied. */
  async discardDeadLetter(resource, field, recordId, name) {
    return this._track(wrap(this._native.discardDeadLetter(String(resource), String(field), String(recordId), String(name))));
  }

  /** The pending transactions of a field by record: `[{ recordId, count, oldest }]`, oldest first. */
  async getPendingSummary(resource, field) {
    return wrap(this._native.pendingSummary(String(resource), String(field)));
  }

  /** Everything known of one record: value, pending, last consolidation, dead letters, lease. */
  async inspect(resource, id) {
    this._now();
    return wrap(this._native.inspect(String(resource), String(id)));
  }

  /** Audits a field's history: every record's hash chain, journals replayed, stored values
   * compared. Resolves to `{ records, journals, chained, unchained, problems, heads, digest }`;
   * `problems` is empty when the history explains every value. */
  async verify(resource, field) {
    this._now();
    // The records the database lists are checked too: one whose every journal is gone shows.
    const db = this.database;
    let res = db?.resources?.[resource];
    if (!res && db && typeof db.resource === 'function' && typeof db._requireNative === 'function') {
      res = await db.resource(resource).catch(() => null); // Tally's S3db attaches to stored ones
    }
    const ids = res && typeof res.listIds === 'function' ? await res.listIds() : [];
    return wrap(this._native.verify(String(resource), String(field), ids.map(String)));
  }

  /** Metrics: a plain snapshot (requests by kind, conflicts, retries, consolidation runs and
   * their latency histogram, per field pending, dead letters and last success), or with
   * `'prometheus'` the same as Prometheus text (`EventualConsistencyPlugin.PROMETHEUS_CONTENT_TYPE`). */
  async metrics(format) {
    if (format !== undefined && format !== 'prometheus' && format !== 'json') {
      throw new TallyError('ERR_INVALID_ARGUMENT', `metrics(format): format must be 'prometheus' or 'json' (got ${JSON.stringify(format)})`);
    }
    this._now();
    return wrap(format === 'prometheus' ? this._native.metricsText() : this._native.metrics());
  }

  /** Registers the metrics in a prom-client Registry; resolves nothing, returns the names. */
  registerMetrics(registry) {
    return metrics.register(this, registry);
  }

  async getCohortStats(resource, field) {
    this._now();
    return wrap(this._native.cohortStats(resource, field));
  }

  async getConsolidatedValue(resource, field, id, options) {
    return this._call(resource, 'getConsolidatedValue', [id, field, options]);
  }

  async recalculateRecord(resource, field, id) {
    return this._call(resource, 'recalculate', [id, field]);
  }

  async consolidate(resource, field, id) {
    return this._call(resource, 'consolidate', [id, field]);
  }

  /** `fillGaps(data, period, start, end)`: every cohort of the range, zeros where missing. */
  fillGaps(data, period, start, end) {
    return wrapSync(() => this._native.fillGaps(data, String(period), String(start), String(end)));
  }
}

for (const name of QUERY_FUNCTIONS) {
  EventualConsistencyPlugin.prototype[name] = function query(resource, field, ...args) {
    this._now();
    return wrap(this._native.query(name, String(resource), String(field), args.map(tag)));
  };
}

EventualConsistencyPlugin.PROMETHEUS_CONTENT_TYPE = metrics.PROMETHEUS_CONTENT_TYPE;

module.exports = { EventualConsistencyPlugin, QUERY_FUNCTIONS };
