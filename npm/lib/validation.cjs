'use strict';
// s3db.js 21.6.2's attribute rules in Tally's own S3db: the same library (fastest-validator),
// configured as s3db.js configures it (strings trimmed, numbers and booleans converted, the
// `datetime`/`dateonly`/`timeonly` aliases), and s3db.js's translation of its attribute
// strings (`'number|min:0|max:100'`, `'embedding:3'`, `'money'`, `{ $$type: 'object' }`), so
// a record s3db.js refuses is refused with s3db.js's message. Types whose s3db.js meaning
// Tally's S3db does not implement (encrypted `secret`, hashed `password`, s3db.js's custom
// `mac`/`currency`/… types) are refused at `createResource`.
const FastestValidator = require('fastest-validator');
const { TallyError } = require('./errors.cjs');

/** Types s3db.js gives a meaning Tally's S3db does not have: refused at createResource. */
const REFUSED = {
  secret: 'encrypts the value at rest',
  secretAny: 'encrypts the value at rest',
  secretNumber: 'encrypts the value at rest',
  password: 'stores a bcrypt hash of the value',
  'password:bcrypt': 'stores a bcrypt hash of the value',
  'password:argon2id': 'stores an argon2id hash of the value',
  mac: 'is an s3db.js custom type',
  currency: 'is an s3db.js custom type',
};

/** One date/time alias of s3db.js: `parse` gives the stored string or null when invalid;
 * `forStrings` is the longer message s3db.js gives an invalid string, when it has one. */
function dateAlias(type, what, parse, forStrings = what) {
  return {
    type: 'any',
    custom(value, errors, _schema, field) {
      if (value === null || value === undefined) return value;
      const out = parse(value);
      const said = typeof value === 'string' ? forStrings : what;
      if (out === null) errors.push({ type, field, message: `The '${field}' field must be a valid ${said}.`, actual: value });
      return out ?? value;
    },
  };
}

const validDate = (d) => (Number.isFinite(d.getTime()) ? d : null);
const asDate = (v, fromString) => {
  if (v instanceof Date) return validDate(v);
  if (typeof v === 'number') return validDate(new Date(v));
  if (typeof v === 'string') return validDate(fromString(v));
  return null;
};

function timeOnly(v) {
  if (v instanceof Date) return validDate(v)?.toISOString().slice(11, 23) ?? null;
  if (typeof v !== 'string') return null;
  const m = v.match(/^(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,3}))?)?$/);
  if (m) {
    const [h, min, s, ms] = [Number(m[1]), Number(m[2]), Number(m[3] ?? 0), Number((m[4] ?? '0').padEnd(3, '0'))];
    if (h <= 23 && min <= 59 && s <= 59) {
      const two = (n) => String(n).padStart(2, '0');
      return `${two(h)}:${two(min)}:${two(s)}.${String(ms).padStart(3, '0')}`;
    }
  }
  return v.includes('T') ? (validDate(new Date(v))?.toISOString().slice(11, 23) ?? null) : null;
}

function validator() {
  const v = new FastestValidator({
    useNewCustomCheckerFunction: true,
    defaults: { string: { trim: true }, object: { strict: 'remove' }, number: { convert: true }, boolean: { convert: true } },
  });
  v.alias('json', { type: 'any' });
  v.alias('embedding', { type: 'array', items: 'number', empty: false });
  v.alias('datetime', dateAlias('datetime', 'datetime', (x) => asDate(x, (s) => new Date(s))?.toISOString() ?? null));
  v.alias('dateonly', dateAlias('date', 'date', (x) => asDate(x, (s) => new Date(s.includes('T') ? s : `${s}T00:00:00.000Z`))?.toISOString().slice(0, 10) ?? null));
  v.alias('timeonly', dateAlias('timeonly', 'time', timeOnly, 'time (HH:mm, HH:mm:ss, or HH:mm:ss.SSS)'));
  return v;
}

/** `'number|min:0|optional'` as s3db.js turns it into a rule object. */
function ruleOf(value) {
  const parts = value.split('|');
  const config = { type: parts[0] };
  for (const part of parts.slice(1)) {
    if (part === 'optional') config.optional = true;
    else if (part === 'required') continue;
    else if (part.includes(':')) {
      const [modifier, raw] = part.split(':');
      if (raw === 'true') config[modifier] = true;
      else if (raw === 'false') config[modifier] = false;
      else config[modifier] = Number.isNaN(Number(raw)) ? raw : Number(raw);
    } else config[part] = true;
  }
  return config;
}

/** s3db.js's own renamings of its attribute strings before they reach the validator (those
 * of 21.6.2's `ResourceValidator`, which checks inserts and updates: `bool` and `text` are
 * not among them, so fastest-validator refuses them as 21.6.2 does). */
const RENAMES = [
  [/^ip[46](?=$|\|)/, 'string'],
  [/^(buffer|bits|geo:point)(?=$|\||:)[^|]*.*$/, 'any'],
  [/^decimal(:\d+)?(?=$|\|)/, 'number'],
];

