// Lastra Chat transports: a WebSocket and an SSE+POST link with one small interface.
//
// Both classes only move envelopes; everything stateful (sessions, resume, queues,
// reconnection) lives in LastraClient (lastra-client.js). A transport calls
//   onEnvelope(envelope)   for every server envelope, in order,
//   onActivity()           for any sign of life (frames, SSE keep-alive comments),
//   onOpen()               when the link is up (WebSocket open / SSE response headers),
//   onClose(info)          exactly once, with {code, reason, opened, status?}.
// After onClose it is dead; make a new one to reconnect.

/** WebSocket transport: `auth` is the first frame; text frames carry one envelope each. */
export class WsTransport {
  /**
   * @param {{url: string, auth: object, onEnvelope: Function, onActivity: Function,
   *          onOpen: Function, onClose: Function}} opts
   */
  constructor(opts) {
    this.kind = 'ws';
    this._o = opts;
    this._closed = false;
    this._opened = false;
    try {
      this._ws = new WebSocket(opts.url);
    } catch (err) {
      this._ws = null;
      queueMicrotask(() => this._finish({ code: 1006, reason: String(err && err.message || err) }));
      return;
    }
    this._ws.onopen = () => {
      this._opened = true;
      this._o.onOpen();
      this._raw({ type: 'auth', data: opts.auth });
    };
    this._ws.onmessage = (ev) => {
      this._o.onActivity();
      if (typeof ev.data !== 'string') return;
      let env;
      try { env = JSON.parse(ev.data); } catch { return; }
      if (env && typeof env.type === 'string') this._o.onEnvelope(env);
    };
    this._ws.onerror = () => { /* a close event always follows */ };
    this._ws.onclose = (ev) => this._finish({ code: ev.code, reason: ev.reason });
  }

  /** Send one envelope. Returns a promise of the POST-style reply for SSE parity (always undefined here). */
  send(type, data, ref) {
    const env = { type, data: data || {} };
    if (ref) env.ref = ref;
    return this._raw(env) ? Promise.resolve(undefined) : Promise.reject(new Error('not connected'));
  }

  _raw(env) {
    if (!this._ws || this._ws.readyState !== WebSocket.OPEN) return false;
    this._ws.send(JSON.stringify(env));
    return true;
  }

  close(code = 1000, reason = 'client closing') {
    if (this._ws && this._ws.readyState <= WebSocket.OPEN) {
      try { this._ws.close(code, reason); } catch { /* ignore */ }
    }
    this._finish({ code, reason, local: true });
  }

  _finish(info) {
    if (this._closed) return;
    this._closed = true;
    if (this._ws) {
      this._ws.onopen = this._ws.onmessage = this._ws.onerror = this._ws.onclose = null;
    }
    this._o.onClose({ ...info, opened: this._opened });
  }
}

/** Client → server POST endpoints of the SSE transport (PROTOCOL §3). */
export const POST_ENDPOINTS = Object.freeze({
  chat: '/api/chat-message',
  typing: '/api/chat-typing',
  'webrtc-signal': '/api/chat-signal',
  'media-state': '/api/media-state',
  'bot-toggle': '/api/bot-toggle',
  clear: '/api/chat-clear',
  'ai-request': '/api/ai-request',
  ready: '/api/chat-ready',
  'call-outcome': '/api/call-outcome',
  'delivery-report': '/api/delivery-report',
  'presence-page': '/api/presence-page',
});

/**
 * SSE + POST transport. The stream is read with fetch() rather than EventSource so that
 * the token travels in an Authorization header (not the URL), the resume point in
 * Last-Event-ID, and HTTP errors (401/403) are visible. The stream uses
 * `credentials: 'omit'`: browsers keep uncredentialed sockets in a separate pool, so
 * the six streams a browser allows per origin over HTTP/1.1 do not starve page loads
 * and POSTs.
 */
export class SseTransport {
  /**
   * @param {{baseUrl: string, token: string|(() => string), lastEventId?: string,
   *          peerId?: () => string|null, refresh?: () => Promise<unknown>,
   *          onEnvelope: Function, onActivity: Function, onOpen: Function, onClose: Function}} opts
   *   `token` may be a function, so POSTs always use the newest token; `refresh` is called once
   *   when a POST gets 401, and the POST is then sent again with the new token.
   */
  constructor(opts) {
    this.kind = 'sse';
    this._o = opts;
    this._closed = false;
    this._opened = false;
    this._abort = new AbortController();
    this._chain = Promise.resolve();
    this._run();
  }

  _token() {
    return typeof this._o.token === 'function' ? this._o.token() : this._o.token;
  }

