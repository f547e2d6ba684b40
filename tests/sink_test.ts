import assert from "node:assert/strict";
import {
  createBatchSink,
  createConcurrentSink,
  createSequentialSink,
  type Report,
  run,
  sequentialize,
  type UpdateSink,
} from "../mod.ts";
import { MAX_DELAY } from "../_clock.ts";
import { fakeTime } from "./_clock.ts";
import { flush, gate, isPending } from "./_helpers.ts";

type U = { update_id: number; key?: string };
const updates = (...ids: number[]): U[] => ids.map((update_id) => ({ update_id }));

/** A consumer whose updates finish only when the test opens their gate. */
function gated() {
  const gates = new Map<number, ReturnType<typeof gate>>();
  const started: number[] = [];
  let running = 0;
  let peak = 0;
  return {
    started,
    get running() {
      return running;
    },
    get peak() {
      return peak;
    },
    open: (id: number) => gates.get(id)?.open(),
    consume: async (update: U) => {
      const g = gate();
      gates.set(update.update_id, g);
      started.push(update.update_id);
      peak = Math.max(peak, ++running);
      try {
        await g.promise;
      } finally {
        running--;
      }
    },
  };
}

Deno.test("concurrent sink never runs more than `concurrency` updates at once", async () => {
  const consumer = gated();
  const sink = createConcurrentSink(consumer, async () => {}, { concurrency: 2 });
  const capacity = sink.handle(updates(1, 2, 3, 4));
  await flush();
  assert.deepEqual(consumer.started, [1, 2]);
  assert.equal(sink.size(), 4);
  assert.ok(await isPending(capacity), "no capacity while both slots are taken");
  consumer.open(1);
  await flush();
  assert.deepEqual(consumer.started, [1, 2, 3]);
  for (const id of [2, 3, 4]) {
    consumer.open(id);
    await flush();
  }
  assert.equal(await capacity, 1, "one slot is free again");
  await sink.idle?.();
  assert.equal(consumer.peak, 2);
  assert.equal(sink.size(), 0);
});

Deno.test("concurrent sink resolves handle() with its free capacity (backpressure)", async () => {
  const consumer = gated();
  const sink = createConcurrentSink(consumer, async () => {}, { concurrency: 5 });
  // 3 free slots, plus a read-ahead of `concurrency` (at most 200) updates waiting for a slot.
  assert.equal(await sink.handle(updates(1, 2)), 8);
  const full = sink.handle(updates(3, 4, 5, 6, 7, 8, 9, 10));
  assert.ok(await isPending(full), "5 running, 5 waiting: no room");
  consumer.open(1);
  await flush();
  assert.ok(
    await isPending(full),
    "while every slot is busy, it waits until half the read-ahead is free",
  );
  consumer.open(2);
  assert.equal(await full, 2);
  for (let id = 3; id <= 10; id++) {
    consumer.open(id);
    await flush();
  }
  await sink.idle?.();
  assert.equal(consumer.peak, 5);
});

Deno.test("concurrent sink passes middleware errors with the update to the error handler", async () => {
  const errors: [unknown, U][] = [];
  const sink = createConcurrentSink<U, Error>(
    { consume: (u) => u.update_id === 2 ? Promise.reject(new Error("boom")) : Promise.resolve() },
    async (error, update) => void errors.push([error, update]),
  );
  await sink.handle(updates(1, 2, 3));
  await sink.idle?.();
  assert.equal(errors.length, 1);
  assert.match(String(errors[0]![0]), /boom/);
  assert.deepEqual(errors[0]![1], { update_id: 2 });
  assert.deepEqual(sink.stats?.(), {
    handled: 2,
    failed: 1,
    timedOut: 0,
    running: 0,
    waitingForKey: 0,
    waitingForSlot: 0,
    pending: 0,
    oldestPendingSince: undefined,
  });
});

Deno.test("concurrent sink reports an error handler that throws and keeps going", async () => {
  const reports: Report[] = [];
  const sink = createConcurrentSink<U>(
    { consume: () => Promise.reject(new Error("middleware")) },
    () => {
      throw new Error("handler broke");
    },
    { reporter: (report) => void reports.push(report) },
  );
  await sink.handle(updates(1, 2));
  await sink.idle?.();
  assert.equal(reports.length, 2);
  assert.equal(reports[0]!.source, "errorHandler");
  assert.match(reports[0]!.message, /handler broke/);
  assert.equal(sink.stats?.().failed, 2);
});

