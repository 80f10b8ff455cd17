// Guards the offline queue (a copy per event, bounded, surviving a reload, sent again when
// the browser is back online) and identity (one anonymous id per browser, reset, and
// the order of events around identify).
import { describe, expect, it } from "vitest";
import { advance, client, fakeClockPerTest, setup, UUID } from "./helpers";

fakeClockPerTest();

/** Stop every activity of a tab's outbox (a crash, a stall), or let it run again. */
function frozen(sr: unknown, stop: boolean) {
  const o = (sr as { outbox: { away: boolean; show(): void } }).outbox;
  if (stop) o.away = true; // what a hidden page does not do: nothing of it runs, nothing freed
  else o.show();
}

describe("offline queue", () => {
  it("holds a copy of each event: later changes by the page do not reach it", async () => {
    const { sr, api } = setup();
    const props = { item_id: "a", context: { page: "product" } };
    sr.track("view", props);
    props.item_id = "changed";
    props.context.page = "changed";
    await sr.flush();
    expect(api.calls[0].body.events[0]).toMatchObject({ item_id: "a", context: { page: "product" } });
  });

  it("keeps delivering when the page's onError handler throws", async () => {
    const { sr, api } = setup({ onError: () => { throw new Error("oops"); } });
    api.handler = () => ({ status: 400 });
    sr.track("view", { item_id: "a" });
    await expect(sr.flush()).rejects.toMatchObject({ code: "dropped", status: 400 });
    api.handler = undefined;
    sr.track("view", { item_id: "b" });
    await sr.flush();
    expect(api.calls).toHaveLength(2);
  });

  it("is bounded: the oldest entries are dropped and counted", async () => {
    const { sr, api, errors } = setup({ maxQueue: 5, batchSize: 100, maxRetries: 0 });
    api.handler = () => "network";
    const ids = Array.from({ length: 8 }, (_, i) => sr.track("view", { item_id: `sku-${i}` }));
    expect(sr.queued).toBe(5);
    expect(sr.dropped).toBe(3);
    expect(errors.filter((e) => e.code === "queue_full").flatMap((e) => e.eventIds)).toEqual(ids.slice(0, 3));
    api.handler = undefined;
    await sr.flush();
    expect(api.eventIds().slice(-5)).toEqual(ids.slice(3));
  });

  it("a flush waiting for entries that overflow the queue rejects, naming them", async () => {
    const { sr, api } = setup({ maxQueue: 2, batchSize: 100, retryBaseMs: 10 });
    api.handler = () => "network";
    const ids = [sr.track("view", { item_id: "a" }), sr.track("view", { item_id: "b" })];
    const flushed = sr.flush();
    flushed.catch(() => undefined);
    sr.track("view", { item_id: "c" }); // a is dropped
    api.handler = undefined;
    await advance(100);
    await expect(flushed).rejects.toMatchObject({ code: "queue_full", eventIds: [ids[0]] });
    expect(sr.queued).toBe(0);
  });

  it("survives a reload: a new page sends the stored events with the same ids", async () => {
    const first = setup({ maxRetries: 0 });
    first.api.handler = () => "network";
    const ids = [first.sr.track("view", { item_id: "a" }), first.sr.track("view", { item_id: "b" })];
    first.sr.flush().catch(() => undefined);
    await advance(0);
    expect(first.api.calls).toHaveLength(1);
    first.api.handler = undefined;
    window.dispatchEvent(new Event("pagehide")); // the page goes: its entries stay stored, free
    // the next page load: same storage, a new instance
    const second = client({ storagePrefix: first.prefix, endpoint: first.endpoint });
    expect(second.sr.anonymousId).toBe(first.sr.anonymousId);
    expect(second.sr.queued).toBe(2);
    await advance(1000);
    expect(first.api.calls).toHaveLength(2);
    expect(first.api.calls[1].body.events.map((e: any) => e.event_id)).toEqual(ids);
    expect(second.sr.queued).toBe(0);
    expect(localStorage.getItem(`${first.prefix}_queue`)).toBeNull();
  });

  it("two tabs share the stored queue: none lost, none sent by both", async () => {
    // two instances of one origin (tabs); the page-level events of a real tab are driven by hand
    const a = setup({ maxRetries: 0 });
    a.api.handler = () => "network";
    const fromA = [a.sr.track("view", { item_id: "a1" }), a.sr.track("view", { item_id: "a2" })];
    a.sr.flush().catch(() => undefined);
    await advance(0); // A's delivery failed: its entries wait, stored
    const b = client({ storagePrefix: a.prefix, endpoint: a.endpoint });
    expect(b.sr.queued).toBe(0); // A holds them: B leaves them alone
    a.api.handler = undefined;
    const fromB = b.sr.track("view", { item_id: "b1" });
    await b.sr.flush();
    expect(a.api.eventIds()).toEqual([...fromA, fromB]); // A's failed try, then B's own event
    const stored = () => JSON.parse(localStorage.getItem(`${a.prefix}_queue`) || "[]").map((e: any) => e.id);
    expect(stored()).toEqual(fromA); // B's save kept A's entries
    const outbox = (sr: unknown) => (sr as { outbox: { hide(): void; show(): void; adopt(): void } }).outbox;
    outbox(a.sr).hide(); // tab A hidden while failing: its entries stay stored, free
    outbox(b.sr).adopt(); // B hears the storage event and takes them
    expect(b.sr.queued).toBe(2);
    await advance(1000);
    outbox(a.sr).show(); // A comes back: what B took is not A's any more
    expect(a.sr.queued).toBe(0);
    await advance(60_000);
    expect(a.api.eventIds()).toEqual([...fromA, fromB, ...fromA]); // A's first try, B, B's delivery of A's
    expect(stored()).toEqual([]);
  });

  // A tab that crashed or was killed is never hidden: its stored entries kept its mark and
  // no page sent them, ever.
  it("takes the entries of a tab gone without being hidden once it stopped marking them", async () => {
    const a = setup({ maxRetries: 0 });
    a.api.handler = () => "network";
    const fromA = [a.sr.track("view", { item_id: "a1" }), a.sr.track("view", { item_id: "a2" })];
    a.sr.flush().catch(() => undefined);
    await advance(0);
    frozen(a.sr, true); // tab A crashes: no pagehide, nothing of it runs any more
    a.api.handler = undefined;
    const b = client({ storagePrefix: a.prefix, endpoint: a.endpoint });
    expect(b.sr.queued).toBe(0); // A's mark is fresh: A may be alive
    await advance(10_000);
    expect(b.sr.queued).toBe(0);
    await advance(10_000); // A's mark is older than 15 s: B takes and delivers them
    expect(a.api.eventIds()).toEqual([...fromA, ...fromA]);
    expect(b.sr.queued).toBe(0);
    expect(localStorage.getItem(`${a.prefix}_queue`)).toBeNull();
  });

  it("leaves a live tab's entries alone, and a tab taken for gone lets them go", async () => {
    const a = setup({ maxRetries: 0 });
    a.api.handler = () => "network";
    const fromA = a.sr.track("view", { item_id: "a1" });
    a.sr.flush().catch(() => undefined);
    await advance(0);
    a.api.handler = undefined;
    const b = client({ storagePrefix: a.prefix, endpoint: a.endpoint });
    await advance(60_000); // A, alive, marks its entries every 5 s
    expect([a.sr.queued, b.sr.queued]).toEqual([1, 0]);
    frozen(a.sr, true); // A stalls (a long task) past 15 s: B takes its entries
    a.api.handler = () => "network";
    await advance(25_000);
    expect(b.sr.queued).toBe(1);
    frozen(a.sr, false); // A runs again: what B took is not A's any more
    expect(a.sr.queued).toBe(0);
    a.api.handler = undefined;
    await advance(60_000); // B's retries deliver them
    expect(b.sr.queued).toBe(0);
    expect(a.api.eventIds().filter((id) => id === fromA).length).toBeGreaterThan(1);
    expect(localStorage.getItem(`${a.prefix}_queue`)).toBeNull();
  });

  it("ignores a garbled stored queue", () => {
    localStorage.setItem("garbled_queue", "{not json");
    const { sr } = client({ storagePrefix: "garbled" });
    expect(sr.queued).toBe(0);
  });

  it("delivers when the browser comes back online", async () => {
    const { sr, api } = setup({ maxRetries: 0 });
    api.handler = () => "network";
    sr.track("view", { item_id: "a" });
    sr.flush().catch(() => undefined);
    await advance(0);
    api.handler = undefined;
    window.dispatchEvent(new Event("online"));
    await advance(0);
    expect(api.calls).toHaveLength(2);
    expect(sr.queued).toBe(0);
  });
});

