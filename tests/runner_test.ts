import assert from "node:assert/strict";
import { createConcurrentSink, createRunner, createSource, run } from "../mod.ts";
import { fakeTime } from "./_clock.ts";
import { flush, gate, isPending, until } from "./_helpers.ts";

type U = { update_id: number };

/** A source whose first call yields update 1, second fails for good, later ones long-poll. */
function failingSetup() {
  const work = gate();
  const signals: AbortSignal[] = [];
  const source = createSource<U>({
    supply: async (_size, signal) => {
      signals.push(signal);
      if (signals.length === 1) return [{ update_id: 1 }];
      if (signals.length === 2) throw new Error("fatal");
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      return [];
    },
  });
  const sink = createConcurrentSink<U>({ consume: () => work.promise }, () => {});
  return { runner: createRunner(source, sink), work, signals };
}

Deno.test("a fatal error drains what was taken, then rejects task()", async () => {
  const { runner, work } = failingSetup();
  runner.start();
  const task = runner.task()!;
  await flush();
  assert.ok(runner.isRunning(), "draining update 1");
  assert.ok(await isPending(task));
  work.open();
  await assert.rejects(task, /fatal/);
  assert.equal(runner.isRunning(), false);
});

Deno.test("start() during the drain after a fatal error restarts once it is done", async () => {
  const { runner, work, signals } = failingSetup();
  runner.start();
  const task = runner.task()!;
  await flush();
  runner.start();
  work.open();
  await assert.rejects(task, /fatal/);
  await flush();
  assert.ok(runner.isRunning(), "restarted");
  assert.equal(signals.length, 3);
  await runner.stop();
  assert.ok(signals[2]!.aborted, "stop() ends the restarted poll");
});

Deno.test("stop() during a fatal drain, then a restart from task().catch, can be stopped again", async () => {
  const { runner, work, signals } = failingSetup();
  runner.start();
  const task = runner.task()!;
  await flush();
  const stopped = runner.stop();
  const restarted = task.catch(() => runner.start());
  work.open();
  assert.deepEqual(await stopped, { unfinished: [], lost: [], redelivered: [] });
  await restarted;
  await flush();
  assert.ok(runner.isRunning());
  await runner.stop();
  assert.equal(runner.isRunning(), false);
  assert.ok(signals.every((signal) => signal.aborted), "no poll is left open");
});

Deno.test("stop() does not wait for a bot.init() that hangs (grammY's init takes no signal)", async () => {
  const getMe = gate();
  const handle = run({
    init: () => getMe.promise,
    handleUpdate: async () => {},
    errorHandler: () => {},
    api: { getUpdates: () => Promise.resolve([] as U[]) },
  });
  await flush();
  await handle.stop(); // resolves although getMe never answers
  assert.equal(handle.isRunning(), false);
  getMe.open();
});

Deno.test("an update that ends while stop() confirms, after its deadline, is not reported lost (it would run twice)", async () => {
  using time = fakeTime();
  const work = gate();
  const confirming = gate();
  let confirmed = false;
  let served = false;
  const source = createSource<U>({
    supply: async (_size, signal) => {
      if (!served) {
        served = true;
        return [{ update_id: 1 }];
      }
      await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      return [];
    },
    confirm: async () => {
      confirmed = true;
      work.open(); // update 1 ends now, after the drain deadline
      await confirming.promise;
    },
    willResend: () => false, // as in "fetched" mode: confirmed, Telegram forgot it
  });
  const sink = createConcurrentSink<U>({ consume: () => work.promise }, () => {});
  const runner = createRunner(source, sink);
  runner.start();
  await flush();
  assert.equal(sink.size(), 1);
  const stopping = runner.stop({ timeout: 1_000 });
  await time.tick(900); // the drain part of the deadline ends: update 1 still runs
  await until(() => confirmed);
  await flush();
  assert.equal(sink.size(), 0, "update 1 ended");
  confirming.open();
  assert.deepEqual(await stopping, { unfinished: [], lost: [], redelivered: [] });
});
