import { type Api, Bot, GrammyError, HttpError, InputFile } from "grammy";
import type { Update } from "grammy/types";
import assert from "node:assert/strict";
import { FakeBotApi } from "../testing.ts";

function botFor(api: FakeBotApi, token = api.token): Bot {
  return new Bot(token, { client: { apiRoot: api.apiRoot } });
}

/** grammY from npm types its signals with the `abort-controller` package. */
function grammySignal(signal: AbortSignal): Parameters<Api["getUpdates"]>[1] {
  return signal as unknown as Parameters<Api["getUpdates"]>[1];
}

/** Waits for a change that the server sees over the network, such as a hang-up. */
async function until(condition: () => boolean): Promise<void> {
  for (let tries = 0; !condition(); tries++) {
    if (tries === 5000) throw new Error("Condition not met after 5000 tries");
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
}

function ids(updates: Update[]): number[] {
  return updates.map((update) => update.update_id);
}

async function getUpdatesError(
  bot: Bot,
  other?: Parameters<Api["getUpdates"]>[0],
): Promise<unknown> {
  return await bot.api.getUpdates(other).then(
    (updates) => assert.fail(`expected an error, got ${updates.length} updates`),
    (error: unknown) => error,
  );
}

Deno.test("getMe answers a bot user whose id is the token's number", async () => {
  await using api = await FakeBotApi.start({ token: "42:secret" });
  const bot = botFor(api);
  await bot.init();
  assert.equal(bot.botInfo.id, 42);
  assert.equal(bot.botInfo.is_bot, true);
  assert.equal(bot.botInfo.username, "fake_bot");
  assert.match(api.apiRoot, /^http:\/\/127\.0\.0\.1:\d+$/);
  assert.deepEqual(api.stats.requests, { getMe: 1 });
});

Deno.test("getUpdates answers pending updates in id order, and offset confirms and forgets them", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const pushed = api.push({}, { update_id: 999 }, {});
  assert.deepEqual(pushed, [1, 2, 3]);
  assert.deepEqual(ids(await bot.api.getUpdates()), [1, 2, 3]);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: 2 })), [2, 3]);
  assert.equal(api.pending(), 2);
  assert.equal(api.offset(), 2);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: 4 })), []);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: 1 })), []);
  assert.equal(api.pending(), 0);
  assert.equal(api.offset(), 4);
  const stats = api.stats;
  assert.equal(stats.delivered, 5);
  assert.equal(stats.confirmed, 3);
  assert.equal(stats.redelivered, 2);
  assert.deepEqual([...stats.redeliveredIds], [2, 3]);
  assert.deepEqual(stats.requests, { getUpdates: 4 });
  assert.equal(stats.getUpdatesErrors, 0);
  api.push({});
  assert.equal(stats.delivered, 5, "stats is a snapshot");
});

Deno.test("limit caps an answer and is clamped to 1..100", async () => {
  await using api = await FakeBotApi.start({ firstUpdateId: 10 });
  const bot = botFor(api);
  api.pushMessages(150);
  assert.deepEqual(ids(await bot.api.getUpdates({ limit: 3 })), [10, 11, 12]);
  assert.deepEqual(ids(await bot.api.getUpdates({ limit: 0 })), [10]);
  assert.equal((await bot.api.getUpdates({ limit: 1000 })).length, 100);
  assert.equal((await bot.api.getUpdates()).length, 100);
});

Deno.test("a negative offset returns the last updates without confirming them", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  api.pushMessages(5);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: -2 })), [4, 5]);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: -9 })), [1, 2, 3, 4, 5]);
  assert.equal(api.pending(), 5);
  assert.equal(api.offset(), 0);
});

Deno.test("after thousands of confirmed updates, the rest are still answered in order", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  api.pushMessages(3_000);
  for (let offset = 1; offset <= 2_001; offset += 100) {
    assert.equal((await bot.api.getUpdates({ offset })).at(0)?.update_id, offset);
  }
  assert.equal(api.pending(), 1_000);
  assert.equal(api.stats.confirmed, 2_000);
  api.push({});
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: 2_001, limit: 3 })), [2001, 2002, 2003]);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: -2 })), [3000, 3001]);
  assert.equal(api.pending(), 1_001);
});

