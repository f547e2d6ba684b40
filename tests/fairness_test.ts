import assert from "node:assert/strict";
import type { Context } from "grammy";
import { run, sequentialize } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor } from "./_bot.ts";
import { flush, gate } from "./_helpers.ts";

const byChat = (ctx: Context) => ctx.chat?.id.toString();

/** A gate that opens once `count()` has been called `target` times. */
function countdown(target: number) {
  const { promise, open } = gate();
  let count = 0;
  return { promise, count: () => ++count === target && open() };
}

Deno.test("a busy chat does not starve the others: cold chats finish while its chain is blocked", async () => {
  await using api = await FakeBotApi.start();
  const hotGate = gate();
  const coldDone = countdown(20);
  const allDone = countdown(50);
  const done: number[] = [];
  const bot = botFor(api);
  bot.use(sequentialize(byChat));
  bot.on("message", async (ctx) => {
    if (ctx.chat.id === 1) await hotGate.promise;
    done.push(ctx.chat.id);
    if (ctx.chat.id !== 1) coldDone.count();
    allDone.count();
  });
  // 30 updates of the hot chat come first in the stream, then 20 cold chats.
  api.pushMessages(30, { chatOf: () => 1 });
  api.pushMessages(20, { chatOf: (i) => 100 + i });
  const handle = run(bot, { runner: { fetch: { timeout: 1 } }, sink: { concurrency: 4 } });

  await coldDone.promise;
  await flush(); // the last cold update settles in the sink
  assert.ok(done.every((chat) => chat >= 100), "only cold chats are done");
  const stats = handle.stats();
  assert.equal(stats.running, 1, "only the head of the hot chain holds a slot");
  assert.equal(stats.waitingForKey, 29);
  hotGate.open();
  await allDone.promise;
  await handle.stop();
});

Deno.test("fetching waits when `maxPending` updates are taken and unfinished", async () => {
  await using api = await FakeBotApi.start();
  const hotGate = gate();
  const allFinished = countdown(40);
  // Every getUpdates of the runner, seen when it is sent and when it is answered.
  const polls = { sent: 0, answered: 0, updates: 0 };
  const tenFetched = gate();
  let peakPending = 0;
  const bot = botFor(api);
  bot.api.config.use(async (prev, method, payload, signal) => {
    if (method !== "getUpdates") return await prev(method, payload, signal);
    polls.sent++;
    const answer = await prev(method, payload, signal);
    polls.answered++;
    if (answer.ok) polls.updates += (answer.result as unknown[]).length;
    if (polls.updates >= 10) tenFetched.open();
    return answer;
  });
  bot.use(sequentialize(byChat));
  const handle = run(bot, {
    runner: { fetch: { timeout: 1 } },
    sink: { concurrency: 4, maxPending: 10 },
  });
  bot.on("message", async () => {
    peakPending = Math.max(peakPending, handle.stats().pending);
    await hotGate.promise;
    allFinished.count();
  });
  api.pushMessages(40, { chatOf: () => 7 });
  await tenFetched.promise;
  // From an answer to the next getUpdates, the runner only runs promise
  // callbacks: once they ran, a runner that fetched on would have sent one.
  await flush();
  assert.equal(handle.stats().pending, 10);
  assert.equal(polls.sent, polls.answered, "no getUpdates is on its way: the runner waits");
  assert.equal(handle.stats().fetched, 10, "nothing beyond the bound was taken");
  assert.ok(api.pending() >= 30, "the 30 updates not taken stay with Telegram");
  hotGate.open();
  await allFinished.promise;
  await handle.stop();
  assert.ok(peakPending <= 10, `pending peaked at ${peakPending}`);
  assert.equal(api.pending(), 0);
});
