/**
 * Impressions and clicks of a rendered recommendation list.
 *
 * An item counts as seen once at least `threshold` (half) of it has been visible for
 * `minVisibleMs` (1 s) without interruption, with the page visible; each item is reported
 * once per list (`recommendation_id`), items seen together in one `impression` event.
 * Clicks (a middle click that opens a new tab too) are caught on the container (capture
 * phase, so before the page's own handlers navigate) and queued as `click` events; if the click leaves the page, the page-hide
 * beacon carries them.
 *
 * An item element is one matching `selector` (default `[data-item-id]`). A list rendered
 * without that attribute (API.md's example does not ask for one) is matched by position:
 * below the container's chain of single children, the n-th element is the list's n-th item
 * when there are exactly as many elements as items. Otherwise nothing is tracked.
 */
import type { EventProps, EventType, ObserveOptions } from "./types";
/** What observe needs of the client. */
export interface Tracker {
    track(type: EventType, props: EventProps): string | null;
}
/** Start observing; returns the function that stops it (pending impressions still go). */
export declare function observe(tracker: Tracker, seen: Set<string>, container: Element, recommendationId: string | undefined, options?: ObserveOptions, items?: string[]): () => void;
