// Guards the documented snippet: README.md shows exactly examples/snippet.html's snippet,
// and that snippet, run against the built classic script (dist/streamrec.js), tracks a
// view, renders the visitor's recommendations, reports their impressions and clicks, and
// identifies on login.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import * as sdk from "../src/index";
import { advance, fakeApi } from "./helpers";

const ROOT = join(__dirname, "..");
const read = (p: string) => readFileSync(join(ROOT, p), "utf8");
const BEGIN = "<!-- streamrec snippet: begin -->\n";
const END = "<!-- streamrec snippet: end -->";

function snippet(): string {
  const page = read("examples/snippet.html");
  return page.slice(page.indexOf(BEGIN) + BEGIN.length, page.indexOf(END));
}

const LIST = {
  recommendation_id: "r-42",
  source: "popular",
  items: [
    { item_id: "sku-2", score: 0.9, reason: "popular", name: "Red shoe" },
    { item_id: "sku 3", score: 0.8, reason: "popular" },
  ],
};

let observed: Element[] = [];
let report: IntersectionObserverCallback;

beforeEach(() => {
  vi.useFakeTimers();
  localStorage.clear();
  observed = [];
  vi.stubGlobal(
    "IntersectionObserver",
    class {
      constructor(cb: IntersectionObserverCallback) {
        report = cb;
      }
      observe(el: Element) {
        observed.push(el);
      }
      disconnect() {}
    },
  );
});
afterEach(() => {
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

describe("the documented snippet", () => {
  it("is in README.md byte for byte", () => {
    expect(snippet()).toContain("StreamRec.init(");
    expect(read("README.md")).toContain("```html\n" + snippet() + "```");
  });

  it("loads the SDK from the API and runs against the built script", async () => {
    const api = fakeApi();
    api.only = "https://api.example.com";
    api.handler = (c) => (c.path.endsWith("/recommendations") ? { status: 200, body: LIST } : undefined);
    const html = snippet();
    const scripts = [...html.matchAll(/<script([^>]*)>([\s\S]*?)<\/script>/g)];
    expect(scripts.map((m) => m[1])).toEqual([' src="https://api.example.com/sdk/streamrec.js"', ""]);
    document.body.innerHTML = html.replace(/<script[\s\S]*?<\/script>/g, "");

    // the classic script defines StreamRec; then the page's inline script runs
    const StreamRec = new Function(`${read("dist/streamrec.js")};return StreamRec;`)();
    expect(typeof StreamRec.init).toBe("function");
    expect(Object.keys(StreamRec).sort()).toEqual(Object.keys(sdk).sort()); // what the module exports
    expect(StreamRec.version).toBe(sdk.version);
    const sr = new Function("StreamRec", `${scripts[1][2]};return sr;`)(StreamRec);

    await advance(0);
    const [get] = api.calls;
    expect(get.path).toBe(`/v1/users/${sr.anonymousId}/recommendations`);
    expect(Object.fromEntries(get.query)).toEqual({ n: "4", context: "home" });
    expect(get.headers["x-api-key"]).toBe("YOUR_READ_KEY");
    const links = [...document.querySelectorAll("#streamrec-recs a")];
    expect(links.map((a) => [a.getAttribute("data-item-id"), a.textContent, a.getAttribute("href")])).toEqual([
      ["sku-2", "Red shoe", "/products/sku-2"],
      ["sku 3", "sku 3", "/products/sku%203"],
    ]);
    expect(observed).toEqual(links);

    report(links.map((el) => ({ target: el, isIntersecting: true, intersectionRatio: 1 }) as any), {} as any);
    await advance(1002);
    document.addEventListener("click", (e) => e.preventDefault()); // stay on the page
    links[0].dispatchEvent(new MouseEvent("click", { bubbles: true, cancelable: true }));
    document.getElementById("streamrec-login")!.click();
    await sr.flush();

    const posts = api.calls.filter((c) => c.method === "POST");
    expect(posts.map((c) => c.path).slice(-1)).toEqual(["/v1/identify"]);
    expect(posts.every((c) => c.headers["x-api-key"] === "YOUR_TRACKING_KEY")).toBe(true);
    expect(posts.slice(0, -1).flatMap((c) => c.body.events)).toMatchObject([
      { type: "view", item_id: "sku-1", context: { page: "home", channel: "web" } },
      { type: "impression", item_ids: ["sku-2", "sku 3"], recommendation_id: "r-42" },
      { type: "click", item_id: "sku-2", recommendation_id: "r-42" },
    ]);
    expect(posts[posts.length - 1].body).toEqual({ anonymous_id: sr.anonymousId, user_id: "u42" });
    expect(api.schemaErrors).toEqual([]);
  });
});
