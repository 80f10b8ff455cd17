/**
 * The SDK instance that `StreamRec.init` returns: the visitor's ids, tracking through the
 * outbox, and the recommendation reads for this visitor.
 */
import { StreamRecError } from "./errors";
import { query, request } from "./http";
import { uuid } from "./ids";
import { observe } from "./observe";
import { EVENTS, IDENTIFY, Outbox } from "./outbox";
import { openStore, type Store } from "./storage";
import type {
  EventProps,
  EventType,
  ObserveOptions,
  QueryValue,
  RecommendationList,
  RecommendationOptions,
  SimilarOptions,
  StreamRecOptions,
} from "./types";
import { isId, problem } from "./validate";

export class StreamRecClient {
  /** The API's base URL, without a trailing slash. */
  readonly endpoint: string;
  private o: StreamRecOptions;
  private store: Store;
  private keys: { aid: string; uid: string };
  private outbox: Outbox;
  private aid: string;
  private uid: string | null;
  /** Items already reported seen, per list (recommendation_id; "" for lists without one). */
  private seen = new Map<string, Set<string>>();
  /** The running observation of each container (a container shows one list at a time). */
  private watching = new WeakMap<Element, () => void>();

  constructor(options: StreamRecOptions) {
    if (!options || typeof options.endpoint !== "string") {
      throw new TypeError('StreamRec.init needs { endpoint: "https://your-api" }');
    }
    this.o = options;
    this.endpoint = options.endpoint.replace(/\/+$/, "");
    const prefix = options.storagePrefix || "streamrec";
    this.keys = { aid: `${prefix}_aid`, uid: `${prefix}_uid` };
    this.store = openStore([this.keys.aid, this.keys.uid]);
    const aid = this.store.get(this.keys.aid);
    this.aid = isId(aid) ? aid : this.newAnonymousId();
    const uid = this.store.get(this.keys.uid);
    this.uid = isId(uid) ? uid : null;
    const num = (v: number | undefined, d: number) => (typeof v === "number" && v >= 0 ? v : d);
    this.outbox = new Outbox({
      endpoint: this.endpoint,
      key: options.trackingKey,
      store: this.store,
      storeKey: `${prefix}_queue`,
      tabsKey: `${prefix}_tabs`,
      batchSize: Math.max(1, num(options.batchSize, 20)),
      flushInterval: num(options.flushInterval, 1000),
      maxQueue: Math.max(1, num(options.maxQueue, 1000)),
      maxQueueBytes: Math.max(1, num(options.maxQueueBytes, 500000)),
      maxRetries: num(options.maxRetries, 8),
      retryBaseMs: num(options.retryBaseMs, 1000),
      retryMaxMs: num(options.retryMaxMs, 30000),
      timeoutMs: num(options.timeoutMs, 10000),
      report: (e) => this.report(e),
    });
    if (typeof window !== "undefined" && typeof document !== "undefined") {
      const hide = () => this.outbox.hide();
      document.addEventListener("visibilitychange", () =>
        document.visibilityState === "hidden" ? hide() : this.outbox.show(),
      );
      window.addEventListener("pagehide", hide);
      // another tab of this origin changed the stored queue: take what a closed one left
      window.addEventListener("storage", (e) => e.key === `${prefix}_queue` && this.outbox.adopt());
      window.addEventListener("online", () => void this.outbox.pump());
    }
  }

  /** This browser's anonymous id (kept in first-party storage until `reset`). */
  get anonymousId(): string {
    return this.aid;
  }

  /** The user id given to `identify`, or null. */
  get userId(): string | null {
    return this.uid;
  }

  /** Entries (events, identifies) waiting for their 202. */
  get queued(): number {
    return this.outbox.q.length;
  }

  /** Entries dropped because the offline queue was full. */
  get dropped(): number {
    return this.outbox.dropped;
  }

  /** Queue one event; returns its event_id, or null when the API would refuse it
   * (then onError hears why and nothing is queued). */
  track(type: EventType, props?: EventProps | null): string | null {
    props = props || {}; // null too: refused below for what it lacks, never thrown
    const event: Record<string, unknown> = {
      event_id: uuid(),
      type,
      anonymous_id: this.aid,
      timestamp: new Date().toISOString(),
    };
    if (this.uid) event.user_id = this.uid;
    for (const k of Object.keys(props)) if (props[k] !== undefined) event[k] = props[k];
    event.context = { channel: "web", ...this.o.context, ...props.context };
    let copy: Record<string, unknown> = {};
    let why: string;
    try {
      // a copy: the caller may change its objects later; and what is no JSON fails here
      copy = JSON.parse(JSON.stringify(event));
      why = problem(copy);
    } catch (e) {
      why = `the event is not JSON: ${String(e)}`;
    }
    if (why) {
      this.report(new StreamRecError("invalid_event", why));
      return null;
    }
    this.outbox.push(EVENTS, copy.event_id as string, copy);
    return copy.event_id as string;
  }

