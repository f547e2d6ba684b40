// The webhook ingress over Deno KV: every bad request gets its status and
// stores nothing; a repeated update_id is stored once; a storage failure
// answers 500 (so Telegram retries); 200 comes only after the commit.

import assert from "node:assert/strict";
import type { Context } from "grammy";
import type { Update } from "grammy/types";
import { kvQueue, webhookToKv } from "../kv_queue.ts";
import { type QueueEngine, webhookTo } from "../queue.ts";
import type { Report } from "../_report.ts";
import { flush, gate, until } from "./_helpers.ts";
import { entries, flakyKv, message, statusOf, webhookRequest } from "./_kv_queue.ts";

const SECRET = "s3cret_token-1";

Deno.test("webhookToKv() answers each bad request with its status and stores nothing", async (t) => {
  using kv = await Deno.openKv(":memory:");
  const reports: Report[] = [];
  const handler = webhookToKv(kv, {
    secretToken: SECRET,
    maxBodyBytes: 2_000,
    reporter: (report) => reports.push(report),
  });
  const good = JSON.stringify(message(1, 5));
  const cases: [string, Request, number][] = [
    ["GET", webhookRequest("", { method: "GET", secret: SECRET }), 405],
    ["PUT", webhookRequest(good, { method: "PUT", secret: SECRET }), 405],
    ["no secret", webhookRequest(good), 401],
    ["wrong secret", webhookRequest(good, { secret: "s3cret_token-2" }), 401],
    ["secret prefix", webhookRequest(good, { secret: SECRET.slice(0, -1) }), 401],
    ["secret longer", webhookRequest(good, { secret: SECRET + "x" }), 401],
    ["body too large", webhookRequest("x".repeat(2_001), { secret: SECRET }), 413],
    [
      "body too large without a length",
      new Request("http://127.0.0.1/", {
        method: "POST",
        headers: { "X-Telegram-Bot-Api-Secret-Token": SECRET },
        body: ReadableStream.from([new TextEncoder().encode("{".repeat(3_000))]),
      }),
      413,
    ],
    ["not JSON", webhookRequest("{update_id: 1}", { secret: SECRET }), 400],
    ["not UTF-8", webhookRequest(new Uint8Array([0x7b, 0xff, 0x7d]), { secret: SECRET }), 400],
    ["an array", webhookRequest("[1]", { secret: SECRET }), 400],
    ["null", webhookRequest("null", { secret: SECRET }), 400],
    ["a number", webhookRequest("12", { secret: SECRET }), 400],
    ["no update_id", webhookRequest('{"message":{}}', { secret: SECRET }), 400],
    ["negative update_id", webhookRequest('{"update_id":-1}', { secret: SECRET }), 400],
    ["fractional update_id", webhookRequest('{"update_id":1.5}', { secret: SECRET }), 400],
    ["string update_id", webhookRequest('{"update_id":"1"}', { secret: SECRET }), 400],
    ["huge update_id", webhookRequest('{"update_id":1e300}', { secret: SECRET }), 400],
    ["empty body", webhookRequest("", { secret: SECRET }), 400],
  ];
  for (const [name, request, status] of cases) {
    await t.step(`${name} → ${status}`, async () => {
      assert.equal(await statusOf(handler, request), status);
      assert.deepEqual(await entries(kv, ["grammyx-queue"], true), []);
    });
  }
  assert.deepEqual(reports, []);
  assert.equal(await statusOf(handler, webhookRequest(good, { secret: SECRET })), 200);
  assert.deepEqual((await entries(kv, ["grammyx-queue"], true)).map((entry) => entry.key), [
    ["grammyx-queue", "inbox", "k:5", 1],
    ["grammyx-queue", "lane", "k:5"],
    ["grammyx-queue", "seen", 1],
  ]);
});

