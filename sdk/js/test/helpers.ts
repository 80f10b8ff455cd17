// A scripted fake of the streamrec API behind `fetch` and `navigator.sendBeacon`: it
// records every request, checks every event and identify against the API's exported JSON
// Schemas (schemas/json), and answers 202 unless a test scripts another answer.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import Ajv2020 from "ajv/dist/2020.js";
import { afterEach, beforeEach, vi } from "vitest";
import { StreamRecClient, type StreamRecError, type StreamRecOptions } from "../src/index";

export const SCHEMAS = join(__dirname, "..", "..", "..", "schemas", "json");
export const schema = (name: string) => JSON.parse(readFileSync(join(SCHEMAS, `${name}.schema.json`), "utf8"));

const ajv = new Ajv2020({ strict: false, validateFormats: false, allErrors: true });
const validEvent = ajv.compile(schema("tracking-event"));
const validIdentify = ajv.compile(schema("identify-request"));
const ISO = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$/;

export interface Call {
  url: string;
  path: string;
  query: URLSearchParams;
  method: string;
  headers: Record<string, string>;
  body: any;
  keepalive: boolean;
  beacon: boolean;
}

export interface Answer {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

/** A handler returns the answer, "network" for a failed fetch, or undefined for 202. */
export type Handler = (call: Call) => Answer | "network" | undefined | Promise<Answer | "network" | undefined>;

let counter = 0;

export function fakeApi() {
  const calls: Call[] = [];
  const schemaErrors: string[] = [];
  const api = {
    calls,
    schemaErrors,
    handler: undefined as Handler | undefined,
    beaconAccepts: true,
    /** Record only requests to this endpoint (instances of earlier tests stay alive). */
    only: "",
    /** Event ids of the events requests (fetch and beacon) in order. */
    eventIds: () => calls.filter((c) => c.path === "/v1/events").flatMap((c) => c.body.events.map((e: any) => e.event_id)),
  };
  const record = (url: string, init: RequestInit, beacon: boolean): Call => {
    const u = new URL(url);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries((init.headers as Record<string, string>) || {})) headers[k.toLowerCase()] = v;
    const call: Call = {
      url,
      path: u.pathname,
      query: u.searchParams,
      method: init.method || "GET",
      headers,
      body: typeof init.body === "string" ? JSON.parse(init.body) : undefined,
      keepalive: !!init.keepalive,
      beacon,
    };
    if (!url.startsWith(api.only)) return call;
    calls.push(call);
    if (call.path === "/v1/events") {
      for (const e of call.body.events) {
        if (!validEvent(e)) schemaErrors.push(ajv.errorsText(validEvent.errors));
        if (!ISO.test(e.timestamp ?? "2026-01-01T00:00:00Z")) schemaErrors.push(`timestamp ${e.timestamp}`);
      }
    }
    if (call.path === "/v1/identify" && !validIdentify(call.body)) schemaErrors.push(ajv.errorsText(validIdentify.errors));
    return call;
  };
  const fetchFn = vi.fn(async (url: string, init: RequestInit = {}) => {
    const call = record(url, init, false);
    const a = (api.handler && (await api.handler(call))) || accepted(call);
    if (a === "network") throw new TypeError("Failed to fetch");
    const headers = Object.fromEntries(Object.entries(a.headers || {}).map(([k, v]) => [k.toLowerCase(), v]));
    return {
      status: a.status,
      ok: a.status >= 200 && a.status < 300,
      headers: { get: (name: string) => headers[name.toLowerCase()] ?? null },
      json: async () => {
        if (a.body === undefined) throw new SyntaxError("no body");
        return a.body;
      },
    };
  });
  const beaconFn = vi.fn((url: string, body: string) => {
    record(url, { method: "POST", body }, true);
    return api.beaconAccepts;
  });
  vi.stubGlobal("fetch", fetchFn);
  // a browser with keepalive fetch (happy-dom's Request has none); see noKeepalive
  Object.defineProperty(Request.prototype, "keepalive", { value: false, configurable: true, writable: true });
  Object.defineProperty(navigator, "sendBeacon", { value: beaconFn, configurable: true, writable: true });
  return api;
}

function accepted(call: Call): Answer {
  if (call.path === "/v1/events") {
    return { status: 202, body: { accepted: call.body.events.length, event_ids: call.body.events.map((e: any) => e.event_id) } };
  }
  if (call.path === "/v1/identify") return { status: 202, body: { accepted: 1, ids: ["x"] } };
  return { status: 200, body: { recommendation_id: "r-1", source: "popular", items: [] } };
}

/** A browser without keepalive fetch (older Firefox): page hide falls back to sendBeacon. */
export const noKeepalive = () => delete (Request.prototype as { keepalive?: boolean }).keepalive;

/** A client on its own endpoint and storage keys (earlier tests' instances stay alive). */
export function client(options: Partial<StreamRecOptions> = {}) {
  counter += 1;
  const errors: StreamRecError[] = [];
  const sr = new StreamRecClient({
    endpoint: `https://api${counter}.test`,
    trackingKey: "tk",
    readKey: "rk",
    storagePrefix: `t${counter}`,
    onError: (e) => errors.push(e),
    ...options,
  });
  return { sr, errors, prefix: options.storagePrefix || `t${counter}`, endpoint: sr.endpoint };
}

/** A fake API and a fresh client whose requests it records. */
export function setup(options: Partial<StreamRecOptions> = {}) {
  const api = fakeApi();
  const c = client(options);
  api.only = c.endpoint;
  return { ...c, api };
}

/** A version 4 UUID, as the SDK makes anonymous and event ids. */
export const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

/** Every test of the calling file on fake timers at one fixed time, with an empty
 * localStorage; real timers and mocks restored after each (and, with `visible`, the page
 * made visible again, for files whose tests hide it). */
export function fakeClockPerTest({ visible = false } = {}) {
  beforeEach(() => {
    vi.useFakeTimers();
    vi.setSystemTime(new Date("2026-11-23T09:15:00Z"));
    localStorage.clear();
  });
  afterEach(() => {
    if (visible) setVisibility("visible");
    vi.useRealTimers();
    vi.restoreAllMocks();
  });
}

/** Let timers up to `ms` run, and the promises they settle. */
export const advance = (ms: number) => vi.advanceTimersByTimeAsync(ms);

export function setVisibility(state: "hidden" | "visible") {
  Object.defineProperty(document, "visibilityState", { value: state, configurable: true });
  Object.defineProperty(document, "hidden", { value: state === "hidden", configurable: true });
  document.dispatchEvent(new Event("visibilitychange"));
}
