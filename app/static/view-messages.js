// The message list: durable chats ordered by seq, then this tab's unsent chats, plus
// bot replies that stream in place and local notes (/help, "cleared by").
import { h, linkify, neutral, hue, initials, toDate, formatTime } from './dom.js';

const GROUP_MS = 5 * 60 * 1000;

export class MessageList {
  /**
   * @param {HTMLOListElement} root
   * @param {{onRetry: (clientId: string) => void, onDiscard: (clientId: string) => void}} actions
   */
  constructor(root, actions) {
    this.root = root;
    this.actions = actions;
    this.me = null;
    this.bots = new Map(); // name -> displayName
    this.empty = h('li', { class: 'empty', id: 'empty-state' }, 'No messages yet. Say hello!');
    this.root.append(this.empty);
  }

  // ------------------------------------------------------------- durable messages

  /** Replace every durable message with a history snapshot (unsent ones stay). */
  setHistory(messages) {
    for (const el of [...this.root.querySelectorAll('li[data-seq], li.note, li.streaming')]) el.remove();
    for (const m of messages) this.upsert(m, { quiet: true });
    this._refresh();
    this.scrollToEnd();
  }

  /**
   * Insert or update one durable chat. Returns true when it is new to this page.
   * A chat that matches one of our pending sends (clientId) or a streaming bot reply (id)
   * replaces that element instead of adding a second one.
   */
  upsert(m, { quiet = false } = {}) {
    if (!m || !m.id) return false;
    const stick = this._nearEnd();
    let el = this.root.querySelector(`li[data-id="${CSS.escape(m.id)}"]`);
    const isNew = !el || el.classList.contains('streaming');
    if (!el && m.clientId && m.userId === this.me) {
      el = this.root.querySelector(`li[data-client-id="${CSS.escape(m.clientId)}"]`);
    }
    const fresh = this._render(m);
    if (el) el.replaceWith(fresh);
    this._place(fresh);
    if (!quiet) { this._refresh(); if (stick) this.scrollToEnd(); }
    return isNew;
  }

  clear(by) {
    for (const el of [...this.root.querySelectorAll('li[data-seq], li.note, li.streaming')]) el.remove();
    if (by) this.note(`${by.userName || 'Someone'} cleared the chat.`);
    this._refresh();
  }

  // ------------------------------------------------------------- this tab's sends

  /** Show or update one of our own chats by clientId: state sending | sent | failed. */
  pending(item) {
    const stick = this._nearEnd();
    if (item.state === 'sent' && item.id && this.root.querySelector(`li[data-id="${CSS.escape(item.id)}"]`)) {
      // The broadcast got here first and already replaced it.
      const dup = this.root.querySelector(`li[data-client-id="${CSS.escape(item.clientId)}"]:not([data-seq])`);
      if (dup) dup.remove();
      this._refresh();
      return;
    }
    let el = this.root.querySelector(`li[data-client-id="${CSS.escape(item.clientId)}"]`);
    if (el && el.dataset.seq) return; // already durable
    const fresh = this._render({
      id: item.id, seq: item.seq, clientId: item.clientId, userId: this.me, userName: this.meName,
      kind: 'user', text: item.text, ts: item.ts,
    }, item);
    if (el) el.replaceWith(fresh);
    else this.root.append(fresh);
    if (typeof item.seq === 'number') this._place(fresh);
    this._refresh();
    if (stick || !el) this.scrollToEnd();
  }

  removePending(clientId) {
    const el = this.root.querySelector(`li[data-client-id="${CSS.escape(clientId)}"]:not([data-seq])`);
    if (el) { el.remove(); this._refresh(); }
  }

  // ------------------------------------------------------------- bot streams

  /** Apply one ai-stream event: grow the reply in place. */
  stream({ id, bot, delta, done, error }) {
    if (!id) return;
    const stick = this._nearEnd();
    let el = this.root.querySelector(`li[data-id="${CSS.escape(id)}"]`);
    if (el && el.dataset.seq) return; // the durable chat already replaced it
    if (!el) {
      el = this._render({ id, kind: 'bot', bot, userName: this.bots.get(bot) || bot, text: '', ts: Date.now() });
      el.classList.add('streaming');
      el.setAttribute('aria-busy', 'true');
      this.root.append(el);
    }
    const text = el.querySelector('.text');
    if (delta) text.textContent += neutral(delta);
    if (done) { el.classList.remove('streaming'); el.removeAttribute('aria-busy'); }
    if (error) {
      el.classList.remove('streaming');
      el.classList.add('stream-error');
      el.removeAttribute('aria-busy');
      el.querySelector('.bubble').append(h('div', { class: 'state', role: 'note' }, `The bot stopped: ${error}`));
    }
    this._refresh();
    if (stick) this.scrollToEnd();
  }

  // ------------------------------------------------------------- local notes

