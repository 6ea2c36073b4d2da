// Calls for Lastra Chat: camera, microphone and screen sharing over WebRTC, with the chat
// server as the signaling channel. Signals go through LastraClient.send('webrtc-signal'), so
// they travel over WebSocket or SSE+POST alike. This module has no DOM of its own: the tiles,
// buttons and device pickers live in view-call.js.
//
//   const calls = new CallManager(client);         // listens to the client by itself
//   calls.on('change', () => render(calls.tiles()));
//   await calls.join();  calls.setCamera(false);  await calls.startScreen();  calls.leave();
//
// Three modules: this one, the call manager (who is in the call, the mesh, local tracks);
// call-link.js, one peer connection (perfect negotiation, candidate buffering, ICE restart);
// call-media.js, the camera and microphone choices and how they are opened.
//
// Design (also in docs/protocol.md, "Calls (WebRTC) in the bundled client"):
//
// * A full mesh: one RTCPeerConnection per remote tab (peerId) for camera + microphone.
//   Every participant uploads its video once per other participant, so upload bandwidth and
//   encoder CPU grow with N-1: at ~0.4–1 Mbit/s per 360p stream, 5 copies is what a home
//   uplink and a laptop CPU carry. The mesh is capped at MESH_LIMIT = 6 participants; beyond
//   that a call needs an SFU. Video bitrate per connection is lowered as the mesh grows.
// * Who is in the call: a tab that joined. Joining sends `media-state` (some medium on), and
//   presence shows it; every member connects to every `ready` peer whose presence shows a
//   medium on, and accepts offers from anyone while it is in the call (up to the cap). A tab
//   that is not in the call answers an offer with `bye`. `ready` (POST /api/chat-ready on SSE)
//   is sent on every (re)connection once this module listens for offers.
// * Perfect negotiation (the W3C pattern): both sides may offer whenever `negotiationneeded`
//   fires (a track added or removed, an ICE restart). On glare the *polite* side (the greater
//   peerId, by string comparison) rolls back and answers; the impolite side ignores the
//   colliding offer. ICE candidates that arrive before the remote description are buffered.
//   The *first* offer of a connection both sides open at once (both see each other in
//   presence) is left to the impolite side; the polite one offers only if none came within
//   1.5 s. That avoids rolling back a brand-new connection, after which Chromium sometimes
//   never gathers candidates; a connection negotiated but not connected after 5–8 s gets an
//   ICE restart, which recovers from that and from any other stall.
// * Screen sharing is its own RTCPeerConnection per remote tab, made on the first share and
//   kept until the peer goes. Every signal carries `stream: "camera" | "screen"`, which names
//   the connection it belongs to, so a receiver knows a track is a screen share from the
//   connection it arrived on: no SDP munging, no mid or msid bookkeeping across renegotiation.
// * Mute/unmute flips track.enabled (no renegotiation) and sends `media-state`. A device
//   change swaps the track with sender.replaceTrack (no renegotiation either).
// * A remote tab is dropped (and its tiles removed) on `bye`, when it vanishes from presence,
//   or when a signal to it gets `not_found`. Leaving the call (or the page) sends `bye`.
// * ICE restart: connectionState `failed`, or `disconnected` for 3 s, or a network change
//   (`online`, navigator.connection `change`) calls pc.restartIce(); negotiationneeded then
//   sends an offer with new ICE credentials over the same signaling path.
// * Our own reconnect gets a new peerId: the others drop the old one from presence, so we
//   drop every connection too and the mesh re-forms with the new peerId.
// * Outcomes: each connection reports once, on this page's own transport, with
//   `call-outcome` (docs/protocol.md): `connected` when it first connects (time from its
//   creation, direct or relayed candidate pair, ICE restarts so far), or `failed` when it
//   has not connected within `callFailMs` (default 30 s). The server counts them per
//   transport pair (ws-ws, ws-sse, sse-sse) for the rollout's call success figure.

import { Link, selectedRoute } from './call-link.js';
import { Devices } from './call-media.js';
import { Emitter } from './lastra-emitter.js';

export const MESH_LIMIT = 6;
const CALL_FAIL_MS = 30000;
const NO_MEDIA = Object.freeze({ camera: false, mic: false, screen: false });

const anyMedia = (m) => Boolean(m && (m.camera || m.mic || m.screen));

