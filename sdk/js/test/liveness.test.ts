// Guards how tabs sharing one stored queue tell a live tab from a gone one: a beat writes
// only the small `<prefix>_tabs` map (tab → last beat), never the queue (a full queue
// rewritten every 5 s during an outage stalled phones); a crashed tab's entries are still
// taken once its beat is STALE ms old; the map stays bounded; entries stored by the
// previous SDK (marked with `h`) are read as before.
import { describe, expect, it } from "vitest";
import { BEAT, type Entry, Outbox, STALE } from "../src/outbox";
import type { Store } from "../src/storage";
import { advance, fakeApi, fakeClockPerTest } from "./helpers";

fakeClockPerTest();

const QUEUE = "x_queue";
const TABS = "x_tabs";

/** A store shared by the tabs of one origin, recording each write (key, length). */
function fakeStore() {
  const data = new Map<string, string>();
  const writes: Array<[string, number]> = [];
  const store: Store = {
    get: (k) => data.get(k) ?? null,
    set: (k, v) => {
      writes.push([k, v.length]);
      data.set(k, v);
      return true;
    },
    remove: (k) => void data.delete(k),
  };
  return { store, data, writes };
}

let n = 0;

/** One tab's outbox on `store`, delivering to its own endpoint; retries stop at once. */
function tab(store: Store) {
  n += 1;
  return new Outbox({
    endpoint: `https://beat${n}.test`,
    key: "tk",
    store,
    storeKey: QUEUE,
    tabsKey: TABS,
    batchSize: 1000,
    flushInterval: 1000,
    maxQueue: 1000,
    maxQueueBytes: 500000,
    maxRetries: 0,
    retryBaseMs: 1000,
    retryMaxMs: 30000,
    timeoutMs: 10000,
    report: () => undefined,
  });
}

const view = (i: number) => ({ event_id: `e${i}`, event_type: "view", item_id: `sku-${i}`, anonymous_id: "a" });
const stored = (data: Map<string, string>): Entry[] => JSON.parse(data.get(QUEUE) || "[]");
const beats = (data: Map<string, string>): Record<string, number> => JSON.parse(data.get(TABS) || "{}");
/** A tab that crashed (or stalls): none of its code runs from now on. */
const freeze = (o: Outbox) => ((o as unknown as { away: boolean }).away = true);

