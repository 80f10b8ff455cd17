// Guards impressions and clicks of a rendered list: an impression only after at least half
// of an item was visible for a whole second (IntersectionObserver mocked), once per list and
// item, with the list's recommendation_id; clicks attributed to the list.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { advance, setup, setVisibility } from "./helpers";

class FakeIO {
  static all: FakeIO[] = [];
  targets = new Set<Element>();
  constructor(
    public callback: IntersectionObserverCallback,
    public options: IntersectionObserverInit,
  ) {
    FakeIO.all.push(this);
  }
  observe(el: Element) {
    this.targets.add(el);
  }
  unobserve(el: Element) {
    this.targets.delete(el);
  }
  disconnect() {
    this.targets.clear();
  }
  takeRecords() {
    return [];
  }
}

/** The browser reports that these items are now this much visible. */
function show(ratios: Record<string, number>) {
  const io = FakeIO.all[FakeIO.all.length - 1];
  const entries = [...io.targets]
    .filter((el) => el.getAttribute("data-item-id")! in ratios)
    .map((el) => {
      const r = ratios[el.getAttribute("data-item-id")!];
      return { target: el, intersectionRatio: r, isIntersecting: r > 0 } as unknown as IntersectionObserverEntry;
    });
  io.callback(entries, io as unknown as IntersectionObserver);
}

function render(ids: string[]) {
  document.body.innerHTML = `<ul id="recs">${ids.map((id) => `<li data-item-id="${id}"><a href="#${id}"><img alt="${id}"></a></li>`).join("")}</ul><p id="other">x</p>`;
  return document.getElementById("recs")!;
}

/** Items seen in the same moment are batched by a 0 ms timer: one fake-timer tick. */
const TICK = 2;

const LIST = { recommendation_id: "r-1", source: "personalized", items: [] };

beforeEach(() => {
  vi.useFakeTimers();
  localStorage.clear();
  FakeIO.all = [];
  vi.stubGlobal("IntersectionObserver", FakeIO);
});
afterEach(() => {
  setVisibility("visible");
  vi.useRealTimers();
  vi.unstubAllGlobals();
});

/** Impression events the SDK queued (read from what it delivers). */
async function delivered(sr: { flush(): Promise<void> }, api: { calls: any[] }) {
  await sr.flush();
  return api.calls.flatMap((c) => c.body.events);
}

