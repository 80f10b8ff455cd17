// Guards delivery: batching and flush, retries with the same event ids, Retry-After, and
// what is dropped and reported (the offline queue and identify: queue_identity.test.ts).
import { describe, expect, it, vi } from "vitest";
import { bytes } from "../src/validate";
import { advance, fakeClockPerTest, setup, UUID } from "./helpers";

fakeClockPerTest();

describe("batching", () => {
  it("sends queued events together after the flush interval, with ids, time and context", async () => {
    const { sr, api } = setup({ context: { page: "product" } });
    sr.track("view", { item_id: "sku-1" });
    sr.track("add_to_cart", { item_id: "sku-1", quantity: 2, price: 9.99, context: { page: "cart" } });
    await advance(999);
    expect(api.calls).toHaveLength(0);
    await advance(1);
    expect(api.calls).toHaveLength(1);
    const [call] = api.calls;
    expect(call.method).toBe("POST");
    expect(call.url).toBe(`${sr.endpoint}/v1/events`);
    expect(call.headers["x-api-key"]).toBe("tk");
    expect(call.headers["content-type"]).toBe("application/json");
    const [view, cart] = call.body.events;
    expect(view).toMatchObject({
      type: "view",
      item_id: "sku-1",
      anonymous_id: sr.anonymousId,
      timestamp: "2026-11-23T09:15:00.000Z",
      context: { channel: "web", page: "product" },
    });
    expect(view.user_id).toBeUndefined();
    expect(view.event_id).toMatch(UUID);
    expect(cart).toMatchObject({ quantity: 2, price: 9.99, context: { channel: "web", page: "cart" } });
    expect(cart.event_id).not.toBe(view.event_id);
    expect(api.schemaErrors).toEqual([]);
  });

  it("sends at once when batchSize events wait", async () => {
    const { sr, api } = setup({ batchSize: 20 });
    for (let i = 0; i < 19; i++) sr.track("view", { item_id: `sku-${i}` });
    await advance(0);
    expect(api.calls).toHaveLength(0);
    sr.track("view", { item_id: "sku-19" });
    await advance(0);
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].body.events).toHaveLength(20);
  });

  it("never sends more than 500 events in one request", async () => {
    const { sr, api } = setup({ maxQueue: 2000, batchSize: 5000 });
    for (let i = 0; i < 1200; i++) sr.track("view", { item_id: `sku-${i}` });
    await sr.flush();
    expect(api.calls.map((c) => c.body.events.length)).toEqual([500, 500, 200]);
    expect(new Set(api.eventIds()).size).toBe(1200);
  });

  it("flush resolves only once every queued event got its 202", async () => {
    const { sr, api, prefix } = setup();
    let answer!: () => void;
    api.handler = () => new Promise((r) => (answer = () => r(undefined)));
    sr.track("view", { item_id: "sku-1" });
    let done = false;
    const flushed = sr.flush().then(() => (done = true));
    await advance(5000);
    expect(api.calls).toHaveLength(1);
    expect(done).toBe(false);
    expect(sr.queued).toBe(1);
    answer();
    await flushed;
    expect(sr.queued).toBe(0);
    expect(localStorage.getItem(`${prefix}_queue`)).toBeNull();
  });

  it("flush with nothing queued resolves at once", async () => {
    const { sr, api } = setup();
    await sr.flush();
    expect(api.calls).toHaveLength(0);
  });
});

