import assert from "node:assert/strict";
import { GrammyError } from "grammy";
import { PollingError, type Report, run } from "../mod.ts";
import { FakeBotApi } from "../testing.ts";
import { botFor, Recorder } from "./_bot.ts";
import { gate, random, sleep, until } from "./_helpers.ts";

const quick = { fetch: { timeout: 1 } } as const;

/** A bot whose handler takes 1–20 ms (seeded) and records what it did. */
function loadBot(api: FakeBotApi, recorder: Recorder, seed: number) {
  const rng = random(seed);
  const bot = botFor(api);
  bot.on("message", (ctx) => recorder.record(ctx, () => sleep(1 + Math.floor(rng() * 20))));
  return bot;
}

Deno.test("stop() under load waits for every handler, confirms, and a restart loses and repeats nothing", async (t) => {
  for (const seed of [1, 2, 3]) {
    await t.step(`seed ${seed}`, async () => {
      await using api = await FakeBotApi.start({ seed });
      const recorder = new Recorder();
      const ids = api.pushMessages(5_000, { chats: 500 });
      const stopAt = 500 + Math.floor(random(seed)() * 4_000);

      const first = run(loadBot(api, recorder, seed), {
        runner: quick,
        sink: { concurrency: 100 },
      });
      await until(() => recorder.total >= stopAt, 30_000, `${stopAt} updates`);
      assert.ok(recorder.running > 0, "the stop must happen under load");
      await first.stop();
      assert.equal(recorder.running, 0, "no handler runs after stop() resolved");
      assert.equal(first.isRunning(), false);
      const handled = [...recorder.handled.keys()].toSorted((a, b) => a - b);
      assert.deepEqual(
        handled,
        ids.slice(0, handled.length),
        "what was handled is a prefix of the stream",
      );
      assert.equal(api.offset(), handled.at(-1)! + 1, "exactly what was handled is confirmed");

      const second = run(loadBot(api, recorder, seed + 100), {
        runner: quick,
        sink: { concurrency: 100 },
      });
      await until(() => recorder.total >= 5_000, 30_000, "the rest");
      await second.stop();
      assert.equal(recorder.duplicates, 0, "no update handled twice");
      assert.deepEqual(
        [...recorder.handled.keys()].toSorted((a, b) => a - b),
        ids,
        "no update lost",
      );
      assert.equal(api.pending(), 0);
    });
  }
});

Deno.test("stop() of a runner with 100 updates in flight resolves once they are done", async () => {
  await using api = await FakeBotApi.start();
  const release = gate();
  let started = 0;
  let finished = 0;
  const bot = botFor(api);
  bot.on("message", async () => {
    started++;
    await release.promise;
    finished++;
  });
  api.pushMessages(100, { chats: 100 });
  const handle = run(bot, { runner: quick });
  await until(() => started === 100);
  const stopping = handle.stop();
  assert.ok(handle.isRunning(), "draining counts as running");
  release.open();
  await stopping;
  assert.equal(finished, 100);
  assert.equal(api.pending(), 0);
});

Deno.test("every update is handled exactly once under 10 % 500s, 3 % 429s and 2 % cut connections", async () => {
  await using api = await FakeBotApi.start({
    seed: 5,
    faults: { serverError: 0.1, tooManyRequests: 0.03, retryAfter: 0.01, cut: 0.02 },
  });
  const recorder = new Recorder();
  const reports: Report[] = [];
  const ids = api.pushMessages(3_000, { chats: 300 });
  const handle = run(loadBot(api, recorder, 9), {
    runner: { ...quick, retryInterval: 5, reporter: (r) => void reports.push(r) },
    sink: { concurrency: 100 },
    // Small batches mean many getUpdates calls, and so many faults.
    source: {},
  });
  await until(() => recorder.total >= 3_000, 60_000, "3 000 updates");
  await handle.stop();
  assert.equal(recorder.duplicates, 0);
  assert.deepEqual([...recorder.handled.keys()].toSorted((a, b) => a - b), ids);
  assert.ok(api.stats.getUpdatesErrors > 0, "faults were injected");
  assert.ok(reports.every((r) => r.source === "getUpdates"));
  assert.ok(reports.length >= api.stats.getUpdatesErrors - 1, "failures were reported");
});

Deno.test("a rejected token ends the run at once; task() rejects without the token", async () => {
  await using api = await FakeBotApi.start({
    token: "111111:THE-REAL-TOKEN-abcdefghijklmnopqrstuvwxyz",
  });
  const bot = botFor(api, "111111:A-WRONG-TOKEN-abcdefghijklmnopqrstuvwxyz");
  const handle = run(bot, { runner: { ...quick, silent: true } });
  const error = await handle.task()!.then(() => undefined, (e) => e);
  assert.ok(error instanceof PollingError, String(error));
  assert.equal(error.reason, "unauthorized");
  assert.match(error.message, /rejected the bot token \(401\)/);
  const text = `${error.message}\n${error.stack}\n${(error.cause as Error)?.stack}`;
  assert.ok(!text.includes("A-WRONG-TOKEN"), text);
  assert.equal(handle.isRunning(), false);
});

