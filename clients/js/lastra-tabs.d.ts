// Types for lastra-tabs.js: counting this origin's SSE tabs (the seventh tab problem).

export declare class TabCounter {
  constructor();
  readonly id: string;
  readonly sse: boolean;
  /** Tell the other tabs whether this one holds an SSE stream now. */
  setSse(on: boolean): void;
  /** How many other live tabs hold an SSE stream. */
  otherSseTabs(): number;
  close(): void;
}

/** True when the page came over HTTP/2 or HTTP/3. */
export declare function multiplexed(): boolean;

/** The per-origin connection limit of HTTP/1.1 browsers (6). */
export declare const HTTP1_STREAM_LIMIT: 6;