describe("retries", () => {
  it("resends the same event ids after a failed first delivery", async () => {
    const { sr, api } = setup();
    let first = true;
    api.handler = () => {
      if (!first) return undefined;
      first = false;
      return "network";
    };
    const ids = [sr.track("view", { item_id: "a" }), sr.track("view", { item_id: "b" })];
    const flushed = sr.flush();
    await advance(60_000);
    await flushed;
    expect(api.calls).toHaveLength(2);
    expect(api.calls[0].body).toEqual(api.calls[1].body);
    expect(api.eventIds()).toEqual([...ids, ...ids]);
  });

  it("retries 503 and 5xx with exponential backoff and jitter, then succeeds", async () => {
    const { sr, api } = setup({ retryBaseMs: 1000 });
    let n = 0;
    api.handler = () => (++n <= 3 ? { status: 503, body: { error: { code: "unavailable", message: "x" } } } : undefined);
    vi.spyOn(Math, "random").mockReturnValue(0.5); // jitter factor 0.75
    sr.track("view", { item_id: "a" });
    const flushed = sr.flush();
    await advance(0);
    expect(api.calls).toHaveLength(1);
    for (const backoff of [750, 1500, 3000]) {
      await advance(backoff - 1);
      const before = api.calls.length;
      await advance(1);
      expect(api.calls).toHaveLength(before + 1);
    }
    await flushed;
    expect(new Set(api.eventIds()).size).toBe(1);
  });

  it("waits for the server's Retry-After before retrying a 429", async () => {
    const { sr, api } = setup({ retryBaseMs: 10 });
    let n = 0;
    api.handler = () => (++n === 1 ? { status: 429, headers: { "Retry-After": "5" } } : undefined);
    sr.track("view", { item_id: "a" });
    const flushed = sr.flush();
    await advance(4999);
    expect(api.calls).toHaveLength(1);
    await advance(600); // Retry-After plus at most 10 % jitter
    expect(api.calls).toHaveLength(2);
    await flushed;
    expect(api.calls[1].body).toEqual(api.calls[0].body);
  });

  it("takes Retry-After as an HTTP date too", async () => {
    const { sr, api } = setup({ retryBaseMs: 10 });
    let n = 0;
    const at = new Date(Date.now() + 8000).toUTCString();
    api.handler = () => (++n === 1 ? { status: 503, headers: { "Retry-After": at } } : undefined);
    sr.track("view", { item_id: "a" });
    const flushed = sr.flush();
    await advance(7900);
    expect(api.calls).toHaveLength(1);
    await advance(1000);
    await flushed;
    expect(api.calls).toHaveLength(2);
  });

  it("gives up after maxRetries, rejects flush, keeps the events stored, and starts again later", async () => {
    const { sr, api, errors, prefix } = setup({ maxRetries: 2, retryBaseMs: 100 });
    api.handler = () => ({ status: 503 });
    const id = sr.track("view", { item_id: "a" });
    const flushed = sr.flush();
    flushed.catch(() => undefined);
    await advance(10_000);
    await expect(flushed).rejects.toMatchObject({ code: "gave_up", eventIds: [id] });
    expect(api.calls).toHaveLength(3);
    expect(errors.map((e) => e.code)).toEqual(["gave_up"]);
    await advance(600_000);
    expect(api.calls).toHaveLength(3); // no endless loop
    expect(sr.queued).toBe(1);
    expect(localStorage.getItem(`${prefix}_queue`)).toContain(id);
    api.handler = undefined;
    await sr.flush();
    expect(api.eventIds()).toEqual([id, id, id, id]);
  });
});

