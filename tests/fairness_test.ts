import assert from "node:assert/strict";
import type { Context } from "grammy";
import { run, sequentialize } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor } from "./_bot.ts";
import { gate, until } from "./_helpers.ts";

const byChat = (ctx: Context) => ctx.chat?.id.toString();

Deno.test("a busy chat does not starve the others: cold chats finish while its chain is blocked", async () => {
  await using api = await FakeBotApi.start();
  const hotGate = gate();
  const done: number[] = [];
  const bot = botFor(api);
  bot.use(sequentialize(byChat));
  bot.on("message", async (ctx) => {
    if (ctx.chat.id === 1) await hotGate.promise;
    done.push(ctx.chat.id);
  });
  // 30 updates of the hot chat come first in the stream, then 20 cold chats.
  api.pushMessages(30, { chatOf: () => 1 });
  api.pushMessages(20, { chatOf: (i) => 100 + i });
  const handle = run(bot, { runner: { fetch: { timeout: 1 } }, sink: { concurrency: 4 } });

  await until(() => done.length === 20, 10_000, "the cold chats");
  assert.ok(done.every((chat) => chat >= 100), "only cold chats are done");
  const stats = handle.stats();
  assert.equal(stats.running, 1, "only the head of the hot chain holds a slot");
  assert.equal(stats.waitingForKey, 29);
  hotGate.open();
  await until(() => done.length === 50);
  await handle.stop();
});

Deno.test("fetching waits when `maxPending` updates are taken and unfinished", async () => {
  await using api = await FakeBotApi.start();
  const hotGate = gate();
  let peakPending = 0;
  let finished = 0;
  const bot = botFor(api);
  bot.use(sequentialize(byChat));
  const handle = run(bot, {
    runner: { fetch: { timeout: 1 } },
    sink: { concurrency: 4, maxPending: 10 },
  });
  bot.on("message", async () => {
    peakPending = Math.max(peakPending, handle.stats().pending);
    await hotGate.promise;
    finished++;
  });
  api.pushMessages(40, { chatOf: () => 7 });
  await until(() => handle.stats().pending === 10, 10_000, "a full buffer");
  await new Promise((resolve) => setTimeout(resolve, 50)); // give it a chance to over-fetch
  assert.equal(handle.stats().pending, 10);
  assert.equal(handle.stats().fetched, 10, "nothing beyond the bound was taken");
  assert.ok(api.pending() >= 30, "the 30 updates not taken stay with Telegram");
  hotGate.open();
  await until(() => finished === 40);
  await handle.stop();
  assert.ok(peakPending <= 10, `pending peaked at ${peakPending}`);
  assert.equal(api.pending(), 0);
});
