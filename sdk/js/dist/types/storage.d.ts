/**
 * First-party storage for the visitor's ids and the offline queue.
 *
 * localStorage when the page may use it; otherwise a first-party cookie for the ids (never
 * the queue); always an in-memory copy, so a page with no storage at all
 * (private mode, blocked cookies) still keeps one anonymous id for its lifetime.
 */
export interface Store {
    get(key: string): string | null;
    /** False (or throws) when the value could not be kept durably. */
    set(key: string, value: string): boolean | void;
    remove(key: string): void;
}
/** The best store this page allows, backed by memory for what it could not keep (memory
 * answers first; a value stored durably is read from there, where other tabs change it). Of the keys, only `cookieKeys` (the
 * ids) may fall back to a cookie: a cookie goes to the shop's server with every request, so
 * the queue stays in memory where localStorage is blocked. */
export declare function openStore(cookieKeys?: readonly string[]): Store;
