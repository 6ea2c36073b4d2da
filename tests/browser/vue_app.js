// The Vue app of tests/browser/test_vue.py: what a Vue user writes with useLastraChat.
// `status`, `isConnected` and `error` are rendered as they are; every value `status` and
// `isConnected` take is also recorded (window.seen) by synchronous watchers; window.vueApp
// lets a test unmount it.
import { createApp, h, ref, watch } from 'vue';
import { useLastraChat } from '/lastra-vue.js';

const params = new URLSearchParams(location.search);
const app = createApp({
  setup() {
    const { status, isConnected, error, send, on } = useLastraChat({
      userName: params.get('name'), reconnectInterval: 100, maxReconnectInterval: 400,
    });
    const messages = ref([]);
    const transport = ref('');
    const seen = { status: [status.value], isConnected: [isConnected.value] };
    window.seen = seen;
    watch(status, (s) => seen.status.push(s), { flush: 'sync' });
    watch(isConnected, (c) => seen.isConnected.push(c), { flush: 'sync' });
    on('ready', (r) => { transport.value = r.transport; });
    on('history', (hist) => { messages.value = hist.messages.filter((m) => m.kind === 'user'); });
    on('chat', (m) => {
      if (m.kind === 'user' && !messages.value.some((x) => x.id === m.id)) messages.value.push(m);
    });
    const draft = ref('');
    const submit = () => { send('chat', { text: draft.value }); draft.value = ''; };
    return () => h('main', [
      h('output', { 'data-testid': 'status' }, status.value),
      h('output', { 'data-testid': 'connected' }, String(isConnected.value)),
      h('output', { 'data-testid': 'transport' }, transport.value),
      h('output', { 'data-testid': 'error' }, error.value ? `${error.value.code}: ${error.value.message}` : ''),
      h('ul', messages.value.map((m) => h('li', { key: m.id, 'data-testid': 'msg' }, `${m.userName}: ${m.text}`))),
      h('input', { 'data-testid': 'draft', value: draft.value, onInput: (e) => { draft.value = e.target.value; } }),
      h('button', { 'data-testid': 'send', disabled: !isConnected.value, onClick: submit }, 'Send'),
    ]);
  },
});
app.mount('#app');
window.vueApp = app;
