// Guards the queue's byte bound (localStorage's quota, the API's body limit) and a failed
// storage write: reported, and the older stored copy removed, so no later page resends
// what was delivered since.
import { describe, expect, it, vi } from "vitest";
import { REQUEST_BYTES } from "../src/outbox";
import { bytes } from "../src/validate";
import { advance, client, fakeClockPerTest, setup, setVisibility } from "./helpers";

fakeClockPerTest({ visible: true });

/** A view with a context of about `size` bytes (within the API's 4,096). */
const big = (i: number, size = 3500) => ({ item_id: `sku-${i}`, context: { note: "é".repeat(size / 2) } });

describe("the queue's byte bound", () => {
  it("drops the oldest entries beyond maxQueueBytes, counted and reported", () => {
    const { sr, api, errors, prefix } = setup({ maxQueueBytes: 12_000, batchSize: 1000 });
    api.handler = () => "network";
    const ids = Array.from({ length: 6 }, (_, i) => sr.track("view", big(i)));
    expect(ids.every(Boolean)).toBe(true);
    expect(sr.queued).toBe(3);
    expect(sr.dropped).toBe(3);
    expect(errors.filter((e) => e.code === "queue_full").flatMap((e) => e.eventIds)).toEqual(ids.slice(0, 3));
    window.dispatchEvent(new Event("pagehide")); // stores at once
    expect(bytes(JSON.parse(localStorage.getItem(`${prefix}_queue`)!))).toBeLessThan(12_500);
  });

  it("is 500,000 bytes by default: 1000 large events keep the newest that fit", () => {
    const { sr, api } = setup({ batchSize: 5000 });
    api.handler = () => "network";
    for (let i = 0; i < 1000; i++) sr.track("view", big(i));
    expect(sr.queued).toBeLessThan(150);
    expect(sr.dropped).toBe(1000 - sr.queued);
  });

  it("sends a large queue in requests within the API's body limit", async () => {
    const { sr, api } = setup({ maxQueueBytes: 2_000_000, batchSize: 5000 });
    for (let i = 0; i < 400; i++) sr.track("view", big(i));
    await sr.flush();
    const sizes = api.calls.map((c) => bytes(c.body));
    expect(sizes.length).toBeGreaterThan(2);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(REQUEST_BYTES + 100);
    expect(api.eventIds()).toHaveLength(400);
  });
});

describe("a failed storage write", () => {
  it("is reported once and leaves no stale copy for the next page to resend", async () => {
    const first = setup();
    first.api.handler = () => "network";
    const id = first.sr.track("view", { item_id: "a" });
    setVisibility("hidden"); // stored as nobody's: the next page would send it
    await advance(0);
    expect(localStorage.getItem(`${first.prefix}_queue`)).toContain(id!);
    // the shop's own data fills the quota from now on
    const setItem = vi.spyOn(localStorage, "setItem").mockImplementation(() => {
      throw new DOMException("full", "QuotaExceededError");
    });
    setVisibility("visible");
    first.api.handler = undefined;
    first.sr.track("view", { item_id: "b" });
    await first.sr.flush(); // a and b delivered; the queue could not be stored
    expect(first.errors.filter((e) => e.code === "not_stored")).toHaveLength(1);
    expect(first.sr.dropped).toBe(0);
    setItem.mockRestore();
    // the next page of this origin finds nothing to send again
    const next = client({ storagePrefix: first.prefix });
    expect(next.sr.queued).toBe(0);
    expect(first.api.eventIds().filter((e) => e === id)).toHaveLength(2); // keepalive + delivery
  });
});
