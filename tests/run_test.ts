import assert from "node:assert/strict";
import { Bot, type Context } from "grammy";
import { type Report, run } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor, Recorder, sessionBot } from "./_bot.ts";
import { random, sleep, until } from "./_helpers.ts";

const quick = { runner: { fetch: { timeout: 1 } } } as const;

Deno.test("run() handles every update once, initialises the bot first, and stop() confirms them", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const seen: number[] = [];
  bot.on("message", (ctx) => void seen.push(ctx.update.update_id));
  const ids = api.pushMessages(250, { chats: 10 });
  const handle = run(bot, quick);
  assert.ok(handle.isRunning());
  await until(() => seen.length === 250, 10_000, "all updates");
  await handle.stop();
  assert.equal(handle.isRunning(), false);
  assert.deepEqual(seen.toSorted((a, b) => a - b), ids);
  assert.equal(api.pending(), 0);
  assert.equal(api.stats.requests.getMe, 1);
  assert.equal(api.stats.redelivered, 0);
  assert.ok(bot.isInited());
});

Deno.test("run() with sequentialize and session: 10 000 updates over 1 000 chats, concurrency 50", async () => {
  await using api = await FakeBotApi.start({ seed: 7 });
  const recorder = new Recorder();
  const rng = random(11);
  const { bot, counters } = sessionBot(api, recorder, () => sleep(Math.floor(rng() * 3)));
  const ids = api.pushMessages(10_000, { chats: 1_000 });
  const expected = new Map<number, number>();
  const handle = run(bot, { ...quick, sink: { concurrency: 50 } });
  await until(() => recorder.total >= 10_000, 60_000, "10 000 updates");
  await handle.stop();

  assert.equal(recorder.handled.size, 10_000);
  assert.equal(recorder.duplicates, 0, "no update ran twice");
  assert.deepEqual([...recorder.handled.keys()].toSorted((a, b) => a - b), ids);
  assert.ok(recorder.inOrder(), "each chat's updates ran in update_id order");
  assert.equal(recorder.overlapsWithinChat, 0, "one chat never ran two updates at once");
  for (const [chat, list] of recorder.perChat) expected.set(chat, list.length);
  for (const [chat, count] of expected) {
    assert.equal(counters.get(String(chat))?.count, count, `session counter of chat ${chat}`);
  }
  assert.ok(recorder.peak <= 50, `peak concurrency ${recorder.peak} must not exceed 50`);
  assert.ok(recorder.peak > 1, "different chats must overlap");
  assert.equal(api.pending(), 0);
});

Deno.test("run() passes middleware errors to bot.catch and keeps going", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const caught: number[] = [];
  let handled = 0;
  bot.catch((error) => void caught.push(error.ctx.update.update_id));
  bot.on("message", (ctx) => {
    if (ctx.update.update_id % 3 === 0) throw new Error("middleware failed");
    handled++;
  });
  api.pushMessages(30, { chats: 3 });
  const handle = run(bot, quick);
  await until(() => handled + caught.length === 30, 10_000, "30 updates");
  await handle.stop();
  assert.equal(caught.length, 10);
  assert.ok(caught.every((id) => id % 3 === 0));
  assert.equal(handle.stats().failed, 10);
  assert.equal(handle.stats().handled, 20);
});

Deno.test("run() reports an error handler that throws, without the token, and keeps running", async () => {
  await using api = await FakeBotApi.start({
    token: "987654:SECRET-token-value-abcdefghijklmnopqrstuvwxyz",
  });
  const bot = botFor(api);
  const reports: Report[] = [];
  bot.catch(() => {
    throw new Error(`handler failed for https://api.telegram.org/bot${api.token}/sendMessage`);
  });
  bot.on("message", () => {
    throw new Error("middleware failed");
  });
  api.pushMessages(5);
  const handle = run(bot, {
    runner: { fetch: { timeout: 1 }, reporter: (r) => void reports.push(r) },
  });
  await until(() => reports.length === 5, 10_000, "five reports");
  assert.ok(handle.isRunning());
  await handle.stop();
  for (const report of reports) {
    assert.equal(report.source, "errorHandler");
    assert.ok(!report.message.includes("SECRET"), report.message);
  }
});

Deno.test("run() rejects bad options before sending any request", async (t) => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const cases: [string, object, string, RegExp][] = [
    [
      "sink.concurrency 0",
      { sink: { concurrency: 0 } },
      "RangeError",
      /'concurrency' must be a positive integer: current value is 0/,
    ],
    [
      "source.speedTrafficBalance 2",
      { source: { speedTrafficBalance: 2 } },
      "RangeError",
      /'speedTrafficBalance' must be a number from 0 to 1: current value is 2/,
    ],
    [
      "runner.retryInterval -1",
      { runner: { retryInterval: -1 } },
      "RangeError",
      /'retryInterval'.*-1/,
    ],
    [
      "runner.fetch.timeout -5",
      { runner: { fetch: { timeout: -5 } } },
      "RangeError",
      /'fetch.timeout'.*-5/,
    ],
    [
      "source.maxDelayMilliseconds '5'",
      { source: { maxDelayMilliseconds: "5" } },
      "TypeError",
      /'maxDelayMilliseconds'.*"5"/,
    ],
    [
      "sink not an object",
      { sink: 5 },
      "TypeError",
      /'sink' must be an object: current value is 5/,
    ],
    ["signal not a signal", { signal: {} }, "TypeError", /'signal' must be an AbortSignal/],
  ];
  for (const [name, options, type, message] of cases) {
    await t.step(
      name,
      () => assert.throws(() => run(bot, options as never), { name: type, message }),
    );
  }
  assert.deepEqual(api.stats.requests, {});
});

Deno.test("run() works with a plain object bot, as @grammyjs/runner allowed", async () => {
  await using api = await FakeBotApi.start();
  const real = botFor(api);
  const seen: number[] = [];
  api.pushMessages(3);
  const handle = run({
    api: { getUpdates: (args, signal) => real.api.getUpdates(args, signal) },
    handleUpdate: async (update: { update_id: number }) => void seen.push(update.update_id),
    errorHandler: () => {},
  }, quick);
  await until(() => seen.length === 3);
  await handle.stop();
  assert.deepEqual(seen, [1, 2, 3]);
});

Deno.test("handle.stats() counts fetched, handled, in flight and polls", async () => {
  await using api = await FakeBotApi.start();
  const bot = botFor(api);
  const release = Promise.withResolvers<void>();
  let started = 0;
  bot.on("message", async () => {
    started++;
    await release.promise;
  });
  api.pushMessages(4, { chats: 4 });
  const handle = run(bot, quick);
  await until(() => started === 4);
  const during = handle.stats();
  assert.equal(during.fetched, 4);
  assert.equal(during.running, 4);
  assert.equal(during.pending, 4);
  assert.ok(during.getUpdatesCalls >= 1);
  assert.ok(during.lastPollAt !== undefined);
  assert.ok(during.lag >= 0);
  release.resolve();
  await handle.stop();
  const after = handle.stats();
  assert.equal(after.handled, 4);
  assert.equal(after.pending, 0);
  assert.equal(after.lag, 0);
});

Deno.test("a bot from the deno.land-style Context type-checks with run()", () => {
  // Compile-time check that grammY's Bot fits BotAdapter with a custom context.
  const bot = new Bot<Context>("123:abc");
  const start = () => run(bot);
  assert.equal(typeof start, "function");
});