describe("impressions", () => {
  it("are sent after 1 s at 50 % visibility, items seen together in one event", async () => {
    const { sr, api } = setup();
    sr.observe(render(["a", "b", "c"]), LIST);
    expect(FakeIO.all[0].options.threshold).toContain(0.5);
    show({ a: 0.5, b: 1, c: 0.49 });
    await advance(999);
    expect(sr.queued).toBe(0);
    await advance(TICK);
    const events = await delivered(sr, api);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "impression", item_ids: ["a", "b"], recommendation_id: "r-1" });
    expect(events[0].item_id).toBeUndefined();
    expect(api.schemaErrors).toEqual([]);
  });

  it("need the second to be continuous", async () => {
    const { sr, api } = setup();
    sr.observe(render(["a"]), LIST);
    show({ a: 0.8 });
    await advance(600);
    show({ a: 0.3 }); // scrolled half away
    await advance(600);
    show({ a: 0.9 });
    await advance(999);
    expect(sr.queued).toBe(0);
    await advance(TICK);
    expect((await delivered(sr, api)).map((e) => e.item_ids)).toEqual([["a"]]);
  });

  it("do not count time on a hidden page", async () => {
    const { sr } = setup();
    sr.observe(render(["a"]), LIST);
    show({ a: 1 });
    await advance(500);
    setVisibility("hidden");
    await advance(5000);
    expect(sr.queued).toBe(0);
    setVisibility("visible");
    await advance(999);
    expect(sr.queued).toBe(0);
    await advance(TICK);
    expect(sr.queued).toBe(1);
  });

  it("are sent once per list and item", async () => {
    const { sr, api } = setup();
    const box = render(["a", "b"]);
    sr.observe(box, LIST);
    show({ a: 1 });
    await advance(1000 + TICK);
    show({ a: 0 });
    show({ a: 1, b: 1 });
    await advance(1000 + TICK);
    sr.observe(box, LIST); // the same list observed again
    show({ a: 1, b: 1 });
    await advance(1000 + TICK);
    sr.observe(box, { recommendation_id: "r-2" }); // a new list shows the items again
    show({ a: 1 });
    await advance(1000 + TICK);
    const events = await delivered(sr, api);
    expect(events.map((e) => [e.recommendation_id, e.item_ids])).toEqual([
      ["r-1", ["a"]],
      ["r-1", ["b"]],
      ["r-2", ["a"]],
    ]);
  });

  it("cover items rendered after observe started", async () => {
    const { sr } = setup();
    const box = render([]);
    sr.observe(box, LIST);
    box.insertAdjacentHTML("beforeend", `<li data-item-id="late">late</li>`);
    await advance(0); // MutationObserver callback
    expect([...FakeIO.all[0].targets].map((el) => el.getAttribute("data-item-id"))).toEqual(["late"]);
  });

  it("stop when the returned function is called", async () => {
    const { sr } = setup();
    const stop = sr.observe(render(["a"]), LIST);
    show({ a: 1 });
    await advance(500);
    stop();
    await advance(5000);
    expect(sr.queued).toBe(0);
    expect(FakeIO.all[0].targets.size).toBe(0);
  });

  it("use the given selector, attribute and context", async () => {
    const { sr, api } = setup({ context: { page: "home" } });
    document.body.innerHTML = `<div id="box"><div class="card" data-sku="s1">x</div></div>`;
    sr.observe(document.getElementById("box")!, LIST, { selector: ".card", attribute: "data-sku", context: { page: "cart" } });
    const io = FakeIO.all[0];
    const [el] = [...io.targets];
    io.callback([{ target: el, intersectionRatio: 1, isIntersecting: true } as any], io as any);
    await advance(1000 + TICK);
    const [event] = await delivered(sr, api);
    expect(event).toMatchObject({ item_ids: ["s1"], context: { page: "cart", channel: "web" } });
  });

  it("without IntersectionObserver, clicks are still tracked", async () => {
    vi.stubGlobal("IntersectionObserver", undefined);
    const { sr, api } = setup();
    const box = render(["a"]);
    sr.observe(box, LIST);
    box.querySelector("img")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect((await delivered(sr, api)).map((e) => e.type)).toEqual(["click"]);
  });
});

describe("clicks", () => {
  it("carry the item and the list's recommendation_id", async () => {
    const { sr, api } = setup();
    const box = render(["a", "b"]);
    sr.observe(box, LIST);
    box.querySelector('[data-item-id="b"] img')!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    document.getElementById("other")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    const events = await delivered(sr, api);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ type: "click", item_id: "b", recommendation_id: "r-1", anonymous_id: sr.anonymousId });
    expect(api.schemaErrors).toEqual([]);
  });

  it("include a middle click (opens the item in a new tab), not a right click", async () => {
    // a middle click fires auxclick, never click; the right button opens the context menu
    const { sr, api } = setup();
    const box = render(["a", "b"]);
    sr.observe(box, LIST);
    const img = (id: string) => box.querySelector(`[data-item-id="${id}"] img`)!;
    img("a").dispatchEvent(new MouseEvent("auxclick", { bubbles: true, button: 1 }));
    img("b").dispatchEvent(new MouseEvent("auxclick", { bubbles: true, button: 2 }));
    const events = await delivered(sr, api);
    expect(events.map((e) => [e.type, e.item_id, e.recommendation_id])).toEqual([["click", "a", "r-1"]]);
  });

  it("are caught even when the page's own handler stops propagation", async () => {
    const { sr, api } = setup();
    const box = render(["a"]);
    box.querySelector("a")!.addEventListener("click", (e) => e.stopPropagation());
    sr.observe(box, LIST);
    box.querySelector("img")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect((await delivered(sr, api)).map((e) => e.item_id)).toEqual(["a"]);
  });

  it("are tracked once when the same container is observed again (re-render, new list)", async () => {
    const { sr, api } = setup();
    let box = render(["a", "b"]);
    sr.observe(box, LIST);
    sr.observe(box, LIST); // the page re-rendered the same list
    box = render(["b", "c"]); // a new list in a new container element: both stay observed
    sr.observe(box, LIST);
    sr.observe(box, { ...LIST, recommendation_id: "r-2" }); // a newer list in the same one
    box.querySelector('[data-item-id="b"] img')!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    const events = await delivered(sr, api);
    expect(events.map((e) => [e.type, e.item_id, e.recommendation_id])).toEqual([["click", "b", "r-2"]]);
  });

  it("are no longer tracked after stop", async () => {
    const { sr } = setup();
    const box = render(["a"]);
    sr.observe(box, LIST)();
    box.querySelector("img")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(sr.queued).toBe(0);
  });
});

