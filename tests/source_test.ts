import assert from "node:assert/strict";
import { createSource } from "../mod.ts";
import { delay } from "../_async.ts";
import { clock } from "../_clock.ts";
import { fakeTime } from "./_clock.ts";
import { flush, isPending } from "./_helpers.ts";

type U = { update_id: number };

/** A supplier that hands out `update_id`s in order and records each batch size asked for. */
function counting(answer: (batchSize: number) => number = (n) => Math.min(n, 100)) {
  let next = 1;
  const asked: number[] = [];
  return {
    asked,
    supply: (batchSize: number) => {
      asked.push(batchSize);
      const n = answer(batchSize);
      return Promise.resolve(Array.from({ length: n }, () => ({ update_id: next++ })));
    },
  };
}

Deno.test("the source asks its supplier for at most the pace it was given", async () => {
  const supplier = counting();
  const source = createSource<U>(supplier);
  const batches = source.generator();
  await batches.next();
  source.setGeneratorPace(3);
  const { value } = await batches.next();
  assert.equal(value?.length, 3);
  assert.deepEqual(supplier.asked, [Infinity, 3]);
  source.close();
  assert.equal(source.isActive(), false);
});

Deno.test("close() aborts the pending supply and ends the generator; iterating again reopens it", async () => {
  let aborted = 0;
  const source = createSource<U>({
    supply: (_, signal) =>
      new Promise((_, reject) =>
        signal.addEventListener("abort", () => (aborted++, reject(new Error("aborted"))))
      ),
  });
  const first = source.generator().next();
  await flush();
  assert.ok(source.isActive());
  source.close();
  assert.deepEqual(await first, { value: undefined, done: true });
  assert.equal(aborted, 1);
  const again = source.generator().next();
  await flush();
  assert.ok(source.isActive(), "a new generator starts pulling");
  source.close();
  await again;
});

Deno.test("a supplier error that is not an abort ends the generator with that error", async () => {
  const source = createSource<U>({ supply: () => Promise.reject(new Error("fatal")) });
  await assert.rejects(source.generator().next(), /fatal/);
  assert.equal(source.isActive(), false);
});

Deno.test("empty batches that come back at once do not starve timers", async () => {
  const source = createSource<U>(counting(() => 0));
  let fired = false;
  const timer = setTimeout(() => (fired = true), 0);
  const batches = source.generator();
  for (let i = 0; i < 50 && !fired; i++) await batches.next();
  clearTimeout(timer);
  source.close();
  assert.ok(fired, "a timer got to run between empty batches");
});

Deno.test("speedTrafficBalance pauses between small batches, never longer than maxDelayMilliseconds", async () => {
  using time = fakeTime();
  const times: number[] = [];
  const source = createSource<U>(
    {
      supply: () => {
        times.push(clock().now());
        return Promise.resolve([{ update_id: times.length }]);
      },
    },
    { speedTrafficBalance: 1, maxDelayMilliseconds: 30 },
  );
  const batches = source.generator();
  await batches.next();
  for (let i = 0; i < 4; i++) {
    const pending = batches.next();
    assert.ok(await isPending(pending), "the source waits instead of fetching again at once");
    assert.equal(time.nextIn, 30, "one batch of 1 in 30 ms is far from 100: the cap applies");
    await time.tick(30);
    await pending;
  }
  source.close();
  const gaps = times.slice(1).map((t, i) => t - times[i]!);
  assert.deepEqual(gaps, [30, 30, 30, 30]);
});

Deno.test("speedTrafficBalance pauses as long as the recent rate needs to fill the target batch", async () => {
  using time = fakeTime();
  // Each call takes 200 ms and brings 40 updates; a balance of 0.5 aims at batches of 50.
  const source = createSource<U>(
    {
      supply: async (_, signal) => {
        await delay(200, signal);
        return Array.from({ length: 40 }, () => ({ update_id: 0 }));
      },
    },
    { speedTrafficBalance: 0.5, maxDelayMilliseconds: 1_000 },
  );
  const batches = source.generator();
  const first = batches.next();
  await time.tick(200);
  await first;
  const second = batches.next();
  assert.equal(time.nextIn, 1_000, "no rate is known after one batch: the longest pause");
  await time.tick(1_000 + 200);
  await second;
  // 80 updates in 1 200 ms: 50 more take 750 ms.
  const third = batches.next();
  assert.equal(time.nextIn, 750);
  source.close();
  await third;
  assert.equal(time.pending, 0, "close() cleared the pause");
});

Deno.test("speedTrafficBalance 0 fetches again at once", async () => {
  const supplier = counting(() => 1);
  const source = createSource<U>(supplier, { speedTrafficBalance: 0 });
  const batches = source.generator();
  await batches.next();
  const next = batches.next();
  assert.ok(!(await isPending(next)));
  source.close();
});

Deno.test("createSource rejects bad options, naming the option and the value", () => {
  const supplier = counting();
  assert.throws(() => createSource(supplier, { speedTrafficBalance: -0.1 }), {
    name: "RangeError",
    message: /'speedTrafficBalance' must be a number from 0 to 1: current value is -0.1/,
  });
  assert.throws(() => createSource(supplier, { maxDelayMilliseconds: -1 }), {
    name: "RangeError",
    message: /'maxDelayMilliseconds'.*-1/,
  });
  assert.throws(() => createSource({} as never), { name: "TypeError", message: /'supplier'/ });
  assert.throws(() => createSource(supplier, { maxDelayMiliseconds: 100 } as never), {
    name: "TypeError",
    message:
      "Cannot create source as 'maxDelayMiliseconds' is not an option: did you mean 'maxDelayMilliseconds'?",
  });
  assert.throws(() => createSource(supplier, { concurrency: 4 } as never), {
    name: "TypeError",
    message: "Cannot create source as 'concurrency' is not an option",
  });
});