  async _run() {
    const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${this._token()}` };
    if (this._o.lastEventId) headers['Last-Event-ID'] = this._o.lastEventId;
    let resp;
    try {
      resp = await fetch(`${this._o.baseUrl}/api/chat-stream`, {
        headers, cache: 'no-store', credentials: 'omit', signal: this._abort.signal,
      });
    } catch (err) {
      this._finish({ code: 1006, reason: String(err && err.message || err) });
      return;
    }
    if (!resp.ok || !resp.body) {
      let body = null;
      try { body = await resp.json(); } catch { /* not JSON */ }
      this._finish({ code: 1006, status: resp.status, reason: (body && body.message) || `HTTP ${resp.status}`, body });
      return;
    }
    this._opened = true;
    this._o.onOpen();
    const parser = new SseParser((ev) => this._dispatch(ev), () => this._o.onActivity());
    const reader = resp.body.pipeThrough(new TextDecoderStream()).getReader();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (this._closed) return;
        this._o.onActivity();
        parser.feed(value);
      }
      this._finish({ code: 1006, reason: 'stream ended' });
    } catch (err) {
      this._finish({ code: 1006, reason: String(err && err.message || err) });
    }
  }

  _dispatch(ev) {
    if (this._closed || !ev.data) return;
    let env;
    try { env = JSON.parse(ev.data); } catch { return; }
    if (!env || typeof env !== 'object') return;
    if (typeof env.type !== 'string' && ev.event) env = { type: ev.event, data: env };
    this._o.onEnvelope(env);
  }

  /**
   * POST one message. Requests are chained so they reach the server in call order.
   * Resolves with the reply body ({...ack data}) or rejects with
   * {status, body: {code, message, ref?}} (HTTP error) or {network: true} (no reply).
   */
  send(type, data, ref) {
    let path = POST_ENDPOINTS[type];
    if (!path) return Promise.reject({ status: 400, body: { code: 'unknown_type', message: `no endpoint for ${type}`, ref } });
    if (type === 'webrtc-signal' && data && data.stream === 'screen') path = '/api/screen-share-signal';
    const body = { ...(data || {}) };
    if (ref) body.ref = ref;
    const run = () => this._post(path, body);
    const p = this._chain.then(run, run);
    this._chain = p.catch(() => undefined);
    return p;
  }

  async _post(path, body, retried = false) {
    const headers = { 'Content-Type': 'application/json', Authorization: `Bearer ${this._token()}` };
    const peer = this._o.peerId && this._o.peerId();
    if (peer) headers['X-Lastra-Peer'] = peer;
    let resp;
    try {
      resp = await fetch(`${this._o.baseUrl}${path}`, {
        method: 'POST', headers, body: JSON.stringify(body), cache: 'no-store',
        signal: AbortSignal.timeout(15000),
      });
    } catch (err) {
      throw { network: true, message: String(err && err.message || err) };
    }
    let reply = null;
    try { reply = await resp.json(); } catch { /* empty body */ }
    if (resp.status === 401 && !retried && this._o.refresh && !this._closed) {
      // The token expired under us (e.g. the tab slept through its refresh): renew, resend.
      let renewed = false;
      try { await this._o.refresh(); renewed = true; } catch { /* report the 401 below */ }
      if (renewed) return this._post(path, body, true);
    }
    if (!resp.ok) {
      throw { status: resp.status, body: reply && typeof reply === 'object' ? reply : { code: 'internal', message: `HTTP ${resp.status}` } };
    }
    return reply || {};
  }

  close(code = 1000, reason = 'client closing') {
    this._finish({ code, reason, local: true });
  }

  _finish(info) {
    if (this._closed) return;
    this._closed = true;
    try { this._abort.abort(); } catch { /* ignore */ }
    this._o.onClose({ ...info, opened: this._opened });
  }
}

/** Incremental text/event-stream parser (the WHATWG algorithm, minus `retry`). */
export class SseParser {
  constructor(onEvent, onComment = () => {}) {
    this._onEvent = onEvent;
    this._onComment = onComment;
    this._buf = '';
    this._data = [];
    this._event = '';
    this._id = null;
    this.lastEventId = null;
  }

  feed(chunk) {
    this._buf += chunk;
    let idx;
    // Lines end with \n, \r\n or \r; a trailing \r may be the first half of \r\n.
    while ((idx = this._buf.search(/\r\n|\n|\r(?=[^\n])/)) !== -1) {
      const line = this._buf.slice(0, idx);
      const sep = this._buf[idx] === '\r' && this._buf[idx + 1] === '\n' ? 2 : 1;
      this._buf = this._buf.slice(idx + sep);
      this._line(line);
    }
  }

  _line(line) {
    if (line === '') {
      if (this._data.length) {
        if (this._id !== null) this.lastEventId = this._id;
        this._onEvent({ event: this._event || 'message', data: this._data.join('\n'), id: this.lastEventId });
      }
      this._data = [];
      this._event = '';
      return;
    }
    if (line[0] === ':') { this._onComment(line.slice(1)); return; }
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value[0] === ' ') value = value.slice(1);
    if (field === 'data') this._data.push(value);
    else if (field === 'event') this._event = value;
    else if (field === 'id' && !value.includes('\0')) this._id = value;
  }
}