export class CallManager {
  /**
   * @param {import('./lastra-client.js').LastraClient} client
   * @param {{meshLimit?: number}} [options]
   */
  constructor(client, options = {}) {
    this.client = client;
    this.meshLimit = Math.max(2, Math.floor(options.meshLimit || MESH_LIMIT));
    this.callFailMs = Math.max(1000, Number(options.callFailMs) || CALL_FAIL_MS);
    this.outcomes = []; // the newest `call-outcome` reports this page sent (diagnostics)
    this.peerId = null;
    this.userId = null;
    this.userName = null;
    this.iceServers = [];
    this.presence = new Map(); // peerId -> {peerId, userId, userName, ready, media, transport}
    this.remotes = new Map(); // peerId -> {peerId, userId, userName, polite, links: {camera, screen}}
    this.declined = new Set(); // peers that said bye: not called again until they rejoin
    this.joined = false;
    this.joining = false;
    this.media = { ...NO_MEDIA };
    this.local = { mic: null, camera: null, screen: null }; // tracks; screen is a MediaStream
    this.localStream = new MediaStream(); // mic + camera, as sent
    this.preview = new MediaStream(); // camera only, for our own tile
    this.devices = new Devices(); // the chosen camera and microphone, and how to open them
    this.notice = null;
    this._events = new Emitter('lastra calls');
    this._seenInCall = new Map();
    this._fullNoticed = new Set();
    this._refs = new Map(); // signal ref -> peerId, to map a not_found back to its peer
    this._ref = 0;
    this._changeQueued = false;

    const c = client;
    this._off = [
      c.on('ready', (d) => this._onReady(d)),
      c.on('presence', (d) => this._onPresence(d.users || [], true)),
      c.on('presence-diff', (d) => this._onPresenceDiff(d)),
      c.on('presence-page', (d) => this._onPresenceDiff({ upsert: d.users || [] })), // §8
      c.on('webrtc-signal', (d) => this._onSignal(d)),
      c.on('ack', (d) => { if (d && d.ref) this._refs.delete(d.ref); }),
      c.on('error', (e) => this._onError(e)),
    ];
    this._onNetwork = () => this.restartIce('network change');
    this._onPageHide = () => this.leave({ quiet: true });
    addEventListener('online', this._onNetwork);
    addEventListener('pagehide', this._onPageHide);
    if (navigator.connection && navigator.connection.addEventListener) {
      navigator.connection.addEventListener('change', this._onNetwork);
    }
    if (client.isConnected && client.peerId) this._onReady({ peerId: client.peerId, userId: client.userId, userName: client.userName });
  }

  // ------------------------------------------------------------------ public API

  on(type, fn) { return this._events.on(type, fn); }

  /** Peers (other tabs) that presence shows in a call now. */
  othersInCall() {
    let n = 0;
    for (const p of this.presence.values()) if (p.peerId !== this.peerId && p.ready && anyMedia(p.media)) n += 1;
    return n;
  }

  /** Join the call: camera and microphone (whatever is available), then connect to the others. */
  async join() {
    if (this.joined || this.joining) return this.joined;
    const others = this.othersInCall();
    if (others >= this.meshLimit) {
      this._notify('full', `The call is full: ${others} people are in it, and a peer-to-peer call works well only up to ${this.meshLimit}. Try again when someone leaves.`);
      return false;
    }
    if (!navigator.mediaDevices || typeof RTCPeerConnection !== 'function') {
      this._notify('unsupported', 'Calls need a browser with WebRTC, on https or localhost.');
      return false;
    }
    this.joining = true;
    this._changed();
    try {
      const got = await this._acquire(['mic', 'camera']);
      if (!got.mic && !got.camera) this._notify('no-devices', 'No camera or microphone could be opened: you are in the call to watch and listen only.');
      else if (!got.camera) this._notify('no-camera', 'The camera could not be opened: you are in the call with your microphone only.');
      else if (!got.mic) this._notify('no-mic', 'The microphone could not be opened: you are in the call with your camera only.');
      else this._notify(null);
    } finally {
      this.joining = false;
    }
    this.joined = true;
    this.declined.clear();
    this.media = { camera: Boolean(this.local.camera), mic: Boolean(this.local.mic), screen: false };
    this._sendMedia();
    for (const p of this.presence.values()) this._maybeConnect(p);
    this._changed();
    return true;
  }

