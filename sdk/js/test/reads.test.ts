// Guards the recommendation reads: the visitor's id in the path (user id after identify),
// the read key header, parameters passed through, and clear errors.
import { beforeEach, describe, expect, it } from "vitest";
import { setup } from "./helpers";

const LIST = { recommendation_id: "r-9", source: "personalized", model_version: "m1", items: [{ item_id: "sku-2", score: 0.8, reason: "personalized" }] };

beforeEach(() => localStorage.clear());

describe("recommendations", () => {
  it("asks for this visitor's list with the read key", async () => {
    const { sr, api } = setup();
    api.handler = () => ({ status: 200, body: LIST });
    const list = await sr.recommendations({ n: 4, context: "home", exclude: ["a", "b"], category: "shoes", item_id: undefined });
    expect(list).toEqual(LIST);
    const [call] = api.calls;
    expect(call.method).toBe("GET");
    expect(call.path).toBe(`/v1/users/${sr.anonymousId}/recommendations`);
    expect(Object.fromEntries(call.query)).toEqual({ n: "4", context: "home", exclude: "a,b", category: "shoes" });
    expect(call.headers["x-api-key"]).toBe("rk");
  });

  it("asks for the user's list after identify, the id escaped", async () => {
    const { sr, api } = setup();
    sr.identify("user/42 ü");
    await sr.recommendations();
    const read = api.calls.find((c) => c.method === "GET")!;
    expect(read.url).toBe(`${sr.endpoint}/v1/users/user%2F42%20%C3%BC/recommendations`);
  });

  it("sends no key header when no read key is configured", async () => {
    const { sr, api } = setup({ readKey: undefined });
    await sr.recommendations({ n: 1 });
    expect(api.calls[0].headers["x-api-key"]).toBeUndefined();
  });

  it("rejects with the API's error on a non-200 answer", async () => {
    const { sr, api } = setup();
    api.handler = () => ({ status: 422, body: { error: { code: "validation_error", message: "n must be 1..100" } } });
    await expect(sr.recommendations({ n: 0 })).rejects.toMatchObject({
      name: "StreamRecError", code: "http", status: 422, message: "n must be 1..100",
    });
  });

  it("rejects with a network error when no answer comes", async () => {
    const { sr, api } = setup();
    api.handler = () => "network";
    await expect(sr.recommendations()).rejects.toMatchObject({ code: "network" });
  });
});

describe("similar", () => {
  it("asks for items similar to one, for this visitor", async () => {
    const { sr, api } = setup();
    await sr.similar("sku 1", { n: 5 });
    const [call] = api.calls;
    expect(call.path).toBe("/v1/items/sku%201/similar");
    expect(Object.fromEntries(call.query)).toEqual({ user_id: sr.anonymousId, n: "5" });
    expect(call.headers["x-api-key"]).toBe("rk");
  });

  it("leaves the visitor out when user_id is null", async () => {
    const { sr, api } = setup();
    await sr.similar("sku-1", { user_id: null });
    expect(api.calls[0].query.has("user_id")).toBe(false);
  });
});
