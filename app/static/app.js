// The Lastra Chat page: joins with a name, then wires LastraClient events to the views.
import { LastraClient } from './lastra-client.js';
import { $ } from './dom.js';
import { MessageList } from './view-messages.js';
import { People, Bots, Typing } from './view-sidebar.js';
import { Composer, COMMANDS } from './view-composer.js';
import { Banner, UnreadTitle, Sound } from './view-status.js';
import { CallManager, MESH_LIMIT } from './calls.js';
import { CallView } from './view-call.js';

const SESSION_KEY = 'lastra.session';
const LEFT_KEY = 'lastra.left';
const TITLE = 'Lastra Chat';
const MAX_TEXT = 4000;

const store = {
  get(key) { try { return localStorage.getItem(key); } catch { return null; } },
  set(key, value) { try { if (value === null) localStorage.removeItem(key); else localStorage.setItem(key, value); } catch { /* ignore */ } },
  json(key) { try { return JSON.parse(this.get(key) || 'null'); } catch { return null; } },
};

const joinView = $('#join-view');
const chatView = $('#chat-view');
const joinForm = $('#join-form');
const joinName = $('#join-name');
const joinError = $('#join-error');

let client = null;
let calls = null;
let me = { userId: null, userName: null };
let cmdRef = 0;
const pendingCommands = new Map(); // ref -> label, to explain a failed command

const unread = new UnreadTitle(TITLE);
const sound = new Sound();

const messages = new MessageList($('#messages'), {
  onRetry: (clientId) => client && client.retry(clientId),
  onDiscard: (clientId) => { if (client && client.discard(clientId)) messages.removePending(clientId); },
});
const people = new People($('#people'), $('#people-count'));
people.more = () => (client ? client.morePresence() : Promise.resolve(null)); // a large room's next page
const typing = new Typing($('#typing'));
const bots = new Bots($('#bots'), (name, enabled) => command('bot-toggle', { bot: name, enabled }, `turn ${name} ${enabled ? 'on' : 'off'}`));
const banner = new Banner($('#banner'), $('#conn-pill'), $('#connection-status'), {
  onRetry: () => client && client.reconnectNow(),
});
const callView = new CallView({
  toggle: $('#call-toggle'),
  section: $('#call'),
  stage: $('#stage'),
  notice: $('#call-notice'),
  mic: $('#call-mic'),
  camera: $('#call-camera'),
  screen: $('#call-screen'),
  leave: $('#call-leave'),
  cameraSelect: $('#device-camera'),
  micSelect: $('#device-mic'),
});
// An operator or a test may lower the mesh cap for this browser: localStorage lastra.meshLimit.
const meshLimit = () => Number(store.get('lastra.meshLimit')) || MESH_LIMIT;
const composer = new Composer({
  form: $('#composer'),
  input: $('#message-input'),
  list: $('#command-list'),
  onSend: sendChat,
  onCommand: runCommand,
  onTyping: (isTyping) => client && client.isConnected && client.send('typing', { isTyping }),
});

// ------------------------------------------------------------------ join / leave

function showJoin(error = '') {
  chatView.hidden = true;
  joinView.hidden = false;
  const stored = store.json(SESSION_KEY);
  if (!joinName.value && stored && stored.userName) joinName.value = stored.userName;
  joinError.textContent = error;
  joinName.setAttribute('aria-invalid', String(Boolean(error)));
  joinName.focus();
}

joinForm.addEventListener('submit', (ev) => {
  ev.preventDefault();
  const name = joinName.value.trim();
  // eslint-disable-next-line no-control-regex
  if (!name || name.length > 64 || /[\u0000-\u001f\u007f]/.test(name)) {
    showJoin('Please enter a name of 1 to 64 characters.');
    return;
  }
  store.set(LEFT_KEY, null);
  start(name);
});

function leave() {
  callView.detach();
  if (calls) calls.destroy();
  calls = null;
  if (client) client.destroy();
  client = null;
  store.set(LEFT_KEY, '1');
  joinName.value = me.userName || '';
  setSidebar(false);
  showJoin();
}
for (const b of document.querySelectorAll('[data-action="leave"]')) b.addEventListener('click', leave);

function setMe(userId, userName) {
  if (userId) me.userId = userId;
  if (userName) me.userName = userName;
  messages.me = people.me = typing.me = me.userId;
  messages.meName = me.userName;
  $('#me-name').textContent = me.userName || '';
  $('#me-name-mobile').textContent = me.userName || '';
  people.render();
}