  /** Leave the call: `bye` to everyone, stop every device. */
  leave({ quiet = false } = {}) {
    if (!this.joined && !this.joining) return;
    this.joined = false;
    for (const remote of [...this.remotes.values()]) {
      this._signal(remote.peerId, { type: 'bye' }, 'camera');
      this._closeRemote(remote);
    }
    if (this.local.screen) for (const t of this.local.screen.getTracks()) t.stop();
    for (const kind of ['mic', 'camera']) if (this.local[kind]) this.local[kind].stop();
    this.local = { mic: null, camera: null, screen: null };
    this.localStream = new MediaStream();
    this.preview = new MediaStream();
    this.media = { ...NO_MEDIA };
    if (!quiet) this._sendMedia();
    this._changed();
  }

  /** Turn the microphone on or off (mute: track.enabled, no renegotiation). */
  async setMic(on) { return this._setDevice('mic', on); }

  /** Turn the camera on or off (track.enabled, no renegotiation). */
  async setCamera(on) { return this._setDevice('camera', on); }

  /** Share the screen (getDisplayMedia) on its own connection to every peer. */
  async startScreen() {
    if (!this.joined || this.local.screen) return Boolean(this.local.screen);
    if (!navigator.mediaDevices.getDisplayMedia) {
      this._notify('screen', 'This browser cannot share the screen.');
      return false;
    }
    let stream;
    try {
      stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
    } catch (err) {
      this._notify('screen', err && err.name === 'NotAllowedError' ? 'Screen sharing was cancelled.' : `Screen sharing failed: ${err && err.message}`);
      return false;
    }
    if (!this.joined) { for (const t of stream.getTracks()) t.stop(); return false; }
    this.local.screen = stream;
    for (const t of stream.getTracks()) {
      if (t.kind === 'video' && 'contentHint' in t) t.contentHint = 'detail';
      t.addEventListener('ended', () => { if (this.local.screen === stream) this.stopScreen(); }); // browser's "Stop sharing"
    }
    for (const remote of this.remotes.values()) this._attachScreen(this._link(remote, 'screen'));
    this.media.screen = true;
    this._sendMedia();
    this._changed();
    return true;
  }

  stopScreen() {
    const stream = this.local.screen;
    if (!stream) return;
    this.local.screen = null;
    for (const remote of this.remotes.values()) {
      const link = remote.links.screen;
      if (link) for (const key of ['screen-video', 'screen-audio']) link.detach(key);
    }
    for (const t of stream.getTracks()) t.stop();
    this.media.screen = false;
    this._sendMedia();
    this._changed();
  }

  /** Cameras and microphones: {camera: [{deviceId, label}], mic: [...]} (labels once allowed). */
  async listDevices() { return this.devices.list(); }

  /** The device in use (or chosen) for 'camera' or 'mic'. */
  currentDevice(kind) {
    const track = this.local[kind];
    const id = track && track.getSettings ? track.getSettings().deviceId : null;
    return id || this.devices.chosen[kind] || null;
  }

  /** Switch camera or microphone: a new track goes out with replaceTrack (no renegotiation). */
  async useDevice(kind, deviceId) {
    this.devices.choose(kind, deviceId);
    const old = this.local[kind];
    if (!this.joined || !old) return;
    let track;
    try {
      track = await this.devices.open(kind, deviceId);
    } catch (err) {
      if (err && err.name === 'NotReadableError') { // some systems open one camera at a time
        old.stop();
        track = await this.devices.open(kind, deviceId).catch(() => null);
      }
      if (!track) {
        this._notify('device', `Could not switch the ${kind === 'mic' ? 'microphone' : 'camera'}: ${err && err.message}`);
        return;
      }
    }
    track.enabled = old.enabled;
    await Promise.all([...this.remotes.values()].map((r) => {
      const sender = r.links.camera && r.links.camera.senders.get(kind);
      return sender ? sender.replaceTrack(track).catch((e) => this._warn('replaceTrack failed', e)) : null;
    }));
    this._setLocal(kind, track);
    old.stop();
    this._changed();
  }

  /** Restart ICE on every connection (after a network change). */
  restartIce(why = 'asked') {
    for (const remote of this.remotes.values()) {
      for (const link of Object.values(remote.links)) {
        if (link && link.pc.connectionState !== 'new') link.restartIce(why);
      }
    }
  }

