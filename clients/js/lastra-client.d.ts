// Types for lastra-client.js (the bundled web client, served by the app as /lastra-client.js).
// Written by hand to match docs/protocol.md (wire protocol v1); the JavaScript is the
// source of truth for behaviour, this file for shapes. Keep both in step.

// ------------------------------------------------------------------ the wire (docs/protocol.md)

/** Every message, both directions, both transports (§2). */
export interface Envelope<T extends string = string, D = unknown> {
  type: T;
  data: D;
  /** Durable events (`chat`, `clear`) only. */
  seq?: number;
  /** Client messages only: echoed in the `ack` / `error` that answers them. */
  ref?: string;
}

export type TransportKind = 'ws' | 'sse';

export interface Limits {
  maxMessageBytes: number;
  maxTextChars: number;
  historyLimit: number;
  typingTimeout: number;
  presenceGrace: number;
  heartbeatTimeout: number;
}

/** `RTCIceServer` as the server sends it (`LASTRA_ICE_SERVERS`, TURN credentials). */
export interface IceServer {
  urls: string | string[];
  username?: string;
  credential?: string;
}

/** `ready` (§6): the first event of every connection. Times are in seconds. */
export interface ReadyData {
  userId: string;
  userName: string;
  peerId: string;
  transport: TransportKind;
  epoch: string;
  lastSeq: number;
  recovered: boolean;
  heartbeatInterval: number;
  iceServers: IceServer[];
  limits: Limits;
}

export type MessageKind = 'user' | 'system' | 'bot';

/** A `chat` event's data, also each entry of `history.messages`. `ts` is in milliseconds. */
export interface ChatMessage {
  id: string;
  seq: number;
  ts: number;
  kind: MessageKind;
  /** `null` for system messages, `bot:<name>` for bot replies. */
  userId: string | null;
  userName: string | null;
  text: string;
  clientId?: string;
  /** Bot replies only: the bot's name. */
  bot?: string;
}

export interface HistoryData {
  messages: ChatMessage[];
}

export interface UserRef {
  userId: string;
  userName: string;
}

export interface ClearData {
  id: string;
  seq: number;
  ts: number;
  by: UserRef;
}

export interface MediaState {
  camera: boolean;
  mic: boolean;
  screen: boolean;
}

/** One connection (one tab) of a user (§8). */
export interface Peer {
  peerId: string;
  transport: TransportKind;
  media: MediaState;
  ready: boolean;
}

/** A user in presence; `peers` is empty during the grace period. */
export interface PresenceUser extends UserRef {
  peers: Peer[];
}

/**
 * A large room's counts (§8, above the server's LASTRA_PRESENCE_SNAPSHOT_MAX users): the list
 * is then partial until paged to the end (`LastraClient.morePresence`); count `online`, not
 * the list.
 */
export interface PresenceCounts {
  /** Users the list has, those in their grace period included. */
  total?: number;
  /** Users with at least one connected tab. */
  online?: number;
}

export interface PresenceData extends PresenceCounts {
  /** Everyone; in a large room the first page (join order) and yourself. */
  users: PresenceUser[];
  /**
   * Large room: where the next page starts (`null`: this was all). The client does not page
   * by itself: call `LastraClient.morePresence()` when the user wants to see more.
   */
  cursor?: string | null;
}

/** In a large room, only the changes within the part of the list you hold, yourself and the counts. */
export interface PresenceDiffData extends PresenceCounts {
  /** Each entry is that user's complete current entry: replace yours. */
  upsert: PresenceUser[];
  /** userIds of users who left. */
  remove: string[];
}

/** One page of a large room's list (merge by userId, like upserts). */
export interface PresencePageData {
  users: PresenceUser[];
  total: number;
  online: number;
  /** The next page's cursor; `null` on the last page. */
  cursor: string | null;
  ref?: string;
}

export interface BotState {
  name: string;
  displayName: string;
  personality: string;
  enabled: boolean;
}