describe("what is dropped", () => {
  it("drops a batch the API refuses with a 4xx other than 408/429, and reports it", async () => {
    const { sr, api, errors } = setup();
    api.handler = () => ({ status: 401, body: { error: { code: "unauthorized", message: "invalid API key" } } });
    const id = sr.track("view", { item_id: "a" });
    await expect(sr.flush()).rejects.toMatchObject({ code: "dropped", status: 401, eventIds: [id] });
    await advance(600_000);
    expect(api.calls).toHaveLength(1);
    expect(sr.queued).toBe(0);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: "dropped", status: 401, eventIds: [id] });
  });

  it("retries 408 like a server error", async () => {
    const { sr, api } = setup({ retryBaseMs: 10 });
    let n = 0;
    api.handler = () => (++n === 1 ? { status: 408 } : undefined);
    sr.track("view", { item_id: "a" });
    const flushed = sr.flush();
    await advance(100);
    await flushed;
    expect(api.calls).toHaveLength(2);
  });

  it("after a 422 drops only the events the API named and resends the rest with their ids", async () => {
    const { sr, api, errors } = setup();
    let n = 0;
    api.handler = () =>
      ++n === 1
        ? { status: 422, body: { error: { code: "validation_error", message: "1 of 3 events invalid" },
            detail: [{ index: 1, loc: ["item_id"], msg: "too long", type: "string_too_long" }] } }
        : undefined;
    const ids = ["a", "b", "c"].map((item) => sr.track("view", { item_id: item }));
    // API.md: flush resolves when every queued event got its 202; b never does, so it
    // rejects, naming b, after a and c got theirs
    await expect(sr.flush()).rejects.toMatchObject({ code: "dropped", status: 422, eventIds: [ids[1]] });
    expect(sr.queued).toBe(0);
    expect(api.calls).toHaveLength(2);
    expect(api.calls[1].body.events.map((e: any) => e.event_id)).toEqual([ids[0], ids[2]]);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: "dropped", status: 422, eventIds: [ids[1]] });
  });

  it("after a 422 about a timestamp (client clock far ahead) resends those events without it", async () => {
    const { sr, api, errors } = setup();
    let n = 0;
    api.handler = () =>
      ++n === 1
        ? { status: 422, body: { detail: [{ index: 0, loc: ["timestamp"], msg: "timestamp is 3600 s ahead of the server clock; at most 300 s in the future is accepted (STREAMREC_MAX_FUTURE_SKEW_S)" }] } }
        : undefined;
    const id = sr.track("view", { item_id: "a" });
    await sr.flush();
    expect(api.calls).toHaveLength(2);
    expect(api.calls[1].body.events[0].event_id).toBe(id);
    expect(api.calls[1].body.events[0].timestamp).toBeUndefined();
    expect(errors).toEqual([]);
  });

  it("halves the batch after a 413, and drops a single event that is still too large", async () => {
    const { sr, api, errors } = setup({ batchSize: 100 });
    api.handler = (c) => (c.body.events.some((e: any) => e.item_id === "huge") || c.body.events.length > 2 ? { status: 413 } : undefined);
    const ids = ["a", "b", "huge", "d"].map((item) => sr.track("view", { item_id: item }));
    await expect(sr.flush()).rejects.toMatchObject({ code: "dropped", eventIds: [ids[2]] });
    // 4 → 413: halve; a,b → 202 (the limit grows back); huge,d → 413; huge alone → dropped
    expect(api.calls.map((c) => c.body.events.map((e: any) => e.item_id))).toEqual([
      ["a", "b", "huge", "d"], ["a", "b"], ["huge", "d"], ["huge"], ["d"],
    ]);
    expect(errors.map((e) => [e.code, e.status, e.eventIds])).toEqual([["dropped", 413, [ids[2]]]]);
    expect(sr.queued).toBe(0);
  });

  it("refuses at track, before queuing, an event the API would refuse", async () => {
    const { sr, api, errors } = setup();
    expect(sr.track("view", {})).toBeNull();
    expect(sr.track("like" as any, { item_id: "a" })).toBeNull();
    expect(sr.track("impression", { item_ids: [] })).toBeNull();
    expect(sr.track("purchase", { item_id: "a", quantity: 1.5 })).toBeNull();
    expect(sr.track("purchase", { item_id: "a", price: -1 })).toBeNull();
    expect(sr.track("view", { item_id: "x".repeat(257) })).toBeNull();
    expect(sr.track("view", { item_id: "a", context: { page: "p".repeat(65) } })).toBeNull();
    const loop: any = { page: "p" };
    loop.self = loop;
    expect(sr.track("view", { item_id: "a", context: loop })).toBeNull();
    expect(errors.map((e) => e.code)).toEqual(Array(8).fill("invalid_event"));
    expect(sr.track("impression", { item_ids: ["a", "b"] })).not.toBeNull();
    // no props at all (null, as a page may pass through): refused the same way, not thrown
    expect(sr.track("view", null as any)).toBeNull();
    expect(errors.map((e) => e.code)).toEqual(Array(9).fill("invalid_event"));
    await sr.flush();
    expect(api.calls).toHaveLength(1);
    expect(api.calls[0].body.events).toHaveLength(1);
  });
});

describe("the context bound (core/limits.py: 4,096 bytes of compact JSON, 8 levels)", () => {
  const nest = (levels: number): unknown => (levels ? { a: nest(levels - 1) } : 1);
  /** A context (with the SDK's channel) of exactly `size` bytes as JSON, in 2-byte characters. */
  const sized = (size: number) => {
    const base = bytes({ channel: "web", pad: "" });
    return { channel: "web", pad: "é".repeat((size - base) / 2) + "x".repeat((size - base) % 2) };
  };

  it("takes a context of 4,096 bytes and 8 levels", async () => {
    const { sr, api, errors } = setup();
    expect(bytes(sized(4096))).toBe(4096);
    const ids = [sr.track("view", { item_id: "a", context: sized(4096) }), sr.track("view", { item_id: "a", context: { deep: nest(7) } })];
    expect(ids.every(Boolean)).toBe(true);
    await sr.flush();
    expect(api.eventIds()).toEqual(ids);
    expect(errors).toEqual([]);
  });

  it("returns null for one byte or one level more: nothing queued, onError says why", () => {
    const { sr, api, errors } = setup();
    expect(sr.track("view", { item_id: "a", context: sized(4097) })).toBeNull();
    expect(sr.track("view", { item_id: "a", context: { deep: nest(8) } })).toBeNull();
    // over the bound only through the instance's own context
    const own = setup({ context: { page: "home", blob: "x".repeat(4090) } });
    expect(own.sr.track("view", { item_id: "a" })).toBeNull();
    expect(sr.queued + own.sr.queued).toBe(0);
    expect(errors.map((e) => e.code)).toEqual(["invalid_event", "invalid_event"]);
    expect(errors[0].message).toMatch(/4096 bytes/);
    expect(api.calls).toHaveLength(0);
  });
});
