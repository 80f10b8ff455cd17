// Guards delivery when the page goes away: beacons with the tracking key as ?key= and a
// text/plain JSON body, the keepalive fallback, and nothing lost when the API is failing.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { advance, setup, setVisibility } from "./helpers";

beforeEach(() => {
  vi.useFakeTimers();
  localStorage.clear();
});
afterEach(() => {
  setVisibility("visible");
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe("page hide", () => {
  it("sends every waiting event by sendBeacon with ?key= when the page is hidden", async () => {
    const { sr, api, prefix } = setup({ trackingKey: "tk/+=" });
    const ids = [sr.track("view", { item_id: "a" }), sr.track("click", { item_id: "b", recommendation_id: "r-1" })];
    setVisibility("hidden");
    expect(api.calls).toHaveLength(1);
    const [beacon] = api.calls;
    expect(beacon.beacon).toBe(true);
    expect(beacon.url).toBe(`${sr.endpoint}/v1/events?key=tk%2F%2B%3D`);
    expect(beacon.query.get("key")).toBe("tk/+=");
    expect(beacon.body.events.map((e: any) => e.event_id)).toEqual(ids);
    // a string body: the browser sends it as text/plain, a CORS-safelisted type (no preflight)
    expect(typeof (navigator.sendBeacon as any).mock.calls[0][1]).toBe("string");
    expect(sr.queued).toBe(0);
    await advance(5000);
    expect(api.calls).toHaveLength(1); // not sent again
    expect(localStorage.getItem(`${prefix}_queue`)).toBeNull();
    expect(api.schemaErrors).toEqual([]);
  });

  it("does the same on pagehide, identify included, in order", async () => {
    const { sr, api } = setup();
    sr.track("view", { item_id: "a" });
    api.handler = () => new Promise(() => undefined); // the identify request never answers
    sr.identify("u42");
    sr.track("view", { item_id: "b" });
    await advance(0);
    window.dispatchEvent(new Event("pagehide"));
    const beacons = api.calls.filter((c) => c.beacon);
    expect(beacons.map((c) => c.path)).toEqual(["/v1/events", "/v1/identify", "/v1/events"]);
    expect(beacons[1].body).toEqual({ anonymous_id: sr.anonymousId, user_id: "u42" });
    expect(beacons[1].query.get("key")).toBe("tk");
    expect(beacons[2].body.events[0].user_id).toBe("u42");
  });

  it("carries a click that navigates away", async () => {
    const { sr, api } = setup();
    document.body.innerHTML = `<div id="recs"><a href="/p/sku-9" data-item-id="sku-9"><span>Shoe</span></a></div>`;
    const box = document.getElementById("recs")!;
    sr.observe(box, { recommendation_id: "r-7" });
    box.querySelector("span")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    window.dispatchEvent(new Event("pagehide")); // the navigation
    const [beacon] = api.calls;
    expect(beacon.beacon).toBe(true);
    expect(beacon.body.events).toMatchObject([{ type: "click", item_id: "sku-9", recommendation_id: "r-7" }]);
  });

  it("falls back to fetch with keepalive when sendBeacon refuses", async () => {
    const { sr, api } = setup();
    api.beaconAccepts = false;
    const id = sr.track("view", { item_id: "a" });
    setVisibility("hidden");
    const sent = api.calls.filter((c) => !c.beacon);
    expect(sent).toHaveLength(1);
    expect(sent[0].keepalive).toBe(true);
    expect(sent[0].query.get("key")).toBe("tk");
    expect(sent[0].headers["x-api-key"]).toBeUndefined(); // a simple request: no preflight
    expect(sent[0].headers["content-type"]).toMatch(/^text\/plain/);
    expect(sent[0].body.events[0].event_id).toBe(id);
    await advance(0);
    expect(sr.queued).toBe(0);
  });

  it("delivers normally later what neither a beacon nor keepalive took (the page stayed)", async () => {
    const { sr, api } = setup();
    api.beaconAccepts = false;
    api.handler = (c) => (c.keepalive ? "network" : undefined);
    const id = sr.track("view", { item_id: "a" });
    setVisibility("hidden");
    await advance(0);
    expect(sr.queued).toBe(1);
    setVisibility("visible");
    await advance(1000);
    expect(sr.queued).toBe(0);
    expect(api.eventIds()).toEqual([id, id, id]); // beacon, keepalive, then the normal delivery
  });

  it("keeps the events stored for the next page while deliveries are failing", async () => {
    const { sr, api, prefix } = setup({ retryBaseMs: 60_000 });
    api.handler = () => ({ status: 503, headers: { "Retry-After": "30" } });
    const id = sr.track("view", { item_id: "a" });
    await advance(1000);
    expect(api.calls).toHaveLength(1);
    setVisibility("hidden");
    expect(api.calls.filter((c) => c.beacon)).toHaveLength(0);
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

  it("splits a long queue into beacons the browser accepts", () => {
    const { sr, api } = setup({ batchSize: 10_000, maxQueue: 10_000 });
    for (let i = 0; i < 600; i++) sr.track("view", { item_id: `sku-${i}` });
    setVisibility("hidden");
    const sizes = api.calls.map((c) => JSON.stringify(c.body).length);
    expect(api.calls.length).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThan(32_000);
    expect(api.eventIds()).toHaveLength(600);
    expect(sr.queued).toBe(0);
  });
});