  /** A local, non-durable line (help text, "cleared by"). */
  note(text, { help = false } = {}) {
    const el = h('li', { class: `note${help ? ' help' : ''}`, 'data-testid': 'note' });
    for (const line of String(text).split('\n')) el.append(h('div', {}, line));
    this.root.append(el);
    this._refresh();
    this.scrollToEnd();
  }

  // ------------------------------------------------------------- internals

  _render(m, local = null) {
    const kind = m.kind === 'system' || m.kind === 'bot' ? m.kind : 'user';
    const date = toDate(m.ts);
    const attrs = {
      class: `msg msg-${kind}`,
      'data-testid': kind === 'system' ? 'system-message' : 'message',
      'data-kind': kind,
      'data-user-id': m.userId || (kind === 'bot' ? `bot:${m.bot}` : ''),
      'data-ts': String(date.getTime()),
    };
    if (m.id) attrs['data-id'] = m.id;
    if (typeof m.seq === 'number') attrs['data-seq'] = String(m.seq);
    if (m.clientId) attrs['data-client-id'] = m.clientId;
    const el = h('li', attrs);
    if (kind === 'system') {
      el.append(h('span', { class: 'text', 'data-testid': 'message-text' }, m.text || ''));
      return el;
    }
    const mine = kind === 'user' && m.userId && m.userId === this.me;
    if (mine) el.classList.add('mine');
    const name = kind === 'bot' ? (this.bots.get(m.bot) || m.userName || m.bot || 'bot') : (m.userName || 'Someone');
    const avatar = h('div', { class: `avatar hue-${kind === 'bot' ? 'bot' : hue(m.userId || name)}`, 'aria-hidden': 'true' },
      kind === 'bot' ? '✦' : initials(name));
    const meta = h('div', { class: 'meta' },
      h('span', { class: 'author', 'data-testid': 'message-author', dir: 'auto' }, neutral(name)),
      kind === 'bot' ? h('span', { class: 'tag' }, 'bot') : null,
      h('time', { datetime: date.toISOString(), title: date.toLocaleString() }, formatTime(date)));
    const text = h('div', { class: 'text', 'data-testid': 'message-text', dir: 'auto' });
    text.append(linkify(String(m.text ?? '')));
    const bubble = h('div', { class: 'bubble' }, meta, text);
    if (local) {
      el.dataset.state = local.state;
      if (local.state === 'sending') {
        el.classList.add('pending');
        bubble.append(h('div', { class: 'state', 'data-testid': 'message-state' }, 'Sending…'));
      } else if (local.state === 'failed') {
        el.classList.add('failed');
        const why = local.error && local.error.message ? `Not sent: ${local.error.message}` : 'Not sent';
        bubble.append(h('div', { class: 'state', 'data-testid': 'message-state', role: 'alert' }, why,
          h('button', { type: 'button', class: 'link-button', 'data-testid': 'retry', onclick: () => this.actions.onRetry(local.clientId) }, 'Retry'),
          h('button', { type: 'button', class: 'link-button', onclick: () => this.actions.onDiscard(local.clientId) }, 'Discard')));
      }
    } else if (mine) {
      el.dataset.state = 'sent';
    }
    el.append(avatar, bubble);
    return el;
  }

  /** Put a durable message at its seq position: after every lower seq, before pending ones. */
  _place(el) {
    const seq = Number(el.dataset.seq);
    if (!el.dataset.seq) { if (!el.isConnected) this.root.append(el); return; }
    let anchor = null;
    for (const other of this.root.children) {
      if (other === el || other === this.empty) continue;
      const os = other.dataset.seq;
      if (os === undefined ? other.classList.contains('pending') || other.classList.contains('failed') || other.classList.contains('streaming')
        : Number(os) > seq) { anchor = other; break; }
    }
    if (anchor) { if (el.nextElementSibling !== anchor) this.root.insertBefore(el, anchor); }
    else if (this.root.lastElementChild !== el) this.root.append(el);
  }

  /** Group consecutive messages of one author and toggle the empty state. */
  _refresh() {
    let prev = null;
    let count = 0;
    for (const el of this.root.children) {
      if (el === this.empty) continue;
      count += 1;
      const isMsg = el.classList.contains('msg') && !el.classList.contains('msg-system');
      const same = isMsg && prev && prev.dataset.userId === el.dataset.userId &&
        Number(el.dataset.ts) - Number(prev.dataset.ts) < GROUP_MS;
      el.classList.toggle('continued', Boolean(same));
      prev = isMsg ? el : null;
    }
    this.empty.hidden = count > 0;
  }

  _nearEnd() {
    const s = this.root;
    return s.scrollHeight - s.scrollTop - s.clientHeight < 120;
  }

  scrollToEnd() {
    this.root.scrollTop = this.root.scrollHeight;
  }
}
