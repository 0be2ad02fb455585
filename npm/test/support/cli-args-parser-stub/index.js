// Stand-in for cli-args-parser: s3db.js imports it only from its CLI, which tally-ec never runs.
export function parse() {
  throw new Error('cli-args-parser stub: the s3db.js CLI is not available in this install');
}
export default { parse };
