// The sidebar (who is online, on which transport, with which media; the bots) and the
// typing line under the messages.
import { h, hue, initials } from './dom.js';

const TRANSPORT_LABEL = { ws: 'WebSocket', sse: 'SSE' };

export class People {
  /** @param {HTMLUListElement} root @param {HTMLElement} countEl */
  constructor(root, countEl) {
    this.root = root;
    this.countEl = countEl;
    this.users = new Map(); // userId -> User
    this.me = null;
    // A large room's list comes in pages (protocol §8). Until the last one (cursor null) the
    // count is the server's `online`, not the list's, and the list holds only what was fetched:
    // the next page is asked for (`more`, the client's morePresence) when the user scrolls near
    // the end of the list, or clicks its "N more…" row. Fetching everything at once would make
    // the server send this tab every change in the room again.
    this.cursor = null;
    this.online = null;
    this.total = null;
    this.large = false; // listed in the server's (userId) order, so that pages append
    /** @type {null | (() => Promise<unknown>)} */
    this.more = null;
    this._observer = null;
  }

  /** `presence`: the whole list, or in a large room its first page with {total, online, cursor}. */
  snapshot(users, { online = null, total = null, cursor = null } = {}) {
    this.users = new Map((users || []).map((u) => [u.userId, u]));
    this.cursor = cursor;
    this.online = online;
    this.total = total;
    this.large = total !== null;
    this.render();
  }

  /** `presence-page`: more of a large room's list (asked for by `fetchMore`). */
  page({ users = [], online = null, total = null, cursor = null }) {
    for (const u of users) this.users.set(u.userId, u);
    this.cursor = cursor;
    if (online !== null) this.online = online;
    if (total !== null) this.total = total;
    this.render();
  }

  diff({ upsert = [], remove = [], online = null, total = null }) {
    for (const u of upsert) this.users.set(u.userId, u);
    for (const id of remove) this.users.delete(id);
    if (online !== null) this.online = online;
    if (total !== null) this.total = total;
    this.render();
  }

  /** Ask for the next page, if the list is partial (no-op while one is on its way). */
  fetchMore() {
    if (this.cursor !== null && this.more) this.more();
  }

  name(userId) {
    const u = this.users.get(userId);
    return u ? u.userName : null;
  }

  render() {
    const byName = (a, b) => String(a.userName).localeCompare(String(b.userName));
    // a large room keeps the server's order (join order: pages append, newcomers come
    // last), so a page adds rows at the bottom; the sort is stable
    const users = [...this.users.values()].sort((a, b) => {
      if (a.userId === this.me) return -1;
      if (b.userId === this.me) return 1;
      return this.large ? 0 : byName(a, b);
    });
    const listed = users.filter((u) => (u.peers || []).length > 0).length;
    this.countEl.textContent = String(this.cursor !== null && this.online !== null ? this.online : listed);
    const rows = users.map((u) => this._user(u));
    const sentinel = this.cursor !== null ? this._moreRow(users.length) : null;
    this.root.replaceChildren(...rows, ...(sentinel ? [sentinel] : []));
    this._watch(sentinel);
  }

  /** The last row of a partial list: "N more…", fetched when it scrolls into (or near) view. */
  _moreRow(listed) {
    const rest = this.total !== null ? this.total - listed : 0;
    return h('li', { class: 'person more', 'data-testid': 'people-more' },
      h('button', { type: 'button', class: 'ghost', onclick: () => this.fetchMore() },
        rest > 0 ? `${rest} more…` : 'More…'));
  }

  _watch(sentinel) {
    if (this._observer) this._observer.disconnect();
    if (!sentinel || typeof IntersectionObserver === 'undefined') return; // (the button still works)
    if (!this._observer) {
      this._observer = new IntersectionObserver(
        (entries) => { if (entries.some((e) => e.isIntersecting)) this.fetchMore(); },
        { root: scroller(this.root), rootMargin: '0px 0px 64px 0px' },
      );
    }
    // A new row is reported at once: if it is still in view after a page, the next one comes.
    this._observer.observe(sentinel);
  }

