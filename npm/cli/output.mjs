// Output of the tally-ec CLI: human tables (cli-table3) or JSON for scripts, CSV and JSON
// lines for exports, and progress (a cli-progress bar on a terminal, plain lines otherwise).
import Table from 'cli-table3';
import cliProgress from 'cli-progress';

/** Exit codes scripts can rely on. */
export const EXIT = {
  /** Done, nothing wrong found. */
  OK: 0,
  /** The command ran and found a problem (errors while consolidating, a record that failed). */
  PROBLEM: 1,
  /** Bad usage: unknown command or option, invalid configuration, unknown resource or field. */
  USAGE: 2,
  /** Storage could not be reached or answered with an error. */
  STORAGE: 3,
};

/** Codes that mean the command was asked wrongly (or configured wrongly). */
const USAGE_CODES = new Set([
  'ERR_INVALID_CONFIG',
  'ERR_INVALID_ARGUMENT',
  'ERR_INVALID_AMOUNT',
  'ERR_INVALID_DATE',
  'ERR_INVALID_PATH',
  'ERR_UNKNOWN_RESOURCE',
  'ERR_UNKNOWN_FIELD',
  'ERR_ANALYTICS_DISABLED',
]);

/** The exit code of an error thrown by the package: storage 3, usage 2, anything else 1. */
export function exitCodeOf(error) {
  const code = error && error.code;
  if (code === 'ERR_STORAGE') return EXIT.STORAGE;
  if (USAGE_CODES.has(code)) return EXIT.USAGE;
  return EXIT.PROBLEM;
}

/** Where results go: `--json` prints one JSON document; otherwise tables and lines. */
export class Output {
  constructor({ json = false, out = process.stdout, err = process.stderr } = {}) {
    this.json = json;
    this.out = out;
    this.err = err;
  }

  /** Prints `value` as JSON (with `--json`) or through `human(value)`. */
  result(value, human) {
    if (this.json) this.out.write(`${JSON.stringify(value, null, 2)}\n`);
    else this.out.write(`${human(value)}\n`);
  }

  /** A note for people (stderr, so stdout stays the result). */
  note(text) {
    if (!this.json) this.err.write(`${text}\n`);
  }
}

/** A table with a header row; every cell rendered as text. */
export function table(head, rows) {
  if (rows.length === 0) return '(none)';
  const t = new Table({ head, style: { head: [], border: [] } });
  for (const r of rows) t.push(r.map((c) => (c === null || c === undefined ? '' : String(c))));
  return t.toString();
}

/** Progress over `total` items on stderr: a bar on a terminal, a line per tenth otherwise,
 * nothing with `--json`. */
export function progress(label, total, { json = false, stream = process.stderr } = {}) {
  if (json) return { tick: () => {}, done: () => {} };
  if (stream.isTTY) {
    const bar = new cliProgress.SingleBar(
      { format: `${label} [{bar}] {value}/{total} {detail}`, stream, hideCursor: true },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { detail: '' });
    return {
      tick: (detail = '') => bar.increment(1, { detail }),
      done: () => bar.stop(),
    };
  }
  let n = 0;
  const step = Math.max(1, Math.ceil(total / 10));
  return {
    tick: () => {
      n += 1;
      if (n % step === 0 || n === total) stream.write(`${label}: ${n}/${total}\n`);
    },
    done: () => {},
  };
}

/** A CSV line (RFC 4180 quoting). */
export function csvLine(cells) {
  return cells
    .map((c) => {
      const s = c === null || c === undefined ? '' : typeof c === 'object' ? JSON.stringify(c) : String(c);
      return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
    })
    .join(',');
}
