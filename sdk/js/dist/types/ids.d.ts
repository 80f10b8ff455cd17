/**
 * Random ids (UUID v4) for anonymous visitors and events.
 *
 * `crypto.randomUUID` exists only in secure contexts (https, localhost), so a shop served
 * over plain http falls back to `crypto.getRandomValues`, and a very old browser to
 * Math.random (still unique enough for event ids, which the API only uses to drop replays).
 */
export declare function uuid(): string;
