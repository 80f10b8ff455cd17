/**
 * First-party storage for the visitor's ids and the offline queue.
 *
 * localStorage when the page may use it; otherwise a first-party cookie (small values only:
 * the ids, never the queue); always an in-memory copy, so a page with no storage at all
 * (private mode, blocked cookies) still keeps one anonymous id for its lifetime.
 */
export interface Store {
    get(key: string): string | null;
    set(key: string, value: string): void;
    remove(key: string): void;
}
/** The best store this page allows, backed by memory. */
export declare function openStore(): Store;
