// Workers over Deno KV in one process: order per chat, outcomes recorded in
// the write that removes the update, draining stop(), restarts, timeouts,
// dead letters, lease takeover, storage failures and hostile options.

import assert from "node:assert/strict";
import type { Context } from "grammy";
import { kvQueue, runFromKv, type RunFromKvOptions, webhookToKv } from "../kv_queue.ts";
import type { Lease } from "../queue.ts";
import type { Report } from "../_report.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor } from "./_bot.ts";
import { gate, isPending, random, sleep, until } from "./_helpers.ts";
import { entries, flakyKv, kvPath, message, statusOf, webhookRequest } from "./_kv_queue.ts";

const FAST = { pollMilliseconds: 10 } as const;

/** Posts `updates` to the ingress, one after another. */
async function post(handler: (request: Request) => Promise<Response>, ids: [number, number][]) {
  for (const [id, chat] of ids) {
    assert.equal(await statusOf(handler, webhookRequest(JSON.stringify(message(id, chat)))), 200);
  }
}

/** A worker on `kv` whose bot notes the id of every message it handles, in order. */
function recordingWorker(api: FakeBotApi, kv: Deno.Kv, options: RunFromKvOptions = FAST) {
  const bot = botFor(api);
  const handled: number[] = [];
  bot.on("message", (ctx) => void handled.push(ctx.update.update_id));
  return { handled, worker: runFromKv(bot, kv, options) };
}

/** What a bot saw, per chat, in order. */
function recorder() {
  const perChat = new Map<number, number[]>();
  const busy = new Set<number>();
  let overlaps = 0;
  return {
    perChat,
    get overlaps() {
      return overlaps;
    },
    get total() {
      return [...perChat.values()].reduce((sum, ids) => sum + ids.length, 0);
    },
    async record(ctx: Context, work: () => Promise<void> = async () => {}) {
      const chat = ctx.chat!.id;
      if (busy.has(chat)) overlaps++;
      busy.add(chat);
      try {
        await work();
      } finally {
        busy.delete(chat);
        perChat.set(chat, [...perChat.get(chat) ?? [], ctx.update.update_id]);
      }
    },
  };
}

Deno.test("two workers run every update once, each chat in update_id order, chats in parallel", async () => {
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const seen = recorder();
  const rng = random(7);
  let running = 0, peak = 0;
  const workers = [0, 1].map(() => {
    const bot = botFor(api);
    bot.on("message", (ctx) =>
      seen.record(ctx, async () => {
        peak = Math.max(peak, ++running);
        await sleep(Math.floor(rng() * 4));
        running--;
      }));
    return runFromKv(bot, kv, { ...FAST, concurrency: 8 });
  });
  const ingress = webhookToKv(kv);
  const sent: [number, number][] = [];
  for (let id = 1; id <= 300; id++) sent.push([id, 1 + Math.floor(rng() * 30)]);
  await post(ingress, sent);
  await until(() => seen.total >= 300, 20_000, "300 updates handled");
  await Promise.all(workers.map((worker) => worker.stop()));
  assert.equal(seen.total, 300);
  assert.equal(seen.overlaps, 0);
  for (const [chat, ids] of seen.perChat) {
    const expected = sent.filter(([, c]) => c === chat).map(([id]) => id);
    assert.deepEqual(ids, expected, `chat ${chat}`);
  }
  assert.ok(peak > 1, "different chats ran at once");
  assert.deepEqual(await kvQueue(kv).counts(), {
    handled: 300,
    failed: 0,
    timedOut: 0,
    deadLettered: 0,
  });
  // Nothing is left but dedupe records and the counters.
  assert.deepEqual((await entries(kv)).map((entry) => entry.key[1]), ["count"]);
  const stats = workers.map((worker) => worker.stats().handled);
  assert.equal(stats[0]! + stats[1]!, 300);
});

Deno.test("a middleware error is an outcome: bot.catch gets it once, nothing runs again", async () => {
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const bot = botFor(api);
  let runs = 0;
  const caught: number[] = [];
  bot.on("message", () => {
    runs++;
    throw new Error("boom");
  });
  bot.catch((error) => void caught.push(error.ctx.update.update_id));
  const worker = runFromKv(bot, kv, FAST);
  await post(webhookToKv(kv), [[1, 1], [2, 1]]);
  await until(() => caught.length === 2, 10_000, "two failures");
  await worker.stop();
  assert.equal(runs, 2);
  assert.deepEqual(caught, [1, 2]);
  assert.equal((await kvQueue(kv).counts()).failed, 2);
  assert.equal((await kvQueue(kv).lanes(10)).length, 0);
});

