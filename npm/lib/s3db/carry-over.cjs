'use strict';
// Carrying over 21.6.2's pending transactions when the plugin is installed on an s3db.js
// Database that has them.
const { log } = require('../logging.cjs');
const { plain } = require('./adapter.cjs');

/** Parallel requests while carrying over 21.6.2 transactions. */
const CARRY_CONCURRENCY = 8;

/** Runs `work` over `items`, `limit` at a time. */
async function eachLimited(items, limit, work) {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await work(items[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, lane));
}

/**
 * Carries over the pending transactions of 21.6.2's `plg_<resource>_tx_<field>` resources:
 * each is written to Tally once (its old id is the idempotency key), then marked applied in
 * the old resource, which stays as history; the records touched are consolidated.
 * Returns `{ carried, skipped, records }` per field.
 */
async function carryOver(db, native, config, logger) {
  const report = [];
  for (const [resource, fields] of Object.entries(config.resources)) {
    for (const { field } of fields) {
      const old = db.resources[`plg_${resource}_tx_${field}`];
      if (!old) continue;
      const pending = (await old.list()).filter((tx) => tx && tx.applied !== true);
      if (pending.length === 0) continue;
      pending.sort((a, b) => String(a.timestamp).localeCompare(String(b.timestamp)) || String(a.id).localeCompare(String(b.id)));
      log(logger, 'info', { resource, field, pending: pending.length }, `carrying over ${pending.length} pending 21.6.2 transactions of ${resource}.${field}`);
      let carried = 0;
      let done = 0;
      const records = new Set();
      await eachLimited(pending, CARRY_CONCURRENCY, async (tx) => {
        const plainTx = plain(tx);
        if (await native.carryOver(resource, plainTx)) carried += 1;
        await old.update(tx.id, { applied: true });
        records.add(plainTx.originalId);
        done += 1;
        if (done % 1000 === 0) log(logger, 'info', { resource, field, done, pending: pending.length }, `${resource}.${field}: ${done}/${pending.length} carried over`);
      });
      report.push({ resource, field, carried, skipped: pending.length - carried, records: [...records] });
    }
  }
  return report;
}

module.exports = { carryOver };