// API.md's example renders a list and calls observe(container, list) without asking for a
// data-item-id attribute: such a list is matched to its rendered elements by position.
describe("a list rendered without data-item-id", () => {
  const FULL = { ...LIST, items: [{ item_id: "a" }, { item_id: "b" }, { item_id: "c" }] };
  const plain = (html: string) => {
    document.body.innerHTML = `<div id="box">${html}</div><p id="other">x</p>`;
    return document.getElementById("box")!;
  };
  const showAll = (ratio: (i: number) => number) => {
    const io = FakeIO.all[FakeIO.all.length - 1];
    const entries = [...io.targets].map((el, i) => ({ target: el, intersectionRatio: ratio(i), isIntersecting: ratio(i) > 0 }));
    io.callback(entries as unknown as IntersectionObserverEntry[], io as unknown as IntersectionObserver);
  };

  it("is matched by position: impressions and clicks carry the items' ids", async () => {
    const { sr, api } = setup();
    const box = plain(`<ul><li><a href="#1">A</a></li><li><a href="#2">B</a></li><li><a href="#3">C</a></li></ul>`);
    sr.observe(box, FULL);
    expect(FakeIO.all[0].targets.size).toBe(3);
    showAll((i) => (i === 2 ? 0.2 : 1));
    await advance(1000 + TICK);
    box.querySelectorAll("a")[1].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    document.getElementById("other")!.dispatchEvent(new MouseEvent("click", { bubbles: true }));
    const events = await delivered(sr, api);
    expect(events.map((e) => [e.type, e.item_ids || e.item_id, e.recommendation_id])).toEqual([
      ["impression", ["a", "b"], "r-1"],
      ["click", "b", "r-1"],
    ]);
    expect(api.schemaErrors).toEqual([]);
  });

  it("is matched once rendered after observe started", async () => {
    const { sr } = setup();
    const box = plain("");
    sr.observe(box, FULL);
    box.innerHTML = "<div>A</div><div>B</div><div>C</div>";
    await advance(0); // MutationObserver callback
    expect(FakeIO.all[0].targets.size).toBe(3);
  });

  it("is not guessed when the elements do not match the items one to one", async () => {
    const { sr } = setup();
    const box = plain("<h3>For you</h3><div>A</div><div>B</div><div>C</div>");
    sr.observe(box, FULL);
    box.querySelectorAll("div")[0].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect(FakeIO.all[0].targets.size).toBe(0);
    expect(sr.queued).toBe(0);
  });

  it("never overrides data-item-id", async () => {
    const { sr, api } = setup();
    const box = plain(`<div data-item-id="x">A</div><div>B</div><div>C</div>`);
    sr.observe(box, FULL);
    expect(FakeIO.all[0].targets.size).toBe(1);
    box.querySelectorAll("div")[1].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    box.querySelectorAll("div")[0].dispatchEvent(new MouseEvent("click", { bubbles: true }));
    expect((await delivered(sr, api)).map((e) => e.item_id)).toEqual(["x"]);
  });
});