Deno.test("stop() waits for what it started, records it, and leaves the rest for a restarted worker", async () => {
  await using api = await FakeBotApi.start();
  const file = kvPath("stop");
  try {
    const first = gate();
    const handled: number[] = [];
    {
      using kv = await Deno.openKv(file.path);
      const bot = botFor(api);
      bot.on("message", async (ctx) => {
        if (ctx.update.update_id === 1) await first.promise;
        handled.push(ctx.update.update_id);
      });
      const worker = runFromKv(bot, kv, FAST);
      await post(webhookToKv(kv), [[1, 1], [2, 1], [3, 1], [4, 2]]);
      await until(() => handled.includes(4), 10_000, "chat 2 handled");
      const stopping = worker.stop();
      assert.ok(await isPending(stopping), "stop() waits for update 1");
      first.open();
      const result = await stopping;
      assert.deepEqual(result, { unfinished: [], lost: [], redelivered: [] });
      assert.deepEqual(handled, [4, 1]);
      assert.equal((await kvQueue(kv).counts()).handled, 2);
      const inbox = (await entries(kv)).filter((entry) => entry.key[1] === "inbox");
      assert.deepEqual(inbox.map((entry) => entry.key[3]), [2, 3]);
    }
    // A new worker process (a new KV handle on the same file) resumes.
    using kv = await Deno.openKv(file.path);
    const bot = botFor(api);
    bot.on("message", (ctx) => void handled.push(ctx.update.update_id));
    const worker = runFromKv(bot, kv, FAST);
    await until(() => handled.length === 4, 10_000, "the rest handled");
    await worker.stop();
    assert.deepEqual(handled, [4, 1, 2, 3]);
    assert.equal((await kvQueue(kv).counts()).handled, 4);
  } finally {
    file.remove();
  }
});

Deno.test("a stopped handle starts again and a restarted one takes new updates", async () => {
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const { handled, worker } = recordingWorker(api, kv);
  const ingress = webhookToKv(kv);
  await post(ingress, [[1, 1]]);
  await until(() => handled.length === 1, 10_000, "first update");
  await worker.stop();
  await post(ingress, [[2, 1]]);
  worker.start();
  await until(() => handled.length === 2, 10_000, "second update");
  await worker.stop();
  assert.deepEqual(handled, [1, 2]);
});

Deno.test("a timed-out update is recorded when its task ends, and its chat waits till then", async () => {
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const bot = botFor(api);
  const slow = gate();
  const events: string[] = [];
  bot.on("message", async (ctx) => {
    events.push(`start ${ctx.update.update_id}`);
    if (ctx.update.update_id === 1) await slow.promise;
    events.push(`end ${ctx.update.update_id}`);
  });
  const timedOut: number[] = [];
  const worker = runFromKv(bot, kv, {
    ...FAST,
    timeout: { milliseconds: 20, handler: (update) => void timedOut.push(update.update_id) },
  });
  await post(webhookToKv(kv), [[1, 1], [2, 1]]);
  await until(() => timedOut.length === 1, 10_000, "the timeout");
  await sleep(50); // simulated work elsewhere: update 2 must still wait
  assert.deepEqual(events, ["start 1"]);
  assert.equal((await kvQueue(kv).counts()).timedOut, 0);
  slow.open();
  await until(() => events.length === 4, 10_000, "both updates");
  await worker.stop();
  assert.deepEqual(events, ["start 1", "end 1", "start 2", "end 2"]);
  assert.deepEqual(await kvQueue(kv).counts(), {
    handled: 1,
    failed: 0,
    timedOut: 1,
    deadLettered: 0,
  });
});