Deno.test("a held long poll answers as soon as updates are pushed", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const poll = bot.api.getUpdates({ offset: 1, timeout: 30 });
  await api.whenConfirmed(1); // the call has been read and is now held
  assert.equal(api.longPolling(), true);
  const pushed = api.pushMessages(2);
  assert.equal(api.longPolling(), false);
  assert.deepEqual(ids(await poll), pushed);
  assert.equal(api.stats.delivered, 2);
});

Deno.test("a held long poll answers no updates when its timeout elapses", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  assert.deepEqual(await bot.api.getUpdates({ timeout: 0.01 }), []);
  assert.equal(api.longPolling(), false);
});

Deno.test("a newer getUpdates makes the held one fail with 409, like Telegram", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const older = getUpdatesError(bot, { offset: 1, timeout: 30 });
  await api.whenConfirmed(1);
  const newer = bot.api.getUpdates({ offset: 2, timeout: 30 });
  const error = await older;
  assert.ok(error instanceof GrammyError);
  assert.equal(error.error_code, 409);
  assert.match(error.description, /^Conflict: terminated by other getUpdates/);
  await api.whenConfirmed(2);
  const [id] = api.pushMessages(1);
  assert.deepEqual(ids(await newer), [id]);
  assert.equal(api.stats.getUpdatesErrors, 1);
});

Deno.test("aborting a held long poll frees it and delivers nothing", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const controller = new AbortController();
  const poll = bot.api.getUpdates(
    { offset: 1, timeout: 30 },
    grammySignal(controller.signal),
  );
  await api.whenConfirmed(1);
  controller.abort();
  await assert.rejects(poll, HttpError);
  await until(() => !api.longPolling());
  const [id] = api.pushMessages(1);
  assert.equal(api.stats.delivered, 0);
  assert.deepEqual(ids(await bot.api.getUpdates({ offset: 1 })), [id]);
  assert.equal(api.stats.delivered, 1);
  assert.equal(api.stats.redelivered, 0);
  assert.equal(api.stats.getUpdatesErrors, 0);
});

Deno.test("a wrong token gets 401 and an unknown path 404", async () => {
  await using api = await FakeBotApi.start();
  const intruder = botFor(api, "99:wrong");
  for (const call of [intruder.api.getMe(), intruder.api.getUpdates()]) {
    const error = await call.catch((error: unknown) => error);
    assert.ok(error instanceof GrammyError);
    assert.equal(error.error_code, 401);
    assert.equal(error.description, "Unauthorized");
  }
  const response = await fetch(`${api.apiRoot}/nothing/here`);
  assert.equal(response.status, 404);
  assert.deepEqual(await response.json(), {
    ok: false,
    error_code: 404,
    description: "Not Found",
  });
  assert.deepEqual(api.stats.requests, {});
});

