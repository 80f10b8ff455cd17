/**
 * The outbox: every event and identify waits here, in order, until the API answered 202.
 *
 * - One request in flight at a time, so the API sees events and identifies in the order
 *   they happened: a run of events goes as one `POST /v1/events` batch (at most 500), an
 *   identify alone as `POST /v1/identify`.
 * - A delivery starts when `batchSize` entries wait, `flushInterval` ms after the first one
 *   waits, on `flush()`, and when the browser comes back online.
 * - Network errors, 408, 429 and 5xx are retried with the same event ids (the API drops
 *   replays by id), after the server's Retry-After or an exponential backoff with jitter;
 *   after `maxRetries` the outbox stops until the next trigger, keeping the entries.
 *   413 halves the batch; 422 drops only the events the API named (their timestamps
 *   removed first when only the client's clock was wrong); any other 4xx drops the batch.
 *   Every drop is reported to `onError` and rejects the flush() calls waiting for it (once
 *   their other entries are settled); none loops.
 * - The queue is bounded in entries and in bytes (oldest dropped, counted) and mirrored in
 *   storage, so what the API has not acknowledged survives a reload; a request carries at
 *   most REQUEST_BYTES. When storage refuses the queue (its quota), the stored copy is
 *   removed, so a later page cannot send entries delivered since, and `onError` hears
 *   `not_stored` once (the page keeps delivering from memory). Tabs of one origin share that storage: each
 *   stored entry names the tab that holds it, a save keeps the other tabs' entries, and a
 *   hidden tab lets go of its entries, which the next page load or another visible tab
 *   takes (the `storage` event) and the hidden one then leaves alone: none lost, none
 *   sent by two tabs at once. A visible tab holding stored entries notes the time in the
 *   tabs map (`<prefix>_tabs`) every BEAT ms, a few bytes, not the queue; the entries of a
 *   tab that stopped (crashed, killed, never hidden) are taken by any page once its beat
 *   is STALE ms old.
 * - On page hide the waiting entries go, in order and up to BEACON_BYTES, by `fetch` with
 *   `keepalive` (a CORS-simple request:
 *   the tracking key as `?key=`, a text/plain body), whose answer settles them like any
 *   other; only a browser without keepalive fetch gets `navigator.sendBeacon`, whose answer
 *   nobody sees. Either way the entries stay queued and stored until a real 202 (a re-send
 *   by the next page counts once: the API drops replays by id). While deliveries are
 *   failing, or the browser is offline, nothing is sent on hide.
 */
import { StreamRecError } from "./errors";
import { type Reply, request } from "./http";
import { uuid } from "./ids";
import type { OutboxConfig, Waiter } from "./outbox_config";
import { BEAT, beat, beats, old } from "./tabs";
import type { ErrorCode } from "./types";
import { bytes } from "./validate";

export { BEAT, STALE } from "./tabs";

export const EVENTS = "/v1/events";
export const IDENTIFY = "/v1/identify";
/** The API's largest batch. */
export const MAX_BATCH = 500;
/** Browsers allow 64 KiB of keepalive (or beacon) bodies in flight per page, the page's
 * other scripts' included: what one hiding sends at once stays under this. */
export const BEACON_BYTES = 48000;
/** Largest ordinary request body (the API's default limit is 1 MiB). */
export const REQUEST_BYTES = 500000;

/** One queued request body: an event (id = its event_id) or an identify; in storage, `t`
 * names the tab holding it (none: no page holds it, the next one may take it) and `h` when
 * that tab last stored it (ms since the epoch; not refreshed by the beat). A tab's liveness
 * is its beat in the tabs map, else `h`: a tab whose first beat another tab's write of the
 * map overwrote stays alive, and the SDK before the tabs map refreshed `h` every BEAT. */
