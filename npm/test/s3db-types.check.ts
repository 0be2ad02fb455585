// The README's s3db.js drop-in, typed against s3db.js 21.6.2's own declarations: usePlugin
// accepts the plugin, and the methods Tally adds to s3db.js resources are typed.
import { Database } from 's3db.js/lite';
import { EventualConsistencyPlugin, type Transaction, type WithMode } from '../index.js';

export async function dropIn(): Promise<number> {
  const db = new Database({ connectionString: 'memory://shop/app', logLevel: 'silent' });
  await db.connect();
  const products = await db.createResource({ name: 'products', attributes: { stock: 'number|default:0' } });
  const plugin = new EventualConsistencyPlugin({ resources: { products: ['stock'] }, consolidation: { mode: 'sync' } });
  await db.usePlugin(plugin);
  const left: number | null | Transaction = await products.sub('mug', 3);
  const value: number | null = await products.consolidate('mug');
  const again: number | null = await products.recalculate('mug', 'stock');
  const stock: number | null = await products.getConsolidatedValue('mug');
  // The mode named on an s3db.js resource narrows its results too.
  const synced = products as WithMode<typeof products, 'sync'>;
  const after: number | null = await synced.add('mug', 1);
  // @ts-expect-error a sync mutation resolves to the value, not a transaction
  const notTx: Transaction = await synced.add('mug', 1);
  console.log(after, notTx, synced.name);
  await db.disconnect();
  return [left, value, again, stock].filter((x) => typeof x === 'number').length;
}