export interface BotStateData {
  bots: BotState[];
}

export interface TypingData extends UserRef {
  isTyping: boolean;
}

export type SignalStream = 'camera' | 'screen';

export interface Signal {
  type: 'offer' | 'answer' | 'candidate' | 'bye';
  sdp?: string;
  candidate?: Record<string, unknown> | string | null;
}

export interface WebRtcSignalData {
  from: string;
  fromUser: UserRef;
  signal: Signal;
  stream: SignalStream;
}

/** The `ack` data depends on the message it answers (§5, §12.3). */
export interface AckData {
  ref?: string;
  /** chat: the idempotency key (`null` when none was sent). */
  clientId?: string | null;
  /** chat: the stored message's id; ai-request: the id of the reply's `ai-stream`. */
  id?: string;
  /** chat and clear. */
  seq?: number;
  /** ai-request. */
  bot?: string;
}

export type ErrorCode =
  | 'bad_json'
  | 'unknown_type'
  | 'invalid'
  | 'too_large'
  | 'rate_limited'
  | 'not_authenticated'
  | 'forbidden'
  | 'not_found'
  | 'ai_unavailable'
  | 'internal';

export interface ErrorData {
  code: ErrorCode;
  message: string;
  ref?: string;
}

export interface PongData {
  t: number | string | null;
  ref?: string;
}

/** A bot's streamed reply: deltas, then `done` (and a `chat` with the same id), or `error`. */
export interface AiStreamData {
  id: string;
  bot: string;
  delta?: string;
  done?: true;
  error?: string;
}

/** Server → client events (§6), by type. */
export interface ServerEventMap {
  ready: ReadyData;
  history: HistoryData;
  presence: PresenceData;
  'presence-diff': PresenceDiffData;
  'presence-page': PresencePageData;
  'bot-state': BotStateData;
  chat: ChatMessage;
  clear: ClearData;
  typing: TypingData;
  'webrtc-signal': WebRtcSignalData;
  ack: AckData;
  error: ErrorData;
  pong: PongData;
  'ai-stream': AiStreamData;
}

export type ServerEventType = keyof ServerEventMap;

export interface ChatSend {
  text: string;
  /** Idempotency key, 1–64 characters; the client makes one when absent. */
  clientId?: string;
}

/** Client → server messages (§5) that `send` accepts, by type (`auth` is the client's own). */
export interface ClientMessageMap {
  chat: ChatSend;
  typing: { isTyping: boolean };
  'webrtc-signal': { to: string; signal: Signal; stream?: SignalStream };
  'media-state': Partial<MediaState>;
  ready: Record<string, never>;
  'bot-toggle': { bot: string; enabled: boolean };
  clear: Record<string, never>;
  'ai-request': { prompt: string; bot?: string };
  ping: { t?: number | string };
  /** The page after `cursor` (`LastraClient.morePresence()` sends it with the newest cursor). */
  'presence-page': { cursor?: string };
  'call-outcome': CallOutcome;
  'delivery-report': DeliveryReport;
}

/** How one WebRTC peer connection went (`call-outcome`, reported once per connection). */
export interface CallOutcome {
  peerId: string;
  stream?: SignalStream;
  outcome: 'connected' | 'failed';
  /** Required with `connected`: ms from the connection's creation to `connected`. */
  connectMs?: number;
  route?: 'direct' | 'relayed' | 'unknown';
  iceRestarts?: number;
  remoteTransport?: TransportKind;
}

/** What this client measured since its last report (`delivery-report`); at least one field. */
export interface DeliveryReport {
  sendToAckMs?: number[];
  commitToReceiveMs?: number[];
  resumes?: Array<{ recovered: boolean; replayed?: number; duplicates?: number; gaps?: number }>;
}

export type ClientMessageType = keyof ClientMessageMap;

// ------------------------------------------------------------------ the client's own events

export type ConnectionStatus = 'CONNECTING' | 'OPEN' | 'CLOSING' | 'CLOSED';

