import type { EventProps, EventType, ObserveOptions, RecommendationList, RecommendationOptions, SimilarOptions, StreamRecOptions } from "./types";
export declare class StreamRecClient {
    /** The API's base URL, without a trailing slash. */
    readonly endpoint: string;
    private o;
    private store;
    private keys;
    private outbox;
    private aid;
    private uid;
    /** Items already reported seen, per list (recommendation_id; "" for lists without one). */
    private seen;
    /** The running observation of each container (a container shows one list at a time). */
    private watching;
    constructor(options: StreamRecOptions);
    /** This browser's anonymous id (kept in first-party storage until `reset`). */
    get anonymousId(): string;
    /** The user id given to `identify`, or null. */
    get userId(): string | null;
    /** Entries (events, identifies) waiting for their 202. */
    get queued(): number;
    /** Entries dropped because the offline queue was full. */
    get dropped(): number;
    /** Queue one event; returns its event_id, or null when the API would refuse it
     * (then onError hears why and nothing is queued). */
    track(type: EventType, props?: EventProps | null): string | null;
    /** Link this browser's anonymous history to a user (after the events queued before it);
     * later events carry the user id, which is kept across page loads until `reset`. */
    identify(userId: string): void;
    /** Logout: forget the user id and start a new anonymous visitor. */
    reset(): void;
    /** Resolves when every entry queued now got its 202. Rejects with a `dropped` (or
     * `queue_full`) StreamRecError naming the entries that were dropped instead, once the
     * others are settled; with `gave_up` when delivery gave up for now (the entries stay
     * queued and stored). */
    flush(): Promise<void>;
    /** Recommendations for this visitor: the user id after `identify`, else the anonymous id. */
    recommendations(options?: RecommendationOptions): Promise<RecommendationList>;
    /** Items similar to `itemId`, without what this visitor must not see again (purchases). */
    similar(itemId: string, options?: SimilarOptions): Promise<RecommendationList>;
    /** Report impressions (≥ 50 % visible for ≥ 1 s) and clicks of the items rendered in
     * `container` (elements with `data-item-id`, else the list's items by position) for
     * `list`; returns the function that stops. Observing a container again (a re-render, a
     * new list) first stops its earlier observation, so a click is never tracked twice. */
    observe(container: Element, list?: {
        recommendation_id?: string;
        items?: {
            item_id: string;
        }[];
    } | null, options?: ObserveOptions): () => void;
    private read;
    private newAnonymousId;
    private report;
}