  /** Everything to draw: one tile per camera and per screen share, ours first. */
  tiles() {
    const list = [];
    if (this.joined) {
      list.push({
        key: 'local:camera', local: true, kind: 'camera', peerId: this.peerId, userId: this.userId,
        name: this.userName, stream: this.preview, media: { ...this.media }, state: 'local',
      });
      if (this.local.screen) {
        list.push({
          key: 'local:screen', local: true, kind: 'screen', peerId: this.peerId, userId: this.userId,
          name: this.userName, stream: this.local.screen, media: { ...this.media }, state: 'local',
        });
      }
    }
    for (const remote of this.remotes.values()) {
      const p = this.presence.get(remote.peerId);
      const media = p ? { ...NO_MEDIA, ...p.media } : { ...NO_MEDIA };
      const cam = remote.links.camera;
      list.push({
        key: `${remote.peerId}:camera`, local: false, kind: 'camera', peerId: remote.peerId, userId: remote.userId,
        name: remote.userName, stream: cam ? cam.remoteStream : null, version: cam ? cam.tracksVersion : 0,
        media, state: cam ? cam.pc.connectionState : 'new',
      });
      const scr = remote.links.screen;
      if (scr && scr.remoteStream.getVideoTracks().length) {
        list.push({
          key: `${remote.peerId}:screen`, local: false, kind: 'screen', peerId: remote.peerId, userId: remote.userId,
          name: remote.userName, stream: scr.remoteStream, version: scr.tracksVersion, media,
          state: scr.pc.connectionState,
        });
      }
    }
    return list;
  }

  /**
   * Per connection: state, connect time and bytes in/out by kind (diagnostics; the tests
   * read it too). [{peerId, userName, stream, connectionState, connectMs, iceRestarts,
   *  bytesReceived: {audio, video}, bytesSent: {audio, video}, receiving: {audio, video}}]
   */
  async stats() {
    const out = [];
    for (const remote of this.remotes.values()) {
      for (const [stream, link] of Object.entries(remote.links)) {
        if (!link || link.closed) continue;
        const row = {
          peerId: remote.peerId, userName: remote.userName, stream, polite: link.polite,
          connectionState: link.pc.connectionState, signalingState: link.pc.signalingState,
          connectMs: link.connectedAt === null ? null : Math.round(link.connectedAt - link.createdAt),
          iceRestarts: link.iceRestarts, collisions: link.collisions,
          remoteUfrag: ((link.pc.remoteDescription && link.pc.remoteDescription.sdp.match(/a=ice-ufrag:(\S+)/)) || [])[1] || null,
          bytesReceived: { audio: 0, video: 0 }, bytesSent: { audio: 0, video: 0 },
          receiving: {
            audio: link.remoteStream.getAudioTracks().length, video: link.remoteStream.getVideoTracks().length,
          },
        };
        const report = await link.pc.getStats();
        report.forEach((s) => {
          if (s.type === 'inbound-rtp' && s.kind in row.bytesReceived) row.bytesReceived[s.kind] += s.bytesReceived || 0;
          if (s.type === 'outbound-rtp' && s.kind in row.bytesSent) row.bytesSent[s.kind] += s.bytesSent || 0;
        });
        out.push(row);
      }
    }
    return out;
  }

  destroy() {
    this.leave();
    for (const off of this._off) off();
    removeEventListener('online', this._onNetwork);
    removeEventListener('pagehide', this._onPageHide);
    if (navigator.connection && navigator.connection.removeEventListener) {
      navigator.connection.removeEventListener('change', this._onNetwork);
    }
    this._events.clear();
  }

  // ------------------------------------------------------------------ client events

  _onReady(data) {
    const previous = this.peerId;
    this.peerId = data.peerId || null;
    if (data.userId) this.userId = data.userId;
    if (data.userName) this.userName = data.userName;
    if (Array.isArray(data.iceServers)) this.iceServers = data.iceServers;
    this._refs.clear();
    if (previous && previous !== this.peerId) {
      // We reconnected as a new peer; the others drop the old one, so do we.
      for (const remote of [...this.remotes.values()]) this._closeRemote(remote);
      this.declined.clear();
    }
    this.client.send('ready', {}); // this tab takes offers (POST /api/chat-ready on SSE)
    if (this.joined) this._sendMedia(); // a new peer starts with everything off
    this._changed();
  }