export declare const Status: Readonly<{
  CONNECTING: 'CONNECTING';
  OPEN: 'OPEN';
  CLOSING: 'CLOSING';
  CLOSED: 'CLOSED';
}>;

/** Why the client is not connected (`client.error`, `status.error`). */
export interface ClientError {
  /** A server error code, or one of the client's: `network`, `offline`, `disconnected`, `reconnect_limit`. */
  code: ErrorCode | 'network' | 'offline' | 'disconnected' | 'reconnect_limit' | (string & {});
  message: string;
}

export interface Fallback {
  from: 'ws';
  /** `transport-disabled`, `ws-open-timeout`, `ws-handshake-failed`, `ws-closed-before-ready`. */
  reason: string;
}

export interface TabLimit {
  tabs: number;
  limit: number;
  reason: 'counted' | 'stalled';
}

/** The `status` event: a snapshot whenever the connection state changes. */
export interface StatusSnapshot {
  status: ConnectionStatus;
  transport: TransportKind | null;
  fallback: Fallback | null;
  online: boolean;
  attempt: number;
  /** ms since the epoch, while a reconnect is scheduled. */
  nextRetryAt: number | null;
  queued: number;
  failed: number;
  error: ClientError | null;
  tabLimit: TabLimit | null;
}

export type MessageStateName = 'sending' | 'sent' | 'failed';

/** One outbox entry: a chat not yet acknowledged. */
export interface OutboxItem {
  clientId: string;
  text: string;
  state: MessageStateName;
  /** When it was queued, ms since the epoch. */
  ts: number;
  userId: string | null;
  error?: { code: string; message: string };
}

/** The `message-state` event: `id` and `seq` once sent. */
export interface MessageState extends OutboxItem {
  id?: string;
  seq?: number;
}

/** Events the client emits itself, by type. */
export interface ClientEventMap {
  status: StatusSnapshot;
  fallback: Fallback & { to: 'sse' };
  reconnecting: { attempt: number; delay: number };
  'message-state': MessageState;
  outbox: { queued: number; failed: number };
  'tab-limit': TabLimit;
  session: { userId: string; userName: string; refreshed: boolean };
}

/** Everything `on` accepts except `*`. */
export interface LastraEventMap extends ServerEventMap, ClientEventMap {}

export type LastraEventType = keyof LastraEventMap;

export type LastraHandler<K extends LastraEventType> = (
  data: LastraEventMap[K],
  envelope: Envelope<K, LastraEventMap[K]>,
) => void;

/** `on('*', …)`: every event, with its type first. */
export type AnyEventHandler = <K extends LastraEventType>(
  type: K,
  data: LastraEventMap[K],
  envelope: Envelope<K, LastraEventMap[K]>,
) => void;

// ------------------------------------------------------------------ LastraClient

export interface LastraClientOptions {
  /** Base URL of the server (default: this page's origin). */
  url?: string;
  /** Display name used to create the session; required when no `token` is given. */
  userName?: string;
  /** An existing session token; without one the client calls POST /api/session itself. */
  token?: string | null;
  /** Renew the token before it expires (default true). */
  refreshToken?: boolean;
  /** Connect from the constructor (default true). */
  autoConnect?: boolean;
  /** Attempts before giving up (default 20; `Infinity` allowed). */
  reconnectLimit?: number;
  /** Backoff base in ms (default 1000); delay = random(0, min(maxReconnectInterval, base·2^n)); after a 1012: 3 within base, then n from 0. */
  reconnectInterval?: number;
  maxReconnectInterval?: number;
  /** Ping period in ms (default: the server's `ready.heartbeatInterval`). */
  heartbeatInterval?: number | null;
  pongTimeout?: number;
  wsOpenTimeout?: number;
  sseOpenTimeout?: number;
  sseReadyTimeout?: number;
  sseIdleTimeout?: number;
  requestTimeout?: number;
  /** How long to stay on SSE after WebSocket failed, in ms (default 10 minutes). */
  fallbackStickyMs?: number;
  /** ms between `delivery-report`s of what this client measured (default 30000; 0: never). */
  reportInterval?: number;
  /** `auto` (default) follows GET /api/transport. */
  transport?: 'auto' | TransportKind;
  /** localStorage key of the remembered session. */
  storageKey?: string;
  /** sessionStorage key of the outbox. */
  outboxKey?: string;
}