Deno.test("a lane whose holder died is taken over after the lease, counting an attempt", async (t) => {
  await using api = await FakeBotApi.start();
  await t.step("below maxAttempts the update runs again", async () => {
    using kv = await Deno.openKv(":memory:");
    const queue = kvQueue(kv);
    await queue.store([message(1, 1), message(2, 1)]);
    // A worker that leased the lane, read update 1 and died.
    const dead = await queue.lease("k:1", "dead-worker", 30);
    assert.ok(dead !== undefined);
    assert.equal(await queue.lease("k:1", "other", 30_000), undefined, "the lease is held");
    const { handled, worker } = recordingWorker(api, kv);
    await until(() => handled.length === 2, 10_000, "both updates after the takeover");
    await worker.stop();
    assert.deepEqual(handled, [1, 2]);
    // The dead holder's writes are refused now.
    const lost = await queue.record([], [dead], 1_000);
    assert.deepEqual(lost, [dead]);
  });
  await t.step(
    "at maxAttempts it moves to the dead letters, is reported, and its chat goes on",
    async () => {
      using kv = await Deno.openKv(":memory:");
      const queue = kvQueue(kv);
      await queue.store([message(1, 1), message(2, 1), message(3, 2)]);
      assert.ok(await queue.lease("k:1", "dead-worker", 30) !== undefined);
      const reports: Report[] = [];
      const { handled, worker } = recordingWorker(api, kv, {
        ...FAST,
        maxAttempts: 1,
        reporter: (report) => reports.push(report),
      });
      await until(() => handled.length === 2, 10_000, "the rest handled");
      await worker.stop();
      assert.deepEqual(handled.sort(), [2, 3]);
      const letters = await queue.deadLetters();
      assert.deepEqual(letters.map((letter) => [letter.update.update_id, letter.attempts]), [[
        1,
        1,
      ]]);
      assert.equal((await queue.counts()).deadLettered, 1);
      assert.ok(
        reports.some((report) =>
          /Update 1 of lane k:1 .* moved to the dead letters/.test(report.message)
        ),
      );
    },
  );
});

