// The call on the page: the Join/Leave button, video tiles with each person's name, the
// mic/camera/screen toggles, the camera and microphone pickers, and the call notices.
// All state lives in CallManager (calls.js); this only draws it and forwards clicks.
import { h, hue, initials } from './dom.js';

export class CallView {
  /**
   * @param {{toggle: HTMLButtonElement, section: HTMLElement, stage: HTMLElement,
   *          notice: HTMLElement, mic: HTMLButtonElement, camera: HTMLButtonElement,
   *          screen: HTMLButtonElement, leave: HTMLButtonElement,
   *          cameraSelect: HTMLSelectElement, micSelect: HTMLSelectElement}} els
   */
  constructor(els) {
    this.els = els;
    this.calls = null;
    this.tiles = new Map(); // tile key -> {el, video, stream, version}
    this._off = [];
    this._busy = false;
    els.toggle.addEventListener('click', () => this._toggleCall());
    els.leave.addEventListener('click', () => this.calls && this.calls.leave());
    els.mic.addEventListener('click', () => this._run(() => this.calls.setMic(!this.calls.media.mic)));
    els.camera.addEventListener('click', () => this._run(() => this.calls.setCamera(!this.calls.media.camera)));
    els.screen.addEventListener('click', () => this._run(() => (this.calls.local.screen ? this.calls.stopScreen() : this.calls.startScreen())));
    for (const [kind, select] of [['camera', els.cameraSelect], ['mic', els.micSelect]]) {
      select.addEventListener('change', () => this._run(() => this.calls.useDevice(kind, select.value)));
    }
    this._noticeText = h('span', { class: 'call-notice-text', 'data-testid': 'call-notice-text' });
    this._noticeClose = h('button', {
      type: 'button', class: 'link-button', 'aria-label': 'Dismiss',
      onclick: () => { els.notice.hidden = true; },
    }, 'Dismiss');
    els.notice.replaceChildren(this._noticeText, this._noticeClose);
    this._onDeviceChange = () => this._fillDevices();
    if (navigator.mediaDevices && navigator.mediaDevices.addEventListener) {
      navigator.mediaDevices.addEventListener('devicechange', this._onDeviceChange);
    }
  }

  attach(calls) {
    this.detach();
    this.calls = calls;
    this._off = [
      calls.on('change', () => this.render()),
      calls.on('notice', (n) => this._notice(n)),
    ];
    this.render();
  }

  detach() {
    for (const off of this._off) off();
    this._off = [];
    this.calls = null;
    for (const t of this.tiles.values()) t.video.srcObject = null;
    this.tiles.clear();
    this.els.stage.replaceChildren();
    this.els.notice.hidden = true;
    this.render();
  }

  async _toggleCall() {
    if (!this.calls) return;
    if (this.calls.joined) { this.calls.leave(); return; }
    await this._run(async () => {
      if (await this.calls.join()) await this._fillDevices();
    });
  }

  async _run(fn) {
    if (!this.calls || this._busy) return;
    this._busy = true;
    this.render();
    try { await fn(); } catch (err) { console.warn('lastra calls:', err); } finally {
      this._busy = false;
      this.render();
    }
  }

  _notice(n) {
    const el = this.els.notice;
    el.hidden = !n;
    el.dataset.code = n ? n.code : '';
    this._noticeText.textContent = n ? n.text : '';
  }

  async _fillDevices() {
    const calls = this.calls;
    if (!calls || !calls.joined) return;
    let devices;
    try { devices = await calls.listDevices(); } catch { return; }
    for (const [kind, select] of [['camera', this.els.cameraSelect], ['mic', this.els.micSelect]]) {
      const current = calls.currentDevice(kind);
      const list = devices[kind];
      select.replaceChildren(...list.map((d) => h('option', { value: d.deviceId }, d.label)));
      if (!list.length) select.append(h('option', { value: '' }, 'None found'));
      if (current && list.some((d) => d.deviceId === current)) select.value = current;
      select.disabled = !list.length || !calls.local[kind];
    }
  }