Deno.test("concurrent sink treats a consumer that throws synchronously as failed", async () => {
  const errors: unknown[] = [];
  const sink = createConcurrentSink<U>(
    {
      consume: () => {
        throw new Error("sync");
      },
    },
    async (error) => void errors.push(error),
  );
  await sink.handle(updates(1));
  await sink.idle?.();
  assert.equal(errors.length, 1);
});

Deno.test("a timed-out update frees its slot and the timeout handler gets its task", async () => {
  using time = fakeTime();
  const consumer = gated();
  const timedOut: [U, Promise<void>][] = [];
  const settled: string[] = [];
  const sink = createConcurrentSink(consumer, async () => {}, {
    concurrency: 1,
    timeout: { milliseconds: 20, handler: (update, task) => void timedOut.push([update, task]) },
    onSettled: (update, outcome) => void settled.push(`${update.update_id}:${outcome}`),
  });
  const capacity = sink.handle(updates(1, 2));
  await flush();
  assert.deepEqual(consumer.started, [1]);
  const idle = sink.idle!();
  await time.tick(19);
  assert.equal(timedOut.length, 0, "not before its time");
  await time.tick(1);
  assert.deepEqual(consumer.started, [1, 2], "the freed slot went to update 2 at once");
  assert.equal(timedOut.length, 1);
  assert.deepEqual(timedOut[0]![0], { update_id: 1 });
  assert.deepEqual(settled, ["1:timedOut"]);
  assert.equal(sink.size(), 1, "the timed-out update is no longer counted");
  assert.equal(await capacity, 1, "update 2 holds the only slot; one more may wait for it");
  assert.ok(await isPending(timedOut[0]![1]), "its task is still running");
  assert.ok(await isPending(idle), "idle() waits for timed-out tasks too");
  consumer.open(2);
  consumer.open(1);
  await idle;
  assert.deepEqual(settled, ["1:timedOut", "2:handled"]);
  assert.equal(sink.stats?.().timedOut, 1);
});

Deno.test("a timeout beyond what a timer counts (Infinity, @grammyjs/runner's default) never fires", async (t) => {
  for (const milliseconds of [Infinity, MAX_DELAY + 1, 2 ** 40]) {
    await t.step(String(milliseconds), async () => {
      using time = fakeTime();
      const consumer = gated();
      let timedOut = 0;
      const sink = createConcurrentSink(consumer, async () => {}, {
        timeout: { milliseconds, handler: () => void timedOut++ },
      });
      await sink.handle(updates(1));
      assert.equal(time.pending, 0, "no timer was started");
      await time.tick(2 ** 40);
      consumer.open(1);
      await sink.idle?.();
      assert.equal(timedOut, 0);
      assert.equal(sink.stats?.().handled, 1);
    });
  }
  await t.step("the longest delay a timer counts is still a timeout", async () => {
    using time = fakeTime();
    const consumer = gated();
    let timedOut = 0;
    const sink = createConcurrentSink(consumer, async () => {}, {
      timeout: { milliseconds: MAX_DELAY, handler: () => void timedOut++ },
    });
    await sink.handle(updates(1));
    assert.equal(time.nextIn, MAX_DELAY);
    await time.tick(MAX_DELAY);
    assert.equal(timedOut, 1);
    consumer.open(1);
    await sink.idle?.();
  });
});

Deno.test("a failure after a timeout is reported, not passed to the error handler", async () => {
  using time = fakeTime();
  const reports: Report[] = [];
  let errors = 0;
  const failLater = gate();
  const sink = createConcurrentSink<U>(
    { consume: () => failLater.promise.then(() => Promise.reject(new Error("late"))) },
    async () => void errors++,
    {
      timeout: { milliseconds: 5, handler: () => failLater.open() },
      reporter: (report) => void reports.push(report),
    },
  );
  await sink.handle(updates(1));
  await time.tick(5);
  await sink.idle?.();
  assert.equal(errors, 0);
  assert.equal(reports.length, 1);
  assert.equal(reports[0]!.source, "lateFailure");
  assert.match(reports[0]!.message, /^An update failed after it had timed out: .*late/);
  assert.deepEqual(sink.stats?.().timedOut, 1);
});

