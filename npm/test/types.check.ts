// Compiled by `npm run typecheck` only: usage that must type-check against index.d.ts.
import { S3db, EventualConsistencyPlugin, TallyError, type Transaction } from '../index.js';

async function usage(): Promise<void> {
  const db = new S3db({ connectionString: 'memory://types/app' });
  await db.connect();
  const plugin = await db.usePlugin(
    new EventualConsistencyPlugin({
      resources: [{ resource: 'wallets', fields: ['balance', { field: 'best', reducer: (c, tx) => Math.max(c, tx.value) }] }],
      consolidation: { mode: 'sync' },
      clock: () => Date.now(),
    }),
  );
  plugin.on('plg:eventual-consistency:consolidated', (e) => console.log(e.recordCount, e.duration));
  const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
  const v = await wallets.add('w1', 'balance', 5, { idempotencyKey: 'k' });
  if (typeof v === 'number') console.log(v.toFixed(2));
  const tx = (await wallets.increment('w1')) as Transaction;
  console.log(tx.cohortWeek);
  // Results narrow by mode when the resource's mode is named.
  const syncWallets = await db.createResource<'sync'>({ name: 'wallets' });
  const balance: number | null = await syncWallets.add('w1', 5);
  // @ts-expect-error a sync mutation resolves to the value, not a transaction
  const notTx: Transaction = await syncWallets.sub('w1', 1);
  const counters = await db.createResource<'async'>({ name: 'counters' });
  const queued: Transaction = await counters.increment('c1');
  // @ts-expect-error an async mutation resolves to the transaction, not a number
  const notNumber: number | null = await counters.add('c1', 2);
  const consolidated: number | null = await counters.consolidate('c1');
  console.log(balance, notTx, queued.applied, notNumber, consolidated);
  const status = await plugin.getStatus();
  console.log(status.pending['wallets.balance']);
  try {
    await wallets.add('w1', NaN);
  } catch (e) {
    if (e instanceof TallyError) console.log(e.code === 'ERR_INVALID_AMOUNT');
  }
  const days = await plugin.getLastNDays('wallets', 'balance', 7, { fillGaps: true });
  console.log(days[0]?.cohort, days[0]?.operations.add?.sum);
  const top = await plugin.getTopRecords('wallets', 'balance', { sortBy: 'totalValue', limit: 3 });
  console.log(top[0]?.recordId);
  const runs = await plugin.consolidateAll();
  console.log(runs.get('wallets.balance')?.transactionsApplied);
  const record = await plugin.inspect('wallets', 'w1');
  if (record.state === 'waiting') console.log(record.fields[0]?.pending.oldest, record.fields[0]?.lease?.owner);
  const waiting = await plugin.getPendingSummary('wallets', 'balance');
  console.log(waiting[0]?.recordId, waiting[0]?.count);
  const audit = await plugin.verify('wallets', 'balance');
  if (audit.problems[0]?.kind === 'journal-changed') console.log(audit.heads["w1"]?.hash, audit.digest, audit.warnings[0]?.kind);
  const snap = await plugin.metrics();
  const text: string = await plugin.metrics('prometheus');
  console.log(snap.requests.put, snap.consolidation.latencyMs.buckets[0]?.le, snap.fields[0]?.lastSuccessAt, text.length);
  console.log(plugin.registerMetrics({ registerMetric() {} }).length, EventualConsistencyPlugin.PROMETHEUS_CONTENT_TYPE);
}
void usage;

// tally-ec/wasm
import init, * as tally from '../wasm/index.js';
export async function wasmTypes(): Promise<number> {
  await init();
  const txs = [{ originalId: 'r1', timestamp: '2025-03-09T07:30:00Z', value: 5, operation: 'add' as const }];
  const pts = tally.getDayByHour(txs, '2025-03-09', { fillGaps: true, timezone: 'America/New_York' });
  const top = tally.getTopRecords(txs, { period: 'day', sortBy: 'totalValue', now: 0 });
  const days = tally.rollup(pts, 'day');
  const set: tally.Transactions = tally.prepare(txs);
  const month = tally.getMonthByDay(set, '2025-03', { timezone: 'Europe/Berlin' });
  const n = set.length;
  set.free();
  const cols: tally.TransactionColumns = {
    recordIds: ['r1'],
    records: new Uint32Array([0]),
    timestamps: new Float64Array([Date.parse('2025-03-09T07:30:00Z')]),
    operations: new Uint8Array([0]),
    values: new Float64Array([5]),
  };
  const typed = tally.prepareColumns(cols);
  const hours = tally.getDayByHour(typed, '2025-03-09');
  typed.free();
  return pts.length + top.length + days.length + month.length + n + hours.length + tally.weeksInYear(2026);
}

// inside an s3db.js Database
import type { HostDatabase, CarriedOver } from '../index.js';
export async function s3dbTypes(db: HostDatabase): Promise<number> {
  const plugin = new EventualConsistencyPlugin({ resources: { wallets: ['balance'] } });
  await plugin.install(db);
  const report: CarriedOver[] = plugin.carriedOver ?? [];
  return report.reduce((n, r) => n + r.carried, 0);
}
