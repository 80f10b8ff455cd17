/** Public types of the browser SDK (the wire shapes are those of the API's schemas). */

import type { StreamRecError } from "./errors";

/** The event types of `POST /v1/events`. */
export type EventType =
  | "view"
  | "add_to_cart"
  | "remove_from_cart"
  | "purchase"
  | "impression"
  | "click";

/** Where an event happened; free-form beyond `page` and `channel` (each ≤ 64 characters);
 * at most 4,096 bytes as compact JSON and 8 levels deep (the object itself is level 1). */
export interface EventContext {
  page?: string;
  channel?: string;
  [key: string]: unknown;
}

/** What `track` takes besides the type; the SDK adds ids, timestamp and context. */
export interface EventProps {
  item_id?: string;
  item_ids?: string[];
  recommendation_id?: string;
  quantity?: number;
  price?: number;
  /** ISO-8601; the client's clock at `track` when absent. */
  timestamp?: string;
  context?: EventContext;
  [key: string]: unknown;
}

/** An event as the SDK sends it. */
export interface TrackingEvent extends EventProps {
  event_id: string;
  type: EventType;
  anonymous_id: string;
  user_id?: string;
  timestamp: string;
  context: EventContext;
}

/** One recommended item. */
export interface RecommendedItem {
  item_id: string;
  score: number;
  reason: string;
  name?: string | null;
  price?: number | null;
  in_stock?: boolean;
  [key: string]: unknown;
}

/** The answer of every recommendation endpoint. */
export interface RecommendationList {
  recommendation_id: string;
  source: string;
  model_version?: string;
  items: RecommendedItem[];
  [key: string]: unknown;
}

/** A query parameter value; arrays are sent comma-separated, null/undefined not at all. */
export type QueryValue = string | number | boolean | string[] | null | undefined;

/** Parameters of `GET /v1/users/{id}/recommendations` (any further API parameter passes through). */
export interface RecommendationOptions {
  n?: number;
  context?: string;
  item_id?: string;
  exclude?: string[] | string;
  [param: string]: QueryValue;
}

/** Parameters of `GET /v1/items/{id}/similar`; `user_id` defaults to this visitor (null: none). */
export interface SimilarOptions {
  n?: number;
  user_id?: string | null;
  [param: string]: QueryValue;
}

/** How `observe` finds items and decides that one was seen. */
export interface ObserveOptions {
  /** CSS selector of the item elements inside the container (default `[data-item-id]`). */
  selector?: string;
  /** Attribute holding the item id (default `data-item-id`). */
  attribute?: string;
  /** Visible share that counts as seen (default 0.5). */
  threshold?: number;
  /** How long the item must stay that visible, in ms (default 1000). */
  minVisibleMs?: number;
  /** Context of the impression and click events (merged over the instance's). */
  context?: EventContext;
}

/** What went wrong, for `onError` and rejected promises. */
export type ErrorCode =
  | "invalid_event" // refused by track/identify before queuing (the API would answer 422)
  | "dropped" // the API refused a batch with a 4xx: those events are gone
  | "queue_full" // the offline queue overflowed: the oldest events are gone
  | "gave_up" // retries exhausted: the events stay queued for a later attempt
  | "not_stored" // storage refused the queue: it is delivered from memory, a reload loses it
  | "http" // a recommendation request failed (status and body attached)
  | "network"; // a recommendation request got no answer

/** `init`'s options. */
export interface StreamRecOptions {
  /** The API's base URL, e.g. `https://api.example` ("" = this page's origin). */
  endpoint: string;
  /** Tracking key (`POST /v1/events`, `/v1/identify`); omit when the API has auth off. */
  trackingKey?: string;
  /** Read key (the recommendation GETs). */
  readKey?: string;
  /** Context of every event (per-call context is merged over it); channel defaults to "web". */
  context?: EventContext;
  /** A delivery starts as soon as this many entries wait (default 20). */
  batchSize?: number;
  /** Otherwise this long after the first waiting entry, in ms (default 1000). */
  flushInterval?: number;
  /** Most entries kept while the API cannot be reached; the oldest go first (default 1000). */
  maxQueue?: number;
  /** Most bytes (as JSON) of the entries kept; the oldest go first (default 500000): the
   * stored queue stays far below localStorage's quota, one flush below the API's body limit. */
  maxQueueBytes?: number;
  /** Retries of one batch before giving up until the next trigger (default 8). */
  maxRetries?: number;
  /** First backoff, doubled per retry, with jitter, in ms (default 1000). */
  retryBaseMs?: number;
  /** Longest backoff, in ms (default 30000); a server's Retry-After wins over both. */
  retryMaxMs?: number;
  /** Per-request timeout, in ms (default 10000). */
  timeoutMs?: number;
  /** Prefix of the storage keys (default "streamrec"). */
  storagePrefix?: string;
  /** Told about every failure (default: console.warn). */
  onError?: (error: StreamRecError) => void;
}
