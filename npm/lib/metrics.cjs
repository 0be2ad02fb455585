'use strict';
// The plugin's metrics in a prom-client registry: one collector per metric family, each
// reading the same snapshot (`plugin.metrics()`, taken once per scrape).

/** The Prometheus exposition content type `metrics('prometheus')` writes. */
const PROMETHEUS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';
const { TallyError } = require('./errors.cjs');

const REQUEST_KINDS = [['get', 'get'], ['put', 'put'], ['list', 'list'], ['delete', 'delete'], ['delete_many', 'deleteMany']];

/** Metric families: name, type, help, and the values of a snapshot. */
const FAMILIES = [
  ['tally_requests_total', 'counter', 'Store requests by kind.', (m) => REQUEST_KINDS.map(([kind, k]) => ({ labels: { kind }, value: m.requests[k] }))],
  ['tally_request_conflicts_total', 'counter', 'Conditional writes refused (the object changed, existed or was gone).', (m) => [{ labels: {}, value: m.requests.conflicts }]],
  ['tally_request_failures_total', 'counter', 'Store requests that failed (after retries).', (m) => [{ labels: {}, value: m.requests.failures }]],
  ['tally_request_retries_total', 'counter', 'Store requests sent again after a transient failure.', (m) => [{ labels: {}, value: m.requests.retries }]],
  ['tally_consolidation_runs_total', 'counter', 'Consolidation runs of a field.', (m) => [{ labels: {}, value: m.consolidation.runs }]],
  ['tally_consolidation_errors_total', 'counter', 'Records that failed to consolidate.', (m) => [{ labels: {}, value: m.consolidation.errors }]],
  ['tally_records_consolidated_total', 'counter', 'Records consolidated.', (m) => [{ labels: {}, value: m.consolidation.recordsConsolidated }]],
  ['tally_transactions_applied_total', 'counter', 'Transactions applied.', (m) => [{ labels: {}, value: m.consolidation.transactionsApplied }]],
  ['tally_host_refusals_total', 'counter', 'Consolidated values the host database refused.', (m) => [{ labels: {}, value: m.consolidation.hostRefusals }]],
  ['tally_gc_runs_total', 'counter', 'Garbage collection runs.', (m) => [{ labels: {}, value: m.consolidation.gcRuns }]],
  ['tally_consolidation_duration_seconds', 'histogram', 'Duration of consolidation runs.', (m) => {
    const h = m.consolidation.latencyMs;
    const name = 'tally_consolidation_duration_seconds';
    return [
      ...h.buckets.map((b) => ({ metricName: `${name}_bucket`, labels: { le: b.le / 1000 }, value: b.count })),
      { metricName: `${name}_bucket`, labels: { le: '+Inf' }, value: h.count },
      { metricName: `${name}_sum`, labels: {}, value: h.sumMs / 1000 },
      { metricName: `${name}_count`, labels: {}, value: h.count },
    ];
  }],
  ['tally_pending_transactions', 'gauge', 'Transactions waiting to be consolidated.', (m) => m.fields.map((f) => ({ labels: { resource: f.resource, field: f.field }, value: f.pending }))],
  ['tally_dead_letters', 'gauge', 'Transactions set aside because they could not be applied.', (m) => m.fields.map((f) => ({ labels: { resource: f.resource, field: f.field }, value: f.deadLetters }))],
  ['tally_last_success_timestamp_seconds', 'gauge', 'When a consolidation run of the field last finished without errors.', (m) =>
    m.fields.filter((f) => f.lastSuccessMs != null).map((f) => ({ labels: { resource: f.resource, field: f.field }, value: f.lastSuccessMs / 1000 }))],
];

/**
 * Registers the plugin's metric families in a prom-client `registry` (anything with
 * `registerMetric`): each scrape reads one snapshot. Returns the names registered.
 */
function register(plugin, registry) {
  if (!registry || typeof registry.registerMetric !== 'function') {
    throw new TypeError('registerMetrics(registry) needs a prom-client Registry (it has no registerMetric method)');
  }
  let current = null;
  // One snapshot for all families of a scrape: dropped on the next turn of the event loop.
  const snapshot = () => {
    if (!current) {
      current = plugin.metrics();
      setImmediate(() => { current = null; }).unref();
    }
    return current;
  };
  for (const [name, type, help, values] of FAMILIES) {
    // Across cluster workers (prom-client's AggregatorRegistry): counters add up; every
    // worker reads the same store for the gauges, and the latest success is the newest.
    const aggregator = type !== 'gauge' ? 'sum' : name.includes('timestamp') ? 'max' : 'first';
    const metric = {
      name,
      help,
      type,
      aggregator,
      async get() {
        // `this.name`: an OpenMetrics registry renames counters (`…_total` → `…`) once registered.
        return { name: this.name, help, type, aggregator, values: values(await snapshot()) };
      },
      reset() {},
    };
    try {
      registry.registerMetric(metric);
    } catch (e) {
      throw new TallyError('ERR_INVALID_ARGUMENT', `registerMetrics: ${e.message} (one plugin per registry, or a registry per plugin)`);
    }
  }
  return FAMILIES.map(([name]) => name);
}

module.exports = { register, PROMETHEUS_CONTENT_TYPE };