Deno.test("an update waiting for its key holds no slot, so other chats run (no starvation)", async () => {
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.key);
  const hot = gate();
  const log: number[] = [];
  const sink = createConcurrentSink<U>(
    {
      consume: (update) =>
        ordered({ update }, async () => {
          if (update.key === "hot") await hot.promise;
          log.push(update.update_id);
        }),
    },
    async () => {},
    { concurrency: 2 },
  );
  // Five updates of the hot chat, then three cold chats, with two slots.
  const batch = [1, 2, 3, 4, 5].map((id) => ({ update_id: id, key: "hot" }))
    .concat([6, 7, 8].map((id) => ({ update_id: id, key: `cold${id}` })));
  await sink.handle(batch);
  await flush();
  assert.deepEqual(log, [6, 7, 8], "cold chats finish while the hot chain is blocked");
  const stats = sink.stats!();
  assert.equal(stats.running, 1, "only the head of the hot chain holds a slot");
  assert.equal(stats.waitingForKey, 4);
  hot.open();
  await sink.idle?.();
  assert.deepEqual(log, [6, 7, 8, 1, 2, 3, 4, 5]);
});

Deno.test("an update whose key came free takes the next slot ahead of new updates", async () => {
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.key);
  const gates = new Map<number, ReturnType<typeof gate>>();
  const started: number[] = [];
  const sink = createConcurrentSink<U>(
    {
      consume: (update) =>
        ordered({ update }, async () => {
          started.push(update.update_id);
          const g = gate();
          gates.set(update.update_id, g);
          await g.promise;
        }),
    },
    async () => {},
    { concurrency: 2 },
  );
  sink.handle([{ update_id: 1, key: "a" }, { update_id: 2, key: "a" }, { update_id: 3, key: "b" }]);
  sink.handle([{ update_id: 4, key: "c" }]);
  await flush();
  assert.deepEqual(started, [1, 3]);
  assert.equal(sink.stats!().waitingForSlot, 1);
  gates.get(1)!.open(); // 2's key is free; 4 has waited longer for a slot, but 2 goes first
  await flush();
  assert.deepEqual(started, [1, 3, 2]);
  gates.get(3)!.open();
  await flush();
  assert.deepEqual(started, [1, 3, 2, 4]);
  gates.get(2)!.open();
  gates.get(4)!.open();
  await sink.idle?.();
});

Deno.test("a timed-out update keeps its key until its task really ends", async () => {
  using time = fakeTime();
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.key);
  const first = gate();
  const log: string[] = [];
  const sink = createConcurrentSink<U>(
    {
      consume: (update) =>
        ordered({ update }, async () => {
          log.push(`start ${update.update_id}`);
          if (update.update_id === 1) await first.promise;
        }),
    },
    async () => {},
    { timeout: { milliseconds: 10, handler: () => log.push("timeout") } },
  );
  await sink.handle([{ update_id: 1, key: "a" }, { update_id: 2, key: "a" }]);
  await time.tick(10);
  await flush();
  assert.deepEqual(log, ["start 1", "timeout"], "2 must wait although 1 timed out");
  first.open();
  await sink.idle?.();
  assert.deepEqual(log, ["start 1", "timeout", "start 2"]);
});

Deno.test("the time limit starts again when an update takes a slot back after waiting for its key", async () => {
  using time = fakeTime();
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.key);
  const gates = new Map([1, 2].map((id) => [id, gate()]));
  const timedOut: number[] = [];
  const sink = createConcurrentSink<U>(
    { consume: (update) => ordered({ update }, () => gates.get(update.update_id)!.promise) },
    async () => {},
    {
      concurrency: 2,
      timeout: { milliseconds: 100, handler: (update) => void timedOut.push(update.update_id) },
    },
  );
  await sink.handle([{ update_id: 1, key: "a" }, { update_id: 2, key: "a" }]);
  await time.tick(90); // 2 waits for its key, holding no slot and no timer
  gates.get(1)!.open();
  await flush();
  assert.equal(sink.stats!().running, 1, "2 took a slot back at 90 ms");
  await time.tick(99);
  assert.deepEqual(timedOut, [], "its 100 ms started when it took the slot back");
  await time.tick(1);
  assert.deepEqual(timedOut, [2]);
  gates.get(2)!.open();
  await sink.idle?.();
});

