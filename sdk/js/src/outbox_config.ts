/**
 * The outbox's settings (the instance's options with their defaults applied) and what a
 * waiting `flush()` keeps.
 */
import type { StreamRecError } from "./errors";
import type { Store } from "./storage";

/** Settings of an outbox (the instance's options with their defaults applied). */
export interface OutboxConfig {
  endpoint: string;
  key?: string;
  store: Store;
  storeKey: string;
  /** The tabs map: each visible tab holding stored entries → its last beat. */
  tabsKey: string;
  batchSize: number;
  flushInterval: number;
  maxQueue: number;
  maxQueueBytes: number;
  maxRetries: number;
  retryBaseMs: number;
  retryMaxMs: number;
  timeoutMs: number;
  report: (error: StreamRecError) => void;
}

export interface Waiter {
  ids: string[];
  /** Its entries that were dropped, and the first error about them. */
  lost: string[];
  err?: StreamRecError;
  resolve: () => void;
  reject: (e: Error) => void;
}