Deno.test("409 from another poller: shorter than the grace window goes on, longer ends the run", async (t) => {
  await t.step("shorter: the run goes on and nothing is lost", async () => {
    await using api = await FakeBotApi.start();
    const recorder = new Recorder();
    const bot = loadBot(api, recorder, 3);
    const ids = api.pushMessages(50);
    api.conflictFor(150);
    const handle = run(bot, {
      runner: { ...quick, retryInterval: 20, maxConflictTime: 5_000, silent: true },
    });
    await until(() => recorder.total === 50, 10_000, "50 updates");
    await handle.stop();
    assert.ok(api.stats.getUpdatesErrors > 0);
    assert.deepEqual([...recorder.handled.keys()].toSorted((a, b) => a - b), ids);
  });
  await t.step("longer: task() rejects with a clear message", async () => {
    await using api = await FakeBotApi.start();
    const bot = botFor(api);
    api.conflictFor(60_000);
    const handle = run(bot, {
      runner: { ...quick, retryInterval: 10, maxConflictTime: 100, silent: true },
    });
    const error = await handle.task()!.then(() => undefined, (e) => e);
    assert.ok(error instanceof PollingError);
    assert.equal(error.reason, "conflict");
    assert.match(
      error.message,
      /Another instance is polling getUpdates with this token \(409 Conflict\)/,
    );
    assert.ok(error.cause instanceof Error);
    assert.ok(!(error.cause instanceof GrammyError), "the cause is a redacted copy");
  });
});

Deno.test("stop({ timeout }) resolves at the deadline and names the stuck update", async (t) => {
  for (const confirm of ["fetched", "handled"] as const) {
    await t.step(`confirm: "${confirm}"`, async () => {
      await using api = await FakeBotApi.start();
      const stuck = gate();
      const bot = botFor(api);
      let done = 0;
      bot.on("message", async (ctx) => {
        if (ctx.update.update_id === 3) await stuck.promise;
        done++;
      });
      api.pushMessages(5);
      const handle = run(bot, { runner: { ...quick, confirm } });
      await until(() => done === 4);
      const result = await handle.stop({ timeout: 300 });
      assert.deepEqual(result.unfinished.map((update) => update.update_id), [3]);
      // "fetched" confirmed 3 with the next poll: Telegram will not send it again.
      const [lost, redelivered] = confirm === "fetched" ? [[3], []] : [[], [3]];
      assert.deepEqual(result.lost.map((update) => update.update_id), lost);
      assert.deepEqual(result.redelivered.map((update) => update.update_id), redelivered);
      assert.equal(handle.isRunning(), false);
      // "fetched" confirmed 3 with the poll after its batch; "handled" never does.
      assert.equal(api.offset(), confirm === "handled" ? 3 : 6);
      stuck.open();
      await until(() => done === 5);
    });
  }
});

Deno.test("run(bot, { signal }) stops like stop() when the signal aborts", async () => {
  await using api = await FakeBotApi.start();
  const recorder = new Recorder();
  const controller = new AbortController();
  api.pushMessages(20);
  const handle = run(loadBot(api, recorder, 1), { runner: quick, signal: controller.signal });
  const task = handle.task()!;
  await until(() => recorder.total >= 5);
  controller.abort();
  await task;
  assert.equal(recorder.running, 0);
  assert.equal(handle.isRunning(), false);
  assert.equal(api.offset(), Math.max(...recorder.handled.keys()) + 1);
});

Deno.test("the handle's lifecycle calls are defined in every state", async (t) => {
  await using api = await FakeBotApi.start();
  const seen: number[] = [];
  const bot = botFor(api);
  bot.on("message", (ctx) => void seen.push(ctx.update.update_id));
  const handle = run(bot, { runner: quick });

  await t.step("start() while running is a no-op", () => {
    const task = handle.task();
    handle.start();
    assert.equal(handle.task(), task);
  });
  await t.step("stop() twice returns the same stop", async () => {
    const a = handle.stop();
    const b = handle.stop();
    assert.equal(a, b);
    await a;
    assert.equal(handle.task(), undefined);
  });
  await t.step("stop() when stopped resolves at once", async () => {
    assert.deepEqual(await handle.stop(), { unfinished: [], lost: [], redelivered: [] });
  });
  await t.step("start() after stop() polls again from where it stopped", async () => {
    api.pushMessages(3);
    handle.start();
    await until(() => seen.length === 3);
    await handle.stop();
    assert.deepEqual(seen, [1, 2, 3]);
  });
  await t.step("start() during a stop restarts once the stop is done", async () => {
    handle.start();
    const stopping = handle.stop();
    handle.start();
    await stopping;
    assert.ok(handle.isRunning());
    api.pushMessages(1);
    await until(() => seen.length === 4);
    await handle.stop();
  });
  await t.step("stop() rejects a bad timeout (a rejection, not a throw)", async () => {
    for (const timeout of [-1, NaN, "5" as unknown as number]) {
      const stopping = handle.stop({ timeout });
      assert.ok(stopping instanceof Promise);
      await assert.rejects(stopping, { message: /^Cannot stop runner as 'timeout' must be/ });
    }
    await assert.rejects(handle.stop({ timout: 5 } as never), {
      name: "TypeError",
      message: "Cannot stop runner as 'timout' is not an option: did you mean 'timeout'?",
    });
  });
});
