// Types for lastra-transports.js: the two links LastraClient drives. Most code never uses
// them directly; they are typed for tests and for clients that manage state themselves.

import type { ClientMessageType, Envelope, TransportKind } from './lastra-client.js';

/** Passed to `onClose` exactly once. `status` is the HTTP status of a refused SSE stream. */
export interface CloseInfo {
  code: number;
  reason: string;
  opened: boolean;
  status?: number;
  local?: boolean;
  body?: unknown;
}

export interface TransportHandlers {
  onEnvelope(envelope: Envelope): void;
  onActivity(): void;
  onOpen(): void;
  onClose(info: CloseInfo): void;
}

/** The interface both transports share. */
export interface Transport {
  readonly kind: TransportKind;
  /** WebSocket: resolves with undefined once written. SSE: resolves with the POST's reply body. */
  send(type: string, data?: object, ref?: string): Promise<Record<string, unknown> | undefined>;
  close(code?: number, reason?: string): void;
}

export interface WsTransportOptions extends TransportHandlers {
  url: string;
  /** The `auth` frame's data: `{token, lastSeq?, epoch?}`. */
  auth: { token: string; lastSeq?: number; epoch?: string };
}

export declare class WsTransport implements Transport {
  constructor(options: WsTransportOptions);
  readonly kind: 'ws';
  send(type: string, data?: object, ref?: string): Promise<undefined>;
  close(code?: number, reason?: string): void;
}

export interface SseTransportOptions extends TransportHandlers {
  baseUrl: string;
  /** A function, so POSTs always use the newest token. */
  token: string | (() => string | null);
  /** `<epoch>:<seq>`, sent as Last-Event-ID. */
  lastEventId?: string | null;
  peerId?: () => string | null;
  /** Called once when a POST gets 401; the POST is then sent again. */
  refresh?: () => Promise<unknown>;
}

/** How a POST fails: an HTTP error with the `error` data, or no reply at all. */
export type PostFailure =
  | { status: number; body: { code: string; message: string; ref?: string } }
  | { network: true; message: string };

export declare const POST_ENDPOINTS: Readonly<Record<Exclude<ClientMessageType, 'ping'>, string>>;

export declare class SseTransport implements Transport {
  constructor(options: SseTransportOptions);
  readonly kind: 'sse';
  /** Rejects with a {@link PostFailure}. */
  send(type: string, data?: object, ref?: string): Promise<Record<string, unknown>>;
  close(code?: number, reason?: string): void;
}

export interface SseEvent {
  event: string;
  data: string;
  id: string | null;
}

/** Incremental text/event-stream parser (the WHATWG algorithm, minus `retry`). */
export declare class SseParser {
  constructor(onEvent: (event: SseEvent) => void, onComment?: (text: string) => void);
  lastEventId: string | null;
  feed(chunk: string): void;
}
