// Guards delivery when the page goes away: keepalive fetches with the tracking key as
// ?key= and a text/plain JSON body (no preflight) whose 202 settles the entries, sendBeacon
// only without keepalive fetch, and nothing lost or settled without a 202.
import { describe, expect, it, vi } from "vitest";
import { advance, fakeClockPerTest, noKeepalive, setup, setVisibility } from "./helpers";

fakeClockPerTest({ visible: true });

describe("page hide", () => {
  it("sends every waiting event by keepalive fetch with ?key= when the page is hidden", async () => {
    const { sr, api, prefix } = setup({ trackingKey: "tk/+=" });
    const ids = [sr.track("view", { item_id: "a" }), sr.track("click", { item_id: "b", recommendation_id: "r-1" })];
    let flushed = false;
    void sr.flush().then(() => (flushed = true));
    setVisibility("hidden");
    const sent = api.calls.filter((c) => c.keepalive);
    expect(sent).toHaveLength(1);
    expect(sent[0].url).toBe(`${sr.endpoint}/v1/events?key=tk%2F%2B%3D`);
    expect(sent[0].query.get("key")).toBe("tk/+=");
    // a CORS-simple request: no custom header, a safelisted type (no preflight)
    expect(sent[0].headers["x-api-key"]).toBeUndefined();
    expect(sent[0].headers["content-type"]).toMatch(/^text\/plain/);
    expect(sent[0].body.events.map((e: any) => e.event_id)).toEqual(ids);
    expect(api.calls.filter((c) => c.beacon)).toHaveLength(0);
    await advance(0);
    expect(flushed).toBe(true); // settled by the keepalive's 202
    expect(sr.queued).toBe(0);
    const before = api.calls.length;
    await advance(5000);
    expect(api.calls).toHaveLength(before); // not sent again
    expect(localStorage.getItem(`${prefix}_queue`)).toBeNull();
    expect(api.schemaErrors).toEqual([]);
  });

  it("keeps the entries stored, and flush() waiting, until a real 202", async () => {
    const { sr, api, prefix } = setup();
    // the page's own deliveries hang; the API answers the first keepalive 503
    let keepalives = 0;
    api.handler = (c) => (c.keepalive ? (++keepalives === 1 ? { status: 503 } : undefined) : new Promise(() => undefined));
    const id = sr.track("view", { item_id: "a" });
    let flushed = false;
    void sr.flush().then(() => (flushed = true));
    setVisibility("hidden");
    await advance(0);
    expect(flushed).toBe(false);
    expect(sr.queued).toBe(1);
    expect(localStorage.getItem(`${prefix}_queue`)).toContain(id!);
    setVisibility("visible");
    setVisibility("hidden"); // hidden again: this keepalive gets its 202
    await advance(0);
    expect(flushed).toBe(true);
    expect(sr.queued).toBe(0);
  });

  it("loses nothing when the API is down at hide before any delivery failed", async () => {
    const { sr, api, prefix } = setup();
    api.handler = () => "network";
    const id = sr.track("view", { item_id: "a" });
    window.dispatchEvent(new Event("pagehide"));
    await advance(0);
    expect(api.calls.filter((c) => c.keepalive)).toHaveLength(1);
    expect(sr.queued).toBe(1);
    // stored as nobody's: the next page load takes it and sends it with the same id
    const stored = JSON.parse(localStorage.getItem(`${prefix}_queue`)!);
    expect(stored.map((e: any) => [e.id, e.t])).toEqual([[id, undefined]]);
  });

  it("does the same on pagehide, identify included, in order", async () => {
    const { sr, api } = setup();
    sr.track("view", { item_id: "a" });
    api.handler = () => new Promise(() => undefined); // the identify request never answers
    sr.identify("u42");
    sr.track("view", { item_id: "b" });
    await advance(0);
    window.dispatchEvent(new Event("pagehide"));
    const beacons = api.calls.filter((c) => c.keepalive);
    expect(beacons.map((c) => c.path)).toEqual(["/v1/events", "/v1/identify", "/v1/events"]);
    expect(beacons[1].body).toEqual({ anonymous_id: sr.anonymousId, user_id: "u42" });
    expect(beacons[1].query.get("key")).toBe("tk");
    expect(beacons[2].body.events[0].user_id).toBe("u42");
  });

  it("sends each entry once when a navigation fires visibilitychange and pagehide", async () => {
    const { sr, api } = setup();
    const id = sr.track("view", { item_id: "a" });
    setVisibility("hidden");
    window.dispatchEvent(new Event("pagehide"));
    expect(api.eventIds()).toEqual([id]);
  });

  it("carries a click that navigates away", async () => {
    const { sr, api } = setup();
    document.body.innerHTML = `<div id="recs"><a href="/p/sku-9" data-item-id="sku-9"><span>Shoe</span></a></div>`;
    const box = document.getElementById("recs")!;
    sr.observe(box, { recommendation_id: "r-7" });
    box.querySelector("span")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    window.dispatchEvent(new Event("pagehide")); // the navigation
    const [beacon] = api.calls;
    expect(beacon.keepalive).toBe(true);
    expect(beacon.body.events).toMatchObject([{ type: "click", item_id: "sku-9", recommendation_id: "r-7" }]);
  });

  it("uses sendBeacon only without keepalive fetch, keeping the entries until a 202", async () => {
    const { sr, api, prefix } = setup();
    noKeepalive();
    const id = sr.track("view", { item_id: "a" });
    setVisibility("hidden");
    const [beacon] = api.calls;
    expect(beacon.beacon).toBe(true);
    expect(beacon.query.get("key")).toBe("tk");
    expect(beacon.body.events[0].event_id).toBe(id);
    // a string body: the browser sends it as text/plain, a CORS-safelisted type
    expect(typeof (navigator.sendBeacon as any).mock.calls[0][1]).toBe("string");
    await advance(0);
    // nobody sees a beacon's answer: the entry stays (a re-send counts once, same id)
    expect(sr.queued).toBe(1);
    expect(localStorage.getItem(`${prefix}_queue`)).toContain(id!);
    setVisibility("visible");
    await sr.flush(); // resolves on the 202 of the ordinary delivery
    expect(sr.queued).toBe(0);
    expect(api.eventIds()).toEqual([id, id]);
  });

  it("keeps the events stored for the next page while deliveries are failing", async () => {
    const { sr, api, prefix } = setup({ retryBaseMs: 60_000 });
    api.handler = () => ({ status: 503, headers: { "Retry-After": "30" } });
    const id = sr.track("view", { item_id: "a" });
    await advance(1000);
    expect(api.calls).toHaveLength(1);
    setVisibility("hidden");
    expect(api.calls.filter((c) => c.beacon || c.keepalive)).toHaveLength(0);
    expect(localStorage.getItem(`${prefix}_queue`)).toContain(id!);
  });

  it("keeps them stored when the browser is offline", () => {
    const { sr, api, prefix } = setup();
    vi.spyOn(navigator, "onLine", "get").mockReturnValue(false);
    const id = sr.track("view", { item_id: "a" });
    window.dispatchEvent(new Event("pagehide"));
    expect(api.calls).toHaveLength(0);
    expect(localStorage.getItem(`${prefix}_queue`)).toContain(id!);
  });

  // Browsers refuse a keepalive request past 64 KiB of bodies in flight (Chromium: the
  // fetch fails at once): sending every batch at once skipped the middle of a long queue
  // and sent its end first, and a page that lived on hidden never sent the middle.
  it("sends on hide, in order, only what the keepalive limit takes; the rest once those are settled", async () => {
    const { sr, api } = setup({ batchSize: 10_000, maxQueue: 10_000 });
    const ids = Array.from({ length: 600 }, (_, i) => sr.track("view", { item_id: `sku-${i}` }));
    setVisibility("hidden");
    const sent = api.eventIds();
    const size = api.calls.reduce((n, c) => n + new TextEncoder().encode(JSON.stringify(c.body)).length, 0);
    expect(api.calls.length).toBeGreaterThan(0);
    expect(api.calls.every((c) => c.keepalive)).toBe(true);
    expect(size).toBeLessThanOrEqual(48_000);
    expect(sent).toEqual(ids.slice(0, sent.length)); // the oldest first, no gap
    expect(sent.length).toBeLessThan(600);
    await advance(2000); // their 202s came: the page, alive, sends the rest
    expect(api.eventIds()).toEqual(ids);
    expect(sr.queued).toBe(0);
  });
});
