// The actions of the tally-ec commands: each takes the session (database, plugin, configured
// fields), the output, then its arguments, and resolves to an exit code.
import { selectFields, resourceOf } from './session.mjs';
import { EXIT, table, progress, csvLine } from './output.mjs';
import { TallyError } from '../index.js';

const key = (resource, field) => `${resource}.${field}`;

const CONSOLIDATION_ERROR = 'plg:eventual-consistency:consolidation-error';

/** Events reach the plugin on a later tick of the event loop: give them time to arrive. */
const settle = (ms = 50) => new Promise((r) => setTimeout(r, ms));

/** Collects the `consolidation-error` events of `plugin` while `work` runs. */
async function reported(plugin, work) {
  const events = [];
  const seen = (e) => events.push(e);
  plugin.on(CONSOLIDATION_ERROR, seen);
  try {
    const result = await work();
    await settle();
    return { result, events };
  } finally {
    plugin.off(CONSOLIDATION_ERROR, seen);
  }
}

export async function status({ plugin, fields }, out) {
  const s = await plugin.getStatus();
  const rows = fields.map(([r, f]) => ({
    resource: r,
    field: f,
    pending: s.pending[key(r, f)] ?? 0,
    deadLetters: s.deadLetters[key(r, f)] ?? 0,
  }));
  const value = { version: s.version, mode: s.mode, timezone: s.timezone, analytics: s.enableAnalytics, fields: rows };
  out.result(value, (v) =>
    [
      `tally-ec ${v.version} · mode ${v.mode} · time zone ${v.timezone} · analytics ${v.analytics ? 'on' : 'off'}`,
      table(['field', 'pending', 'dead letters'], v.fields.map((x) => [key(x.resource, x.field), x.pending, x.deadLetters])),
    ].join('\n'),
  );
  return EXIT.OK;
}

export async function pending(session, out, resource, field, opts) {
  const result = [];
  for (const [r, f] of selectFields(session, resource, field)) {
    const records = await session.plugin.getPendingSummary(r, f);
    result.push({ resource: r, field: f, records: opts.limit ? records.slice(0, opts.limit) : records, total: records.length });
  }
  out.result(result, (v) =>
    table(
      ['field', 'record', 'pending', 'oldest'],
      v.flatMap((x) => x.records.map((p) => [key(x.resource, x.field), p.recordId, p.count, p.oldest])),
    ),
  );
  return EXIT.OK;
}

export async function inspect({ plugin }, out, resource, id) {
  const v = await plugin.inspect(resource, id);
  out.result(v, (x) => {
    const state = {
      live: 'exists',
      deleted: 'deleted',
      waiting: 'does not exist yet; its transactions wait for it to be created',
      unknown: 'not found, and nothing pending',
    }[x.state];
    const lines = [`${x.resource} ${JSON.stringify(x.id)}: ${state}`];
    for (const f of x.fields) {
      const pend = f.pending.count ? `${f.pending.count} pending (oldest ${f.pending.oldest})` : 'nothing pending';
      const last = f.lastConsolidatedAt ? `last consolidated ${f.lastConsolidatedAt}` : 'never consolidated';
      lines.push(`  ${f.field}: ${JSON.stringify(f.value ?? null)} · ${pend} · ${f.batches} batches, ${last}`);
      if ('hostValue' in f) {
        lines.push(`    s3db.js copy: ${JSON.stringify(f.hostValue ?? null)}${f.inSync ? ' (in sync)' : ' (differs: it lags, or s3db.js refused the value)'}`);
      }
      lines.push(`    lease: ${f.lease ? `${f.lease.owner} until ${f.lease.expiresAt}` : 'none held'}`);
      if (f.deadLetters.length === 0) lines.push('    dead letters: none');
      for (const d of f.deadLetters) lines.push(`    dead letter ${d.name}: [${d.error.code}] ${d.error.message}`);
    }
    return lines.join('\n');
  });
  // Any record can be inspected, also one that does not exist.
  return EXIT.OK;
}

