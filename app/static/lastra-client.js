// LastraClient — one connection API for Lastra Chat over WebSocket or SSE+POST.
//
//   import { LastraClient } from '/lastra-client.js';
//   const client = new LastraClient({ userName: 'Ada' });
//   client.on('chat', (msg) => render(msg));
//   client.on('status', (s) => banner(s));          // {status, transport, fallback, ...}
//   const clientId = client.send('chat', { text: 'hello' });
//
// Options (all optional except userName when no token is given):
//   url                base URL of the server (default: this page's origin)
//   userName           display name used to create the session
//   token              an existing session token; without one the client calls
//                      POST /api/session itself and remembers the token in localStorage
//   refreshToken       renew the token before it expires (default true; see below)
//   autoConnect        connect from the constructor (default true)
//   reconnectLimit     attempts before giving up (default 20; Infinity allowed)
//   reconnectInterval  backoff base in ms (default 1000); delay = random(0, min(30 s, base·2^n))
//                      (after a 1012 server restart, the next 3: random(0, base); the
//                      doubling then starts over from base: n counts the later ones)
//   heartbeatInterval  ping period in ms (default: the server's `ready.heartbeatInterval`)
//   transport          'auto' (default, follow GET /api/transport) | 'ws' | 'sse'
//   reportInterval     ms between `delivery-report`s of what this client measured (default
//                      30000; 0: none). See lastra-reports.js.
//
// Properties: status (CONNECTING|OPEN|CLOSING|CLOSED), isConnected, error, transport
// ('ws'|'sse'|null), fallback (null or {from:'ws', reason}), userId, peerId, epoch, lastSeq,
// recovered (whether the last `ready` resumed without a gap), outbox, presenceCursor,
// presenceComplete (see "Large rooms").
//
// Events (on/off): every server event type (ready, history, chat, clear, presence,
// presence-diff, presence-page, typing, bot-state, ai-stream, webrtc-signal, ack, error,
// pong), plus
//   status          a snapshot whenever the connection state changes
//   fallback        {from, to, reason} when WebSocket could not be used
//   reconnecting    {attempt, delay}
//   message-state   {clientId, state: 'sending'|'sent'|'failed', text, id?, seq?, error?}
//   outbox          {queued, failed}
//   tab-limit       {tabs, limit} — too many SSE tabs for HTTP/1.1 (see below)
//   session         {userId, userName, refreshed} — a new token (refreshed: it replaced one)
//   *               (type, data, envelope) for everything
//
// Large rooms (protocol §8): above the server's LASTRA_PRESENCE_SNAPSHOT_MAX users, `presence`
// holds the first page of the list (join order, plus yourself) and {total, online, cursor},
// and the diffs carry only the changes within the part of the list this tab holds, plus the
// counts. The client does not page by itself: a tab that held the whole list would be sent
// every change in the room again (at 5,000 users, most of the server's presence traffic).
// Fetch what the user is about to see instead:
//   client.morePresence()  sends `presence-page` with the newest cursor, emits the answer as a
//                    `presence-page` event {users, total, online, cursor} (merge its users by
//                    userId like a diff's upserts) and resolves with it. It resolves null when
//                    there is nothing to fetch (the list is whole, not connected), returns the
//                    pending promise while a request is in flight, and asks again after 1 s
//                    while the server refuses with rate_limited (not emitted as an `error`).
//                    A new `presence` (a reconnect, the room shrinking back) replaces the list:
//                    a page still in flight is dropped and its promise resolves null.
//   presenceCursor   the next page's cursor; null when the list is whole (or not received yet)
//   presenceComplete presenceCursor === null. While false, show `online` (the newest of the
//                    snapshot's, the pages' and the diffs'), not the count of the list.
//
// Chat sends are never lost: each gets a clientId (its idempotency key), sits in an outbox
// persisted in sessionStorage until the server acks it, and is re-sent with the same
// clientId after a reconnect. Durable events are deduplicated by `seq`.
//
// Token refresh: tokens expire (`expiresIn` of POST /api/session, LASTRA_TOKEN_TTL). The
// client renews its token a quarter of its lifetime (at most 5 minutes) before expiry with
// POST /api/session + `Authorization: Bearer <old token>`, which keeps the userId. The open
// connection is not touched: the server checks a token when a connection opens and on each
// POST, so new POSTs and the next reconnect use the new token. A 401 (GET /api/transport, the
// SSE stream, a POST) or a 4401 close makes the client refresh once and try again. A token
// passed in `options.token` is renewed the same way while it is valid, but never replaced by
// a new identity: once it has expired, the client stops with `not_authenticated`.
//
// The seventh tab problem: over HTTP/1.1 browsers allow six connections per origin, and
// each SSE stream holds one. A seventh SSE tab would wait forever; this client counts SSE
// tabs (BroadcastChannel) and watches the stream-open time, and reports `tab-limit`.
// The fix is to serve Lastra over HTTP/2 (e.g. a TLS reverse proxy) or to enable WebSocket.