function start(userName) {
  joinView.hidden = true;
  chatView.hidden = false;
  me = { userId: null, userName: null };
  const stored = store.json(SESSION_KEY);
  if (stored && stored.userName === userName) setMe(stored.userId, stored.userName);
  else setMe(null, userName);

  // Tests (and curious operators) may set how often this page reports delivery figures.
  const reportInterval = Number(store.get('lastra.reportInterval')) || undefined;
  client = new LastraClient({ userName, autoConnect: false, ...(reportInterval ? { reportInterval } : {}) });
  window.lastra = client; // handy in the devtools console
  const c = client;
  calls = new CallManager(c, { meshLimit: meshLimit(), callFailMs: Number(store.get('lastra.callFailMs')) || undefined });
  window.lastraCall = calls; // calls.stats() in the console shows every connection
  callView.attach(calls);
  const on = (type, fn) => c.on(type, (...args) => { if (client === c) fn(...args); });

  on('session', ({ userId, userName: name }) => setMe(userId, name));
  on('status', (snap) => {
    banner.update(snap);
    if (snap.status === 'CLOSED' && snap.error && snap.error.code === 'invalid' && !me.userId) {
      callView.detach();
      if (calls) calls.destroy();
      calls = null;
      c.destroy();
      client = null;
      showJoin(snap.error.message);
    }
  });
  on('ready', (d) => { setMe(d.userId, d.userName); typing.reset(); });
  on('history', (d) => messages.setHistory(d.messages || []));
  on('chat', (m) => {
    const isNew = messages.upsert(m);
    if (m.userId) typing.stopped(m.userId);
    if (isNew && m.kind !== 'system' && m.userId !== me.userId) {
      unread.bump();
      sound.beep();
    }
  });
  on('clear', (d) => messages.clear(d.by));
  on('presence', (d) => people.snapshot(d.users, d));
  on('presence-page', (d) => people.page(d));
  on('presence-diff', (d) => people.diff(d));
  on('typing', (d) => typing.set(d));
  on('bot-state', (d) => {
    messages.bots = new Map((d.bots || []).map((b) => [b.name, b.displayName || b.name]));
    bots.set(d.bots);
  });
  on('ai-stream', (d) => messages.stream(d));
  on('message-state', (item) => messages.pending(item));
  on('ack', (d) => { if (d.ref) pendingCommands.delete(d.ref); });
  on('error', (e) => {
    if (e.ref && pendingCommands.has(e.ref)) {
      messages.note(`Could not ${pendingCommands.get(e.ref)}: ${e.message || e.code}`);
      pendingCommands.delete(e.ref);
    } else if (e.code === 'rate_limited') {
      messages.note('Slow down a little — you are sending too fast.');
    } else if (!e.ref) {
      console.warn('lastra: server error', e);
    }
  });

  for (const item of c.outbox) messages.pending(item);
  c.connect();
  composer.focus();
}

// ------------------------------------------------------------------ sending

function sendChat(text) {
  if (!client) return false;
  if (text.length > MAX_TEXT) {
    messages.note(`That message is ${text.length} characters; the limit is ${MAX_TEXT}.`);
    return false;
  }
  client.send('chat', { text });
  return true;
}

function command(type, data, label) {
  if (!client || !client.isConnected) {
    messages.note(`Not connected — could not ${label}. Try again when the banner is gone.`);
    return false;
  }
  cmdRef += 1;
  const ref = `cmd-${cmdRef}`;
  pendingCommands.set(ref, label);
  return client.send(type, data, { ref });
}

function runCommand(name) {
  switch (name) {
    case '/help':
      messages.note([
        'Commands:',
        ...COMMANDS.map((c) => `  ${c.name}${c.args ? ` ${c.args}` : ''} — ${c.about}`),
        'Keys: Enter sends, Shift+Enter starts a new line, Tab completes a command, Esc closes the list.',
        'Start a message with // to send a literal slash.',
      ].join('\n'), { help: true });
      break;
    case '/clear':
      command('clear', {}, 'clear the chat');
      break;
    case '/sound':
      toggleSound();
      messages.note(`Sound is ${sound.enabled ? 'on' : 'off'}.`);
      break;
    default:
      messages.note(`Unknown command ${name}. Type /help for the list.`);
  }
}

// ------------------------------------------------------------------ chrome

const soundButtons = document.querySelectorAll('[data-action="sound"]');
function renderSound() {
  for (const b of soundButtons) {
    b.setAttribute('aria-pressed', String(sound.enabled));
    b.textContent = sound.enabled ? 'Sound on' : 'Sound off';
  }
}
function toggleSound() { sound.toggle(); renderSound(); }
for (const b of soundButtons) b.addEventListener('click', toggleSound);
renderSound();

const layout = $('#layout');
const sidebarToggle = $('#sidebar-toggle');
function setSidebar(open) {
  layout.classList.toggle('sidebar-open', open);
  sidebarToggle.setAttribute('aria-expanded', String(open));
  if (open && getComputedStyle(sidebarToggle).display !== 'none') $('#sidebar').focus();
}
sidebarToggle.addEventListener('click', () => setSidebar(!layout.classList.contains('sidebar-open')));
document.addEventListener('keydown', (ev) => {
  if (ev.key === 'Escape' && layout.classList.contains('sidebar-open')) {
    setSidebar(false);
    sidebarToggle.focus();
  }
});

// ------------------------------------------------------------------ boot

const stored = store.json(SESSION_KEY);
if (stored && stored.token && stored.userName && !store.get(LEFT_KEY)) start(stored.userName);
else showJoin();
