import type { ErrorCode } from "./types";
/** Every failure the SDK reports: `code` says which kind (see ErrorCode). */
export declare class StreamRecError extends Error {
    readonly code: ErrorCode;
    /** HTTP status, when the API answered. */
    readonly status?: number | undefined;
    /** The API's error body, when it sent one. */
    readonly body?: unknown | undefined;
    /** The events concerned (dropped, still queued, or refused). */
    readonly eventIds?: string[] | undefined;
    constructor(code: ErrorCode, message: string, 
    /** HTTP status, when the API answered. */
    status?: number | undefined, 
    /** The API's error body, when it sent one. */
    body?: unknown | undefined, 
    /** The events concerned (dropped, still queued, or refused). */
    eventIds?: string[] | undefined);
}
