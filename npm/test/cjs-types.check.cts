// A CommonJS TypeScript consumer (module node16): `require('tally-ec')` is typed through
// index.d.cts, where index.d.ts alone fails with TS1471.
import tally = require('tally-ec');

export async function cjs(): Promise<number> {
  const db = new tally.S3db({ connectionString: 'memory://cjs/app' });
  const plugin = new tally.EventualConsistencyPlugin({ resources: { wallets: ['balance'] } });
  await db.usePlugin(plugin);
  return (await plugin.getStatus()).runs.consolidations;
}