describe("liveness marks", () => {
  it("a beat during an outage writes a few bytes, not the queue", async () => {
    const api = fakeApi();
    api.handler = () => "network";
    const { store, data, writes } = fakeStore();
    const a = tab(store);
    for (let i = 0; i < 200; i++) a.push("/v1/events", `e${i}`, view(i));
    await a.flush().catch(() => undefined); // fails: retries given up, entries kept
    expect(stored(data)).toHaveLength(200);
    const queueBytes = data.get(QUEUE)!.length;
    writes.length = 0;
    await advance(60_000); // twelve beats
    expect(writes.filter(([k]) => k === QUEUE)).toEqual([]);
    const marks = writes.filter(([k]) => k === TABS);
    expect(marks.length).toBeGreaterThanOrEqual(60_000 / BEAT - 1);
    expect(Math.max(...marks.map(([, size]) => size))).toBeLessThan(100);
    expect(queueBytes).toBeGreaterThan(10_000);
    // the entries name their tab and when it stored them; its liveness is in the map
    const t = stored(data)[0].t!;
    expect(stored(data).every((e) => e.t === t && Date.now() - e.h! >= 60_000)).toBe(true);
    expect(Object.keys(beats(data))).toEqual([t]);
    expect(Date.now() - beats(data)[t]).toBeLessThan(BEAT);
  });

  it("another tab takes a crashed tab's entries only once its beat is STALE ms old", async () => {
    const api = fakeApi();
    api.handler = () => "network";
    const { store, data } = fakeStore();
    const a = tab(store);
    a.push("/v1/events", "e1", view(1));
    a.push("/v1/events", "e2", view(2));
    await a.flush().catch(() => undefined);
    freeze(a);
    const t = stored(data)[0].t;
    const b = tab(store);
    expect(b.q).toEqual([]); // A's beat is fresh: A may be alive
    await advance(STALE - 2 * BEAT);
    expect(b.q).toEqual([]);
    await advance(3 * BEAT); // past STALE since A's last beat
    expect(b.q.map((e) => e.id)).toEqual(["e1", "e2"]);
    expect(stored(data).every((e) => e.t && e.t !== t)).toBe(true); // B's now
  });

  it("a live tab's entries stay its own however long the outage lasts", async () => {
    const api = fakeApi();
    api.handler = () => "network";
    const { store } = fakeStore();
    const a = tab(store);
    a.push("/v1/events", "e1", view(1));
    await a.flush().catch(() => undefined);
    const b = tab(store);
    await advance(10 * STALE);
    expect([a.q.length, b.q.length]).toEqual([1, 0]);
  });

  it("a tab whose first beat was overwritten (two tabs writing the map at once) is not taken", async () => {
    const api = fakeApi();
    api.handler = () => "network";
    const { store, data } = fakeStore();
    const b = tab(store);
    b.push("/v1/events", "b1", view(1));
    await b.flush().catch(() => undefined);
    const before = data.get(TABS)!;
    const a = tab(store);
    a.push("/v1/events", "a1", view(2));
    await a.flush().catch(() => undefined);
    data.set(TABS, before); // B's write of the map, read before A's first beat, won
    b.adopt();
    expect([a.q.length, b.q.length]).toEqual([1, 1]);
    await advance(STALE + BEAT); // A's beats put it back in the map
    expect([a.q.length, b.q.length]).toEqual([1, 1]);
  });

  it("the map keeps live tabs only: a hidden tab removes itself, a gone one is pruned", async () => {
    const api = fakeApi();
    api.handler = () => "network";
    const { store, data } = fakeStore();
    const a = tab(store);
    const b = tab(store);
    a.push("/v1/events", "e1", view(1));
    b.push("/v1/events", "e2", view(2));
    await Promise.all([a.flush(), b.flush()].map((p) => p.catch(() => undefined)));
    expect(Object.keys(beats(data))).toHaveLength(2);
    b.hide(); // hidden while failing: its entries stored as nobody's, its beat removed
    expect(Object.keys(beats(data))).toHaveLength(1);
    expect(stored(data).find((e) => e.id === "e2")!.t).toBeUndefined();
    const c = tab(store);
    c.push("/v1/events", "e3", view(3));
    await c.flush().catch(() => undefined);
    freeze(a); // crashed: its beat gets old and goes at C's next beat past STALE
    await advance(STALE + BEAT);
    expect(Object.keys(beats(data))).toHaveLength(1);
    expect(c.q.map((e) => e.id).sort()).toEqual(["e1", "e2", "e3"]);
  });

  it("puts back at the next beat the entries another page removed from storage", async () => {
    const api = fakeApi();
    api.handler = () => "network";
    const { store, data } = fakeStore();
    const a = tab(store);
    a.push("/v1/events", "e1", view(1));
    await a.flush().catch(() => undefined);
    data.delete(QUEUE); // e.g. another tab's write refused by the quota removed the key
    await advance(BEAT);
    expect(stored(data).map((e) => e.id)).toEqual(["e1"]); // a crash now still loses nothing
  });
});

describe("entries stored by the previous SDK (marked with `h`)", () => {
  const old = (id: string, t: string | undefined, h: number | undefined) => ({ id, path: "/v1/events", body: view(0), t, h });

  it("are left alone while their tab's mark is fresh, and taken once it is STALE ms old", async () => {
    fakeApi().handler = () => "network";
    const { store, data } = fakeStore();
    data.set(QUEUE, JSON.stringify([old("live", "old-tab", Date.now() - 1000), old("dead", "crashed-tab", Date.now() - STALE - 1), old("free", undefined, undefined)]));
    const b = tab(store);
    expect(b.q.map((e) => e.id).sort()).toEqual(["dead", "free"]);
    b.push("/v1/events", "mine", view(1));
    await b.flush().catch(() => undefined);
    // B's saves keep the old tab's entry and its mark as they were
    expect(stored(data).find((e) => e.id === "live")).toEqual(old("live", "old-tab", Date.now() - 1000));
    await advance(STALE);
    expect(b.q.map((e) => e.id).sort()).toEqual(["dead", "free", "live", "mine"]);
  });
});