function rename(value) {
  const type = value.split('|')[0];
  if (REFUSED[type]) return { refused: type };
  for (const [re, to] of RENAMES) if (re.test(value)) return { value: to === 'any' ? 'any' : value.replace(re, to) };
  let m = value.match(/^(money|crypto)(:\d+)?(.*)$/);
  if (m) return { value: `number${m[3].includes('min:') ? '' : '|min:0'}${m[3]}` };
  m = value.match(/^geo:(lat|lon)(:\d+)?(.*)$/);
  if (m) {
    const bound = m[1] === 'lat' ? 90 : 180;
    return { value: `number${m[3].includes('min:') ? '' : `|min:-${bound}`}${m[3].includes('max:') ? '' : `|max:${bound}`}${m[3]}` };
  }
  m = value.match(/^embedding:(\d+)(.*)$/);
  if (m) return { value: `array|items:number|length:${m[1]}|empty:false${m[2]}` };
  if (/^embedding(?=$|\|)/.test(value)) return { value: value.replace(/^embedding/, 'array|items:number|empty:false') };
  return { value };
}

/** s3db.js's `preprocessAttributesForValidation`, for the types Tally's S3db keeps. */
function preprocess(resource, attributes, prefix = '') {
  const out = {};
  for (const [key, value] of Object.entries(attributes)) {
    if (typeof value === 'string') {
      const r = rename(value);
      if (r.refused) {
        throw new TallyError(
          'ERR_INVALID_CONFIG',
          `attribute "${prefix}${key}" of resource "${resource}": type "${r.refused}" ${REFUSED[r.refused]} in s3db.js, which Tally's S3db does not do; use an s3db.js Database with the plugin, or another type`,
        );
      }
      out[key] = r.value.includes('|') ? ruleOf(r.value) : r.value;
      // 21.6.2 accepts a nested attribute with a default when it is absent, and stores no
      // default there (only top-level ones are applied).
      if (prefix && typeof out[key] === 'object' && 'default' in out[key]) {
        delete out[key].default;
        out[key].optional = true;
      }
    } else if (value && typeof value === 'object' && !Array.isArray(value)) {
      if (typeof value.type === 'string' && !value.type.includes('|') && key !== '$$type') {
        if (REFUSED[value.type]) return preprocess(resource, { [key]: value.type }, prefix);
        out[key] = value;
        continue;
      }
      // s3db.js resources default to `allNestedObjectsOptional: true`: a nested object is
      // optional unless its `$$type` says `required`.
      const declared = typeof value.$$type === 'string' ? value.$$type : '';
      const rule = { type: 'object', props: preprocess(resource, value, `${prefix}${key}.`), strict: false };
      if (!declared.includes('required')) rule.optional = true;
      out[key] = rule;
    } else {
      out[key] = value;
    }
  }
  return out;
}

/**
 * Compiles a resource's attributes into `check(data, { partial }) -> data`: converts and
 * trims as s3db.js does, throws `ERR_VALIDATION` with s3db.js's first message (all of them
 * in `validation`), or at compile time `ERR_INVALID_CONFIG` for a type it cannot check.
 * `partial` (updates) checks only the attributes present.
 */
function compile(resource, attributes) {
  const schema = preprocess(resource, attributes ?? {});
  const v = validator();
  const build = (s) => {
    try {
      return v.compile({ $$strict: false, ...s });
    } catch (e) {
      throw new TallyError('ERR_INVALID_CONFIG', `attributes of resource "${resource}": ${e.message}`);
    }
  };
  const whole = build(schema);
  // Updates: what is present is checked; nothing absent is required or filled with a
  // default, at any depth.
  const loosen = (rules) => {
    const out = {};
    for (const [k, rule] of Object.entries(rules)) {
      if (k === '$$type') continue;
      const loose = typeof rule === 'string' ? { ...v.parseShortHand(rule), optional: true } : { ...rule, optional: true };
      delete loose.default;
      if (loose.type === 'object' && loose.props) loose.props = loosen(loose.props);
      out[k] = loose;
    }
    return out;
  };
  const some = build(loosen(schema));
  return (data, { partial = false } = {}) => {
    if (!data || typeof data !== 'object' || Array.isArray(data)) return data;
    let copy;
    try {
      copy = structuredClone(data);
    } catch (e) {
      throw new TallyError('ERR_VALIDATION', `a record of resource "${resource}" must be plain data (${e.message})`);
    }
    const result = (partial ? some : whole)(copy);
    if (result !== true) {
      const err = new TallyError('ERR_VALIDATION', result[0]?.message ?? `the record is not valid for resource "${resource}"`);
      err.validation = result.map(({ type, field, message, expected, actual }) => ({ type, field, message, expected, actual }));
      throw err;
    }
    return copy;
  };
}

module.exports = { compile };
