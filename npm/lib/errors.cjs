'use strict';
// TallyError: every error the package throws carries a stable `code`.

class TallyError extends Error {
  /**
   * @param {string} code stable code such as ERR_INVALID_AMOUNT
   * @param {string} message what was wrong, with which resource, field, record or option
   */
  constructor(code, message) {
    super(message);
    this.name = 'TallyError';
    this.code = code;
  }
}

const CODED = /^\[(ERR_[A-Z_]+)\] ([\s\S]*)$/;

/** Turns an error from the addon (`[ERR_CODE] message`) into a TallyError. */
function fromNative(err) {
  if (err instanceof TallyError) return err;
  const m = err && typeof err.message === 'string' ? CODED.exec(err.message) : null;
  if (m) return new TallyError(m[1], m[2]);
  return err;
}

/** Awaits a native promise, converting its rejection. */
async function wrap(promise) {
  try {
    return await promise;
  } catch (e) {
    throw fromNative(e);
  }
}

/** Runs a synchronous native call, converting its exception. */
function wrapSync(fn) {
  try {
    return fn();
  } catch (e) {
    throw fromNative(e);
  }
}

module.exports = { TallyError, fromNative, wrap, wrapSync };