export interface Entry {
  id: string;
  path: string;
  body: Record<string, unknown>;
  t?: string;
  h?: number;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export class Outbox {
  /** Entries not yet acknowledged, oldest first. */
  q: Entry[] = [];
  /** Entries dropped because the queue was full. */
  dropped = 0;
  private sending = false;
  /** The last delivery failed and a retry is pending (or was given up). */
  private failing = false;
  private saving = false;
  /** The last save could not store the queue. */
  private unstored = false;
  private limit = MAX_BATCH;
  private timer: ReturnType<typeof setTimeout> | undefined;
  /** The next look at the stored queue (BEAT), pending while it holds entries. */
  private beat: ReturnType<typeof setTimeout> | undefined;
  private waiters: Waiter[] = [];
  /** This page's mark on the entries it stores. */
  private tab = uuid();
  /** The page is hidden: its entries are stored as nobody's. */
  private away = false;
  /** Entries stored as nobody's since the page was last visible. */
  private freed = new Set<string>();

  constructor(private c: OutboxConfig) {
    this.adopt();
  }

  /** Queue one request body; `now` starts a delivery at once instead of after the interval. */
  push(path: string, id: string, body: Record<string, unknown>, now = false): void {
    this.q.push({ id, path, body });
    this.trim();
    this.save();
    if (now || this.q.length >= this.c.batchSize) void this.pump();
    else this.schedule();
  }

  /** Take the stored entries no page holds (a page closed before they were delivered), and
   * those of a tab not seen alive for STALE ms (crashed, killed). */
  adopt(): void {
    if (this.away) return;
    const held = new Set(this.q.map((e) => e.id));
    const s = this.stored();
    const m = beats(this.c);
    const free = s.filter((e) => !held.has(e.id) && (!e.t || (e.t !== this.tab && old(m[e.t] || e.h))));
    if (s.length) this.watch();
    // another page removed entries of this one from storage (a write refused by the quota
    // removes the key): store them again, or a crash now would lose them
    if (s.filter((e) => e.t === this.tab).length < this.q.length) this.save(true);
    if (!free.length) return;
    this.q = free.map((e) => ({ id: e.id, path: e.path, body: e.body })).concat(this.q);
    this.trim();
    this.save(true);
    this.schedule();
  }

  /** The page is visible again: hold its entries (those no other tab took) and take the free ones. */
  show(): void {
    this.away = false;
    this.save(true);
    this.adopt();
  }

  /** Resolves when every entry queued now got its 202; once each is settled, rejects when
   * some were dropped instead (a 4xx, a 422 naming them, a full queue: `eventIds` says
   * which); rejects when delivery gave up for now (those entries stay queued). */
  flush(): Promise<void> {
    if (!this.q.length) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.waiters.push({ ids: this.q.map((e) => e.id), lost: [], resolve, reject });
      void this.pump();
    });
  }

  /** Deliver until the queue is empty or retries are exhausted. */
  async pump(): Promise<void> {
    if (this.sending) return;
    clearTimeout(this.timer);
    this.timer = undefined;
    this.sending = true;
    let attempt = 0;
    try {
      while ((this.save(true), this.q.length)) {
        const wait = await this.send(this.take(this.q, 0, this.limit, REQUEST_BYTES));
        if (wait === true) {
          attempt = 0;
          this.failing = false;
          continue;
        }
        this.failing = true;
        if (++attempt > this.c.maxRetries) {
          const err = this.fail("gave_up", `no delivery after ${attempt} attempts; ${this.q.length} entries kept`, this.q);
          for (const w of this.waiters.splice(0)) w.reject(err);
          return;
        }
        const backoff = Math.min(this.c.retryMaxMs, this.c.retryBaseMs * 2 ** (attempt - 1));
        // equal jitter on the backoff; a little on Retry-After so clients do not return together;
        // capped below setTimeout's limit (2^31 ms), past which it would fire at once
        await sleep(Math.min(2e9, wait === null ? backoff * (0.5 + Math.random() / 2) : wait * (1 + Math.random() / 10)));
      }
    } finally {
      this.sending = false;
    }
  }

  /** Page hide: send the waiting entries, in order, in requests that outlive the page, as
   * many as the browser's keepalive limit takes (BEACON_BYTES); they stay queued (and
   * stored) until the API answers 202. A page that lives on hidden sends the rest once
   * those are settled; a page that is gone leaves them to the next one. */
  hide(): void {
    // once per hiding: a navigation fires both visibilitychange and pagehide
    if (this.away) return;
    this.away = true;
    this.save(true);
    if (this.failing || (typeof navigator !== "undefined" && navigator.onLine === false)) return;
    const sent = [];
    let i = 0;
    for (let room = BEACON_BYTES; i < this.q.length; ) {
      const batch = this.take(this.q, i, MAX_BATCH, room - 16);
      // past the limit the browser refuses the request: the rest waits, in order
      if ((room -= bytes(batch.map((e) => e.body)) + 16) < 0) break;
      i += batch.length;
      sent.push(this.send(batch, true));
    }
    if (i < this.q.length) void Promise.all(sent).then(() => this.schedule());
  }

  /** The run of entries from `from` that goes in one request. */
  private take(q: Entry[], from: number, most: number, max: number): Entry[] {
    const first = q[from];
    if (first.path !== EVENTS) return [first];
    const out = [first];
    let size = bytes(first.body);
    for (let i = from + 1; i < q.length && out.length < most && q[i].path === EVENTS; i++) {
      size += bytes(q[i].body) + 1;
      if (size > max) break;
      out.push(q[i]);
    }
    return out;
  }

  private payload(batch: Entry[]): string {
    return JSON.stringify(batch[0].path === EVENTS ? { events: batch.map((e) => e.body) } : batch[0].body);
  }

  /** One request: true when the batch is settled (acknowledged or dropped), else the
   * server's Retry-After in ms, or null for the default backoff. `away` (page hide): a
   * keepalive request without preflight (the key as `?key=`, a text/plain body), or a
   * beacon where keepalive fetch is missing (no answer: its entries stay queued). */
  private async send(batch: Entry[], away?: boolean): Promise<true | number | null> {
    const key = this.c.key;
    const url = this.c.endpoint + batch[0].path + (away && key ? `?key=${encodeURIComponent(key)}` : "");
    const body = this.payload(batch);
    const headers: Record<string, string> = { "Content-Type": away ? "text/plain;charset=UTF-8" : "application/json" };
    if (key && !away) headers["X-API-Key"] = key;
    let r: Reply;
    try {
      if (away && !("keepalive" in Request.prototype)) {
        navigator.sendBeacon(url, body);
        return null;
      }
      r = await request(url, { method: "POST", headers, body, keepalive: away }, this.c.timeoutMs);
    } catch {
      return null;
    }
    const s = r.status;
    if (s >= 200 && s < 300) {
      this.remove(batch);
      this.limit = Math.min(MAX_BATCH, this.limit * 2);
    } else if (s === 408 || s === 429 || s >= 500) return r.retryAfterMs;
    else if (s === 422 && this.repair(batch, r.body)) {
      // the named events were fixed or dropped; the rest goes again
    } else if ((s === 413 || s === 422) && batch.length > 1) {
      // too large, or a batch limit below 500 (a 422 naming no event): halve the batches
      this.limit = Math.ceil(batch.length / 2);
    } else {
      this.fail("dropped", `the API refused ${batch.length} entries with ${s}`, batch, r);
      this.remove(batch);
    }
    return true;
  }

  /** After a 422 naming events of the batch (`detail: [{index, loc}]`): drop those events,
   * or only their timestamp when that was the complaint (`loc: ["timestamp"]`: a client
   * clock more than the API's STREAMREC_MAX_FUTURE_SKEW_S, 300 s by default, ahead; the API
   * then stamps its own time). False when the answer named no event of this batch. */
  private repair(batch: Entry[], body: unknown): boolean {
    const detail = body && (body as { detail?: unknown }).detail;
    if (batch[0].path !== EVENTS || !Array.isArray(detail)) return false;
    const bad: Entry[] = [];
    let changed = false;
    for (const d of detail) {
      const e = d && typeof d.index === "number" ? batch[d.index] : undefined;
      if (!e) continue;
      const loc = d.loc;
      if (Array.isArray(loc) && loc.length === 1 && loc[0] === "timestamp" && e.body.timestamp != null) {
        delete e.body.timestamp;
        changed = true;
      } else if (bad.indexOf(e) < 0) bad.push(e);
    }
    if (bad.length) {
      this.fail("dropped", `the API refused ${bad.length} events (422)`, bad, { status: 422, body });
      this.remove(bad);
    } else if (changed) this.save();
    return changed || bad.length > 0;
  }

  private remove(batch: Entry[]): void {
    this.q = this.q.filter((e) => batch.indexOf(e) < 0);
    this.save();
    this.settle();
  }

  /** Settle the flush() calls none of whose entries is still queued. */
  private settle(): void {
    const left = new Set(this.q.map((e) => e.id));
    this.waiters = this.waiters.filter((w) => {
      if (w.ids.some((id) => left.has(id))) return true;
      const e = w.err;
      if (e) w.reject(new StreamRecError(e.code, `${w.lost.length} entries not delivered: ${e.message}`, e.status, e.body, w.lost));
      else w.resolve();
      return false;
    });
  }

  private schedule(): void {
    if (this.timer === undefined) {
      this.timer = setTimeout(() => {
        this.timer = undefined;
        void this.pump();
      }, this.c.flushInterval);
    }
  }

  /** Mirror the queue in storage: at the end of the current task (a burst of track calls
   * writes once), or at once on page hide. */
  private save(now = false): void {
    if (!now) {
      if (!this.saving) Promise.resolve().then(() => this.save(true));
      this.saving = true;
      return;
    }
    this.saving = false;
    const s = this.stored();
    const m = beats(this.c);
    const owner = new Map(s.map((e) => [e.id, e]));
    const freed = this.freed;
    // what another tab took (after this page let it go, or took this page for gone), or took
    // and delivered after this page let it go, is not this page's
    this.q = this.q.filter((e) => {
      const o = owner.get(e.id);
      return o ? !o.t || o.t === this.tab || old(m[o.t] || o.h) : !freed.has(e.id);
    });
    const held = new Set(this.q.map((e) => e.id));
    const t = this.away ? undefined : this.tab;
    // other tabs' entries stay; so do free ones, unless this page freed and then settled them
    const all = s
      .filter((e) => !held.has(e.id) && (e.t ? e.t !== this.tab : !freed.has(e.id)))
      .concat(this.q.map((e) => ({ ...e, t, h: t ? Date.now() : undefined })));
    if (this.q.length || this.away) beat(this.c, this.tab, this.away);
    if (t && all.length) this.watch();
    if (this.away) held.forEach((id) => freed.add(id));
    else freed.clear();
    const stored = all.length ? this.c.store.set(this.c.storeKey, JSON.stringify(all)) : this.c.store.remove(this.c.storeKey);
    if (stored === false && !this.unstored) {
      this.c.report(new StreamRecError("not_stored", "storage refused the queue: a reload loses it"));
    }
    this.unstored = stored === false;
  }

  /** While the store holds entries and the page is visible: every BEAT ms, note in the
   * tabs map that this page (holding entries) is alive, and take the entries of a tab gone. */
  private watch(): void {
    if (this.beat === undefined) {
      this.beat = setTimeout(() => {
        this.beat = undefined;
        if (this.away) return;
        if (this.q.length) beat(this.c, this.tab);
        this.adopt();
      }, BEAT);
    }
  }

  /** The stored entries of every tab (a garbled store reads as empty). */
  private stored(): Entry[] {
    try {
      const saved: unknown = JSON.parse(this.c.store.get(this.c.storeKey) || "[]");
      if (Array.isArray(saved)) {
        return saved.filter((e) => e && typeof e.id === "string" && (e.path === EVENTS || e.path === IDENTIFY) && e.body);
      }
    } catch {
      // a garbled stored queue is not worth failing the page for
    }
    return [];
  }

  /** Keep at most maxQueue entries of at most maxQueueBytes together: the oldest go,
   * counted and reported. */
  private trim(): void {
    let keep = 0;
    for (let i = this.q.length, size = 0; i-- && keep < this.c.maxQueue && (size += bytes(this.q[i].body)) <= this.c.maxQueueBytes; ) keep++;
    const over = this.q.length - keep;
    if (over > 0) {
      const gone = this.q.splice(0, over);
      this.dropped += over;
      this.fail("queue_full", `offline queue full: dropped the ${over} oldest`, gone);
      this.settle();
    }
  }

  private fail(code: ErrorCode, message: string, entries: Entry[], r?: Pick<Reply, "status" | "body">): StreamRecError {
    const ids = entries.map((e) => e.id);
    const err = new StreamRecError(code, message, r && r.status, r && r.body, ids);
    this.c.report(err);
    if (code !== "gave_up") {
      for (const w of this.waiters) {
        const mine = ids.filter((id) => w.ids.indexOf(id) >= 0);
        if (mine.length) {
          w.lost.push(...mine);
          w.err = w.err || err;
        }
      }
    }
    return err;
  }
}
