// One process switching an s3db.js 21.6.2 database over to Tally: installs the plugin (which
// carries over 21.6.2's pending transactions), then prints what it carried and the balances.
// Usage: node carry-over-worker.mjs <connection string> <record ids…>
import { s3dbDatabase } from '../helpers.mjs';
import { EventualConsistencyPlugin } from '../../index.js';

const [connectionString, ...ids] = process.argv.slice(2);
const db = await s3dbDatabase(connectionString);
await db.connect();
const wallets = await db.createResource({ name: 'wallets', attributes: { balance: 'number|default:0' } });
const plugin = new EventualConsistencyPlugin({ resources: { wallets: ['balance'] }, consolidation: { mode: 'sync' }, verbose: false });
await db.usePlugin(plugin);
const balances = {};
for (const id of ids) balances[id] = (await wallets.get(id)).balance;
const carried = plugin.carriedOver.reduce((n, r) => n + r.carried, 0);
process.stdout.write(JSON.stringify({ carried, balances }) + '\n');
await db.disconnect();