Deno.test("parameters are read from the query string and from URL-encoded, JSON and multipart bodies", async (t) => {
  const types = JSON.stringify(["message", "callback_query"]);
  const forms: Array<[string, (url: string) => Promise<Response>]> = [
    [
      "query string",
      (url) => fetch(`${url}?offset=2&limit=1&allowed_updates=${encodeURIComponent(types)}`),
    ],
    [
      "URL-encoded body",
      (url) =>
        fetch(url, {
          method: "POST",
          body: new URLSearchParams({ offset: "2", limit: "1", allowed_updates: types }),
        }),
    ],
    [
      "JSON body",
      (url) =>
        fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ offset: 2, limit: 1, allowed_updates: JSON.parse(types) }),
        }),
    ],
    [
      "JSON body with Telegram's string values",
      (url) =>
        fetch(url, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: JSON.stringify({ offset: "2", limit: "1", allowed_updates: types }),
        }),
    ],
    [
      "multipart body",
      (url) => {
        const form = new FormData();
        form.set("offset", "2");
        form.set("limit", "1");
        form.set("allowed_updates", types);
        return fetch(url, { method: "POST", body: form });
      },
    ],
    [
      "query string and body, the body winning",
      (url) =>
        fetch(`${url}?offset=2&limit=3`, {
          method: "POST",
          body: new URLSearchParams({ limit: "1", allowed_updates: types }),
        }),
    ],
  ];
  for (const [form, call] of forms) {
    await t.step(form, async () => {
      await using api = await FakeBotApi.start();
      api.pushMessages(3);
      const response = await call(`${api.apiRoot}/bot${api.token}/getUpdates`);
      const answer = await response.json();
      assert.equal(answer.ok, true, JSON.stringify(answer));
      assert.deepEqual(ids(answer.result), [2], "offset 2 and limit 1 were applied");
      assert.equal(api.offset(), 2);
      assert.equal(api.pending(), 2);
      assert.deepEqual(api.allowedUpdates(), ["message", "callback_query"]);
    });
  }
  await t.step("sendMessage from a URL-encoded body", async () => {
    await using api = await FakeBotApi.start();
    const response = await fetch(`${api.apiRoot}/bot${api.token}/sendMessage`, {
      method: "POST",
      body: new URLSearchParams({ chat_id: "7", text: "hi" }),
    });
    const answer = await response.json();
    assert.equal(answer.result.chat.id, 7);
    assert.deepEqual(api.sentMessages, [{ chat_id: "7", text: "hi" }]);
  });
  await t.step("allowed_updates is kept until a call gives a readable one", async () => {
    await using api = await FakeBotApi.start();
    const url = `${api.apiRoot}/bot${api.token}/getUpdates`;
    await (await fetch(`${url}?allowed_updates=${encodeURIComponent('["message"]')}`)).body
      ?.cancel();
    await (await fetch(url)).body?.cancel();
    await (await fetch(`${url}?allowed_updates=message`)).body?.cancel();
    assert.deepEqual(api.allowedUpdates(), ["message"]);
  });
});

Deno.test("sendMessage waits its latency, records the message and answers it", async () => {
  await using api = await FakeBotApi.start({ sendMessageLatency: 5 });
  const bot = botFor(api);
  const message = await bot.api.sendMessage(7, "hello");
  assert.equal(message.chat.id, 7);
  assert.equal(message.chat.type, "private");
  assert.equal(message.text, "hello");
  assert.equal(typeof message.message_id, "number");
  await bot.api.sendMessage("8", "again");
  assert.deepEqual(api.sentMessages, [
    { chat_id: 7, text: "hello" },
    { chat_id: "8", text: "again" },
  ]);
  const error = await bot.api.sendMessage(7, "").catch((error) => error);
  assert.ok(error instanceof GrammyError);
  assert.equal(error.error_code, 400);
});

Deno.test("close() does not wait for a sendMessage latency", async () => {
  const api = await FakeBotApi.start({ sendMessageLatency: 60_000 });
  const bot = botFor(api);
  const send = bot.api.sendMessage(1, "late").catch((error) => error);
  await until(() => api.stats.requests.sendMessage === 1);
  await api.close();
  const error = await send;
  assert.ok(error instanceof GrammyError);
  assert.equal(error.error_code, 500);
  assert.deepEqual(api.sentMessages, []);
});

Deno.test("other methods answer true, multipart uploads included", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  assert.equal(await bot.api.deleteWebhook(), true);
  const photo = new InputFile(new Uint8Array([1, 2, 3]), "photo.png");
  assert.equal(await bot.api.raw.sendPhoto({ chat_id: 1, photo }), true);
  assert.deepEqual(api.stats.requests, { deleteWebhook: 1, sendPhoto: 1 });
});