  _onPresence(users) {
    this.presence = new Map();
    for (const u of users) this._addUser(u);
    this._reconcile();
  }

  _onPresenceDiff({ upsert = [], remove = [] }) {
    const gone = new Set([...remove, ...upsert.map((u) => u.userId)]);
    for (const [peerId, p] of this.presence) if (gone.has(p.userId)) this.presence.delete(peerId);
    for (const u of upsert) this._addUser(u);
    this._reconcile();
  }

  _addUser(u) {
    for (const peer of u.peers || []) {
      this.presence.set(peer.peerId, {
        peerId: peer.peerId, userId: u.userId, userName: u.userName, transport: peer.transport,
        ready: Boolean(peer.ready), media: { ...NO_MEDIA, ...(peer.media || {}) },
      });
    }
  }

  _reconcile() {
    for (const remote of [...this.remotes.values()]) {
      const p = this.presence.get(remote.peerId);
      if (p) {
        remote.seen = true;
        remote.userName = p.userName;
      } else if (remote.seen) {
        this._closeRemote(remote); // its presence disappeared: the tab is gone
      }
      // (Not seen yet: its offer overtook its own arrival in presence, which is batched.)
    }
    for (const peerId of [...this._seenInCall.keys()]) if (!this.presence.has(peerId)) this._seenInCall.delete(peerId);
    for (const p of this.presence.values()) {
      const inCall = anyMedia(p.media);
      if (inCall && !this._seenInCall.get(p.peerId)) this.declined.delete(p.peerId); // (re)joined
      this._seenInCall.set(p.peerId, inCall);
      if (this.joined) this._maybeConnect(p);
    }
    this._changed();
  }

  _maybeConnect(p) {
    if (p.peerId === this.peerId || !p.ready || !anyMedia(p.media)) return;
    if (this.remotes.has(p.peerId) || this.declined.has(p.peerId)) return;
    if (this.remotes.size >= this.meshLimit - 1) {
      if (!this._fullNoticed.has(p.peerId)) {
        this._fullNoticed.add(p.peerId);
        this._notify('full', `${p.userName} is in the call too, but this call is full (${this.meshLimit} people is the most a peer-to-peer call handles well).`);
      }
      return;
    }
    this._createRemote(p.peerId, p.userId, p.userName);
  }

  _onSignal({ from, fromUser, signal, stream }) {
    if (!from || !signal || typeof signal.type !== 'string' || from === this.peerId) return;
    const kind = stream === 'screen' ? 'screen' : 'camera';
    let remote = this.remotes.get(from);
    if (signal.type === 'bye') {
      if (!remote) return;
      if (kind === 'screen') {
        this._closeLink(remote, 'screen');
        if (this.local.screen) this._attachScreen(this._link(remote, 'screen')); // we still share
      } else {
        this.declined.add(from);
        const cam = remote.links.camera;
        const p = this.presence.get(from);
        if (this.joined && cam && cam.connectedAt === null && p && anyMedia(p.media)) {
          this._notify('declined', `${remote.userName} did not take the connection: their call may be full.`);
        }
        this._closeRemote(remote);
      }
      this._changed();
      return;
    }
    const name = (fromUser && fromUser.userName) || 'Someone';
    if (!remote) {
      if (signal.type !== 'offer') return; // late candidate or answer of a closed connection
      if (!this.joined) {
        this._signal(from, { type: 'bye' }, kind); // not in the call
        return;
      }
      if (this.remotes.size >= this.meshLimit - 1) {
        this._signal(from, { type: 'bye' }, kind);
        this._notify('full', `${name} tried to join, but the call is full (${this.meshLimit} people is the most a peer-to-peer call handles well).`);
        return;
      }
      this.declined.delete(from);
      remote = this._createRemote(from, fromUser && fromUser.userId, name, { answering: true });
    }
    if (fromUser && fromUser.userName) remote.userName = fromUser.userName;
    let link = remote.links[kind];
    if (!link) {
      if (signal.type !== 'offer') return;
      link = this._link(remote, kind, { answering: true });
    }
    link.receive(signal);
  }

