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

/**
 * Turns an error from the addon into a TallyError. The addon's errors carry the core's stable
 * code as their `code` property; errors of napi-rs itself (a status name such as
 * `InvalidArg`) and of JavaScript pass through as they are.
 */
function fromNative(err) {
  if (err instanceof TallyError) return err;
  if (err instanceof Error && typeof err.code === 'string' && err.code.startsWith('ERR_')) {
    return new TallyError(err.code, err.message);
  }
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
