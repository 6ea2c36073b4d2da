// Connection banner, unread count in the title, and the optional new-message sound.
import { h } from './dom.js';

const REASONS = {
  'ws-handshake-failed': 'the WebSocket handshake failed',
  'ws-open-timeout': 'the WebSocket never opened',
  'ws-closed-before-ready': 'the WebSocket closed before it was ready',
  'transport-disabled': 'WebSocket is not enabled for you yet',
};

const plural = (n, word) => `${n} ${word}${n === 1 ? '' : 's'}`;

export class Banner {
  /**
   * @param {HTMLElement} root  the banner element
   * @param {HTMLElement} pill  small transport indicator in the header
   * @param {HTMLElement} live  a role=status region: gets one line per state change, so
   *                            screen readers hear "Connection lost", not every countdown tick
   * @param {{onRetry: () => void}} actions
   */
  constructor(root, pill, live, actions) {
    this.root = root;
    this.pill = pill;
    this.live = live;
    this.lastState = null;
    this.actions = actions;
    this.snap = null;
    this.ticker = null;
    // Persistent children, so a focused button keeps its focus while the countdown ticks.
    this.text = h('span', { class: 'banner-text', 'data-testid': 'banner-text' });
    this.button = h('button', { type: 'button', class: 'banner-action', 'data-testid': 'banner-action', hidden: true, onclick: () => this.actions.onRetry() });
    this.root.replaceChildren(this.text, this.button);
  }

  update(snap) {
    this.snap = snap;
    clearInterval(this.ticker);
    this.ticker = null;
    if (snap.status === 'CLOSED' && snap.nextRetryAt) this.ticker = setInterval(() => this.render(), 500);
    this.render();
  }

  render() {
    const s = this.snap;
    if (!s) return;
    const queued = s.queued ? ` ${plural(s.queued, 'message')} queued.` : '';
    let state = '';
    let text = '';
    let action = null;
    if (s.tabLimit) {
      state = 'tab-limit';
      text = `Too many Lastra tabs: this would be tab ${s.tabLimit.tabs} on the live stream, and browsers allow only ${s.tabLimit.limit} per site over HTTP/1.1, so this tab is waiting. Close another Lastra tab — or ask whoever runs Lastra to serve it over HTTP/2 or enable WebSocket.`;
    } else if (!s.online) {
      state = 'offline';
      text = `You're offline.${queued || ' '} Messages you send now go out when you're back.`;
    } else if (s.status === 'CLOSED' && s.nextRetryAt) {
      state = 'reconnecting';
      const secs = Math.max(0, Math.ceil((s.nextRetryAt - Date.now()) / 1000));
      text = `Connection lost. Reconnecting in ${secs}s…${queued}`;
      action = 'Retry now';
    } else if (s.status === 'CLOSED' && s.error) {
      state = 'closed';
      text = `Disconnected: ${s.error.message}.${queued}`;
      action = 'Reconnect';
    } else if (s.status === 'CONNECTING') {
      state = 'connecting';
      text = `Connecting…${queued}`;
    } else if (s.status === 'OPEN' && s.fallback) {
      state = 'fallback';
      text = `Connected over SSE fallback: ${REASONS[s.fallback.reason] || s.fallback.reason || 'WebSocket is unavailable'}.`;
    }
    this.root.hidden = !state;
    this.root.dataset.state = state;
    if (state !== this.lastState) {
      this.lastState = state;
      this.live.textContent = state === 'reconnecting' ? 'Connection lost. Reconnecting…'
        : state ? text : (s.status === 'OPEN' ? 'Connected.' : '');
    }
    if (this.text.textContent !== text) this.text.textContent = text;
    this.button.hidden = !action;
    if (action && this.button.textContent !== action) this.button.textContent = action;

    const open = s.status === 'OPEN';
    this.pill.dataset.state = open ? 'open' : s.status.toLowerCase();
    this.pill.dataset.transport = open ? s.transport : '';
    this.pill.textContent = open ? (s.transport === 'ws' ? 'WebSocket' : 'SSE') : (s.online ? (s.status === 'CONNECTING' ? 'Connecting' : 'Offline') : 'Offline');
    this.pill.title = open ? `Connected over ${s.transport === 'ws' ? 'WebSocket' : 'SSE + POST'}${s.fallback ? ' (fallback)' : ''}` : 'Not connected';
  }
}

/** "(3) Lastra Chat" while the tab is in the background. */
export class UnreadTitle {
  constructor(base) {
    this.base = base;
    this.count = 0;
    const seen = () => { if (!this.away()) this.reset(); };
    document.addEventListener('visibilitychange', seen);
    addEventListener('focus', seen);
  }

  away() { return document.visibilityState === 'hidden' || !document.hasFocus(); }

  bump() {
    if (!this.away()) return;
    this.count += 1;
    document.title = `(${this.count}) ${this.base}`;
  }

  reset() {
    this.count = 0;
    document.title = this.base;
  }
}

/** A short two-tone beep through WebAudio; off unless the user turns it on. */
export class Sound {
  constructor(key = 'lastra.sound') {
    this.key = key;
    this.ctx = null;
    try { this.enabled = localStorage.getItem(key) === 'on'; } catch { this.enabled = false; }
  }

  toggle() {
    this.enabled = !this.enabled;
    try { localStorage.setItem(this.key, this.enabled ? 'on' : 'off'); } catch { /* ignore */ }
    if (this.enabled) { this._context(); this.beep(); }
    return this.enabled;
  }

  _context() {
    if (!this.ctx) {
      const Ctx = window.AudioContext || window.webkitAudioContext;
      if (!Ctx) return null;
      this.ctx = new Ctx();
    }
    if (this.ctx.state === 'suspended') this.ctx.resume().catch(() => {});
    return this.ctx;
  }

  beep() {
    if (!this.enabled) return;
    const ctx = this._context();
    if (!ctx) return;
    const t = ctx.currentTime;
    for (const [freq, at] of [[880, 0], [1320, 0.09]]) {
      const osc = ctx.createOscillator();
      const gain = ctx.createGain();
      osc.type = 'sine';
      osc.frequency.value = freq;
      gain.gain.setValueAtTime(0.0001, t + at);
      gain.gain.exponentialRampToValueAtTime(0.12, t + at + 0.01);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + at + 0.12);
      osc.connect(gain).connect(ctx.destination);
      osc.start(t + at);
      osc.stop(t + at + 0.13);
    }
  }
}