Deno.test("release lets go only if the lane is empty in the same commit: no lost wake-up", async () => {
  using real = await Deno.openKv(":memory:");
  const queue = kvQueue(real);
  await queue.store([message(1, 1)]);
  // A KV where, right after the holder saw the inbox empty, an update comes in.
  let inject = false;
  const kv = new Proxy(real, {
    get(target, property) {
      if (property === "list") {
        return (selector: Deno.KvListSelector, options?: Deno.KvListOptions) =>
          (async function* () {
            const found = [];
            for await (const entry of target.list(selector, options)) found.push(entry);
            if (inject) {
              // Right after the holder looked at the inbox, an update comes in.
              inject = false;
              await queue.store([message(2, 1)]);
            }
            yield* found;
          })();
      }
      const value = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
  const racing = kvQueue(kv);
  const lease = (await racing.lease("k:1", "me", 30_000))!;
  // Without a read first, release looks at the inbox itself.
  inject = true;
  assert.equal(await racing.release(lease, 30_000), "waiting");
  let items = await racing.read(lease, 10);
  assert.deepEqual(items.map((queued) => queued.update.update_id), [1, 2]);
  // Between the read that returned the whole lane and the commit of its
  // outcomes (which would let the lane go), an update comes in.
  await queue.store([message(3, 1)]);
  assert.deepEqual(
    await racing.record(items.map((item) => ({ lease, item, outcome: "handled" })), [], 30_000),
    [],
  );
  assert.equal(await racing.release(lease, 30_000), "waiting");
  items = await racing.read(lease, 10);
  assert.deepEqual(items.map((queued) => queued.update.update_id), [3]);
  // Its outcome completes the read: the lane is let go in the same commit.
  assert.deepEqual(
    await racing.record([{ lease, item: items[0]!, outcome: "handled" }], [], 30_000),
    [],
  );
  assert.deepEqual(await queue.lanes(10), []);
  assert.equal(await racing.release(lease, 30_000), "released");
  assert.deepEqual(await queue.lanes(10), []);
  assert.deepEqual(await entries(real), [
    (await real.get(["grammyx-queue", "count", "handled"])) as Deno.KvEntry<unknown>,
  ]);
});

Deno.test("update ids going backwards in a chat are still run, none lost", async () => {
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const { handled, worker } = recordingWorker(api, kv);
  const ingress = webhookToKv(kv);
  await post(ingress, [[10, 1], [11, 1]]);
  await until(() => handled.length === 2, 10_000, "10 and 11");
  await post(ingress, [[5, 1], [3, 1]]);
  await until(() => handled.length === 4, 10_000, "5 and 3");
  await worker.stop();
  assert.deepEqual(handled.slice(0, 2), [10, 11]);
  assert.deepEqual(handled.slice(2).sort(), [3, 5]);
});

Deno.test("a storage write that throws is retried: outcomes are recorded once it works, nothing runs twice", async () => {
  await using api = await FakeBotApi.start();
  using real = await Deno.openKv(":memory:");
  const queue = kvQueue(real);
  await queue.store([message(1, 1), message(2, 1), message(3, 2)]);
  const flaky = flakyKv(real);
  flaky.failing = true;
  const reports: Report[] = [];
  const bot = botFor(api);
  const handled: number[] = [];
  const held = gate();
  bot.on("message", async (ctx) => {
    if (ctx.update.update_id === 4) await held.promise;
    handled.push(ctx.update.update_id);
  });
  // Leases cannot be taken while commits fail: nothing runs, failures are reported.
  const worker = runFromKv(bot, flaky.kv, { ...FAST, reporter: (report) => reports.push(report) });
  await until(() => flaky.failures >= 3, 10_000, "failed commits");
  assert.deepEqual(handled, []);
  assert.ok(reports.every((report) => report.source === "queue"));
  assert.ok(
    reports.some((report) =>
      /Could not lease lane k:1: Error: storage unavailable/.test(report.message)
    ),
  );
  flaky.failing = false;
  await until(() => handled.length === 3, 10_000, "1, 2 and 3");
  // Now the outcome of 4 cannot be written: 5, of the same chat, waits.
  await queue.store([message(4, 1), message(5, 1)]);
  await until(() => worker.stats().running === 1, 10_000, "update 4 running");
  flaky.failing = true;
  const failuresBefore = flaky.failures;
  held.open();
  await until(() => flaky.failures >= failuresBefore + 3, 10_000, "failed records");
  assert.ok(
    reports.some((report) =>
      /Could not record outcomes: Error: storage unavailable/.test(report.message)
    ),
  );
  assert.deepEqual(handled.slice(3), [4]);
  flaky.failing = false;
  await until(() => handled.length === 5, 10_000, "update 5");
  await worker.stop();
  assert.deepEqual(handled.filter((id) => id !== 3), [1, 2, 4, 5]);
  assert.equal((await queue.counts()).handled, 5);
  assert.deepEqual(await queue.lanes(10), []);
});

Deno.test("bad worker options are rejected with errors naming them", async () => {
  await using api = await FakeBotApi.start();
  using kv = await Deno.openKv(":memory:");
  const bot = botFor(api);
  const cases: [unknown, RegExp][] = [
    [
      { leaseMilliseconds: Infinity },
      /'leaseMilliseconds' must be a positive integer: current value is Infinity/,
    ],
    [
      { leaseMilliseconds: 2 ** 31 },
      /'leaseMilliseconds' must be a number from 10 to 2147483647: current value is 2147483648/,
    ],
    [{ leaseMilliseconds: NaN }, /'leaseMilliseconds'.*NaN/],
    [{ leaseMilliseconds: 5 }, /'leaseMilliseconds' must be a number from 10/],
    [
      { leaseMilliseconds: "30000" },
      /'leaseMilliseconds' must be a positive integer: current value is "30000"/,
    ],
    [{ pollMilliseconds: 0 }, /'pollMilliseconds' must be a positive integer/],
    [{ pollMilliseconds: 2 ** 31 }, /'pollMilliseconds' must be a number from 1 to 2147483647/],
    [{ maxAttempts: 0 }, /'maxAttempts' must be a positive integer: current value is 0/],
    [{ maxAttempts: 1.5 }, /'maxAttempts' must be a positive integer/],
    [{ concurrency: -1 }, /'concurrency' must be a positive integer/],
    [{ timeout: { milliseconds: -1, handler: () => {} } }, /'timeout.milliseconds'/],
    [{ reporter: "log" }, /'reporter' must be a function/],
    [{ onSettled: 1 }, /'onSettled' must be a function/],
    [{ signal: "stop" }, /'signal' must be an AbortSignal/],
    [{ prefix: [{}] }, /'prefix' must be an array of KV key parts/],
    [{ leaseMs: 100 }, /'leaseMs' is not an option/],
    [{ maxAttempt: 3 }, /'maxAttempt' is not an option: did you mean 'maxAttempts'/],
  ];
  for (const [options, message] of cases) {
    assert.throws(() => runFromKv(bot, kv, options as never), message);
  }
  assert.throws(() => runFromKv({} as never, kv), /'bot' must have handleUpdate/);
  assert.throws(() => runFromKv(bot, null as never), /'kv' must be a Deno.Kv/);
});

Deno.test("the lease of a lane is this worker's alone until it expires", async () => {
  using kv = await Deno.openKv(":memory:");
  const queue = kvQueue(kv);
  await queue.store([message(1, 1)]);
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) => queue.lease("k:1", `worker ${i}`, 30_000)),
  );
  const winners = results.filter((lease): lease is Lease => lease !== undefined);
  assert.equal(winners.length, 1);
  // A handed-back lane is free at once, without counting an attempt.
  await queue.handBack(winners[0]!);
  const next = await queue.lease("k:1", "next", 30_000);
  assert.ok(next !== undefined);
  assert.deepEqual((await queue.read(next, 10)).map((item) => item.attempts), [0]);
});
