/**
 * The API's rules for one tracking event (schemas/events.py, exported as
 * schemas/json/tracking-event.schema.json; a unit test keeps these numbers equal to it).
 *
 * The API answers 422 for a whole batch when one event in it is invalid, so the SDK refuses
 * such an event at `track` instead of letting it spoil the events queued with it.
 */
export const EVENT_TYPES = ["view", "add_to_cart", "remove_from_cart", "purchase", "impression", "click"];
export const MAX_ID = 256;
export const MAX_ITEM_IDS = 100;
export const MAX_CONTEXT_FIELD = 64;
/** core/limits.py: a context's size as compact JSON, and its nesting (itself level 1). */
export const MAX_CONTEXT_BYTES = 4096;
export const MAX_CONTEXT_DEPTH = 8;
export const MAX_QUANTITY = 1e6;
export const MAX_PRICE = 1e12;

/** Size of a value as JSON, in UTF-8 bytes (as the API and the browser count a body). */
export const bytes = (v: unknown): number => new TextEncoder().encode(JSON.stringify(v)).length;

/** Nesting depth of a JSON value: a scalar is 0, an object or array one more than its
 * deepest member (core/limits.py json_depth). */
const depth = (v: unknown): number => (v && typeof v == "object" ? 1 + Math.max(0, ...Object.values(v).map(depth)) : 0);

/** A string of at most `max` characters as the API counts them (code points: an emoji
 * is one character, two UTF-16 units). */
function fits(v: string, max: number): boolean {
  return v.length <= max || (v.length <= 2 * max && Array.from(v).length <= max);
}

/** What no id may contain (core/limits.py id_problem): C0/DEL/C1 control characters and
 * lone surrogates (not Unicode text). */
const BAD_ID = /[\0-\x1f\x7f-\x9f]|[\ud800-\udbff](?![\udc00-\udfff])|(?:^|[^\ud800-\udbff])[\udc00-\udfff]/;

/** A valid user, anonymous, item, event or recommendation id: a string of 1 to 256
 * characters without control characters. */
export function isId(v: unknown): v is string {
  return typeof v === "string" && v.length > 0 && fits(v, MAX_ID) && !BAD_ID.test(v);
}

/** Why the API would refuse this event, or "" when it would take it. */
export function problem(e: Record<string, unknown>): string {
  const { type, item_ids: ids, quantity: q, price: p, context: ctx } = e;
  if (EVENT_TYPES.indexOf(type as string) < 0) return `unknown event type ${JSON.stringify(type)}`;
  for (const k of ["event_id", "user_id", "anonymous_id", "item_id", "recommendation_id"]) {
    if (e[k] != null && !isId(e[k])) return `${k} must be a string of 1 to ${MAX_ID} characters, no control characters`;
  }
  if (ids != null && !(Array.isArray(ids) && ids.length <= MAX_ITEM_IDS && ids.every(isId))) {
    return `item_ids must be a list of at most ${MAX_ITEM_IDS} ids`;
  }
  if (type === "impression" ? !(ids && (ids as unknown[]).length) && e.item_id == null : e.item_id == null) {
    return type === "impression" ? "an impression needs item_ids" : `a ${type} event needs item_id`;
  }
  if (q != null && !(Number.isInteger(q) && (q as number) >= 1 && (q as number) <= MAX_QUANTITY)) {
    return `quantity must be an integer from 1 to ${MAX_QUANTITY}`;
  }
  if (p != null && !(typeof p === "number" && p >= 0 && p <= MAX_PRICE)) {
    return `price must be a number from 0 to ${MAX_PRICE}`;
  }
  if (ctx != null) {
    if (typeof ctx !== "object" || Array.isArray(ctx)) return "context must be an object";
    // the size first: what fits in 4,096 bytes is shallow enough to walk
    if (bytes(ctx) > MAX_CONTEXT_BYTES || depth(ctx) > MAX_CONTEXT_DEPTH) {
      return `context over ${MAX_CONTEXT_BYTES} bytes of JSON or ${MAX_CONTEXT_DEPTH} levels deep`;
    }
    for (const k of ["page", "channel"]) {
      const v = (ctx as Record<string, unknown>)[k];
      if (v != null && !(typeof v === "string" && v.length <= MAX_CONTEXT_FIELD)) {
        return `context.${k} must be a string of at most ${MAX_CONTEXT_FIELD} characters`;
      }
    }
  }
  return "";
}