Deno.test("faults with probability 1 answer 500, 429, a cut body or malformed answers", async (t) => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  api.pushMessages(1);
  await t.step("serverError", async () => {
    api.setFaults({ serverError: 1 });
    const error = await getUpdatesError(bot);
    assert.ok(error instanceof GrammyError);
    assert.equal(error.error_code, 500);
    assert.equal(error.description, "Internal Server Error");
  });
  await t.step("tooManyRequests", async () => {
    api.setFaults({ tooManyRequests: 1, retryAfter: 3 });
    const error = await getUpdatesError(bot);
    assert.ok(error instanceof GrammyError);
    assert.equal(error.error_code, 429);
    assert.equal(error.description, "Too Many Requests: retry after 3");
    assert.deepEqual(error.parameters, { retry_after: 3 });
  });
  await t.step("cut", async () => {
    api.setFaults({ cut: 1 });
    const error = await getUpdatesError(bot);
    assert.ok(error instanceof HttpError);
    assert.doesNotMatch(error.message, /TEST-fake-token/);
  });
  await t.step("malformed", async () => {
    api.setFaults({ malformed: 1 });
    assert.ok(await getUpdatesError(bot) instanceof HttpError, "not JSON");
    const [update] = await bot.api.getUpdates();
    assert.equal(update?.update_id, undefined);
    assert.equal(update?.message?.text, "no id");
  });
  api.setFaults({});
  assert.equal(api.stats.getUpdatesErrors, 5);
  assert.equal(api.stats.delivered, 0, "faults deliver nothing");
  assert.equal(api.pending(), 1);
  assert.equal((await bot.api.getUpdates()).length, 1);
});

Deno.test("faults are the same for the same seed", async () => {
  async function outcomes(seed: number): Promise<string> {
    const faults = { serverError: 0.3, tooManyRequests: 0.3, retryAfter: 0 };
    await using api = await FakeBotApi.start({ seed, faults });
    const bot = botFor(api);
    let result = "";
    for (let call = 0; call < 30; call++) {
      const code = await bot.api.getUpdates().then(
        () => 200,
        (error: GrammyError) => error.error_code,
      );
      result += code === 200 ? "." : code === 500 ? "5" : "4";
    }
    return result;
  }
  const first = await outcomes(7);
  assert.equal(await outcomes(7), first);
  assert.notEqual(await outcomes(8), first);
  assert.match(first, /\./);
  assert.match(first, /5/);
  assert.match(first, /4/);
});

Deno.test("conflictFor answers the held and every new getUpdates with 409", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const held = getUpdatesError(bot, { offset: 1, timeout: 30 });
  await api.whenConfirmed(1);
  api.conflictFor(60_000);
  for (const error of [await held, await getUpdatesError(bot)]) {
    assert.ok(error instanceof GrammyError);
    assert.equal(error.error_code, 409);
  }
  api.conflictFor(0);
  assert.deepEqual(await bot.api.getUpdates(), []);
  assert.equal(api.stats.getUpdatesErrors, 2);
});

Deno.test("close() answers a held long poll with no updates, and is idempotent", async () => {
  const api = await FakeBotApi.start();
  const bot = botFor(api);
  const poll = bot.api.getUpdates({ offset: 1, timeout: 30 });
  await api.whenConfirmed(1);
  const closed = api.close();
  assert.equal(api.close(), closed);
  assert.deepEqual(await poll, []);
  await closed;
  await api[Symbol.asyncDispose]();
  await assert.rejects(bot.api.getMe(), HttpError);
});

