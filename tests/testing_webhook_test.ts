import { Bot, GrammyError, webhookCallback } from "grammy";
import type { Update } from "grammy/types";
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createServer, type ServerResponse } from "node:http";
import { FakeBotApi, type WebhookResult } from "../testing.ts";
import { sequentialize } from "../sequentialize.ts";
import { flush, gate, until } from "./_helpers.ts";

/** A webhook receiver on 127.0.0.1 that answers with `handler`. */
function receiver(
  handler: (request: Request) => Response | Promise<Response>,
): { url: string } & AsyncDisposable {
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen() {} },
    (request) => handler(request),
  );
  return {
    url: `http://127.0.0.1:${server.addr.port}/hook`,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

/** A receiver that records each update it gets and answers as `answer` says. */
function recorder(
  answer: (update: Update, index: number, signal: AbortSignal) => Response | Promise<Response>,
) {
  const received: Update[] = [];
  const server = receiver(async (request) => {
    const update = await request.json() as Update;
    received.push(update);
    return answer(update, received.length - 1, request.signal);
  });
  return Object.assign(server, { received });
}

/** Waits for `promise`, or until the client hung up, so that a failed test cannot hang the receiver. */
function untilAborted(promise: Promise<unknown>, signal: AbortSignal): Promise<unknown> {
  return Promise.race([
    promise,
    new Promise((resolve) => signal.addEventListener("abort", resolve)),
  ]);
}

function ok(): Response {
  return new Response(null, { status: 200 });
}

function chatOf(update: Update): number {
  return update.message!.chat.id;
}

Deno.test("webhook: each chat's next update is posted only after the previous one was answered", async () => {
  const gates = new Map<number, ReturnType<typeof gate>>();
  const hook = recorder(async (update, _index, signal) => {
    if (chatOf(update) === 1) {
      const held = gate();
      gates.set(update.update_id, held);
      await untilAborted(held.promise, signal);
    }
    return ok();
  });
  await using _hook = hook;
  await using api = await FakeBotApi.start();
  await api.setWebhook(hook.url);
  const slow = api.pushMessages(3, { chatOf: () => 1 });
  const fast = api.pushMessages(3, { chatOf: () => 2 });
  // Chat 2 is not held up by chat 1's slow receiver.
  await until(() => hook.received.filter((u) => chatOf(u) === 2).length === 3, 5_000, "chat 2");
  assert.deepEqual(hook.received.filter((u) => chatOf(u) === 1).map((u) => u.update_id), [
    slow[0],
  ]);
  for (const id of slow) {
    await until(() => gates.has(id), 5_000, `update ${id}`);
    await flush();
    // Only the update being answered is out: the next one waits.
    assert.equal(hook.received.filter((u) => chatOf(u) === 1).at(-1)?.update_id, id);
    gates.get(id)!.open();
  }
  await api.whenAcknowledged();
  assert.deepEqual(hook.received.filter((u) => chatOf(u) === 1).map((u) => u.update_id), slow);
  assert.deepEqual(hook.received.filter((u) => chatOf(u) === 2).map((u) => u.update_id), fast);
  const stats = api.webhookStats;
  assert.equal(stats.acknowledged, 6);
  assert.equal(stats.delivered, 6);
  assert.equal(stats.pending, 0);
  assert.equal(api.pending(), 0);
});

Deno.test("webhook: at most max_connections requests are open", async () => {
  const release = gate();
  let open = 0;
  let mostOpen = 0;
  const hook = recorder(async (_update, _index, signal) => {
    mostOpen = Math.max(mostOpen, ++open);
    await untilAborted(release.promise, signal);
    open--;
    return ok();
  });
  await using _hook = hook;
  await using api = await FakeBotApi.start();
  await api.setWebhook(hook.url, { maxConnections: 3 });
  api.pushMessages(20, { chatOf: (index) => index + 1 });
  await until(() => open === 3, 5_000, "3 open requests");
  await flush();
  await flush();
  assert.equal(open, 3);
  assert.equal(api.webhookStats.inFlight, 3);
  release.open();
  await api.whenAcknowledged();
  assert.equal(mostOpen, 3);
  assert.equal(api.webhookStats.maxInFlight, 3);
  assert.equal(hook.received.length, 20);
  assert.deepEqual(
    hook.received.map((u) => u.update_id),
    Array.from({ length: 20 }, (_, index) => index + 1),
    "chats are served oldest update first",
  );
});

/** A receiver on node:http, so that it can also cut connections or never answer. */
async function rawReceiver(
  answer: (update: Update, response: ServerResponse) => void,
): Promise<{ url: string } & AsyncDisposable> {
  const server = createServer((request, response) => {
    const chunks: Uint8Array[] = [];
    request.on("data", (chunk: Uint8Array) => chunks.push(chunk));
    request.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      answer(JSON.parse(text) as Update, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}/`,
    [Symbol.asyncDispose]: async () => {
      const closed = new Promise((resolve) => server.close(resolve));
      server.closeAllConnections();
      await closed;
    },
  };
}

Deno.test("webhook: a non-2xx answer, a timeout or a dropped connection sends the update again after a backoff while the chat waits", async (t) => {
  const failures = {
    "500": (response: ServerResponse) => void response.writeHead(500).end(),
    // Never answers: the fake gives up after webhookTimeout and hangs up.
    "timeout": () => {},
    "dropped connection": (response: ServerResponse) => void response.socket?.destroy(),
  };
  const outcomes = { "500": "rejected", "timeout": "timed out", "dropped connection": "dropped" };
  const counters = { "500": "rejected", "timeout": "timedOut", "dropped connection": "dropped" };
  for (const name of ["500", "timeout", "dropped connection"] as const) {
    await t.step(name, async () => {
      const received: number[] = [];
      await using hook = await rawReceiver((update, response) => {
        received.push(update.update_id);
        if (received.length <= 2) failures[name](response);
        else response.writeHead(200).end();
      });
      const results: WebhookResult[] = [];
      await using api = await FakeBotApi.start({
        webhookRetryUnit: 1,
        webhookTimeout: 50,
        onWebhookResult: (result) => results.push(result),
      });
      await api.setWebhook(hook.url);
      const [first, second] = api.pushMessages(2, { chatOf: () => 7 });
      await api.whenAcknowledged();
      // The chat's second update waited until the first was acknowledged.
      assert.deepEqual(received, [first, first, first, second]);
      assert.deepEqual(results.map((r) => [r.updateId, r.attempt, r.outcome]), [
        [first, 1, outcomes[name]],
        [first, 2, outcomes[name]],
        [first, 3, "acknowledged"],
        [second, 1, "acknowledged"],
      ]);
      const { delivered, retried, acknowledged, rejected, timedOut, dropped } = api.webhookStats;
      assert.deepEqual(
        { delivered, retried, acknowledged, rejected, timedOut, dropped },
        {
          delivered: 4,
          retried: 2,
          acknowledged: 2,
          rejected: 0,
          timedOut: 0,
          dropped: 0,
          [counters[name]]: 2,
        },
      );
      const info = api.webhookInfo();
      assert.equal(typeof info.last_error_date, "number");
      assert.match(info.last_error_message ?? "", /Wrong response|timeout|closed/);
    });
  }
});

Deno.test("webhook: the backoff doubles (again at once, then 2, 4, 8 units) and Retry-After is honoured", async () => {
  const sentAt: number[] = [];
  await using hook = receiver(() => {
    sentAt.push(performance.now());
    if (sentAt.length <= 4) return new Response(null, { status: 502 });
    if (sentAt.length === 5) {
      return new Response(null, { status: 429, headers: { "retry-after": "6" } });
    }
    return ok();
  });
  await using api = await FakeBotApi.start({ webhookRetryUnit: 20 });
  await api.setWebhook(hook.url);
  api.pushMessages(1);
  await api.whenAcknowledged();
  const gaps = sentAt.slice(1).map((at, index) => at - sentAt[index]!);
  // Waits of 0, 2, 4, 8 units, then Retry-After 6 units; a timer never fires early.
  assert.equal(gaps.length, 5);
  for (const [index, units] of [0, 2, 4, 8, 6].entries()) {
    assert.ok(
      gaps[index]! >= units * 20 - 1,
      `gap ${index} is ${gaps[index]} ms, not ${units} units`,
    );
  }
  assert.ok(gaps[2]! < gaps[3]!, "the backoff grows");
});

Deno.test("webhook: requests carry the secret header and the update as JSON", async () => {
  const seen: Array<{ secret: string | null; type: string | null; method: string }> = [];
  await using hook = receiver((request) => {
    seen.push({
      secret: request.headers.get("x-telegram-bot-api-secret-token"),
      type: request.headers.get("content-type"),
      method: request.method,
    });
    return ok();
  });
  await using api = await FakeBotApi.start();
  await api.setWebhook(hook.url, { secretToken: "s3cret_-X" });
  api.pushMessages(1);
  await api.whenAcknowledged();
  await api.setWebhook(hook.url);
  api.pushMessages(1);
  await api.whenAcknowledged();
  assert.deepEqual(seen, [
    { secret: "s3cret_-X", type: "application/json", method: "POST" },
    { secret: null, type: "application/json", method: "POST" },
  ]);
});

Deno.test("webhook: getUpdates answers 409 while a webhook is set, and deleteWebhook switches back", async () => {
  await using api = await FakeBotApi.start();
  const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
  // A held long poll ends with a conflict when a webhook is set.
  const held = bot.api.getUpdates({ offset: 1, timeout: 30 }).catch((error) => error);
  await api.whenConfirmed(1);
  // Nobody listens on port 9: every delivery fails, the updates stay pending.
  assert.equal(await bot.api.setWebhook("http://127.0.0.1:9/"), true);
  const heldError = await held;
  assert.ok(heldError instanceof GrammyError);
  assert.equal(heldError.error_code, 409);
  assert.equal(heldError.description, "Conflict: terminated by setWebhook request");
  const ids = api.pushMessages(2);
  const error = await bot.api.getUpdates().catch((error) => error);
  assert.ok(error instanceof GrammyError);
  assert.equal(error.error_code, 409);
  assert.equal(
    error.description,
    "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first",
  );
  const info = await bot.api.getWebhookInfo();
  assert.equal(info.url, "http://127.0.0.1:9/");
  assert.equal(info.max_connections, 40);
  assert.equal(info.pending_update_count, 2);
  assert.equal(await bot.api.deleteWebhook(), true);
  assert.equal((await bot.api.getWebhookInfo()).url, "");
  // What the webhook could not deliver comes through getUpdates.
  assert.deepEqual((await bot.api.getUpdates()).map((u) => u.update_id), ids);
  await bot.api.setWebhook("http://127.0.0.1:9/");
  await bot.api.deleteWebhook({ drop_pending_updates: true });
  assert.equal(api.pending(), 0);
  assert.deepEqual(await bot.api.getUpdates(), []);
});

Deno.test("webhook: setWebhook rejects what Telegram rejects and clamps max_connections", async (t) => {
  await using api = await FakeBotApi.start();
  const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
  await t.step("over the Bot API", async () => {
    const cases: Array<[Parameters<typeof bot.api.setWebhook>, string]> = [
      [["ftp://example.com/hook"], "Bad Request: invalid webhook URL specified"],
      [["http://"], "Bad Request: invalid webhook URL specified"],
      [["https://exa mple.com/"], "Bad Request: invalid webhook URL specified"],
      [
        ["https://example.com/", { secret_token: "x".repeat(257) }],
        "Bad Request: secret token is too long",
      ],
      [
        ["https://example.com/", { secret_token: "with space" }],
        "Bad Request: secret token contains unallowed characters",
      ],
      [
        ["https://example.com/", { secret_token: "ünïcode" }],
        "Bad Request: secret token contains unallowed characters",
      ],
    ];
    for (const [args, description] of cases) {
      const error = await bot.api.setWebhook(...args).catch((error) => error);
      assert.ok(error instanceof GrammyError, String(args[0]));
      assert.equal(error.error_code, 400);
      assert.equal(error.description, description);
      assert.equal(api.webhookInfo().url, "", "a rejected call sets nothing");
    }
    await bot.api.setWebhook("example.com/hook", { max_connections: 0 });
    assert.equal(api.webhookInfo().url, "https://example.com/hook", "https is the default scheme");
    assert.equal(api.webhookInfo().max_connections, 1);
    await bot.api.setWebhook("https://example.com/hook", { max_connections: 100_000 });
    assert.equal(api.webhookInfo().max_connections, 100);
    await bot.api.setWebhook("", {});
    assert.equal(api.webhookInfo().url, "", "an empty URL deletes the webhook");
  });
  await t.step("as a method, naming the option and the value", () => {
    const cases: Array<[() => unknown, typeof TypeError | typeof RangeError, RegExp]> = [
      [
        () => api.setWebhook("ftp://x/"),
        TypeError,
        /'url' must be an http or https URL: current value is "ftp:\/\/x\/"/,
      ],
      [() => api.setWebhook(42 as unknown as string), TypeError, /'url'.*current value is 42/],
      [
        () => api.setWebhook("https://x/", { secretToken: "no spaces" }),
        TypeError,
        /'secretToken'.*another string/,
      ],
      [
        () => api.setWebhook("https://x/", { maxConnections: 0 }),
        RangeError,
        /'maxConnections' must be an integer from 1 to 100: current value is 0/,
      ],
      [
        () => api.setWebhook("https://x/", { maxConnections: 101 }),
        RangeError,
        /current value is 101/,
      ],
      [
        () => api.setWebhook("https://x/", { maxConnections: NaN }),
        RangeError,
        /current value is NaN/,
      ],
      [() => api.setWebhook("https://x/", { maxConnections: Infinity }), RangeError, /Infinity/],
      [
        () => api.setWebhook("https://x/", { dropPendingUpdates: "yes" as unknown as boolean }),
        TypeError,
        /'dropPendingUpdates' must be a boolean/,
      ],
      [
        () => api.setWebhook("https://x/", { allowedUpdates: "message" as unknown as string[] }),
        TypeError,
        /'allowedUpdates'/,
      ],
      [() => api.setWebhook("https://x/", { maxConection: 3 } as never), TypeError, /maxConection/],
      [
        () => api.deleteWebhook({ dropPendingUpdates: 1 as unknown as boolean }),
        TypeError,
        /'dropPendingUpdates'/,
      ],
    ];
    for (const [call, type, message] of cases) {
      assert.throws(call, (error: unknown) => error instanceof type && message.test(error.message));
    }
    assert.equal(api.webhookInfo().url, "");
  });
  await t.step("bad options of start()", async () => {
    for (
      const options of [{ webhookTimeout: 0 }, { webhookRetryUnit: -1 }, {
        webhookTimeout: 2 ** 31,
      }]
    ) {
      await assert.rejects(FakeBotApi.start(options), RangeError);
    }
    await assert.rejects(
      FakeBotApi.start({ onWebhookResult: "log" as never }),
      /'onWebhookResult' must be a function/,
    );
  });
});

Deno.test("webhook: a method in a 2xx answer is run, as a webhook reply", async () => {
  await using hook = receiver(async (request) => {
    const update = await request.json() as Update;
    return Response.json({ method: "sendMessage", chat_id: update.message!.chat.id, text: "pong" });
  });
  await using api = await FakeBotApi.start();
  await api.setWebhook(hook.url);
  api.pushMessages(1, { chatOf: () => 3 });
  await api.whenAcknowledged();
  await until(() => api.sentMessages.length === 1, 5_000, "the reply");
  assert.deepEqual(api.sentMessages, [{ chat_id: 3, text: "pong" }]);
});

Deno.test("webhook: close() ends open requests and backoffs; whenAcknowledged rejects", async () => {
  const never = gate();
  await using hook = receiver(async (request) => {
    await untilAborted(never.promise, request.signal);
    return ok();
  });
  const api = await FakeBotApi.start({ webhookRetryUnit: 60_000 });
  await api.setWebhook(hook.url);
  api.pushMessages(3, { chatOf: (index) => index });
  await until(() => api.webhookStats.inFlight === 3, 5_000, "3 open requests");
  const waiting = api.whenAcknowledged().then(() => "resolved", (error: Error) => error.message);
  await api.close();
  assert.match(await waiting, /closed/);
  await assert.rejects(api.whenAcknowledged(), /closed/);
  assert.equal(api.webhookStats.inFlight, 0);
  assert.equal(api.pending(), 3, "what was not acknowledged stays pending");
  never.open();
});

Deno.test("webhook: grammY's webhookCallback with sequentialize runs every update once, in chat order", async () => {
  await using api = await FakeBotApi.start({ seed: 5 });
  const bot = new Bot(api.token, { client: { apiRoot: api.apiRoot } });
  const seen = new Map<number, number[]>();
  const running = new Set<number>();
  let overlaps = 0;
  bot.use(sequentialize((ctx) => String(ctx.chat?.id)));
  bot.on("message:text", async (ctx) => {
    if (running.has(ctx.chat.id)) overlaps++;
    running.add(ctx.chat.id);
    await new Promise((resolve) => setTimeout(resolve, ctx.update.update_id % 3));
    seen.set(ctx.chat.id, [...seen.get(ctx.chat.id) ?? [], ctx.update.update_id]);
    running.delete(ctx.chat.id);
    if (ctx.update.update_id % 50 === 0) await ctx.reply("fifty");
  });
  const handler = webhookCallback(bot, "std/http", { secretToken: "hook-secret" });
  await using hook = receiver((request) => handler(request));
  await bot.api.setWebhook(hook.url, { secret_token: "hook-secret", max_connections: 40 });
  const ids = api.pushMessages(300, { chats: 12 });
  await api.whenAcknowledged();
  const all = [...seen.values()].flat().sort((a, b) => a - b);
  assert.deepEqual(all, ids, "every update handled exactly once");
  for (const [chat, order] of seen) {
    assert.deepEqual(order, [...order].sort((a, b) => a - b), `chat ${chat} in order`);
  }
  assert.equal(overlaps, 0);
  assert.equal(api.webhookStats.retried, 0);
  assert.equal(api.webhookStats.acknowledged, 300);
  assert.ok(api.webhookStats.maxInFlight <= 12, "at most one request per chat");
  assert.equal(api.sentMessages.length, 6);
});