Deno.test("an update that ends while its chain waits for a slot does not block its key", async () => {
  // A middleware in front of sequentialize() that does not await the chain.
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.key);
  const gates = new Map([1, 2, 3, 4].map((id) => [id, gate()]));
  const after1 = gate();
  const early2 = gate();
  const reports: Report[] = [];
  const ran: number[] = [];
  const sink = createConcurrentSink<U>(
    {
      consume: async (update) => {
        const chain = ordered({ update }, async () => {
          ran.push(update.update_id);
          await gates.get(update.update_id)?.promise;
        });
        if (update.update_id === 1) return await chain.then(() => after1.promise);
        if (update.update_id === 2) return await Promise.race([chain, early2.promise]);
        await chain;
      },
    },
    () => {},
    { concurrency: 2, reporter: (report) => void reports.push(report) },
  );
  sink.handle([{ update_id: 1, key: "K" }, { update_id: 2, key: "K" }, { update_id: 3, key: "J" }]);
  await flush();
  gates.get(1)!.open(); // K is free, but 1 keeps its slot: 2 waits for a slot
  await flush();
  assert.equal(sink.stats!().waitingForSlot, 1);
  early2.open(); // 2's task ends while its chain still waits
  await flush();
  assert.deepEqual(ran, [1, 3, 2], "2's chain goes on");
  assert.equal(reports[0]?.source, "consumer");
  sink.handle([{ update_id: 4, key: "K" }]);
  after1.open();
  gates.get(2)!.open();
  gates.get(3)!.open();
  gates.get(4)!.open();
  await sink.idle?.();
  assert.deepEqual(ran, [1, 3, 2, 4]);
});

Deno.test("the timeout does not fire while the error handler runs: one outcome per update", async () => {
  using time = fakeTime();
  const outcomes: string[] = [];
  let timeouts = 0;
  const slowHandler = gate();
  const sink = createConcurrentSink<U>(
    { consume: () => Promise.reject(new Error("middleware failed")) },
    () => slowHandler.promise,
    {
      timeout: { milliseconds: 5, handler: () => void timeouts++ },
      onSettled: (_update, outcome) => void outcomes.push(outcome),
    },
  );
  await sink.handle(updates(1));
  await flush();
  assert.equal(time.pending, 0, "the failure stopped the timer");
  await time.tick(1_000);
  slowHandler.open();
  await sink.idle?.();
  assert.equal(timeouts, 0);
  assert.deepEqual(outcomes, ["failed"]);
});

Deno.test("the sink holds at most `maxPending` unfinished updates", async () => {
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.key);
  const hot = gate();
  const sink = createConcurrentSink<U>(
    { consume: (update) => ordered({ update }, () => hot.promise) },
    async () => {},
    { concurrency: 2, maxPending: 4 },
  );
  assert.equal(await sink.handle([{ update_id: 1, key: "h" }, { update_id: 2, key: "h" }]), 2);
  const full = sink.handle([{ update_id: 3, key: "h" }, { update_id: 4, key: "h" }]);
  assert.ok(await isPending(full), "slots are free but the buffer is full");
  hot.open();
  assert.ok((await full) > 0);
  await sink.idle?.();
});

Deno.test("stats() tells when the oldest unfinished update was taken", async () => {
  using time = fakeTime(1_000_000);
  const consumer = gated();
  const sink = createConcurrentSink(consumer, async () => {});
  assert.equal(sink.stats!().oldestPendingSince, undefined);
  await sink.handle(updates(1));
  await time.tick(500);
  await sink.handle(updates(2));
  assert.equal(sink.stats!().oldestPendingSince, 1_000_000);
  consumer.open(1);
  await flush();
  assert.equal(sink.stats!().oldestPendingSince, 1_000_500);
  consumer.open(2);
  await sink.idle?.();
  assert.equal(sink.stats!().oldestPendingSince, undefined);
});

Deno.test("snapshot() lists the unfinished updates in the order they were taken", async () => {
  const consumer = gated();
  const sink = createConcurrentSink(consumer, async () => {}, { concurrency: 1 });
  sink.handle(updates(5, 6, 7));
  consumer.open(5);
  await flush();
  assert.deepEqual(sink.snapshot(), updates(6, 7));
  consumer.open(6);
  await flush();
  consumer.open(7);
  await sink.idle?.();
  assert.deepEqual(sink.snapshot(), []);
});

Deno.test("unended() lists snapshot() and the timed-out updates that still run, in taking order", async () => {
  using time = fakeTime();
  const consumer = gated();
  const sink = createConcurrentSink(consumer, async () => {}, {
    concurrency: 1,
    timeout: { milliseconds: 20, handler: () => {} },
  });
  sink.handle(updates(5, 6, 7));
  await flush();
  await time.tick(20); // 5 times out and runs on; 6 takes the slot
  assert.deepEqual(consumer.started, [5, 6]);
  assert.deepEqual(sink.snapshot(), updates(6, 7));
  assert.deepEqual(sink.unended!(), updates(5, 6, 7));
  consumer.open(6);
  await flush();
  assert.deepEqual(sink.unended!(), updates(5, 7));
  consumer.open(5); // its task ends: now it has ended
  await flush();
  assert.deepEqual(sink.unended!(), updates(7));
  consumer.open(7);
  await sink.idle!();
  assert.deepEqual(sink.unended!(), []);
});

