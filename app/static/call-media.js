// Local media devices for calls: which camera and microphone the user chose (remembered in
// localStorage), listing them, and opening them with the constraints a mesh call wants
// (360p at most: a mesh sends one copy of our video per participant).

const DEVICES_KEY = 'lastra.devices';

function loadDevices() {
  try { return JSON.parse(localStorage.getItem(DEVICES_KEY) || '{}') || {}; } catch { return {}; }
}

function saveDevices(devices) {
  try { localStorage.setItem(DEVICES_KEY, JSON.stringify(devices)); } catch { /* ignore */ }
}

export class Devices {
  constructor() {
    this.chosen = loadDevices(); // {camera: deviceId, mic: deviceId}
  }

  /** Remember `deviceId` for 'camera' or 'mic'. */
  choose(kind, deviceId) {
    this.chosen = { ...this.chosen, [kind]: deviceId };
    saveDevices(this.chosen);
  }

  /** Cameras and microphones: {camera: [{deviceId, label}], mic: [...]} (labels once allowed). */
  async list() {
    const out = { camera: [], mic: [] };
    if (!navigator.mediaDevices || !navigator.mediaDevices.enumerateDevices) return out;
    const all = await navigator.mediaDevices.enumerateDevices();
    for (const d of all) {
      const kind = d.kind === 'videoinput' ? 'camera' : d.kind === 'audioinput' ? 'mic' : null;
      if (!kind || !d.deviceId) continue;
      out[kind].push({ deviceId: d.deviceId, label: d.label || `${kind === 'camera' ? 'Camera' : 'Microphone'} ${out[kind].length + 1}` });
    }
    return out;
  }

  /** getUserMedia for the chosen devices; a remembered device that is gone: any will do. */
  async capture(kinds, fallbackToAny) {
    const c = {};
    if (kinds.includes('mic')) c.audio = this.constraint('mic', this.chosen.mic);
    if (kinds.includes('camera')) c.video = this.constraint('camera', this.chosen.camera);
    try {
      return await navigator.mediaDevices.getUserMedia(c);
    } catch (err) {
      // A remembered device that is gone: any device will do.
      if (!fallbackToAny || !(this.chosen.mic || this.chosen.camera) || err.name !== 'OverconstrainedError') throw err;
      const any = {};
      if (c.audio) any.audio = this.constraint('mic', null);
      if (c.video) any.video = this.constraint('camera', null);
      return navigator.mediaDevices.getUserMedia(any);
    }
  }

  /** One track of `kind` from `deviceId` (a device switch). */
  async open(kind, deviceId) {
    const c = kind === 'mic' ? { audio: this.constraint('mic', deviceId) } : { video: this.constraint('camera', deviceId) };
    const s = await navigator.mediaDevices.getUserMedia(c);
    return kind === 'mic' ? s.getAudioTracks()[0] : s.getVideoTracks()[0];
  }

  /** What we ask of a camera or microphone. */
  constraint(kind, deviceId) {
    const id = deviceId ? { deviceId: { exact: deviceId } } : {};
    if (kind === 'mic') return { ...id, echoCancellation: true, noiseSuppression: true };
    // 360p at most: a mesh sends one copy per participant.
    return { ...id, width: { ideal: 640 }, height: { ideal: 360 }, frameRate: { ideal: 24, max: 30 } };
  }
}
