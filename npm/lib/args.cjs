'use strict';
// Tags JS arguments so their exact type reaches the core (NaN, undefined and functions survive).

function tag(a) {
  if (a === undefined) return { t: 'undefined' };
  if (a === null) return { t: 'null' };
  switch (typeof a) {
    case 'number':
      return { t: 'number', v: Number.isFinite(a) ? a : String(a) };
    case 'boolean':
      return { t: 'boolean', v: a };
    case 'string':
      return { t: 'string', v: a };
    case 'function':
      return { t: 'function' };
    case 'bigint':
    case 'symbol':
      return { t: 'other', v: typeof a };
    default:
      try {
        return { t: 'json', v: JSON.parse(JSON.stringify(a)) ?? null };
      } catch {
        return { t: 'other', v: 'unserializable object' };
      }
  }
}

module.exports = { tag };
