/**
 * Impressions and clicks of a rendered recommendation list.
 *
 * An item counts as seen once at least `threshold` (half) of it has been visible for
 * `minVisibleMs` (1 s) without interruption, with the page visible; each item is reported
 * once per list (`recommendation_id`), items seen together in one `impression` event.
 * Clicks (a middle click that opens a new tab too) are caught on the container (capture
 * phase, so before the page's own handlers navigate) and queued as `click` events; if the click leaves the page, the page-hide
 * beacon carries them.
 *
 * An item element is one matching `selector` (default `[data-item-id]`). A list rendered
 * without that attribute (API.md's example does not ask for one) is matched by position:
 * below the container's chain of single children, the n-th element is the list's n-th item
 * when there are exactly as many elements as items. Otherwise nothing is tracked.
 */
import type { EventProps, EventType, ObserveOptions } from "./types";
import { MAX_ITEM_IDS } from "./validate";

/** What observe needs of the client. */
export interface Tracker {
  track(type: EventType, props: EventProps): string | null;
}

/** Start observing; returns the function that stops it (pending impressions still go). */
export function observe(
  tracker: Tracker,
  seen: Set<string>,
  container: Element,
  recommendationId: string | undefined,
  options: ObserveOptions = {},
  items: string[] = [],
): () => void {
  const selector = options.selector || "[data-item-id]";
  const attribute = options.attribute || "data-item-id";
  const threshold = options.threshold == null ? 0.5 : options.threshold;
  const dwell = options.minVisibleMs == null ? 1000 : options.minVisibleMs;
  const props = (p: EventProps): EventProps => {
    if (recommendationId) p.recommendation_id = recommendationId;
    if (options.context) p.context = options.context;
    return p;
  };
  const timers = new Map<Element, ReturnType<typeof setTimeout>>();
  const visible = new Set<Element>();
  const watched = new Set<Element>();
  const pending: string[] = [];
  /** Item ids of elements matched by position (no `attribute` on them). */
  const byPlace = new Map<Element, string>();
  const idOf = (el: Element) => el.getAttribute(attribute) || byPlace.get(el) || null;
  let batchTimer: ReturnType<typeof setTimeout> | undefined;

  const emit = () => {
    batchTimer = undefined;
    while (pending.length) tracker.track("impression", props({ item_ids: pending.splice(0, MAX_ITEM_IDS) }));
  };
  const fire = (el: Element) => {
    timers.delete(el);
    const id = idOf(el);
    if (!id || seen.has(id)) return;
    seen.add(id);
    pending.push(id);
    // items whose second ends in the same moment share one event
    if (batchTimer === undefined) batchTimer = setTimeout(emit, 0);
  };
  const start = (el: Element) => {
    if (!timers.has(el) && !document.hidden) timers.set(el, setTimeout(() => fire(el), dwell));
  };
  const stop = (el: Element) => {
    clearTimeout(timers.get(el));
    timers.delete(el);
  };

  const io =
    typeof IntersectionObserver === "function"
      ? new IntersectionObserver(
          (entries) => {
            for (const e of entries) {
              if (e.isIntersecting && e.intersectionRatio >= threshold) {
                visible.add(e.target);
                start(e.target);
              } else {
                visible.delete(e.target);
                stop(e.target);
              }
            }
          },
          { threshold: [0, threshold] },
        )
      : null;
  const scan = () => {
    let els: ArrayLike<Element> = container.querySelectorAll(selector);
    if (!els.length && items.length) {
      let box = container;
      while (box.children.length === 1 && items.length > 1) box = box.children[0];
      if (box.children.length === items.length) {
        els = box.children;
        for (let i = 0; i < els.length; i++) byPlace.set(els[i], items[i]);
      }
    }
    for (let i = 0; i < els.length; i++) {
      const el = els[i];
      if (!watched.has(el)) {
        watched.add(el);
        if (io) io.observe(el);
      }
    }
  };
  scan();
  // items rendered later (lazy lists, infinite scroll) are picked up too
  const mo = typeof MutationObserver === "function" ? new MutationObserver(scan) : null;
  if (mo) mo.observe(container, { childList: true, subtree: true });

  // time on a hidden page does not count
  const onVisibility = () => (document.hidden ? timers.forEach((_, el) => stop(el)) : visible.forEach(start));
  document.addEventListener("visibilitychange", onVisibility);

  const onClick = (ev: Event) => {
    // a middle click (auxclick, button 1) opens the item in a new tab: a click too
    if (ev.type === "auxclick" && (ev as MouseEvent).button !== 1) return;
    let el = ev.target as Element | null;
    let id: string | null = null;
    // the innermost item element around the click, inside the container
    for (; el && el !== container && !id; el = el.parentElement) if ((el.matches && el.matches(selector)) || byPlace.has(el)) id = idOf(el);
    if (id) tracker.track("click", props({ item_id: id }));
  };
  container.addEventListener("click", onClick, true);
  container.addEventListener("auxclick", onClick, true);

  return () => {
    if (io) io.disconnect();
    if (mo) mo.disconnect();
    timers.forEach((_, el) => stop(el));
    document.removeEventListener("visibilitychange", onVisibility);
    container.removeEventListener("click", onClick, true);
    container.removeEventListener("auxclick", onClick, true);
    clearTimeout(batchTimer);
    emit();
  };
}