import { WsTransport, SseTransport } from './lastra-transports.js';
import { TabCounter, multiplexed, HTTP1_STREAM_LIMIT } from './lastra-tabs.js';
import { DeliveryMeter } from './lastra-reports.js';
import { Emitter } from './lastra-emitter.js';

export const Status = Object.freeze({
  CONNECTING: 'CONNECTING', OPEN: 'OPEN', CLOSING: 'CLOSING', CLOSED: 'CLOSED',
});

const DEFAULTS = Object.freeze({
  url: typeof location !== 'undefined' ? location.origin : '',
  userName: '',
  token: null,
  autoConnect: true,
  reconnectLimit: 20,
  reconnectInterval: 1000,
  maxReconnectInterval: 30000,
  heartbeatInterval: null,
  pongTimeout: 10000,
  wsOpenTimeout: 6000,
  sseOpenTimeout: 8000,
  sseReadyTimeout: 10000,
  sseIdleTimeout: 45000,
  requestTimeout: 10000,
  fallbackStickyMs: 10 * 60 * 1000,
  transport: 'auto',
  reportInterval: 30000,
  refreshToken: true,
  storageKey: 'lastra.session',
  outboxKey: 'lastra.outbox',
});

/** The refs of this client's own `presence-page` requests (see morePresence). */
const PAGE_REF = 'lastra-presence-page-';