  _onError(e) {
    if (!e || !e.ref || !this._refs.has(e.ref)) return;
    const peerId = this._refs.get(e.ref);
    this._refs.delete(e.ref);
    if (e.code === 'not_found') {
      const remote = this.remotes.get(peerId);
      if (remote) this._closeRemote(remote); // the tab went away before presence told us
    } else {
      this._warn(`signal to ${peerId} refused: ${e.code} ${e.message || ''}`);
    }
  }

  // ------------------------------------------------------------------ connections

  _createRemote(peerId, userId, userName, { answering = false } = {}) {
    const remote = {
      peerId, userId: userId || null, userName: userName || 'Someone',
      polite: String(this.peerId) > String(peerId), links: { camera: null, screen: null },
      seen: this.presence.has(peerId),
    };
    this.remotes.set(peerId, remote);
    for (const r of this.remotes.values()) if (r.links.camera) this._tuneBitrate(r.links.camera);
    this._link(remote, 'camera', { answering });
    if (this.local.screen) this._attachScreen(this._link(remote, 'screen'));
    this._changed();
    return remote;
  }

  _link(remote, kind, { answering = false } = {}) {
    let link = remote.links[kind];
    if (link && !link.closed) return link;
    // Both sides may open a connection at the same instant (seeing each other, or both
    // starting to share): the impolite one offers first, so the polite one never has to
    // roll back a first offer (the Chromium quirk above).
    const waitForOffer = !answering && remote.polite;
    link = new Link(this, remote, kind, { waitForOffer });
    remote.links[kind] = link;
    if (kind === 'camera') {
      for (const key of ['mic', 'camera']) if (this.local[key]) link.attach(key, this.local[key], this.localStream);
      // Watching only, and we call first: still ask for their audio and video. (When we
      // answer, their offer brings the m-lines; extra recvonly ones would only be unused.)
      if (!answering && !this.local.mic) link.pc.addTransceiver('audio', { direction: 'recvonly' });
      if (!answering && !this.local.camera) link.pc.addTransceiver('video', { direction: 'recvonly' });
    }
    return link;
  }

  /** Replace a dead screen connection: `bye` makes the other side drop its end too. */
  _rebuildScreen(remote) {
    this._debug(`rebuilding the screen connection with ${remote.peerId}`);
    this._signal(remote.peerId, { type: 'bye' }, 'screen');
    this._closeLink(remote, 'screen');
    if (this.local.screen) this._attachScreen(this._link(remote, 'screen'));
    this._changed();
  }

  _attachScreen(link) {
    const stream = this.local.screen;
    if (!stream) return;
    for (const t of stream.getTracks()) link.attach(`screen-${t.kind}`, t, stream);
  }

  _closeLink(remote, kind) {
    const link = remote.links[kind];
    if (!link) return;
    link.close();
    remote.links[kind] = null;
  }

  _closeRemote(remote) {
    if (this.remotes.get(remote.peerId) !== remote) return;
    this.remotes.delete(remote.peerId);
    for (const kind of ['camera', 'screen']) this._closeLink(remote, kind);
    for (const r of this.remotes.values()) if (r.links.camera) this._tuneBitrate(r.links.camera);
    this._changed();
  }

  _signal(to, signal, stream) {
    // Offers, answers and byes carry a ref, so a not_found for a gone peer maps back to it.
    let ref;
    if (signal.type !== 'candidate') {
      this._ref += 1;
      ref = `rtc-${this._ref}`;
      this._refs.set(ref, to);
      if (this._refs.size > 500) this._refs.delete(this._refs.keys().next().value);
    }
    return this.client.send('webrtc-signal', { to, signal, stream }, ref ? { ref } : {});
  }

  /** Report a connection's outcome once (`call-outcome`, on this page's transport). */
  async _reportOutcome(link, outcome) {
    if (link.reported || link.closed) return;
    link.reported = outcome;
    clearTimeout(link._failTimer);
    const data = { peerId: link.remote.peerId, stream: link.stream, outcome, iceRestarts: link.iceRestarts };
    const p = this.presence.get(link.remote.peerId);
    if (p && p.transport) data.remoteTransport = p.transport === 'ws' ? 'ws' : 'sse';
    if (outcome === 'connected') {
      data.connectMs = Math.max(0, Math.round(link.connectedAt - link.createdAt));
      data.route = await selectedRoute(link.pc);
    }
    this.outcomes.push(data);
    if (this.outcomes.length > 50) this.outcomes.shift();
    if (this.client.isConnected) this.client.send('call-outcome', data);
  }

