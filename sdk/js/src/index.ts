/**
 * streamrec browser SDK: `StreamRec.init({endpoint, trackingKey, readKey})` returns the
 * instance that tracks events and fetches recommendations for this visitor.
 *
 * As a classic script (dist/streamrec.js, served by the API at /sdk/streamrec.js) this
 * module's exports are `window.StreamRec`; as an ES module (dist/streamrec.mjs) import them.
 */
import { StreamRecClient } from "./client";
import type { StreamRecOptions } from "./types";

export { StreamRecClient } from "./client";
export { StreamRecError } from "./errors";
export { version } from "./version";
export type * from "./types";

const instances: Record<string, StreamRecClient> = {};

/** The instance for these options. One per page: a second call with the same
 * `storagePrefix` returns the first instance (its options unchanged), so two instances
 * never share one stored queue. */
export function init(options: StreamRecOptions): StreamRecClient {
  const prefix = (options && options.storagePrefix) || "streamrec";
  return instances[prefix] || (instances[prefix] = new StreamRecClient(options));
}