export interface SendOptions {
  /** Echoed in the `ack` or `error` that answers this message. */
  ref?: string;
}

export declare class LastraClient {
  constructor(options?: LastraClientOptions);

  readonly options: Required<Omit<LastraClientOptions, 'token' | 'heartbeatInterval'>> &
    Pick<LastraClientOptions, 'token' | 'heartbeatInterval'>;
  readonly status: ConnectionStatus;
  readonly isConnected: boolean;
  readonly error: ClientError | null;
  readonly transport: TransportKind | null;
  readonly fallback: Fallback | null;
  readonly userId: string | null;
  readonly userName: string | null;
  readonly peerId: string | null;
  readonly epoch: string | null;
  readonly lastSeq: number | null;
  /** Whether the last `ready` resumed without a gap. */
  readonly recovered: boolean | null;
  readonly limits: Limits | null;
  /** Round-trip time of the last WebSocket ping, ms. */
  readonly rtt: number | null;
  readonly attempt: number;
  readonly nextRetryAt: number | null;
  readonly online: boolean;
  readonly tabLimit: TabLimit | null;
  /** Chats not yet acknowledged, oldest first (copies). */
  readonly outbox: OutboxItem[];
  /**
   * Large room (§8): the cursor of the user list's next page (from the last `presence` or the
   * last page `morePresence` fetched); `null` when the list is whole or not received yet.
   */
  readonly presenceCursor: string | null;
  /** `presenceCursor === null`. While false, show the newest `online`, not the list's count. */
  readonly presenceComplete: boolean;

  /** Start connecting (no-op when already connecting or open). */
  connect(): void;
  /** Close the connection and stop reconnecting. Queued chats stay in the outbox. */
  disconnect(): void;
  /** Skip the backoff wait and try now. */
  reconnectNow(): void;

  /** Queue a chat (kept until acknowledged, resent after reconnects); returns its clientId. */
  send(type: 'chat', data: ChatSend | string, options?: SendOptions): string;
  /** Send any other message while connected; false when not connected. */
  send<K extends Exclude<ClientMessageType, 'chat'>>(
    type: K,
    data?: ClientMessageMap[K],
    options?: SendOptions,
  ): boolean;

  /** Send a failed chat again with its original clientId; false if unknown. */
  retry(clientId: string): boolean;
  /** Drop a queued or failed chat; false if unknown. */
  discard(clientId: string): boolean;

  /**
   * Fetch the next page of a large room's user list (the client never pages by itself: a tab
   * holding the whole list is sent every change in the room). The page is also emitted as
   * `presence-page`. Resolves `null` when there is nothing to fetch (the list is whole, not
   * connected) or a new `presence` replaced the list meanwhile; while a request is in flight
   * it returns that request's promise. A `rate_limited` refusal is retried after 1 s.
   */
  morePresence(): Promise<PresencePageData | null>;

  /** Listen; returns a function that stops listening. */
  on<K extends LastraEventType>(type: K, handler: LastraHandler<K>): () => void;
  on(type: '*', handler: AnyEventHandler): () => void;
  off<K extends LastraEventType>(type: K, handler: LastraHandler<K>): void;
  off(type: '*', handler: AnyEventHandler): void;

  /** Forget the remembered session (e.g. "change name"). Disconnects first. */
  forgetSession(): void;
  /** Close everything, including the tab counter and window listeners. */
  destroy(): void;
  snapshot(): StatusSnapshot;
}

export default LastraClient;
