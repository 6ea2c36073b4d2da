// Delivery as this client sees it, for the server's rollout figures (the `delivery-report`
// message, docs/protocol.md). LastraClient feeds a DeliveryMeter from the events it already
// handles and sends what it measured at a low fixed rate (option `reportInterval`, 30 s by
// default; 0 turns reports off). Nothing here touches the network.
//
// What is measured:
// * send→ack: from a chat's first transmission to its ack (a resend keeps the first time);
// * commit→receive: from the server's `ts` on a live chat event to its arrival, corrected by
//   the clock offset estimated from this client's own messages (the echo of a chat carries
//   the server's ts; half the round trip is the estimate's error). Replayed and history
//   events are not samples: they are old by design;
// * each resume (a `ready` after asking with lastSeq): whether it was `recovered` in the
//   same epoch, how many events it replayed, how many duplicates were suppressed (events
//   the client dropped by `seq`, and chats it sent again after the drop that the server had
//   already stored: acked by clientId without a second copy), and gaps (a seq that skipped
//   one: events lost).
// The server bounds a report to 64 samples of each kind and 16 resumes; the meter keeps
// the newest.

export const MAX_SAMPLES = 64;
export const MAX_RESUMES = 16;
const MAX_MS = 600000;
const REMEMBERED = 256;

const push = (list, value, max) => {
  list.push(value);
  if (list.length > max) list.splice(0, list.length - max);
};

export class DeliveryMeter {
  constructor() {
    this._acks = [];
    this._receipts = [];
    this._resumes = [];
    this._resume = null; // the resume being replayed now
    this._upTo = null; // the ready's lastSeq: events up to it are replay or history
    this._sent = new Map(); // clientId -> {t, wall, sends, acked, echoed, counted}
    this._offset = 0; // server clock minus ours, ms
    this._offsetRtt = Infinity;
  }

  /** A chat went out (first transmission or a resend after a reconnect). */
  sent(clientId) {
    const s = this._sent.get(clientId);
    if (s) { s.sends += 1; return; }
    this._sent.set(clientId, { t: performance.now(), wall: Date.now(), sends: 1, acked: false, echoed: false, counted: false });
    if (this._sent.size > REMEMBERED) this._sent.delete(this._sent.keys().next().value);
  }

  /** A chat's `ack` (a frame, or a POST's answer). */
  acked(clientId) {
    const s = this._sent.get(clientId);
    if (!s) return;
    if (!s.acked) push(this._acks, Math.min(MAX_MS, Math.round(performance.now() - s.t)), MAX_SAMPLES);
    s.acked = true;
    this._absorbed(s);
  }

  /** The echo of our own chat: its server `ts` estimates the clock offset. */
  echoed(clientId, ts) {
    const s = this._sent.get(clientId);
    if (!s || typeof ts !== 'number') return;
    s.echoed = true;
    this._absorbed(s);
    const rtt = Date.now() - s.wall;
    if (s.sends === 1 && rtt >= 0 && rtt < this._offsetRtt) {
      this._offsetRtt = rtt;
      this._offset = ts - (s.wall + rtt / 2);
    }
  }

  /** Sent twice, stored once (one echo, acked): the server suppressed a duplicate. */
  _absorbed(s) {
    if (s.counted || s.sends < 2 || !s.acked || !s.echoed || !this._resume) return;
    s.counted = true;
    this._resume.duplicates += 1;
  }

  /** `ready`: `asked` when this connection asked to resume (lastSeq), `sameEpoch` likewise. */
  ready(data, asked, sameEpoch) {
    this._upTo = typeof data.lastSeq === 'number' ? data.lastSeq : null;
    this._resume = null;
    if (!asked) return;
    this._resume = { recovered: Boolean(data.recovered) && sameEpoch, replayed: 0, duplicates: 0, gaps: 0 };
    push(this._resumes, this._resume, MAX_RESUMES);
  }

  /** Every envelope, before the client drops what it has seen (`lastSeq`: its newest seq). */
  received(env, seq, lastSeq) {
    if (typeof seq !== 'number') return;
    const replay = this._upTo !== null && seq <= this._upTo;
    if (lastSeq !== null && seq <= lastSeq) {
      if (this._resume) this._resume.duplicates += 1;
      return;
    }
    if (this._resume && lastSeq !== null && seq > lastSeq + 1) this._resume.gaps += seq - lastSeq - 1;
    if (replay) {
      if (this._resume) this._resume.replayed += 1;
      return;
    }
    const ts = env.data && env.data.ts;
    if (env.type === 'chat' && typeof ts === 'number') {
      const ms = Math.round(Date.now() + this._offset - ts);
      push(this._receipts, Math.max(0, Math.min(MAX_MS, ms)), MAX_SAMPLES);
    }
  }

  /** The report's data since the last one, or null when there is nothing to say. */
  take() {
    if (!this._acks.length && !this._receipts.length && !this._resumes.length) return null;
    const data = {
      sendToAckMs: this._acks, commitToReceiveMs: this._receipts,
      resumes: this._resumes.map(({ recovered, replayed, duplicates, gaps }) => ({ recovered, replayed, duplicates, gaps })),
    };
    this._acks = [];
    this._receipts = [];
    this._resumes = [];
    return data;
  }
}
