// useLastraChat — LastraClient as Vue 3 refs (the migration plan's UseWebSocketChatReturn).
//
//   import { useLastraChat } from '@lastra/chat-client/vue';   // or '/lastra-vue.js' + an import map for 'vue'
//   const { status, isConnected, error, send, on } = useLastraChat({ userName: 'Ada' });
//   on('chat', (msg) => messages.value.push(msg));
//   send('chat', { text: 'hello' });
//
// It works over either transport: LastraClient picks WebSocket or SSE+POST (GET /api/transport)
// and falls back by itself, so the refs and methods do not change with the transport.
//
// Returns exactly {status, connect, disconnect, send, on, off, isConnected, error}:
//   status       Ref<'CONNECTING'|'OPEN'|'CLOSING'|'CLOSED'>, follows every `status` event
//   isConnected  ComputedRef<boolean>, status === 'OPEN'
//   error        Ref<Error|null>: the latest LastraError (with `code`, and `ref` for a rejected
//                message) — why the connection is down, an `error` event, or a failed chat;
//                set back to null when a connection opens
//   send/on/off/connect/disconnect   the client's own methods (see lastra-client.js)
//
// Options: everything LastraClient takes, plus `client` to share an existing LastraClient
// (then the other options are ignored and the caller owns it). `autoConnect` (default true)
// connects at once. Called inside a component's setup() (or any effect scope), the handlers
// added through `on` are removed when the scope ends, and a client the composable created is
// destroyed. Browser only: LastraClient needs window, document and fetch.

import { computed, getCurrentScope, onScopeDispose, ref, shallowRef } from 'vue';
import { LastraClient } from './lastra-client.js';

export { LastraClient, Status } from './lastra-client.js';

/** An error from the client or the server; `code` is the protocol's error code or the client's. */
export class LastraError extends Error {
  constructor(code, message, ref) {
    super(message || code);
    this.name = 'LastraError';
    this.code = code;
    if (ref !== undefined) this.ref = ref;
  }
}

export function useLastraChat(options = {}) {
  const { client: shared, ...clientOptions } = options;
  const autoConnect = options.autoConnect !== false;
  const client = shared || new LastraClient({ ...clientOptions, autoConnect: false });

  const status = ref(client.status);
  const error = shallowRef(client.error ? new LastraError(client.error.code, client.error.message) : null);
  const isConnected = computed(() => status.value === 'OPEN');

  // Handlers added through this composable, removed together when the scope ends.
  const added = new Set();
  const on = (type, handler) => {
    const stop = client.on(type, handler);
    const entry = [type, handler];
    added.add(entry);
    return () => { added.delete(entry); stop(); };
  };
  const off = (type, handler) => {
    for (const entry of added) if (entry[0] === type && entry[1] === handler) added.delete(entry);
    client.off(type, handler);
  };

  // client.error is replaced (never mutated) when the connection's state of health changes,
  // so comparing identities tells a new connection error from a repeated snapshot.
  let connError = client.error;
  on('status', (snap) => {
    status.value = snap.status;
    if (client.error !== connError) {
      connError = client.error;
      error.value = connError ? new LastraError(connError.code, connError.message) : null;
    }
  });
  on('error', (data) => { error.value = new LastraError(data.code, data.message, data.ref); });
  on('message-state', (m) => {
    if (m.state === 'failed' && m.error) error.value = new LastraError(m.error.code, m.error.message, m.clientId);
  });

  if (getCurrentScope()) {
    onScopeDispose(() => {
      for (const [type, handler] of added) client.off(type, handler);
      added.clear();
      if (!shared) client.destroy();
    });
  }

  if (autoConnect) client.connect();

  return {
    status,
    connect: () => client.connect(),
    disconnect: () => client.disconnect(),
    send: (type, data, opts) => client.send(type, data, opts),
    on,
    off,
    isConnected,
    error,
  };
}

export default useLastraChat;
