'use strict';
// S3db (alias Database): Tally's small s3db.js-compatible database over memory://, file://
// or S3 connection strings, and its Resource objects with hooks.
const { EventEmitter } = require('node:events');
const { pathToFileURL } = require('node:url');
const { join } = require('node:path');
const native = require('./native.cjs');
const { TallyError, wrap, wrapSync } = require('./errors.cjs');
const validation = require('./validation.cjs');

const HOOK_EVENTS = ['beforeInsert', 'afterInsert', 'beforeUpdate', 'afterUpdate', 'beforeDelete', 'afterDelete'];

class Resource {
  constructor(database, name, attributes, options = {}) {
    Object.defineProperty(this, 'database', { value: database, enumerable: false });
    this.name = name;
    this.attributes = attributes;
    this.config = { name, attributes, ...options };
    // s3db.js's attribute rules (see validation.cjs); compiled by createResource.
    Object.defineProperty(this, '_check', { value: validation.compile(name, attributes), writable: true });
    Object.defineProperty(this, '_hooks', { value: Object.fromEntries(HOOK_EVENTS.map((e) => [e, []])) });
  }

  /** Registers `fn` for `before|after` + `Insert|Update|Delete`; before-hooks may return new data. */
  addHook(event, fn) {
    if (!HOOK_EVENTS.includes(event)) {
      throw new TallyError('ERR_INVALID_ARGUMENT', `unknown hook "${event}" (use one of ${HOOK_EVENTS.join(', ')})`);
    }
    if (typeof fn !== 'function') {
      throw new TallyError('ERR_INVALID_ARGUMENT', `hook "${event}" must be a function`);
    }
    this._hooks[event].push(fn);
  }

  async _run(event, data) {
    let current = data;
    for (const fn of this._hooks[event]) {
      const r = await fn(current);
      if (r !== undefined) current = r;
    }
    return current;
  }

  get _native() {
    return this.database._requireNative();
  }

  async insert(data) {
    const input = this._check(await this._run('beforeInsert', data));
    const out = await wrap(this._native.insert(this.name, input));
    await this._run('afterInsert', out);
    return out;
  }

  async get(id) {
    return wrap(this._native.get(this.name, id));
  }

  async exists(id) {
    return wrap(this._native.exists(this.name, id));
  }

  /** `update` and `patch` share the update hooks; `method` is the native write. */
  async _change(method, id, changes) {
    const input = await this._run('beforeUpdate', { id, ...changes });
    const { id: _ignored, ...changed } = input;
    const rest = this._check(changed, { partial: true });
    const out = await wrap(this._native[method](this.name, id, rest));
    await this._run('afterUpdate', out);
    return out;
  }

  async update(id, changes) {
    return this._change('update', id, changes);
  }

  async patch(id, changes) {
    return this._change('patch', id, changes);
  }

  async delete(id) {
    await this._run('beforeDelete', { id });
    await wrap(this._native.delete(this.name, id));
    await this._run('afterDelete', { id });
  }

  async list(options = {}) {
    return wrap(this._native.list(this.name, options.limit ?? null, options.offset ?? null));
  }

  async count() {
    return wrap(this._native.count(this.name));
  }

  async getMany(ids) {
    return wrap(this._native.getMany(this.name, ids));
  }

  async listIds() {
    return (await this.list()).map((r) => r.id);
  }
}

/** The embedded default: a `.tally-data` folder in the working directory. */
function defaultConnectionString() {
  return pathToFileURL(join(process.cwd(), '.tally-data')).href;
}

/** Query parameters that carry credentials (`?secretAccessKey=…`, `?sessionToken=…`). */
const SECRET_PARAM = /secret|password|token|credential|signature|key$|^sk$/i;

/** The connection string with its password and credential parameters replaced by `***`. */
function maskConnectionString(connectionString) {
  // The userinfo ends at the last `@` (a secret may hold a raw `/`, even right after digits,
  // where a URL parser would see a port and a path).
  const masked = connectionString.replace(/^([a-z][a-z0-9+.-]*:\/\/[^:/@]*):[^]*@/i, '$1:***@');
  let url;
  try {
    url = new URL(masked);
  } catch {
    return masked;
  }
  let changed = false;
  for (const key of [...url.searchParams.keys()]) {
    if (SECRET_PARAM.test(key)) {
      url.searchParams.set(key, '***');
      changed = true;
    }
  }
  return changed ? url.href.replaceAll('%2A%2A%2A', '***') : masked;
}

