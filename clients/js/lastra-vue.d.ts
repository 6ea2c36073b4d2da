// Types for lastra-vue.js: useLastraChat, LastraClient as Vue 3 refs.

import type { ComputedRef, Ref } from 'vue';
import type {
  AnyEventHandler,
  ChatSend,
  ClientMessageMap,
  ClientMessageType,
  ConnectionStatus,
  LastraClient,
  LastraClientOptions,
  LastraEventType,
  LastraHandler,
  SendOptions,
} from './lastra-client.js';

export { LastraClient, Status } from './lastra-client.js';
export type * from './lastra-client.js';

/** What `error` holds: `code` is a protocol error code or the client's own. */
export declare class LastraError extends Error {
  constructor(code: string, message?: string, ref?: string);
  readonly name: 'LastraError';
  readonly code: string;
  /** The `ref` (or the chat's clientId) of the message that was refused. */
  readonly ref?: string;
}

export interface UseLastraChatOptions extends LastraClientOptions {
  /** Share an existing client; the other options are then ignored and the caller owns it. */
  client?: LastraClient;
}

/** `send` as on LastraClient: a chat returns its clientId, anything else whether it went out. */
export interface LastraSend {
  (type: 'chat', data: ChatSend | string, options?: SendOptions): string;
  <K extends Exclude<ClientMessageType, 'chat'>>(
    type: K,
    data?: ClientMessageMap[K],
    options?: SendOptions,
  ): boolean;
}

export interface LastraOn {
  <K extends LastraEventType>(type: K, handler: LastraHandler<K>): () => void;
  (type: '*', handler: AnyEventHandler): () => void;
}

export interface LastraOff {
  <K extends LastraEventType>(type: K, handler: LastraHandler<K>): void;
  (type: '*', handler: AnyEventHandler): void;
}

/** The migration plan's return type, exactly. */
export interface UseWebSocketChatReturn {
  status: Ref<ConnectionStatus>;
  connect: () => void;
  disconnect: () => void;
  send: LastraSend;
  on: LastraOn;
  off: LastraOff;
  isConnected: ComputedRef<boolean>;
  error: Ref<Error | null>;
}

export declare function useLastraChat(options?: UseLastraChatOptions): UseWebSocketChatReturn;

export default useLastraChat;
