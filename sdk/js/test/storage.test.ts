// Guards the visitor's ids where storage is restricted: localStorage, else a first-party
// cookie, else memory; and UUIDs where crypto.randomUUID is missing (plain-http pages).
import { afterEach, describe, expect, it, vi } from "vitest";
import { uuid } from "../src/ids";
import { openStore } from "../src/storage";
import { client, setup, UUID } from "./helpers";

const realLocalStorage = Object.getOwnPropertyDescriptor(window, "localStorage");

function blockLocalStorage() {
  Object.defineProperty(window, "localStorage", {
    configurable: true,
    get() {
      throw new DOMException("blocked", "SecurityError");
    },
  });
}

afterEach(() => {
  if (realLocalStorage) Object.defineProperty(window, "localStorage", realLocalStorage);
  else delete (window as any).localStorage;
  vi.restoreAllMocks();
  vi.unstubAllGlobals();
});

describe("ids", () => {
  it("are UUID v4 from crypto.randomUUID", () => {
    expect(uuid()).toMatch(UUID);
  });

  it("are UUID v4 from getRandomValues where randomUUID is missing (insecure context)", () => {
    const real = globalThis.crypto;
    vi.stubGlobal("crypto", { getRandomValues: (b: Uint8Array) => real.getRandomValues(b) });
    const ids = new Set(Array.from({ length: 100 }, uuid));
    expect(ids.size).toBe(100);
    for (const id of ids) expect(id).toMatch(UUID);
  });

  it("are UUID v4 even without crypto", () => {
    vi.stubGlobal("crypto", undefined);
    expect(uuid()).toMatch(UUID);
  });
});

describe("storage", () => {
  it("uses localStorage when allowed", () => {
    const store = openStore();
    store.set("k1", "v");
    expect(localStorage.getItem("k1")).toBe("v");
    store.remove("k1");
    expect(localStorage.getItem("k1")).toBeNull();
  });

  it("falls back to a first-party cookie for the ids when localStorage is blocked", () => {
    blockLocalStorage();
    const { sr, prefix } = client({ storagePrefix: "cookie" });
    expect(document.cookie).toContain(`${prefix}_aid=${sr.anonymousId}`);
    expect(client({ storagePrefix: "cookie" }).sr.anonymousId).toBe(sr.anonymousId);
    const store = openStore(["big"]);
    store.set("big", "x".repeat(5000)); // nothing that long goes into a cookie
    expect(document.cookie).not.toContain("big=");
    expect(store.get("big")).toHaveLength(5000); // memory still has it for this page
  });

  it("never puts the offline queue into a cookie, however short it is", async () => {
    // a cookie travels to the shop's server with every request, and one that stopped
    // being rewritten (a longer queue) would hand the next page a stale queue
    blockLocalStorage();
    const { sr, api, prefix } = setup({ storagePrefix: "cookieq", flushInterval: 60000 });
    api.handler = () => "network";
    expect(sr.track("view", { item_id: "sku-1" })).toBeTruthy();
    await Promise.resolve(); // the queue is written at the end of the task
    expect(sr.queued).toBe(1);
    expect(document.cookie).toContain(`${prefix}_aid=`);
    expect(document.cookie).not.toContain(`${prefix}_queue`);
  });

  it("keeps the ids in memory when nothing else is allowed", () => {
    blockLocalStorage();
    vi.spyOn(navigator, "cookieEnabled", "get").mockReturnValue(false);
    const store = openStore(["k"]);
    store.set("k", "v");
    expect(store.get("k")).toBe("v");
    expect(document.cookie).not.toContain("k=v");
  });
});
