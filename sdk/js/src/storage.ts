/**
 * First-party storage for the visitor's ids and the offline queue.
 *
 * localStorage when the page may use it; otherwise a first-party cookie for the ids (never
 * the queue); always an in-memory copy, so a page with no storage at all
 * (private mode, blocked cookies) still keeps one anonymous id for its lifetime.
 */
export interface Store {
  get(key: string): string | null;
  /** False (or throws) when the value could not be kept durably. */
  set(key: string, value: string): boolean | void;
  remove(key: string): void;
}

const COOKIE_MAX = 1024; // an id fits; the queue never goes into a cookie

function localStore(): Store | null {
  try {
    const s = window.localStorage;
    s.setItem("streamrec_probe", "1");
    s.removeItem("streamrec_probe");
    return {
      get: (k) => s.getItem(k),
      set: (k, v) => {
        try {
          s.setItem(k, v);
          return true;
        } catch {
          // quota exceeded: the in-memory copy holds the value for this page, and the older
          // stored value must not outlive it (a later page would take it as current)
          s.removeItem(k);
          return false;
        }
      },
      remove: (k) => s.removeItem(k),
    };
  } catch {
    return null;
  }
}

function cookieStore(): Store | null {
  if (typeof document === "undefined" || typeof navigator === "undefined" || !navigator.cookieEnabled) {
    return null;
  }
  const write = (k: string, v: string, age: number) => {
    const secure = location.protocol === "https:" ? "; Secure" : "";
    document.cookie = `${k}=${encodeURIComponent(v)}; path=/; max-age=${age}; SameSite=Lax${secure}`;
  };
  return {
    get: (k) => {
      for (const part of document.cookie.split("; ")) {
        const eq = part.indexOf("=");
        if (part.slice(0, eq) === k) return decodeURIComponent(part.slice(eq + 1));
      }
      return null;
    },
    set: (k, v) => v.length <= COOKIE_MAX && (write(k, v, 31536000), true),
    remove: (k) => write(k, "", 0),
  };
}

/** The best store this page allows, backed by memory for what it could not keep (memory
 * answers first; a value stored durably is read from there, where other tabs change it). Of the keys, only `cookieKeys` (the
 * ids) may fall back to a cookie: a cookie goes to the shop's server with every request, so
 * the queue stays in memory where localStorage is blocked. */
export function openStore(cookieKeys: readonly string[] = []): Store {
  const memory = new Map<string, string>();
  const cookies = cookieStore();
  const jar: Store | null = cookies && {
    get: (k) => (cookieKeys.indexOf(k) >= 0 ? cookies.get(k) : null),
    set: (k, v) => cookieKeys.indexOf(k) >= 0 && cookies.set(k, v),
    remove: (k) => cookieKeys.indexOf(k) >= 0 && cookies.remove(k),
  };
  const durable = (typeof window !== "undefined" && localStore()) || jar;
  return {
    get: (k) => {
      if (memory.has(k)) return memory.get(k) as string;
      try {
        return durable ? durable.get(k) : null;
      } catch {
        return null; // storage revoked while the page runs
      }
    },
    set: (k, v) => {
      memory.set(k, v);
      try {
        if (durable && durable.set(k, v) !== false) return memory.delete(k); // true: kept durably
      } catch {
        // see get: memory keeps it
      }
      return false;
    },
    remove: (k) => {
      memory.delete(k);
      try {
        if (durable) durable.remove(k);
      } catch {
        // see get
      }
    },
  };
}
