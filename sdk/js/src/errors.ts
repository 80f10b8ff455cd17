import type { ErrorCode } from "./types";

/** Every failure the SDK reports: `code` says which kind (see ErrorCode). */
export class StreamRecError extends Error {
  constructor(
    readonly code: ErrorCode,
    message: string,
    /** HTTP status, when the API answered. */
    readonly status?: number,
    /** The API's error body, when it sent one. */
    readonly body?: unknown,
    /** The events concerned (dropped, still queued, or refused). */
    readonly eventIds?: string[],
  ) {
    super(message);
    this.name = "StreamRecError";
  }
}
