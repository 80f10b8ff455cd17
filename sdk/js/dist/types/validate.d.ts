/**
 * The API's rules for one tracking event (schemas/events.py, exported as
 * schemas/json/tracking-event.schema.json; a unit test keeps these numbers equal to it).
 *
 * The API answers 422 for a whole batch when one event in it is invalid, so the SDK refuses
 * such an event at `track` instead of letting it spoil the events queued with it.
 */
export declare const EVENT_TYPES: string[];
export declare const MAX_ID = 256;
export declare const MAX_ITEM_IDS = 100;
export declare const MAX_CONTEXT_FIELD = 64;
/** core/limits.py: a context's size as compact JSON, and its nesting (itself level 1). */
export declare const MAX_CONTEXT_BYTES = 4096;
export declare const MAX_CONTEXT_DEPTH = 8;
export declare const MAX_QUANTITY = 1000000;
export declare const MAX_PRICE = 1000000000000;
/** Size of a value as JSON, in UTF-8 bytes (as the API and the browser count a body). */
export declare const bytes: (v: unknown) => number;
/** A valid user, anonymous, item, event or recommendation id: a string of 1 to 256
 * characters without control characters. */
export declare function isId(v: unknown): v is string;
/** Why the API would refuse this event, or "" when it would take it. */
export declare function problem(e: Record<string, unknown>): string;
