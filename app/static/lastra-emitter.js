// One event emitter for the client and the calls: on(type, fn) returns an unsubscribe
// function; a handler that throws is logged and does not stop the others. Handlers of '*'
// get every event, with its type first.

export class Emitter {
  /** @param {string} label prefix of the log line when a handler throws */
  constructor(label) {
    this._label = label;
    this._handlers = new Map();
  }

  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this.off(type, fn);
  }

  off(type, fn) {
    const set = this._handlers.get(type);
    if (set) set.delete(fn);
  }

  /** Forget every handler. */
  clear() { this._handlers.clear(); }

  emit(type, ...args) {
    const call = (fn, ...a) => {
      try { fn(...a); } catch (err) { console.error(`${this._label}: ${type} handler failed`, err); }
    };
    for (const fn of this._handlers.get(type) || []) call(fn, ...args);
    for (const fn of this._handlers.get('*') || []) call(fn, type, ...args);
  }
}
