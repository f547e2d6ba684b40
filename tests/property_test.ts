// Property tests: random keys (some multi-key), random delays, failures and
// timeouts; then check conservation and ordering.

import assert from "node:assert/strict";
import { createConcurrentSink, type Outcome, type Report, sequentialize } from "../mod.ts";
import { random } from "./_helpers.ts";

type U = { update_id: number; keys: string[]; work: number; fails: boolean; hangs?: boolean };

/** Updates that hang until their timeout fires (the timeout handler opens them). */
const hanging = new Map<number, () => void>();

function workload(seed: number, count: number, hangs = false): U[] {
  const rng = random(seed);
  return Array.from({ length: count }, (_, i) => {
    const keys = rng() < 0.2
      ? [`k${Math.floor(rng() * 12)}`, `u${Math.floor(rng() * 6)}`]
      : rng() < 0.1
      ? []
      : [`k${Math.floor(rng() * 12)}`];
    const update: U = { update_id: i + 1, keys, work: Math.floor(rng() * 4), fails: rng() < 0.1 };
    if (hangs && rng() < 0.02) update.hangs = true;
    return update;
  });
}

/** Waits `ticks` macrotasks: random handler work without wall-clock sleeps. */
async function work(ticks: number): Promise<void> {
  for (let i = 0; i < ticks; i++) await new Promise((resolve) => setTimeout(resolve, 0));
}

/** Runs updates through a consumer, tracking overlap and order per key. */
function observer() {
  const busy = new Set<string>();
  const order = new Map<string, number[]>();
  let overlaps = 0;
  let concurrent = 0;
  let peak = 0;
  return {
    order,
    get overlaps() {
      return overlaps;
    },
    get peak() {
      return peak;
    },
    async handle(update: U): Promise<void> {
      for (const key of update.keys) {
        if (busy.has(key)) overlaps++;
        busy.add(key);
        order.set(key, [...(order.get(key) ?? []), update.update_id]);
      }
      peak = Math.max(peak, ++concurrent);
      try {
        if (update.hangs) {
          await new Promise<void>((resolve) => hanging.set(update.update_id, resolve));
        }
        await work(update.work);
        if (update.fails) throw new Error(`update ${update.update_id} failed`);
      } finally {
        concurrent--;
        for (const key of update.keys) busy.delete(key);
      }
    },
  };
}

Deno.test("property: the sink with sequentialize loses nothing, runs nothing twice, keeps per-key order", async (t) => {
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    await t.step(`seed ${seed}`, async () => {
      const withTimeouts = seed % 2 === 0;
      const updates = workload(seed, 600, withTimeouts);
      const seen = observer();
      const ordered = sequentialize((ctx: { update: U }) => ctx.update.keys);
      const outcomes = new Map<number, Outcome[]>();
      const errors: number[] = [];
      const reports: Report[] = [];
      let overLimit = 0;
      const concurrency = 1 + (seed % 5) * 4;
      const sink = createConcurrentSink<U>(
        {
          consume: (update) =>
            ordered({ update }, () => {
              if ((sink.stats?.().running ?? 0) > concurrency) overLimit++;
              return seen.handle(update);
            }),
        },
        async (_error, update) => void errors.push(update.update_id),
        {
          concurrency,
          maxPending: concurrency + 50,
          // Hanging updates run out of time; the timeout handler lets them go on.
          ...(withTimeouts
            ? {
              timeout: {
                milliseconds: 50,
                handler: (update: U) => hanging.get(update.update_id)?.(),
              },
            }
            : {}),
          onSettled: (update, outcome) =>
            outcomes.set(update.update_id, [...(outcomes.get(update.update_id) ?? []), outcome]),
          reporter: (report) => void reports.push(report),
        },
      );
      // Feed like the runner: each batch as large as the sink's capacity.
      let capacity = 100;
      for (let i = 0; i < updates.length;) {
        const batch = updates.slice(i, i + Math.min(capacity, 100));
        i += batch.length;
        capacity = await sink.handle(batch);
      }
      await sink.idle?.();

      assert.equal(outcomes.size, updates.length, "every update settled");
      for (const [id, list] of outcomes) assert.equal(list.length, 1, `update ${id} settled once`);
      const failed = [...outcomes].filter(([, list]) => list[0] === "failed").map(([id]) => id);
      assert.deepEqual(errors.toSorted((a, b) => a - b), failed.toSorted((a, b) => a - b));
      const expectedFailures = updates.filter((u) => u.fails).map((u) => u.update_id);
      const timedOut = new Set(
        [...outcomes].filter(([, list]) => list[0] === "timedOut").map(([id]) => id),
      );
      assert.deepEqual(
        failed,
        failed.filter((id) => expectedFailures.includes(id)),
        "only failing updates failed",
      );
      assert.equal(
        failed.length + [...timedOut].filter((id) => expectedFailures.includes(id)).length,
        expectedFailures.length,
      );
      assert.deepEqual(
        reports.map((report) => report.source),
        [...timedOut].filter((id) => expectedFailures.includes(id)).map(() => "lateFailure"),
        "a failure after a timeout is reported, never passed to the error handler",
      );
      const hung = updates.filter((u) => u.hangs).map((u) => u.update_id);
      assert.deepEqual(
        hung.filter((id) => !timedOut.has(id)),
        [],
        "every hanging update timed out",
      );
      if (withTimeouts) assert.ok(hung.length > 0, "the workload has hanging updates");
      assert.equal(seen.overlaps, 0, "updates of one key never overlapped");
      for (const [key, ids] of seen.order) {
        assert.deepEqual(ids, ids.toSorted((a, b) => a - b), `key ${key} ran in update_id order`);
      }
      assert.equal(overLimit, 0, "never more than `concurrency` holding a slot");
      if (concurrency > 1) assert.ok(seen.peak > 1, "different keys overlapped");
      assert.equal(sink.size(), 0);
      assert.equal(sink.stats?.().waitingForKey, 0);
    });
  }
});

Deno.test("property: the fair path (sink) and the plain middleware path give the same results", async () => {
  const updates = workload(42, 400);
  const ordered1 = sequentialize((ctx: { update: U }) => ctx.update.keys);
  const ordered2 = sequentialize((ctx: { update: U }) => ctx.update.keys);
  const viaSink = observer();
  const plain = observer();
  const sink = createConcurrentSink<U>(
    { consume: (update) => ordered1({ update }, () => viaSink.handle(update)) },
    async () => {},
    { concurrency: 8 },
  );
  for (let i = 0; i < updates.length; i += 100) await sink.handle(updates.slice(i, i + 100));
  await sink.idle?.();
  // The plain path: every update at once through the middleware, no sink.
  await Promise.allSettled(
    updates.map((update) => ordered2({ update }, () => plain.handle(update))),
  );
  assert.deepEqual(viaSink.order, plain.order);
  assert.equal(viaSink.overlaps, 0);
  assert.equal(plain.overlaps, 0);
});

Deno.test("property: sequentialize forgets every key once its updates are done", async () => {
  const updates = workload(9, 300);
  const ordered = sequentialize((ctx: { update: U }) => ctx.update.keys);
  await Promise.allSettled(updates.map((update) => ordered({ update }, () => work(update.work))));
  // A forgotten key lets a new update start synchronously (nothing to await).
  const keys = new Set(updates.flatMap((u) => u.keys));
  for (const key of keys) {
    let started = false;
    const done = ordered({ update: { update_id: 0, keys: [key], work: 0, fails: false } }, () => {
      started = true;
    });
    assert.ok(started, `key ${key} was not forgotten`);
    await done;
  }
});
