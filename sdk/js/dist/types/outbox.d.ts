import type { OutboxConfig } from "./outbox_config";
export { BEAT, STALE } from "./tabs";
export declare const EVENTS = "/v1/events";
export declare const IDENTIFY = "/v1/identify";
/** The API's largest batch. */
export declare const MAX_BATCH = 500;
/** Browsers allow 64 KiB of keepalive (or beacon) bodies in flight per page, the page's
 * other scripts' included: what one hiding sends at once stays under this. */
export declare const BEACON_BYTES = 48000;
/** Largest ordinary request body (the API's default limit is 1 MiB). */
export declare const REQUEST_BYTES = 500000;
/** One queued request body: an event (id = its event_id) or an identify; in storage, `t`
 * names the tab holding it (none: no page holds it, the next one may take it) and `h` when
 * that tab last stored it (ms since the epoch; not refreshed by the beat). A tab's liveness
 * is its beat in the tabs map, else `h`: a tab whose first beat another tab's write of the
 * map overwrote stays alive, and the SDK before the tabs map refreshed `h` every BEAT. */
export interface Entry {
    id: string;
    path: string;
    body: Record<string, unknown>;
    t?: string;
    h?: number;
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
    /** The next look at the stored queue (BEAT), pending while it holds entries. */
    private beat;
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
    /** Take the stored entries no page holds (a page closed before they were delivered), and
     * those of a tab not seen alive for STALE ms (crashed, killed). */
    adopt(): void;
    /** The page is visible again: hold its entries (those no other tab took) and take the free ones. */
    show(): void;
    /** Resolves when every entry queued now got its 202; once each is settled, rejects when
     * some were dropped instead (a 4xx, a 422 naming them, a full queue: `eventIds` says
     * which); rejects when delivery gave up for now (those entries stay queued). */
    flush(): Promise<void>;
    /** Deliver until the queue is empty or retries are exhausted. */
    pump(): Promise<void>;
    /** Page hide: send the waiting entries, in order, in requests that outlive the page, as
     * many as the browser's keepalive limit takes (BEACON_BYTES); they stay queued (and
     * stored) until the API answers 202. A page that lives on hidden sends the rest once
     * those are settled; a page that is gone leaves them to the next one. */
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
    /** While the store holds entries and the page is visible: every BEAT ms, note in the
     * tabs map that this page (holding entries) is alive, and take the entries of a tab gone. */
    private watch;
    /** The stored entries of every tab (a garbled store reads as empty). */
    private stored;
    /** Keep at most maxQueue entries of at most maxQueueBytes together: the oldest go,
     * counted and reported. */
    private trim;
    private fail;
}