export async function consolidate(session, out, resource, field, opts) {
  const { plugin } = session;
  if (opts.id !== undefined) {
    if (!resource) throw new TallyError('ERR_INVALID_ARGUMENT', 'consolidate --id needs the resource (and the field when it has several)');
    const { result: value, events } = await reported(plugin, () => plugin.consolidate(resource, field, opts.id));
    const errors = events.map((e) => ({ code: e.error?.code ?? null, message: e.error?.message }));
    out.result({ resource, field: field ?? null, id: opts.id, value, waiting: value === null, errors }, (v) =>
      [
        `${v.resource} ${JSON.stringify(v.id)}: ${v.waiting ? 'does not exist yet; its transactions wait for it' : JSON.stringify(v.value)}`,
        ...v.errors.map((e) => `error: [${e.code}] ${e.message}`),
      ].join('\n'),
    );
    return errors.length ? EXIT.PROBLEM : EXIT.OK;
  }
  const work = [];
  for (const [r, f] of selectFields(session, resource, field)) {
    for (const p of await plugin.getPendingSummary(r, f)) work.push({ resource: r, field: f, ...p });
  }
  const bar = progress('consolidating', work.length, { json: out.json, stream: out.err });
  const summary = new Map();
  const errors = [];
  const { events } = await reported(plugin, async () => {
    for (const w of work) {
      const s = summary.get(key(w.resource, w.field)) ?? { resource: w.resource, field: w.field, records: 0, transactions: 0, waiting: 0, errors: 0 };
      summary.set(key(w.resource, w.field), s);
      try {
        // A record that does not exist yet keeps its transactions pending until it is created.
        const value = await plugin.consolidate(w.resource, w.field, w.recordId);
        if (value === null) {
          s.waiting += 1;
        } else {
          s.records += 1;
          s.transactions += w.count;
        }
      } catch (e) {
        s.errors += 1;
        errors.push({ resource: w.resource, field: w.field, recordId: w.recordId, code: e.code ?? null, message: e.message });
      }
      bar.tick(w.recordId);
    }
  });
  bar.done();
  // What the consolidations reported without failing: dead letters set aside, values the
  // host database refused (a failed record's own error is already in `errors`).
  for (const e of events) {
    const item = { resource: e.resource, field: e.field, recordId: e.recordId, code: e.error?.code ?? null, message: e.error?.message };
    if (!errors.some((x) => x.recordId === item.recordId && x.field === item.field && x.message === item.message)) errors.push(item);
  }
  const result = { fields: [...summary.values()], errors };
  out.result(result, (v) =>
    [
      table(
        ['field', 'records', 'transactions', 'waiting for their record', 'errors'],
        v.fields.map((x) => [key(x.resource, x.field), x.records, x.transactions, x.waiting, x.errors]),
      ),
      ...v.errors.map((e) => `error on ${key(e.resource, e.field)} ${JSON.stringify(e.recordId)}: [${e.code}] ${e.message}`),
    ].join('\n'),
  );
  return errors.length ? EXIT.PROBLEM : EXIT.OK;
}

export async function recalculate(session, out, resource, id, opts) {
  const { db, plugin } = session;
  const fields = selectFields(session, resource, opts.field).map(([, f]) => f);
  const ids = id !== undefined ? [id] : await (await resourceOf(db, resource)).listIds();
  const bar = progress('recalculating', ids.length * fields.length, { json: out.json, stream: out.err });
  const values = [];
  const errors = [];
  for (const rid of ids) {
    for (const f of fields) {
      try {
        values.push({ id: rid, field: f, value: await plugin.recalculateRecord(resource, f, rid) });
      } catch (e) {
        errors.push({ id: rid, field: f, code: e.code ?? null, message: e.message });
      }
      bar.tick(rid);
    }
  }
  bar.done();
  out.result({ resource, values, errors }, (v) =>
    [
      table(['record', 'field', 'value'], v.values.map((x) => [x.id, x.field, JSON.stringify(x.value)])),
      ...v.errors.map((e) => `error on ${JSON.stringify(e.id)}.${e.field}: [${e.code}] ${e.message}`),
    ].join('\n'),
  );
  return errors.length ? EXIT.PROBLEM : EXIT.OK;
}

export async function gc({ plugin, fields }, out) {
  const done = [];
  const failures = [];
  const bar = progress('gc', fields.length, { json: out.json, stream: out.err });
  const seen = (payload) => {
    done.push(payload);
    bar.tick(key(payload.resource, payload.field));
  };
  const failed = (payload) => {
    failures.push({ code: payload.error?.code ?? null, message: payload.error?.message });
    bar.tick('error');
  };
  plugin.on('plg:eventual-consistency:gc-completed', seen);
  plugin.on('plg:eventual-consistency:gc-error', failed);
  const started = Date.now();
  try {
    await plugin.runGC();
    for (let i = 0; i < 100 && done.length + failures.length < fields.length; i += 1) await settle(10);
  } finally {
    plugin.off('plg:eventual-consistency:gc-completed', seen);
    plugin.off('plg:eventual-consistency:gc-error', failed);
    bar.done();
  }
  const result = {
    ms: Date.now() - started,
    fields: done.map((d) => ({ resource: d.resource, field: d.field, deleted: d.deletedCount, errors: d.errorCount })),
    failures,
  };
  out.result(result, (v) =>
    [
      table(['field', 'objects removed', 'errors'], v.fields.map((x) => [key(x.resource, x.field), x.deleted, x.errors])),
      ...v.failures.map((f) => `gc failed: [${f.code}] ${f.message}`),
      `gc took ${v.ms} ms`,
    ].join('\n'),
  );
  if (failures.some((f) => f.code === 'ERR_STORAGE')) return EXIT.STORAGE;
  return failures.length || result.fields.some((f) => f.errors > 0) ? EXIT.PROBLEM : EXIT.OK;
}

