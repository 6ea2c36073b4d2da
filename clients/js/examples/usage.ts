// A typed usage example: `npm run typecheck` (tsc --noEmit) must pass on it. The lines
// marked @ts-expect-error must stay errors, so the check proves the types bite.

import { defineComponent, h, ref, watch, type ComputedRef, type Ref } from 'vue';
import { LastraClient, Status, type ChatMessage, type StatusSnapshot } from '@lastra/chat-client';
import {
  LastraError,
  useLastraChat,
  type PresenceUser,
  type UseWebSocketChatReturn,
} from '@lastra/chat-client/vue';

export const ChatBox = defineComponent({
  name: 'ChatBox',
  props: { userName: { type: String, required: true } },
  setup(props) {
    const chat: UseWebSocketChatReturn = useLastraChat({ userName: props.userName, reconnectInterval: 500 });
    const { status, isConnected, error, send, on, off } = chat;

    // The plan's shape, exactly.
    const s: Ref<'CONNECTING' | 'OPEN' | 'CLOSING' | 'CLOSED'> = status;
    const connected: ComputedRef<boolean> = isConnected;
    const lastError: Ref<Error | null> = error;

    const messages = ref<ChatMessage[]>([]);
    const people = ref<PresenceUser[]>([]);

    on('history', (data) => { messages.value = [...data.messages]; });
    on('chat', (msg, envelope) => {
      const seq: number = msg.seq;
      const who: string = msg.userName ?? 'system';
      messages.value.push(msg);
      void seq; void who; void envelope.type;
    });
    const onPresence = (data: { users: PresenceUser[] }) => { people.value = data.users; };
    on('presence', onPresence);
    on('presence-diff', (diff) => {
      const gone = new Set(diff.remove);
      people.value = people.value.filter((u) => !gone.has(u.userId) && !diff.upsert.some((n) => n.userId === u.userId));
      people.value.push(...diff.upsert);
    });
    const stop = on('ai-stream', (d) => { if (d.done) stop(); });
    on('status', (snap: StatusSnapshot) => { void snap.transport; void snap.queued; });
    on('*', (type, data) => { void type; void data; });
    off('presence', onPresence);

    const clientId: string = send('chat', { text: 'hello' });
    const typed: boolean = send('typing', { isTyping: true });
    send('bot-toggle', { bot: 'sol', enabled: false }, { ref: 'b1' });
    send('ai-request', { prompt: 'What is a WAL?', bot: 'sol' });
    void clientId; void typed;

    watch(error, (err) => {
      if (err instanceof LastraError) console.warn(err.code, err.ref, err.message);
    });

    // @ts-expect-error — status is one of four states
    s.value = 'OPENING';
    // @ts-expect-error — a chat needs text
    send('chat', { body: 'hello' });
    // @ts-expect-error — typing carries isTyping, a boolean
    send('typing', { isTyping: 'yes' });
    // @ts-expect-error — no such event
    on('chat-message', () => {});
    // @ts-expect-error — a chat message's text is a string
    on('chat', (msg) => { const n: number = msg.text; void n; });
    // @ts-expect-error — isConnected is read-only
    connected.value = true;

    return () =>
      h('div', [
        h('p', `${s.value} ${connected.value ? 'connected' : 'not connected'} ${lastError.value?.message ?? ''}`),
        h('ul', messages.value.map((m) => h('li', { key: m.id }, m.text))),
      ]);
  },
});

// The client on its own, without Vue refs.
const client = new LastraClient({ userName: 'Ada', transport: 'auto', autoConnect: false });
client.on('ready', (ready) => {
  const transport: 'ws' | 'sse' = ready.transport;
  const limit: number = ready.limits.maxTextChars;
  void transport; void limit;
});
client.on('message-state', (m) => { if (m.state === 'sent') console.log(m.id, m.seq); });
// A large room's list: fetch the next page when the user scrolls to the end of what is shown.
const onListEnd = async (): Promise<number> => {
  if (client.presenceComplete) return 0;
  const page = await client.morePresence();
  const next: string | null = client.presenceCursor;
  void next;
  return page ? page.users.length : 0;
};
void onListEnd;
if (client.status === Status.OPEN) client.send('ping', { t: Date.now() });
client.connect();
// @ts-expect-error — the transport is 'auto', 'ws' or 'sse'
new LastraClient({ transport: 'http2' });