Deno.test("close() ends while a client holds back the rest of its request", async (t) => {
  async function holdBack(head: (token: string) => string): Promise<void> {
    const api = await FakeBotApi.start();
    using connection = await Deno.connect({
      hostname: "127.0.0.1",
      port: Number(new URL(api.apiRoot).port),
    });
    const text = head(api.token);
    await connection.write(new TextEncoder().encode(text));
    if (text.includes("\r\n\r\n")) await until(() => api.stats.requests.getUpdates === 1);
    await api.close();
    // The server hung up: the client reads to the end (or is reset) instead of waiting.
    const buffer = new Uint8Array(1024);
    while (await connection.read(buffer).catch(() => null) !== null);
  }
  await t.step("a body shorter than its Content-Length", async () => {
    await holdBack((token) =>
      `POST /bot${token}/getUpdates HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
      `Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"offset":`
    );
  });
  await t.step("a head that never ends", async () => {
    await holdBack((token) => `POST /bot${token}/getUpdates HTTP/1.1\r\nContent-Le`);
  });
});

Deno.test("whenConfirmed resolves once the offset is confirmed, and rejects on abort or close", async (t) => {
  const api = await FakeBotApi.start();
  const bot = botFor(api);
  await t.step("resolves", async () => {
    const [, second] = api.pushMessages(2);
    let confirmed = false;
    const whenConfirmed = api.whenConfirmed(second! + 1).then(() => {
      confirmed = true;
    });
    await bot.api.getUpdates({ offset: second! });
    assert.equal(confirmed, false);
    await bot.api.getUpdates({ offset: second! + 1 });
    await whenConfirmed;
    await api.whenConfirmed(1); // already confirmed
  });
  await t.step("rejects on abort", async () => {
    const controller = new AbortController();
    const waiting = api.whenConfirmed(100, controller.signal);
    controller.abort(new Error("gave up"));
    await assert.rejects(waiting, { message: "gave up" });
  });
  await t.step("rejects on close", async () => {
    const rejected = assert.rejects(api.whenConfirmed(100), {
      message: "Cannot wait for offset 100 as the fake Bot API was closed",
    });
    await api.close();
    await rejected;
    await assert.rejects(api.whenConfirmed(101), /was closed/);
  });
});

Deno.test("pushMessages makes private text messages in seeded chats", async () => {
  await using api = await FakeBotApi.start({ seed: 3 });
  await using twin = await FakeBotApi.start({ seed: 3 });
  const bot = botFor(api);
  const before = Date.now();
  const [first] = api.pushMessages(50, { chats: 4 });
  twin.pushMessages(50, { chats: 4 });
  const updates = await bot.api.getUpdates();
  const chats = updates.map((update) => update.message!.chat.id);
  assert.deepEqual(new Set(chats), new Set([1, 2, 3, 4]));
  assert.deepEqual(ids(await botFor(twin).api.getUpdates()), ids(updates));
  assert.deepEqual(
    (await botFor(twin).api.getUpdates()).map((u) => u.message!.chat.id),
    chats,
  );
  for (const { message } of updates) {
    assert.equal(message?.chat.type, "private");
    assert.equal(message?.from?.id, message?.chat.id);
  }
  assert.equal(updates[0]?.message?.text, "message 0");
  assert.ok(api.enqueuedAt(first!)! >= before);
  assert.equal(api.enqueuedAt(first! + 50), undefined);

  const custom = api.pushMessages(2, {
    chatOf: (index) => 10 + index,
    userOf: (_, chatId) => chatId * 100,
    text: (index) => `custom ${index}`,
  });
  const messages = (await bot.api.getUpdates({ offset: custom[0]! }))
    .map((update) => update.message);
  assert.deepEqual(
    messages.map((m) => [m?.chat.id, m?.from?.id, m?.text]),
    [[10, 1000, "custom 0"], [11, 1100, "custom 1"]],
  );
});

Deno.test("pushed commands carry Telegram's bot_command entity, so bot.command() takes them", async () => {
  await using api = await FakeBotApi.start();
  const texts = ["/start", "/start payload", "/help@fake_bot", "/help@other_bot", "hello /start"];
  api.pushMessages(texts.length, { chatOf: (index) => index + 1, text: (index) => texts[index]! });
  const command = api.pushCommand("start", { chat: 10, payload: "ref42" });
  api.pushCommand("help", { chat: 11, user: 99, username: "fake_bot" });
  const bot = botFor(api);
  const taken: Array<[string, number, string]> = [];
  bot.command("start", (ctx) => void taken.push(["start", ctx.chat.id, ctx.match]));
  bot.command("help", (ctx) => void taken.push(["help", ctx.chat.id, ctx.match]));
  await bot.init();

  const updates = await bot.api.getUpdates();
  assert.deepEqual(
    updates.map(({ message }) => [message?.text, message?.entities]),
    [
      ["/start", [{ type: "bot_command", offset: 0, length: 6 }]],
      ["/start payload", [{ type: "bot_command", offset: 0, length: 6 }]],
      ["/help@fake_bot", [{ type: "bot_command", offset: 0, length: 14 }]],
      ["/help@other_bot", [{ type: "bot_command", offset: 0, length: 15 }]],
      ["hello /start", undefined],
      ["/start ref42", [{ type: "bot_command", offset: 0, length: 6 }]],
      ["/help@fake_bot", [{ type: "bot_command", offset: 0, length: 14 }]],
    ],
  );
  assert.equal(updates.at(-2)?.update_id, command);
  assert.equal(updates.at(-1)?.message?.from?.id, 99);
  for (const update of updates) await bot.handleUpdate(update);
  assert.deepEqual(taken, [
    ["start", 1, ""],
    ["start", 2, "payload"],
    ["help", 3, ""],
    ["start", 10, "ref42"],
    ["help", 11, ""],
  ]);
});

Deno.test("start() rejects bad options, naming the option and the value", async (t) => {
  const cases: Array<[string, unknown, ErrorConstructor, string]> = [
    [
      "faults.cut",
      { faults: { cut: 2 } },
      RangeError,
      "must be a number from 0 to 1: current value is 2",
    ],
    [
      "faults.serverError",
      { faults: { serverError: "1" } },
      TypeError,
      'must be a number from 0 to 1: current value is "1"',
    ],
    [
      "faults.retryAfter",
      { faults: { retryAfter: -1 } },
      RangeError,
      "must be a non-negative number: current value is -1",
    ],
    ["seed", { seed: 1.5 }, RangeError, "must be an integer: current value is 1.5"],
    [
      "firstUpdateId",
      { firstUpdateId: 0 },
      RangeError,
      "must be a positive integer: current value is 0",
    ],
    [
      "sendMessageLatency",
      { sendMessageLatency: Infinity },
      RangeError,
      "must be a non-negative number: current value is Infinity",
    ],
  ];
  for (const [name, options, type, requirement] of cases) {
    await t.step(name, async () => {
      await assert.rejects(FakeBotApi.start(options as never), {
        name: type.name,
        message: `Cannot start fake Bot API as '${name}' ${requirement}`,
      });
    });
  }
  await t.step("faults", async () => {
    await assert.rejects(FakeBotApi.start({ faults: null as never }), TypeError);
    await assert.rejects(FakeBotApi.start({ faults: { cut: 0.6, malformed: 0.6 } }), {
      name: "RangeError",
      message:
        "Cannot start fake Bot API as the fault probabilities must add up to at most 1: current sum is 1.2",
    });
  });
  await t.step("token, without printing it", async () => {
    const error = await FakeBotApi.start({ token: "no-colon-XYZ" }).catch((error) => error);
    assert.ok(error instanceof TypeError);
    assert.match(error.message, /^Cannot start fake Bot API as 'token' must look like/);
    assert.doesNotMatch(error.message, /XYZ/);
  });
  await t.step("setFaults and pushMessages too", async () => {
    await using api = await FakeBotApi.start();
    assert.throws(() => api.setFaults({ cut: -0.1 }), {
      name: "RangeError",
      message:
        "Cannot set faults as 'faults.cut' must be a number from 0 to 1: current value is -0.1",
    });
    assert.throws(() => api.pushMessages(-1), RangeError);
    assert.throws(() => api.pushMessages(1, { chats: 0 }), RangeError);
    assert.throws(() => api.conflictFor(-1), RangeError);
  });
  await t.step("pushCommand", async () => {
    await using api = await FakeBotApi.start();
    assert.throws(() => api.pushCommand("/start"), {
      name: "TypeError",
      message:
        "Cannot push a command as 'command' must be 1 to 32 letters, digits or underscores: current value is \"/start\"",
    });
    assert.throws(() => api.pushCommand("st art"), TypeError);
    assert.throws(() => api.pushCommand("start", { chat: 0 }), {
      name: "RangeError",
      message: "Cannot push a command as 'chat' must be a positive integer: current value is 0",
    });
    assert.throws(() => api.pushCommand("start", { username: "@fake_bot" }), TypeError);
    assert.throws(() => api.pushCommand("start", { payload: 1 as never }), TypeError);
    assert.equal(api.pending(), 0);
  });
});

Deno.test("start() and the other options objects reject an unknown option, suggesting the nearest", async (t) => {
  await t.step("start()", async () => {
    await assert.rejects(FakeBotApi.start({ sed: 7 } as never), {
      name: "TypeError",
      message: "Cannot start fake Bot API as 'sed' is not an option: did you mean 'seed'?",
    });
    await assert.rejects(FakeBotApi.start({ port: 8080 } as never), {
      name: "TypeError",
      message: "Cannot start fake Bot API as 'port' is not an option",
    });
    await assert.rejects(FakeBotApi.start(5 as never), {
      name: "TypeError",
      message: "Cannot start fake Bot API as 'options' must be an object: current value is 5",
    });
  });
  await t.step("faults, in start() and setFaults()", async () => {
    await assert.rejects(FakeBotApi.start({ faults: { serverErrors: 0.1 } as never }), {
      name: "TypeError",
      message:
        "Cannot start fake Bot API as 'faults.serverErrors' is not an option: did you mean 'faults.serverError'?",
    });
    await using api = await FakeBotApi.start();
    assert.throws(() => api.setFaults({ retry_after: 2 } as never), {
      name: "TypeError",
      message:
        "Cannot set faults as 'faults.retry_after' is not an option: did you mean 'faults.retryAfter'?",
    });
  });
  await t.step("pushMessages() and pushCommand()", async () => {
    await using api = await FakeBotApi.start();
    assert.throws(() => api.pushMessages(1, { chat: 3 } as never), {
      name: "TypeError",
      message: "Cannot push messages as 'chat' is not an option: did you mean 'chats'?",
    });
    assert.throws(() => api.pushCommand("start", { chats: 3 } as never), {
      name: "TypeError",
      message: "Cannot push a command as 'chats' is not an option: did you mean 'chat'?",
    });
    assert.throws(() => api.pushCommand("start", { reply: "x" } as never), {
      name: "TypeError",
      message: "Cannot push a command as 'reply' is not an option",
    });
    assert.equal(api.pending(), 0, "nothing was pushed");
  });
  await t.step("every documented option is known", async () => {
    await using api = await FakeBotApi.start({
      token: "1:a",
      seed: 2,
      faults: { serverError: 0, tooManyRequests: 0, retryAfter: 1, cut: 0, malformed: 0 },
      sendMessageLatency: 0,
      firstUpdateId: 1,
    });
    api.pushMessages(1, { chats: 1, chatOf: () => 1, userOf: () => 1, text: () => "hi" });
    api.pushCommand("start", { chat: 1, user: 1, payload: "x", username: "fake_bot" });
    assert.equal(api.pending(), 2);
  });
});

Deno.test("a getUpdates right after the client aborted a held one is answered normally", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const controller = new AbortController();
  const held = bot.api.getUpdates({ timeout: 30 }, grammySignal(controller.signal)).catch((e) => e);
  while (!api.longPolling()) await new Promise((resolve) => setTimeout(resolve, 1));
  controller.abort();
  await held;
  await new Promise((resolve) => setTimeout(resolve, 5));
  // The server may not have noticed the hang-up yet: this must not be a 500.
  api.pushMessages(1);
  const updates = await bot.api.getUpdates({ offset: 1, limit: 1, timeout: 0 });
  assert.equal(updates.length, 1);
});
