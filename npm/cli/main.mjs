// The tally-ec command line: argument parsing with commander, one action per command.
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { createRequire } from 'node:module';
import { open } from './session.mjs';
import { Output, EXIT, exitCodeOf } from './output.mjs';
import * as commands from './commands.mjs';

const { version } = createRequire(import.meta.url)('../package.json');

/** Runs the CLI on `argv` (as `process.argv`); resolves to the exit code. */
export async function run(argv, io = {}) {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  let code = EXIT.OK;
  const program = new Command('tally-ec')
    .description('Inspect and operate a Tally store: status, pending work, records, consolidation, GC, verify, dead letters, exports.')
    .version(version)
    .option('--connection <url>', 'the store: file:///folder, memory://…, s3://key:secret@bucket/prefix (or TALLY_CONNECTION)')
    .option('--config <file>', 'EventualConsistencyPlugin options: JSON, or a module exporting them (or TALLY_CONFIG)')
    .option('--s3db', "open the store as an s3db.js Database (the app's s3db.js), so inspect and verify show its copy of each record")
    .option('--json', 'print one JSON document (for scripts) instead of tables')
    .showHelpAfterError()
    .exitOverride()
    .configureOutput({ writeOut: (s) => stdout.write(s), writeErr: (s) => stderr.write(s) })
    .addHelpText(
      'after',
      '\nExit codes: 0 done; 1 the command found a problem; 2 bad usage or configuration; 3 storage error.',
    );
  const action = (fn) => async (...args) => {
    const opts = program.opts();
    const out = new Output({ json: Boolean(opts.json), out: stdout, err: stderr });
    const session = await open(opts);
    try {
      code = (await fn(session, out, ...args)) ?? EXIT.OK;
    } finally {
      await session.db.disconnect();
    }
  };
  program
    .command('status')
    .description('mode, time zone, and per field the pending transactions and dead letters')
    .action(action(commands.status));
  program
    .command('pending')
    .description('pending transactions by record, oldest first')
    .argument('[resource]', 'only this resource')
    .argument('[field]', 'only this field')
    .option('--limit <n>', 'at most this many records per field', (v) => positive(v, '--limit'))
    .action(action(commands.pending));
  program
    .command('inspect')
    .description("one record: value, pending, last consolidation, dead letters, lease")
    .argument('<resource>')
    .argument('<id>')
    .action(action(commands.inspect));
  program
    .command('consolidate')
    .description('apply pending transactions now (every record with some, or one)')
    .argument('[resource]', 'only this resource')
    .argument('[field]', 'only this field')
    .option('--id <id>', 'only this record')
    .action(action(commands.consolidate));
  program
    .command('recalculate')
    .description("recompute values from each record's history (every record of the resource, or one)")
    .argument('<resource>')
    .argument('[id]', 'only this record')
    .option('--field <field>', 'only this field')
    .action(action(commands.recalculate));
  program
    .command('gc')
    .description('remove applied transactions older than the retention (checkpoints kept)')
    .action(action(commands.gc));
  program
    .command('verify')
    .description("audit the history: every journal's hash link, its replay, and the stored value (exit 1 naming records)")
    .argument('[resource]', 'only this resource')
    .argument('[field]', 'only this field')
    .action(action(commands.verify));
  const dead = program.command('dead-letters').description('transactions set aside because they could not be applied');
  dead
    .command('list')
    .argument('[resource]')
    .argument('[field]')
    .action(action(commands.deadList));
  dead
    .command('retry')
    .description('put a dead letter back as a pending transaction')
    .argument('<resource>')
    .argument('<field>')
    .argument('<recordId>')
    .argument('<name>')
    .action(action(commands.deadRetry));
  dead
    .command('discard')
    .description('remove a dead letter for good')
    .argument('<resource>')
    .argument('<field>')
    .argument('<recordId>')
    .argument('<name>')
    .action(action(commands.deadDiscard));
  program
    .command('dashboard')
    .description('serve the dashboard: live from the store (--connection), or over an exported file (--data) without one')
    .option('--port <n>', 'port to listen on (0: any free one)', (v) => port(v), 4600)
    .option('--host <address>', 'address to listen on; beyond 127.0.0.1 it needs --token', '127.0.0.1')
    .option('--token <token>', 'access token the page and API ask for (or TALLY_DASHBOARD_TOKEN)')
    .option('--data <file>', 'an exported transactions file (JSON) for the static mode')
    .action(async (opts) => {
      const global = program.opts();
      const live = Boolean(global.connection ?? process.env.TALLY_CONNECTION) && !opts.data;
      const session = live ? await open(global) : null;
      const { startDashboard } = await import('./dashboard.mjs');
      const { server, url } = await startDashboard(session, { ...opts, token: opts.token ?? process.env.TALLY_DASHBOARD_TOKEN });
      stdout.write(`dashboard on ${url} (${live ? 'live from the store' : 'static: computed in the browser'}); Ctrl-C stops it\n`);
      await new Promise((done) => {
        const stop = () => server.close(() => done());
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
      });
      if (session) await session.db.disconnect();
    });
  program
    .command('export')
    .description('raw events (default) or analytics points, streamed as JSON lines or CSV')
    .argument('<resource>')
    .argument('<field>')
    .option('--points <period>', 'analytics points of this period (hour, day, week, month) instead of events')
    .option('--from <date>', 'first cohort (YYYY-MM-DD or an ISO time), with --to')
    .option('--to <date>', 'last cohort, with --from')
    .option('--record <id>', 'events of this record only')
    .option('--format <format>', 'jsonl or csv', 'jsonl')
    .action(action(commands.exportData));
  try {
    await program.parseAsync(argv);
  } catch (e) {
    if (e instanceof CommanderError) {
      return e.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    stderr.write(`tally-ec: ${e.code ? `[${e.code}] ` : ''}${e.message}\n`);
    return exitCodeOf(e);
  }
  return code;
}

function port(value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 0 || n > 65535) throw new InvalidArgumentError('--port must be a whole number from 0 to 65535');
  return n;
}

function positive(value, name) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) {
    throw new InvalidArgumentError(`${name} must be a positive integer`);
  }
  return n;
}
