/**
 * Impressions and clicks of a rendered recommendation list.
 *
 * An item counts as seen once at least `threshold` (half) of it has been visible for
 * `minVisibleMs` (1 s) without interruption, with the page visible; each item is reported
 * once per list (`recommendation_id`), items seen together in one `impression` event.
 * Clicks are caught on the container (capture phase, so before the page's own handlers
 * navigate) and queued as `click` events; if the click leaves the page, the page-hide
 * beacon carries them.
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
  let batchTimer: ReturnType<typeof setTimeout> | undefined;

  const emit = () => {
    batchTimer = undefined;
    while (pending.length) tracker.track("impression", props({ item_ids: pending.splice(0, MAX_ITEM_IDS) }));
  };
  const fire = (el: Element) => {
    timers.delete(el);
    const id = el.getAttribute(attribute);
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
    container.querySelectorAll(selector).forEach((el) => {
      if (!watched.has(el)) {
        watched.add(el);
        if (io) io.observe(el);
      }
    });
  };
  scan();
  // items rendered later (lazy lists, infinite scroll) are picked up too
  const mo = typeof MutationObserver === "function" ? new MutationObserver(scan) : null;
  if (mo) mo.observe(container, { childList: true, subtree: true });

  // time on a hidden page does not count
  const onVisibility = () => (document.hidden ? timers.forEach((_, el) => stop(el)) : visible.forEach(start));
  document.addEventListener("visibilitychange", onVisibility);

  const onClick = (ev: Event) => {
    const target = ev.target as Element | null;
    const el = target && target.closest ? target.closest(selector) : null;
    const id = el && container.contains(el) ? el.getAttribute(attribute) : null;
    if (id) tracker.track("click", props({ item_id: id }));
  };
  container.addEventListener("click", onClick, true);

  return () => {
    if (io) io.disconnect();
    if (mo) mo.disconnect();
    timers.forEach((_, el) => stop(el));
    document.removeEventListener("visibilitychange", onVisibility);
    container.removeEventListener("click", onClick, true);
    clearTimeout(batchTimer);
    emit();
  };
}
