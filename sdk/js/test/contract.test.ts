// Guards that the SDK's copy of the API's event rules equals the exported JSON Schema
// (schemas/json), that the package's version is one, and the init entry point.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { init, StreamRecClient, version } from "../src/index";
import { EVENT_TYPES, MAX_CONTEXT_BYTES, MAX_CONTEXT_DEPTH, MAX_CONTEXT_FIELD, MAX_ID, MAX_ITEM_IDS, MAX_PRICE, MAX_QUANTITY, isId } from "../src/validate";
import { MAX_BATCH } from "../src/outbox";
import { schema } from "./helpers";

const some = (prop: any) => prop.anyOf.find((s: any) => s.type !== "null");

describe("the SDK's event rules", () => {
  const event = schema("tracking-event");
  it("are the API's schema", () => {
    expect(event.properties.type.enum).toEqual(EVENT_TYPES);
    for (const k of ["event_id", "user_id", "anonymous_id", "item_id"]) {
      expect(some(event.properties[k])).toMatchObject({ minLength: 1, maxLength: MAX_ID });
    }
    expect(some(event.properties.item_ids)).toMatchObject({ maxItems: MAX_ITEM_IDS, items: { maxLength: MAX_ID } });
    expect(some(event.properties.recommendation_id).maxLength).toBe(MAX_ID);
    expect(some(event.properties.quantity)).toMatchObject({ minimum: 1, maximum: MAX_QUANTITY });
    expect(some(event.properties.price)).toMatchObject({ minimum: 0, maximum: MAX_PRICE });
    for (const k of ["page", "channel"]) {
      expect(some(event.$defs.EventContext.properties[k]).maxLength).toBe(MAX_CONTEXT_FIELD);
    }
    expect(schema("event-batch").properties.events.maxItems).toBe(MAX_BATCH);
  });
  it("bound a context as core/limits.py does", () => {
    const limits = readFileSync(join(__dirname, "..", "..", "..", "core", "limits.py"), "utf8");
    expect(limits).toMatch(new RegExp(`^MAX_CONTEXT_BYTES = ${MAX_CONTEXT_BYTES}$`, "m"));
    expect(limits).toMatch(new RegExp(`^MAX_CONTEXT_DEPTH = ${MAX_CONTEXT_DEPTH}$`, "m"));
  });
  it("count characters as the API does: code points, not UTF-16 units", () => {
    for (const wide of ["x", "é", "日", "😀"]) {
      expect(isId(wide.repeat(MAX_ID))).toBe(true);
      expect(isId(wide.repeat(MAX_ID + 1))).toBe(false);
    }
    expect(isId("")).toBe(false);
  });
  it("refuse ids the API refuses: control characters, lone surrogates", () => {
    for (const bad of ["u42\n", "a\tb", "\0", "x\x7f", "x\x85", "\ud800", "a\udc00b", "\udc00\ud800"]) {
      expect(isId(bad)).toBe(false);
    }
    for (const good of ["u42", "user with spaces", "é日", "😀", "\u00a0x"]) expect(isId(good)).toBe(true);
  });
});

describe("the package", () => {
  it("has the version of package.json", () => {
    const pkg = JSON.parse(readFileSync(join(__dirname, "..", "package.json"), "utf8"));
    expect(version).toBe(pkg.version);
  });

  it("init returns one instance per storage prefix", () => {
    const a = init({ endpoint: "https://api.test/", storagePrefix: "one" });
    expect(a).toBeInstanceOf(StreamRecClient);
    expect(a.endpoint).toBe("https://api.test");
    expect(init({ endpoint: "https://api.test", storagePrefix: "one" })).toBe(a);
    expect(init({ endpoint: "https://api.test", storagePrefix: "two" })).not.toBe(a);
  });

  it("init refuses options without an endpoint", () => {
    expect(() => init({} as any)).toThrow(/endpoint/);
  });
});
