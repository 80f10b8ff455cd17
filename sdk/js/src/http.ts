import type { QueryValue } from "./types";

/** What the SDK needs of an HTTP answer. */
export interface Reply {
  status: number;
  /** The parsed JSON body, or null. */
  body: unknown;
  /** The server's Retry-After in ms, or null when it sent none. */
  retryAfterMs: number | null;
}

/** Retry-After (delta seconds or an HTTP date) in ms from now; null when absent or garbled. */
export function retryAfterMs(value: string | null, now: number = Date.now()): number | null {
  if (!value || !value.trim()) return null;
  const seconds = Number(value);
  if (isFinite(seconds)) return Math.max(0, seconds * 1000);
  const at = Date.parse(value);
  return isNaN(at) ? null : Math.max(0, at - now);
}

/** `?a=1&b=x,y` from the given parameters (null/undefined ones left out). */
export function query(params: Record<string, QueryValue>): string {
  const parts: string[] = [];
  for (const k of Object.keys(params)) {
    const v = params[k];
    if (v == null) continue;
    parts.push(`${encodeURIComponent(k)}=${encodeURIComponent(Array.isArray(v) ? v.join(",") : String(v))}`);
  }
  return parts.length ? `?${parts.join("&")}` : "";
}

/**
 * One fetch with a timeout; resolves with the status and JSON body whatever the status,
 * rejects only when no answer came (network error, timeout).
 */
export async function request(url: string, init: RequestInit, timeoutMs: number): Promise<Reply> {
  const ctl = typeof AbortController === "function" ? new AbortController() : null;
  const timer = ctl ? setTimeout(() => ctl.abort(), timeoutMs) : undefined;
  try {
    const res = await fetch(url, ctl ? { ...init, signal: ctl.signal } : init);
    let body: unknown = null;
    try {
      body = await res.json();
    } catch {
      // an empty or non-JSON body: the status says enough
    }
    return { status: res.status, body, retryAfterMs: retryAfterMs(res.headers.get("Retry-After")) };
  } finally {
    clearTimeout(timer);
  }
}