  render() {
    const { els } = this;
    const calls = this.calls;
    const joined = Boolean(calls && calls.joined);
    const joining = Boolean(calls && calls.joining);
    const others = calls ? calls.othersInCall() : 0;
    els.toggle.disabled = !calls || joining || (this._busy && !joined);
    els.toggle.setAttribute('aria-pressed', String(joined));
    els.toggle.dataset.state = joined ? 'joined' : joining ? 'joining' : 'idle';
    els.toggle.textContent = joined ? 'Leave call' : joining ? 'Joining…' : others ? `Join call (${others})` : 'Join call';
    els.toggle.title = joined ? 'Hang up' : others ? `${others} ${others === 1 ? 'person is' : 'people are'} in the call` : 'Start a call with camera and microphone';

    const tiles = calls ? calls.tiles() : [];
    els.section.hidden = !joined && !tiles.length;
    els.section.dataset.count = String(tiles.length);
    if (calls) {
      const media = calls.media;
      // Toggle buttons: a constant name, the state in aria-pressed (and the styling).
      const set = (btn, on, title, available = true) => {
        btn.setAttribute('aria-pressed', String(on));
        btn.title = title;
        btn.disabled = !joined || this._busy || !available;
      };
      set(els.mic, media.mic, media.mic ? 'Microphone on: click to mute' : 'Muted: click to unmute');
      set(els.camera, media.camera, media.camera ? 'Camera on: click to turn it off' : 'Camera off: click to turn it on');
      set(els.screen, Boolean(calls.local.screen), calls.local.screen ? 'Sharing: click to stop' : 'Share your screen',
        Boolean(navigator.mediaDevices && navigator.mediaDevices.getDisplayMedia));
      els.leave.disabled = !joined;
    }
    this._renderTiles(tiles);
  }

  _renderTiles(list) {
    const keep = new Set(list.map((t) => t.key));
    for (const [key, t] of this.tiles) {
      if (!keep.has(key)) {
        t.video.srcObject = null;
        t.el.remove();
        this.tiles.delete(key);
      }
    }
    const els = list.map((t) => this._tile(t));
    // Keep the order (ours first) without re-inserting nodes that are already in place:
    // moving a <video> in the DOM can pause it.
    els.forEach((el, i) => {
      if (this.els.stage.children[i] !== el) this.els.stage.insertBefore(el, this.els.stage.children[i] || null);
    });
  }

  _tile(t) {
    let tile = this.tiles.get(t.key);
    if (!tile) {
      const video = h('video', { autoplay: true, playsinline: true, 'data-testid': 'tile-video' });
      video.muted = t.local; // never play our own microphone back
      const el = h('figure', {
        class: 'tile', 'data-testid': 'tile', 'data-key': t.key, 'data-kind': t.kind,
        'data-local': String(t.local), 'data-peer-id': t.peerId || '',
      },
      video,
      h('div', { class: 'tile-placeholder', 'aria-hidden': 'true' },
        h('div', { class: `avatar large hue-${hue(t.userId)}` }, initials(t.name))),
      h('figcaption', { class: 'tile-caption' },
        h('span', { class: 'tile-name', 'data-testid': 'tile-name' }),
        h('span', { class: 'tile-mic', 'data-testid': 'tile-mic', title: 'Microphone off' }, 'muted')),
      h('span', { class: 'tile-state', 'data-testid': 'tile-state' }));
      tile = { el, video, stream: null, version: -1 };
      this.tiles.set(t.key, tile);
    }
    const { el, video } = tile;
    const name = t.name || 'Someone';
    const label = t.kind === 'screen' ? `${name} — screen` : t.local ? `${name} (you)` : name;
    const nameEl = el.querySelector('.tile-name');
    if (nameEl.textContent !== label) nameEl.textContent = label;
    el.setAttribute('aria-label', label);
    el.dataset.state = t.state || '';
    el.dataset.userId = t.userId || '';
    const hasVideo = Boolean(t.stream && t.stream.getVideoTracks().length);
    el.dataset.camera = t.kind === 'screen' || (t.media.camera && hasVideo) ? 'on' : 'off';
    el.dataset.mic = t.kind === 'screen' ? '' : t.media.mic ? 'on' : 'off';
    const stateEl = el.querySelector('.tile-state');
    const stateText = t.local ? '' : t.state === 'connected' ? '' : t.state === 'failed' ? 'Reconnecting…' : t.state === 'disconnected' ? 'Connection unstable…' : 'Connecting…';
    if (stateEl.textContent !== stateText) stateEl.textContent = stateText;
    // A MediaStream whose tracks changed is set again: some browsers only pick up the
    // tracks a stream had when it became the srcObject.
    const version = t.version || 0;
    if (tile.stream !== t.stream || tile.version !== version) {
      tile.stream = t.stream;
      tile.version = version;
      video.srcObject = t.stream || null;
      if (t.stream) video.play().catch(() => { /* autoplay blocked until the user interacts */ });
    }
    return el;
  }
}