class S3db extends EventEmitter {
  /** The connection string as given: never printed, logged or serialized. */
  #connectionString;

  constructor(options = {}) {
    super();
    this.#connectionString = options.connectionString ?? defaultConnectionString();
    this.resources = {};
    this.plugins = {};
    this.pluginRegistry = this.plugins;
    this._native = null;
    this._connected = false;
    if (Array.isArray(options.plugins)) this._constructorPlugins = options.plugins;
  }

  _requireNative() {
    if (!this._native) this._native = wrapSync(() => new native.NativeDatabase(this.#connectionString));
    return this._native;
  }

  /** The connection string with its secrets masked (`s3://KEY:***@bucket/prefix`). */
  get connectionString() {
    return maskConnectionString(this.#connectionString);
  }

  /** What `JSON.stringify(db)` shows: no secrets, no internals. */
  toJSON() {
    return { connectionString: this.connectionString, connected: this._connected, resources: Object.keys(this.resources) };
  }

  /** What `util.inspect(db)` and `console.log(db)` show. */
  [Symbol.for('nodejs.util.inspect.custom')](depth, options, inspect) {
    return `S3db ${inspect(this.toJSON(), options)}`;
  }

  isConnected() {
    return this._connected;
  }

  async connect() {
    this._requireNative();
    this._connected = true;
    for (const p of this._constructorPlugins ?? []) await this.usePlugin(p);
    this._constructorPlugins = [];
    this.emit('connected', new Date());
    return this;
  }

  /** Creates a resource, or attaches to the stored one of that name. */
  async createResource(config) {
    if (!config || typeof config.name !== 'string') {
      throw new TallyError('ERR_INVALID_ARGUMENT', 'createResource needs { name, attributes }');
    }
    const { name, attributes = {}, ...rest } = config;
    // Rules are compiled first: an attribute Tally cannot check writes nothing.
    const check = validation.compile(name, attributes);
    await wrap(this._requireNative().createResource(name, attributes));
    const resource = this.resources[name] ?? new Resource(this, name, attributes, rest);
    resource.attributes = attributes;
    resource._check = check;
    this.resources[name] = resource;
    for (const plugin of Object.values(this.plugins)) {
      if (typeof plugin._onResourceCreated === 'function') plugin._onResourceCreated(resource);
    }
    this.emit('resource:created', name);
    return resource;
  }

  async resource(name) {
    if (this.resources[name]) return this.resources[name];
    const names = await wrap(this._requireNative().resourceNames());
    if (!names.includes(name)) throw new TallyError('ERR_UNKNOWN_RESOURCE', `resource "${name}" does not exist`);
    const r = new Resource(this, name, {});
    this.resources[name] = r;
    return r;
  }

  async listResources() {
    return (await wrap(this._requireNative().resourceNames())).map((name) => ({ name }));
  }

  /** Installs and starts a plugin; registered as `eventualconsistency` for the EC plugin. */
  async usePlugin(plugin, name = null) {
    const key = name ?? plugin.constructor.name.replace('Plugin', '').toLowerCase();
    if (typeof plugin.setInstanceName === 'function') plugin.setInstanceName(key);
    this.plugins[key] = plugin;
    if (!this._connected) await this.connect();
    await plugin.install(this);
    await plugin.start();
    return plugin;
  }

  async uninstallPlugin(name) {
    const plugin = this.plugins[name];
    if (!plugin) return;
    await plugin.stop();
    if (typeof plugin.uninstall === 'function') await plugin.uninstall();
    delete this.plugins[name];
    this.emit('db:plugin:uninstalled', { name, plugin });
  }

  /** Stops every plugin (finishing in-flight work) and closes the database. */
  async disconnect() {
    for (const plugin of Object.values(this.plugins)) await plugin.stop();
    this._connected = false;
    this.emit('disconnected', new Date());
  }
}

module.exports = { S3db, Database: S3db, Resource, maskConnectionString };