  /** Less video bitrate per connection as the mesh grows: the uplink is shared by N-1 copies. */
  _tuneBitrate(link) {
    if (link.stream !== 'camera' || link.closed) return;
    const sender = link.senders.get('camera');
    if (!sender || !sender.getParameters) return;
    const params = sender.getParameters();
    if (!params.encodings || !params.encodings.length) return;
    const copies = Math.max(1, this.remotes.size);
    const maxBitrate = Math.round(Math.max(150000, Math.min(900000, 2000000 / copies)));
    if (params.encodings[0].maxBitrate === maxBitrate) return;
    params.encodings[0].maxBitrate = maxBitrate;
    sender.setParameters(params).catch((err) => this._debug('setParameters failed', err));
  }

  // ------------------------------------------------------------------ local media

  async _setDevice(kind, on) {
    if (!this.joined) return false;
    if (on && !this.local[kind]) {
      const got = await this._acquire([kind]);
      if (!got[kind]) {
        this._notify('device', `The ${kind === 'mic' ? 'microphone' : 'camera'} could not be opened.`);
        return false;
      }
      // A new track on every connection: addTrack (or a free transceiver), renegotiated.
      for (const remote of this.remotes.values()) {
        const link = this._link(remote, 'camera');
        link.attach(kind, this.local[kind], this.localStream);
      }
    } else if (this.local[kind]) {
      this.local[kind].enabled = on; // mute: frames/silence keep flowing, nothing renegotiated
    }
    this.media[kind] = Boolean(on && this.local[kind]);
    this._sendMedia();
    this._changed();
    return this.media[kind];
  }

  /** Open the given kinds ('mic', 'camera'); returns {mic: bool, camera: bool}. */
  async _acquire(kinds) {
    const got = { mic: false, camera: false };
    const want = kinds.filter((k) => !this.local[k]);
    if (!want.length) return { mic: Boolean(this.local.mic), camera: Boolean(this.local.camera) };
    let stream = null;
    try {
      stream = await this.devices.capture(want, true);
    } catch {
      // One device may be missing or busy: try them one by one.
      for (const k of want) {
        try {
          const s = await this.devices.capture([k], true);
          if (!stream) stream = s; else for (const t of s.getTracks()) stream.addTrack(t);
        } catch (err) {
          this._debug(`no ${k}`, err);
        }
      }
    }
    if (stream) {
      for (const t of stream.getAudioTracks()) if (want.includes('mic')) this._setLocal('mic', t);
      for (const t of stream.getVideoTracks()) if (want.includes('camera')) this._setLocal('camera', t);
    }
    for (const k of ['mic', 'camera']) got[k] = Boolean(this.local[k]);
    return got;
  }

  _setLocal(kind, track) {
    const old = this.local[kind];
    if (old) {
      this.localStream.removeTrack(old);
      if (kind === 'camera') this.preview.removeTrack(old);
    }
    this.local[kind] = track;
    this.localStream.addTrack(track);
    if (kind === 'camera') this.preview.addTrack(track);
    track.addEventListener('ended', () => {
      // Unplugged or revoked: say so (the remote sees `media-state` off).
      if (this.local[kind] !== track || !this.joined) return;
      this.media[kind] = false;
      this._sendMedia();
      this._notify('device', `The ${kind === 'mic' ? 'microphone' : 'camera'} stopped.`);
      this._changed();
    });
  }

  _sendMedia() {
    if (this.client.isConnected) this.client.send('media-state', { ...this.media });
  }

  // ------------------------------------------------------------------ plumbing

  _notify(code, text) {
    this.notice = code ? { code, text } : null;
    this._emit('notice', this.notice);
    this._changed();
  }

  _changed() {
    if (this._changeQueued) return;
    this._changeQueued = true;
    queueMicrotask(() => {
      this._changeQueued = false;
      this._emit('change', this);
    });
  }

  _emit(type, data) { this._events.emit(type, data); }

  _warn(message, err) { console.warn(`lastra calls: ${message}`, err || ''); }

  _debug(message, err) { if (this.debug) console.debug(`lastra calls: ${message}`, err || ''); }
}

export default CallManager;