Deno.test("sequential sink handles one update after another", async () => {
  const consumer = gated();
  const sink: UpdateSink<U> = createSequentialSink(consumer, async () => {});
  const done = sink.handle(updates(1, 2));
  await flush();
  assert.deepEqual(consumer.started, [1]);
  consumer.open(1);
  await flush();
  assert.deepEqual(consumer.started, [1, 2]);
  consumer.open(2);
  assert.equal(await done, Infinity);
});

Deno.test("batch sink runs a batch at once and resolves when all of it is done", async () => {
  const consumer = gated();
  const sink = createBatchSink(consumer, async () => {});
  const done = sink.handle(updates(1, 2, 3));
  await flush();
  assert.deepEqual(consumer.started, [1, 2, 3]);
  consumer.open(1);
  consumer.open(2);
  assert.ok(await isPending(done));
  consumer.open(3);
  assert.equal(await done, Infinity);
});

Deno.test("sinks reject bad options, naming the option and the value", async (t) => {
  const consumer = { consume: async () => {} };
  const handler = async () => {};
  const cases: [string, () => unknown, string, RegExp][] = [
    [
      "concurrency 0",
      () => createConcurrentSink(consumer, handler, { concurrency: 0 }),
      "RangeError",
      /'concurrency' must be a positive integer: current value is 0/,
    ],
    [
      "concurrency 1.5",
      () => createConcurrentSink(consumer, handler, { concurrency: 1.5 }),
      "RangeError",
      /'concurrency'.*1\.5/,
    ],
    [
      "concurrency string",
      () => createConcurrentSink(consumer, handler, { concurrency: "5" as never }),
      "TypeError",
      /'concurrency'.*"5"/,
    ],
    [
      "maxPending below concurrency",
      () => createConcurrentSink(consumer, handler, { concurrency: 10, maxPending: 5 }),
      "RangeError",
      /'maxPending' must be at least 'concurrency' \(10\): current value is 5/,
    ],
    [
      "timeout.milliseconds -1",
      () =>
        createConcurrentSink(consumer, handler, { timeout: { milliseconds: -1, handler() {} } }),
      "RangeError",
      /'timeout.milliseconds'.*-1/,
    ],
    [
      "timeout.handler missing",
      () => createConcurrentSink(consumer, handler, { timeout: { milliseconds: 5 } as never }),
      "TypeError",
      /'timeout.handler' must be a function/,
    ],
    [
      "consumer without consume",
      () => createConcurrentSink({} as never, handler),
      "TypeError",
      /'consumer.consume' must be a function/,
    ],
    [
      "error handler missing",
      () => createSequentialSink(consumer, undefined as never),
      "TypeError",
      /'errorHandler' must be a function/,
    ],
    [
      "a misspelt option",
      () => createConcurrentSink(consumer, handler, { concurency: 10 } as never),
      "TypeError",
      /^Cannot create sink as 'concurency' is not an option: did you mean 'concurrency'\?$/,
    ],
    [
      "a misspelt timeout option",
      () =>
        createBatchSink(consumer, handler, {
          timeout: { milliseconds: 5, handler() {}, handle() {} } as never,
        }),
      "TypeError",
      /^Cannot create sink as 'timeout.handle' is not an option: did you mean 'timeout.handler'\?$/,
    ],
    [
      "an option of another part",
      () => createSequentialSink(consumer, handler, { speedTrafficBalance: 1 } as never),
      "TypeError",
      /^Cannot create sink as 'speedTrafficBalance' is not an option$/,
    ],
  ];
  for (const [name, create, type, message] of cases) {
    await t.step(name, () => assert.throws(create, { name: type, message }));
  }
});

Deno.test("run() rejects a misspelt sink option before any request", () => {
  let requests = 0;
  const bot = {
    handleUpdate: async () => {},
    errorHandler: async () => {},
    api: { getUpdates: async () => (requests++, []) },
  };
  assert.throws(() => run(bot, { sink: { concurency: 10 } as never }), {
    name: "TypeError",
    message: "Cannot create sink as 'concurency' is not an option: did you mean 'concurrency'?",
  });
  assert.equal(requests, 0);
});