Deno.test("a repeated update_id is stored once and answered 200 each time", async () => {
  using kv = await Deno.openKv(":memory:");
  const handler = webhookToKv(kv);
  const queue = kvQueue(kv);
  for (let i = 0; i < 3; i++) {
    assert.equal(await statusOf(handler, webhookRequest(JSON.stringify(message(7, 1)))), 200);
  }
  // A repeat in the same batch, and a batch repeating a stored one.
  await queue.store([message(8, 1), message(8, 1), message(7, 1)]);
  const inbox = (await entries(kv)).filter((entry) => entry.key[1] === "inbox");
  assert.deepEqual(inbox.map((entry) => entry.key), [
    ["grammyx-queue", "inbox", "k:1", 7],
    ["grammyx-queue", "inbox", "k:1", 8],
  ]);
  const seen = (await entries(kv, ["grammyx-queue", "seen"], true)).map((entry) => entry.key[2]);
  assert.deepEqual(seen, [7, 8]);
});

Deno.test("a storage failure answers 500 and a retry after it stores the update once", async (t) => {
  await t.step("an atomic commit that throws", async () => {
    using real = await Deno.openKv(":memory:");
    const flaky = flakyKv(real);
    const reports: Report[] = [];
    const handler = webhookToKv(flaky.kv, { reporter: (report) => reports.push(report) });
    flaky.failing = true;
    const body = JSON.stringify(message(3, 9));
    assert.equal(await statusOf(handler, webhookRequest(body)), 500);
    assert.equal(flaky.failures, 1);
    assert.deepEqual(await entries(real, ["grammyx-queue"], true), []);
    assert.equal(reports.length, 1);
    assert.equal(reports[0]!.source, "webhook");
    assert.match(reports[0]!.message, /Could not store update 3 \(answered 500/);
    flaky.failing = false;
    assert.equal(await statusOf(handler, webhookRequest(body)), 200);
    assert.equal((await entries(real)).filter((entry) => entry.key[1] === "inbox").length, 1);
  });
  await t.step("a closed KV", async () => {
    const kv = await Deno.openKv(":memory:");
    const handler = webhookToKv(kv, { reporter: () => {} });
    kv.close();
    assert.equal(await statusOf(handler, webhookRequest(JSON.stringify(message(1, 1)))), 500);
  });
});

Deno.test("an update too large for one KV value answers 413 and stores nothing", async () => {
  using kv = await Deno.openKv(":memory:");
  const reports: Report[] = [];
  const handler = webhookToKv(kv, { reporter: (report) => reports.push(report) });
  const update = message(4, 1, "x".repeat(40_000));
  assert.equal(await statusOf(handler, webhookRequest(JSON.stringify(update))), 413);
  assert.deepEqual(await entries(kv, ["grammyx-queue"], true), []);
  assert.match(reports[0]!.message, /does not fit in one Deno KV value/);
});

Deno.test("updates go to their chat's lane, else the sender's, else their own", async () => {
  using kv = await Deno.openKv(":memory:");
  const queue = kvQueue(kv);
  await queue.store([
    message(1, 10),
    { update_id: 2, callback_query: { id: "q", from: { id: 20 }, message: { chat: { id: 30 } } } },
    { update_id: 3, inline_query: { id: "i", from: { id: 40 }, query: "" } },
    { update_id: 4, poll: { id: "p" } },
    { update_id: 5, poll_answer: { poll_id: "p", user: { id: 50 }, option_ids: [0] } },
    { update_id: 6, poll_answer: { poll_id: "p", voter_chat: { id: -60 }, option_ids: [0] } },
  ] as never);
  assert.deepEqual(
    (await queue.lanes(10)).sort(),
    ["k:-60", "k:10", "k:30", "k:40", "k:50", "u:4"],
  );
  // sequentialize()'s key functions serve as they are: a Context around the update.
  const custom = kvQueue(kv, { prefix: ["custom"], key: (ctx) => ctx.update.update_id % 2 });
  await custom.store([message(1, 10), message(2, 10), message(3, 10)]);
  assert.deepEqual((await custom.lanes(10)).sort(), ["k:1", "u:2"]); // 0 is no key
  const byUser = kvQueue(kv, { prefix: ["by-user"], key: (ctx: Context) => ctx.from?.id });
  await byUser.store([
    { update_id: 2, callback_query: { id: "q", from: { id: 20 }, message: { chat: { id: 30 } } } },
  ] as never);
  assert.deepEqual(await byUser.lanes(10), ["k:20"]);
  const several = kvQueue(kv, { prefix: ["several"], key: (ctx) => [null, ctx.chat?.id, "all"] });
  await several.store([message(1, 10), message(2, 11)]);
  assert.deepEqual((await several.lanes(10)).sort(), ["k:10", "k:11"]); // the first key
});

Deno.test("a key function returning an object is a clear error, not a silent lane", async () => {
  using kv = await Deno.openKv(":memory:");
  const queue = kvQueue(kv, { key: (ctx) => ctx.chat as never });
  await assert.rejects(queue.store([message(1, 1)]), /return a string, a number or a bigint/);
  // At the ingress: 500, so that Telegram delivers it again, reported, and nothing stored.
  const reports: Report[] = [];
  const handler = webhookToKv(kv, {
    prefix: ["throwing"],
    key: () => {
      throw new Error("no session here");
    },
    reporter: (report) => reports.push(report),
  });
  assert.equal(await statusOf(handler, webhookRequest(JSON.stringify(message(2, 1)))), 500);
  assert.deepEqual(await entries(kv, ["throwing"], true), []);
  assert.match(reports[0]!.message, /no session here/);
});

Deno.test("bad options are rejected with errors naming them", async () => {
  using kv = await Deno.openKv(":memory:");
  const cases: [() => unknown, RegExp][] = [
    [() => webhookToKv({} as Deno.Kv), /'kv' must be a Deno.Kv/],
    [() => webhookToKv(kv, { secretToken: "" }), /'secretToken' must be 1-256 characters/],
    [() => webhookToKv(kv, { secretToken: "a b" }), /'secretToken' must be 1-256 characters/],
    [() => webhookToKv(kv, { secretToken: 5 as never }), /'secretToken' must be a string/],
    [() => webhookToKv(kv, { maxBodyBytes: 0 }), /'maxBodyBytes' must be a positive integer/],
    [() => webhookToKv(kv, { maxBodyBytes: Infinity }), /'maxBodyBytes'.*Infinity/],
    [() => webhookToKv(kv, { maxBodyBytes: NaN }), /'maxBodyBytes'.*NaN/],
    [() => webhookToKv(kv, { prefix: [] }), /'prefix' must hold at least one key part/],
    [() => webhookToKv(kv, { prefix: "q" as never }), /'prefix' must be an array of KV key parts/],
    [() => webhookToKv(kv, { key: "chat" as never }), /'key' must be a function/],
    [() => webhookToKv(kv, { reporter: 1 as never }), /'reporter' must be a function/],
    [
      () => webhookToKv(kv, { secretTokn: "x" } as never),
      /'secretTokn' is not an option: did you mean 'secretToken'/,
    ],
    [() => webhookTo({} as never), /'engine' must be a queue engine/],
    [
      () => kvQueue(kv, { prefx: ["a"] } as never),
      /'prefx' is not an option: did you mean 'prefix'/,
    ],
  ];
  for (const [create, message] of cases) assert.throws(create, message);
});

Deno.test("a key function written for the update, not for a Context, does not compile", () => {
  // Type checking (`deno test` checks first) fails if either line compiles: at
  // run time such a function would get a Context and key nothing.
  const never = (kv: Deno.Kv) => {
    // @ts-expect-error: the key function gets a Context around the update
    kvQueue(kv, { key: (update: Update) => update.callback_query?.from.id });
    // @ts-expect-error: the same for the ingress
    webhookToKv(kv, { key: (update: Update) => update.message?.chat.id });
  };
  assert.equal(typeof never, "function");
});

/** kvQueue(kv) whose store calls are noted, each held until `held` opens. */
function heldQueue(kv: Deno.Kv) {
  const queue = kvQueue(kv);
  const calls: number[][] = [];
  const held = gate();
  const engine = Object.create(queue, {
    store: {
      value: async (updates: Update[]) => {
        calls.push(updates.map((update) => update.update_id));
        await held.promise;
        return queue.store(updates);
      },
    },
  }) as QueueEngine<Update>;
  return { engine, calls, held };
}

/** The update ids in the queue's inboxes. */
async function inboxIds(kv: Deno.Kv): Promise<number[]> {
  return (await entries(kv)).filter((entry) => entry.key[1] === "inbox")
    .map((entry) => entry.key[3] as number).toSorted((a, b) => a - b);
}

Deno.test("4 requests are stored at once, each alone; those that come meanwhile go together in one call", async () => {
  using kv = await Deno.openKv(":memory:");
  const { engine, calls, held } = heldQueue(kv);
  const handler = webhookTo(engine);
  const post = (id: number) => statusOf(handler, webhookRequest(JSON.stringify(message(id, id))));
  const first = [post(1), post(2), post(3), post(4)];
  await until(() => calls.length === 4);
  const rest = [post(5), post(6), post(5)]; // the second 5: Telegram repeating a slow request
  await flush();
  assert.deepEqual(calls, [[1], [2], [3], [4]], "they wait for a store to end");
  held.open();
  assert.deepEqual(await Promise.all([...first, ...rest]), [200, 200, 200, 200, 200, 200, 200]);
  assert.deepEqual(calls, [[1], [2], [3], [4], [5, 6, 5]]);
  assert.deepEqual(await inboxIds(kv), [1, 2, 3, 4, 5, 6]);
});

Deno.test("one update too large in a group gets 413; the others of its group are stored", async () => {
  using kv = await Deno.openKv(":memory:");
  const { engine, calls, held } = heldQueue(kv);
  const handler = webhookTo(engine, { reporter: () => {} });
  const post = (update: Update) => statusOf(handler, webhookRequest(JSON.stringify(update)));
  const first = [1, 2, 3, 4].map((id) => post(message(id, id)));
  await until(() => calls.length === 4);
  const rest = [post(message(5, 5)), post(message(6, 6, "x".repeat(70_000))), post(message(7, 7))];
  await flush(); // their bodies are read: they wait for a store to end
  held.open();
  assert.deepEqual(await Promise.all([...first, ...rest]), [200, 200, 200, 200, 200, 413, 200]);
  assert.deepEqual(calls.slice(4), [[5, 6, 7], [5, 6], [5], [6], [7]], "split in halves");
  assert.deepEqual(await inboxIds(kv), [1, 2, 3, 4, 5, 7]);
});

Deno.test("a group that fails for the store, not for what it holds, fails each request once", async () => {
  using kv = await Deno.openKv(":memory:");
  const queue = kvQueue(kv);
  const calls: number[][] = [];
  const held = gate();
  let down = false;
  const engine = Object.create(queue, {
    store: {
      value: async (updates: Update[]) => {
        calls.push(updates.map((update) => update.update_id));
        await held.promise;
        if (down) throw new Error("storage unavailable");
        return queue.store(updates);
      },
    },
  }) as QueueEngine<Update>;
  const handler = webhookTo(engine, { reporter: () => {} });
  const post = (id: number) => statusOf(handler, webhookRequest(JSON.stringify(message(id, id))));
  const first = [1, 2, 3, 4].map(post);
  await until(() => calls.length === 4);
  const rest = [5, 6, 7].map(post);
  await flush();
  down = true;
  held.open();
  assert.deepEqual(await Promise.all([...first, ...rest]), [500, 500, 500, 500, 500, 500, 500]);
  assert.deepEqual(calls.slice(4), [[5, 6, 7]], "no store per update after an outage");
  assert.deepEqual(await inboxIds(kv), []);
});

Deno.test("a store of many large updates is split to fit Deno KV's limits of one commit", async () => {
  using kv = await Deno.openKv(":memory:");
  const queue = kvQueue(kv);
  // 40 updates of about 50 KB: 2 MB, more than one atomic commit may write.
  const updates = Array.from({ length: 40 }, (_, i) => message(i + 1, i + 1, "x".repeat(25_000)));
  await queue.store(updates);
  assert.equal((await inboxIds(kv)).length, 40);
});
