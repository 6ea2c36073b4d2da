// The message box: Enter sends, Shift+Enter is a new line, "/" opens the command list
// (arrow keys, Tab/Enter to complete, Escape to close), and typing state is reported
// while the user types.

import { h } from './dom.js';

export const COMMANDS = [
  { name: '/help', args: '', about: 'Show the commands and keyboard shortcuts' },
  { name: '/clear', args: '', about: 'Clear the chat history for everyone' },
  { name: '/sound', args: '', about: 'Turn the new-message sound on or off' },
];

const TYPING_RENEW_MS = 3000;
const TYPING_IDLE_MS = 4000;

export class Composer {
  /**
   * @param {{form: HTMLFormElement, input: HTMLTextAreaElement, list: HTMLUListElement,
   *          onSend: (text: string) => void, onCommand: (name: string, arg: string) => void,
   *          onTyping: (isTyping: boolean) => void}} opts
   */
  constructor(opts) {
    Object.assign(this, opts);
    this.matches = [];
    this.active = -1;
    this.typing = false;
    this.lastTypingSent = 0;
    this.idleTimer = null;
    this.form.addEventListener('submit', (ev) => { ev.preventDefault(); this.submit(); });
    this.input.addEventListener('keydown', (ev) => this.keydown(ev));
    this.input.addEventListener('input', () => { this.autosize(); this.suggest(); this.typed(); });
    this.input.addEventListener('blur', () => { this.stopTyping(); setTimeout(() => this.closeList(), 150); });
  }

  focus() { this.input.focus(); }

  submit() {
    if (this.matches.length && this.active >= 0 && this.input.value.trim() !== this.matches[this.active].name) {
      this.complete();
      return;
    }
    const text = this.input.value.trim();
    if (!text) return;
    this.closeList();
    const cmd = text.match(/^\/(\S+)\s*(.*)$/s);
    if (cmd && !text.startsWith('//')) {
      this.onCommand(`/${cmd[1].toLowerCase()}`, cmd[2]);
    } else {
      if (this.onSend(text.startsWith('//') ? text.slice(1) : text) === false) return;
      this.typing = false; // the server clears typing when a chat arrives
      clearTimeout(this.idleTimer);
    }
    this.input.value = '';
    this.autosize();
  }

  keydown(ev) {
    const open = this.matches.length > 0;
    if (open && (ev.key === 'ArrowDown' || ev.key === 'ArrowUp')) {
      ev.preventDefault();
      const n = this.matches.length;
      this.active = (this.active + (ev.key === 'ArrowDown' ? 1 : n - 1)) % n;
      this.renderList();
    } else if (open && ev.key === 'Tab' && !ev.shiftKey) {
      ev.preventDefault();
      this.complete();
    } else if (open && ev.key === 'Escape') {
      ev.preventDefault();
      this.closeList();
    } else if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
      ev.preventDefault();
      this.submit();
    }
  }

  suggest() {
    const v = this.input.value;
    const m = v.match(/^\/(\S*)$/);
    if (!m) { this.closeList(); return; }
    const q = `/${m[1].toLowerCase()}`;
    this.matches = COMMANDS.filter((c) => c.name.startsWith(q));
    this.active = this.matches.length ? 0 : -1;
    this.renderList();
  }

  complete(index = this.active) {
    const c = this.matches[index];
    if (!c) return;
    this.input.value = c.name + (c.args ? ' ' : '');
    this.closeList();
    this.input.focus();
  }

  closeList() {
    this.matches = [];
    this.active = -1;
    this.renderList();
  }

  renderList() {
    const open = this.matches.length > 0;
    this.list.hidden = !open;
    this.input.setAttribute('aria-expanded', String(open));
    this.list.replaceChildren(...this.matches.map((c, i) => h('li', {
      id: `command-${c.name.slice(1)}`, role: 'option', class: 'command', 'data-testid': 'command-option',
      'aria-selected': String(i === this.active),
      onmousedown: (ev) => { ev.preventDefault(); this.complete(i); },
    }, h('span', { class: 'command-name' }, c.name), h('span', { class: 'command-about' }, c.about))));
    if (open && this.active >= 0) this.input.setAttribute('aria-activedescendant', `command-${this.matches[this.active].name.slice(1)}`);
    else this.input.removeAttribute('aria-activedescendant');
  }

  autosize() {
    this.input.classList.toggle('multiline', this.input.value.includes('\n') || this.input.scrollHeight > 48);
  }

  typed() {
    const text = this.input.value;
    if (!text.trim() || text.startsWith('/')) { this.stopTyping(); return; }
    const now = Date.now();
    if (!this.typing || now - this.lastTypingSent > TYPING_RENEW_MS) {
      this.typing = true;
      this.lastTypingSent = now;
      this.onTyping(true);
    }
    clearTimeout(this.idleTimer);
    this.idleTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  stopTyping() {
    clearTimeout(this.idleTimer);
    if (!this.typing) return;
    this.typing = false;
    this.onTyping(false);
  }
}
