// One RTCPeerConnection to one remote tab, for one stream kind ("camera" or "screen"): perfect
// negotiation (the polite side rolls back on glare, the impolite side ignores the colliding
// offer), ICE candidates buffered until the remote description is set, and ICE restarts
// (connectionState `failed`, `disconnected` for 3 s, or negotiated but stuck 5-8 s). The design
// is described at the top of calls.js; the call manager owns the links and is passed in as
// `mgr` (it signals, reports outcomes and tunes bitrates for them).

const DISCONNECTED_GRACE_MS = 3000;
const FIRST_OFFER_WAIT_MS = 1500;
// Negotiated but not connected after this long: restart ICE (polite waits longer, so the two
// sides do not restart at the same moment).
const STUCK_MS = { impolite: 5000, polite: 8000 };

/** 'relayed' when the selected candidate pair goes through TURN, 'direct' otherwise. */
export async function selectedRoute(pc) {
  try {
    const report = await pc.getStats();
    let pair = null;
    report.forEach((s) => {
      if (s.type === 'transport' && s.selectedCandidatePairId) pair = report.get(s.selectedCandidatePairId);
    });
    if (!pair) report.forEach((s) => { if (!pair && s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s; });
    if (!pair) return 'unknown';
    const ends = [report.get(pair.localCandidateId), report.get(pair.remoteCandidateId)];
    return ends.some((c) => c && c.candidateType === 'relay') ? 'relayed' : 'direct';
  } catch {
    return 'unknown';
  }
}

/** One RTCPeerConnection to one remote tab, for one stream kind ("camera" or "screen"). */
export class Link {
  constructor(mgr, remote, stream, { waitForOffer = false } = {}) {
    this.mgr = mgr;
    this.remote = remote;
    this.stream = stream;
    this.polite = remote.polite;
    this.waitForOffer = waitForOffer;
    this.makingOffer = false;
    this.ignoreOffer = false;
    this.settingAnswer = false;
    this.pending = []; // candidates that came before the remote description
    this.queue = Promise.resolve(); // signals are applied one at a time, in order
    this.closed = false;
    this.senders = new Map(); // 'mic' | 'camera' | 'screen-video' | 'screen-audio' -> RTCRtpSender
    this.remoteStream = new MediaStream(); // what the remote sends on this connection
    this.createdAt = performance.now();
    this.connectedAt = null;
    this.iceRestarts = 0;
    this.collisions = 0; // glare seen (offers that crossed ours)
    this._restartTimer = null;
    this._stuckTimer = null;
    this.reported = null; // 'connected' | 'failed' once its outcome went out
    this._failTimer = setTimeout(() => mgr._reportOutcome(this, 'failed'), mgr.callFailMs);
    this._firstOfferTimer = waitForOffer ? setTimeout(() => {
      this._firstOfferTimer = null;
      this.waitForOffer = false;
      if (!this.closed && !this.pc.remoteDescription) this._negotiate();
    }, FIRST_OFFER_WAIT_MS) : null;
    const pc = new RTCPeerConnection({ iceServers: mgr.iceServers, bundlePolicy: 'max-bundle' });
    this.pc = pc;
    pc.onnegotiationneeded = () => this._negotiate();
    pc.onicecandidate = ({ candidate }) => {
      if (candidate && candidate.candidate) this.send({ type: 'candidate', candidate: candidate.toJSON() });
    };
    pc.ontrack = () => this.syncTracks();
    pc.onconnectionstatechange = () => this._stateChanged();
    pc.onsignalingstatechange = () => {
      if (pc.signalingState === 'stable') {
        this.syncTracks();
        this.mgr._tuneBitrate(this);
        this._watch();
      }
    };
  }

  send(signal) {
    if (!this.closed) this.mgr._signal(this.remote.peerId, signal, this.stream);
  }

  async _negotiate() {
    if (this.closed) return;
    if (this.waitForOffer && !this.pc.remoteDescription) return; // theirs is on its way
    if (this.pc.signalingState !== 'stable') return; // fires again once stable
    try {
      this.makingOffer = true;
      await this.pc.setLocalDescription();
      if (this.closed) return;
      const d = this.pc.localDescription;
      // Only if it is still our pending offer (not rolled back by their offer meanwhile).
      if (d && d.type === 'offer' && this.pc.signalingState === 'have-local-offer') this.send({ type: d.type, sdp: d.sdp });
    } catch (err) {
      this.mgr._warn(`offer to ${this.remote.peerId} (${this.stream}) failed`, err);
    } finally {
      this.makingOffer = false;
    }
  }

  receive(signal) {
    this.queue = this.queue
      .then(() => this._receive(signal))
      .catch((err) => this.mgr._warn(`${signal.type} from ${this.remote.peerId} (${this.stream}) failed`, err));
  }

  async _receive({ type, sdp, candidate }) {
    if (this.closed) return;
    const pc = this.pc;
    if (type === 'offer' || type === 'answer') {
      if (type === 'offer') this._stopWaiting();
      const readyForOffer = !this.makingOffer && (pc.signalingState === 'stable' || this.settingAnswer);
      const collision = type === 'offer' && !readyForOffer;
      if (collision) this.collisions += 1;
      this.ignoreOffer = !this.polite && collision;
      if (this.ignoreOffer) return; // impolite: our offer wins, theirs is dropped
      if (type === 'answer' && pc.signalingState !== 'have-local-offer') return; // stale
      this.settingAnswer = type === 'answer';
      try {
        await pc.setRemoteDescription({ type, sdp }); // polite + collision: implicit rollback
      } finally {
        this.settingAnswer = false;
      }
      await this._flushCandidates();
      if (type === 'offer') {
        await pc.setLocalDescription();
        const d = pc.localDescription;
        this.send({ type: d.type, sdp: d.sdp });
      }
    } else if (type === 'candidate') {
      if (!candidate) return; // end-of-candidates: nothing to do
      if (!pc.remoteDescription) {
        this.pending.push(candidate);
        return;
      }
      await this._addCandidate(candidate);
    }
  }

  async _flushCandidates() {
    const list = this.pending;
    this.pending = [];
    for (const c of list) await this._addCandidate(c);
  }

  async _addCandidate(candidate) {
    try {
      await this.pc.addIceCandidate(typeof candidate === 'string' ? { candidate, sdpMid: '0' } : candidate);
    } catch (err) {
      // Candidates of an offer we ignored (glare) do not fit: expected, and harmless.
      if (!this.ignoreOffer) this.mgr._debug('candidate rejected', err);
    }
  }

  _stopWaiting() {
    this.waitForOffer = false;
    clearTimeout(this._firstOfferTimer);
    this._firstOfferTimer = null;
  }

  /** Negotiated (stable, both descriptions) but not connected for a while: restart ICE. */
  _watch() {
    clearTimeout(this._stuckTimer);
    this._stuckTimer = null;
    const pc = this.pc;
    if (this.closed || !pc.remoteDescription || !pc.localDescription) return;
    if (pc.connectionState === 'connected') return;
    this._stuckTimer = setTimeout(() => {
      this._stuckTimer = null;
      const state = this.pc.connectionState;
      if (!this.closed && this.pc.signalingState === 'stable' && (state === 'new' || state === 'connecting')) {
        // A screen connection that an ICE restart did not revive (Chromium sometimes
        // never gathers after a rolled-back offer) is rebuilt from scratch.
        if (this.stream === 'screen' && this.iceRestarts > 0) this.mgr._rebuildScreen(this.remote);
        else this.restartIce(`stuck in ${state}`);
      }
    }, this.polite ? STUCK_MS.polite : STUCK_MS.impolite);
  }

  /** Keep remoteStream equal to the tracks the remote is actually sending us now. */
  syncTracks() {
    if (this.closed) return;
    const live = new Set();
    for (const t of this.pc.getTransceivers()) {
      const dir = t.currentDirection;
      if ((dir === 'sendrecv' || dir === 'recvonly') && t.receiver.track) live.add(t.receiver.track);
    }
    let changed = false;
    for (const track of this.remoteStream.getTracks()) {
      if (!live.has(track)) { this.remoteStream.removeTrack(track); changed = true; }
    }
    const have = new Set(this.remoteStream.getTracks());
    for (const track of live) {
      if (!have.has(track)) { this.remoteStream.addTrack(track); changed = true; }
    }
    if (changed) this.tracksVersion = (this.tracksVersion || 0) + 1;
    this.mgr._changed();
  }

  _stateChanged() {
    if (this.closed) return;
    const state = this.pc.connectionState;
    if (state === 'connected') {
      clearTimeout(this._restartTimer);
      this._restartTimer = null;
      clearTimeout(this._stuckTimer);
      this._stuckTimer = null;
      if (this.connectedAt === null) this.connectedAt = performance.now();
      this.mgr._reportOutcome(this, 'connected');
    } else if (state === 'failed') {
      this.restartIce('failed');
    } else if (state === 'disconnected' && !this._restartTimer) {
      // Often a blip that ICE recovers from by itself; restart only if it lasts.
      this._restartTimer = setTimeout(() => {
        this._restartTimer = null;
        if (!this.closed && this.pc.connectionState === 'disconnected') this.restartIce('disconnected');
      }, DISCONNECTED_GRACE_MS);
    }
    this.mgr._changed();
  }

  /** New ICE credentials: negotiationneeded fires and sends an ICE-restart offer. */
  restartIce(why) {
    if (this.closed || this.pc.connectionState === 'closed') return;
    this.iceRestarts += 1;
    this.mgr._debug(`ICE restart with ${this.remote.peerId} (${this.stream}): ${why}`);
    this.pc.restartIce();
  }

  /**
   * Send `track` on this connection: reuse a transceiver of its kind that sends nothing
   * (left by an earlier removeTrack), else addTrack. Either way negotiationneeded fires.
   */
  attach(key, track, stream) {
    if (this.closed || this.senders.has(key)) return;
    const free = this.pc.getTransceivers().find((t) => t.currentDirection !== 'stopped' && t.direction !== 'stopped'
      && !t.sender.track && t.receiver.track && t.receiver.track.kind === track.kind
      && [...this.senders.values()].every((s) => s !== t.sender)
      && (t.direction === 'recvonly' || t.direction === 'inactive'));
    if (free) {
      free.sender.replaceTrack(track).catch((err) => this.mgr._warn('replaceTrack failed', err));
      if (free.sender.setStreams) free.sender.setStreams(stream);
      free.direction = free.direction === 'recvonly' ? 'sendrecv' : 'sendonly';
      this.senders.set(key, free.sender);
    } else {
      this.senders.set(key, this.pc.addTrack(track, stream));
    }
  }

  /** Stop sending what `key` sends (removeTrack: renegotiates). */
  detach(key) {
    const sender = this.senders.get(key);
    if (!sender) return;
    this.senders.delete(key);
    if (!this.closed) {
      try { this.pc.removeTrack(sender); } catch (err) { this.mgr._debug('removeTrack failed', err); }
    }
  }

  close() {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this._restartTimer);
    clearTimeout(this._stuckTimer);
    clearTimeout(this._firstOfferTimer);
    clearTimeout(this._failTimer);
    const pc = this.pc;
    pc.onnegotiationneeded = pc.onicecandidate = pc.ontrack = null;
    pc.onconnectionstatechange = pc.onsignalingstatechange = null;
    try { pc.close(); } catch { /* ignore */ }
    for (const t of this.remoteStream.getTracks()) this.remoteStream.removeTrack(t);
  }
}