  _user(u) {
    const peers = u.peers || [];
    const away = peers.length === 0;
    const transports = [...new Set(peers.map((p) => p.transport).filter(Boolean))];
    const media = { camera: false, mic: false, screen: false };
    for (const p of peers) for (const k of Object.keys(media)) if (p.media && p.media[k]) media[k] = true;
    const badges = h('div', { class: 'badges' });
    for (const t of transports) {
      badges.append(h('span', { class: `badge transport-${t}`, 'data-testid': 'transport', title: `Connected over ${TRANSPORT_LABEL[t] || t}` }, TRANSPORT_LABEL[t] || t));
    }
    if (peers.length > 1) badges.append(h('span', { class: 'badge muted', title: 'Open tabs' }, `${peers.length} tabs`));
    // Someone in a call (anything on) shows camera and mic either way, so "camera off" is
    // visible; out of a call, nothing (off is the normal state). Screen only while sharing.
    const inCall = media.camera || media.mic || media.screen;
    for (const [k, label] of [['camera', 'Camera'], ['mic', 'Mic'], ['screen', 'Screen']]) {
      if (!inCall || (k === 'screen' && !media[k])) continue;
      badges.append(h('span', {
        class: `badge media media-${k} ${media[k] ? 'on' : 'off'}`, 'data-testid': `media-${k}`,
        'data-on': String(media[k]), title: `${label} ${media[k] ? 'on' : 'off'}`,
        'aria-label': `${label} ${media[k] ? 'on' : 'off'}`,
      }, label));
    }
    if (away) badges.replaceChildren(h('span', { class: 'badge muted' }, 'away'));
    return h('li', { class: `person${away ? ' away' : ''}`, 'data-testid': 'person', 'data-user-id': u.userId, 'data-transport': transports.join(' ') },
      h('div', { class: `avatar small hue-${hue(u.userId)}`, 'aria-hidden': 'true' }, initials(u.userName),
        h('span', { class: `dot${away ? ' off' : ''}` })),
      h('div', { class: 'who' },
        h('div', { class: 'name' }, h('span', { 'data-testid': 'person-name' }, u.userName),
          u.userId === this.me ? h('span', { class: 'you' }, ' (you)') : null),
        badges));
  }
}

/** The nearest ancestor of `el` that scrolls (null: the viewport). */
function scroller(el) {
  for (let p = el.parentElement; p; p = p.parentElement) {
    if (/(auto|scroll)/.test(getComputedStyle(p).overflowY)) return p;
  }
  return null;
}

export class Bots {
  /** @param {HTMLUListElement} root @param {(name: string, enabled: boolean) => void} onToggle */
  constructor(root, onToggle) {
    this.root = root;
    this.onToggle = onToggle;
    this.bots = [];
  }

  set(bots) {
    this.bots = bots || [];
    this.root.replaceChildren(...this.bots.map((b) => this._bot(b)));
    if (!this.bots.length) this.root.append(h('li', { class: 'muted' }, 'No bots on this server.'));
  }

  _bot(b) {
    const label = b.displayName || b.name;
    const id = `bot-toggle-${b.name}`;
    const toggle = h('button', {
      type: 'button', role: 'switch', id, class: 'switch', 'aria-checked': String(Boolean(b.enabled)),
      'data-testid': 'bot-toggle', 'data-bot': b.name, 'aria-label': `${label} enabled`,
      onclick: () => this.onToggle(b.name, !b.enabled),
    }, h('span', { class: 'knob', 'aria-hidden': 'true' }));
    return h('li', { class: `bot${b.enabled ? ' enabled' : ''}`, 'data-testid': 'bot', 'data-bot': b.name },
      h('div', { class: 'avatar small hue-bot', 'aria-hidden': 'true' }, '✦'),
      h('div', { class: 'who' },
        h('div', { class: 'name' }, label, h('span', { class: 'handle' }, ` @${b.name}`)),
        b.personality ? h('div', { class: 'personality' }, b.personality) : null),
      toggle);
  }
}

export class Typing {
  /** @param {HTMLElement} root */
  constructor(root) {
    this.root = root;
    this.me = null;
    this.who = new Map(); // userId -> {name, timer}
  }

  set({ userId, userName, isTyping }) {
    if (!userId || userId === this.me) return;
    const prev = this.who.get(userId);
    if (prev) clearTimeout(prev.timer);
    if (isTyping) {
      // The server clears typing itself; this is only a safety net for a lost event.
      const timer = setTimeout(() => this.set({ userId, isTyping: false }), 10000);
      this.who.set(userId, { name: userName || 'Someone', timer });
    } else {
      this.who.delete(userId);
    }
    this.render();
  }

  stopped(userId) { if (this.who.has(userId)) this.set({ userId, isTyping: false }); }

  reset() {
    for (const { timer } of this.who.values()) clearTimeout(timer);
    this.who.clear();
    this.render();
  }

  render() {
    const names = [...this.who.values()].map((w) => w.name);
    let text = '';
    if (names.length === 1) text = `${names[0]} is typing…`;
    else if (names.length === 2) text = `${names[0]} and ${names[1]} are typing…`;
    else if (names.length > 2) text = `${names[0]}, ${names[1]} and ${names.length - 2} more are typing…`;
    this.root.textContent = text;
    this.root.classList.toggle('active', names.length > 0);
  }
}
