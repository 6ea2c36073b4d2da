// Counts this origin's open tabs that hold an SSE stream, so the seventh one can say why it
// hangs: over HTTP/1.1 a browser opens at most six connections per origin, and each SSE
// stream keeps one busy for as long as the tab is open. (WebSocket connections and HTTP/2
// do not have this limit.)
//
// Tabs talk over a BroadcastChannel: each announces {id, sse} every couple of seconds and
// when it changes; entries not heard from for a while are dropped (a crashed tab).

const CHANNEL = 'lastra-tabs';
const ANNOUNCE_MS = 2000;
const EXPIRE_MS = 5000;

export class TabCounter {
  constructor() {
    this.id = (crypto.randomUUID && crypto.randomUUID()) || String(Math.random()).slice(2);
    this.sse = false;
    this._peers = new Map(); // tab id -> {sse, seen}
    this._chan = typeof BroadcastChannel === 'function' ? new BroadcastChannel(CHANNEL) : null;
    if (!this._chan) return;
    this._chan.onmessage = (ev) => this._receive(ev.data);
    this._timer = setInterval(() => this._announce(), ANNOUNCE_MS);
    addEventListener('pagehide', () => this._post({ kind: 'bye' }));
    this._post({ kind: 'hello' });
  }

  /** Tell the other tabs whether this one holds an SSE stream now. */
  setSse(on) {
    if (this.sse === on) return;
    this.sse = on;
    this._announce();
  }

  /** How many *other* live tabs hold an SSE stream. */
  otherSseTabs() {
    const now = Date.now();
    let n = 0;
    for (const [id, p] of this._peers) {
      if (now - p.seen > EXPIRE_MS) this._peers.delete(id);
      else if (p.sse) n += 1;
    }
    return n;
  }

  close() {
    if (!this._chan) return;
    this._post({ kind: 'bye' });
    clearInterval(this._timer);
    this._chan.close();
    this._chan = null;
  }

  _announce() { this._post({ kind: 'state', sse: this.sse }); }

  _post(msg) {
    if (this._chan) this._chan.postMessage({ ...msg, id: this.id });
  }

  _receive(msg) {
    if (!msg || typeof msg.id !== 'string' || msg.id === this.id) return;
    if (msg.kind === 'bye') { this._peers.delete(msg.id); return; }
    this._peers.set(msg.id, { sse: Boolean(msg.sse), seen: Date.now() });
    if (msg.kind === 'hello') this._announce();
  }
}

/** True when the page came over a protocol that multiplexes (HTTP/2, HTTP/3). */
export function multiplexed() {
  try {
    const nav = performance.getEntriesByType('navigation')[0];
    const proto = nav && nav.nextHopProtocol;
    return proto === 'h2' || proto === 'h3' || (typeof proto === 'string' && proto.startsWith('h3'));
  } catch {
    return false;
  }
}

/** The per-origin connection limit that HTTP/1.1 browsers apply. */
export const HTTP1_STREAM_LIMIT = 6;
