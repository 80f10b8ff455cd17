import type { QueryValue } from "./types";
/** What the SDK needs of an HTTP answer. */
export interface Reply {
    status: number;
    /** The parsed JSON body, or null. */
    body: unknown;
    /** The server's Retry-After in ms, or null when it sent none. */
    retryAfterMs: number | null;
}
/** Retry-After (delta seconds or an HTTP date) in ms from now; null when absent or garbled. */
export declare function retryAfterMs(value: string | null, now?: number): number | null;
/** `?a=1&b=x,y` from the given parameters (null/undefined ones left out). */
export declare function query(params: Record<string, QueryValue>): string;
/**
 * One fetch with a timeout; resolves with the status and JSON body whatever the status,
 * rejects only when no answer came (network error, timeout).
 */
export declare function request(url: string, init: RequestInit, timeoutMs: number): Promise<Reply>;
