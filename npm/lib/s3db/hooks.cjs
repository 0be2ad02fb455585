'use strict';
// The hooks Tally puts on an s3db.js Database: resources created later get the plugin's
// methods, disconnect() waits for the plugin, an insert applies the record's waiting
// transactions, and a delete forgets Tally's state of the record.
const { TallyError, wrap } = require('../errors.cjs');
const logging = require('../logging.cjs');

/** A copy of `data` with `value` at the dotted `path`. */
function withPath(data, path, value) {
  const out = { ...data };
  const parts = path.split('.');
  let cur = out;
  for (const p of parts.slice(0, -1)) {
    cur[p] = cur[p] && typeof cur[p] === 'object' ? { ...cur[p] } : {};
    cur = cur[p];
  }
  cur[parts[parts.length - 1]] = value;
  return out;
}

/**
 * Hooks `plugin` into `database` (after its resources got their methods): resources created
 * later, and a disconnect() that stops every Tally plugin (`isPlugin`) first.
 */
function install(plugin, database, isPlugin) {
  plugin._afterCreateResource = async (payload) => {
    if (payload && payload.resource && plugin.database === database) plugin._onResourceCreated(payload.resource);
    return payload;
  };
  database.addHook('afterCreateResource', plugin._afterCreateResource);
  // s3db.js's disconnect() stops only constructor-form plugins and does not wait for them:
  // finish in-flight work and stop timers first, as SPEC §4 asks.
  if (typeof database.disconnect === 'function' && !database.disconnect.__tally) {
    const disconnect = database.disconnect;
    const wrapped = async (...args) => {
      for (const p of Object.values(database.plugins ?? {})) {
        if (isPlugin(p)) await p.stop();
      }
      return disconnect.apply(database, args);
    };
    Object.defineProperty(wrapped, '__tally', { value: true });
    database.disconnect = wrapped;
  }
}

/** s3db.js resources: attributes for the path rules, and deletions forget Tally's state. */
function bindResource(plugin, resource) {
  if (resource.__tallyBound === plugin) return;
  Object.defineProperty(resource, '__tallyBound', { value: plugin, configurable: true });
  const attributes = resource.attributes ?? resource.config?.attributes ?? {};
  if (!plugin._native.bindResource(resource.name, attributes)) {
    logging.log(plugin.logger, 'warn', { resource: resource.name }, `attributes of s3db.js resource "${resource.name}" not understood; nested-path rules are not checked`);
  }
  // As in standalone mode, an insert applies the record's waiting transactions.
  // s3db.js resources cannot remove a hook: once uninstalled, these pass the data through.
  const bound = () => resource.__tallyBound === plugin;
  resource.addHook('afterInsert', async (data) => {
    if (!bound() || !data || data.id === undefined) return data;
    plugin._now();
    let values;
    let failed;
    try {
      ({ values, failed } = await plugin._track(plugin._native.recordInserted(resource.name, String(data.id), data)));
    } catch (error) {
      failed = [{ error }];
      values = {};
    }
    // The insert itself succeeded; transactions of a field that failed stay pending for the
    // next consolidation.
    for (const f of failed) {
      const error = f.error ?? new TallyError(f.code, f.message);
      plugin._dispatch('plg:eventual-consistency:consolidation-error', { error, resource: resource.name, field: f.field, recordId: data.id });
    }
    let out = data;
    for (const [path, value] of Object.entries(values)) {
      if (typeof value === 'number') out = withPath(out, path, value);
    }
    return out;
  });
  resource.addHook('afterDelete', async (data) => {
    // Ids Tally rejects never had state; nothing to forget. A failure is reported; the next
    // GC retires the state of a record that is gone, before the id can come back.
    if (bound() && data && data.id !== undefined) {
      await wrap(plugin._native.forget(resource.name, String(data.id))).catch((error) => {
        if (error?.code === 'ERR_INVALID_ARGUMENT') return;
        plugin._dispatch('plg:eventual-consistency:consolidation-error', { error, resource: resource.name, recordId: data.id });
      });
    }
    return data;
  });
}

/** Takes back the database hook `install` added (resource hooks cannot be removed: they
 * pass the data through once the plugin is gone). */
function uninstall(plugin, database) {
  if (plugin._afterCreateResource && typeof database.removeHook === 'function') {
    database.removeHook('afterCreateResource', plugin._afterCreateResource);
  }
}

module.exports = { install, bindResource, uninstall };
