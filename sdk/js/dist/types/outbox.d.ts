/**
 * The outbox: every event and identify waits here, in order, until the API answered 202.
 *
 * - One request in flight at a time, so the API sees events and identifies in the order
 *   they happened: a run of events goes as one `POST /v1/events` batch (at most 500), an
 *   identify alone as `POST /v1/identify`.
 * - A delivery starts when `batchSize` entries wait, `flushInterval` ms after the first one
 *   waits, on `flush()`, and when the browser comes back online.
 * - Network errors, 408, 429 and 5xx are retried with the same event ids (the API drops
 *   replays by id), after the server's Retry-After or an exponential backoff with jitter;
 *   after `maxRetries` the outbox stops until the next trigger, keeping the entries.
 *   413 halves the batch; 422 drops only the events the API named (their timestamps
 *   removed first when only the client's clock was wrong); any other 4xx drops the batch.
 *   Every drop is reported to `onError` and rejects the flush() calls waiting for it (once
 *   their other entries are settled); none loops.
 * - The queue is bounded in entries and in bytes (oldest dropped, counted) and mirrored in
 *   storage, so what the API has not acknowledged survives a reload; a request carries at
 *   most REQUEST_BYTES. When storage refuses the queue (its quota), the stored copy is
 *   removed, so a later page cannot send entries delivered since, and `onError` hears
 *   `not_stored` once (the page keeps delivering from memory). Tabs of one origin share that storage: each
 *   stored entry names the tab that holds it, a save keeps the other tabs' entries, and a
 *   hidden tab lets go of its entries, which the next page load or another visible tab
 *   takes (the `storage` event) and the hidden one then leaves alone: none lost, none
 *   sent by two tabs at once.
 * - On page hide the waiting entries go by `fetch` with `keepalive` (a CORS-simple request:
 *   the tracking key as `?key=`, a text/plain body), whose answer settles them like any
 *   other; only a browser without keepalive fetch gets `navigator.sendBeacon`, whose answer
 *   nobody sees. Either way the entries stay queued and stored until a real 202 (a re-send
 *   by the next page counts once: the API drops replays by id). While deliveries are
 *   failing, or the browser is offline, nothing is sent on hide.
 */
import { StreamRecError } from "./errors";
import type { Store } from "./storage";
export declare const EVENTS = "/v1/events";
export declare const IDENTIFY = "/v1/identify";
/** The API's largest batch. */
export declare const MAX_BATCH = 500;
/** Browsers allow about 64 KB of keepalive (or beacon) bodies in flight; stay well under. */
export declare const BEACON_BYTES = 30000;
/** Largest ordinary request body (the API's default limit is 1 MiB). */
export declare const REQUEST_BYTES = 500000;
/** One queued request body: an event (id = its event_id) or an identify; in storage, `t`
 * names the tab holding it (none: no page holds it, the next one may take it). */
export interface Entry {
    id: string;
    path: string;
    body: Record<string, unknown>;
    t?: string;
}
/** Settings of an outbox (the instance's options with their defaults applied). */
export interface OutboxConfig {
    endpoint: string;
    key?: string;
    store: Store;
    storeKey: string;
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
export declare class Outbox {
    private c;
    /** Entries not yet acknowledged, oldest first. */
    q: Entry[];
    /** Entries dropped because the queue was full. */
    dropped: number;
    private sending;
    /** The last delivery failed and a retry is pending (or was given up). */
    private failing;
    private saving;
    /** The last save could not store the queue. */
    private unstored;
    private limit;
    private timer;
    private waiters;
    /** This page's mark on the entries it stores. */
    private tab;
    /** The page is hidden: its entries are stored as nobody's. */
    private away;
    /** Entries stored as nobody's since the page was last visible. */
    private freed;
    constructor(c: OutboxConfig);
    /** Queue one request body; `now` starts a delivery at once instead of after the interval. */
    push(path: string, id: string, body: Record<string, unknown>, now?: boolean): void;
    /** Take the stored entries no page holds (a page closed before they were delivered). */
    adopt(): void;
    /** The page is visible again: hold its entries (those no other tab took) and take the free ones. */
    show(): void;
    /** Resolves when every entry queued now got its 202; once each is settled, rejects when
     * some were dropped instead (a 4xx, a 422 naming them, a full queue: `eventIds` says
     * which); rejects when delivery gave up for now (those entries stay queued). */
    flush(): Promise<void>;
    /** Deliver until the queue is empty or retries are exhausted. */
    pump(): Promise<void>;
    /** Page hide: send every waiting entry in requests that outlive the page; they stay
     * queued (and stored) until the API answers 202. */
    hide(): void;
    /** The run of entries from `from` that goes in one request. */
    private take;
    private payload;
    /** One request: true when the batch is settled (acknowledged or dropped), else the
     * server's Retry-After in ms, or null for the default backoff. `away` (page hide): a
     * keepalive request without preflight (the key as `?key=`, a text/plain body), or a
     * beacon where keepalive fetch is missing (no answer: its entries stay queued). */
    private send;
    /** After a 422 naming events of the batch (`detail: [{index, loc}]`): drop those events,
     * or only their timestamp when that was the complaint (`loc: ["timestamp"]`: a client
     * clock more than the API's STREAMREC_MAX_FUTURE_SKEW_S, 300 s by default, ahead; the API
     * then stamps its own time). False when the answer named no event of this batch. */
    private repair;
    private remove;
    /** Settle the flush() calls none of whose entries is still queued. */
    private settle;
    private schedule;
    /** Mirror the queue in storage: at the end of the current task (a burst of track calls
     * writes once), or at once on page hide. */
    private save;
    /** The stored entries of every tab (a garbled store reads as empty). */
    private stored;
    /** Keep at most maxQueue entries of at most maxQueueBytes together: the oldest go,
     * counted and reported. */
    private trim;
    private fail;
}