const newId = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`);

function storage(kind) {
  try { return kind === 'local' ? window.localStorage : window.sessionStorage; } catch { return null; }
}

function readJson(store, key) {
  try { return JSON.parse(store.getItem(key) || 'null'); } catch { return null; }
}

function writeJson(store, key, value) {
  try {
    if (value === null) store.removeItem(key);
    else store.setItem(key, JSON.stringify(value));
  } catch { /* storage full or disabled: keep going in memory */ }
}

/** The claims of a JWT ({exp, iat, ...} in seconds), or {}. Only read, never trusted. */
function tokenClaims(token) {
  try {
    const part = token.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const claims = JSON.parse(atob(part + '='.repeat((4 - (part.length % 4)) % 4)));
    return claims && typeof claims === 'object' ? claims : {};
  } catch {
    return {};
  }
}

/** Refresh this long before expiry: a quarter of the token's lifetime, at most 5 minutes. */
const refreshMarginMs = (lifetimeMs) => Math.min(300000, Math.max(500, lifetimeMs / 4));

class ConnectError extends Error {
  constructor(message, extra = {}) {
    super(message);
    Object.assign(this, extra);
  }
}

export class LastraClient {
  constructor(options = {}) {
    this.options = { ...DEFAULTS, ...options };
    this.options.url = String(this.options.url || '').replace(/\/+$/, '');
    this.status = Status.CLOSED;
    this.error = null;
    this.transport = null;
    this.fallback = null;
    this.userId = null;
    this.userName = this.options.userName || null;
    this.peerId = null;
    this.epoch = null;
    this.lastSeq = null;
    this.recovered = null;
    this.limits = null;
    this.rtt = null;
    this.attempt = 0;
    this._quickRetries = 0; // attempts left in the short window after a 1012 (server restart)
    this._quickSpent = 0; // quick attempts since the last ready (not counted by the doubling)
    this.presenceCursor = null; // a large room's next page; null: the list is whole
    this._pageWait = null; // the morePresence() request in flight: {link, cursor, ref, promise, resolve}
    this._pages = 0;
    this.nextRetryAt = null;
    this.online = typeof navigator === 'undefined' ? true : navigator.onLine !== false;
    this.tabLimit = null;

    this._events = new Emitter('lastra');
    this._token = null;
    this._tokenExpiresAt = null; // ms, local clock
    this._tokenLifetime = null; // ms
    this._forceRefresh = false;
    this._refreshing = null;
    this._ownsSession = !this.options.token;
    if (this.options.token) this._setToken(this.options.token);
    this._local = storage('local');
    this._session = storage('session');
    this._gen = 0;
    this._link = null;
    this._stopped = true;
    this._timers = {};
    this._wsBrokenUntil = 0;
    this._wsBrokenReason = null;
    this._tabs = new TabCounter();
    this._outbox = this._loadOutbox();
    this._meter = new DeliveryMeter();

    this._onOnline = () => this._networkChanged(true);
    this._onOffline = () => this._networkChanged(false);
    this._onVisible = () => {
      if (document.visibilityState !== 'visible') return;
      if (this._timers.retry) this.reconnectNow();
      // Timers sleep with the tab: renew a token that is due while it still works.
      if (!this._stopped && this._token && !this._tokenFresh() && this._tokenExpiresAt > Date.now()) {
        this._refreshToken().catch(() => {});
      }
    };
    addEventListener('online', this._onOnline);
    addEventListener('offline', this._onOffline);
    document.addEventListener('visibilitychange', this._onVisible);

    if (this.options.autoConnect) queueMicrotask(() => this.connect());
  }

  // ---------------------------------------------------------------- public API

  get isConnected() { return this.status === Status.OPEN; }

  /** Start connecting (no-op when already connecting or open). */
  connect() {
    if (this.status === Status.OPEN || this.status === Status.CONNECTING) return;
    this._stopped = false;
    this._gaveUp = false;
    this.attempt = 0;
    this.error = null;
    this._clearTimer('retry');
    this._attempt();
  }

  /** Close the connection and stop reconnecting. Queued chats stay in the outbox. */
  disconnect() {
    this._stopped = true;
    this._gen += 1;
    this._clearAllTimers();
    this.nextRetryAt = null;
    this._pageDone(this._pageWait, null);
    if (this._link) {
      this._setStatus(Status.CLOSING);
      const link = this._link;
      this._link = null;
      link.close(1000, 'client closing');
    }
    this._tabs.setSse(false);
    this._setStatus(Status.CLOSED);
  }

  /** Skip the backoff wait and try now (e.g. a "Retry now" button). */
  reconnectNow() {
    if (this._stopped) { this.connect(); return; }
    if (this.status === Status.OPEN || this.status === Status.CONNECTING) return;
    this._clearTimer('retry');
    this._attempt();
  }

  /**
   * Send one message. `chat` is queued (and persisted) until acknowledged and returns its
   * clientId; other types are sent only while connected and return true/false.
   */
  send(type, data = {}, { ref } = {}) {
    if (type === 'chat') {
      const text = typeof data === 'string' ? data : String(data.text ?? '');
      const item = { clientId: data.clientId || newId(), text, state: 'sending', ts: Date.now(), userId: this.userId };
      this._outbox.push(item);
      this._saveOutbox();
      this._emit('message-state', { ...item });
      this._emitOutbox();
      if (this.isConnected) this._transmitChat(item);
      return item.clientId;
    }
    if (!this.isConnected || !this._link) return false;
    this._link.send(type, data, ref).then(
      (reply) => { if (reply && (ref || Object.keys(reply).length)) this._emit('ack', reply); },
      (err) => this._postFailed(err),
    );
    return true;
  }

  /** Send a failed chat again with its original clientId. */
  retry(clientId) {
    const item = this._outbox.find((m) => m.clientId === clientId);
    if (!item) return false;
    item.state = 'sending';
    delete item.error;
    this._saveOutbox();
    this._emit('message-state', { ...item });
    this._emitOutbox();
    if (this.isConnected) this._transmitChat(item);
    else if (this.status === Status.CLOSED && !this._timers.retry) this.reconnectNow();
    return true;
  }

  /** Drop a queued or failed chat. */
  discard(clientId) {
    const before = this._outbox.length;
    this._outbox = this._outbox.filter((m) => m.clientId !== clientId);
    if (this._outbox.length === before) return false;
    this._saveOutbox();
    this._emitOutbox();
    return true;
  }

  /** Chats not yet acknowledged, oldest first: [{clientId, text, state, ts}]. */
  get outbox() { return this._outbox.map((m) => ({ ...m })); }

  /** Whether the user list is whole (false: a large room's list, partly fetched). */
  get presenceComplete() { return this.presenceCursor === null; }

  /**
   * Fetch the next page of a large room's user list (protocol §8); resolves with the page
   * (also emitted as `presence-page`), or null when there is nothing to fetch or the list was
   * replaced meanwhile. While a request is in flight, returns its promise.
   */
  morePresence() {
    const wait = this._pageWait;
    if (wait && wait.link === this._link) return wait.promise;
    if (wait) this._pageDone(wait, null); // its link is gone: the answer never comes
    if (this.presenceCursor === null || !this.isConnected || !this._link) return Promise.resolve(null);
    const next = { link: this._link, cursor: this.presenceCursor, ref: null, resolve: null, promise: null };
    next.promise = new Promise((resolve) => { next.resolve = resolve; });
    this._pageWait = next;
    this._requestPage(next);
    return next.promise;
  }

  on(type, handler) { return this._events.on(type, handler); }

  off(type, handler) { this._events.off(type, handler); }

  /** Forget the remembered session (e.g. "change name"). Disconnects first. */
  forgetSession() {
    this.disconnect();
    if (this._ownsSession) {
      this._setToken(null);
      if (this._local) writeJson(this._local, this.options.storageKey, null);
    }
  }

  /** Close everything, including the tab counter and window listeners. */
  destroy() {
    this.disconnect();
    this._tabs.close();
    removeEventListener('online', this._onOnline);
    removeEventListener('offline', this._onOffline);
    document.removeEventListener('visibilitychange', this._onVisible);
  }

  snapshot() {
    const queued = this._outbox.filter((m) => m.state === 'sending').length;
    return {
      status: this.status, transport: this.transport, fallback: this.fallback, online: this.online,
      attempt: this.attempt, nextRetryAt: this.nextRetryAt, queued,
      failed: this._outbox.length - queued, error: this.error, tabLimit: this.tabLimit,
    };
  }

  // ---------------------------------------------------------------- connecting

  async _attempt() {
    const gen = ++this._gen;
    this.nextRetryAt = null;
    this._setStatus(Status.CONNECTING);
    try {
      if (!this.online) throw new ConnectError('offline', { offline: true });
      await this._ensureSession();
      if (gen !== this._gen) return;
      let kind = this.options.transport;
      if (kind === 'auto') kind = (await this._askTransport()).transport === 'sse' ? 'sse' : 'ws';
      if (gen !== this._gen) return;
      let fallback = null;
      if (kind === 'ws' && Date.now() < this._wsBrokenUntil && this.options.transport === 'auto') {
        kind = 'sse';
        fallback = { from: 'ws', reason: this._wsBrokenReason };
      }
      if (kind === 'ws') {
        try {
          await this._open('ws', gen);
          this._setFallback(null);
          return;
        } catch (err) {
          if (gen !== this._gen) return;
          if (!err.wsSpecific || this.options.transport === 'ws') throw err;
          fallback = { from: 'ws', reason: err.reason };
        }
      }
      if (fallback) this._setFallback(fallback, true);
      await this._open('sse', gen);
      if (fallback) {
        // SSE works where WebSocket did not: stick to SSE for a while rather than paying
        // the WebSocket timeout on every reconnect. A 4403 is the server's decision and
        // GET /api/transport already reflects it.
        if (fallback.reason !== 'transport-disabled' && this._wsBrokenUntil < Date.now()) {
          this._wsBrokenUntil = Date.now() + this.options.fallbackStickyMs;
          this._wsBrokenReason = fallback.reason;
        }
        this._setFallback(fallback);
      } else {
        this._setFallback(null);
      }
    } catch (err) {
      if (gen !== this._gen) return;
      this._attemptFailed(err);
    }
  }

  async _fetch(path, init = {}) {
    try {
      return await fetch(`${this.options.url}${path}`, {
        cache: 'no-store', ...init, signal: AbortSignal.timeout(this.options.requestTimeout),
      });
    } catch (err) {
      throw new ConnectError(`cannot reach the server (${err && err.name === 'TimeoutError' ? 'timeout' : 'network error'})`, { network: true });
    }
  }

  /** Make sure we hold a token that is not about to expire (create or refresh one). */
  async _ensureSession() {
    if (!this._token && this._ownsSession && this._local) {
      const stored = readJson(this._local, this.options.storageKey);
      if (stored && stored.token && (!this.userName || stored.userName === this.userName)) {
        this._setToken(stored.token, stored.expiresAt ? { expiresAt: stored.expiresAt } : {});
        if (this._tokenExpiresAt === null || this._tokenExpiresAt > Date.now()) {
          this.userId = stored.userId;
          this.userName = stored.userName;
          this._emit('session', { userId: this.userId, userName: this.userName, refreshed: false });
        } else {
          this._setToken(null); // long expired: a new session (and userId) it is
        }
      }
    }
    if (this._token && !this._forceRefresh && this._tokenFresh()) {
      this._scheduleRefresh();
      return;
    }
    if (!this._ownsSession && (!this.options.refreshToken || !this.userName)) {
      if (this._forceRefresh) throw new ConnectError('the session token was refused', { auth: true, final: true });
      return; // use the given token as it is; the server will say if it is no good
    }
    await this._refreshToken();
  }

  _setToken(token, { expiresIn, expiresAt } = {}) {
    this._token = token || null;
    this._tokenExpiresAt = null;
    this._tokenLifetime = null;
    if (!token) return;
    const claims = tokenClaims(token);
    if (typeof expiresIn === 'number' && expiresIn > 0) {
      // Counted on our own clock from now, so a skewed clock does not matter.
      this._tokenExpiresAt = Date.now() + expiresIn * 1000;
      this._tokenLifetime = expiresIn * 1000;
    } else if (typeof expiresAt === 'number') {
      this._tokenExpiresAt = expiresAt;
    } else if (typeof claims.exp === 'number') {
      this._tokenExpiresAt = claims.exp * 1000;
    }
    if (this._tokenLifetime === null && typeof claims.exp === 'number' && typeof claims.iat === 'number') {
      this._tokenLifetime = (claims.exp - claims.iat) * 1000;
    }
  }

  /** True when the token is not within its refresh margin (opaque tokens always are). */
  _tokenFresh() {
    if (!this._token) return false;
    if (this._tokenExpiresAt === null) return true;
    const left = this._tokenExpiresAt - Date.now();
    return left > refreshMarginMs(this._tokenLifetime ?? left);
  }

  _scheduleRefresh() {
    if (!this.options.refreshToken || this._tokenExpiresAt === null || this._stopped) return;
    if (!this._ownsSession && !this.userName) return;
    const lifetime = this._tokenLifetime ?? (this._tokenExpiresAt - Date.now());
    const at = this._tokenExpiresAt - refreshMarginMs(lifetime);
    const delay = Math.min(2 ** 31 - 1, Math.max(0, at - Date.now()));
    this._setTimer('refresh', delay, () => {
      this._refreshToken().catch((err) => {
        if (this._stopped) return;
        // Try again soon, while the old token still works; once it has expired, the next
        // connection attempt or 401 takes over.
        const left = (this._tokenExpiresAt ?? 0) - Date.now();
        if (left > 1000) this._setTimer('refresh', Math.min(10000, left / 3), () => this._scheduleRefresh());
        console.warn('lastra: token refresh failed', err && err.message);
      });
    });
  }

  /** POST /api/session with the current token as Bearer; one request at a time. */
  _refreshToken() {
    if (!this._refreshing) {
      this._refreshing = this._doRefresh().finally(() => { this._refreshing = null; });
    }
    return this._refreshing;
  }

  async _doRefresh() {
    if (!this.userName) throw new ConnectError('a userName is needed to create a session', { fatal: true, code: 'invalid' });
    const prev = this._token;
    const alive = Boolean(prev) && (this._tokenExpiresAt === null || this._tokenExpiresAt > Date.now());
    if (!this._ownsSession && !alive) throw new ConnectError('the session token has expired', { auth: true, final: true });
    const headers = { 'Content-Type': 'application/json' };
    if (alive) headers.Authorization = `Bearer ${prev}`;
    const resp = await this._fetch('/api/session', { method: 'POST', headers, body: JSON.stringify({ userName: this.userName }) });
    const body = await resp.json().catch(() => null);
    if (!resp.ok || !body || !body.token) {
      const fatal = resp.status === 422 || resp.status === 400;
      throw new ConnectError((body && body.message) || `session refused (HTTP ${resp.status})`, { fatal, code: (body && body.code) || 'internal', network: !fatal });
    }
    if (!this._ownsSession && this.userId && body.userId !== this.userId) {
      // The server no longer accepts the given token: do not turn into someone else.
      throw new ConnectError('the session token was refused', { auth: true, final: true });
    }
    this._forceRefresh = false;
    this._setToken(body.token, { expiresIn: body.expiresIn });
    this.userId = body.userId;
    this.userName = body.userName;
    if (this._ownsSession && this._local) {
      writeJson(this._local, this.options.storageKey, {
        token: body.token, userId: body.userId, userName: body.userName, expiresAt: this._tokenExpiresAt,
      });
    }
    this._emit('session', { userId: this.userId, userName: this.userName, refreshed: Boolean(prev) });
    this._scheduleRefresh();
    return body.token;
  }

  async _askTransport() {
    const resp = await this._fetch('/api/transport', { headers: { Authorization: `Bearer ${this._token}` } });
    if (resp.status === 401) throw new ConnectError('session expired', { auth: true });
    if (!resp.ok) {
      if (resp.status === 404) return { transport: 'ws', reason: 'no transport endpoint' };
      throw new ConnectError(`GET /api/transport failed (HTTP ${resp.status})`, { network: true });
    }
    const body = await resp.json().catch(() => ({}));
    return { transport: body.transport === 'sse' ? 'sse' : 'ws', reason: body.reason || '' };
  }

  /** Open a transport; resolves once `ready` has arrived, rejects if it never does. */
  _open(kind, gen) {
    return new Promise((resolve, reject) => {
      let settled = false;
      let readySeen = false;
      const settle = (err) => {
        if (settled) return;
        settled = true;
        this._clearTimer('open');
        if (err) reject(err); else resolve();
      };
      const handlers = {
        onEnvelope: (env) => {
          if (this._link !== link) return;
          if (env.type === 'ready' && !readySeen) {
            readySeen = true;
            this._becameReady(link, env.data || {});
            settle(null);
          }
          this._receive(env);
        },
        onActivity: () => { if (this._link === link) this._alive(); },
        onOpen: () => {
          if (kind !== 'sse' || this._link !== link) return;
          this._setTabLimit(null);
          this._setTimer('open', this.options.sseReadyTimeout, () => {
            settle(new ConnectError('the event stream opened but sent nothing', { network: true }));
            this._drop(link, 'no ready');
          });
        },
        onClose: (info) => {
          if (this._link !== link) return;
          this._link = null;
          if (!readySeen) {
            this._tabs.setSse(false);
            settle(this._openError(kind, info));
          } else {
            this._linkLost(info);
          }
        },
      };
      let link;
      if (kind === 'ws') {
        const auth = { token: this._token };
        if (this.epoch && this.lastSeq !== null) { auth.lastSeq = this.lastSeq; auth.epoch = this.epoch; }
        const wsUrl = `${this.options.url.replace(/^http/, 'ws')}/api/chat.ws`;
        this._setTimer('open', this.options.wsOpenTimeout, () => {
          settle(new ConnectError('WebSocket did not open in time', { wsSpecific: true, reason: 'ws-open-timeout' }));
          this._drop(link, 'open timeout');
        });
        link = new WsTransport({ url: wsUrl, auth, ...handlers });
      } else {
        const lastEventId = this.epoch && this.lastSeq !== null ? `${this.epoch}:${this.lastSeq}` : null;
        const others = this._tabs.otherSseTabs();
        if (!multiplexed() && others >= HTTP1_STREAM_LIMIT) this._setTabLimit({ tabs: others + 1, limit: HTTP1_STREAM_LIMIT, reason: 'counted' });
        this._setTimer('open', this.options.sseOpenTimeout, () => {
          // Still waiting for response headers: the browser is most likely holding the
          // request back for a free connection. Keep waiting, but say so.
          if (!multiplexed()) this._setTabLimit({ tabs: Math.max(others + 1, HTTP1_STREAM_LIMIT + 1), limit: HTTP1_STREAM_LIMIT, reason: 'stalled' });
        });
        this._tabs.setSse(true);
        link = new SseTransport({
          baseUrl: this.options.url, token: () => this._token, lastEventId, peerId: () => this.peerId,
          refresh: () => this._refreshToken(), ...handlers,
        });
      }
      if (gen !== this._gen) { link.close(); settle(new ConnectError('superseded')); return; }
      this._link = link;
    });
  }

  _openError(kind, info) {
    if (info.code === 4401 || info.status === 401) return new ConnectError('not authenticated', { auth: true });
    if (kind === 'ws') {
      if (info.code === 4403) return new ConnectError('WebSocket is not enabled for this user', { wsSpecific: true, reason: 'transport-disabled' });
      const reason = info.opened ? 'ws-closed-before-ready' : 'ws-handshake-failed';
      return new ConnectError(`WebSocket failed (${info.code}${info.reason ? ` ${info.reason}` : ''})`, { wsSpecific: true, reason });
    }
    if (info.status === 403) return new ConnectError('SSE is disabled on this server', { code: 'forbidden', sseDisabled: true });
    return new ConnectError(`event stream failed (${info.status || info.reason || info.code})`, { network: true });
  }

  _becameReady(link, data) {
    this.transport = link.kind;
    this.peerId = data.peerId || null;
    if (data.userId) this.userId = data.userId;
    if (data.userName) this.userName = data.userName;
    this.limits = data.limits || null;
    this._meter.ready(data, Boolean(this.epoch) && this.lastSeq !== null, data.epoch === this.epoch);
    if (this.epoch && data.epoch !== this.epoch) this.lastSeq = null; // history was lost: start over
    this.epoch = data.epoch || null;
    if (!data.recovered) this.lastSeq = null; // a `history` snapshot follows
    this._readyLastSeq = typeof data.lastSeq === 'number' ? data.lastSeq : null;
    this.recovered = Boolean(data.recovered);
    this.attempt = 0;
    this._quickRetries = 0;
    this._quickSpent = 0;
    this.error = null;
    this._authRetried = false;
    this._scheduleRefresh();
    this._tabs.setSse(link.kind === 'sse');
    this._setTabLimit(null);
    this._setStatus(Status.OPEN);
    this._startHeartbeat(link, data.heartbeatInterval);
    if (this.options.reportInterval > 0 && !this._timers.report) {
      this._setInterval('report', this.options.reportInterval, () => this._report());
    }
    // Flush after the `ready` handlers have run (see _receive), in original order.
    queueMicrotask(() => { if (this._link === link) this._flushOutbox(); });
  }

  _attemptFailed(err) {
    this._link = null;
    this._tabs.setSse(false);
    if (err.auth && !err.final && !this._authRetried) {
      // A 401 or a 4401: refresh the token once (a refused one gets a new session), retry.
      this._authRetried = true;
      this._forceRefresh = true;
      this._attempt();
      return;
    }
    this._authRetried = false;
    this.error = { code: err.code || (err.auth ? 'not_authenticated' : err.offline ? 'offline' : 'network'), message: err.message };
    if (err.fatal || err.final || (err.auth && !this._ownsSession)) {
      this._stopped = true;
      this._setStatus(Status.CLOSED);
      return;
    }
    this._scheduleReconnect();
  }

  _linkLost(info) {
    this._stopHeartbeat();
    this._pageDone(this._pageWait, null); // its answer went with the link
    this._tabs.setSse(false);
    this.peerId = null;
    if (this._stopped) { this._setStatus(Status.CLOSED); return; }
    this.error = { code: 'disconnected', message: `connection lost (${info.code}${info.reason ? ` ${info.reason}` : ''})` };
    if (info.code === 4401) this._forceRefresh = true; // refresh before coming back
    // 4409 (slow consumer) asks us to come straight back; 1012 (server restarting) within a
    // short jittered window (reconnectInterval, ≤ 1 s by default) for the next 3 attempts, so a
    // restart's crowd is spread but not left waiting on a doubled backoff while it boots.
    if (info.code === 1012) this._quickRetries = 3;
    this._scheduleReconnect(info.code === 4409);
  }

  _scheduleReconnect(immediate = false) {
    if (this._stopped) return;
    this._stopHeartbeat();
    if (!this.online) {
      // Nothing to do until the browser is back online (see _networkChanged).
      this.nextRetryAt = null;
      this._setStatus(Status.CLOSED);
      return;
    }
    if (this.attempt >= this.options.reconnectLimit) {
      this._stopped = true;
      this._gaveUp = true;
      this.nextRetryAt = null;
      this.error = { code: 'reconnect_limit', message: `gave up after ${this.attempt} attempts` };
      for (const m of this._outbox) if (m.state === 'sending') this._markFailed(m, 'not connected');
      this._setStatus(Status.CLOSED);
      return;
    }
    const quick = this._quickRetries > 0;
    if (quick) { this._quickRetries -= 1; this._quickSpent += 1; }
    // the doubling starts after the quick window, not as if those attempts had backed off:
    // a restart slower than the window costs 1, 2, 4 s more, not 8, 16, 30
    const n = this.attempt - this._quickSpent;
    const cap = Math.min(this.options.maxReconnectInterval, this.options.reconnectInterval * (quick ? 1 : 2 ** n));
    const delay = immediate ? 0 : Math.round(Math.random() * cap); // full jitter
    this.attempt += 1;
    this.nextRetryAt = Date.now() + delay;
    this._setStatus(Status.CLOSED);
    this._emit('reconnecting', { attempt: this.attempt, delay });
    this._setTimer('retry', delay, () => this._attempt());
  }

  _networkChanged(online) {
    this.online = online;
    if (!online) {
      // The browser says the network is gone: don't wait for a heartbeat to notice.
      this._gen += 1;
      this._clearTimer('retry');
      this._clearTimer('open');
      this._stopHeartbeat();
      if (this._link) this._drop(this._link, 'offline');
      this._pageDone(this._pageWait, null);
      this._tabs.setSse(false);
      this.peerId = null;
      this.nextRetryAt = null;
      if (this._stopped) this._emit('status', this.snapshot());
      else this._setStatus(Status.CLOSED);
      return;
    }
    this._emit('status', this.snapshot());
    if (this._gaveUp) {
      this.connect(); // we only gave up because the network was gone
    } else if (!this._stopped && this.status === Status.CLOSED) {
      this.attempt = 0;
      this.reconnectNow();
    }
  }

  // ---------------------------------------------------------------- heartbeat

  _startHeartbeat(link, serverSeconds) {
    this._stopHeartbeat();
    if (link.kind === 'ws') {
      const every = this.options.heartbeatInterval || (serverSeconds ? serverSeconds * 1000 : 30000);
      this._setInterval('ping', every, () => {
        if (this._link !== link) return;
        if (!this._timers.pong) {
          this._setTimer('pong', Math.min(this.options.pongTimeout, every), () => this._dead(link, 'no pong'));
        }
        link.send('ping', { t: Date.now() }).catch(() => {});
      });
    } else {
      this._alive();
    }
  }

  _alive() {
    if (this._link && this._link.kind === 'sse') {
      const link = this._link;
      this._setTimer('idle', this.options.sseIdleTimeout, () => this._dead(link, 'stream silent'));
    }
  }

  _dead(link, why) {
    if (this._link !== link) return;
    this._drop(link, why);
    this._linkLost({ code: 4000, reason: why });
  }

  /** Close a link without its onClose reaching us. */
  _drop(link, why) {
    if (this._link === link) this._link = null;
    link.close(4000, why);
  }

  _stopHeartbeat() {
    for (const name of ['ping', 'pong', 'idle']) this._clearTimer(name);
  }

  // ---------------------------------------------------------------- presence pages

  /** Send (or resend) the page request `wait`; over SSE the POST's body is the page. */
  _requestPage(wait) {
    if (this._pageWait !== wait) return;
    if (wait.link !== this._link) { this._pageDone(wait, null); return; }
    this._pages += 1;
    const ref = `${PAGE_REF}${this._pages}`;
    wait.ref = ref;
    wait.link.send('presence-page', { cursor: wait.cursor }, ref).then(
      (reply) => { if (reply && this._link === wait.link) this._receive({ type: 'presence-page', data: reply }); },
      (err) => { if (this._pageWait === wait && wait.ref === ref) this._pageRefused(wait, (err && err.body) || err || {}); },
    );
  }

  /** A refusal (an `error` with our ref, or a failed POST): once a second while rate-limited. */
  _pageRefused(wait, error) {
    if (error.code === 'rate_limited' || error.network) this._setTimer('page', 1000, () => this._requestPage(wait));
    else this._pageDone(wait, null);
  }

  _pageDone(wait, page) {
    if (!wait || this._pageWait !== wait) return;
    this._pageWait = null;
    this._clearTimer('page');
    wait.resolve(page);
  }

  // ---------------------------------------------------------------- receiving

  _receive(env) {
    const data = env.data || {};
    let seq = env.seq;
    if (typeof seq !== 'number' && (env.type === 'chat' || env.type === 'clear')) seq = data.seq;
    this._meter.received(env, seq, this.lastSeq);
    if (typeof seq === 'number') {
      if (this.lastSeq !== null && seq <= this.lastSeq) return; // already seen
      this.lastSeq = seq;
    }
    switch (env.type) {
      case 'history': {
        const seqs = (data.messages || []).map((m) => m.seq).filter((s) => typeof s === 'number');
        const top = Math.max(this._readyLastSeq ?? 0, ...seqs, 0);
        if (this.lastSeq === null || top > this.lastSeq) this.lastSeq = top;
        break;
      }
      case 'ack':
        if (data.clientId) {
          this._meter.acked(data.clientId);
          this._acked(data.clientId, data);
        }
        break;
      case 'error': {
        const item = data.ref && this._outbox.find((m) => m.clientId === data.ref);
        if (item) this._chatRejected(item, data);
        const wait = this._pageWait;
        if (wait && data.ref === wait.ref) { this._pageRefused(wait, data); return; } // handled here
        break;
      }
      case 'presence':
        this.presenceCursor = data.cursor ?? null;
        this._pageDone(this._pageWait, null); // a page of the list this one replaces is stale
        break;
      case 'presence-page': {
        const wait = this._pageWait;
        if (wait && data.ref === wait.ref) {
          this.presenceCursor = data.cursor ?? null;
          this._emit(env.type, data, env);
          this._pageDone(wait, data);
          return;
        }
        if (typeof data.ref === 'string' && data.ref.startsWith(PAGE_REF)) return; // one we dropped
        break;
      }
      case 'chat':
        if (data.clientId && data.userId && data.userId === this.userId) {
          this._meter.echoed(data.clientId, data.ts);
          this._acked(data.clientId, data);
        }
        break;
      case 'pong':
        this._clearTimer('pong');
        if (typeof data.t === 'number') this.rtt = Date.now() - data.t;
        break;
      default:
        break;
    }
    this._emit(env.type, data, env);
  }

  // ---------------------------------------------------------------- outbox

  _transmitChat(item) {
    const link = this._link;
    if (!link) return;
    this._meter.sent(item.clientId);
    link.send('chat', { text: item.text, clientId: item.clientId }, item.clientId).then(
      (reply) => {
        if (!reply) return;
        this._meter.acked(reply.clientId || item.clientId);
        this._acked(reply.clientId || item.clientId, reply);
      },
      (err) => {
        if (err && err.body) this._chatRejected(item, err.body);
        // A network failure leaves it queued: it goes again after the reconnect.
      },
    );
  }

  _flushOutbox() {
    for (const item of this._outbox) if (item.state === 'sending') this._transmitChat(item);
  }

  _acked(clientId, data) {
    const idx = this._outbox.findIndex((m) => m.clientId === clientId);
    if (idx === -1) return;
    const [item] = this._outbox.splice(idx, 1);
    this._saveOutbox();
    this._emit('message-state', { ...item, state: 'sent', id: data.id, seq: data.seq });
    this._emitOutbox();
  }

  /** Send what the meter measured since the last report (`delivery-report`). */
  _report() {
    if (!this.isConnected) return;
    const data = this._meter.take();
    if (data) this.send('delivery-report', data);
  }

  _chatRejected(item, error) {
    if (!this._outbox.includes(item)) return;
    this._markFailed(item, error.message || error.code || 'rejected', error.code);
  }

  _markFailed(item, message, code) {
    item.state = 'failed';
    item.error = { code: code || 'failed', message };
    this._saveOutbox();
    this._emit('message-state', { ...item });
    this._emitOutbox();
  }

  _postFailed(err) {
    if (err && err.body) this._emit('error', err.body, { type: 'error', data: err.body });
  }

  _loadOutbox() {
    const items = (this._session && readJson(this._session, this.options.outboxKey)) || [];
    return Array.isArray(items) ? items.filter((m) => m && typeof m.clientId === 'string' && typeof m.text === 'string') : [];
  }

  _saveOutbox() {
    if (this._session) writeJson(this._session, this.options.outboxKey, this._outbox.length ? this._outbox : null);
  }

  _emitOutbox() {
    const queued = this._outbox.filter((m) => m.state === 'sending').length;
    this._emit('outbox', { queued, failed: this._outbox.length - queued });
    this._emit('status', this.snapshot());
  }

  // ---------------------------------------------------------------- plumbing

  _setStatus(status) {
    this.status = status;
    this._emit('status', this.snapshot());
  }

  _setFallback(fallback, announce = false) {
    const changed = JSON.stringify(fallback) !== JSON.stringify(this.fallback);
    this.fallback = fallback;
    if (changed && fallback && announce) this._emit('fallback', { ...fallback, to: 'sse' });
    if (changed) this._emit('status', this.snapshot());
  }

  _setTabLimit(info) {
    if (JSON.stringify(info) === JSON.stringify(this.tabLimit)) return;
    this.tabLimit = info;
    if (info) this._emit('tab-limit', info);
    this._emit('status', this.snapshot());
  }

  _emit(type, data, env) { this._events.emit(type, data, env || { type, data }); }

  _setTimer(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = setTimeout(() => { delete this._timers[name]; fn(); }, ms);
  }

  _setInterval(name, ms, fn) {
    this._clearTimer(name);
    this._timers[name] = setInterval(fn, ms);
  }

  _clearTimer(name) {
    const t = this._timers[name];
    if (t === undefined) return;
    clearTimeout(t);
    clearInterval(t);
    delete this._timers[name];
  }

  _clearAllTimers() {
    for (const name of Object.keys(this._timers)) this._clearTimer(name);
  }
}

export default LastraClient;