/** `verify`: every record's hash chain and replay; exit 1 naming the records when the
 * history does not explain them. */
export async function verify(session, out, resource, field) {
  const reports = [];
  const chosen = selectFields(session, resource, field);
  const bar = progress('verifying', chosen.length, { json: out.json, stream: out.err });
  for (const [r, f] of chosen) {
    reports.push(await session.plugin.verify(r, f));
    bar.tick(key(r, f));
  }
  bar.done();
  out.result(reports, (v) =>
    [
      table(
        ['field', 'records', 'journals', 'hash-checked links', 'unchained links', 'problems', 'digest'],
        v.map((x) => [key(x.resource, x.field), x.records, x.journals, x.chained, x.unchained, x.problems.length, x.digest.slice(0, 16)]),
      ),
      ...v.flatMap((x) =>
        [...x.problems, ...x.warnings.map((w) => ({ ...w, kind: `warning: ${w.kind}` }))].map(
          (p) => `${p.kind} on ${key(x.resource, x.field)} ${JSON.stringify(p.id)}: ${p.message}${p.key ? ` (${p.key})` : ''}`,
        ),
      ),
      v.some((x) => x.problems.length) ? 'verify FAILED: the history does not explain the records named above' : 'verify passed: every value is explained by its history',
    ].join('\n'),
  );
  return reports.some((x) => x.problems.length) ? EXIT.PROBLEM : EXIT.OK;
}

export async function deadList(session, out, resource, field) {
  const result = [];
  for (const [r, f] of selectFields(session, resource, field)) {
    for (const d of await session.plugin.getDeadLetters(r, f)) result.push({ resource: r, field: f, ...d });
  }
  out.result(result, (v) =>
    table(
      ['field', 'record', 'name', 'error', 'at'],
      v.map((d) => [key(d.resource, d.field), d.recordId, d.name, `[${d.error.code}] ${d.error.message}`, new Date(d.at).toISOString()]),
    ),
  );
  return EXIT.OK;
}

export async function deadRetry({ plugin }, out, resource, field, recordId, name) {
  const tx = await plugin.retryDeadLetter(resource, field, recordId, name);
  out.result(tx, (t) => `back to pending as ${t.id}`);
  return EXIT.OK;
}

export async function deadDiscard({ plugin }, out, resource, field, recordId, name) {
  await plugin.discardDeadLetter(resource, field, recordId, name);
  out.result({ discarded: name }, () => `discarded ${name}`);
  return EXIT.OK;
}

const EVENT_COLUMNS = ['id', 'originalId', 'field', 'fieldPath', 'operation', 'value', 'timestamp', 'applied', 'source', 'cohortHour', 'cohortDate', 'cohortWeek', 'cohortMonth'];
const POINT_COLUMNS = ['cohort', 'count', 'sum', 'avg', 'min', 'max', 'recordCount'];

/** `export`: lines go out as each record (or the query) is read; nothing is held whole. */
export async function exportData(session, out, resource, field, opts) {
  const { db, plugin } = session;
  selectFields(session, resource, field);
  if (!['jsonl', 'csv'].includes(opts.format)) {
    throw new TallyError('ERR_INVALID_ARGUMENT', `--format must be jsonl or csv (got ${JSON.stringify(opts.format)})`);
  }
  if ((opts.from === undefined) !== (opts.to === undefined)) {
    throw new TallyError('ERR_INVALID_ARGUMENT', '--from and --to go together');
  }
  const columns = opts.points ? POINT_COLUMNS : EVENT_COLUMNS;
  const write = (row) => out.out.write(`${opts.format === 'csv' ? csvLine(columns.map((c) => row[c])) : JSON.stringify(row)}\n`);
  if (opts.format === 'csv') out.out.write(`${csvLine(columns)}\n`);
  let rows = 0;
  if (opts.points) {
    const range = opts.from !== undefined ? { start: opts.from, end: opts.to } : null;
    const points = range
      ? await plugin.getAnalyticsByTimeRange(resource, field, opts.points, range)
      : await plugin.getAnalytics(resource, field, { period: opts.points });
    for (const p of points) write(p);
    rows = points.length;
  } else {
    const ids = new Set(opts.record !== undefined ? [opts.record] : await (await resourceOf(db, resource)).listIds());
    if (opts.record === undefined) for (const p of await plugin.getPendingSummary(resource, field)) ids.add(p.recordId);
    const filter = opts.from !== undefined ? { startDate: opts.from, endDate: opts.to } : {};
    for (const id of ids) {
      for (const e of await plugin.getRawEvents(resource, field, { recordId: id, ...filter })) {
        write(e);
        rows += 1;
      }
    }
  }
  out.note(`exported ${rows} ${opts.points ? 'points' : 'events'}`);
  return EXIT.OK;
}