describe("identity", () => {
  it("keeps one anonymous id per browser and the user id across page loads", () => {
    const a = client({ storagePrefix: "same" });
    const b = client({ storagePrefix: "same" });
    expect(a.sr.anonymousId).toMatch(UUID);
    expect(b.sr.anonymousId).toBe(a.sr.anonymousId);
    a.sr.identify("u42");
    expect(client({ storagePrefix: "same" }).sr.userId).toBe("u42");
  });

  it("reset forgets the user and starts a new anonymous visitor", () => {
    const { sr, prefix } = client();
    const before = sr.anonymousId;
    sr.identify("u42");
    sr.reset();
    expect(sr.userId).toBeNull();
    expect(sr.anonymousId).not.toBe(before);
    expect(localStorage.getItem(`${prefix}_aid`)).toBe(sr.anonymousId);
    expect(localStorage.getItem(`${prefix}_uid`)).toBeNull();
  });

  it("identify goes after the events queued before it; later events carry the user id", async () => {
    const { sr, api } = setup();
    const before = sr.track("view", { item_id: "a" });
    sr.identify("u42");
    const after = sr.track("view", { item_id: "b" });
    await sr.flush();
    expect(api.calls.map((c) => c.path)).toEqual(["/v1/events", "/v1/identify", "/v1/events"]);
    expect(api.calls[0].body.events.map((e: any) => e.event_id)).toEqual([before]);
    expect(api.calls[1].body).toEqual({ anonymous_id: sr.anonymousId, user_id: "u42" });
    expect(api.calls[1].headers["x-api-key"]).toBe("tk");
    expect(api.calls[2].body.events[0]).toMatchObject({ event_id: after, user_id: "u42", anonymous_id: sr.anonymousId });
    expect(api.calls[0].body.events[0].user_id).toBeUndefined();
    expect(api.schemaErrors).toEqual([]);
  });

  it("identify is sent without waiting for the flush interval, and only once per user", async () => {
    const { sr, api } = setup();
    sr.identify("u42");
    sr.identify("u42");
    await advance(0);
    expect(api.calls.map((c) => c.path)).toEqual(["/v1/identify"]);
  });

  it("identify refuses an invalid user id", async () => {
    const { sr, api, errors } = setup();
    sr.identify("");
    await advance(2000);
    expect(api.calls).toHaveLength(0);
    expect(sr.userId).toBeNull();
    expect(errors[0].code).toBe("invalid_event");
  });

  // Such a user id, once kept, would make the API refuse (422) every later event of the
  // visitor, across page loads, until reset().
  it("identify refuses a user id with a control character (a stray newline from a form)", async () => {
    const { sr, api, errors } = setup();
    sr.identify("u42\n");
    expect(sr.userId).toBeNull();
    expect(sr.track("view", { item_id: "a", recommendation_id: "" })).toBeNull();
    expect(sr.track("view", { item_id: "a" })).not.toBeNull();
    await sr.flush();
    expect(api.calls.map((c) => c.path)).toEqual(["/v1/events"]);
    expect(api.calls[0].body.events[0].user_id).toBeUndefined();
    expect(errors.map((e) => e.code)).toEqual(["invalid_event", "invalid_event"]);
  });
});