  /** Link this browser's anonymous history to a user (after the events queued before it);
   * later events carry the user id, which is kept across page loads until `reset`. */
  identify(userId: string): void {
    if (!isId(userId)) {
      this.report(new StreamRecError("invalid_event", "identify needs a user id of 1 to 256 characters"));
      return;
    }
    if (userId === this.uid) return;
    this.uid = userId;
    this.store.set(this.keys.uid, userId);
    this.outbox.push(IDENTIFY, uuid(), { anonymous_id: this.aid, user_id: userId }, true);
  }

  /** Logout: forget the user id and start a new anonymous visitor. */
  reset(): void {
    this.uid = null;
    this.store.remove(this.keys.uid);
    this.aid = this.newAnonymousId();
  }

  /** Resolves when every entry queued now got its 202. Rejects with a `dropped` (or
   * `queue_full`) StreamRecError naming the entries that were dropped instead, once the
   * others are settled; with `gave_up` when delivery gave up for now (the entries stay
   * queued and stored). */
  flush(): Promise<void> {
    return this.outbox.flush();
  }

  /** Recommendations for this visitor: the user id after `identify`, else the anonymous id. */
  recommendations(options: RecommendationOptions = {}): Promise<RecommendationList> {
    return this.read(`/v1/users/${encodeURIComponent(this.uid || this.aid)}/recommendations`, options);
  }

  /** Items similar to `itemId`, without what this visitor must not see again (purchases). */
  similar(itemId: string, options: SimilarOptions = {}): Promise<RecommendationList> {
    return this.read(`/v1/items/${encodeURIComponent(itemId)}/similar`, {
      user_id: this.uid || this.aid,
      ...options,
    });
  }

  /** Report impressions (≥ 50 % visible for ≥ 1 s) and clicks of the items rendered in
   * `container` (elements with `data-item-id`, else the list's items by position) for
   * `list`; returns the function that stops. Observing a container again (a re-render, a
   * new list) first stops its earlier observation, so a click is never tracked twice. */
  observe(
    container: Element,
    list?: { recommendation_id?: string; items?: { item_id: string }[] } | null,
    options?: ObserveOptions,
  ): () => void {
    const rid = (list && list.recommendation_id) || undefined;
    let seen = this.seen.get(rid || "");
    if (!seen) this.seen.set(rid || "", (seen = new Set()));
    const items = list && Array.isArray(list.items) ? list.items.map((i) => i && i.item_id) : [];
    const earlier = this.watching.get(container);
    if (earlier) earlier();
    const end = observe(this, seen, container, rid, options, items);
    const stop = () => {
      if (this.watching.get(container) === stop) this.watching.delete(container);
      end();
    };
    this.watching.set(container, stop);
    return stop;
  }

  private async read(path: string, params: Record<string, QueryValue>): Promise<RecommendationList> {
    const headers: Record<string, string> = {};
    if (this.o.readKey) headers["X-API-Key"] = this.o.readKey;
    let r;
    try {
      r = await request(this.endpoint + path + query(params), { headers }, this.o.timeoutMs || 10000);
    } catch (e) {
      throw new StreamRecError("network", `no answer from ${this.endpoint}: ${String(e)}`);
    }
    if (r.status !== 200) {
      const body = r.body as { error?: { message?: string } } | null;
      const message = body && body.error && body.error.message;
      throw new StreamRecError("http", message || `HTTP ${r.status}`, r.status, r.body);
    }
    return r.body as RecommendationList;
  }

  private newAnonymousId(): string {
    const id = uuid();
    this.store.set(this.keys.aid, id);
    return id;
  }

  private report(e: StreamRecError): void {
    try {
      if (this.o.onError) this.o.onError(e);
      else console.warn(`[streamrec] ${e.code}: ${e.message}`);
    } catch {
      // a failing error handler must not stop delivery
    }
  }
}
